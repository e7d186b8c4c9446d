"""What int8 variants would cost in accuracy, simulated in transformers (issue 7).

Replaces the six encoder linears of each layer with a fake-quantised version (per-token-row
asymmetric activations, per-channel symmetric weights; the position projections stay f32, as in
`cpu/int8.rs`) and prints max |logits - f32| for plain u8 x s8 (`--dtype int8` before the pair
bound), for 7-bit activations or 7-bit weights (what `vpmaddubsw` needs to be free of i16
saturation without a bound), for the pair-bounded s8 weights `--dtype int8` uses (each channel
scaled so that every pair k = 2j, 2j+1 of same-sign weights sums to at most 127 before rounding),
and for ONNX Runtime int8, on the inputs compare.py checks.

    ~/deberta-ref/venv/bin/python benchmarks/int8_sim.py [base|xsmall]   # after compare.py built .work/
"""
import sys, numpy as np, torch, os
from transformers import DebertaV2ForSequenceClassification
from transformers.models.deberta_v2 import modeling_deberta_v2 as M
torch.set_num_threads(2)
MD = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".work", sys.argv[1] if len(sys.argv) > 1 else "base")
model = DebertaV2ForSequenceClassification.from_pretrained(MD).eval()
STATE = {"on": False, "act_levels": 255, "w_levels": 127, "pair_bound": False, "inside_rel": False}
orig_dab = M.DisentangledSelfAttention.disentangled_attention_bias
def dab(self, *a, **k):
    STATE["inside_rel"] = True
    try: return orig_dab(self, *a, **k)
    finally: STATE["inside_rel"] = False
M.DisentangledSelfAttention.disentangled_attention_bias = dab
def qlinear(mod):
    orig = mod.forward
    w = mod.weight.detach().double()
    cache = {}
    def fwd(x):
        if not STATE["on"] or STATE["inside_rel"]:
            return orig(x)
        wl, al, pb = STATE["w_levels"], STATE["act_levels"], STATE["pair_bound"]
        if (wl, pb) not in cache:
            s = w.abs().amax(1, keepdim=True) / wl
            # The largest same-sign pair sum, as cpu/int8.rs's quantize_weight_row (which rounds
            # halves away from zero where torch.round rounds them to even, and enforces the
            # bound once more after rounding; in_dim must be even here).
            if pb:
                pos, neg = w.clamp(min=0), (-w).clamp(min=0)
                pair = torch.maximum(pos[:, 0::2] + pos[:, 1::2], neg[:, 0::2] + neg[:, 1::2])
                s = pair.amax(1, keepdim=True) / wl
            cache[(wl, pb)] = (torch.clamp(torch.round(w / s), -wl, wl) * s)
        wq = cache[(wl, pb)]
        x2 = x.double().reshape(-1, x.shape[-1])
        lo = torch.clamp(x2.amin(1, keepdim=True), max=0); hi = torch.clamp(x2.amax(1, keepdim=True), min=0)
        scale = torch.where(hi > lo, (hi - lo) / al, torch.ones_like(hi))
        zero = torch.clamp(torch.round(-lo / scale), 0, al)
        q = torch.clamp(torch.round(x2 / scale + zero), 0, al)
        xq = (q - zero) * scale
        out = xq @ wq.T + mod.bias.detach().double()
        return out.float().reshape(*x.shape[:-1], -1)
    mod.forward = fwd
for layer in model.deberta.encoder.layer:
    a = layer.attention
    for m in [a.self.query_proj, a.self.key_proj, a.self.value_proj, a.output.dense, layer.intermediate.dense, layer.output.dense]:
        qlinear(m)
def fixed_input(batch, seq, seed=1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, 128000, size=(batch, seq), dtype=np.int64)
    return ids, np.ones_like(ids)
import onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 2
sess = ort.InferenceSession(os.path.join(MD, "model.int8.onnx"), so, providers=["CPUExecutionProvider"])
inputs = [fixed_input(2, 64)] + [fixed_input(8, 128, seed=s) for s in range(2, 6)]
variants = [("u8 act, s8 w", 255, 127, False), ("u7 act, s8 w", 127, 127, False), ("u8 act, s7 w", 255, 63, False),
            ("u8 act, pair-bounded s8 w (--dtype int8)", 255, 127, True)]
res = {n: [] for n, _, _, _ in variants}; res["ORT int8"] = []
for ids, mask in inputs:
    ti, tm = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.inference_mode():
        STATE["on"] = False
        ref = model(input_ids=ti, attention_mask=tm).logits.double().numpy()
        for n, al, wl, pb in variants:
            STATE.update(on=True, act_levels=al, w_levels=wl, pair_bound=pb)
            res[n].append(np.abs(model(input_ids=ti, attention_mask=tm).logits.double().numpy() - ref).max())
    o = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    res["ORT int8"].append(np.abs(o - ref).max())
for n, v in res.items():
    print(f"{n:42s} 2x64: {v[0]:.2e}   8x128 x4: " + " ".join(f"{x:.2e}" for x in v[1:]))
