#!/usr/bin/env python3
"""`deberta serve` against infinity (`infinity-emb`, PyTorch backend, `/classify`) on the same
random-weight DeBERTa-v3-base sequence classifier, 2 threads each, the mixed-length workload of
`serve_load.py` at concurrency 1, 8 and 64, the servers alternating level by level.

Run by hand (never in CI):
    cargo build --release --bin deberta
    python3.11 -m venv ~/infinity-venv && ~/infinity-venv/bin/pip install "infinity-emb[server,torch]==0.0.78"
    ~/infinity-venv/bin/python benchmarks/serve_compare.py [--rounds 2] [--requests 200]

The checkpoint (`benchmarks/.work/serve-v3-base`: v3-base geometry, 3 labels, seed 0, with the real
DeBERTa-v3 tokenizer files) is built with the running interpreter's transformers if missing.
Both servers run at the same time but only one is loaded at a time; each level is bounded by
--requests and --max-seconds. Also reported: our server's peak RSS (VmHWM) under load against
`deberta bench`'s at a batch of the same token budget (--max-batch-tokens).
Loopback only.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import serve_load  # noqa: E402  (the workload and the level runner are shared)

WORK = os.path.join(HERE, ".work")
BINARY = os.environ.get("DEBERTA_BIN", os.path.join(REPO, "target", "release", "deberta"))
TOKENIZER = os.path.join(REPO, "..", "shared", "assets", "deberta-v3-tokenizer")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS")


def build_model(out):
    """The random v3-base classifier, saved with the v3 tokenizer files."""
    if os.path.exists(os.path.join(out, "model.safetensors")):
        return out
    import torch
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    config = DebertaV2Config(
        vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, relative_attention=True, position_buckets=256,
        norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
        layer_norm_eps=1e-7, max_relative_positions=-1, position_biased_input=False,
        type_vocab_size=0, max_position_embeddings=512, num_labels=3,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2})
    DebertaV2ForSequenceClassification(config).eval().save_pretrained(out)
    for name in ("spm.model", "tokenizer.json", "special_tokens_map.json", "added_tokens.json"):
        shutil.copy(os.path.join(TOKENIZER, name), out)
    # The hub's v3 tokenizer_config has no model_max_length; without it transformers does not
    # truncate and infinity's warm-up runs sequences thousands of tokens long.
    with open(os.path.join(TOKENIZER, "tokenizer_config.json")) as f:
        tok_config = json.load(f)
    tok_config["model_max_length"] = 512
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tok_config, f, indent=1)
    return out


def wait_healthy(url, proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode} before {url} was healthy")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"{url} not healthy after {seconds}s")


def thread_env(threads):
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    return env


def start_deberta(model, port, args, log):
    cmd = [BINARY, "serve", "--model", model, "--port", str(port), "--threads", str(args.threads),
           "--max-batch-tokens", str(args.max_batch_tokens), "--max-concurrent-requests", "512",
           "--queue-timeout-ms", "600000"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=thread_env(args.threads))
    wait_healthy(f"http://127.0.0.1:{port}/health", proc, 120)
    return proc


def start_infinity(model, port, args, log):
    exe = os.path.join(os.path.dirname(sys.executable), "infinity_emb")
    cmd = [exe, "v2", "--model-id", model, "--served-model-name", "model", "--host", "127.0.0.1",
           "--port", str(port),
           "--engine", "torch", "--device", "cpu", "--batch-size", str(args.infinity_batch),
           "--no-bettertransformer"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=thread_env(args.threads))
    wait_healthy(f"http://127.0.0.1:{port}/health", proc, 900)
    return proc


def post(port, route, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{route}", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def agreement(servers, texts):
    """Max |score difference| between the two servers over `texts`, label by label: they serve
    the same checkpoint, so a large value means one of them computes something else."""
    if set(servers) != {"deberta", "infinity"}:
        return None
    ours = post(servers["deberta"][1], "/predict", {"inputs": [[t] for t in texts]})
    theirs = post(servers["infinity"][1], "/classify", {"input": texts, "model": "model"})["data"]
    worst = 0.0
    for a, b in zip(ours, theirs):
        b = {x["label"]: x["score"] for x in b}
        worst = max(worst, max(abs(x["score"] - b[x["label"]]) for x in a))
    return worst


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_rss(model, args):
    """`deberta bench`'s peak RSS at the server's token budget (batch x 256 tokens)."""
    batch = max(1, args.max_batch_tokens // 256)
    out = subprocess.run(
        [BINARY, "bench", "--model", model, "--batch", str(batch), "--seq", "256", "--iters", "2",
         "--warmup", "1", "--threads", str(args.threads)],
        check=True, capture_output=True, text=True, env=thread_env(args.threads))
    return batch, json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def level(name, port, route, concurrency, texts, args):
    ns = argparse.Namespace(url=f"http://127.0.0.1:{port}", route=route, requests=args.requests,
                            max_seconds=args.max_seconds, api_key=None)
    row = serve_load.run_level(ns, concurrency, texts)
    row["server"] = name
    print(json.dumps(row), flush=True)
    return row


def cpu_line():
    model = flags = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
                                             "amx_bf16") if x in have)
    return f"{model} ({os.cpu_count()} cores; {flags}); {platform.platform()}"


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def table(rows):
    lines = ["| concurrency | server | req/s | tokens/s | p50 ms | p90 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for c in sorted({r["concurrency"] for r in rows}):
        for name in ("deberta", "infinity"):
            mine = [r for r in rows if r["server"] == name and r["concurrency"] == c]
            if not mine:
                continue
            lines.append("| {} | {} | {:.2f} | {:.0f} | {:.0f} | {:.0f} | {:.0f} | {} |".format(
                c, name, median([r["req_per_s"] for r in mine]),
                median([r["tokens_per_s"] for r in mine]), median([r["p50_ms"] for r in mine]),
                median([r["p90_ms"] for r in mine]), median([r["p99_ms"] for r in mine]),
                sum(r["errors"] for r in mine)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(WORK, "serve-v3-base"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--requests", type=int, default=200, help="most requests per level")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="time limit per level")
    ap.add_argument("--max-batch-tokens", type=int, default=8192)
    ap.add_argument("--infinity-batch", type=int, default=32)
    ap.add_argument("--servers", default="deberta,infinity")
    ap.add_argument("--out", default=os.path.join(WORK, "serve_compare.json"))
    args = ap.parse_args()
    model = build_model(args.model)
    texts = serve_load.workload(max(args.requests, 16), 8, 256, 0)
    os.makedirs(WORK, exist_ok=True)
    servers = {}
    log = open(os.path.join(WORK, "serve_compare.log"), "w")
    try:
        wanted = args.servers.split(",")
        if "deberta" in wanted:
            servers["deberta"] = (start_deberta(model, 18080, args, log), 18080, "/predict")
        if "infinity" in wanted:
            servers["infinity"] = (start_infinity(model, 18081, args, log), 18081, "/classify")
        for name, (_, port, route) in servers.items():  # warm-up, outside the figures
            warm = argparse.Namespace(url=f"http://127.0.0.1:{port}", route=route, requests=16,
                                      max_seconds=120, api_key=None)
            serve_load.run_level(warm, 4, texts)
        max_diff = agreement(servers, texts[:8])
        print(f"max |score difference| between the servers on 8 texts: {max_diff}", flush=True)
        rows = []
        for r in range(args.rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for c in args.concurrency:
                for name in order:
                    _, port, route = servers[name]
                    rows.append({**level(name, port, route, c, texts, args), "round": r})
        rss = {name: peak_rss_mib(proc.pid) for name, (proc, _, _) in servers.items()}
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    result = {"cpu": cpu_line(), "args": vars(args), "rows": rows, "server_peak_rss_mib": rss,
              "max_score_difference": max_diff}
    if "deberta" in servers:
        batch, bench = bench_rss(model, args)
        result["bench_peak_rss_mib"] = {"batch": batch, "seq": 256, "peak_rss_mib": bench}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(result["cpu"])
    print(table(rows))
    print("peak RSS (MiB):", json.dumps(rss), "bench:", json.dumps(result.get("bench_peak_rss_mib")))


if __name__ == "__main__":
    main()
