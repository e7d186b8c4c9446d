#!/usr/bin/env bash
# Builds the freestanding AVX-512 kernel check and runs it under an emulated CPU (README.md).
# Needs python3 (3.11 here: the bochscpu wheel's ABI), cc and PyPI.
set -euo pipefail
cd "$(dirname "$0")"
venv=target/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/pip" show --quiet bochscpu-python >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet bochscpu-python==0.4.0
fi
CARGO_TARGET_DIR="$PWD/target" cargo build --release --quiet
"$venv/bin/python" run.py
