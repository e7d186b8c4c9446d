#!/usr/bin/env python3
"""Copy a `deberta train` output directory into models/<name> for shipping: config.json, the
tokenizer files, the weights as f16 safetensors (half the size; our loader and transformers read
them), and the run's log.jsonl / metrics.jsonl. No training_state (optimiser moments) is shipped.

    ~/deberta-ref/venv/bin/python scripts/data/ship_model.py RUN_DIR models/deberta-v3-tiny-en
"""
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

KEEP = ["config.json", "spm.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "added_tokens.json", "log.jsonl", "metrics.jsonl", "curves.png", "curves.svg"]


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    for name in KEEP:
        if os.path.exists(os.path.join(src, name)):
            shutil.copy(os.path.join(src, name), os.path.join(dst, name))
    weights = load_file(os.path.join(src, "model.safetensors"))
    half = {k: v.to(torch.float16).contiguous() for k, v in weights.items()}
    save_file(half, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    size = os.path.getsize(os.path.join(dst, "model.safetensors")) / 2**20
    print(f"{dst}: {len(half)} tensors, {size:.1f} MiB (f16)")


if __name__ == "__main__":
    main()
