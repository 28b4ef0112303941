"""What the scripts that test `wisp serve` through the official OpenAI client share.

Each script is run by a test in tests/tests/serve_openai.rs, against a server it started
(`wisp serve -m smollm2 --port 0 ...`), as

    <cache>/test-venv/bin/python tests/python/SCRIPT.py --base-url http://127.0.0.1:PORT/v1

and passes when it exits with 0. A failed check raises `Failed` with what was expected
and what came back; the traceback names the line.

Every request is greedy (temperature 0), so the server's answer to a prompt is one
exact text, whatever else runs beside it: the scripts compare replies with one another
instead of judging what they say.
"""

from __future__ import annotations

import argparse
import time
import urllib.request
from dataclasses import dataclass, field

from openai import AsyncOpenAI, OpenAI

# The server's Prometheus metrics the scripts read (native/src/serve/metrics.rs), named
# here only. Gauges: blocks of the paged KV pool that generations hold, and blocks that only the
# prefix cache keeps (no generation uses them; they count as free, as they are given away
# when needed). Once every request has ended, no block may be in use, or blocks leaked.
KV_BLOCKS_USED = "wisp_kv_blocks_used"
KV_BLOCKS_CACHED = "wisp_kv_blocks_cached"
# Counters: tokens sampled, in all.
GENERATED_TOKENS = "wisp_generated_tokens_total"
# Generations taken off the batch to free KV blocks (and run again later), in all.
PREEMPTIONS = "wisp_preemptions_total"

# Positions per block of the KV pool (`--kv-block`, default 16): the unit the prefix
# cache shares.
KV_BLOCK = 16

# One request may take this long on a software adapter (lavapipe) before the client gives
# up; the client never retries, so that a failure shows as one.
REQUEST_TIMEOUT_S = 120.0


class Failed(AssertionError):
    """A check of the server's answers that did not hold."""


def check(condition: bool, message: str) -> None:
    """Like `assert`, but also under `python -O`."""
    if not condition:
        raise Failed(message)


def parse_args(description: str, extra=None) -> argparse.Namespace:
    """--base-url and --api-key, plus what `extra(parser)` adds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--base-url", required=True, help="the server's API root, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument(
        "--api-key",
        default="none",
        help="the key the server was started with (the client needs one even when the server has none)",
    )
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def _client_options(args: argparse.Namespace) -> dict:
    # No retries: a request the server refuses or drops must show, not be sent again.
    return {
        "base_url": args.base_url,
        "api_key": args.api_key,
        "timeout": REQUEST_TIMEOUT_S,
        "max_retries": 0,
    }


def client(args: argparse.Namespace) -> OpenAI:
    return OpenAI(**_client_options(args))


def async_client(args: argparse.Namespace) -> AsyncOpenAI:
    return AsyncOpenAI(**_client_options(args))


def model_id(api: OpenAI) -> str:
    """The one model the server serves, as GET /v1/models names it."""
    models = api.models.list().data
    check(len(models) == 1, f"GET /v1/models should list the one model served: {models}")
    check(bool(models[0].id), f"the model has no id: {models[0]}")
    return models[0].id


def server_root(base_url: str) -> str:
    """http://HOST:PORT for http://HOST:PORT/v1."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def metrics(base_url: str, api_key: str | None = None) -> dict[str, float]:
    """GET /metrics (Prometheus text), unlabelled samples only: name -> value."""
    request = urllib.request.Request(server_root(base_url) + "/metrics")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" ")
        if "{" in name:
            continue
        values[name] = float(rest.split()[0])
    return values


def wait_until_no_blocks_leak(
    base_url: str, api_key: str | None, within_s: float = 5.0, after: str = "the last request ended"
) -> dict[str, float]:
    """Polls /metrics until no KV block is in use; the metrics then.

    A request that ended, finished or cancelled, gives back its blocks; the server may
    take a moment to notice a closed connection, hence the polling.
    """
    deadline = time.monotonic() + within_s
    while True:
        m = metrics(base_url, api_key)
        for name in (KV_BLOCKS_USED, KV_BLOCKS_CACHED):
            check(name in m, f"/metrics has no gauge {name}: {sorted(m)}")
        if m[KV_BLOCKS_USED] == 0:
            return m
        if time.monotonic() > deadline:
            raise Failed(
                f"KV blocks leaked: {within_s:.0f} s after {after}, {KV_BLOCKS_USED} is "
                f"{m[KV_BLOCKS_USED]:g} ({KV_BLOCKS_CACHED}, the prefix cache's idle blocks: {m[KV_BLOCKS_CACHED]:g})"
            )
        time.sleep(0.2)


def chat(system: str, user: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


@dataclass
class Streamed:
    """What one streamed chat completion brought."""

    text: str = ""
    finish_reason: str | None = None
    # Seconds from sending the request to the first chunk that carries text.
    time_to_first_token: float | None = None
    chunks: list = field(default_factory=list)
    usage: object = None


def stream_chat(api: OpenAI, **request) -> Streamed:
    """Sends a streaming chat completion and reads it to the end."""
    out = Streamed()
    start = time.monotonic()
    stream = api.chat.completions.create(stream=True, **request)
    for chunk in stream:
        out.chunks.append(chunk)
        if chunk.usage is not None:
            out.usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                if out.time_to_first_token is None:
                    out.time_to_first_token = time.monotonic() - start
                out.text += choice.delta.content
            if choice.finish_reason is not None:
                out.finish_reason = choice.finish_reason
    return out


def greedy_chat(api: OpenAI, model: str, messages: list[dict], max_tokens: int) -> str:
    """The server's greedy reply to `messages`, alone (non-streaming)."""
    reply = api.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0)
    check(len(reply.choices) == 1, f"one choice asked for: {reply}")
    return reply.choices[0].message.content


async def stream_chat_async(api: AsyncOpenAI, *, cancel_after_chunks: int | None = None, **request) -> str | None:
    """Streams a chat completion; the text, or None when it was cancelled on purpose
    after `cancel_after_chunks` chunks (the stream is closed, as a client that goes away
    does)."""
    stream = await api.chat.completions.create(stream=True, **request)
    text = ""
    seen = 0
    try:
        async for chunk in stream:
            seen += 1
            for choice in chunk.choices:
                text += choice.delta.content or ""
            if cancel_after_chunks is not None and seen >= cancel_after_chunks:
                return None
    finally:
        await stream.close()
    check(
        cancel_after_chunks is None,
        f"a request meant to be cancelled after {cancel_after_chunks} chunks ended after {seen}: {text!r}",
    )
    return text
