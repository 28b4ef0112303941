#!/usr/bin/env bash
# Prefill and decode speed of `wisp generate`, llama-bench style: a prompt of P tokens
# (" hello" repeated, one token each for SmolLM2's tokenizer), exactly N generated tokens,
# greedy, one warm-up run, then the median of R runs. Shader/pipeline compilation is
# reported on its own (first run), not in the medians.
#
#   scripts/bench-generate.sh [-m MODEL] [-p 128] [-n 64] [-r 5] [-- extra wisp flags]
# shellcheck source=lib/fail.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fail.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WISP="${CARGO_TARGET_DIR:-$ROOT/target}/release/wisp"
MODEL=smollm2 P=128 N=64 R=5
while [ $# -gt 0 ]; do
    case "$1" in
        -m) MODEL=$2; shift ;;
        -p) P=$2; shift ;;
        -n) N=$2; shift ;;
        -r) R=$2; shift ;;
        --) shift; break ;;
        *) echo "bench-generate.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ -x "$WISP" ] || { echo "build wisp first: cargo build --release -p wisp" >&2; exit 1; }
PROMPT=$(printf ' hello%.0s' $(seq "$P"))
run() { "$WISP" generate -m "$MODEL" -p "$PROMPT" -n "$N" --temp 0 --ignore-eos --ctx $((P + N + 8)) --json "$@" 2>/dev/null; }
echo "warm-up (includes pipeline compilation):"
run "$@" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("  load %.2f s, pipeline creation %.2f s, first prefill %.1f tok/s; %s, kernels %s, prompt %d tokens"
      % (d["load_s"], d["pipeline_compile_s"], d["prefill_tok_s"], d["adapter"], d["variant"], len(d["prompt_ids"])))'
for _ in $(seq "$R"); do run "$@"; done | python3 -c '
import json, statistics, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
pp = [r["prefill_tok_s"] for r in runs]; tg = [r["decode_tok_s"] for r in runs]
print(f"{len(runs)} runs: prefill median {statistics.median(pp):.2f} tok/s (min {min(pp):.2f}, max {max(pp):.2f}); decode median {statistics.median(tg):.2f} tok/s (min {min(tg):.2f}, max {max(tg):.2f})")'
