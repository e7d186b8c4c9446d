#!/usr/bin/env python3
"""Side-by-side CPU comparison: PyTorch eager fp32, ONNX Runtime fp32 and int8 (dynamic), and
`deberta bench` (f32, int8, bf16 linear layers), on random-weight DeBERTa-v3 base / xsmall shaped sequence classifiers.

Run by hand with the reference environment (not in CI):
    cargo build --release --bin deberta
    ~/deberta-ref/venv/bin/python benchmarks/compare.py [--models base,xsmall] [--rounds 3]

The tables go into a new section at the top of `--out` (default `benchmarks/RESULTS.md`), below
its title; earlier sections are kept.

Each measurement runs in its own process (so peak RSS is per system), and the systems alternate
round by round on each shape, because single timings on shared machines move by +-30%.

`--workload 8-256` times a workload of mixed lengths instead of fixed shapes: batches of 32
sequences whose lengths are drawn uniformly from 8..=256 by the same generator as
`deberta bench --mixed` (so every system runs the same ids); PyTorch and ONNX Runtime pad each
batch to its longest, as users run them, and deberta runs each batch unpadded. `--long` is the
long-sequence preset (1x1024, 1x2048, 1x4096). Peak RSS is each worker's own `VmHWM`
(`ru_maxrss` would include the parent's RSS at fork time: Linux carries it over exec).

A deberta system with the suffix `:noavx512` (e.g. `deberta:noavx512,deberta-int8:noavx512`)
runs with `DEBERTA_CPU_AVX512=0`, for a side-by-side A/B of the AVX-512 kernels on CPUs that
have them; the header names the linear-layer kernel each deberta system ran.
"""
import argparse
import json
import os
import platform
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
    """The environment of a deberta system's process: `:noavx512` turns the AVX-512 kernels off,
    `:int8attn` turns int8 attention products on (`deberta-int8:int8attn`)."""
    env = dict(os.environ)
    if system.endswith(":noavx512"):
        env["DEBERTA_CPU_AVX512"] = "0"
    if system.endswith(":int8attn"):
        env["DEBERTA_INT8_ATTENTION"] = "1"
    return env


# (their system, our system of the same dtype): the ratio columns.
PAIRS = (("torch", "deberta"), ("ort", "deberta"), ("ort-int8", "deberta-int8"))

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


def peak_rss_mib():
    """This process's own peak RSS (`VmHWM`), as `deberta bench` reports it."""
    with open("/proc/self/status") as f:
        line = next(l for l in f if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


class Lcg:
    """`deberta bench --mixed`'s generator (bench_mixed.rs), draw for draw."""

    def __init__(self, state=0x5EED):
        self.state = state

    def below(self, n):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (self.state >> 33) % max(n, 1)


def mixed_batches(lo, hi, batch, count, vocab=128100):
    """The ids of `deberta bench --mixed LO-HI --batch B` with warmup + iters = `count`."""
    draw = Lcg()
    out = []
    for _ in range(count):
        seqs = []
        for _ in range(batch):
            n = lo + draw.below(hi - lo + 1)
            seqs.append([4 + draw.below(max(vocab, 5) - 4) for _ in range(n)])
        out.append(seqs)
    return out


def padded(seqs):
    """Right-padded ids (pad 0) and mask, `[B, longest]`, as users feed a padded engine."""
    import numpy as np
    longest = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), longest), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return ids, mask


def fixed_input(batch, seq, seed=1):
    import numpy as np
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, 128000, size=(batch, seq), dtype=np.int64)
    return ids, np.ones_like(ids)


def runner(system, model_dir, threads):
    """`run(ids, mask) -> logits` of a PyTorch or ONNX Runtime system."""
    if system == "torch":
        import torch
        from transformers import DebertaV2ForSequenceClassification
        torch.set_num_threads(threads)
        model = DebertaV2ForSequenceClassification.from_pretrained(model_dir).eval()

        def run(ids, mask):
            with torch.inference_mode():
                return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
        return run
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    name = "model.onnx" if system == "ort" else "model.int8.onnx"
    sess = ort.InferenceSession(os.path.join(model_dir, name), so, providers=["CPUExecutionProvider"])
    return lambda ids, mask: sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]


def timed(run, ids, mask):
    t = time.perf_counter()
    logits = run(ids, mask)
    return (time.perf_counter() - t) * 1e3, logits


def worker(args):
    """One system, one shape (or the mixed workload), in this process; prints JSON times (ms),
    its own peak RSS and (fixed shapes) the logits."""
    import numpy as np
    run = runner(args.system, args.model, args.threads)
    if args.mixed:
        lo, hi = (int(x) for x in args.mixed.split("-"))
        batches = [padded(seqs) for seqs in mixed_batches(lo, hi, args.batch, args.warmup + args.iters)]
        times = [timed(run, ids, mask)[0] for ids, mask in batches][args.warmup:]
        print(json.dumps({"times_ms": times, "peak_rss_mib": peak_rss_mib()}))
        return
    ids, mask = fixed_input(args.batch, args.seq, args.seed)
    for _ in range(args.warmup):
        logits = run(ids, mask)
    times = []
    for _ in range(args.iters):
        t, logits = timed(run, ids, mask)
        times.append(t)
    print(json.dumps({"times_ms": times, "peak_rss_mib": peak_rss_mib(), "logits": np.asarray(logits).tolist()}))


def measure(system, model_dir, batch, seq, iters, warmup, threads, seed=1, mixed=None):
    """One process of `system`: fixed `batch`x`seq` inputs, or with `mixed="LO-HI"` the mixed
    workload (deberta unpadded: its `times_ms` are `bench --mixed`'s unpadded times)."""
    shape = ["--seq", str(seq)] if mixed is None else ["--mixed", mixed]
    if system.startswith("deberta"):
        dtype = deberta_dtype(system)
        cmd = [BINARY, "bench", "--model", model_dir, "--batch", str(batch), *shape,
               "--iters", str(iters), "--warmup", str(warmup), "--threads", str(threads), "--dtype", dtype]
    else:
        cmd = [sys.executable, __file__, "worker", "--system", system, "--model", model_dir, "--batch",
               str(batch), *shape, "--iters", str(iters), "--warmup", str(warmup),
               "--threads", str(threads), "--seed", str(seed)]
    env = deberta_env(system) if system.startswith("deberta") else None
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    report = json.loads(out.strip().splitlines()[-1])
    if "linear_kernel" in report:
        KERNELS[system] = report["linear_kernel"]
    if "unpadded_times_ms" in report:
        if not report.get("unpadded_runs"):
            sys.exit(f"{system}: `deberta bench --mixed` did not run unpadded (unpadded_runs false)")
        report["times_ms"] = report["unpadded_times_ms"]
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


def compare_workload(name, mixed, batch, iters, rounds, threads, systems):
    """The mixed-length workload, `rounds` processes per system (alternating): the sum of the
    `iters` timed batches' times, median over rounds, and the real tokens per second."""
    model_dir = build(name)
    lo, hi = (int(x) for x in mixed.split("-"))
    seqs = mixed_batches(lo, hi, batch, 1 + iters)[1:]
    real = sum(len(s) for b in seqs for s in b)
    with_padding = sum(len(b) * max(len(s) for s in b) for b in seqs)
    totals = {s: [] for s in systems}
    rss = {s: 0.0 for s in systems}
    for _ in range(rounds):
        for s in systems:
            r = measure(s, model_dir, batch, 0, iters, 1, threads, mixed=mixed)
            if len(r["times_ms"]) != iters:
                sys.exit(f"{s}: {len(r['times_ms'])} timed batches, expected {iters}")
            # deberta reports its workload's padding ratio: the same number means the same lengths.
            if "padded_over_real_tokens" in r and abs(r["padded_over_real_tokens"] - with_padding / real) > 1e-9:
                sys.exit(f"{s}: workload differs from mixed_batches() (padding ratio "
                         f"{r['padded_over_real_tokens']} vs {with_padding / real})")
            totals[s].append(sum(r["times_ms"]))
            rss[s] = max(rss[s], r["peak_rss_mib"] or 0)
        print(name, mixed, {s: v[-1] for s, v in totals.items()}, flush=True)
    total = {s: statistics.median(v) for s, v in totals.items()}
    lines = [f"### v3-{name}, mixed lengths {mixed}, batch {batch}", "",
             f"{iters} batches, {real} real tokens ({with_padding / real:.2f}x that when each batch is padded to "
             "its longest, as torch and ORT run it; deberta runs each batch unpadded). Median over "
             f"{rounds} rounds of the total time; ratio = their time / ours (same dtype).", "",
             "| system | total ms | real tokens/s | peak RSS MiB | ratio |", "|---|---|---|---|---|"]
    ours_of = {other: ours for other, ours in PAIRS}
    for s in systems:
        ref = ours_of.get(s)
        ratio = f"{total[s] / total[ref]:.2f}x" if ref in total else "-"
        lines.append(f"| {s} | {total[s]:.0f} | {real / total[s] * 1e3:.0f} | {rss[s]:.0f} | {ratio} |")
    return "\n".join(lines + [""])


def table(name, rows, acc, systems):
    lines = [f"### v3-{name}", "", "median ms per batch (tokens/s); ratio = their time / ours", "",
             "| shape | " + " | ".join(systems) + " | f32 vs torch | f32 vs ort | int8 vs ort-int8 |",
             "|---" * (len(systems) + 4) + "|"]
    for r in rows:
        m = r["median_ms"]
        cells = [f"{m[s]:.1f} ({r['tokens'] / m[s] * 1e3:.0f})" for s in systems]
        ratios = [f"{m[o] / m[d]:.2f}x" if o in m and d in m else "-" for o, d in PAIRS]
        lines.append(f"| {r['shape']} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    lines += ["", "peak RSS MiB (each process's own VmHWM): " + "; ".join(
        f"{r['shape']}: " + ", ".join(f"{s} {r['peak_rss_mib'][s]:.0f}" for s in systems) for r in rows),
        "", "max |logits - torch fp32|, 2x64 input: " + ", ".join(f"{s} {v[0]:.2e}" for s, v in acc.items()),
        "", "max |logits - torch fp32|, over the 2x64 input and four 8x128 inputs (seeds 2-5): " + ", ".join(
            f"{s} {max(v):.2e}" for s, v in acc.items()),
        "", "per input: " + "; ".join(f"{s} " + " ".join(f"{x:.2e}" for x in v) for s, v in acc.items()), ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    for a, t in [("--system", str), ("--model", str), ("--batch", int), ("--iters", int),
                 ("--warmup", int), ("--threads", int)]:
        w.add_argument(a, type=t, required=True)
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--seq", type=int, default=0)
    w.add_argument("--mixed", help="LO-HI: the mixed-length workload instead of --seq")
    ap.add_argument("--models", default="base,xsmall")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--shapes", default=",".join(f"{b}x{l}" for b, l in SHAPES),
                    help="BxL list, e.g. 1x128,32x128 (quick checks)")
    ap.add_argument("--long", action="store_true", help="the long-sequence shapes 1x1024,1x2048,1x4096")
    ap.add_argument("--workload", metavar="LO-HI",
                    help="a mixed-length workload (e.g. 8-256) instead of fixed shapes")
    ap.add_argument("--workload-batch", type=int, default=32)
    ap.add_argument("--workload-batches", type=int, default=8, help="timed batches per process")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = ap.parse_args()
    if args.cmd == "worker":
        return worker(args)
    import onnxruntime
    import torch
    import transformers
    systems = args.systems.split(",")
    sections = []
    shape_list = "1x1024,1x2048,1x4096" if args.long else args.shapes
    for name in args.models.split(","):
        if args.workload:
            sections.append(compare_workload(name, args.workload, args.workload_batch, args.workload_batches,
                                             args.rounds, args.threads, systems))
            continue
        shapes = [tuple(int(x) for x in s.split("x")) for s in shape_list.split(",")]
        rows, acc = compare_model(name, args.rounds, args.iters, args.threads, systems, shapes)
        sections.append(table(name, rows, acc, systems))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    head = [f"## {time.strftime('%Y-%m-%d')}: `compare.py {' '.join(sys.argv[1:])}`", "",
            f"Machine: {cpu}, {os.cpu_count()} cores, {platform.platform()}; {args.threads} threads per system.",
            f"Versions: torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime "
            f"{onnxruntime.__version__}, deberta {subprocess.run([BINARY, '--version'], capture_output=True, text=True).stdout.strip()}.",
            f"Method: `benchmarks/compare.py {' '.join(sys.argv[1:])}`: each system in its own "
            "process per (shape, round), systems alternating each round; medians over all timed iterations.",
            "deberta linear-layer kernels: " + "; ".join(f"{s} {k}" for s, k in KERNELS.items()) + ".", ""]
    write_section(args.out, "\n".join(head + sections))


def write_section(path, section):
    """Puts `section` at the top of `path` under its title, keeping the earlier sections (the
    file is the project's record of every run)."""
    title = "# CPU benchmark results\n\n"
    old = open(path).read() if os.path.exists(path) else title
    rest = old[len(title):] if old.startswith(title) else old
    with open(path, "w") as f:
        f.write(title + section + "\n" + rest)
    print(section)


if __name__ == "__main__":
    main()
