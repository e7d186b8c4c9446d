#!/usr/bin/env python3
"""Sentiment baselines on the VADER test split (data/sentiment/, from scripts/data/fetch_sentiment.py).

    ~/deberta-ref/venv-data/bin/python benchmarks/sentiment_baselines.py
        # -> benchmarks/sentiment_baselines.json and a Markdown table on stdout

(a) VADER's own lexicon and rule classifier (vaderSentiment 3.3.2): compound >= 0.05 positive,
    <= -0.05 negative, neutral otherwise.
(b) TF-IDF over word 1-2 grams + logistic regression (scikit-learn), trained on train.jsonl,
    C chosen by macro-F1 on dev.jsonl, evaluated once on test.jsonl.

Two tasks: 3-class (negative / neutral / positive) and binary (positive vs negative, neutral
examples dropped from train, dev and test; VADER's "neutral" answers then count as wrong,
its positive/negative call taken from the sign of the compound score is also reported).
Accuracy and macro-F1 per domain and overall.
"""

import argparse
import json
import os
import sys

import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
LABELS3 = ["negative", "neutral", "positive"]
LABELS2 = ["negative", "positive"]
C_GRID = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def scores(gold, pred, domains, labels):
    out = {}
    for d in ["overall"] + sorted(set(domains)):
        idx = [i for i, x in enumerate(domains) if d == "overall" or x == d]
        g = [gold[i] for i in idx]
        p = [pred[i] for i in idx]
        out[d] = {"n": len(idx), "accuracy": round(accuracy_score(g, p), 4),
                  "macro_f1": round(f1_score(g, p, labels=labels, average="macro", zero_division=0), 4)}
    return out


def vader_label(c):
    if c >= 0.05:
        return "positive"
    if c <= -0.05:
        return "negative"
    return "neutral"


def tfidf_lr(train, dev, test, labels):
    def fit(c, rows):
        vec = TfidfVectorizer(ngram_range=(1, 2), lowercase=True, sublinear_tf=True, min_df=1)
        x = vec.fit_transform([r["text"] for r in rows])
        clf = LogisticRegression(C=c, max_iter=2000, solver="lbfgs")
        clf.fit(x, [r["label"] for r in rows])
        return vec, clf

    tuning = {}
    best = None
    for c in C_GRID:
        vec, clf = fit(c, train)
        pred = clf.predict(vec.transform([r["text"] for r in dev]))
        f1 = f1_score([r["label"] for r in dev], pred, labels=labels, average="macro")
        acc = accuracy_score([r["label"] for r in dev], pred)
        tuning[str(c)] = {"dev_macro_f1": round(f1, 4), "dev_accuracy": round(acc, 4)}
        if best is None or f1 > best[1]:
            best = (c, f1, vec, clf)
    c, _, vec, clf = best
    pred = list(clf.predict(vec.transform([r["text"] for r in test])))
    return pred, c, tuning


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "sentiment"))
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "sentiment_baselines.json"))
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.data, "test.jsonl")):
        sys.exit(f"{args.data}/test.jsonl is missing: run scripts/data/fetch_sentiment.py first")
    train, dev, test = (load(os.path.join(args.data, f"{s}.jsonl")) for s in ("train", "dev", "test"))
    manifest = json.load(open(os.path.join(args.data, "manifest.json"), encoding="utf-8"))

    analyzer = SentimentIntensityAnalyzer()
    compound = [analyzer.polarity_scores(r["text"])["compound"] for r in test]

    results = {}
    # 3-class
    gold = [r["label"] for r in test]
    doms = [r["domain"] for r in test]
    results["vader"] = {"3class": scores(gold, [vader_label(c) for c in compound], doms, LABELS3)}
    pred, c3, tune3 = tfidf_lr(train, dev, test, LABELS3)
    results["tfidf_lr"] = {"3class": scores(gold, pred, doms, LABELS3), "C_3class": c3, "dev_3class": tune3}

    # binary: neutral band dropped everywhere
    keep = [i for i, r in enumerate(test) if r["label"] != "neutral"]
    gold2 = [gold[i] for i in keep]
    doms2 = [doms[i] for i in keep]
    results["vader"]["binary"] = scores(gold2, [vader_label(compound[i]) for i in keep], doms2, LABELS2)
    results["vader"]["binary_sign"] = scores(
        gold2, ["positive" if compound[i] >= 0 else "negative" for i in keep], doms2, LABELS2)
    pred2, c2, tune2 = tfidf_lr([r for r in train if r["label"] != "neutral"],
                                [r for r in dev if r["label"] != "neutral"],
                                [test[i] for i in keep], LABELS2)
    results["tfidf_lr"]["binary"] = scores(gold2, pred2, doms2, LABELS2)
    results["tfidf_lr"]["C_binary"] = c2
    results["tfidf_lr"]["dev_binary"] = tune2

    out = {
        "data": {"test_sha256": manifest["outputs"]["test.jsonl"]["sha256"],
                 "train_sha256": manifest["outputs"]["train.jsonl"]["sha256"],
                 "dev_sha256": manifest["outputs"]["dev.jsonl"]["sha256"],
                 "source": manifest["source"]["package"]},
        "versions": {"python": sys.version.split()[0], "scikit-learn": sklearn.__version__,
                     "numpy": np.__version__, "vaderSentiment": "3.3.2"},
        "methods": {
            "vader": "SentimentIntensityAnalyzer compound: >= 0.05 positive, <= -0.05 negative, else neutral; "
                     "binary counts neutral answers as wrong; binary_sign: compound >= 0 positive",
            "tfidf_lr": "TfidfVectorizer(ngram_range=(1, 2), lowercase, sublinear_tf) + "
                        "LogisticRegression(lbfgs, max_iter=2000); C from %s by dev macro-F1" % C_GRID,
        },
        "results": results,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")

    domains = ["overall"] + sorted(set(doms))
    print("| task | method | " + " | ".join(domains) + " |")
    print("|---|---|" + "---|" * len(domains))
    rows = [("3-class", "VADER", results["vader"]["3class"]),
            ("3-class", f"TF-IDF + LR (C={c3})", results["tfidf_lr"]["3class"]),
            ("binary", "VADER (±0.05)", results["vader"]["binary"]),
            ("binary", "VADER (sign)", results["vader"]["binary_sign"]),
            ("binary", f"TF-IDF + LR (C={c2})", results["tfidf_lr"]["binary"])]
    for task, name, r in rows:
        cells = [f"{r[d]['accuracy']*100:.1f} / {r[d]['macro_f1']*100:.1f}" for d in domains]
        print(f"| {task} | {name} | " + " | ".join(cells) + " |")
    print("\ncells: accuracy / macro-F1 (%); test n = "
          + ", ".join(f"{d} {results['vader']['3class'][d]['n']}" for d in domains)
          + "; binary n = " + ", ".join(f"{d} {results['vader']['binary'][d]['n']}" for d in domains))


if __name__ == "__main__":
    main()
