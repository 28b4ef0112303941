"""The OpenAI API's shapes and meanings, through the official client: chat and completions,
streamed and not; n=2; logprobs; stop strings; usage; the API key; and a greedy chat reply
equal to `wisp chat`'s for the same messages (given by the test that runs this)."""

from __future__ import annotations

import math
import urllib.error
import urllib.request

import openai

from harness import Failed, chat, check, client, greedy_chat, model_id, parse_args, server_root, stream_chat

# How far a chosen token's logprob may sit below its listed alternatives' best: greedy
# picks the most likely token, so only rounding separates the two.
LOGPROB_TOLERANCE = 1e-3
CAPITAL = "The capital of France is"


def extra_args(parser):
    parser.add_argument("--greedy-system", required=True, help="the system message of the chat to compare")
    parser.add_argument("--greedy-user", required=True, help="its user message")
    parser.add_argument("--greedy-max-tokens", type=int, required=True, help="the most tokens of its reply")
    parser.add_argument("--greedy-expected", required=True, help="`wisp chat --temp 0`'s reply to it")


def check_usage(usage, max_tokens: int, finish_reason: str, what: str) -> None:
    check(usage is not None, f"{what}: no usage")
    check(usage.prompt_tokens > 0, f"{what}: usage.prompt_tokens {usage.prompt_tokens}")
    check(
        usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
        f"{what}: total_tokens is not prompt + completion: {usage}",
    )
    check(0 < usage.completion_tokens <= max_tokens, f"{what}: {usage} for max_tokens {max_tokens}")
    if finish_reason == "length":
        check(usage.completion_tokens == max_tokens, f"{what}: finish_reason length but {usage}")
    else:
        check(finish_reason == "stop", f"{what}: finish_reason {finish_reason!r}")


def chat_greedy_matches_the_cli(api, model, args):
    messages = chat(args.greedy_system, args.greedy_user)
    max_tokens = args.greedy_max_tokens
    reply = api.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0)
    check(reply.object == "chat.completion", f"object {reply.object!r}")
    check(len(reply.choices) == 1, f"one choice: {reply.choices}")
    choice = reply.choices[0]
    check(choice.index == 0 and choice.message.role == "assistant", f"choice: {choice}")
    check(
        choice.message.content == args.greedy_expected,
        f"greedy chat reply differs from `wisp chat --temp 0`'s:\n  server: {choice.message.content!r}\n"
        f"  cli:    {args.greedy_expected!r}",
    )
    check_usage(reply.usage, max_tokens, choice.finish_reason, "chat")

    # The same request streamed, with the usage chunk asked for.
    streamed = stream_chat(
        api,
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0,
        stream_options={"include_usage": True},
    )
    chunks = streamed.chunks
    check(len(chunks) >= 2, f"a streamed reply in {len(chunks)} chunk(s)")
    check(streamed.text == choice.message.content, f"streamed {streamed.text!r}, not {choice.message.content!r}")
    check(streamed.finish_reason == choice.finish_reason, f"streamed finish_reason {streamed.finish_reason!r}")
    check(all(c.object == "chat.completion.chunk" for c in chunks), "every chunk is a chat.completion.chunk")
    check(len({c.id for c in chunks}) == 1, f"chunks of one reply have one id: {[c.id for c in chunks]}")
    check(
        any(ch.delta.role == "assistant" for c in chunks for ch in c.choices),
        "no chunk gives the role assistant",
    )
    last = chunks[-1]
    check(last.usage is not None and last.choices == [], f"the last chunk is the usage alone: {last}")
    check(all(c.usage is None for c in chunks[:-1]), "only the last chunk has usage")
    check(last.usage.prompt_tokens == reply.usage.prompt_tokens, f"{last.usage} against {reply.usage}")
    check(last.usage.completion_tokens == reply.usage.completion_tokens, f"{last.usage} against {reply.usage}")
    check_usage(last.usage, max_tokens, streamed.finish_reason, "streamed chat")

    # Without include_usage no chunk has usage.
    plain = stream_chat(api, model=model, messages=messages, max_tokens=max_tokens, temperature=0)
    check(plain.text == streamed.text, f"{plain.text!r} against {streamed.text!r}")
    check(plain.usage is None, "usage streamed without stream_options.include_usage")
    return messages


def n_two(api, model, messages):
    """n=2 greedy: two choices, each the single reply; the prompt counted once."""
    max_tokens = 6
    one = api.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0)
    two = api.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0, n=2)
    check(sorted(c.index for c in two.choices) == [0, 1], f"n=2 gave choices {[c.index for c in two.choices]}")
    for c in two.choices:
        check(
            c.message.content == one.choices[0].message.content,
            f"n=2 choice {c.index}: {c.message.content!r}, alone: {one.choices[0].message.content!r}",
        )
    check(two.usage.prompt_tokens == one.usage.prompt_tokens, f"n=2 {two.usage} against n=1 {one.usage}")
    check(
        two.usage.completion_tokens == 2 * one.usage.completion_tokens,
        f"n=2 {two.usage} against n=1 {one.usage}",
    )
    check(two.usage.total_tokens == two.usage.prompt_tokens + two.usage.completion_tokens, f"{two.usage}")

    # Streamed, the two choices' chunks come tagged with their index; each spells the reply.
    streamed = stream_chat(
        api,
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0,
        n=2,
        stream_options={"include_usage": True},
    )
    texts = {0: "", 1: ""}
    for chunk in streamed.chunks:
        for c in chunk.choices:
            check(c.index in texts, f"a streamed chunk of choice {c.index} for n=2")
            texts[c.index] += c.delta.content or ""
    for index, text in texts.items():
        check(text == one.choices[0].message.content, f"streamed n=2 choice {index}: {text!r}")
    check(streamed.usage.completion_tokens == two.usage.completion_tokens, f"streamed n=2 {streamed.usage}")


def chat_logprobs(api, model, messages):
    max_tokens = 8
    plain = greedy_chat(api, model, messages, max_tokens)
    reply = api.chat.completions.create(
        model=model, messages=messages, max_tokens=max_tokens, temperature=0, logprobs=True, top_logprobs=3
    )
    choice = reply.choices[0]
    check(choice.message.content == plain, f"logprobs changed the greedy reply: {choice.message.content!r}")
    content = choice.logprobs.content
    check(
        len(content) == reply.usage.completion_tokens,
        f"{len(content)} logprob entries for {reply.usage.completion_tokens} tokens",
    )
    check("".join(e.token for e in content) == plain, f"the tokens {[e.token for e in content]} do not spell {plain!r}")
    for i, entry in enumerate(content):
        tops = entry.top_logprobs
        check(len(tops) == 3, f"token {i}: {len(tops)} top_logprobs for top_logprobs=3")
        values = [t.logprob for t in tops]
        check(all(v <= 0 for v in values + [entry.logprob]), f"token {i}: a logprob above 0: {entry}")
        check(values == sorted(values, reverse=True), f"token {i}: top_logprobs not most likely first: {values}")
        check(len({t.token for t in tops}) == 3, f"token {i}: top_logprobs repeat a token: {tops}")
        check(
            math.fsum(math.exp(v) for v in values) <= 1 + LOGPROB_TOLERANCE,
            f"token {i}: top probabilities sum over 1: {values}",
        )
        # Greedy chose the most likely token, so none listed beats it.
        check(
            entry.logprob >= values[0] - LOGPROB_TOLERANCE,
            f"token {i} {entry.token!r} ({entry.logprob}) is less likely than {tops[0].token!r} ({values[0]}) "
            f"though greedy chose it",
        )

    # Streamed, the chunks carry the same entries, in order.
    streamed = stream_chat(
        api, model=model, messages=messages, max_tokens=max_tokens, temperature=0, logprobs=True, top_logprobs=3
    )
    entries = [e for chunk in streamed.chunks for c in chunk.choices if c.logprobs for e in (c.logprobs.content or [])]
    check(
        [(e.token, e.logprob) for e in entries] == [(e.token, e.logprob) for e in content],
        f"streamed logprobs {[(e.token, e.logprob) for e in entries]}, not {[(e.token, e.logprob) for e in content]}",
    )


def completion_logprobs(api, model):
    max_tokens = 6
    reply = api.completions.create(model=model, prompt=CAPITAL, max_tokens=max_tokens, temperature=0, logprobs=2)
    choice = reply.choices[0]
    lp = choice.logprobs
    n = reply.usage.completion_tokens
    check(
        len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n,
        f"logprobs lists for {n} tokens: {lp}",
    )
    check("".join(lp.tokens) == choice.text, f"the tokens {lp.tokens} do not spell {choice.text!r}")
    check(lp.text_offset == sorted(lp.text_offset), f"text_offset goes back: {lp.text_offset}")
    for i, (token, logprob, tops) in enumerate(zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True)):
        # The API lists `logprobs` alternatives, plus the chosen token when it is not one of them.
        check(2 <= len(tops) <= 3, f"token {i}: {len(tops)} top_logprobs for logprobs=2: {tops}")
        check(logprob <= 0 and all(v <= 0 for v in tops.values()), f"token {i}: a logprob above 0: {tops}")
        check(math.fsum(math.exp(v) for v in tops.values()) <= 1 + LOGPROB_TOLERANCE, f"token {i}: {tops} over 1")
        check(
            logprob >= max(tops.values()) - LOGPROB_TOLERANCE,
            f"token {i} {token!r} ({logprob}) is less likely than an alternative in {tops} though greedy chose it",
        )

    # Streamed, the chunks' lists joined are the same, text offsets included.
    joined = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for chunk in api.completions.create(
        model=model, prompt=CAPITAL, max_tokens=max_tokens, temperature=0, logprobs=2, stream=True
    ):
        for c in chunk.choices:
            if c.logprobs is not None:
                for key, values in joined.items():
                    values.extend(getattr(c.logprobs, key) or [])
    for key, values in joined.items():
        check(values == getattr(lp, key), f"streamed logprobs' {key} {values}, not {getattr(lp, key)}")


def completions(api, model):
    max_tokens = 8
    reply = api.completions.create(model=model, prompt=CAPITAL, max_tokens=max_tokens, temperature=0)
    check(reply.object == "text_completion", f"object {reply.object!r}")
    choice = reply.choices[0]
    # The greedy continuation the CLI tests know (tests/tests/cli.rs).
    check(choice.text.startswith(" Paris"), f"{CAPITAL!r} continued with {choice.text!r}")
    check_usage(reply.usage, max_tokens, choice.finish_reason, "completion")
    text = ""
    finish = None
    for chunk in api.completions.create(model=model, prompt=CAPITAL, max_tokens=max_tokens, temperature=0, stream=True):
        for c in chunk.choices:
            text += c.text
            finish = c.finish_reason or finish
    check(text == choice.text, f"streamed completion {text!r}, not {choice.text!r}")
    check(finish == choice.finish_reason, f"streamed finish_reason {finish!r}, not {choice.finish_reason!r}")
    return choice.text


def stop_strings(api, model, messages, completion_text):
    """A stop string ends the text just before it, with finish_reason stop, streamed or not."""
    base = greedy_chat(api, model, messages, 16)
    words = base.split()
    check(len(words) >= 3, f"the reply is too short to pick a stop string from: {base!r}")
    stop = " " + words[1]
    expected = base[: base.index(stop)]
    reply = api.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0, stop=[stop])
    text = reply.choices[0].message.content
    check(stop not in text, f"the stop string {stop!r} is in the text {text!r}")
    check(text == expected, f"stop {stop!r}: {text!r}, expected {expected!r} (the greedy reply {base!r})")
    check(reply.choices[0].finish_reason == "stop", f"stop string: finish_reason {reply.choices[0].finish_reason!r}")
    streamed = stream_chat(api, model=model, messages=messages, max_tokens=16, temperature=0, stop=[stop])
    check(streamed.text == expected, f"streamed with stop {stop!r}: {streamed.text!r}, expected {expected!r}")
    check(streamed.finish_reason == "stop", f"streamed stop string: finish_reason {streamed.finish_reason!r}")

    # A stop string whose beginning comes in the reply but not the rest: the stream holds
    # that text back while it may still be the stop string, then must give it all.
    start = base.index(words[1])
    almost = base[start : start + len(words[1]) + 1] + "never in the reply"
    streamed = stream_chat(api, model=model, messages=messages, max_tokens=16, temperature=0, stop=[almost])
    check(streamed.text == base, f"with stop {almost!r} (never met): {streamed.text!r}, not {base!r}")
    reply = api.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0, stop=[almost])
    check(reply.choices[0].message.content == base, f"with stop {almost!r}: {reply.choices[0].message.content!r}")

    # The same on /v1/completions, with a stop string that is not the first of the list.
    words = completion_text.split()
    check(len(words) >= 3, f"the completion is too short to pick a stop string from: {completion_text!r}")
    stop = " " + words[2]
    expected = completion_text[: completion_text.index(stop)]
    reply = api.completions.create(
        model=model, prompt=CAPITAL, max_tokens=8, temperature=0, stop=["no such text", stop]
    )
    check(
        reply.choices[0].text == expected, f"completion stop {stop!r}: {reply.choices[0].text!r}, expected {expected!r}"
    )
    check(
        reply.choices[0].finish_reason == "stop", f"completion stop: finish_reason {reply.choices[0].finish_reason!r}"
    )


def api_key(args, model):
    """With a key, the server refuses a request without it and answers /health with it."""
    if args.api_key == "none":
        return
    wrong = openai.OpenAI(base_url=args.base_url, api_key="not-the-key", max_retries=0, timeout=30)
    for what, call in [
        ("GET /v1/models", lambda: wrong.models.list()),
        (
            "POST /v1/chat/completions",
            lambda: wrong.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
            ),
        ),
    ]:
        try:
            call()
        except openai.AuthenticationError:
            continue
        raise Failed(f"{what} with a wrong API key was answered")
    request = urllib.request.Request(server_root(args.base_url) + "/health")
    request.add_header("Authorization", f"Bearer {args.api_key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            check(response.status == 200, f"/health: {response.status}")
    except urllib.error.HTTPError as e:
        raise Failed(f"/health with the key: HTTP {e.code}") from e


def main():
    args = parse_args(__doc__, extra_args)
    api = client(args)
    model = model_id(api)
    messages = chat_greedy_matches_the_cli(api, model, args)
    n_two(api, model, messages)
    chat_logprobs(api, model, messages)
    completion_text = completions(api, model)
    completion_logprobs(api, model)
    stop_strings(api, model, messages, completion_text)
    api_key(args, model)
    print("api_basics: ok")


if __name__ == "__main__":
    main()
