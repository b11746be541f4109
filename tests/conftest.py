"""Shared fixtures (offline): the tiny tokenizer and a tiny base saved to a folder."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# ruff: noqa: E402
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from tests.helpers import build_model, build_tokenizer


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture(scope="session")
def saved_base(tmp_path_factory, tokenizer) -> Path:
    """A tiny Llama and its tokenizer saved to a folder, so `name_or_path` loading paths work offline."""
    path = tmp_path_factory.mktemp("tiny-llama")
    build_model("llama", len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def shine_adapter(tmp_path_factory, saved_base) -> Path:
    """A small untrained SHINE adapter for the tiny Llama, saved to a folder (for the command-line tests)."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from peft_shine import ShineConfig

    path = tmp_path_factory.mktemp("shine")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(saved_base), ShineConfig(lora_rank=2, m2p_layers=2))
    model.save_pretrained(path)
    return path
