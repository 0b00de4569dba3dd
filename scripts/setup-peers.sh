#!/usr/bin/env bash
# The peers' own environment for `python -m perf peers` (docs/peers.md): infinity-emb,
# sentence-transformers and fastembed, whose pins (transformers 4, sentence-transformers < 4)
# clash with the serving venv. Idempotent: does nothing when the requirements are unchanged.
# About 3.5 minutes the first time on a 2-core machine (torch comes from the pinned CPU wheel).
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv/peers}
requirements=perf/peers/requirements.txt
stamp="$venv/.requirements"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; then
  exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
echo "installing the peers (infinity-emb, sentence-transformers, fastembed) into $venv (a few minutes the first time)"
"$venv/bin/python" -m pip install --quiet -r "$requirements"
cp "$requirements" "$stamp"
