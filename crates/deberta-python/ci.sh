#!/usr/bin/env bash
# The Python package's CI step (called by .ci/run after `cargo test --workspace`): a virtual
# environment with pinned test dependencies, the extension built with the dev profile into the
# workspace's target/ (so it reuses the dependencies `cargo test` compiled: the dev profile
# builds them at opt-level 3), installed with `pip install ./crates/deberta-python` (maturin as
# the PEP 517 backend), and the pytest suite, with the reason of every skipped test printed.
set -euo pipefail
cd "$(dirname "$0")/../.."

begin=$(date +%s)
venv=target/pyenv
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/pip" --disable-pip-version-check --no-cache-dir -q)
"${pip[@]}" install maturin==1.16.0 numpy==2.4.6 pytest==9.2.0 pyarrow==26.0.1 pandas==2.3.3
# The engines of the end-to-end tests; a failed install makes those tests skip (with the reason).
"${pip[@]}" install 'ray[data]==2.60.0' || echo "ci.sh: ray did not install; its test will skip"
"${pip[@]}" install pyspark==4.3.0 || echo "ci.sh: pyspark did not install; its test will skip"
if ! command -v java >/dev/null 2>&1; then
  (apt-get update -q && apt-get install -y -q openjdk-17-jre-headless) >/dev/null 2>&1 \
    || echo "ci.sh: no java and openjdk-17-jre-headless did not install; the Spark test will skip"
fi

start=$(date +%s)
# Without build isolation the backend runs the venv's `maturin`.
PATH="$PWD/$venv/bin:$PATH" MATURIN_PEP517_ARGS="--profile dev" "${pip[@]}" install --no-build-isolation --force-reinstall \
  --no-deps ./crates/deberta-python
echo "ci.sh: built and installed deberta-rs in $(($(date +%s) - start))s"
status=0
"$venv/bin/python" -m pytest crates/deberta-python/tests -rs -q -p no:cacheprovider || status=$?
echo "ci.sh: venv $(du -sh "$venv" | cut -f1), the Python step took $(($(date +%s) - begin))s"
# CI's disk is tight: the venv (ray, pyspark: ~1.2 GB) and the wheel go once the tests ran.
if [ "${CI:-}" = "true" ]; then rm -rf "$venv" target/wheels; fi
exit $status
