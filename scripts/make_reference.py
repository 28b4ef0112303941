#!/usr/bin/env python3
"""Regenerates the reference outputs in tests/reference: what llama.cpp (through
llama-cpp-python 0.3.36, CPU) and a plain f32 reference compute on the known models.

For each model NAME (a `wisp fetch` name, e.g. smollm2-135m-instruct-q4_1) it writes

  NAME.json                 the model file's name; the capital prompt (text, ids, llama.cpp's
                            top 5 at its last position); the chat prompt (messages, the text
                            the model's chat template renders, its ids); and, for the
                            byte-level BPE models, tokenizer cases (texts and llama.cpp's ids,
                            special tokens parsed)
  NAME.logits.safetensors   f32 logits: capital.llamacpp_logits [T, vocab] (every position),
                            chat.llamacpp_logits_last [vocab]; for SmolLM2 also
                            capital.f32ref_logits_last and chat.f32ref_logits_last from
                            scripts/numpy_forward.py in f32 (every weight dequantized,
                            activations in f32)

The model files come from `target/release/wisp fetch NAME` (build it first with
`cargo build --release -p wisp`). tests/reference/README.md says what the files hold and
the tolerances the tests apply to them.

    scripts/make_reference.py [--out DIR] [--models NAME ...] [--threads N]
    scripts/make_reference.py --check [--models NAME ...]

--check regenerates into a temporary folder and compares with the files in --out
(default tests/reference): every text and token id must be equal, and every logit within
--tolerance (max |Δ|, default 1e-3: the thread count and the CPU's SIMD width may change
the order of float sums). It prints each difference and exits 1 when any is out of bounds.

Prerequisites (a virtual environment outside the repository is best):
    pip install llama-cpp-python==0.3.36 gguf numpy safetensors jinja2
llama-cpp-python builds llama.cpp from its source package (a C++ compiler is needed; the
default build is the CPU one); that takes 10 minutes or more on 2 cores.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LLAMA_CPP_PYTHON = "0.3.36"
PREREQUISITES = f"pip install llama-cpp-python=={LLAMA_CPP_PYTHON} gguf numpy safetensors jinja2"

# The models: their `wisp fetch` names, and which optional parts their reference has
# (f32 reference logits for SmolLM2 only; tokenizer cases for the two byte-level BPE
# vocabularies, none for Gemma's SentencePiece one, as in the committed files).
MODELS = {
    "smollm2-135m-instruct-q4_1": {"tokenizer_cases": True, "f32ref": True},
    "qwen2.5-coder-0.5b-instruct-q4_k_m": {"tokenizer_cases": True, "f32ref": False},
    "gemma-3-270m-q4_k_m": {"tokenizer_cases": False, "f32ref": False},
}

CAPITAL = "The capital of France is"
CHAT_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]

# Texts whose tokenization the tests compare with llama.cpp's: spaces, digits,
# contractions, accents and emoji, code, CJK, special tokens, newlines, the empty text.
TOKENIZER_TEXTS = [
    "Hello world",
    CAPITAL,
    "  two leading spaces and trailing  ",
    "numbers 1234567 and 3.14159, 2024-01-01",
    "don't I'll we're THEY'VE",
    "naïve café — “quotes” 😀 ñ",
    "def f(x):\n    return x**2\n\n\tTabbed",
    "你好，世界。日本語もテスト",
    "<|im_start|>user\nHi<|im_end|>\n",
    "a\n\n\nb   \n c",
    "hello<|endoftext|>world",
    "",
]


def need_prerequisites():
    """Imports the Python packages this script needs, or exits naming what to install."""
    missing = []
    for module in ("llama_cpp", "gguf", "numpy", "safetensors", "jinja2"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        sys.exit(f"make_reference.py: missing Python modules {', '.join(missing)}; install them with\n    {PREREQUISITES}")
    import llama_cpp

    if llama_cpp.__version__ != LLAMA_CPP_PYTHON:
        sys.exit(
            f"make_reference.py: llama-cpp-python {llama_cpp.__version__} is installed, the references are from "
            f"{LLAMA_CPP_PYTHON}:\n    {PREREQUISITES}"
        )


def model_path(wisp, name):
    """The model's file in Wisp's cache, fetched by `wisp fetch NAME` if need be."""
    if not wisp.is_file():
        sys.exit(f"make_reference.py: {wisp} is missing; build it with `cargo build --release -p wisp`")
    run = subprocess.run([str(wisp), "fetch", name], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"make_reference.py: `{wisp} fetch {name}` failed:\n{run.stderr.strip()}")
    return Path(run.stdout.strip().splitlines()[-1])


def render_chat(llm, messages):
    """The chat prompt as llama-cpp-python renders it: the GGUF's template
    (`tokenizer.chat_template`) through its Jinja2 formatter, with the generation prompt.
    A model that ships no template (Gemma-3-270M, a base model) gets its messages'
    contents as plain text, each followed by a newline."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if template is None:
        return "".join(m["content"] + "\n" for m in messages)
    # BOS/EOS texts as llama-cpp-python's Llama.__init__ passes them to its formatter.
    token_text = lambda i: llm._model.token_get_text(i) if i != -1 else ""
    formatter = Jinja2ChatFormatter(template, eos_token=token_text(llm.token_eos()), bos_token=token_text(llm.token_bos()))
    return formatter(messages=messages).prompt


def tokenize(llm, text):
    """llama.cpp's tokenization with special tokens parsed; BOS only where the model asks
    for it (`add_bos_token`: Gemma yes, SmolLM2 and Qwen2 no)."""
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)


def llamacpp_logits(llm, ids):
    """llama.cpp's logits [T, vocab] at every position of `ids`, from an empty cache."""
    import numpy as np

    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def piece(llm, token):
    return llm.detokenize([token]).decode("utf-8", errors="replace")


def make_model(name, path, options, out_dir, threads):
    import numpy as np
    from llama_cpp import Llama
    from safetensors.numpy import save_file

    print(f"{name}: {path}", file=sys.stderr)
    llm = Llama(model_path=str(path), n_ctx=512, logits_all=True, n_threads=threads, n_threads_batch=threads, verbose=False)

    capital_ids = tokenize(llm, CAPITAL)
    capital_logits = llamacpp_logits(llm, capital_ids)
    last = capital_logits[-1]
    top5 = [[int(t), piece(llm, int(t)), float(last[t])] for t in np.argsort(-last, kind="stable")[:5]]

    rendered = render_chat(llm, CHAT_MESSAGES)
    chat_ids = tokenize(llm, rendered)
    chat_last = llamacpp_logits(llm, chat_ids)[-1]

    doc = {
        "model_file": path.name,
        "capital": {"text": CAPITAL, "ids": capital_ids, "llamacpp_top5_last": top5},
        "chat": {"messages": CHAT_MESSAGES, "rendered": rendered, "ids": chat_ids},
    }
    if options["tokenizer_cases"]:
        doc["tokenizer_cases"] = [{"text": t, "ids": tokenize(llm, t)} for t in TOKENIZER_TEXTS]
    del llm

    tensors = {"capital.llamacpp_logits": capital_logits, "chat.llamacpp_logits_last": chat_last}
    if options["f32ref"]:
        sys.dont_write_bytecode = True  # no __pycache__ in the repository's scripts/
        sys.path.insert(0, str(ROOT / "scripts"))
        from numpy_forward import NumpyModel

        print(f"{name}: f32 reference", file=sys.stderr)
        ref = NumpyModel(path, np.float32)
        tensors["capital.f32ref_logits_last"] = ref.logits(capital_ids)[-1].astype(np.float32)
        tensors["chat.f32ref_logits_last"] = ref.logits(chat_ids)[-1].astype(np.float32)

    (out_dir / f"{name}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(out_dir / f"{name}.logits.safetensors"))


def compare(name, new_dir, old_dir, tolerance):
    """Differences between the regenerated reference and the committed one, as
    (line, out of bounds) pairs."""
    import numpy as np
    from safetensors.numpy import load_file

    lines = []
    new, old = (json.loads((d / f"{name}.json").read_text(encoding="utf-8")) for d in (new_dir, old_dir))

    def walk(a, b, where):
        if isinstance(a, float) or isinstance(b, float):
            if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or abs(a - b) > tolerance:
                lines.append((f"{where}: {b!r} committed, {a!r} now", True))
        elif isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=lambda k: (k not in b, k)):
                if k not in a or k not in b:
                    lines.append((f"{where}/{k}: only in the {'committed' if k in b else 'regenerated'} file", True))
                else:
                    walk(a[k], b[k], f"{where}/{k}")
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                lines.append((f"{where}: {len(b)} items committed, {len(a)} now", True))
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{where}/{i}")
        elif a != b:
            lines.append((f"{where}: {b!r} committed, {a!r} now", True))

    walk(new, old, f"{name}.json:")
    if not lines:
        lines.append((f"{name}.json: equal (logits in llamacpp_top5_last within {tolerance:g})", False))
    new_t, old_t = (load_file(str(d / f"{name}.logits.safetensors")) for d in (new_dir, old_dir))
    for key in sorted(set(new_t) | set(old_t)):
        if key not in new_t or key not in old_t:
            lines.append((f"{name} {key}: only in the {'committed' if key in old_t else 'regenerated'} file", True))
            continue
        a, b = new_t[key].astype(np.float64), old_t[key].astype(np.float64)
        if a.shape != b.shape:
            lines.append((f"{name} {key}: shape {list(b.shape)} committed, {list(a.shape)} now", True))
            continue
        rows_a, rows_b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        cos = min(float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)) for x, y in zip(rows_a, rows_b))
        diff = float(np.abs(a - b).max())
        top1 = all(x.argmax() == y.argmax() for x, y in zip(rows_a, rows_b))
        lines.append((
            f"{name} {key} {list(a.shape)}: max |Δ| {diff:.3g}, min cosine {cos:.9f}, top-1 {'equal' if top1 else 'DIFFERS'}",
            diff > tolerance or not top1,
        ))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "reference", help="the reference folder (default: tests/reference)")
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), metavar="NAME",
                    help=f"the models (default: all of {', '.join(MODELS)})")
    ap.add_argument("--check", action="store_true", help="regenerate into a temporary folder and compare with --out")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="--check's bound on max |Δlogit| (default 1e-3)")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp's CPU threads (default 2)")
    ap.add_argument("--wisp", type=Path, default=ROOT / "target" / "release" / "wisp", help="the wisp binary that fetches the models")
    args = ap.parse_args()
    need_prerequisites()

    paths = {name: model_path(args.wisp, name) for name in args.models}
    if not args.check:
        args.out.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            make_model(name, paths[name], MODELS[name], args.out, args.threads)
            print(f"wrote {args.out / name}.json and .logits.safetensors", file=sys.stderr)
        return

    failed = False
    with tempfile.TemporaryDirectory(prefix="wisp-reference-") as tmp:
        for name in args.models:
            make_model(name, paths[name], MODELS[name], Path(tmp), args.threads)
            for line, bad in compare(name, Path(tmp), args.out, args.tolerance):
                print(("OUT OF BOUNDS " if bad else "") + line)
                failed |= bad
    if failed:
        print(f"check: FAILED: the lines marked OUT OF BOUNDS differ (texts and ids must be equal, logits within {args.tolerance:g})")
    else:
        print(f"check: passed: texts and ids equal, every logit within max |Δ| {args.tolerance:g}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
