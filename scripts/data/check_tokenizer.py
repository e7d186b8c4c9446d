#!/usr/bin/env python3
"""Check models/deberta-v3-tiny-tokenizer with the installed transformers: its slow
(DebertaV2Tokenizer) and fast (DebertaV2TokenizerFast) tokenizers load, have [PAD]=0 [CLS]=1
[SEP]=2 [UNK]=3 [MASK]=12000, and give identical ids on the first 200 held-out paragraphs of
data/prose/eval.jsonl. Prints a digest of the ids, so runs under two transformers versions
(the pinned 4.57.6 reference and 5.x) can be compared:

    ~/deberta-ref/venv457/bin/python scripts/data/check_tokenizer.py
    ~/deberta-ref/venv/bin/python scripts/data/check_tokenizer.py
"""

import hashlib
import json
import os
import sys

import transformers
from transformers import DebertaV2Tokenizer, DebertaV2TokenizerFast

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DIR = os.path.join(ROOT, "models", "deberta-v3-tiny-tokenizer")
N = 200


def main():
    with open(os.path.join(ROOT, "data", "prose", "eval.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f][:N]
    slow = DebertaV2Tokenizer.from_pretrained(DIR)
    fast = DebertaV2TokenizerFast.from_pretrained(DIR)
    want = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3, "[MASK]": 12000}
    bad = 0
    for name, tok in (("slow", slow), ("fast", fast)):
        got = {t: tok.convert_tokens_to_ids(t) for t in want}
        if got != want:
            print(f"{name}: special ids {got} != {want}")
            bad += 1
    ids_slow = [slow(t)["input_ids"] for t in texts]
    ids_fast = [fast(t)["input_ids"] for t in texts]
    differ = [i for i, (a, b) in enumerate(zip(ids_slow, ids_fast)) if a != b]
    for i in differ[:5]:
        print(f"slow/fast differ on #{i}: {texts[i][:80]!r}")
    masked = fast("The [MASK] sat on the mat.")["input_ids"]
    digest = hashlib.sha256(json.dumps(ids_fast).encode()).hexdigest()
    n_tokens = sum(len(x) for x in ids_fast)
    print(f"transformers {transformers.__version__}: {type(slow).__name__} / {type(fast).__name__}, "
          f"{len(texts)} paragraphs, {n_tokens} ids, slow/fast differ on {len(differ)}, "
          f"unk ids {sum(x.count(3) for x in ids_fast)}; mask example {masked}; ids sha256 {digest}")
    sys.exit(1 if differ or bad else 0)


if __name__ == "__main__":
    main()
