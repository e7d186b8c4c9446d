#!/usr/bin/env python3
"""What the bf16 and int8 linear-layer formats cost in accuracy on real text: the shipped
`models/deberta-v3-tiny-sentiment` classifier run by `deberta classify` on the sentiment test
split (`scripts/data/fetch_sentiment.py`) in f32, bf16, int8 and int8 with int8 attention
products (`int8+attn`), compared text by text.

For each reduced format: max and mean |Δ logit| against f32 (raw logits: `--function-to-apply
none`), the share of texts whose argmax agrees with f32's, and the test accuracy of each format
against the gold labels. Needs only the release binary and the data (no torch):

    cargo build --release --bin deberta
    python3 benchmarks/dtype_accuracy.py [--data data/sentiment/test.jsonl] [--threads 2]

Writes `benchmarks/dtype_accuracy.json` and prints a Markdown table.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BINARY = os.environ.get("DEBERTA_BIN", os.path.join(REPO, "target", "release", "deberta"))
# `int8+attn`: int8 with the attention products in int8 too (`DEBERTA_INT8_ATTENTION=1`).
FORMATS = ("f32", "bf16", "int8", "int8+attn")


def logits(model, texts, dtype, threads, batch_size):
    """Each text's logits by label, from one `deberta classify` process."""
    lines = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    env = dict(os.environ, DEBERTA_INT8_ATTENTION="1" if dtype == "int8+attn" else "0")
    out = subprocess.run(
        [BINARY, "classify", "--model", model, "--dtype", dtype.split("+")[0], "--threads", str(threads),
         "--batch-size", str(batch_size), "--top-k", "all", "--function-to-apply", "none"],
        input=lines, capture_output=True, text=True, check=True, env=env).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.strip()]
    if len(rows) != len(texts):
        sys.exit(f"{dtype}: {len(rows)} outputs for {len(texts)} texts")
    return [{d["label"]: d["score"] for d in row} for row in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(REPO, "models", "deberta-v3-tiny-sentiment"))
    ap.add_argument("--data", default=os.path.join(REPO, "data", "sentiment", "test.jsonl"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=os.path.join(HERE, "dtype_accuracy.json"))
    args = ap.parse_args()
    examples = [json.loads(l) for l in open(args.data) if l.strip()]
    texts = [e["text"] for e in examples]
    runs = {f: logits(args.model, texts, f, args.threads, args.batch_size) for f in FORMATS}
    labels = sorted(runs["f32"][0])
    argmax = {f: [max(labels, key=row.get) for row in runs[f]] for f in FORMATS}
    report = {"model": os.path.relpath(args.model, REPO), "data": os.path.relpath(args.data, REPO),
              "texts": len(texts), "threads": args.threads, "formats": {}}
    for f in FORMATS:
        diffs = [abs(a[l] - b[l]) for a, b in zip(runs[f], runs["f32"]) for l in labels]
        agree = sum(x == y for x, y in zip(argmax[f], argmax["f32"]))
        correct = sum(x == e["label"] for x, e in zip(argmax[f], examples))
        report["formats"][f] = {
            "max_abs_logit_diff": max(diffs), "mean_abs_logit_diff": sum(diffs) / len(diffs),
            "argmax_agreement": agree / len(texts), "disagreements": len(texts) - agree,
            "accuracy": correct / len(texts)}
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"{report['model']} on {report['data']} ({len(texts)} texts, {args.threads} threads)\n")
    print("| format | max \\|Δ logit\\| vs f32 | mean \\|Δ logit\\| | argmax agreement with f32 | test accuracy |")
    print("|---|---|---|---|---|")
    for f, r in report["formats"].items():
        print(f"| {f} | {r['max_abs_logit_diff']:.2e} | {r['mean_abs_logit_diff']:.2e} | "
              f"{100 * r['argmax_agreement']:.2f}% ({r['disagreements']} differ) | {100 * r['accuracy']:.2f}% |")


if __name__ == "__main__":
    main()
