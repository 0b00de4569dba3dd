# The two commands of the README. Both create (once) and reuse the environment in .venv/.
PYTHON ?= python3
VENV := .venv
READY := $(VENV)/.ready

.PHONY: run test setup clean

run: $(READY)            ## build the default model if stale, serve it, classify examples, stop
	$(VENV)/bin/python scripts/quickstart.py

test: $(READY)           ## the whole test suite (GPU tests skip themselves without a GPU)
	$(VENV)/bin/python -m pytest

setup: $(READY)

$(READY): requirements.txt requirements-client.txt pyproject.toml scripts/setup.sh scripts/setup-k8s-tools.sh deploy/requirements-tools.txt
	scripts/setup.sh "$(PYTHON)" "$(VENV)"
	touch $(READY)

clean:
	rm -rf $(VENV) build
