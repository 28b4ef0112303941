"""More requests than the KV pool holds: the server runs with a pool sized for two
sequences (--kv-pool, given here too) and --parallel 6; six greedy requests at once all
finish, each with the reply its prompt gets alone, and so do three requests of n=2."""

from __future__ import annotations

import asyncio

from harness import (
    KV_BLOCK,
    PREEMPTIONS,
    async_client,
    chat,
    check,
    client,
    metrics,
    model_id,
    parse_args,
    stream_chat_async,
    wait_until_no_blocks_leak,
)

QUESTIONS = [
    "Tell me about the moon and why it changes its shape during the month.",
    "Explain in simple words why the sky looks blue on a clear summer day.",
    "Describe what a baker does early in the morning before the shop opens.",
    "Why do leaves of many trees turn yellow and red when autumn comes?",
    "What should a person pack for a short walking trip in the mountains?",
    "How does a bicycle stay upright when someone rides it along a road?",
]


def extra_args(parser):
    parser.add_argument("--kv-pool", type=int, required=True, help="the server's --kv-pool, in tokens")
    parser.add_argument("--max-prompt-tokens", type=int, required=True, help="the pool was sized for prompts this long")
    parser.add_argument("--max-tokens", type=int, required=True, help="max_tokens of each request")


def blocks(tokens: int) -> int:
    return -(-tokens // KV_BLOCK)


async def main_async(args):
    model = model_id(client(args))
    all_prompts = [chat("Answer briefly.", q) for q in QUESTIONS]
    request = {"model": model, "max_tokens": args.max_tokens, "temperature": 0}
    api = client(args)
    solo, needs = [], []
    for messages in all_prompts:
        reply = api.chat.completions.create(messages=messages, **request)
        usage = reply.usage
        check(
            usage.prompt_tokens <= args.max_prompt_tokens,
            f"a prompt of {usage.prompt_tokens} tokens, over the {args.max_prompt_tokens} the pool was sized for",
        )
        solo.append(reply.choices[0].message.content)
        # Positions the request occupies at its end (the last token is sampled, not stored).
        needs.append(blocks(usage.prompt_tokens + usage.completion_tokens - 1) * KV_BLOCK)
    # What this test is about: each request fits in the pool alone, all six do not.
    check(max(needs) <= args.kv_pool, f"a request needs more than the pool ({args.kv_pool}): {needs}")
    check(sum(needs) > 2 * args.kv_pool, f"the six requests ({needs}) fit in a pool of {args.kv_pool} twice over")

    async with async_client(args) as aapi:
        replies = await asyncio.wait_for(
            asyncio.gather(*(stream_chat_async(aapi, messages=m, **request) for m in all_prompts)), 300
        )
    for i, (reply, alone) in enumerate(zip(replies, solo, strict=True)):
        check(reply == alone, f"request {i} with the pool full: {reply!r}; alone: {alone!r}")
    # The solo requests never filled the pool, so every preemption was in the run above.
    preempted = metrics(args.base_url, args.api_key)[PREEMPTIONS]
    check(preempted > 0, f"{PREEMPTIONS} is 0: the six requests ran without a preemption")
    wait_until_no_blocks_leak(args.base_url, args.api_key)

    # Again with three requests of n=2: the choices of one request share their prompt's
    # blocks, and one may be preempted while the other runs on.
    async with async_client(args) as aapi:
        pairs = await asyncio.wait_for(
            asyncio.gather(*(aapi.chat.completions.create(messages=m, n=2, **request) for m in all_prompts[:3])), 300
        )
    for i, pair in enumerate(pairs):
        for c in pair.choices:
            check(
                c.message.content == solo[i],
                f"request {i}, choice {c.index} of n=2 with the pool full: {c.message.content!r}; alone: {solo[i]!r}",
            )
    preempted_n2 = metrics(args.base_url, args.api_key)[PREEMPTIONS] - preempted
    wait_until_no_blocks_leak(args.base_url, args.api_key)
    print(
        f"preemption: ok (6 requests needing {sum(needs)} positions in a pool of {args.kv_pool}: {preempted:g} "
        f"preemptions; 3 requests of n=2: {preempted_n2:g})"
    )


def main():
    asyncio.run(main_async(parse_args(__doc__, extra_args)))


if __name__ == "__main__":
    main()
