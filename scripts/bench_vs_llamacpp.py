#!/usr/bin/env python3
"""The summary of scripts/bench-vs-llamacpp.sh: one markdown table of Wisp and
llama.cpp on the same GGUF, from DIR/wisp.json (`wisp bench -o json`) and each
DIR/llama-BACKEND.json (`llama-bench -o json`).

Generation's share of bandwidth uses Wisp's measurements for both runtimes: the bytes a
generated token reads (weights and KV cache, from Wisp's cost model of the same file)
and the adapter's streaming-read bandwidth (Wisp's probe).

Usage: bench_vs_llamacpp.py DIR
"""
import json
import sys
from pathlib import Path


def wisp_rows(run):
    """Wisp's tests as (kind, tokens, tok/s, std, bytes per token)."""
    for t in run["tests"]:
        kind = "pp" if t["kind"] == "prefill" else "tg"
        yield kind, t["tokens"], t["tokens_per_second"], t["tokens_per_second_std"], t.get("bytes_per_token")


def llama_rows(results):
    """llama-bench's tests as (kind, tokens, tok/s, std)."""
    for r in results:
        if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0:
            yield "tg", r["n_gen"], r["avg_ts"], r["stddev_ts"]
        elif r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0:
            yield "pp", r["n_prompt"], r["avg_ts"], r["stddev_ts"]


def cell(value, std):
    return f"{value:.2f} ± {std:.2f}"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    wisp = json.loads((out / "wisp.json").read_text())
    bandwidth = wisp["bandwidth"]["gb_per_s"] * 1e9
    tests = {}
    tg_bytes = {}
    for kind, n, ts, std, bpt in wisp_rows(wisp):
        tests.setdefault((kind, n), {})["Wisp"] = (ts, std)
        if kind == "tg" and bpt:
            tg_bytes[n] = bpt
    runtimes = ["Wisp"]
    devices = {"Wisp": f'{wisp["adapter"]["name"]} ({wisp["adapter"]["backend"]}, {wisp["adapter"]["variant"]})'}
    for path in sorted(out.glob("llama-*.json")):
        backend = path.stem.removeprefix("llama-")
        name = f"llama.cpp {backend}"
        results = json.loads(path.read_text())
        if not results:
            sys.exit(f"{path}: llama-bench wrote no results")
        runtimes.append(name)
        first = results[0]
        devices[name] = first.get("gpu_info") or first.get("cpu_info") or backend
        for kind, n, ts, std in llama_rows(results):
            tests.setdefault((kind, n), {})[name] = (ts, std)

    model = wisp["model"]
    print(f'Model: {model["name"]}, {model["tensor_bytes"] / 2**30:.2f} GiB of tensors')
    print(f"Adapter bandwidth (Wisp's streaming-read probe): {bandwidth / 1e9:.1f} GB/s")
    for r in runtimes:
        print(f"- {r}: {devices[r]}")
    print()
    header = ["test"] + [f"{r} tok/s" for r in runtimes]
    for r in runtimes[1:]:
        header.append(f"Wisp / {r}")
    header += [f"{r} % of bandwidth" for r in runtimes]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for (kind, n) in sorted(tests, key=lambda k: (k[0] != "pp", k[1])):
        row = tests[(kind, n)]
        cells = [f"{kind}{n}"]
        cells += [cell(*row[r]) if r in row else "–" for r in runtimes]
        for r in runtimes[1:]:
            ok = "Wisp" in row and r in row and row[r][0] > 0
            cells.append(f"{row['Wisp'][0] / row[r][0]:.2f}×" if ok else "–")
        for r in runtimes:
            share = kind == "tg" and r in row and n in tg_bytes
            cells.append(f"{100 * row[r][0] * tg_bytes[n] / bandwidth:.1f}%" if share else "–")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
