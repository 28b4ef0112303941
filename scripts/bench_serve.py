#!/usr/bin/env python3
"""Load generator for OpenAI-compatible servers (issue 16's serving benchmark).

    bench_serve.py run --base-url http://127.0.0.1:PORT/v1 --name NAME [options]
    bench_serve.py summary A.json B.json ... [--baseline NAME]

`run`: for each level C (1, 4, 16, 64 by default), C concurrent clients, each sending
streaming chat completions back to back, share a fixed number of requests,
max(requests-per-client x C, min-requests), so that every level ends by itself. Per level
it reports the requests, output tokens, wall time, aggregate output tok/s, time to first
token (p50/p99) and inter-token latency (p50/p99), as a markdown table and JSON.

- Output tokens are the server's own count (`usage.completion_tokens`, asked for with
  stream_options.include_usage); a server that sends no usage has its text chunks counted
  instead, and the JSON says which (`tokens_from`).
- Time to first token: from sending the request to the first chunk that carries text.
- Inter-token latency: the gaps between consecutive text chunks of one request, as they
  arrive here (a chunk may hold more than one token when a server batches its writes; the
  per-request mean time per output token, TPOT, is reported too).
- Prompts come from a fixed list of mixed lengths, each prefixed with the request's
  number so that no two requests share more than the chat template's opening: every
  request's prompt is really computed, on servers with and without prefix caches.
  `--ignore-eos` sends llama.cpp's `ignore_eos` (exactly max_tokens tokens); for servers
  without it the prompts ask for long answers, so replies run to max_tokens anyway (the
  finish reasons are reported, so a cut-short reply shows).
- Before each level, C short requests (4 tokens) run at once, unmeasured, so that kernels
  a server builds for a batch shape on first use are not timed (--no-level-warmup: not).
- Where the server has Prometheus /metrics (wisp serve; llama-server with --metrics), the
  counters before and after each level give the engine's steps and generations per step.

`summary`: the runs of several servers side by side, with each level's throughput against
one client's, and the issue's goal checked for the baseline server (default: wisp).

It uses the official `openai` client (AsyncOpenAI, in the test venv of scripts/setup.sh
--test) and the HTTP client it brings (httpx2 for openai 3, httpx before) for /health and
/metrics, sharing one connection pool.
"""

import argparse
import asyncio
import json
import math
import sys
import time

# Mixed lengths, from a line to a few paragraphs (about 15 to 250 tokens with the
# request-number prefix), each asking for more than max_tokens of answer.
PROMPTS = [
    "Write a long story about a lighthouse keeper.",
    "Explain in detail how a bicycle works, part by part.",
    "List twenty ideas for a weekend trip and describe each one.",
    "Describe the water cycle step by step, with examples from everyday life, and then "
    "explain why it matters for farming, for cities and for the weather we see each day.",
    "You are a travel guide. A family with two children is visiting a coastal town for "
    "three days in late spring. They like walking, museums and trying local food, but the "
    "youngest child gets tired quickly. Write a detailed day-by-day plan with morning, "
    "afternoon and evening activities, where to eat, and what to do if it rains.",
    "Tell me everything you know about the history of bread, from the first flatbreads "
    "to modern bakeries.",
    "Here are some notes from a meeting. The team discussed the launch of a new mobile "
    "app for booking tennis courts. Marketing wants the launch in March, before the "
    "outdoor season starts. Engineering says the payment integration is not finished and "
    "that testing on older phones has found crashes when the calendar view loads more "
    "than a month of bookings. Support asked for a help page and a way to cancel a "
    "booking without calling the club. The club owners want to see weekly reports of "
    "bookings per court and per hour. Everyone agreed that the first version can skip "
    "the loyalty points. Write a long, detailed summary of the meeting, then list every "
    "open question, every decision and every task with who should do it, and finally "
    "write an email to the club owners explaining the plan.",
    "Write a detailed recipe for vegetable soup, with a list of ingredients and numbered "
    "steps.",
    "Imagine a city in the year 2200. Describe its streets, its transport, its homes, its "
    "schools and a day in the life of a child who lives there. Use rich detail and keep "
    "going for several paragraphs.",
    "Give a thorough explanation of why the sky is blue and why sunsets are red.",
    "A student asks: what is the difference between weather and climate? Answer at "
    "length, with examples, common misunderstandings, and a short quiz at the end.",
    "Write a long letter from a sailor to his sister, describing a storm at sea, the "
    "ship, the crew and what he misses about home. Make it at least five paragraphs and "
    "full of small details.",
]


# Given explicitly, so that every server renders the same prompt: left out, a server
# picks its own default (SmolLM2's template has one, wisp gives SmolLM2 an empty one).
SYSTEM = "You are a helpful assistant."


def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = (len(v) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def ms(x):
    return None if x is None else round(x * 1000.0, 1)


CUT = "cut short (level timeout)"


class Request:
    """What one streamed request saw."""

    def __init__(self, index):
        self.index = index
        self.sent = None
        self.chunk_times = []  # arrival of each chunk that carried text
        self.usage_tokens = None
        self.prompt_tokens = None
        self.finish_reason = None
        self.error = None
        self.done = False

    @property
    def tokens(self):
        return self.usage_tokens if self.usage_tokens is not None else len(self.chunk_times)


async def one_request(client, model, req, args, extra_body, prompt=None, max_tokens=None):
    index = req.index
    if prompt is None:
        prompt = f"Request {index}. {PROMPTS[index % len(PROMPTS)]}"
    req.sent = time.perf_counter()
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
            max_tokens=max_tokens or args.max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=extra_body,
        )
        async for chunk in stream:
            now = time.perf_counter()
            usage = getattr(chunk, "usage", None)
            if usage is not None and usage.completion_tokens is not None:
                req.usage_tokens = usage.completion_tokens
                req.prompt_tokens = usage.prompt_tokens
            for choice in chunk.choices or []:
                text = choice.delta.content if choice.delta is not None else None
                if text:
                    req.chunk_times.append(now)
                if choice.finish_reason:
                    req.finish_reason = choice.finish_reason
        req.done = True
    except asyncio.CancelledError:
        req.error = CUT
        raise
    except Exception as e:  # recorded per request: one failure must not end the level
        cause = f" ({type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
        req.error = f"{type(e).__name__}: {e}{cause}"[:300]
    return req


async def scrape_metrics(http, metrics_url):
    """Plain (unlabelled) Prometheus samples as {name: value}; {} when there are none."""
    if not metrics_url:
        return {}
    try:
        r = await http.get(metrics_url, timeout=10)
        if r.status_code != 200:
            return {}
    except Exception:
        return {}
    out = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#") or "{" in line:
            continue
        parts = line.split()
        if len(parts) >= 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out


def engine_figures(before, after, wall):
    """Steps and generations per step over a level, from the servers' own counters."""
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    fig = {}
    if "wisp_batch_size_count" in d:  # wisp serve: one sample per engine step
        steps = d["wisp_batch_size_count"]
        fig["steps"] = int(steps)
        if steps > 0:
            fig["mean_batch"] = round(d["wisp_batch_size_sum"] / steps, 2)
            fig["ms_per_step"] = round(wall * 1000.0 / steps, 1)
        fig["preemptions"] = int(d.get("wisp_preemptions_total", 0))
        # Speculative decoding: drafted tokens verified, and those kept.
        fig["drafted"] = int(d.get("wisp_draft_tokens_total", 0))
        fig["draft_accepted"] = int(d.get("wisp_draft_tokens_accepted_total", 0))
        fig["prompt_tokens"] = int(d.get("wisp_prompt_tokens_total", 0))
    elif "llamacpp:n_decode_total" in d:  # llama-server --metrics
        steps = d["llamacpp:n_decode_total"]
        fig["steps"] = int(steps)
        if steps > 0:
            fig["ms_per_step"] = round(wall * 1000.0 / steps, 1)
        busy = "llamacpp:n_busy_slots_per_decode"
        if busy in after and steps > 0:
            # A running mean over the server's life (busy slots summed over decode
            # calls, divided by their count): this level's own mean is the difference
            # of the sums over the difference of the counts.
            n_a, n_b = after["llamacpp:n_decode_total"], before.get("llamacpp:n_decode_total", 0.0)
            summed = after[busy] * n_a - before.get(busy, 0.0) * n_b
            fig["mean_batch"] = round(summed / steps, 2)
        fig["prompt_tokens"] = int(d.get("llamacpp:prompt_tokens_total", 0))
    return fig


async def run_level(client, http, model, clients, n_requests, args, extra_body, metrics_url):
    queue = asyncio.Queue()
    for i in range(n_requests):
        queue.put_nowait(args.offset + i)
    args.offset += n_requests
    results = []  # every request started, finished or not

    async def worker():
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            req = Request(i)
            results.append(req)
            await one_request(client, model, req, args, extra_body)

    before = await scrape_metrics(http, metrics_url)
    start = time.perf_counter()
    workers = [asyncio.ensure_future(worker()) for _ in range(clients)]
    _, pending = await asyncio.wait(workers, timeout=args.level_timeout)
    cut_short = bool(pending)
    if cut_short:
        # Cancelling a worker cancels its request: the closed connection tells the
        # server to stop that generation. What the request received so far stays in
        # its Request and counts in the level's tokens.
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    end = time.perf_counter()
    wall = end - start
    after = await scrape_metrics(http, metrics_url)
    return summarize(clients, n_requests, results, wall, cut_short, engine_figures(before, after, wall))


def summarize(clients, n_requests, results, wall, cut_short, engine):
    ok = [r for r in results if r.done and r.error is None]
    cut = [r for r in results if r.error == CUT]
    errors = [r for r in results if r.error is not None and r.error != CUT]
    ttft = [r.chunk_times[0] - r.sent for r in ok if r.chunk_times]
    itl = []
    tpot = []
    for r in ok:
        t = r.chunk_times
        itl.extend(b - a for a, b in zip(t, t[1:]))
        if len(t) >= 2 and r.tokens >= 2:
            tpot.append((t[-1] - t[0]) / (r.tokens - 1))
    # Tokens that cut-short requests had streamed were generated in this wall time too.
    tokens = sum(r.tokens for r in ok) + sum(len(r.chunk_times) for r in cut)
    finish = {}
    for r in ok:
        finish[r.finish_reason or "none"] = finish.get(r.finish_reason or "none", 0) + 1
    prompt_tokens = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    return {
        "clients": clients,
        "requests": n_requests,
        "completed": len(ok),
        "errors": len(errors),
        "first_errors": sorted({r.error for r in errors})[:3],
        "cut_short": cut_short,
        "output_tokens": tokens,
        "tokens_from": "usage" if ok and all(r.usage_tokens is not None for r in ok) else "chunks",
        "mean_prompt_tokens": round(sum(prompt_tokens) / len(prompt_tokens), 1) if prompt_tokens else None,
        "finish_reasons": finish,
        "wall_s": round(wall, 2),
        "output_tok_s": round(tokens / wall, 2) if wall > 0 else None,
        "ttft_p50_ms": ms(percentile(ttft, 50)),
        "ttft_p99_ms": ms(percentile(ttft, 99)),
        "itl_p50_ms": ms(percentile(itl, 50)),
        "itl_p99_ms": ms(percentile(itl, 99)),
        "tpot_mean_ms": ms(sum(tpot) / len(tpot)) if tpot else None,
        "engine": engine,
    }


def fmt(x, digits=1):
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def drafts(engine):
    """Drafted tokens and those kept, where the server counts them."""
    if "drafted" not in engine:
        return "—"
    return f"{engine['drafted']} ({engine['draft_accepted']})"


def level_table(levels):
    base = next((lv["output_tok_s"] for lv in levels if lv["clients"] == 1 and lv["output_tok_s"]), None)
    rows = [
        "| clients | requests (done/errors) | output tokens | wall s | output tok/s | × 1 client "
        "| TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | TPOT ms | steps | gens/step | ms/step "
        "| drafts (kept) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in levels:
        if lv.get("skipped"):
            rows.append(f"| {lv['clients']} | skipped: {lv['skipped']} |" + " |" * 13)
            continue
        e = lv.get("engine", {})
        scale = lv["output_tok_s"] / base if base and lv["output_tok_s"] is not None else None
        note = " (cut short)" if lv["cut_short"] else ""
        rows.append(
            f"| {lv['clients']} | {lv['requests']} ({lv['completed']}/{lv['errors']}){note} "
            f"| {lv['output_tokens']} | {fmt(lv['wall_s'])} | {fmt(lv['output_tok_s'], 2)} "
            f"| {fmt(scale, 2)} | {fmt(lv['ttft_p50_ms'])} | {fmt(lv['ttft_p99_ms'])} "
            f"| {fmt(lv['itl_p50_ms'])} | {fmt(lv['itl_p99_ms'])} | {fmt(lv['tpot_mean_ms'])} "
            f"| {fmt(e.get('steps'))} | {fmt(e.get('mean_batch'), 2)} "
            f"| {fmt(e.get('ms_per_step'))} | {drafts(e)} |"
        )
    return "\n".join(rows)


async def wait_ready(http, root, timeout):
    """Polls GET /health until 200 (both servers answer 503 while loading)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = await http.get(root + "/health", timeout=5)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except Exception as e:
            last = f"{type(e).__name__}: {e}"
        await asyncio.sleep(0.5)
    raise SystemExit(f"bench_serve.py: {root}/health not ready after {timeout:.0f} s ({last})")


async def cmd_run(args):
    from openai import AsyncOpenAI

    try:  # the HTTP client the installed openai is built on: httpx2 in openai 3
        import httpx2 as httpx
    except ImportError:
        import httpx

    base = args.base_url.rstrip("/")
    root = base[: -len("/v1")] if base.endswith("/v1") else base
    levels = [int(x) for x in args.levels.split(",") if x]
    extra_body = {"ignore_eos": True} if args.ignore_eos else None
    # A new connection per request: llama-server (cpp-httplib) closes kept-alive
    # connections after a while, and a request sent on one it is closing fails with a
    # connection error (the client never retries). On loopback a connection costs well
    # under a millisecond, the same for every server.
    limits = httpx.Limits(max_connections=max(levels) + 8, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(None), limits=limits) as http:
        await wait_ready(http, root, args.ready_timeout)
        client = AsyncOpenAI(base_url=base, api_key=args.api_key, max_retries=0,
                             http_client=http, timeout=httpx.Timeout(None))
        model = args.model
        if not model:
            models = await client.models.list()
            model = models.data[0].id
        metrics_url = None if args.no_metrics else root + "/metrics"
        if metrics_url and not await scrape_metrics(http, metrics_url):
            metrics_url = None
        args.offset = 0
        # One request first, not measured: shader and pipeline compilation, first
        # allocations and caches belong to start-up, not to any level.
        t = time.perf_counter()
        warm = Request(10**6)
        await one_request(client, model, warm, args, extra_body)
        warmup_s = time.perf_counter() - t
        if warm.error:
            raise SystemExit(f"bench_serve.py: the warm-up request failed: {warm.error}")
        log(f"{args.name}: model {model}, warm-up {warmup_s:.1f} s ({warm.tokens} tokens)")
        out = {
            "server": args.name,
            "base_url": base,
            "model": model,
            "settings": {
                "levels": levels,
                "max_tokens": args.max_tokens,
                "requests_per_client": args.requests_per_client,
                "min_requests": args.min_requests,
                "ignore_eos": args.ignore_eos,
                "level_timeout_s": args.level_timeout,
                "temperature": 0,
                "prompts": len(PROMPTS),
            },
            "warmup_s": round(warmup_s, 2),
            "levels": [],
        }
        stop_reason = None
        for c in levels:
            if stop_reason:
                out["levels"].append({"clients": c, "skipped": stop_reason})
                continue
            n = max(args.requests_per_client * c, args.min_requests)
            warm_s = None
            if not args.no_level_warmup:
                # C short requests at once, not measured: a server that builds kernels for
                # a batch shape on first use (llama.cpp's Vulkan pipelines, compiled by
                # lavapipe) does it here rather than inside the level.
                t = time.perf_counter()
                warm = [Request(-1 - i) for i in range(c)]
                await asyncio.gather(*(one_request(client, model, w, args, extra_body,
                                                   prompt=f"Warm-up {c}.{i}. Say hello.", max_tokens=4)
                                       for i, w in enumerate(warm)))
                warm_s = round(time.perf_counter() - t, 2)
            log(f"{args.name}: {c} clients, {n} requests" + (f" (level warm-up {warm_s} s)" if warm_s else ""))
            lv = await run_level(client, http, model, c, n, args, extra_body, metrics_url)
            lv["warmup_s"] = warm_s
            out["levels"].append(lv)
            log(f"{args.name}: {c} clients: {lv['output_tokens']} tokens in {lv['wall_s']} s = "
                f"{lv['output_tok_s']} tok/s, TTFT p50 {lv['ttft_p50_ms']} ms, ITL p50 {lv['itl_p50_ms']} ms"
                + (f", {lv['errors']} errors: {lv['first_errors']}" if lv["errors"] else "")
                + (" (cut short)" if lv["cut_short"] else ""))
            if lv["cut_short"]:
                # A level that ran out of time says the next, larger one would too.
                stop_reason = f"level {c} ran past {args.level_timeout:.0f} s"
    md = f"### {args.name}\n\nmodel `{out['model']}`, max_tokens {args.max_tokens}, " \
         f"ignore_eos {'yes' if args.ignore_eos else 'no'}, warm-up {out['warmup_s']} s\n\n" \
         + level_table(out["levels"]) + "\n"
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    print(md)
    failed = [lv for lv in out["levels"] if not lv.get("skipped") and lv["completed"] == 0]
    return 1 if failed else 0


def cmd_summary(args):
    runs = []
    for path in args.files:
        with open(path) as f:
            runs.append(json.load(f))
    lines = ["| server | clients | output tok/s | × 1 client | TTFT p50 ms | TTFT p99 ms "
             "| ITL p50 ms | ITL p99 ms | gens/step | ms/step | done/requests |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for run in runs:
        base = next((lv["output_tok_s"] for lv in run["levels"]
                     if lv["clients"] == 1 and lv.get("output_tok_s")), None)
        for lv in run["levels"]:
            if lv.get("skipped"):
                lines.append(f"| {run['server']} | {lv['clients']} | skipped: {lv['skipped']} |"
                             + " |" * 8)
                continue
            e = lv.get("engine", {})
            scale = lv["output_tok_s"] / base if base and lv["output_tok_s"] is not None else None
            lines.append(
                f"| {run['server']} | {lv['clients']} | {fmt(lv['output_tok_s'], 2)} | {fmt(scale, 2)} "
                f"| {fmt(lv['ttft_p50_ms'])} | {fmt(lv['ttft_p99_ms'])} | {fmt(lv['itl_p50_ms'])} "
                f"| {fmt(lv['itl_p99_ms'])} | {fmt(e.get('mean_batch'), 2)} "
                f"| {fmt(e.get('ms_per_step'))} | {lv['completed']}/{lv['requests']}"
                + (" cut short" if lv["cut_short"] else "") + " |")
    text = ["## Serving benchmark", "", "\n".join(lines), ""]
    text += goal_lines(runs, args.baseline)
    print("\n".join(text))
    return 0


def goal_lines(runs, baseline):
    """Issue 16's goal, and where the baseline's throughput stops growing."""
    by_name = {r["server"]: r for r in runs}
    me = by_name.get(baseline)
    if me is None:
        return []

    def tok_s(run, c):
        lv = next((lv for lv in run["levels"] if lv["clients"] == c and not lv.get("skipped")), None)
        return None if lv is None else lv.get("output_tok_s")

    out = []
    one, sixteen = tok_s(me, 1), tok_s(me, 16)
    if one and sixteen:
        ratio = sixteen / one
        out.append(f"- {baseline} at 16 clients: {sixteen:.2f} tok/s, {ratio:.2f}× one client's "
                   f"({one:.2f}); goal ≥ 4×: {'met' if ratio >= 4 else 'not met'}.")
    for r in runs:
        if r is me:
            continue
        theirs = tok_s(r, 16)
        if sixteen and theirs:
            out.append(f"- against {r['server']} at 16 clients: {sixteen:.2f} vs {theirs:.2f} tok/s "
                       f"({sixteen / theirs:.2f}×): {'ahead' if sixteen > theirs else 'behind'}.")
    # Where growth stops: the first level whose throughput is under 1.2× the previous
    # level's, though it has more clients.
    done = [lv for lv in me["levels"] if not lv.get("skipped") and lv.get("output_tok_s")]
    for prev, cur in zip(done, done[1:]):
        if cur["output_tok_s"] < 1.2 * prev["output_tok_s"]:
            why = growth_reason(prev, cur)
            out.append(f"- {baseline}'s throughput stops growing between {prev['clients']} and "
                       f"{cur['clients']} clients ({prev['output_tok_s']:.2f} → {cur['output_tok_s']:.2f} tok/s)."
                       + why)
            break
    else:
        if len(done) > 1:
            out.append(f"- {baseline}'s throughput still grows at {done[-1]['clients']} clients.")
    return out


def growth_reason(prev, cur):
    """What the figures say about a level that gained little on the one before."""
    pb, cb = prev.get("engine", {}).get("mean_batch"), cur.get("engine", {}).get("mean_batch")
    pi, ci = prev.get("itl_p50_ms"), cur.get("itl_p50_ms")
    if not (pb and cb and pi and ci):
        return ""
    # A decode step's time is about the inter-token latency while generations run
    # together: compare how it grew with how many generations each step carried.
    step, batch = ci / pi, cb / pb
    text = (f" A decode step (ITL p50) went {pi:.0f} → {ci:.0f} ms ({step:.1f}×) while carrying "
            f"{pb:.2f} → {cb:.2f} generations ({batch:.1f}×)")
    if step >= 0.8 * batch:
        return text + (": each generation costs a step about as much batched as alone (or more), so "
                       "batching adds no throughput; the adapter is saturated by work that grows with "
                       "the batch (compute), not held back by weight reads that batching would share.")
    return text + (f": the steps batch well, so the time goes elsewhere: prefill (TTFT p50 "
                   f"{fmt(prev.get('ttft_p50_ms'), 0)} → {fmt(cur.get('ttft_p50_ms'), 0)} ms) or gaps "
                   f"between steps.")


def log(msg):
    print(f"bench_serve: {msg}", file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="load one server")
    r.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8080/v1")
    r.add_argument("--name", required=True, help="the server's name in the reports")
    r.add_argument("--model", help="model id to ask for (default: the first of GET /v1/models)")
    r.add_argument("--api-key", default="none")
    r.add_argument("--levels", default="1,4,16,64")
    r.add_argument("--max-tokens", type=int, default=32)
    r.add_argument("--requests-per-client", type=int, default=2)
    r.add_argument("--min-requests", type=int, default=8)
    r.add_argument("--ignore-eos", action="store_true", help="send llama.cpp's ignore_eos")
    r.add_argument("--level-timeout", type=float, default=1800.0,
                   help="seconds before a level is cut short (larger levels are then skipped)")
    r.add_argument("--ready-timeout", type=float, default=600.0)
    r.add_argument("--no-metrics", action="store_true", help="do not read /metrics")
    r.add_argument("--no-level-warmup", action="store_true",
                   help="skip the C short unmeasured requests before each level")
    r.add_argument("--json", help="write the results here")
    r.add_argument("--md", help="write the markdown table here")
    s = sub.add_parser("summary", help="several runs side by side")
    s.add_argument("files", nargs="+")
    s.add_argument("--baseline", default="wisp")
    args = p.parse_args()
    if args.cmd == "run":
        return asyncio.run(cmd_run(args))
    return cmd_summary(args)


if __name__ == "__main__":
    sys.exit(main())
