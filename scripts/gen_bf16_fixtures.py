#!/usr/bin/env python3
"""Generate the reference outputs of `--dtype bf16` (LinearFormat::Bf16) with transformers.

Run with the reference environment (../shared/reference/setup.sh), after gen_fixtures.py:
    ~/deberta-ref/venv/bin/python scripts/gen_bf16_fixtures.py

The bf16 format rounds the weights of each encoder layer's six linear layers (query, key and
value projections, attention output, intermediate, output) and their inputs to bf16 (nearest,
ties to even), multiplies in f32 and adds the f32 bias; the position projections of the
relative embeddings, the embeddings, the conv layer, LayerNorms and softmax stay f32. This
script runs transformers with exactly that substitution on the committed model cases and
writes `expected_bf16.safetensors` (`last_hidden_state`) next to each case's
`expected.safetensors`. Outputs are committed; CI never runs this script.
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import DebertaV2Model
from transformers.models.deberta_v2 import modeling_deberta_v2 as M

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models")
CASES = [
    "v3_buckets",
    "v3_long",
    "separate_pos_proj",
    "c2p_only",
    "p2c_only",
    "norm_rel_none",
    "no_relative_attention",
    "conv_groups_gelu",
    "embedding_size",
    "act_mish",
]

# The position projections run inside disentangled_attention_bias: they stay f32.
STATE = {"inside_rel": False}
_orig_bias = M.DisentangledSelfAttention.disentangled_attention_bias


def _bias_in_f32(self, *args, **kwargs):
    STATE["inside_rel"] = True
    try:
        return _orig_bias(self, *args, **kwargs)
    finally:
        STATE["inside_rel"] = False


M.DisentangledSelfAttention.disentangled_attention_bias = _bias_in_f32


def bf16(t):
    return t.to(torch.bfloat16).to(torch.float32)


def round_linear(linear):
    orig = linear.forward
    weight = bf16(linear.weight.detach())

    def forward(x):
        if STATE["inside_rel"]:
            return orig(x)
        return F.linear(bf16(x), weight, linear.bias)

    linear.forward = forward


def main():
    torch.set_num_threads(2)
    for name in CASES:
        case_dir = os.path.join(ROOT, name)
        model = DebertaV2Model.from_pretrained(case_dir).eval()
        for layer in model.encoder.layer:
            att = layer.attention
            for lin in (att.self.query_proj, att.self.key_proj, att.self.value_proj,
                        att.output.dense, layer.intermediate.dense, layer.output.dense):
                round_linear(lin)
        with open(os.path.join(case_dir, "input.json")) as f:
            raw = json.load(f)
        inputs = {k: torch.tensor(v) for k, v in raw.items()}
        with torch.no_grad():
            out = model(**inputs).last_hidden_state
        save_file({"last_hidden_state": out.float().contiguous()},
                  os.path.join(case_dir, "expected_bf16.safetensors"))
        f32 = load_file(os.path.join(case_dir, "expected.safetensors"))["last_hidden_state"]
        print(f"{name}: {tuple(out.shape)}, max |bf16 - f32| {(out - f32).abs().max():.2e}")


if __name__ == "__main__":
    main()
