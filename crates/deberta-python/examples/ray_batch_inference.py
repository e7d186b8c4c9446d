"""Batch text classification with Ray Data and deberta-rs.

Reads a JSONL or Parquet dataset with a text column, classifies it with
``map_batches(DebertaPredictor, concurrency=N, batch_size=B)`` and writes Parquet with the
input columns plus ``label`` and ``score`` (the best label, as ``deberta classify`` gives it).

One machine (a local Ray cluster is started)::

    python ray_batch_inference.py --model models/deberta-v3-tiny-sentiment \\
        --input reviews.jsonl --output out/ --actors 2 --threads 1

A real cluster: install the same wheel on every node (``pip install deberta-rs`` from your
index, or ``pip install ./crates/deberta-python`` in the node image, or ship it with a
runtime env: ``ray.init(runtime_env={"pip": ["deberta-rs"]})``), put the checkpoint where
every node can read it (a shared file system, or bake it into the image), and start with
``--address auto`` (or ``ray://head:10001``). Size it as actors x threads = cores per node:
each actor holds one model with its own intra-op pool of ``--threads`` threads and asks Ray
for that many CPUs, so e.g. 16-core nodes run 4 actors x 4 threads (fewer, fatter actors use
less memory; more, thinner ones give better throughput on short texts). ``--batch-size`` is
the rows per ``map_batches`` call; the pipeline sorts each batch by length and runs
``--model-batch-size`` rows per forward pass.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Dict, Optional

import numpy as np


class DebertaPredictor:
    """A Ray Data actor: loads the pipeline once, classifies batches of texts."""

    def __init__(self, model: str, threads: int = 1, batch_size: int = 32, text_column: str = "text",
                 dtype: str = "f32"):
        from deberta_rs import pipeline

        self.pipe = pipeline("text-classification", model=model, threads=threads,
                             batch_size=batch_size, dtype=dtype)
        self.text_column = text_column

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.text_column]]
        out = self.pipe(texts)  # transformers' legacy shape: one {label, score} per text
        batch["label"] = np.array([o["label"] for o in out], dtype=object)
        batch["score"] = np.array([o["score"] for o in out], dtype=np.float64)
        return batch


def read(path: str, ray_data):
    """A JSONL file (one object per line) or Parquet."""
    if path.endswith((".jsonl", ".json")):
        return ray_data.read_json(path)
    return ray_data.read_parquet(path)


def run(model: str, input_path: str, output_path: str, actors: int = 2, threads: int = 1,
        batch_size: int = 64, model_batch_size: int = 32, text_column: str = "text",
        address: Optional[str] = None, dtype: str = "f32") -> float:
    """Classifies `input_path` into Parquet under `output_path`; returns the seconds the
    pipeline took (read, classify, write; Ray start-up excluded)."""
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            # A local cluster: the actors' CPUs plus one slot for the read and write tasks
            # (light I/O), so they never wait behind the actors.
            # Workers import DebertaPredictor from this file when it was imported as a module
            # (run as a script, Ray ships the class by value).
            here = os.path.dirname(os.path.abspath(__file__))
            path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
            ray.init(num_cpus=actors * threads + 1, include_dashboard=False,
                     log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    t0 = time.perf_counter()
    ds = read(input_path, ray.data)
    ds = ds.map_batches(
        DebertaPredictor,
        fn_constructor_kwargs=dict(model=model, threads=threads, batch_size=model_batch_size,
                                   text_column=text_column, dtype=dtype),
        concurrency=actors,
        batch_size=batch_size,
        num_cpus=threads,
        batch_format="numpy",
    )
    ds.write_parquet(output_path)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint directory (readable on every node)")
    ap.add_argument("--input", required=True, help="JSONL (.jsonl) or Parquet file/directory")
    ap.add_argument("--output", required=True, help="output directory (Parquet)")
    ap.add_argument("--actors", type=int, default=2, help="model-holding actors (concurrency)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per actor")
    ap.add_argument("--batch-size", type=int, default=64, help="rows per map_batches call")
    ap.add_argument("--model-batch-size", type=int, default=32, help="rows per forward pass")
    ap.add_argument("--text-column", default="text")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "int8"])
    ap.add_argument("--address", default=None, help="an existing cluster (auto, ray://host:10001)")
    a = ap.parse_args()
    seconds = run(a.model, a.input, a.output, a.actors, a.threads, a.batch_size, a.model_batch_size,
                  a.text_column, a.address, a.dtype)
    print(f"classified {a.input} into {a.output} in {seconds:.1f}s "
          f"({a.actors} actors x {a.threads} threads)")


if __name__ == "__main__":
    main()
