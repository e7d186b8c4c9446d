#!/usr/bin/env python3
"""Generate the golden fixtures of the model tests with transformers (the reference).

Run with the reference environment (../shared/reference/setup.sh):
    ~/deberta-ref/venv/bin/python scripts/gen_fixtures.py

For each case of the config matrix it builds a tiny random DebertaV2 model (seeded), perturbs
every parameter (LayerNorm weights and biases included, so mistakes in them show), saves the
checkpoint in the case's weight format, writes the inputs as `input.json` (the format of
`deberta forward --input`) and every output tensor as `expected.safetensors`, named as
`deberta forward` names them. Outputs are committed; CI never runs this script.
"""
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, DebertaV2Model

TORCH_VERSION = "2.15.0"
TRANSFORMERS_VERSION = "5.24.0"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models")

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=128,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
V3 = dict(
    relative_attention=True,
    position_buckets=32,
    norm_rel_ebd="layer_norm",
    share_att_key=True,
    pos_att_type="p2c|c2p",
    position_biased_input=False,
    type_vocab_size=0,
    max_relative_positions=-1,
)

# name -> (config overrides, input spec, extra options)
CASES = {
    # v3-style with 32 buckets over 128 positions; length 80 > bucket span exercises log buckets.
    "v3_buckets": (dict(V3), dict(lens=[80, 57, 31], pad=["none", "right", "left"]), {}),
    # Real v3 geometry (256 buckets over 512 positions) on a sequence longer than 512.
    "v3_long": (dict(V3, position_buckets=256, max_position_embeddings=512), dict(lens=[600, 577], pad=["none", "right"]), dict(attentions=False)),
    # Unbucketed relative positions with a span (8) shorter than the sequence (24).
    "unbucketed_small_span": (dict(V3, position_buckets=-1, max_relative_positions=8), dict(lens=[24, 20], pad=["none", "left"]), {}),
    "separate_pos_proj": (dict(V3, share_att_key=False), dict(lens=[40, 33], pad=["none", "right"]), {}),
    "c2p_only": (dict(V3, share_att_key=False, pos_att_type="c2p"), dict(lens=[40, 33], pad=["none", "left"]), {}),
    "p2c_only": (dict(V3, share_att_key=False, pos_att_type=["p2c"]), dict(lens=[40, 33], pad=["none", "right"]), {}),
    "no_pos_att_type": (dict(V3, pos_att_type="None"), dict(lens=[20, 13], pad=["none", "right"]), {}),
    "no_relative_attention": (dict(relative_attention=False, position_biased_input=True), dict(lens=[20, 13], pad=["none", "left"]), {}),
    "norm_rel_none": (dict(V3, norm_rel_ebd="none"), dict(lens=[40, 33], pad=["none", "right"]), {}),
    # Absolute positions + token types + relative attention (DeBERTa-v2-base style), explicit position_ids.
    "token_types_positions": (dict(V3, position_biased_input=True, type_vocab_size=3), dict(lens=[30, 22], pad=["none", "right"], token_types=True, position_ids=True), {}),
    "embedding_size": (dict(V3, embedding_size=24, position_biased_input=True, type_vocab_size=2), dict(lens=[30, 22], pad=["none", "left"], token_types=True), {}),
    # nGiE conv layer as in v2-xlarge (gelu), grouped, with attention_head_size given explicitly.
    "conv_groups_gelu": (dict(V3, conv_kernel_size=3, conv_groups=2, conv_act="gelu", attention_head_size=8, position_buckets=-1, max_relative_positions=-1), dict(lens=[30, 22, 9], pad=["none", "left", "right"]), {}),
    "conv_tanh_k5": (dict(V3, conv_kernel_size=5), dict(lens=[30, 22], pad=["none", "right"]), {}),
    "act_gelu_new_eps": (dict(V3, hidden_act="gelu_new", layer_norm_eps=1e-5), dict(lens=[20, 13], pad=["none", "right"]), {}),
    "act_mish": (dict(V3, hidden_act="mish"), dict(lens=[20, 13], pad=["none", "left"]), {}),
    "act_quick_gelu": (dict(V3, hidden_act="quick_gelu", layer_norm_eps=1e-12), dict(lens=[20], pad=["none"]), {}),
    "act_silu": (dict(V3, hidden_act="silu"), dict(lens=[20], pad=["none"]), {}),
    "single_token": (dict(V3), dict(lens=[1], pad=["none"]), {}),
    # Weight formats of the same v3-style geometry.
    "format_pytorch_bin": (dict(V3), dict(lens=[20, 13], pad=["none", "right"]), dict(format="bin")),
    "format_sharded": (dict(V3), dict(lens=[20, 13], pad=["none", "right"]), dict(format="sharded")),
    "format_f16": (dict(V3), dict(lens=[20, 13], pad=["none", "right"]), dict(format="f16")),
    "format_bf16": (dict(V3), dict(lens=[20, 13], pad=["none", "right"]), dict(format="bf16")),
    "format_prefixed": (dict(V3), dict(lens=[20, 13], pad=["none", "right"]), dict(format="prefixed")),
    # A 3-D attention mask (see the README: embeddings use mask.sum(-2) > 0).
    "mask_3d": (dict(V3), dict(lens=[16, 16], pad=["none", "none"], mask3d=True), {}),
}


def perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.15 * noise)


def make_inputs(spec, cfg, seed):
    g = torch.Generator().manual_seed(seed + 1)
    lens, pads = spec["lens"], spec["pad"]
    L = max(lens)
    b = len(lens)
    ids = torch.randint(4, cfg.vocab_size, (b, L), generator=g)
    mask = torch.ones(b, L, dtype=torch.long)
    for r, (n, pad) in enumerate(zip(lens, pads)):
        if pad == "right":
            mask[r, n:] = 0
            ids[r, n:] = 0
        elif pad == "left":
            mask[r, : L - n] = 0
            ids[r, : L - n] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if spec.get("token_types"):
        inputs["token_type_ids"] = torch.randint(0, cfg.type_vocab_size, (b, L), generator=g)
    if spec.get("position_ids"):
        inputs["position_ids"] = torch.randint(0, cfg.max_position_embeddings, (b, L), generator=g)
    if spec.get("mask3d"):
        m3 = (torch.rand(b, L, L, generator=g) > 0.3).long()
        m3[:, torch.arange(L), torch.arange(L)] = 1  # every query sees itself
        m3[1, 5, :] = 0  # a fully masked query row
        m3[1, :, 7] = 0  # a key nobody sees (so mask.sum(-2) is 0 there)
        inputs["attention_mask"] = m3
    return inputs


def run_reference(model, inputs, cfg):
    """Outputs named as `deberta forward` names them."""
    with torch.no_grad():
        if inputs["attention_mask"].dim() == 3:
            # transformers multiplies a 3-D mask into the embeddings, which only broadcasts when
            # L == hidden; we give the embeddings the derived input mask, as the encoder does.
            m3 = inputs["attention_mask"]
            input_mask = (m3.sum(-2) > 0).long()
            emb = model.embeddings(input_ids=inputs["input_ids"], mask=input_mask)
            enc = model.encoder(emb, m3, output_hidden_states=True, output_attentions=True, return_dict=True)
            hidden, attn, last = enc.hidden_states, enc.attentions, enc.last_hidden_state
        else:
            out = model(**inputs, output_hidden_states=True, output_attentions=True)
            hidden, attn, last = out.hidden_states, out.attentions, out.last_hidden_state
    tensors = {"last_hidden_state": last}
    for i, h in enumerate(hidden):
        tensors[f"hidden_states.{i}"] = h
    for i, a in enumerate(attn):
        tensors[f"attentions.{i}"] = a
    return {k: v.float().clone().contiguous() for k, v in tensors.items()}


def save_weights(model, case_dir, fmt, cfg, seed):
    """Saves the checkpoint in the case's format; returns the model whose outputs are expected."""
    if fmt == "bin":
        cfg.save_pretrained(case_dir)
        torch.save(model.state_dict(), os.path.join(case_dir, "pytorch_model.bin"))
    elif fmt == "sharded":
        model.save_pretrained(case_dir, max_shard_size="20KB")
    elif fmt in ("f16", "bf16"):
        dtype = torch.float16 if fmt == "f16" else torch.bfloat16
        model.to(dtype).save_pretrained(case_dir)
        model.to(torch.float32)  # expected outputs: the rounded weights, computed in f32
    elif fmt == "prefixed":
        head = DebertaV2ForSequenceClassification(cfg)
        head.deberta.load_state_dict(model.state_dict())
        head.save_pretrained(case_dir)
    else:
        model.save_pretrained(case_dir)
    for leftover in ("generation_config.json",):
        p = os.path.join(case_dir, leftover)
        if os.path.exists(p):
            os.remove(p)
    return model


def build_case(name, overrides, spec, opts, seed):
    case_dir = os.path.join(ROOT, name)
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    cfg = DebertaV2Config(**{**TINY, **overrides})
    torch.manual_seed(seed)
    model = DebertaV2Model(cfg).eval()
    perturb(model, seed)
    model = save_weights(model, case_dir, opts.get("format", "safetensors"), cfg, seed).eval()
    inputs = make_inputs(spec, cfg, seed)
    expected = run_reference(model, inputs, cfg)
    if not opts.get("attentions", True):
        expected = {k: v for k, v in expected.items() if not k.startswith("attentions.")}
    save_file(expected, os.path.join(case_dir, "expected.safetensors"))
    with open(os.path.join(case_dir, "input.json"), "w") as f:
        json.dump({k: v.tolist() for k, v in inputs.items()}, f)
    return {
        "name": name,
        "attentions": opts.get("attentions", True),
        "format": opts.get("format", "safetensors"),
        "tensors": sorted(expected),
    }


def main():
    if torch.__version__.split("+")[0] != TORCH_VERSION or transformers.__version__ != TRANSFORMERS_VERSION:
        sys.exit(f"need torch {TORCH_VERSION} and transformers {TRANSFORMERS_VERSION}, "
                 f"have {torch.__version__} / {transformers.__version__}")
    torch.set_num_threads(1)
    os.makedirs(ROOT, exist_ok=True)
    manifest = []
    for i, (name, (overrides, spec, opts)) in enumerate(CASES.items()):
        manifest.append(build_case(name, overrides, spec, opts, seed=1000 + i))
        print(f"{name}: ok")
    with open(os.path.join(ROOT, "manifest.json"), "w") as f:
        json.dump({"torch": TORCH_VERSION, "transformers": TRANSFORMERS_VERSION, "cases": manifest}, f, indent=1)


if __name__ == "__main__":
    main()
