# The two commands of the README. Both create (once) and reuse the environment in .venv/.
PYTHON ?= python3
VENV := .venv
READY := $(VENV)/.ready
# The second test environment: Python 3.12, the images' Python, without torch (docs/PYTHON-3.12.md).
PYTHON312 ?= python3.12
VENV312 := $(VENV)/py312
READY312 := $(VENV312)/.ready
# Repositories built once by the Python 3.11 environment (torch) and served by the 3.12 one.
TEST_REPOS := build/test-repos

.PHONY: run test test-fast test-py312 setup setup-py312 clean

run: $(READY)            ## build the default model if stale, serve it, classify examples, stop
	$(VENV)/bin/python scripts/quickstart.py

test: $(READY)           ## the whole test suite, linters included (GPU tests skip themselves without a GPU)
	$(VENV)/bin/python -m pytest

# Everything that does not need torch, under Python 3.12: the tokenizer model, config writer,
# client, launcher, the real server with the 3.12 Python-backend stub, the image checks.
# Tests that need torch skip themselves there and run in `make test`.
test-py312: $(READY) $(READY312)
	$(VENV)/bin/python -m convert minilm-intent --out $(TEST_REPOS)/intent --if-stale
	$(VENV)/bin/python -m convert minilm-embed --out $(TEST_REPOS)/embed --if-stale
	TRITON_ENCODERS_TEST_REPO=$(TEST_REPOS)/intent TRITON_ENCODERS_TEST_EMBED_REPO=$(TEST_REPOS)/embed \
	  $(VENV312)/bin/python -m pytest -rs tests/test_convert_units.py tests/test_docker_images.py \
	  tests/test_docker_static.py tests/test_gpu.py tests/test_client.py tests/test_launcher.py tests/test_served_answers.py

test-fast: $(READY)      ## unit tests and linters only: no build, no server (under a minute)
	$(VENV)/bin/python -m pytest -m "not build and not live and not slow and not gpu and not soak"

setup: $(READY)

setup-py312: $(READY312)

$(READY): requirements.txt requirements-client.txt pyproject.toml scripts/setup.sh scripts/setup-k8s-tools.sh deploy/requirements-tools.txt \
          scripts/setup-analyzer.sh scripts/setup-peers.sh perf/peers/requirements.txt
	scripts/setup.sh "$(PYTHON)" "$(VENV)"
	touch $(READY)

$(READY312): requirements.txt scripts/setup-py312.sh
	scripts/setup-py312.sh "$(PYTHON312)" "$(VENV312)"
	touch $(READY312)

clean:
	rm -rf $(VENV) $(VENV312) build
