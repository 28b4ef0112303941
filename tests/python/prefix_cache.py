"""The prefix cache through the API: a second request that starts with the same ~300-token
system prompt as the first reports those tokens as cached
(usage.prompt_tokens_details.cached_tokens) and answers sooner."""

from __future__ import annotations

from harness import KV_BLOCK, chat, check, client, greedy_chat, model_id, parse_args, stream_chat

# The shared system prompt must reach past this many whole blocks, so that at least
# CACHED_AT_LEAST tokens can be reused: 18 blocks of 16.
CACHED_AT_LEAST = 18 * KV_BLOCK


def system_prompt() -> str:
    """About 350 tokens (with the chat template), the same on every run."""
    rules = " ".join(
        f"Rule {i}: when someone asks about topic number {i}, answer in one short, polite sentence."
        for i in range(1, 15)
    )
    return "You are the help desk of a small library. Follow these rules. " + rules


def cached_tokens(usage) -> int:
    details = usage.prompt_tokens_details
    check(details is not None, f"usage has no prompt_tokens_details: {usage}")
    check(details.cached_tokens is not None, f"usage.prompt_tokens_details has no cached_tokens: {usage}")
    return details.cached_tokens


def ask(api, model, user):
    """A streamed greedy request with the shared system prompt: what came back."""
    out = stream_chat(
        api,
        model=model,
        messages=chat(system_prompt(), user),
        max_tokens=4,
        temperature=0,
        stream_options={"include_usage": True},
    )
    check(out.usage is not None, "no usage chunk though stream_options.include_usage was set")
    check(out.time_to_first_token is not None, f"no text came back for {user!r}")
    return out


def main():
    args = parse_args(__doc__)
    api = client(args)
    model = model_id(api)
    # A request with another prompt first, so the one-time costs of a new server (the first
    # request's set-up, pipelines) do not count against the first measured request.
    greedy_chat(api, model, chat("Be brief.", "Say hello."), 2)

    first = ask(api, model, "What is rule 3 about?")
    check(
        first.usage.prompt_tokens >= CACHED_AT_LEAST + 2 * KV_BLOCK,
        f"the shared prompt should be over {CACHED_AT_LEAST + 2 * KV_BLOCK} tokens: {first.usage}",
    )
    first_cached = first.usage.prompt_tokens_details
    check(
        first_cached is None or not first_cached.cached_tokens,
        f"the first request with this system prompt reports cached tokens: {first.usage}",
    )

    second = ask(api, model, "What is rule 7 about?")
    cached = cached_tokens(second.usage)
    check(
        CACHED_AT_LEAST <= cached < second.usage.prompt_tokens,
        f"the second request reused {cached} of {second.usage.prompt_tokens} prompt tokens; the system "
        f"prompt alone is over {CACHED_AT_LEAST}",
    )
    check(
        second.time_to_first_token < first.time_to_first_token,
        f"with {cached} tokens cached, the first token took {second.time_to_first_token:.2f} s, "
        f"without {first.time_to_first_token:.2f} s",
    )

    # Not streamed, the same is reported.
    third = api.chat.completions.create(
        model=model, messages=chat(system_prompt(), "What is rule 11 about?"), max_tokens=2, temperature=0
    )
    check(cached_tokens(third.usage) >= CACHED_AT_LEAST, f"a non-streamed request: {third.usage}")
    print(
        f"prefix_cache: ok (first token {first.time_to_first_token:.2f} s, then {second.time_to_first_token:.2f} s "
        f"with {cached} of {second.usage.prompt_tokens} tokens cached)"
    )


if __name__ == "__main__":
    main()
