#!/usr/bin/env python3
"""Check the models shipped under models/ with transformers and record its outputs for cargo test.

    ~/deberta-ref/venv/bin/python scripts/gen_shipped_fixtures.py

For each shipped model: transformers 5.24 loads it with its class (from config.json) and must
report no missing, unexpected or mismatched keys (the script fails otherwise); its tokenizer
encodes a few fixed sentences; the ids, the mask and every output tensor (logits, loss-free) go
to fixtures/shipped/<model>/{input.json,expected.safetensors}, which `cargo test` compares with
our outputs at 1e-4 (tests/shipped_models.rs in deberta-tasks).
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoTokenizer, DebertaV2ForMaskedLM, DebertaV2ForSequenceClassification

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(REPO, "fixtures", "shipped")
MODELS = {
    "deberta-v3-tiny-en": (DebertaV2ForMaskedLM, [
        "The capital of France is [MASK].",
        "She opened the [MASK] and walked into the garden.",
        "In the beginning God created the heaven and the [MASK].",
    ]),
    "deberta-v3-tiny-sentiment": (DebertaV2ForSequenceClassification, [
        "What a wonderful, moving film.",
        "The service was slow and the food was cold.",
        "The meeting is on Tuesday.",
        "I absolutely loved it!",
    ]),
}


def main():
    if transformers.__version__ != "5.24.0":
        sys.exit(f"need transformers 5.24.0, have {transformers.__version__}")
    torch.set_num_threads(1)
    for name, (cls, texts) in MODELS.items():
        src = os.path.join(REPO, "models", name)
        if not os.path.isdir(src):
            print(f"{name}: not built, skipped")
            continue
        # f32 compute on the shipped (f16) weights, as our loader does.
        model, info = cls.from_pretrained(src, output_loading_info=True, dtype=torch.float32)
        problems = {k: v for k, v in info.items() if v}
        if problems:
            sys.exit(f"{name}: transformers reports {problems}")
        model.eval()
        tok = AutoTokenizer.from_pretrained(src)
        enc = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        dst = os.path.join(OUT, name)
        os.makedirs(dst, exist_ok=True)
        with open(os.path.join(dst, "input.json"), "w") as f:
            json.dump({"input_ids": enc["input_ids"].tolist(),
                       "attention_mask": enc["attention_mask"].tolist(), "texts": texts}, f)
        save_file({"logits": out.logits.float().contiguous()}, os.path.join(dst, "expected.safetensors"))
        print(f"{name}: loads cleanly; logits {tuple(out.logits.shape)} recorded")


if __name__ == "__main__":
    main()
