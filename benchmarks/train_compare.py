#!/usr/bin/env python3
"""One training step (forward + backward + clip + AdamW), PyTorch eager vs `deberta train`.

    ~/deberta-ref/venv/bin/python benchmarks/train_compare.py [--models xsmall,base] \
        [--shapes 8x128,32x128] [--rounds 3] [--steps 6] [--threads 2] [--binary target/release/deberta]

Random-weight DeBERTa-v3 xsmall / base sequence classifiers (the checkpoints `compare.py` and
`ab.py` build under benchmarks/.work), f32. PyTorch: `model.train()`, `torch.optim.AdamW`
(foreach), `clip_grad_norm_(1.0)`, `zero_grad(set_to_none=True)`, each step timed whole.
deberta: `deberta train --tokenized` on the same batch, step times from `log.jsonl`'s
`elapsed_seconds`. Both use dropout 0.1 as the config says. The first `--warmup` steps of each
run are dropped; the median of the rest is the run's step time. Systems alternate within a
round; the table gives the median over rounds and each system's peak RSS (the process's
`ru_maxrss`, from `wait4`). Prints Markdown with the CPU model and flags.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from ab import build_checkpoint, cpu_header  # noqa: E402


def batch_file(batch, seq, path, seed=1):
    import numpy as np
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, 128000, size=(batch, seq)).tolist()
    labels = rng.integers(0, 3, size=(batch,)).tolist()
    with open(path, "w") as f:
        json.dump({"input_ids": ids, "attention_mask": [[1] * seq] * batch, "labels": labels}, f)


def run_child(cmd, env=None):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = proc.communicate()
    # communicate() reaped the child; its rusage is in RUSAGE_CHILDREN only cumulatively, so
    # the worker reports its own peak and deberta is run under /usr/bin/time when present.
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return out, err


def torch_worker(args):
    """In a child process: time PyTorch training steps, print JSON."""
    import resource
    import time

    import torch
    from transformers import DebertaV2ForSequenceClassification
    torch.set_num_threads(args.threads)
    with open(args.batch_json) as f:
        b = json.load(f)
    ids = torch.tensor(b["input_ids"])
    mask = torch.tensor(b["attention_mask"])
    labels = torch.tensor(b["labels"])
    model = DebertaV2ForSequenceClassification.from_pretrained(args.model)
    model.train()
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    rest = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=0.01), dict(params=rest, weight_decay=0.0)],
                            lr=5e-5, foreach=True)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "rss_mib": rss}))


def measure_torch(model, batch_json, steps, threads):
    cmd = [sys.executable, __file__, "--worker", "--model", model, "--batch-json", batch_json,
           "--steps", str(steps), "--threads", str(threads)]
    out, _ = run_child(cmd)
    return json.loads(out.strip().splitlines()[-1])


def measure_deberta(binary, model, batch_json, steps, threads):
    with tempfile.TemporaryDirectory() as out_dir:
        cmd = [binary, "train", "--model", model, "--tokenized", batch_json, "--output", out_dir,
               "--max-steps", str(steps), "--threads", str(threads), "--learning-rate", "5e-5",
               "--weight-decay", "0.01"]
        timed = ["/usr/bin/time", "-f", "MAXRSS_KB %M"] + cmd if os.path.exists("/usr/bin/time") else cmd
        _, err = run_child(timed)
        with open(os.path.join(out_dir, "log.jsonl")) as f:
            elapsed = [json.loads(line)["elapsed_seconds"] for line in f]
    times = [b - a for a, b in zip([0.0] + elapsed[:-1], elapsed)]
    rss = None
    for line in err.splitlines():
        if line.startswith("MAXRSS_KB"):
            rss = int(line.split()[1]) / 1024
    return {"times": times, "rss_mib": rss}


def compare(name, shapes, rounds, steps, warmup, threads, binary):
    model = build_checkpoint(name)
    rows = []
    for shape in shapes:
        batch, seq = map(int, shape.split("x"))
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            path = f.name
        batch_file(batch, seq, path)
        per = {"pytorch": [], "deberta": []}
        rss = {"pytorch": [], "deberta": []}
        for r in range(rounds):
            order = ["pytorch", "deberta"] if r % 2 == 0 else ["deberta", "pytorch"]
            for system in order:
                if system == "pytorch":
                    res = measure_torch(model, path, steps, threads)
                else:
                    res = measure_deberta(binary, model, path, steps, threads)
                per[system].append(statistics.median(res["times"][warmup:]))
                if res["rss_mib"]:
                    rss[system].append(res["rss_mib"])
                print(f"  {name} {shape} round {r} {system}: {per[system][-1]*1000:.0f} ms/step, "
                      f"peak RSS {res['rss_mib']} MiB", file=sys.stderr)
        os.unlink(path)
        pt, us = statistics.median(per["pytorch"]), statistics.median(per["deberta"])
        rows.append((name, shape, pt, us, max(rss["pytorch"] or [0]), max(rss["deberta"] or [0])))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--model")
    ap.add_argument("--batch-json")
    ap.add_argument("--models", default="xsmall,base")
    ap.add_argument("--shapes", default="8x128,32x128")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "deberta"))
    args = ap.parse_args()
    if args.worker:
        return torch_worker(args)
    import torch
    print(f"CPU: {cpu_header()}; torch {torch.__version__}; {args.threads} threads; "
          f"{args.steps} steps per run ({args.warmup} dropped), {args.rounds} rounds\n")
    print("| model | batch | PyTorch ms/step | deberta ms/step | speed-up (PyTorch / deberta) "
          "| PyTorch peak RSS MiB | deberta peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for (m, shape, pt, us, rpt, rus) in compare(name, args.shapes.split(","), args.rounds,
                                                     args.steps, args.warmup, args.threads, args.binary):
            print(f"| {m} | {shape} | {pt*1000:.0f} | {us*1000:.0f} | {pt/us:.2f}x | {rpt:.0f} | {rus:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
