#!/usr/bin/env python3
"""Thread scaling of `deberta bench`: throughput at N threads over 1 thread, per shape and
linear-layer format, the thread counts alternating process by process (so drift on a shared
machine hits both alike). Needs only the release binary and a checkpoint, e.g. the random v3-base
classifier `benchmarks/compare.py` builds under `benchmarks/.work/base`:

    python3 benchmarks/thread_scaling.py --model benchmarks/.work/base \
        [--shapes 32x128,4x512] [--dtypes f32,int8] [--threads 2] [--rounds 2] [--iters 3]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BINARY = os.environ.get("DEBERTA_BIN", os.path.join(REPO, "target", "release", "deberta"))


def bench(model, batch, seq, dtype, threads, iters):
    out = subprocess.run(
        [BINARY, "bench", "--model", model, "--batch", str(batch), "--seq", str(seq), "--dtype", dtype,
         "--threads", str(threads), "--iters", str(iters), "--warmup", "1"],
        capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--shapes", default="32x128,4x512")
    ap.add_argument("--dtypes", default="f32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    simd = " ".join(f for f in flags if f in ("avx2", "fma") or f.startswith("avx512") or f.startswith("amx"))
    print(f"{cpu} ({simd}), {os.cpu_count()} cores, {platform.platform()}")
    print(f"| shape | dtype | 1 thread ms | {args.threads} threads ms | speed-up |")
    print("|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        batch, seq = (int(x) for x in shape.split("x"))
        for dtype in args.dtypes.split(","):
            times = {1: [], args.threads: []}
            for r in range(args.rounds):
                order = (1, args.threads) if r % 2 == 0 else (args.threads, 1)
                for t in order:
                    times[t] += bench(args.model, batch, seq, dtype, t, args.iters)["times_ms"]
            one, many = statistics.median(times[1]), statistics.median(times[args.threads])
            print(f"| {shape} | {dtype} | {one:.1f} | {many:.1f} | {one / many:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
