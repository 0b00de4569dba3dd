#!/usr/bin/env bash
# Triton Model Analyzer for `python -m perf tune`, in its own venv: <venv>/analyzer.
# It brings numpy 2 and tritonclient 2.73, which the serving venv must not get (the Python-backend
# stub breaks on numpy 2). Idempotent: does nothing when that version is already there.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
version=1.58.0   # perf/tune/environment.py ANALYZER_VERSION
analyzer="$venv/analyzer"

if [ -x "$analyzer/bin/model-analyzer" ] &&
   [ "$("$analyzer/bin/python" -c 'from importlib import metadata; print(metadata.version("triton-model-analyzer"))' 2>/dev/null)" = "$version" ]; then
  exit 0
fi
echo "installing triton-model-analyzer $version into $analyzer"
[ -x "$analyzer/bin/python" ] || "$python" -m venv "$analyzer"
"$analyzer/bin/python" -m pip install --quiet "triton-model-analyzer==$version"
