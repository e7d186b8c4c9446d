#!/usr/bin/env python3
"""Side-by-side CPU comparison: PyTorch eager fp32, ONNX Runtime fp32 and int8 (dynamic), and
`deberta bench` (f32, int8, bf16 linear layers), on random-weight DeBERTa-v3 base / xsmall shaped sequence classifiers.

Run by hand with the reference environment (not in CI):
    cargo build --release --bin deberta
    ~/deberta-ref/venv/bin/python benchmarks/compare.py [--models base,xsmall] [--rounds 3]

Each measurement runs in its own process (so peak RSS is per system), and the systems alternate
round by round on each shape, because single timings on shared machines move by +-30%.

A deberta system with the suffix `:noavx512` (e.g. `deberta:noavx512,deberta-int8:noavx512`)
runs with `DEBERTA_CPU_AVX512=0`, for a side-by-side A/B of the AVX-512 kernels on CPUs that
have them; the header names the linear-layer kernel each deberta system ran.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(HERE, ".work")
BINARY = os.environ.get("DEBERTA_BIN", os.path.join(REPO, "target", "release", "deberta"))
SHAPES = [(1, 128), (8, 128), (32, 128), (1, 512), (4, 512)]
SYSTEMS = ["torch", "ort", "ort-int8", "deberta", "deberta-int8", "deberta-bf16"]


def deberta_dtype(system):
    """`deberta-int8` -> int8, `deberta-bf16` -> bf16, `deberta` -> f32 (any `:` suffix ignored)."""
    base = system.split(":", 1)[0]
    return base.split("-", 1)[1] if "-" in base else "f32"


def deberta_env(system):
    """The environment of a deberta system's process: `:noavx512` turns the AVX-512 kernels off."""
    env = dict(os.environ)
    if system.endswith(":noavx512"):
        env["DEBERTA_CPU_AVX512"] = "0"
    return env


# The linear-layer kernel each deberta system reported (`deberta bench`'s `linear_kernel`).
KERNELS = {}

GEOMETRY = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "xsmall": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
}


def v3_config(name):
    from transformers import DebertaV2Config
    return DebertaV2Config(
        vocab_size=128100, relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
        share_att_key=True, pos_att_type="p2c|c2p", layer_norm_eps=1e-7, max_relative_positions=-1,
        position_biased_input=False, type_vocab_size=0, max_position_embeddings=512, num_labels=3,
        **GEOMETRY[name])


def build(name):
    """Random-weight checkpoint + ONNX fp32 + ONNX int8 under .work/<name>."""
    import torch
    from transformers import DebertaV2ForSequenceClassification
    out = os.path.join(WORK, name)
    if os.path.exists(os.path.join(out, "model.int8.onnx")):
        return out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = DebertaV2ForSequenceClassification(v3_config(name)).eval()
    model.save_pretrained(out)
    ids = torch.randint(4, 128000, (2, 16))
    mask = torch.ones_like(ids)
    torch.onnx.export(
        model, (ids, mask), os.path.join(out, "model.onnx"), dynamo=False, opset_version=17,
        input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                      "logits": {0: "batch"}})
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(os.path.join(out, "model.onnx"), os.path.join(out, "model.int8.onnx"),
                     weight_type=QuantType.QInt8)
    return out


def fixed_input(batch, seq, seed=1):
    import numpy as np
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, 128000, size=(batch, seq), dtype=np.int64)
    return ids, np.ones_like(ids)


def worker(args):
    """One system, one shape, in this process; prints JSON times (ms), peak RSS and logits."""
    import numpy as np
    ids, mask = fixed_input(args.batch, args.seq, args.seed)
    if args.system == "torch":
        import torch
        from transformers import DebertaV2ForSequenceClassification
        torch.set_num_threads(args.threads)
        model = DebertaV2ForSequenceClassification.from_pretrained(args.model).eval()
        ti, tm = torch.from_numpy(ids), torch.from_numpy(mask)

        def run():
            with torch.inference_mode():
                return model(input_ids=ti, attention_mask=tm).logits.numpy()
    else:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
        name = "model.onnx" if args.system == "ort" else "model.int8.onnx"
        sess = ort.InferenceSession(os.path.join(args.model, name), so, providers=["CPUExecutionProvider"])

        def run():
            return sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    for _ in range(args.warmup):
        logits = run()
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        logits = run()
        times.append((time.perf_counter() - t) * 1e3)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times_ms": times, "peak_rss_mib": rss, "logits": np.asarray(logits).tolist()}))


def measure(system, model_dir, batch, seq, iters, warmup, threads, seed=1):
    if system.startswith("deberta"):
        dtype = deberta_dtype(system)
        cmd = [BINARY, "bench", "--model", model_dir, "--batch", str(batch), "--seq", str(seq),
               "--iters", str(iters), "--warmup", str(warmup), "--threads", str(threads), "--dtype", dtype]
    else:
        cmd = [sys.executable, __file__, "worker", "--system", system, "--model", model_dir, "--batch",
               str(batch), "--seq", str(seq), "--iters", str(iters), "--warmup", str(warmup),
               "--threads", str(threads), "--seed", str(seed)]
    env = deberta_env(system) if system.startswith("deberta") else None
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    report = json.loads(out.strip().splitlines()[-1])
    if "linear_kernel" in report:
        KERNELS[system] = report["linear_kernel"]
    return report


# Accuracy inputs: (batch, seq, seed). The first is the original 2x64 check (6 logits, so its
# maximum moves a lot with rounding luck); the others add 96 logits for a steadier maximum.
ACCURACY_INPUTS = [(2, 64, 1), (8, 128, 2), (8, 128, 3), (8, 128, 4), (8, 128, 5)]


def logits_of(system, model_dir, threads, batch=2, seq=64, seed=1):
    """Logits on a fixed input, for the accuracy columns."""
    import numpy as np
    if not system.startswith("deberta"):
        return np.array(measure(system, model_dir, batch, seq, 1, 0, threads, seed)["logits"])
    ids, mask = fixed_input(batch, seq, seed)
    path = os.path.join(WORK, "acc_input.json")
    with open(path, "w") as f:
        json.dump({"input_ids": ids.tolist(), "attention_mask": mask.tolist()}, f)
    out = os.path.join(WORK, "acc_out.safetensors")
    dtype = deberta_dtype(system)
    subprocess.run([BINARY, "forward", "--model", model_dir, "--input", path, "--output", out, "--dtype", dtype],
                   check=True, capture_output=True, env=deberta_env(system))
    from safetensors.numpy import load_file
    return load_file(out)["logits"]


def compare_model(name, rounds, iters, threads, systems, shapes):
    model_dir = build(name)
    rows = []
    for batch, seq in shapes:
        samples = {s: [] for s in systems}
        rss = {s: 0.0 for s in systems}
        for _ in range(rounds):
            for s in systems:
                r = measure(s, model_dir, batch, seq, iters, 1, threads)
                samples[s] += r["times_ms"]
                rss[s] = max(rss[s], r["peak_rss_mib"] or 0)
        med = {s: statistics.median(v) for s, v in samples.items()}
        rows.append(dict(shape=f"{batch}x{seq}", tokens=batch * seq, median_ms=med, peak_rss_mib=rss))
        print(name, rows[-1], flush=True)
    import numpy as np
    acc = {s: [] for s in systems}
    for batch, seq, seed in ACCURACY_INPUTS:
        ref = logits_of("torch", model_dir, threads, batch, seq, seed)
        for s in systems:
            acc[s].append(float(np.abs(logits_of(s, model_dir, threads, batch, seq, seed) - ref).max()))
    return rows, acc


def table(name, rows, acc, systems):
    lines = [f"### v3-{name}", "", "median ms per batch (tokens/s); ratio = their time / ours", "",
             "| shape | " + " | ".join(systems) + " | f32 vs torch | f32 vs ort | int8 vs ort-int8 |",
             "|---" * (len(systems) + 4) + "|"]
    pairs = (("torch", "deberta"), ("ort", "deberta"), ("ort-int8", "deberta-int8"))
    for r in rows:
        m = r["median_ms"]
        cells = [f"{m[s]:.1f} ({r['tokens'] / m[s] * 1e3:.0f})" for s in systems]
        ratios = [f"{m[o] / m[d]:.2f}x" if o in m and d in m else "-" for o, d in pairs]
        lines.append(f"| {r['shape']} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    lines += ["", "peak RSS MiB at 32x128: " + ", ".join(
        f"{s} {r['peak_rss_mib'][s]:.0f}" for r in rows if r["shape"] == "32x128" for s in systems),
        "", "max |logits - torch fp32|, 2x64 input: " + ", ".join(f"{s} {v[0]:.2e}" for s, v in acc.items()),
        "", "max |logits - torch fp32|, over the 2x64 input and four 8x128 inputs (seeds 2-5): " + ", ".join(
            f"{s} {max(v):.2e}" for s, v in acc.items()),
        "", "per input: " + "; ".join(f"{s} " + " ".join(f"{x:.2e}" for x in v) for s, v in acc.items()), ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    for a, t in [("--system", str), ("--model", str), ("--batch", int), ("--seq", int), ("--iters", int),
                 ("--warmup", int), ("--threads", int)]:
        w.add_argument(a, type=t, required=True)
    w.add_argument("--seed", type=int, default=1)
    ap.add_argument("--models", default="base,xsmall")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--shapes", default=",".join(f"{b}x{l}" for b, l in SHAPES),
                    help="BxL list, e.g. 1x128,32x128 (quick checks)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = ap.parse_args()
    if args.cmd == "worker":
        return worker(args)
    import onnxruntime
    import torch
    import transformers
    systems = args.systems.split(",")
    sections = []
    for name in args.models.split(","):
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
        rows, acc = compare_model(name, args.rounds, args.iters, args.threads, systems, shapes)
        sections.append(table(name, rows, acc, systems))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    head = ["# CPU benchmark results", "",
            f"Machine: {cpu}, {os.cpu_count()} cores, {platform.platform()}; {args.threads} threads per system.",
            f"Versions: torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime "
            f"{onnxruntime.__version__}, deberta {subprocess.run([BINARY, '--version'], capture_output=True, text=True).stdout.strip()}.",
            f"Method: `benchmarks/compare.py --rounds {args.rounds} --iters {args.iters}`: each system in its own "
            "process per (shape, round), systems alternating each round; medians over all timed iterations.",
            "deberta linear-layer kernels: " + "; ".join(f"{s} {k}" for s, k in KERNELS.items()) + ".", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(head + sections))
    print(open(args.out).read())


if __name__ == "__main__":
    main()
