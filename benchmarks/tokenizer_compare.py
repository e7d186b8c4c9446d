#!/usr/bin/env python3
"""Time the Python reference tokenizers on the same corpus as the Rust criterion bench.

    RAYON_NUM_THREADS=1 python benchmarks/tokenizer_compare.py
    cargo bench -p deberta-tokenizer --bench tokenize      # Rust numbers (same corpus, 1 thread)

Corpus: the texts of crates/deberta-tokenizer/tests/fixtures/expected/deberta-v3.json; model: the
DeBERTa-v3 files in tests/fixtures/deberta-v3. Each measurement is one pass over the corpus
(best of N), in microseconds, with throughput in MiB/s.
"""

import json
import os
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sentencepiece as spm  # noqa: E402
import tokenizers  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "deberta-tokenizer", "tests", "fixtures")


def best(fn, reps=200):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    texts = [r["text"] for r in json.load(open(os.path.join(ROOT, "expected", "deberta-v3.json")))["slow"]]
    nbytes = sum(len(t.encode()) for t in texts)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(ROOT, "deberta-v3", "spm.model"))
    tk = tokenizers.Tokenizer.from_file(os.path.join(ROOT, "deberta-v3", "tokenizer.json"))
    rows = {
        "sentencepiece encode(out_type=str)": lambda: [sp.encode(t, out_type=str) for t in texts],
        "sentencepiece encode(out_type=int)": lambda: [sp.encode(t) for t in texts],
        "tokenizers encode (char offsets)": lambda: [tk.encode(t, add_special_tokens=False) for t in texts],
    }
    try:
        from transformers import DebertaV2Tokenizer, DebertaV2TokenizerFast

        slow = DebertaV2Tokenizer.from_pretrained(os.path.join(ROOT, "deberta-v3"))
        fast = DebertaV2TokenizerFast.from_pretrained(os.path.join(ROOT, "deberta-v3"))
        rows["transformers slow tokenize"] = lambda: [slow.tokenize(t) for t in texts]
        rows["transformers fast tokenize"] = lambda: [fast.tokenize(t) for t in texts]
    except ImportError:
        pass
    print(f"corpus: {len(texts)} texts, {nbytes} bytes; sentencepiece {spm.__version__}, tokenizers {tokenizers.__version__}")
    for name, fn in rows.items():
        s = best(fn, reps=50 if "transformers" in name else 1000)
        print(f"{name:40s} {s * 1e6:10.1f} us/pass  {nbytes / s / 2**20:8.2f} MiB/s")


if __name__ == "__main__":
    main()
