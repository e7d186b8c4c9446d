"""Batch text classification with PySpark and deberta-rs (``predict_batch_udf``).

Reads a JSONL or Parquet dataset with a text column, adds ``label`` and ``score`` (the best
label, as ``deberta classify`` gives it) and writes Parquet.

One machine (Spark in local mode, N Python workers)::

    python spark_batch_inference.py --model models/deberta-v3-tiny-sentiment \\
        --input reviews.jsonl --output out/ --master "local[2]" --threads 1

A real cluster: install the wheel into the Python environment of every executor (the same
``pip install`` in the executor image, or ship a packed virtual environment with
``spark.archives`` / ``--archives env.tar.gz#env`` and ``PYSPARK_PYTHON=./env/bin/python``),
put the checkpoint on storage every executor can read, and submit with
``spark-submit --master yarn|k8s://...``. Size it as executor cores x ``--threads`` = cores
per node: Spark runs one Python worker per task slot (``spark.executor.cores``), each loading
the model once (``predict_batch_udf`` caches it per worker) with ``--threads`` intra-op
threads; e.g. 16-core nodes with ``spark.executor.cores=8`` and ``--threads 2``, or 16 x 1.
``--batch-size`` is the rows per model call (each call sorts by length and pads per forward
batch of ``--model-batch-size``).
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Optional

import numpy as np


def make_predict_fn(model: str, threads: int = 1, model_batch_size: int = 32,
                    dtype: str = "f32") -> Callable[[], Callable[[np.ndarray], dict]]:
    """The `make_predict_fn` of predict_batch_udf: runs once per Python worker."""

    def make():
        from deberta_rs import pipeline

        pipe = pipeline("text-classification", model=model, threads=threads,
                        batch_size=model_batch_size, dtype=dtype)

        def predict(texts: np.ndarray) -> dict:
            out = pipe([str(t) for t in texts])
            return {
                "label": np.array([o["label"] for o in out], dtype=object),
                "score": np.array([o["score"] for o in out], dtype=np.float64),
            }

        return predict

    return make


def session(master: str = "local[2]", app: str = "deberta-rs"):
    """A Spark session whose Python workers run this interpreter (so they see the deberta-rs
    installed here; on a cluster, PYSPARK_PYTHON names the executors' environment)."""
    import os
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    return (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.python.worker.reuse", "true")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )


def classify(df, model: str, threads: int = 1, batch_size: int = 64, model_batch_size: int = 32,
             text_column: str = "text", dtype: str = "f32"):
    """`df` with `label` and `score` columns added."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    udf = predict_batch_udf(
        make_predict_fn(model, threads, model_batch_size, dtype),
        return_type=StructType([StructField("label", StringType()), StructField("score", DoubleType())]),
        batch_size=batch_size,
    )
    return df.withColumn("_pred", udf(F.col(text_column))).select(
        "*", F.col("_pred.label").alias("label"), F.col("_pred.score").alias("score")
    ).drop("_pred")


def run(model: str, input_path: str, output_path: str, master: str = "local[2]", threads: int = 1,
        batch_size: int = 64, model_batch_size: int = 32, text_column: str = "text",
        partitions: Optional[int] = None, dtype: str = "f32", spark=None) -> float:
    """Classifies `input_path` into Parquet under `output_path`; returns the seconds it took
    (session start excluded)."""
    spark = spark or session(master)
    t0 = time.perf_counter()
    if input_path.endswith((".jsonl", ".json")):
        df = spark.read.json(input_path)
    else:
        df = spark.read.parquet(input_path)
    df = df.repartition(partitions or spark.sparkContext.defaultParallelism)
    out = classify(df, model, threads, batch_size, model_batch_size, text_column, dtype)
    out.write.mode("overwrite").parquet(output_path)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint directory (readable by every executor)")
    ap.add_argument("--input", required=True, help="JSONL (.jsonl) or Parquet")
    ap.add_argument("--output", required=True, help="output directory (Parquet)")
    ap.add_argument("--master", default="local[2]", help="local[N], yarn, k8s://... (or set by spark-submit)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per Python worker")
    ap.add_argument("--batch-size", type=int, default=64, help="rows per model call")
    ap.add_argument("--model-batch-size", type=int, default=32, help="rows per forward pass")
    ap.add_argument("--text-column", default="text")
    ap.add_argument("--partitions", type=int, default=None)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "int8"])
    a = ap.parse_args()
    seconds = run(a.model, a.input, a.output, a.master, a.threads, a.batch_size, a.model_batch_size,
                  a.text_column, a.partitions, a.dtype)
    print(f"classified {a.input} into {a.output} in {seconds:.1f}s ({a.master}, {a.threads} threads)")


if __name__ == "__main__":
    main()
