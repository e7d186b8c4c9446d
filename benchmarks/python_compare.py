#!/usr/bin/env python3
"""The Python package against transformers' pipeline, the CLI, and on Ray Data and Spark.

On a random-weight DeBERTa-v3-base sequence classifier (3 labels, the v3 tokenizer of
fixtures/tasks/nli) and N sentences of mixed length (default 2,000), batch_size 32:

* throughput of transformers' ``pipeline("text-classification")`` (PyTorch, fp32, 2 threads)
  against ours (``deberta_rs.pipeline``, one process, 2 threads), with the agreement of their
  answers;
* ours against ``deberta classify`` (release CLI) on the same JSON lines (the CLI's model load,
  measured on a one-line input, is subtracted);
* Ray Data with 1 and 2 actors x 1 thread (examples/ray_batch_inference.py), and Spark
  ``local[1]`` vs ``local[2]`` (examples/spark_batch_inference.py), on --engine-sentences rows.

Each measurement runs in its own process; the systems alternate round by round (the machine is
shared and single timings move). Run by hand, not in CI:

    bash ../shared/reference/setup.sh                 # ~/deberta-ref/venv: torch + transformers
    cargo build --release --bin deberta
    MATURIN_PEP517_ARGS="--profile release" target/pyenv/bin/pip install ./crates/deberta-python
    target/pyenv/bin/python benchmarks/python_compare.py [--sentences 2000] [--rounds 2]
"""

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(HERE, ".work", "python-compare")
MODEL = os.path.join(WORK, "v3-base-classifier")
REF_PYTHON = os.environ.get("REF_PYTHON", os.path.expanduser("~/deberta-ref/venv/bin/python"))
BINARY = os.environ.get("DEBERTA_BIN", os.path.join(REPO, "target", "release", "deberta"))
EXAMPLES = os.path.join(REPO, "crates", "deberta-python", "examples")
TOKENIZER = os.path.join(REPO, "fixtures", "tasks", "nli")

WORDS = (
    "the a of and to in is was for on that with as it at by from this be are film food service "
    "hotel room staff phone battery screen music concert match team game season city river "
    "market price quality delivery order support weather morning evening night friends family "
    "wonderful terrible slow quick cold warm friendly rude bright dull loud quiet expensive cheap "
    "again never always often rarely happily sadly finally already almost really very quite "
    "moving boring tedious lovely awful great poor excellent average strange familiar new old"
).split()


def sentences(n, seed=0):
    """n sentences of 3 to 90 words (mixed lengths, most short), deterministic."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = min(90, max(3, int(rng.lognormvariate(2.7, 0.7))))
        words = [rng.choice(WORDS) for _ in range(k)]
        out.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", "..."]))
    return out


def build_model():
    """The random v3-base classifier (transformers' init, seed 0) with the v3 tokenizer."""
    if os.path.exists(os.path.join(MODEL, "model.safetensors")):
        return
    os.makedirs(MODEL, exist_ok=True)
    code = f"""
import torch
from transformers import DebertaV2Config, DebertaV2ForSequenceClassification
cfg = DebertaV2Config(vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
    share_att_key=True, pos_att_type="p2c|c2p", layer_norm_eps=1e-7, max_relative_positions=-1,
    position_biased_input=False, type_vocab_size=0, max_position_embeddings=512, num_labels=3,
    id2label={{0: "negative", 1: "neutral", 2: "positive"}}, label2id={{"negative": 0, "neutral": 1, "positive": 2}})
torch.manual_seed(0)
DebertaV2ForSequenceClassification(cfg).eval().save_pretrained({MODEL!r})
"""
    subprocess.run([REF_PYTHON, "-c", code], check=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
        shutil.copy(os.path.join(TOKENIZER, f), MODEL)


# -- workers (each in its own process) -------------------------------------------------------


def worker_transformers(texts, batch_size, threads):
    import torch
    from transformers import pipeline

    torch.set_num_threads(threads)
    p = pipeline("text-classification", model=MODEL, device="cpu", dtype=torch.float32)
    p(texts[:batch_size], batch_size=batch_size)  # warm-up
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = p(texts, batch_size=batch_size)
    return time.perf_counter() - t0, out


def worker_ours(texts, batch_size, threads):
    from deberta_rs import pipeline

    p = pipeline("text-classification", model=MODEL, batch_size=batch_size, threads=threads)
    p(texts[:batch_size])  # warm-up
    t0 = time.perf_counter()
    out = p(texts)
    return time.perf_counter() - t0, out


def worker_ours_chunked(texts, batch_size, threads):
    """As the CLI's JSON-lines driver feeds its pipeline: chunks of 16 x batch_size lines,
    each sorted by length and batched on its own."""
    from deberta_rs import pipeline

    p = pipeline("text-classification", model=MODEL, batch_size=batch_size, threads=threads)
    p(texts[:batch_size])  # warm-up
    chunk = 16 * batch_size
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(texts), chunk):
        out.extend(p(texts[i:i + chunk]))
    return time.perf_counter() - t0, out


def worker_ray(path, out, actors, rows):
    sys.path.insert(0, EXAMPLES)
    import ray
    import ray_batch_inference as example

    seconds = example.run(MODEL, path, out, actors=actors, threads=1, batch_size=64, model_batch_size=32)
    ray.shutdown()
    return seconds, None


def worker_spark(path, out, master, rows):
    sys.path.insert(0, EXAMPLES)
    import spark_batch_inference as example

    spark = example.session(master)
    try:
        seconds = example.run(MODEL, path, out, threads=1, batch_size=64, model_batch_size=32, spark=spark)
    finally:
        spark.stop()
    return seconds, None


def run_worker(args):
    spec = json.loads(args.worker)
    kind = spec["kind"]
    if kind in ("transformers", "ours", "ours-chunked"):
        texts = sentences(spec["n"])
        fn = {"transformers": worker_transformers, "ours": worker_ours, "ours-chunked": worker_ours_chunked}[kind]
        seconds, out = fn(texts, spec["batch_size"], spec["threads"])
        labels = [o["label"] for o in out]
        scores = [float(o["score"]) for o in out]
    elif kind == "ray":
        seconds, _ = worker_ray(spec["path"], spec["out"], spec["actors"], spec["n"])
        labels = scores = None
    else:
        seconds, _ = worker_spark(spec["path"], spec["out"], spec["master"], spec["n"])
        labels = scores = None
    print("RESULT " + json.dumps({"seconds": seconds, "labels": labels, "scores": scores}))


def spawn(python, spec, timeout=3600):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(spec.get("threads", 2)))
    run = subprocess.run(
        [python, os.path.abspath(__file__), "--worker", json.dumps(spec)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    for line in run.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{spec['kind']} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")


def cli_seconds(path, one_line, batch_size, threads):
    """Seconds of `deberta classify` on `path`, less its run on one line (start-up, load)."""
    def timed(p):
        t0 = time.perf_counter()
        subprocess.run(
            [BINARY, "classify", "--model", MODEL, "--input", p, "--batch-size", str(batch_size),
             "--threads", str(threads), "--output", os.devnull],
            check=True, capture_output=True,
        )
        return time.perf_counter() - t0
    return timed(path) - timed(one_line)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        name = next(l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name"))
        flags = next(l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags"))
        keep = [f for f in flags if f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16")]
        return name, keep
    except (OSError, StopIteration):
        return platform.processor(), []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--engine-sentences", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of: transformers,cli,ray,spark")
    args = ap.parse_args()
    if args.worker:
        return run_worker(args)

    skip = set(filter(None, args.skip.split(",")))
    build_model()
    name, flags = cpu_model()
    load = os.getloadavg()
    print(f"CPU: {name} ({os.cpu_count()} cores; {' '.join(flags)}); load average at start {load[0]:.1f}")
    n, bs, th = args.sentences, args.batch_size, args.threads
    texts = sentences(n)
    tmp = tempfile.mkdtemp(prefix="deberta-pycompare-")
    jsonl = os.path.join(tmp, "in.jsonl")
    with open(jsonl, "w") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    one = os.path.join(tmp, "one.jsonl")
    with open(one, "w") as f:
        f.write(json.dumps({"text": texts[0]}) + "\n")
    engine_in = os.path.join(tmp, "engine.jsonl")
    with open(engine_in, "w") as f:
        f.writelines(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(sentences(args.engine_sentences, seed=1)))

    times = {k: [] for k in ("transformers", "ours", "ours-chunked", "cli", "ray1", "ray2", "spark1", "spark2")}
    answers = {}
    ours_py = sys.executable
    for r in range(args.rounds):
        order = ["ours", "ours-chunked", "transformers", "cli"]
        order = order if r % 2 == 0 else order[::-1]
        for system in order:
            if system in skip:
                continue
            if system == "cli":
                times["cli"].append(cli_seconds(jsonl, one, bs, th))
            else:
                py = REF_PYTHON if system == "transformers" else ours_py
                res = spawn(py, {"kind": system, "n": n, "batch_size": bs, "threads": th})
                times[system].append(res["seconds"])
                answers[system] = res
            print(f"round {r}: {system} {times[system][-1]:.1f}s", flush=True)
    for r in range(args.rounds):
        for actors in ((1, 2) if r % 2 == 0 else (2, 1)):
            if "ray" not in skip:
                out = os.path.join(tmp, f"ray{actors}-{r}")
                res = spawn(ours_py, {"kind": "ray", "n": args.engine_sentences, "path": engine_in, "out": out,
                                      "actors": actors, "threads": 1})
                times[f"ray{actors}"].append(res["seconds"])
                print(f"round {r}: ray {actors} actors {res['seconds']:.1f}s", flush=True)
            if "spark" not in skip:
                out = os.path.join(tmp, f"spark{actors}-{r}")
                res = spawn(ours_py, {"kind": "spark", "n": args.engine_sentences, "path": engine_in, "out": out,
                                      "master": f"local[{actors}]", "threads": 1})
                times[f"spark{actors}"].append(res["seconds"])
                print(f"round {r}: spark local[{actors}] {res['seconds']:.1f}s", flush=True)

    def rate(k, rows):
        return rows / statistics.median(times[k]) if times[k] else float("nan")

    print()
    print(f"| system | sentences | median s | sentences/s | runs (s) |")
    print(f"|---|---|---|---|---|")
    for k, rows, label in (
        ("transformers", n, f"transformers pipeline (PyTorch fp32, {th} threads)"),
        ("ours", n, f"deberta_rs.pipeline ({th} threads)"),
        ("ours-chunked", n, f"deberta_rs.pipeline, chunks of {16 * bs} as the CLI reads ({th} threads)"),
        ("cli", n, f"deberta classify (release CLI, {th} threads, load subtracted)"),
        ("ray1", args.engine_sentences, "Ray Data, 1 actor x 1 thread"),
        ("ray2", args.engine_sentences, "Ray Data, 2 actors x 1 thread"),
        ("spark1", args.engine_sentences, "Spark local[1], 1 thread per worker"),
        ("spark2", args.engine_sentences, "Spark local[2], 1 thread per worker"),
    ):
        if times[k]:
            runs = ", ".join(f"{t:.1f}" for t in times[k])
            print(f"| {label} | {rows} | {statistics.median(times[k]):.1f} | {rate(k, rows):.1f} | {runs} |")
    print()
    if times["transformers"] and times["ours"]:
        print(f"ours / transformers throughput: {rate('ours', n) / rate('transformers', n):.2f}x (target >= 1.5x)")
    if times["cli"] and times["ours"]:
        print(f"ours / CLI throughput: {rate('ours', n) / rate('cli', n):.2f} (target: within 10%)")
    if times["cli"] and times["ours-chunked"]:
        print(f"ours (CLI's chunks) / CLI throughput: {rate('ours-chunked', n) / rate('cli', n):.2f}")
    if times["ray1"] and times["ray2"]:
        print(f"Ray 2 actors / 1 actor: {rate('ray2', 1) / rate('ray1', 1):.2f}x (target >= 1.7x)")
    if times["spark1"] and times["spark2"]:
        print(f"Spark local[2] / local[1]: {rate('spark2', 1) / rate('spark1', 1):.2f}x")
    if "transformers" in answers and "ours" in answers:
        a, b = answers["transformers"], answers["ours"]
        same = sum(x == y for x, y in zip(a["labels"], b["labels"]))
        diff = max(abs(x - y) for x, y in zip(a["scores"], b["scores"]))
        print(f"answers: {same}/{n} same labels, max |score difference| {diff:.2e}")
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
