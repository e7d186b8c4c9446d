"""What int8 attention products would cost in accuracy, simulated in transformers (issue 22).

`--dtype int8` quantises the encoder's linear layers only; the four attention products (Q·Kᵀ,
the c2p product Q·pos_keyᵀ, the p2c product K·pos_queryᵀ, and probs·V) stay f32. This script
fake-quantises those products the way our int8 kernels would run them: the left operand per row,
asymmetric u8 (as activations are now), the right operand per output column, symmetric s8 with
the pair bound (as weights are now: each column scaled so that same-sign pairs sum to at most
127 before rounding). The linear layers are fake-quantised as `--dtype int8` does them throughout.

It prints max |logits - f32| for the linear layers alone (today's `--dtype int8`), for each
product added on its own, and for all four, on

* the random v3-base classifier of compare.py (its five-input check), beside ONNX Runtime int8
  (the bar issue 22 sets: our max |Δ logits| must not exceed ORT int8's), and
* the shipped `models/deberta-v3-tiny-sentiment` on the sentiment test split: max and mean
  |Δ logit| and how many argmaxes change against f32.

    ~/deberta-ref/venv/bin/python benchmarks/int8_attention_sim.py [--texts N]   # after compare.py built .work/base

Writes `benchmarks/int8_attention_sim.json`.
"""
import argparse
import json
import os

import numpy as np
import torch
from transformers import AutoTokenizer, DebertaV2ForSequenceClassification
from transformers.models.deberta_v2 import modeling_deberta_v2 as M

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PRODUCTS = ("qk", "c2p", "p2c", "pv")
# What is quantised now: the linear layers, and the attention products named here.
STATE = {"linear": False, "products": set(), "inside_rel": False, "calls": []}


def quant_rows(x):
    """Per-row asymmetric u8 over the last axis, the range always holding 0 (our activations)."""
    lo = torch.clamp(x.amin(-1, keepdim=True), max=0)
    hi = torch.clamp(x.amax(-1, keepdim=True), min=0)
    scale = torch.where(hi > lo, (hi - lo) / 255, torch.ones_like(hi))
    zero = torch.clamp(torch.round(-lo / scale), 0, 255)
    return (torch.clamp(torch.round(x / scale + zero), 0, 255) - zero) * scale


def quant_columns(w):
    """`w [..., K, N]`: per output column n, symmetric s8 with the pair bound over k (our
    weights; an odd K pairs its last row with a zero, as the kernels' padding does)."""
    padded = torch.nn.functional.pad(w, (0, 0, 0, w.shape[-2] % 2))
    pos, neg = padded.clamp(min=0), (-padded).clamp(min=0)
    pair = torch.maximum(pos[..., 0::2, :] + pos[..., 1::2, :], neg[..., 0::2, :] + neg[..., 1::2, :])
    s = pair.amax(-2, keepdim=True) / 127
    s = torch.where(s > 0, s, torch.ones_like(s))
    return torch.clamp(torch.round(w / s), -127, 127) * s


def patch_linear(mod):
    orig = mod.forward
    wq = quant_columns(mod.weight.detach().double().T).T

    def forward(x):
        if not STATE["linear"] or STATE["inside_rel"]:
            return orig(x)
        out = quant_rows(x.double()) @ wq.T + mod.bias.detach().double()
        return out.float()
    mod.forward = forward


ORIG_BMM = torch.bmm


def bmm(a, b):
    """The attention products, in transformers' call order within a layer: qk, c2p, p2c, pv."""
    name = STATE["calls"].pop(0) if STATE["calls"] else None
    if name not in STATE["products"]:
        return ORIG_BMM(a, b)
    return ORIG_BMM(quant_rows(a.double()), quant_columns(b.double())).to(a.dtype)


def patch_attention():
    orig_forward = M.DisentangledSelfAttention.forward
    orig_dab = M.DisentangledSelfAttention.disentangled_attention_bias

    def forward(self, *args, **kwargs):
        c2p, p2c = "c2p" in self.pos_att_type, "p2c" in self.pos_att_type
        STATE["calls"] = ["qk"] + ["c2p"] * c2p + ["p2c"] * p2c + ["pv"]
        torch.bmm = bmm
        try:
            out = orig_forward(self, *args, **kwargs)
        finally:
            torch.bmm = ORIG_BMM
        assert not STATE["calls"], f"products not reached: {STATE['calls']}"
        return out

    def dab(self, *args, **kwargs):
        STATE["inside_rel"] = True
        try:
            return orig_dab(self, *args, **kwargs)
        finally:
            STATE["inside_rel"] = False
    M.DisentangledSelfAttention.forward = forward
    M.DisentangledSelfAttention.disentangled_attention_bias = dab


def load(path):
    # f32 whatever the checkpoint's dtype (the shipped models are stored in f16).
    model = DebertaV2ForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    for layer in model.deberta.encoder.layer:
        a = layer.attention
        for m in (a.self.query_proj, a.self.key_proj, a.self.value_proj, a.output.dense,
                  layer.intermediate.dense, layer.output.dense):
            patch_linear(m)
    return model


VARIANTS = [("linear layers (--dtype int8 now)", True, ())] + [
    (f"linear + {p}", True, (p,)) for p in PRODUCTS] + [("linear + all four products", True, PRODUCTS)]


def run(model, enc, linear, products):
    STATE.update(linear=linear, products=set(products))
    with torch.inference_mode():
        return model(**enc).logits.double().numpy()


def random_model_check():
    """compare.py's five-input check on its random v3-base, with ORT int8 beside."""
    import onnxruntime as ort
    md = os.path.join(HERE, ".work", "base")
    model = load(md)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(os.path.join(md, "model.int8.onnx"), so, providers=["CPUExecutionProvider"])
    result = {name: 0.0 for name, _, _ in VARIANTS}
    result["ONNX Runtime int8"] = 0.0
    for batch, seq, seed in [(2, 64, 1), (8, 128, 2), (8, 128, 3), (8, 128, 4), (8, 128, 5)]:
        ids = np.random.default_rng(seed).integers(4, 128000, size=(batch, seq), dtype=np.int64)
        enc = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.ones(batch, seq, dtype=torch.long)}
        ref = run(model, enc, False, ())
        for name, linear, products in VARIANTS:
            result[name] = max(result[name], float(np.abs(run(model, enc, linear, products) - ref).max()))
        o = sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
        result["ONNX Runtime int8"] = max(result["ONNX Runtime int8"], float(np.abs(o - ref).max()))
    return result


def sentiment_check(limit):
    """The shipped sentiment classifier on the test split, text by text against f32."""
    md = os.path.join(REPO, "models", "deberta-v3-tiny-sentiment")
    model = load(md)
    tok = AutoTokenizer.from_pretrained(md)
    texts = [json.loads(l)["text"] for l in open(os.path.join(REPO, "data", "sentiment", "test.jsonl"))]
    texts = texts[:limit] if limit else texts
    stats = {name: {"max": 0.0, "sum": 0.0, "n": 0, "changed": 0} for name, _, _ in VARIANTS}
    for i in range(0, len(texts), 32):
        enc = tok(texts[i:i + 32], padding=True, truncation=True, return_tensors="pt")
        ref = run(model, enc, False, ())
        for name, linear, products in VARIANTS:
            got = run(model, enc, linear, products)
            s = stats[name]
            d = np.abs(got - ref)
            s["max"] = max(s["max"], float(d.max()))
            s["sum"] += float(d.sum())
            s["n"] += d.size
            s["changed"] += int((got.argmax(1) != ref.argmax(1)).sum())
    return {name: {"max_abs_logit_diff": s["max"], "mean_abs_logit_diff": s["sum"] / s["n"],
                   "argmax_changes": s["changed"], "texts": len(texts)} for name, s in stats.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=0, help="sentiment test texts (0: all)")
    ap.add_argument("--out", default=os.path.join(HERE, "int8_attention_sim.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    patch_attention()
    report = {"random_v3_base_five_inputs": random_model_check(), "sentiment_test": sentiment_check(args.texts)}
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print("| variant | v3-base random: max \\|Δ logits\\| | sentiment: max \\|Δ logit\\| | mean | argmax changes |")
    print("|---|---|---|---|---|")
    for name, _, _ in VARIANTS:
        r, s = report["random_v3_base_five_inputs"][name], report["sentiment_test"][name]
        print(f"| {name} | {r:.2e} | {s['max_abs_logit_diff']:.2e} | {s['mean_abs_logit_diff']:.2e} | "
              f"{s['argmax_changes']} of {s['texts']} |")
    print(f"| ONNX Runtime int8 | {report['random_v3_base_five_inputs']['ONNX Runtime int8']:.2e} | | | |")


if __name__ == "__main__":
    main()
