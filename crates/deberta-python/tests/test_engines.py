"""End to end on the distributed engines, on one machine: the Ray Data and Spark examples
(examples/*_batch_inference.py) classify a few hundred rows with the shipped sentiment model,
and their outputs equal the library's (and the CLI's) on the same rows, in bounded time.

An engine that is not installed (or, for Spark, no `java`) skips its test with the reason."""

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SENTIMENT, cli_binary
from deberta_rs import pipeline

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

ROWS = 300
TIME_LIMIT_S = 300

_SUBJECTS = ["the film", "our stay", "the service", "this phone", "the concert", "the meal", "the book",
             "the new update", "the hotel room", "the match"]
_VERDICTS = ["was wonderful", "was truly tedious and bleak", "felt slow and cold", "is on Tuesday",
             "exceeded every expectation", "left me bored", "was fine, nothing more",
             "made me want to come back", "was a complete waste of money", "had friendly staff"]
_TAILS = ["", ".", "!", ", honestly.", " and I would happily do it again.",
          " although the start dragged on for far too long before anything happened."]


def rows(n=ROWS, seed=7):
    rng = random.Random(seed)
    return [{"id": i, "text": f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERDICTS)}{rng.choice(_TAILS)}"}
            for i in range(n)]


def expected(data):
    """The library's answers on the rows (the pipeline the examples run, in one process)."""
    p = pipeline("text-classification", model=str(SENTIMENT), batch_size=32)
    return p([r["text"] for r in data])


def compare(df, data, want):
    df = df.sort_values("id").reset_index(drop=True)
    assert list(df["id"]) == [r["id"] for r in data]
    assert list(df["text"]) == [r["text"] for r in data]
    assert list(df["label"]) == [w["label"] for w in want]
    worst = max(abs(a - w["score"]) for a, w in zip(df["score"], want))
    assert worst < 1e-5, worst
    return worst


def write_jsonl(path, data):
    path.write_text("".join(json.dumps(r) + "\n" for r in data))


def cli_answers(tmp_path, data):
    cli = cli_binary()
    if cli is None:
        return None
    src = tmp_path / "cli.jsonl"
    write_jsonl(src, [{"text": r["text"]} for r in data])
    run = subprocess.run([cli, "classify", "--model", str(SENTIMENT), "--input", str(src), "--batch-size", "32"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return [json.loads(line)[0] for line in run.stdout.splitlines() if line.strip()]


def test_library_equals_cli(tmp_path):
    data = rows()
    via_cli = cli_answers(tmp_path, data)
    if via_cli is None:
        pytest.skip("no `deberta` CLI binary built; the engine tests still compare with the library")
    assert expected(data) == via_cli


def test_ray_data(tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ray[data]')")
    pd = pytest.importorskip("pandas")
    import ray_batch_inference as example

    data = rows()
    src = tmp_path / "in.jsonl"
    write_jsonl(src, data)
    t0 = time.perf_counter()
    try:
        seconds = example.run(str(SENTIMENT), str(src), str(tmp_path / "out"), actors=2, threads=1,
                              batch_size=64, model_batch_size=32)
    finally:
        ray.shutdown()
    total = time.perf_counter() - t0
    df = pd.read_parquet(tmp_path / "out")
    worst = compare(df, data, expected(data))
    print(f"ray: {ROWS} rows, pipeline {seconds:.1f}s, with start-up {total:.1f}s, max score diff {worst:.1e}")
    assert total < TIME_LIMIT_S


def test_spark_local(tmp_path):
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install pyspark)")
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (Spark's Arrow transfer needs it)")
    if shutil.which("java") is None:
        pytest.skip("no `java` on PATH: Spark needs a JRE 17+ (apt-get install openjdk-17-jre-headless)")
    import spark_batch_inference as example

    data = rows()
    src = tmp_path / "in.jsonl"
    write_jsonl(src, data)
    t0 = time.perf_counter()
    spark = example.session("local[2]")
    try:
        seconds = example.run(str(SENTIMENT), str(src), str(tmp_path / "out"), threads=1, batch_size=64,
                              model_batch_size=32, spark=spark)
    finally:
        spark.stop()
    total = time.perf_counter() - t0
    df = pd.read_parquet(tmp_path / "out")
    worst = compare(df, data, expected(data))
    print(f"spark: {ROWS} rows, job {seconds:.1f}s, with start-up {total:.1f}s, max score diff {worst:.1e}")
    assert total < TIME_LIMIT_S
