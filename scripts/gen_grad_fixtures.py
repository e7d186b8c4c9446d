#!/usr/bin/env python3
"""Generate the golden training fixtures with transformers (the reference): gradients of every
parameter for every config variant and every head / loss rule, and AdamW runs.

Run with the reference environment (../shared/reference/setup.sh):
    ~/deberta-ref/venv/bin/python scripts/gen_grad_fixtures.py

fixtures/grad/<case>/: a tiny perturbed checkpoint (f32), `input.json` (`deberta forward`'s
input format with the labels) and `expected.safetensors` with `loss` ([1]) and `grad.<name>`
for every entry of `model.named_parameters()`. The reference runs in float64 on the f32 weights,
so it is the exact gradient of what the checkpoint computes; dropouts are 0.

fixtures/optim/<case>/: a checkpoint, `input.json`, `options.json` (the `deberta train` flags)
and `expected.safetensors` with every parameter after N steps of `torch.optim.AdamW` under
`get_linear_schedule_with_warmup` (or cosine) with global-norm clipping, weight decay on every
parameter except biases and LayerNorm weights, and optional layer-wise lr decay. Also float64.
`exclude.<name>` (u8) marks the elements whose gradient is zero in exact arithmetic (|g| < 1e-12
in float64 at every step, e.g. the key bias that softmax cancels): in f32 they get rounding
noise that Adam normalises to a full step of arbitrary sign, so the check skips them.
Outputs are committed; CI never runs this script.
"""
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_fixtures  # noqa: E402
from gen_fixtures import V3, perturb  # noqa: E402
from transformers import (
    DebertaV2Config,
    DebertaV2ForMaskedLM,
    DebertaV2ForMultipleChoice,
    DebertaV2ForQuestionAnswering,
    DebertaV2ForSequenceClassification,
    DebertaV2ForTokenClassification,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

TORCH_VERSION = "2.15.0"
TRANSFORMERS_VERSION = "5.24.0"
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
GRAD_ROOT = os.path.join(REPO, "fixtures", "grad")
OPTIM_ROOT = os.path.join(REPO, "fixtures", "optim")

# gen_fixtures.py's tiny geometry, with every dropout 0 (the pooler's too).
TINY = dict(gen_fixtures.TINY, pooler_dropout=0.0)
CONV = dict(V3, conv_kernel_size=3, conv_act="gelu", pooler_hidden_act="tanh")
CLASSES = {
    "mlm": DebertaV2ForMaskedLM,
    "seq": DebertaV2ForSequenceClassification,
    "tok": DebertaV2ForTokenClassification,
    "qa": DebertaV2ForQuestionAnswering,
    "mc": DebertaV2ForMultipleChoice,
}
PAD3 = dict(lens=[40, 29, 17], pad=["none", "right", "left"])
SHORT = dict(lens=[14, 9, 5], pad=["none", "right", "left"])

# name -> (head, config overrides, input spec, label rule)
CASES = {
    # Config variants of the backbone, under the sequence-classification head (3 classes, CE).
    "v3_buckets": ("seq", dict(V3, num_labels=3), PAD3, "classes"),
    "unbucketed_small_span": ("seq", dict(V3, num_labels=3, position_buckets=-1, max_relative_positions=8), dict(lens=[24, 20, 11], pad=["none", "left", "right"]), "classes"),
    "separate_pos_proj": ("seq", dict(V3, num_labels=3, share_att_key=False), PAD3, "classes"),
    "c2p_only": ("seq", dict(V3, num_labels=3, share_att_key=False, pos_att_type="c2p"), PAD3, "classes"),
    "p2c_only": ("seq", dict(V3, num_labels=3, share_att_key=False, pos_att_type=["p2c"]), PAD3, "classes"),
    "c2p_only_shared": ("seq", dict(V3, num_labels=3, pos_att_type="c2p"), SHORT, "classes"),
    "no_pos_att_type": ("seq", dict(V3, num_labels=3, pos_att_type="None"), SHORT, "classes"),
    "no_relative_attention": ("seq", dict(num_labels=3, relative_attention=False, position_biased_input=True), SHORT, "classes"),
    "norm_rel_none": ("seq", dict(V3, num_labels=3, norm_rel_ebd="none"), PAD3, "classes"),
    "token_types_positions": ("seq", dict(V3, num_labels=3, position_biased_input=True, type_vocab_size=3), dict(SHORT, token_types=True, position_ids=True), "classes"),
    "embedding_size": ("seq", dict(V3, num_labels=3, embedding_size=24, position_biased_input=True, type_vocab_size=2), dict(SHORT, token_types=True), "classes"),
    "conv_groups_gelu": ("seq", dict(V3, num_labels=3, conv_kernel_size=3, conv_groups=2, conv_act="gelu", attention_head_size=8, position_buckets=-1), SHORT, "classes"),
    "conv_tanh_k5": ("seq", dict(V3, num_labels=3, conv_kernel_size=5, pooler_hidden_act="tanh"), SHORT, "classes"),
    "act_gelu_new_eps": ("seq", dict(V3, num_labels=3, hidden_act="gelu_new", layer_norm_eps=1e-5), SHORT, "classes"),
    "act_mish": ("seq", dict(V3, num_labels=3, hidden_act="mish"), SHORT, "classes"),
    "act_quick_gelu": ("seq", dict(V3, num_labels=3, hidden_act="quick_gelu"), SHORT, "classes"),
    "act_silu": ("seq", dict(V3, num_labels=3, hidden_act="silu"), SHORT, "classes"),
    "act_relu": ("seq", dict(V3, num_labels=3, hidden_act="relu", pooler_hidden_act="relu"), SHORT, "classes"),
    # Heads and their loss rules.
    "seq_conv_single_label": ("seq", dict(CONV, num_labels=3, problem_type="single_label_classification"), SHORT, "single_label"),
    "seq_mse_one_label": ("seq", dict(V3, num_labels=1), SHORT, "mse"),
    "seq_regression": ("seq", dict(V3, num_labels=2, problem_type="regression"), SHORT, "regression"),
    "seq_multi_label": ("seq", dict(V3, num_labels=3, problem_type="multi_label_classification"), SHORT, "multi_label"),
    "seq_soft_labels": ("seq", dict(V3, num_labels=3), SHORT, "soft"),
    "seq_negative_dropped": ("seq", dict(V3, num_labels=3), SHORT, "negative"),
    "mlm_legacy_v3": ("mlm", dict(V3, legacy=True), PAD3, "tokens"),
    "mlm_legacy_conv_embedding_size": ("mlm", dict(CONV, legacy=True, embedding_size=24), SHORT, "tokens"),
    "mlm_lm_predictions_v3": ("mlm", dict(V3, legacy=False), PAD3, "tokens"),
    "tok_v3": ("tok", dict(V3, num_labels=5), PAD3, "tokens"),
    "tok_conv": ("tok", dict(CONV, num_labels=5), SHORT, "tokens"),
    "qa_v3": ("qa", dict(V3), PAD3, "spans"),
    "qa_conv": ("qa", dict(CONV), SHORT, "spans"),
    "mc_v3": ("mc", dict(V3), dict(lens=[14, 9, 5, 14, 7, 3], pad=["none", "right", "left", "none", "right", "left"]), "choice"),
    "mc_conv": ("mc", dict(CONV), dict(lens=[14, 9, 5, 14, 7, 3], pad=["none", "right", "left", "none", "right", "left"]), "choice"),
    # The pad id inside the text (mask 1): its embedding row gets no gradient (padding_idx)...
    "seq_pad_id_inside": ("seq", dict(V3, num_labels=3), dict(SHORT, pad_ids_inside=True), "classes"),
    # ... while the tied decoder's row of the pad id keeps its own gradient.
    "mlm_pad_id_inside": ("mlm", dict(V3, legacy=True), dict(SHORT, pad_ids_inside=True), "tokens"),
}

# name -> (grad case whose checkpoint and batch are used, options)
OPTIM_CASES = {
    "adamw_linear_warmup_clip": ("v3_buckets", dict(learning_rate=1e-3, weight_decay=0.01, warmup_steps=2, max_steps=6, max_grad_norm=1.0, lr_schedule="linear", adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, layer_lr_decay=1.0)),
    "adamw_cosine_llrd_noclip": ("tok_conv", dict(learning_rate=2e-3, weight_decay=0.1, warmup_steps=1, max_steps=5, max_grad_norm=0.0, lr_schedule="cosine", adam_beta1=0.8, adam_beta2=0.99, adam_epsilon=1e-6, layer_lr_decay=0.8)),
    # Gradient accumulation over two different micro-batches (rows [0, 1] and [2] of the batch):
    # each micro-batch's mean loss / 2, gradients summed, as the Trainer accumulates.
    "adamw_accumulation": ("v3_buckets", dict(learning_rate=1e-3, weight_decay=0.01, warmup_steps=1, max_steps=3, max_grad_norm=1.0, lr_schedule="linear", adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, layer_lr_decay=1.0, micro_batches=[[0, 1], [2]])),
    "adamw_mlm_tied": ("mlm_legacy_v3", dict(learning_rate=1e-3, weight_decay=0.01, warmup_steps=0, max_steps=4, max_grad_norm=0.5, lr_schedule="linear", adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, layer_lr_decay=1.0)),
}


def make_inputs(spec, cfg, seed):
    """gen_fixtures.py's inputs, plus `pad_ids_inside`: the pad id inside the text (mask 1),
    whose embedding row nn.Embedding(padding_idx) gives no gradient."""
    inputs = gen_fixtures.make_inputs(spec, cfg, seed)
    if spec.get("pad_ids_inside"):
        inputs["input_ids"][0, 3] = cfg.pad_token_id
        inputs["input_ids"][1, 2] = cfg.pad_token_id
    return inputs


def with_labels(rule, cfg, base, g):
    b, L = base["input_ids"].shape[0], base["input_ids"].shape[-1]
    n = cfg.num_labels
    if rule in ("classes", "single_label"):
        return dict(base, labels=torch.tensor([2, 0, 1][:b]))
    if rule == "negative":
        return dict(base, labels=torch.tensor([2, -1, 1]))
    if rule == "mse":
        return dict(base, labels=torch.randn(b, generator=g))
    if rule == "regression":
        return dict(base, labels=torch.randn(b, n, generator=g))
    if rule == "multi_label":
        return dict(base, labels=(torch.rand(b, n, generator=g) > 0.5).float())
    if rule == "soft":
        return dict(base, labels=torch.softmax(torch.randn(b, n, generator=g), -1))
    if rule == "tokens":
        classes = cfg.vocab_size if cfg.architectures is None or "MaskedLM" in str(cfg.architectures) else n
        labels = torch.randint(0, classes, (b, L), generator=g)
        labels[torch.rand(b, L, generator=g) > 0.5] = -100
        labels[base["attention_mask"] == 0] = -100
        return dict(base, labels=labels)
    if rule == "spans":
        # An in-range span, a start past the end (clamped to L and ignored), a negative end (clamped to 0).
        return dict(base, start_positions=torch.tensor([3, 100, 1]), end_positions=torch.tensor([5, 2, -3]))
    if rule == "choice":
        return dict(base, labels=torch.tensor([2, 0]))
    raise ValueError(rule)


def build_model(kind, overrides, seed):
    cfg = DebertaV2Config(**{**TINY, **overrides})
    cfg.architectures = [CLASSES[kind].__name__]
    torch.manual_seed(seed)
    model = CLASSES[kind](cfg)
    perturb(model, seed)
    return cfg, model


def case_inputs(kind, rule, cfg, spec, seed):
    base = make_inputs(spec, cfg, seed)
    if kind == "mc":
        base = {k: v.view(2, 3, -1) for k, v in base.items()}
    g = torch.Generator().manual_seed(seed + 7)
    return with_labels(rule, cfg, base, g)


def as_f64(inputs):
    return {k: (v.double() if v.is_floating_point() else v) for k, v in inputs.items()}


def gradients(model64, inputs):
    model64.zero_grad(set_to_none=True)
    out = model64(**as_f64(inputs))
    out.loss.backward()
    grads = {}
    for name, p in model64.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        grads[name] = g.detach().clone()
    return out.loss.detach(), grads


def save_case(case_dir, model, inputs):
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    model.save_pretrained(case_dir)
    for leftover in ("generation_config.json",):
        p = os.path.join(case_dir, leftover)
        if os.path.exists(p):
            os.remove(p)
    with open(os.path.join(case_dir, "input.json"), "w") as f:
        json.dump({k: v.tolist() for k, v in inputs.items()}, f)


def build_grad_case(name, kind, overrides, spec, rule, seed):
    cfg, model = build_model(kind, overrides, seed)
    inputs = case_inputs(kind, rule, cfg, spec, seed)
    case_dir = os.path.join(GRAD_ROOT, name)
    save_case(case_dir, model, inputs)
    model64 = model.double().train()
    loss, grads = gradients(model64, inputs)
    tensors = {"loss": loss.reshape(1).float()}
    tensors.update({f"grad.{k}": v.float().contiguous() for k, v in grads.items()})
    save_file(tensors, os.path.join(case_dir, "expected.safetensors"))
    zero = sorted(k for k, v in grads.items() if v.abs().max().item() < 1e-12)
    return {"name": name, "class": CLASSES[kind].__name__, "loss_rule": rule, "loss": loss.item(),
            "parameters": len(grads), "exactly_zero_gradients": zero}


# ---------------------------------------------------------------------------------------------
# AdamW runs.

def layer_depth(name, num_layers):
    """ELECTRA's layer-wise depth: embeddings 0, encoder layer i -> i + 1, the rest of the
    encoder (relative embeddings, their LayerNorm, the conv layer) num_layers, pooler
    num_layers + 1, task heads num_layers + 2. Must match deberta-train's `layer_depth`."""
    parts = name.split(".")
    if name.startswith("deberta.embeddings."):
        return 0
    if name.startswith("deberta.encoder.layer."):
        return int(parts[3]) + 1
    if name.startswith("deberta.encoder."):
        return num_layers
    if name.startswith("pooler.") or ".pooler." in name:
        return num_layers + 1
    return num_layers + 2


def decays(name):
    return not (name.endswith("bias") or "LayerNorm.weight" in name or "layernorm.weight" in name.lower())


def param_groups(model, opts):
    groups = {}
    n = model.config.num_hidden_layers
    for name, p in model.named_parameters():
        scale = opts["layer_lr_decay"] ** (n + 2 - layer_depth(name, n))
        wd = opts["weight_decay"] if decays(name) else 0.0
        groups.setdefault((scale, wd), []).append(p)
    return [dict(params=ps, lr=opts["learning_rate"] * scale, weight_decay=wd) for (scale, wd), ps in groups.items()]


def build_optim_case(name, source, opts, seed):
    kind, overrides, spec, rule = CASES[source]
    cfg, model = build_model(kind, overrides, seed)
    inputs = case_inputs(kind, rule, cfg, spec, seed)
    case_dir = os.path.join(OPTIM_ROOT, name)
    save_case(case_dir, model, inputs)
    with open(os.path.join(case_dir, "options.json"), "w") as f:
        json.dump(opts, f, indent=1)
    model64 = model.double().train()
    optimizer = torch.optim.AdamW(param_groups(model64, opts), betas=(opts["adam_beta1"], opts["adam_beta2"]),
                                  eps=opts["adam_epsilon"], foreach=False)
    sched = {"linear": get_linear_schedule_with_warmup, "cosine": get_cosine_schedule_with_warmup}[opts["lr_schedule"]]
    scheduler = sched(optimizer, opts["warmup_steps"], opts["max_steps"])
    names = [k for k, _ in model64.named_parameters()]
    tiny = {k: None for k in names}
    losses, lrs, norms = [], [], []
    for _ in range(opts["max_steps"]):
        lrs.append(opts["learning_rate"] * scheduler.lr_lambdas[0](scheduler.last_epoch))
        optimizer.zero_grad(set_to_none=True)
        micro = opts.get("micro_batches", [list(range(inputs["input_ids"].shape[0]))])
        step_loss = 0.0
        for rows in micro:
            out = model64(**as_f64({k: v[rows] for k, v in inputs.items()}))
            (out.loss / len(micro)).backward()
            step_loss += out.loss.item() / len(micro)
        losses.append(step_loss)
        for k, p in model64.named_parameters():
            small = (p.grad.abs() < 1e-12) if p.grad is not None else torch.ones_like(p, dtype=torch.bool)
            tiny[k] = small if tiny[k] is None else (tiny[k] & small)
        if opts["max_grad_norm"] > 0:
            norms.append(torch.nn.utils.clip_grad_norm_(model64.parameters(), opts["max_grad_norm"]).item())
        else:
            norms.append(torch.sqrt(sum((p.grad ** 2).sum() for p in model64.parameters() if p.grad is not None)).item())
        optimizer.step()
        scheduler.step()
    tensors = {f"param.{k}": p.detach().float().contiguous() for k, p in model64.named_parameters()}
    for k, mask in tiny.items():
        if mask.any():
            tensors[f"exclude.{k}"] = mask.to(torch.uint8).contiguous()
    tensors["losses"] = torch.tensor(losses, dtype=torch.float32)
    tensors["grad_norms"] = torch.tensor(norms, dtype=torch.float32)
    tensors["learning_rates"] = torch.tensor(lrs, dtype=torch.float32)
    save_file(tensors, os.path.join(case_dir, "expected.safetensors"))
    excluded = {k: int(m.sum()) for k, m in tiny.items() if m.any()}
    return {"name": name, "source": source, "options": opts, "losses": losses, "grad_norms": norms, "learning_rates": lrs,
            "excluded_elements": excluded}


def main():
    if torch.__version__.split("+")[0] != TORCH_VERSION or transformers.__version__ != TRANSFORMERS_VERSION:
        sys.exit(f"need torch {TORCH_VERSION} and transformers {TRANSFORMERS_VERSION}, "
                 f"have {torch.__version__} / {transformers.__version__}")
    torch.set_num_threads(1)
    manifest = []
    seeds = {}
    for i, (name, (kind, overrides, spec, rule)) in enumerate(CASES.items()):
        seeds[name] = 3000 + i
        manifest.append(build_grad_case(name, kind, overrides, spec, rule, seeds[name]))
        print(f"grad {name}: loss {manifest[-1]['loss']:.6f}, zero grads: {manifest[-1]['exactly_zero_gradients']}")
    with open(os.path.join(GRAD_ROOT, "manifest.json"), "w") as f:
        json.dump({"torch": TORCH_VERSION, "transformers": TRANSFORMERS_VERSION, "dtype": "float64",
                   "cases": manifest}, f, indent=1)
    optim = []
    for name, (source, opts) in OPTIM_CASES.items():
        optim.append(build_optim_case(name, source, opts, seeds[source]))
        print(f"optim {name}: losses {optim[-1]['losses']}")
    with open(os.path.join(OPTIM_ROOT, "manifest.json"), "w") as f:
        json.dump({"torch": TORCH_VERSION, "transformers": TRANSFORMERS_VERSION, "dtype": "float64",
                   "cases": optim}, f, indent=1)


if __name__ == "__main__":
    main()
