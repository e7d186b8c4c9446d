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
import subprocess
import tempfile

from transformers import (
    DebertaV2Config,
    DebertaV2ForMaskedLM,
    DebertaV2ForMultipleChoice,
    DebertaV2ForQuestionAnswering,
    DebertaV2ForSequenceClassification,
    DebertaV2ForTokenClassification,
    DebertaV2Model,
)

TORCH_VERSION = "2.15.0"
TRANSFORMERS_VERSION = "5.24.0"
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ROOT = os.path.join(REPO, "fixtures", "models")
HEADS_ROOT = os.path.join(REPO, "fixtures", "heads")

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


# ---------------------------------------------------------------------------------------------
# Heads: logits and every loss rule, on a v3-style and a v2 conv-layer config, with padding.

CONV = dict(V3, conv_kernel_size=3, conv_act="gelu", pooler_hidden_act="tanh")
HEAD_CLASSES = {
    "mlm": DebertaV2ForMaskedLM,
    "seq": DebertaV2ForSequenceClassification,
    "tok": DebertaV2ForTokenClassification,
    "qa": DebertaV2ForQuestionAnswering,
    "mc": DebertaV2ForMultipleChoice,
}
PAD3 = dict(lens=[12, 9, 5], pad=["none", "right", "left"])


def runs_for(kind, cfg, base, g):
    """name -> inputs (with labels) for one head checkpoint."""
    b, L = base["input_ids"].shape[0], base["input_ids"].shape[-1]
    runs = {"nolabels": dict(base)}
    if kind == "mlm":
        labels = torch.randint(0, cfg.vocab_size, (b, L), generator=g)
        labels[torch.rand(b, L, generator=g) > 0.5] = -100
        runs["labels"] = dict(base, labels=labels)
    elif kind == "tok":
        labels = torch.randint(0, cfg.num_labels, (b, L), generator=g)
        labels[base["attention_mask"] == 0] = -100
        runs["labels"] = dict(base, labels=labels)
    elif kind == "qa":
        runs["positions"] = dict(base, start_positions=torch.tensor([3, 100, 0]), end_positions=torch.tensor([[5], [2], [-3]]))
    elif kind == "mc":
        runs["labels"] = dict(base, labels=torch.tensor([2, 0]))
    elif kind == "seq":
        pt, n = cfg.problem_type, cfg.num_labels
        if pt is None and n == 1:
            runs["mse"] = dict(base, labels=torch.randn(b, generator=g))
        elif pt is None:
            runs["labels_negative_dropped"] = dict(base, labels=torch.tensor([2, -1, 0]))
            runs["labels_all_negative"] = dict(base, labels=torch.tensor([-1, -5, -100]))
            runs["soft_labels"] = dict(base, labels=torch.softmax(torch.randn(b, n, generator=g), -1))
        elif pt == "regression":
            runs["regression"] = dict(base, labels=torch.randn(b, n, generator=g))
        elif pt == "single_label_classification":
            runs["single_label"] = dict(base, labels=torch.tensor([1, -100, 2]))
        elif pt == "multi_label_classification":
            runs["multi_label"] = dict(base, labels=(torch.rand(b, n, generator=g) > 0.5).float())
    return runs


def head_outputs(model, inputs):
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    tensors = {"hidden_states.%d" % i: h for i, h in enumerate(out.hidden_states)}
    for field in ("logits", "start_logits", "end_logits"):
        if getattr(out, field, None) is not None:
            tensors[field] = getattr(out, field)
    if out.loss is not None:
        tensors["loss"] = out.loss.reshape(1)
    return {k: v.float().clone().contiguous() for k, v in tensors.items()}


# name -> (head kind, config overrides, checkpoint edit)
HEAD_CASES = {
    "mlm_legacy_v3": ("mlm", dict(V3, legacy=True), None),
    "mlm_legacy_conv_embedding_size": ("mlm", dict(CONV, legacy=True, embedding_size=24), None),
    "mlm_lm_predictions_v3": ("mlm", dict(V3, legacy=False), None),
    "mlm_lm_predictions_conv": ("mlm", dict(CONV, legacy=False), None),
    # Microsoft-style: lm_predictions.* weights but legacy=true in config.json. transformers would
    # drop the head; we load it. Expected outputs: the legacy=false model on the same weights.
    "mlm_lm_predictions_under_legacy_true": ("mlm", dict(V3, legacy=False), "set_legacy_true"),
    "seq_v3": ("seq", dict(V3, num_labels=3), None),
    "seq_conv": ("seq", dict(CONV, num_labels=3), None),
    "seq_mse_one_label": ("seq", dict(V3, num_labels=1), None),
    "seq_problem_regression": ("seq", dict(V3, num_labels=2, problem_type="regression"), None),
    "seq_problem_single_label": ("seq", dict(CONV, num_labels=3, problem_type="single_label_classification"), None),
    "seq_problem_multi_label": ("seq", dict(V3, num_labels=3, problem_type="multi_label_classification"), None),
    "tok_v3": ("tok", dict(V3, num_labels=5), None),
    "tok_conv": ("tok", dict(CONV, num_labels=5), None),
    "qa_v3": ("qa", dict(V3), None),
    "qa_conv": ("qa", dict(CONV), None),
    "mc_v3": ("mc", dict(V3), None),
    "mc_conv": ("mc", dict(CONV), None),
}


def build_head_case(name, kind, overrides, edit, seed):
    case_dir = os.path.join(HEADS_ROOT, name)
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    cfg = DebertaV2Config(**{**TINY, **overrides})
    torch.manual_seed(seed)
    model = HEAD_CLASSES[kind](cfg).eval()
    perturb(model, seed)
    model.save_pretrained(case_dir)
    if edit == "set_legacy_true":
        path = os.path.join(case_dir, "config.json")
        with open(path) as f:
            saved = json.load(f)
        saved["legacy"] = True
        with open(path, "w") as f:
            json.dump(saved, f, indent=2)
    g = torch.Generator().manual_seed(seed + 7)
    if kind == "mc":
        base = make_inputs(dict(lens=[12, 9, 5, 12, 7, 3], pad=["none", "right", "left", "none", "right", "left"]), cfg, seed)
        base = {k: v.view(2, 3, -1) for k, v in base.items()}
    else:
        base = make_inputs(PAD3, cfg, seed)
    runs = runs_for(kind, cfg, base, g)
    for run, inputs in runs.items():
        save_file(head_outputs(model, inputs), os.path.join(case_dir, f"{run}.expected.safetensors"))
        with open(os.path.join(case_dir, f"{run}.input.json"), "w") as f:
            json.dump({k: v.tolist() for k, v in inputs.items()}, f)
    return {"name": name, "class": HEAD_CLASSES[kind].__name__, "runs": sorted(runs)}, model, runs


def check_rust_save(name, cls, model, runs):
    """Rust loads the case and saves it; transformers must load that with no key problems and
    give the same outputs."""
    src = os.path.join(HEADS_ROOT, name)
    with tempfile.TemporaryDirectory() as dst:
        subprocess.run(["cargo", "run", "-q", "-p", "deberta", "--example", "resave", "--", src, dst],
                       check=True, cwd=REPO)
        reloaded, info = cls.from_pretrained(dst, output_loading_info=True)
        reloaded.eval()
        problems = {k: sorted(v) for k, v in info.items() if v}
        worst = 0.0
        for inputs in runs.values():
            a, b = head_outputs(model, inputs), head_outputs(reloaded, inputs)
            worst = max(worst, max((a[k] - b[k]).abs().max().item() for k in a))
    result = {"name": name, "loading_info_problems": problems, "max_abs_diff": worst,
              "ok": not problems and worst == 0.0}
    # The assertion lives here, where transformers runs; the Rust test checks what Rust can
    # (that its save holds exactly transformers' tensors), and this file is the record.
    if not result["ok"]:
        sys.exit(f"{name}: transformers did not load the Rust save cleanly: {result}")
    return result


def build_heads():
    manifest, roundtrip = [], []
    for i, (name, (kind, overrides, edit)) in enumerate(HEAD_CASES.items()):
        entry, model, runs = build_head_case(name, kind, overrides, edit, seed=2000 + i)
        manifest.append(entry)
        roundtrip.append(check_rust_save(name, HEAD_CLASSES[kind], model, runs))
        print(f"{name}: ok, rust save -> transformers: {roundtrip[-1]}")
    with open(os.path.join(HEADS_ROOT, "manifest.json"), "w") as f:
        json.dump({"torch": TORCH_VERSION, "transformers": TRANSFORMERS_VERSION, "cases": manifest}, f, indent=1)
    with open(os.path.join(HEADS_ROOT, "save_roundtrip.json"), "w") as f:
        json.dump(roundtrip, f, indent=1)


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
    build_heads()


if __name__ == "__main__":
    main()
