"""Many clients at once: 16 concurrent streaming clients send 32 requests (greedy, or
sampled with a seed) with prompts of mixed lengths, some closing their stream after two chunks. Every request that
is read to the end gets exactly the reply its prompt gets alone, the cancelled ones stop
generating, and once all are done no KV block is in use (the prefix cache's idle blocks
count as free). Then a client gives up on a request that is not streamed: it stops too."""

from __future__ import annotations

import asyncio
import time

from openai import APITimeoutError, OpenAI

from harness import (
    GENERATED_TOKENS,
    KV_BLOCKS_CACHED,
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

CLIENTS = 16
REQUESTS = 32
# Short replies: lavapipe decodes SmolLM2 at tens of tokens per second for the whole batch.
MAX_TOKENS = 12
# One request in CANCEL_EVERY closes its stream after CANCEL_AFTER_CHUNKS chunks (the
# first may be the role alone, so the second is past the prompt: mid-generation).
CANCEL_EVERY = 5
CANCEL_AFTER_CHUNKS = 2
# A client that gives up on an unstreamed request after ABANDON_AFTER_S, whose full reply
# would take minutes on lavapipe.
ABANDON_AFTER_S = 2.0
ABANDONED_MAX_TOKENS = 900
# The whole run must end within this (the test's own limit is larger).
DEADLINE_S = 150

CONTEXT = "The river runs past the old mill, where the miller keeps three grey cats and a brown dog. "
QUESTIONS = [
    "What colour are the cats?",
    "Name a farm animal.",
    "What is two plus three?",
    "Write one word about the sea.",
    "Who keeps the cats?",
    "What does a mill grind?",
    "Say something about rivers.",
    "What is the capital of Italy?",
]
# Copies of CONTEXT before each question: prompts from about 20 to about 170 tokens.
CONTEXT_REPEATS = [0, 1, 2, 4, 0, 6, 3, 8]


def sampling(p: int) -> dict:
    """Prompt p's sampling: greedy for even p; for odd p, sampled with a seed of its own,
    which fixes the reply as surely (a generation draws from its own random stream)."""
    if p % 2 == 0:
        return {"temperature": 0}
    return {"temperature": 0.9, "top_p": 0.95, "seed": 100 + p}


def prompts() -> list[list[dict]]:
    return [chat("Answer briefly.", CONTEXT * n + q) for q, n in zip(QUESTIONS, CONTEXT_REPEATS, strict=True)]


async def solo_replies(api, model, all_prompts) -> tuple[list[str], list[int]]:
    """Each prompt's reply alone, one request at a time, not streamed (so the streams under
    load are compared with the other path too), and its length in tokens."""
    replies, lengths = [], []
    for messages in all_prompts:
        reply = await api.chat.completions.create(
            model=model, messages=messages, max_tokens=MAX_TOKENS, **sampling(len(replies))
        )
        text = reply.choices[0].message.content
        check(bool(text), f"an empty reply to {messages}")
        replies.append(text)
        lengths.append(reply.usage.completion_tokens)
    return replies, lengths


async def run_load(api, model, all_prompts, solo) -> tuple[list[int], list[int]]:
    """REQUESTS requests from CLIENTS clients at once: those read to the end, and those
    cancelled (numbers j, whose prompt is j % len(all_prompts))."""
    jobs = asyncio.Queue()
    for j in range(REQUESTS):
        jobs.put_nowait(j)
    done, cancelled = [], []

    async def one_client():
        while True:
            try:
                j = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            p = j % len(all_prompts)
            cancel = j % CANCEL_EVERY == CANCEL_EVERY - 1
            reply = await stream_chat_async(
                api,
                model=model,
                messages=all_prompts[p],
                max_tokens=MAX_TOKENS,
                **sampling(p),
                cancel_after_chunks=CANCEL_AFTER_CHUNKS if cancel else None,
            )
            if cancel:
                cancelled.append(j)
                continue
            check(
                reply == solo[p],
                f"request {j} (prompt {p}) under load: {reply!r}; alone: {solo[p]!r}",
            )
            done.append(j)

    await asyncio.wait_for(asyncio.gather(*(one_client() for _ in range(CLIENTS))), DEADLINE_S)
    return done, cancelled


def abandoned_unstreamed_request(args, model) -> float:
    """A client that gives up on a request that is not streamed closes its connection with
    nothing written to it yet: the server must notice and stop that generation too. The
    request counts on (greedy continues "1, 2, 3," without end) for far longer than the
    client waits, on lavapipe; its seconds from the client's leaving to the server's idling."""
    impatient = OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=ABANDON_AFTER_S, max_retries=0)
    try:
        impatient.completions.create(
            model=model, prompt="1, 2, 3, 4, 5, 6,", max_tokens=ABANDONED_MAX_TOKENS, temperature=0
        )
        # A fast adapter may finish it in time: then there was nothing to abandon.
        return 0.0
    except APITimeoutError:
        pass
    left = time.monotonic()
    wait_until_no_blocks_leak(
        args.base_url, args.api_key, after=f"the client of an unstreamed request left it after {ABANDON_AFTER_S} s"
    )
    return time.monotonic() - left


async def main_async(args):
    model = model_id(client(args))
    all_prompts = prompts()
    async with async_client(args) as api:
        t = time.monotonic()
        solo, lengths = await solo_replies(api, model, all_prompts)
        t_solo = time.monotonic() - t
        sampled_before = metrics(args.base_url, args.api_key)[GENERATED_TOKENS]
        t = time.monotonic()
        done, cancelled = await run_load(api, model, all_prompts, solo)
        t_load = time.monotonic() - t
    check(len(done) + len(cancelled) == REQUESTS, f"{done} done and {cancelled} cancelled of {REQUESTS}")
    idle = wait_until_no_blocks_leak(args.base_url, args.api_key)

    # A cancelled request stops generating: fewer tokens were sampled than all the
    # requests' full replies hold (and no fewer than the ones read to the end hold).
    sampled = idle[GENERATED_TOKENS] - sampled_before
    length = [lengths[j % len(all_prompts)] for j in range(REQUESTS)]
    read_to_the_end = sum(length[j] for j in done)
    check(
        read_to_the_end <= sampled < sum(length),
        f"{sampled:g} tokens sampled under load: the replies read to the end hold {read_to_the_end}, all "
        f"{REQUESTS} full replies {sum(length)}; cancelled requests should stop short",
    )
    print(
        f"load: ({len(all_prompts)} prompts alone in {t_solo:.1f} s; {len(done)} requests read to the end and "
        f"{len(cancelled)} cancelled by {CLIENTS} clients in {t_load:.1f} s, {sampled:g} tokens sampled of "
        f"{sum(length)} in full replies; then {idle[KV_BLOCKS_CACHED]:g} blocks in the prefix cache, none in use)"
    )
    idle_after = abandoned_unstreamed_request(args, model)
    print(f"load: ok (an unstreamed request its client left was stopped {idle_after:.1f} s later)")


def main():
    asyncio.run(main_async(parse_args(__doc__)))


if __name__ == "__main__":
    main()
