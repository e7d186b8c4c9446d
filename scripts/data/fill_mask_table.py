#!/usr/bin/env python3
"""The fill-mask table of models/deberta-v3-tiny-en's card: `deberta fill-mask --top-k 3` on ten
fixed sentences (prose, documentation and review style), printed as Markdown.

    python3 scripts/data/fill_mask_table.py [--model models/deberta-v3-tiny-en] [--binary target/release/deberta]

Plain Python; needs the release binary (`cargo build --release --bin deberta`).
"""
import argparse
import json
import os
import subprocess

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SENTENCES = [
    "The capital of France is [MASK].",
    "In the beginning God created the heaven and the [MASK].",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a [MASK].",
    "The kernel allocates [MASK] for the new process.",
    "Python is a programming [MASK].",
    "She opened the [MASK] and walked into the garden.",
    "The function returns a [MASK] of strings.",
    "This movie was a complete waste of [MASK].",
    "The acting was great and the story was [MASK].",
    "I would not recommend this [MASK] to anyone.",
]


def cell(text):
    """A prediction as a table cell: punctuation in backticks, pipes escaped."""
    text = text.replace("|", "\\|")
    return f"`{text}`" if not any(c.isalnum() for c in text) else text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(REPO, "models", "deberta-v3-tiny-en"))
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "deberta"))
    args = ap.parse_args()
    print("| input | predictions |")
    print("|---|---|")
    for sentence in SENTENCES:
        out = subprocess.run([args.binary, "fill-mask", "--model", args.model, "--top-k", "3", sentence],
                             check=True, capture_output=True, text=True).stdout
        preds = json.loads(out)
        shown = sentence if len(sentence) < 80 else "..." + sentence[-70:]
        print(f"| {shown} | " + ", ".join(f"{cell(p['token_str'])} ({p['score']:.2f})" for p in preds) + " |")


if __name__ == "__main__":
    main()
