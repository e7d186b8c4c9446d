#!/usr/bin/env python3
"""Our sentiment classifier on the VADER test (or dev) split, per domain, next to the baselines.

    python3 benchmarks/sentiment_eval.py --model models/deberta-v3-tiny-sentiment \
        [--split test] [--binary target/release/deberta] [--out benchmarks/sentiment_deberta.json]

Runs `deberta classify --top-k all` on every text of `data/sentiment/<split>.jsonl` (made by
scripts/data/fetch_sentiment.py) and reports accuracy and macro-F1 (fractions; the table in %) per domain and overall:
3-class (negative / neutral / positive) and binary (neutral examples dropped; the larger of the
positive and negative scores decides), in the layout of benchmarks/sentiment_baselines.json,
then prints a Markdown table with the baselines of that file. Plain Python (no dependencies).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LABELS = ["negative", "neutral", "positive"]


def macro_f1(pred, gold, labels):
    f1s = []
    for c in labels:
        tp = sum(1 for p, g in zip(pred, gold) if p == c and g == c)
        n = sum(1 for p in pred if p == c) + sum(1 for g in gold if g == c)
        if n:
            f1s.append(2 * tp / n)
    return sum(f1s) / len(f1s) if f1s else float("nan")


def scores(pred, gold, labels):
    acc = sum(p == g for p, g in zip(pred, gold)) / max(1, len(gold))
    return {"n": len(gold), "accuracy": round(acc, 4), "macro_f1": round(macro_f1(pred, gold, labels), 4)}


def classify(binary, model, texts):
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "in.jsonl")
        out = os.path.join(tmp, "out.jsonl")
        with open(inp, "w") as f:
            for t in texts:
                f.write(json.dumps({"text": t}) + "\n")
        subprocess.run([binary, "classify", "--model", model, "--top-k", "all", "--input", inp,
                        "--output", out, "--batch-size", "32"], check=True)
        with open(out) as f:
            return [{d["label"]: d["score"] for d in json.loads(line)} for line in f]


def evaluate(rows, results):
    report = {"3class": {}, "binary": {}}
    domains = sorted({r["domain"] for r in rows})
    for scope in ["overall"] + domains:
        sel = [i for i, r in enumerate(rows) if scope == "overall" or r["domain"] == scope]
        gold = [rows[i]["label"] for i in sel]
        pred = [max(results[i], key=results[i].get) for i in sel]
        report["3class"][scope] = scores(pred, gold, LABELS)
        bsel = [i for i in sel if rows[i]["label"] != "neutral"]
        bgold = [rows[i]["label"] for i in bsel]
        bpred = ["positive" if results[i].get("positive", 0) >= results[i].get("negative", 0) else "negative"
                 for i in bsel]
        report["binary"][scope] = scores(bpred, bgold, ["negative", "positive"])
    return report


def table(ours, baselines_path):
    lines = ["| task | method | overall | " + " | ".join(d for d in ours["3class"] if d != "overall") + " |"]
    lines.append("|" + "---|" * (3 + len(ours["3class"]) - 1))
    base = {}
    if os.path.exists(baselines_path):
        with open(baselines_path) as f:
            base = json.load(f)
    for task in ["3class", "binary"]:
        rows = [("deberta-v3-tiny-sentiment", ours[task])]
        for name, methods in base.get("results", {}).items():
            if task in methods:
                rows.append((name, methods[task]))
        for name, res in rows:
            cells = []
            for scope in ours[task]:
                r = res.get(scope) if isinstance(res, dict) else None
                cells.append(f"{100 * r['accuracy']:.1f} / {100 * r['macro_f1']:.1f}" if r else "-")
            lines.append(f"| {task} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(REPO, "models", "deberta-v3-tiny-sentiment"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "deberta"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    path = os.path.join(REPO, "data", "sentiment", f"{args.split}.jsonl")
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: run scripts/data/fetch_sentiment.py first")
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    results = classify(args.binary, args.model, [r["text"] for r in rows])
    report = {"model": os.path.relpath(args.model, REPO), "split": args.split, **evaluate(rows, results)}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps(report))
    print(table(report, os.path.join(HERE, "sentiment_baselines.json")))


if __name__ == "__main__":
    main()
