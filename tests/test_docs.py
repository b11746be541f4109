"""Code blocks of README.md and docs/training.md run as written (extracted from the Markdown, so they cannot rot),
offline, on the embedded default base, in a scratch folder."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from peft_shine.defaults import DEFAULT_HUB_ID, embedded_model_dir
from peft_shine.layer import ShineLinear
from tests.helpers import ROOT, default_gguf_or_none

needs_default_base = pytest.mark.skipif(
    default_gguf_or_none() is None and not (embedded_model_dir() / "model.safetensors").is_file(),
    reason="needs the embedded default base (make setup, or peft-shine fetch-default)",
)


def python_block(markdown: Path, heading: str, index: int = 0) -> str:
    """The `index`-th ```python block of the section of `markdown` that starts with the line `heading`."""
    text = markdown.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ")[0]
    following = re.search(rf"\n{level} ", text[start + len(heading) + 2 :])
    section = text[start : start + len(heading) + 2 + following.start()] if following else text[start:]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return blocks[index]


def short_answers(monkeypatch, tokens: int = 4) -> None:
    """Cap `ask` at a few new tokens: the blocks are checked for running, not for what an untrained model says."""
    from peft_shine import contexts as model_module

    real = model_module.generate_answers
    monkeypatch.setattr(
        model_module, "generate_answers", lambda m, t, q, n=64, **kw: real(m, t, q, min(n, tokens), **kw)
    )


def run_block(code: str, where: str) -> dict:
    """Execute a documentation block in a fresh namespace; returns the namespace."""
    namespace: dict = {"__name__": "__docs__"}
    exec(compile(code, where, "exec"), namespace)
    return namespace


@needs_default_base
def test_readme_use_block_runs_offline_without_reusing_a_changed_base(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("report.txt").write_text("The annual report was signed by the director, Ingrid Solberg, in May.\n")
    torch.manual_seed(0)
    short_answers(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        namespace = run_block(python_block(ROOT / "README.md", "## Use"), "README.md, ## Use")
    assert not [w for w in caught if "missing adapter keys" in str(w.message)]  # before: ~400 keys listed
    model = namespace["model"]
    assert isinstance(model, PeftModel) and not isinstance(model.get_base_model(), PeftModel)
    inner = [m for m in model.get_base_model().modules() if isinstance(m, ShineLinear)]
    assert inner and all(not isinstance(m.base_layer, ShineLinear) for m in inner)  # one SHINE layer per target
    saved = json.loads(Path("shine-smollm2/adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == DEFAULT_HUB_ID
    assert json.loads(Path("report-lora/adapter_config.json").read_text())["peft_type"] == "LORA"
    printed = capsys.readouterr().out
    assert "trainable params" in printed and "AbsorbedContext(contexts=1, rank=8" in printed


LOADERS = ("PeftModel.from_pretrained(", "AutoPeftModelForCausalLM.from_pretrained(", "PeftConfig.from_pretrained(")


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))])
def test_every_page_imports_peft_shine_before_it_loads_an_adapter(page):
    """Without `import peft_shine` PEFT cannot load a SHINE adapter (KeyError: 'SHINE'), so in each page the code
    imports it before the first line that loads an adapter."""
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    code = "\n".join(re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S))
    loads = [code.index(loader) for loader in LOADERS if loader in code]
    if loads:
        imports = [m.start() for m in re.finditer(r"^(import peft_shine|from peft_shine[ .])", code, flags=re.M)]
        assert imports and imports[0] < min(loads), f"{page}: a block loads an adapter before importing peft_shine"


def test_loading_without_the_import_fails_as_docs_errors_md_says(shine_adapter, saved_base):
    import subprocess
    import sys

    code = (
        "from peft import PeftModel; from transformers import AutoModelForCausalLM; "
        f"PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({str(saved_base)!r}), {str(shine_adapter)!r})"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1"})
    error = result.stderr.strip().splitlines()[-1]
    assert error == "KeyError: 'SHINE'"  # PEFT's own error; peft_shine cannot hook PEFT before it is imported
    row = next(line for line in (ROOT / "docs" / "errors.md").read_text().splitlines() if f"`{error}`" in line)
    assert "import peft_shine" in row


@needs_default_base
def test_training_md_own_script_block_trains_and_saves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_block(python_block(ROOT / "docs" / "training.md", "## In your own script"), "training.md, script")
    trainer = namespace["trainer"]
    assert trainer.state.global_step == 2 and [e for e in trainer.state.log_history if "skipped_no_answer_tokens" in e]
    assert namespace["train_dataset"].progress == pytest.approx(1 / 100)  # the callback drove the curriculum
    saved = json.loads(Path("runs/shine/adapter_config.json").read_text())
    assert saved["peft_type"] == "SHINE" and saved["base_model_name_or_path"] == DEFAULT_HUB_ID
    assert Path("runs/shine/tokenizer.json").is_file()


@needs_default_base
def test_training_md_trl_block_trains_and_saves(tmp_path, monkeypatch):
    pytest.importorskip("trl", reason="needs the trl extra")
    monkeypatch.chdir(tmp_path)
    namespace = run_block(python_block(ROOT / "docs" / "training.md", "## With TRL's `SFTTrainer`"), "training.md, TRL")
    logs = [entry for entry in namespace["trainer"].state.log_history if "loss" in entry]
    assert logs and all(entry["grad_norm"] > 0 for entry in logs)
    assert json.loads(Path("runs/sft/adapter_config.json").read_text())["peft_type"] == "SHINE"
