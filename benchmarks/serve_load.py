#!/usr/bin/env python3
"""Load generator for `deberta serve` (or any server with TEI's `/predict`): a mixed-length
workload replayed at several concurrencies; reports requests/s, tokens/s and latency
percentiles. Standard library only.

    python3 benchmarks/serve_load.py --url http://127.0.0.1:8080 --concurrency 1 8 64

The workload is fixed by --seed: sentence lengths drawn between --min-tokens and
--max-tokens (log-uniform, so short sentences dominate as in real traffic), built from a fixed
word list (one word is about 1.3 DeBERTa-v3 tokens; the server's `x-compute-tokens` header gives
the exact count when present). Each level sends at most --requests requests and stops after
--max-seconds. Only loopback URLs are accepted.
"""

import argparse
import http.client
import json
import math
import random
import statistics
import sys
import threading
import time
import urllib.parse

WORDS = (
    "the model reads a sentence and scores how likely each label is given what it says about "
    "weather markets football elections cooking travel music science health films books "
    "people often write short reviews while others describe long journeys across mountains "
    "rivers cities and quiet villages where nothing much happens until the evening train arrives"
).split()


def workload(n, min_tokens, max_tokens, seed):
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        tokens = math.exp(rng.uniform(math.log(min_tokens), math.log(max_tokens)))
        words = max(1, int(tokens / 1.3))
        texts.append(" ".join(rng.choice(WORDS) for _ in range(words)))
    return texts


def check_loopback(url):
    host = urllib.parse.urlparse(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        sys.exit(f"refusing {url}: loopback only (127.0.0.0/8, localhost, ::1)")


def body_for(route, text):
    if route == "/classify":  # infinity-emb
        return {"input": [text], "model": "model"}
    return {"inputs": text}


def worker(url, route, texts, stop_at, results, lock, headers):
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=120)
    while True:
        with lock:
            if not texts or time.monotonic() > stop_at:
                break
            text = texts.pop()
        payload = json.dumps(body_for(route, text))
        start = time.monotonic()
        try:
            conn.request("POST", route, payload, {"content-type": "application/json", **headers})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            tokens = resp.getheader("x-compute-tokens")
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=120)
            status, tokens = 0, None
        elapsed = time.monotonic() - start
        est = int(len(text.split()) * 1.3) + 2
        with lock:
            results.append((status, elapsed, int(tokens) if tokens else est))
    conn.close()


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def run_level(args, concurrency, texts):
    queue = list(reversed(texts[: args.requests]))
    results, lock = [], threading.Lock()
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    stop_at = time.monotonic() + args.max_seconds
    threads = [
        threading.Thread(target=worker, args=(args.url, args.route, queue, stop_at, results, lock, headers))
        for _ in range(concurrency)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    ok = [r for r in results if r[0] == 200]
    lat = [r[1] * 1000 for r in ok]
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "ok": len(ok),
        "errors": len(results) - len(ok),
        "seconds": round(wall, 3),
        "req_per_s": round(len(ok) / wall, 2) if wall else 0.0,
        "tokens_per_s": round(sum(r[2] for r in ok) / wall, 1) if wall else 0.0,
        "p50_ms": round(percentile(lat, 50), 2),
        "p90_ms": round(percentile(lat, 90), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "mean_ms": round(statistics.fmean(lat), 2) if lat else float("nan"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--route", default="/predict", help="/predict (TEI, deberta serve) or /classify (infinity)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--requests", type=int, default=400, help="most requests per level")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="time limit per level")
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--min-tokens", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--api-key")
    ap.add_argument("--label", default="", help="name printed with each row")
    args = ap.parse_args()
    check_loopback(args.url)
    texts = workload(max(args.requests, args.warmup), args.min_tokens, args.max_tokens, args.seed)
    warm = argparse.Namespace(**{**vars(args), "requests": args.warmup})
    run_level(warm, 1, texts)
    for c in args.concurrency:
        row = run_level(args, c, texts)
        row["label"] = args.label
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
