#!/usr/bin/env python3
"""A/B of two `deberta` binaries (e.g. before and after a refactor) on the same checkpoint,
alternating them round by round so that both see the same machine load.

    ~/deberta-ref/venv/bin/python benchmarks/ab.py --a OLD/deberta --b target/release/deberta \
        [--model benchmarks/.work/base] [--shapes 8x128,1x128] [--dtypes f32,int8] [--rounds 5]

The model directory defaults to the random v3-base classifier `compare.py` builds (it is built
on first use, which needs torch and transformers). Prints a Markdown table with the CPU model and
flags: median of each binary's per-round medians and the ratio b / a (1.00 = same speed).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def bench(binary, model, batch, seq, dtype, iters, threads):
    cmd = [binary, "bench", "--model", model, "--batch", str(batch), "--seq", str(seq),
           "--iters", str(iters), "--warmup", "1", "--threads", str(threads), "--dtype", dtype]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def build_checkpoint(name):
    """The random v3 classifier of `compare.py` (same config and seed), checkpoint only."""
    out = os.path.join(HERE, ".work", name)
    if os.path.exists(os.path.join(out, "model.safetensors")):
        return out
    import torch
    from transformers import DebertaV2ForSequenceClassification
    import compare
    torch.manual_seed(0)
    DebertaV2ForSequenceClassification(compare.v3_config(name)).eval().save_pretrained(out)
    return out


def cpu_header():
    model, flags = "unknown", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    wanted = [f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
                                        "amx_bf16")]
    return f"{model}; {os.cpu_count()} cores; flags: {' '.join(wanted)}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="the baseline binary")
    ap.add_argument("--b", required=True, help="the binary under test")
    ap.add_argument("--model", default=None)
    ap.add_argument("--shapes", default="8x128,1x128")
    ap.add_argument("--dtypes", default="f32,int8")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model = args.model
    if model is None:
        model = build_checkpoint("base")
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    dtypes = args.dtypes.split(",")
    rows = []
    for batch, seq in shapes:
        for dtype in dtypes:
            medians = {"a": [], "b": []}
            kernels = {}
            for r in range(args.rounds):
                order = ("a", "b") if r % 2 == 0 else ("b", "a")
                for side in order:
                    binary = args.a if side == "a" else args.b
                    rep = bench(binary, model, batch, seq, dtype, args.iters, args.threads)
                    medians[side].append(rep["median_ms"])
                    kernels[side] = rep.get("linear_kernel", "?")
            a, b = statistics.median(medians["a"]), statistics.median(medians["b"])
            rows.append((f"{batch}x{seq}", dtype, a, b, b / a, kernels))
            print(f"{batch}x{seq} {dtype}: a {a:.1f} ms, b {b:.1f} ms, b/a {b / a:.3f}",
                  file=sys.stderr)
    print(f"CPU: {cpu_header()}; {args.threads} threads; {args.rounds} alternating rounds of "
          f"{args.iters} timed runs\n")
    print("| shape | dtype | a median ms | b median ms | b / a | kernel a | kernel b |")
    print("|---|---|---|---|---|---|---|")
    for shape, dtype, a, b, ratio, kernels in rows:
        print(f"| {shape} | {dtype} | {a:.1f} | {b:.1f} | {ratio:.3f} | {kernels['a']} | "
              f"{kernels['b']} |")


if __name__ == "__main__":
    main()
