#!/usr/bin/env python3
"""Fetch the VADER human-rated sentiment sentences and write a seeded, stratified split.

    python3 scripts/data/fetch_sentiment.py            # -> data/sentiment/

Source: the PyPI sdist vaderSentiment==3.3.2 (MIT License, C.J. Hutto), which ships
`additional_resources/hutto_ICWSM_2014.tar.gz` (Hutto & Gilbert, ICWSM 2014). Its four
`*_GroundTruth.txt` files have lines `id <TAB> mean rating in [-4, 4] <TAB> text`.

Labels: positive (rating > 0.5), negative (rating < -0.5), neutral otherwise.
Exact duplicate texts within a domain are dropped (the first line is kept), so that a sentence
never sits in two splits. Split: per domain and label, the lines are shuffled with a fixed seed
and cut 80 / 10 / 10 into train / dev / test; each output file is then shuffled with the seed.

Writes data/sentiment/{train,dev,test}.jsonl, one `{"text", "label", "domain", "rating", "id"}`
object a line (`deberta train --task sequence-classification` reads `text` and `label`
and ignores the other keys), and data/sentiment/manifest.json (sha256 of the sdist and of
the inner archive, counts). Needs only the Python standard library and pip.
"""

import argparse
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "vaderSentiment"
VERSION = "3.3.2"
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
INNER = f"{PACKAGE}-{VERSION}/additional_resources/hutto_ICWSM_2014.tar.gz"
# Known digests: the script refuses anything else, so the split is the same everywhere.
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_SHA256 = "d5bb07d87474b3eb8d30b4deccbc23f19d742a6c5718fbacc65485b70b95c5fa"
DOMAINS = {
    "amazon": "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
    "movie": "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
    "nyt": "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
    "tweets": "hutto_ICWSM_2014/tweets_GroundTruth.txt",
}
LABELS = ("negative", "neutral", "positive")
SPLITS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
SEED = 24


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def label_of(rating):
    if rating > 0.5:
        return "positive"
    if rating < -0.5:
        return "negative"
    return "neutral"


def download(cache):
    """The sdist's bytes: from `cache` if there, else `pip download` into it."""
    path = os.path.join(cache, SDIST)
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"{PACKAGE}=={VERSION}", "-d", cache, "--quiet"],
            check=True,
        )
    with open(path, "rb") as f:
        return f.read()


def read_rows(inner_bytes):
    rows = {}
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as tar:
        for domain, member in DOMAINS.items():
            text = tar.extractfile(member).read().decode("utf-8")
            out = []
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.split("\t")
                if len(parts) != 3:
                    sys.exit(f"{member}:{n}: expected 3 tab-separated fields, got {len(parts)}")
                out.append({"id": parts[0].strip(), "rating": float(parts[1]), "text": parts[2].strip()})
            rows[domain] = out
    return rows


def split_domain(domain, rows, rng):
    seen = set()
    kept, dropped = [], 0
    for r in rows:
        if r["text"] in seen or not r["text"]:
            dropped += 1
            continue
        seen.add(r["text"])
        kept.append({"text": r["text"], "label": label_of(r["rating"]), "domain": domain,
                     "rating": r["rating"], "id": r["id"]})
    out = {s: [] for s, _ in SPLITS}
    for label in LABELS:
        group = [r for r in kept if r["label"] == label]
        rng.shuffle(group)
        n = len(group)
        n_train = round(n * SPLITS[0][1])
        n_dev = round(n * SPLITS[1][1])
        out["train"] += group[:n_train]
        out["dev"] += group[n_train:n_train + n_dev]
        out["test"] += group[n_train + n_dev:]
    return out, len(rows), dropped


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--out", default=os.path.join(root, "data", "sentiment"))
    ap.add_argument("--cache", default=os.path.join(root, "data", "downloads"),
                    help="where the sdist is downloaded (reused when present)")
    args = ap.parse_args()

    sdist = download(args.cache)
    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as tar:
        inner = tar.extractfile(INNER).read()
    for what, data, want in (("sdist", sdist, SDIST_SHA256), ("inner archive", inner, INNER_SHA256)):
        if sha256(data) != want:
            sys.exit(f"{what}: sha256 {sha256(data)} != expected {want}")
    rows = read_rows(inner)

    rng = random.Random(SEED)
    splits = {s: [] for s, _ in SPLITS}
    counts = {}
    for domain in sorted(DOMAINS):
        parts, n_lines, dropped = split_domain(domain, rows[domain], rng)
        counts[domain] = {"lines": n_lines, "duplicates_dropped": dropped}
        for s, _ in SPLITS:
            splits[s] += parts[s]
            counts[domain][s] = {label: sum(r["label"] == label for r in parts[s]) for label in LABELS}
            counts[domain][s]["total"] = len(parts[s])

    os.makedirs(args.out, exist_ok=True)
    files = {}
    for s, _ in SPLITS:
        rng.shuffle(splits[s])
        path = os.path.join(args.out, f"{s}.jsonl")
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in splits[s]).encode("utf-8")
        with open(path, "wb") as f:
            f.write(data)
        files[f"{s}.jsonl"] = {"examples": len(splits[s]), "bytes": len(data), "sha256": sha256(data),
                               "labels": {label: sum(r["label"] == label for r in splits[s]) for label in LABELS}}

    manifest = {
        "source": {
            "package": f"{PACKAGE}=={VERSION}",
            "registry": "PyPI (pip download --no-deps --no-binary :all:)",
            "licence": "MIT License (Copyright (c) 2016 C.J. Hutto), per the sdist's LICENSE.txt and PKG-INFO",
            "citation": "Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious Rule-based Model for "
                        "Sentiment Analysis of Social Media Text. ICWSM-14.",
            "sdist": SDIST,
            "sdist_sha256": sha256(sdist),
            "inner_archive": INNER,
            "inner_archive_sha256": sha256(inner),
            "files": DOMAINS,
        },
        "labelling": "positive: mean rating > 0.5; negative: mean rating < -0.5; neutral otherwise "
                     "(ratings are in [-4, 4]); binary task: positive vs negative, neutral dropped",
        "dedup": "exact duplicate texts within a domain dropped, first line kept",
        "split": {"seed": SEED, "fractions": dict(SPLITS), "stratified_by": ["domain", "label"]},
        "counts": counts,
        "outputs": files,
    }
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for s, info in files.items():
        print(f"{s}: {info['examples']} examples {info['labels']} sha256 {info['sha256']}")
    print(f"sdist sha256 {manifest['source']['sdist_sha256']}")
    print(f"inner sha256 {manifest['source']['inner_archive_sha256']}")


if __name__ == "__main__":
    main()
