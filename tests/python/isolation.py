"""No request reads another's KV blocks: prompts that are the same but for their last
block (so the prefix cache shares every other block among them), sent at once and
interleaved with requests that are cancelled mid-stream, each get exactly the reply they
get alone with nothing cached; then again, once the cancelled requests' blocks went back
to the pool."""

from __future__ import annotations

import asyncio

from harness import (
    KV_BLOCK,
    async_client,
    chat,
    check,
    client,
    model_id,
    parse_args,
    stream_chat_async,
    wait_until_no_blocks_leak,
)

SHARED = (
    "Here is a list of countries and their capitals, which you know well: France has Paris, "
    "Germany has Berlin, Spain has Madrid, Italy has Rome, Japan has Tokyo and Egypt has Cairo. "
    "Answer the question with the name of one city only. "
)
# Each prompt ends with one of these, so they differ in their last block only: with the
# chat template, SmolLM2's prompts are 73 tokens, the country's name the 65th (measured;
# the premise is checked against the server's cached_tokens below).
ENDINGS = [
    "The capital of France is?",
    "The capital of Japan is?",
    "The capital of Egypt is?",
    "The capital of Spain is?",
    "The capital of Italy is?",
    "The capital of Germany is?",
]
MAX_TOKENS = 8
CANCEL_AFTER_CHUNKS = 2


def cached_tokens(usage) -> int:
    details = usage.prompt_tokens_details
    check(details is not None and details.cached_tokens is not None, f"no cached_tokens in {usage}")
    return details.cached_tokens


def prompts() -> list[list[dict]]:
    return [chat("Answer briefly.", SHARED + ending) for ending in ENDINGS]


async def main_async(args):
    model = model_id(client(args))
    all_prompts = prompts()
    request = {"model": model, "max_tokens": MAX_TOKENS, "temperature": 0}
    api = client(args)
    # Each prompt alone, with a cache salt of its own (vLLM's `cache_salt`, which wisp
    # serve takes too), so that no block is shared: the reply with nothing cached.
    solo = []
    for i, messages in enumerate(all_prompts):
        reply = api.chat.completions.create(messages=messages, extra_body={"cache_salt": f"solo-{i}"}, **request)
        check(
            cached_tokens(reply.usage) == 0,
            f"prompt {i} with a cache salt of its own reused {cached_tokens(reply.usage)} cached tokens",
        )
        solo.append(reply.choices[0].message.content)
    check(len(set(solo)) >= 3, f"too few different replies for a mix-up to show: {solo}")
    # Alone again, now sharing the cache: the same replies, and the premise, as the server
    # counts it: all but the last block came from the cache (from the first prompt).
    for i, messages in enumerate(all_prompts):
        reply = api.chat.completions.create(messages=messages, **request)
        text = reply.choices[0].message.content
        check(text == solo[i], f"prompt {i} with the others' blocks cached: {text!r}; with none: {solo[i]!r}")
        if i > 0:
            cached = cached_tokens(reply.usage)
            check(
                reply.usage.prompt_tokens - KV_BLOCK <= cached < reply.usage.prompt_tokens,
                f"prompt {i}: {cached} of its {reply.usage.prompt_tokens} tokens came from the cache; the "
                f"prompts should share all but their last block of {KV_BLOCK}",
            )

    async with async_client(args) as aapi:
        # Round 1: a request read to the end and one cancelled, per prompt, started in turn.
        tasks = []
        for messages in all_prompts:
            tasks.append(asyncio.create_task(stream_chat_async(aapi, messages=messages, **request)))
            tasks.append(
                asyncio.create_task(
                    stream_chat_async(aapi, messages=messages, cancel_after_chunks=CANCEL_AFTER_CHUNKS, **request)
                )
            )
        results = await asyncio.wait_for(asyncio.gather(*tasks), 300)
        for i, reply in enumerate(results[0::2]):
            check(reply == solo[i], f"prompt {i} among the others: {reply!r}; alone: {solo[i]!r}")
        # Round 2: every prompt again, in reverse order, over the blocks the cancelled ones gave back.
        results = await asyncio.wait_for(
            asyncio.gather(*(stream_chat_async(aapi, messages=m, **request) for m in reversed(all_prompts))), 300
        )
        for i, reply in zip(reversed(range(len(all_prompts))), results, strict=True):
            check(reply == solo[i], f"prompt {i} after the cancellations: {reply!r}; alone: {solo[i]!r}")
    wait_until_no_blocks_leak(args.base_url, args.api_key)
    print(f"isolation: ok ({len(all_prompts)} prompts, replies {solo})")


def main():
    asyncio.run(main_async(parse_args(__doc__)))


if __name__ == "__main__":
    main()
