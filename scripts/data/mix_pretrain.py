#!/usr/bin/env python3
"""Assemble the pretraining text of deberta-v3-tiny-en: the prose plus the review sentences.

    python3 scripts/data/mix_pretrain.py      # after fetch_prose.py and fetch_sentiment.py

Reads data/prose/{train,eval}.jsonl and data/sentiment/train.jsonl (the training split only:
no dev or test sentence is ever seen in pretraining) and writes data/pretrain/:

- train.jsonl: every prose paragraph once and every review sentence REVIEW_REPEATS times
  (domain-adaptive pretraining: the prose alone has almost no reviews or tweets), shuffled
  with seed 24; `{"text": ...}`, the masked-LM format of `deberta train`.
- eval.jsonl: the held-out 1% of the prose, unchanged (so the masked-token accuracy stays
  comparable with earlier runs).
- tokenizer.txt: one text a line, prose and review sentences once each, for train_tokenizer.py.
- manifest.json: counts and sha256s (copied to scripts/data/pretrain.manifest.json).

Standard library only.
"""

import hashlib
import json
import os
import random
import sys

REVIEW_REPEATS = 3
SEED = 24


def read_texts(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    with open(path, "rb") as f:
        data = f.read()
    return {"lines": len(lines), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    os.chdir(root)
    sources = ["data/prose/train.jsonl", "data/prose/eval.jsonl", "data/sentiment/train.jsonl"]
    for path in sources:
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run fetch_prose.py and fetch_sentiment.py first")
    prose, prose_eval, reviews = (read_texts(p) for p in sources)
    # A line of tokenizer.txt is one sentencepiece sentence: no newline inside a text.
    reviews = [" ".join(t.split()) for t in reviews]

    mixed = prose + reviews * REVIEW_REPEATS
    random.Random(SEED).shuffle(mixed)
    os.makedirs("data/pretrain", exist_ok=True)
    dumps = lambda texts: [json.dumps({"text": t}, ensure_ascii=False) for t in texts]
    manifest = {
        "sources": sources,
        "review_repeats": REVIEW_REPEATS,
        "seed": SEED,
        "prose_paragraphs": len(prose),
        "review_sentences": len(reviews),
        "review_share_of_train_chars": round(
            REVIEW_REPEATS * sum(map(len, reviews)) / sum(map(len, mixed)), 4),
        "train.jsonl": write_lines("data/pretrain/train.jsonl", dumps(mixed)),
        "eval.jsonl": write_lines("data/pretrain/eval.jsonl", dumps(prose_eval)),
        "tokenizer.txt": write_lines("data/pretrain/tokenizer.txt", prose + reviews),
    }
    with open("data/pretrain/manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
