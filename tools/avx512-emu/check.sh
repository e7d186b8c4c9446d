#!/usr/bin/env bash
# Builds the freestanding AVX-512 kernel check and runs it under an emulated CPU (README.md).
# Needs x86-64, Python 3.11 (the bochscpu wheel's ABI) with venv, a C compiler and PyPI.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(uname -m)" != x86_64 ]; then
  echo "avx512-emu: skipped on $(uname -m) (the kernels and the emulator are x86-64)"
  exit 0
fi
python=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
    "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  echo "avx512-emu: needs Python 3.11 (bochscpu-python 0.4.0 ships cp311 wheels only)" >&2
  exit 1
fi
venv=target/venv
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv"; then
    # Debian's python3.11 without its venv package.
    apt-get install -y -q python3.11-venv >/dev/null
    "$python" -m venv "$venv"
  fi
fi
if ! "$venv/bin/pip" show --quiet bochscpu-python >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet bochscpu-python==0.4.0
fi
# The link flags live in .cargo/config.toml; rustflags from the environment would replace them.
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS \
  CARGO_TARGET_DIR="$PWD/target" cargo build --release --quiet
"$venv/bin/python" run.py
