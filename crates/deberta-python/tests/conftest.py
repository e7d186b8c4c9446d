"""Shared helpers: repository paths, the committed fixtures, a safetensors reader (numpy
only), and the `deberta` CLI binary when one has been built (`cargo build`/`cargo test`)."""

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "fixtures"
TASKS = FIXTURES / "tasks"
MODELS = REPO / "models"
SENTIMENT = MODELS / "deberta-v3-tiny-sentiment"
MLM = MODELS / "deberta-v3-tiny-en"

_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "U32": np.uint32,
           "I32": np.int32, "F16": np.float16, "U8": np.uint8}


def read_safetensors(path):
    """Every tensor of a .safetensors file, as numpy arrays."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = info["dtype"]
        if dtype == "BF16":
            raw = np.frombuffer(body[start:end], dtype=np.uint16).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(body[start:end], dtype=_DTYPES[dtype])
        out[name] = arr.reshape(info["shape"])
    return out


def cases(task):
    all_cases = json.loads((TASKS / "cases.json").read_text())["cases"]
    found = [c for c in all_cases if c["task"] == task]
    assert found, f"cases.json has no {task} case"
    return found


def max_diff(got, want, path="$"):
    """Max |a - b| over numbers; fails on any structural or string difference."""
    if isinstance(want, bool) or isinstance(got, bool):
        assert got == want, path
        return 0.0
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return abs(float(got) - float(want))
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r} vs {want!r}"
        return max([max_diff(g, w, f"{path}[{i}]") for i, (g, w) in enumerate(zip(got, want))] + [0.0])
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{path}: keys {list(got)} vs {list(want)}"
        return max([max_diff(got[k], want[k], f"{path}.{k}") for k in want] + [0.0])
    assert got == want, f"{path}: {got!r} vs {want!r}"
    return 0.0


def cli_binary():
    """The `deberta` CLI built from this checkout (DEBERTA_CLI, else target/release, else
    target/debug), or None."""
    env = os.environ.get("DEBERTA_CLI")
    if env:
        return env
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "deberta"
        if p.is_file():
            return str(p)
    return shutil.which("deberta")


@pytest.fixture(scope="session")
def cli():
    path = cli_binary()
    if path is None:
        pytest.skip("no `deberta` CLI binary built (cargo build -p deberta-cli); CLI comparison skipped")
    return path
