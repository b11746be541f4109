"""A pytest plugin (`-p tests.peft_suite.plugin`) that runs PEFT's own shared decoder tests over SHINE.

It is loaded into a pytest run over `peft_tests/test_decoder_models.py` unpacked from the installed peft's sdist
(`sdist.py`), and changes nothing in PEFT's code; it only chooses the parameters:

- every test parametrized over PEFT's config rows (`ALL_CONFIGS`) gets one SHINE row per mode instead, and PEFT's Hub
  model ids become tiny local models (`MODELS`, written offline into `$SHINE_PEFT_SUITE_MODELS`);
- the other tests of the file exercise one named PEFT method (LoRA, prompt tuning, ...) on a Hub model; they are
  deselected and listed in the results as such;
- mode "plain": no context, so SHINE computes the base model; mode "context": before every forward of the wrapped
  transformers model (also each generation step) the fixed context `CONTEXT_IDS` is encoded with the current weights
  (with gradients when enabled) and the model answers with its LoRA, so the adapter acts.

Each test's outcome (passed / failed / skipped, with the failure's or PEFT's skip message) goes to the JSON file
`$SHINE_PEFT_SUITE_RESULTS`, which `test_peft_suite.py` compares with `expectations.py`.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
import torch

from peft_shine import ShineConfig, ShineLinear, ShineModel
from peft_shine.layer import ShineState
from tests.helpers import build_model, build_tokenizer

RESULTS_ENV = "SHINE_PEFT_SUITE_RESULTS"
MODELS_ENV = "SHINE_PEFT_SUITE_MODELS"
MODES = ("plain", "context")
# Tiny random models (tests/helpers.py) saved with the tests' tokenizer, under the names of PEFT's own tiny models:
# PEFT's tests choose skips and tolerances from the model id ("llama" in it, ends with "qwen2", ...).
MODELS = {"llama": "tiny-random-LlamaForCausalLM", "qwen2": "tiny-dummy-qwen2"}
SHINE_ROW = {"task_type": "CAUSAL_LM", "lora_rank": 2, "meta_lora_rank": 4, "m2p_layers": 2}
CONTEXT_IDS = [[5, 17, 42, 99, 123, 7, 256, 31, 64, 250]]  # the context absorbed in mode "context"
SHARED_PARAMETERS = {"model_id", "config_cls", "config_kwargs"}

# Plain `assert` statements in PEFT's shared tests report their operands (pytest rewrites them on import).
pytest.register_assert_rewrite("peft_tests.testing_common", "peft_tests.testing_utils")

_mode: str | None = None  # the mode of the running test
_items: dict[str, dict[str, str]] = {}  # node id -> {"test", "model", "mode"}
_outcomes: dict[str, dict[str, str]] = {}  # node id -> {"outcome", "message"}
_deselected: set[str] = set()


# ---------------------------------------------------------------------------------------------------------------------
# Parameters: SHINE rows and local models instead of PEFT's


def pytest_configure(config: pytest.Config) -> None:
    folder = Path(os.environ[MODELS_ENV])
    tokenizer = build_tokenizer()
    for architecture, name in MODELS.items():
        path = folder / name
        if not (path / "config.json").is_file():
            build_model(architecture, len(tokenizer)).save_pretrained(path)
            tokenizer.save_pretrained(path)
    ShineModel.inject_adapter = _absorbing_in_context_mode(ShineModel.inject_adapter)


def _parametrize(argnames: str, values: list) -> pytest.Mark:
    return pytest.mark.parametrize(argnames, values).mark


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Replace the `ALL_CONFIGS` and model-id parametrizations of a test before pytest expands them."""
    marks = metafunc.definition.own_markers
    rows = getattr(metafunc.module, "ALL_CONFIGS", None)
    shared = [m for m in marks if m.name == "parametrize" and m.args[0] == "config_cls,config_kwargs"]
    if not shared or shared[0].args[1] is not rows:
        return
    folder = Path(os.environ[MODELS_ENV])
    for index, mark in enumerate(marks):
        if mark.name != "parametrize":
            continue
        if mark.args[0] == "config_cls,config_kwargs":
            values = [pytest.param(ShineConfig, dict(SHINE_ROW), id=f"shine-{mode}") for mode in MODES]
            marks[index] = _parametrize(mark.args[0], values)
        elif mark.args[0] == "model_id":
            values = [pytest.param(str(folder / name), id=arch) for arch, name in MODELS.items()]
            marks[index] = _parametrize("model_id", values)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the SHINE-parametrized tests, name each by PEFT's test function plus its other parameters."""
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("config_cls") is not ShineConfig:
            dropped.append(item)
            _deselected.add(item.originalname)
            continue
        extra = {k: v for k, v in params.items() if k not in SHARED_PARAMETERS}
        name = extra.pop("method", item.originalname)  # shared_methods.py: the PeftCommonTester method it runs
        variant = ",".join(f"{k}={str(v).removeprefix('torch.')}" for k, v in sorted(extra.items()))
        ids = item.callspec.id.split("-")  # e.g. "True-shine-context-llama"
        _items[item.nodeid] = {
            "test": f"{name}[{variant}]" if variant else name,
            "model": next((part for part in ids if part in MODELS), "-"),
            "mode": next(part for part in ids if part in MODES),
        }
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


# ---------------------------------------------------------------------------------------------------------------------
# Mode "context": the fixed context is absorbed for every forward


@pytest.fixture(autouse=True)
def _shine_mode(request: pytest.FixtureRequest):
    global _mode
    _mode = _items.get(request.node.nodeid, {}).get("mode")
    yield
    _mode = None


def _absorbing_in_context_mode(inject_adapter):
    @functools.wraps(inject_adapter)
    def inject(self: ShineModel, model, adapter_name, **kwargs):
        inject_adapter(self, model, adapter_name, **kwargs)
        if _mode == "context" and not getattr(self, "_suite_hooks", None):
            self._suite_hooks = install_context(self)

    return inject


def install_context(shine: ShineModel) -> list:
    """Hooks on the wrapped transformers model: before each forward, encode `CONTEXT_IDS` with the current weights and
    answer with its LoRA (unless a context is already in use, or SHINE was deleted or unloaded); after it, restore."""
    model, pushed = shine.model, []

    def before(module, args, kwargs):
        state = shine.runtime.state
        active = state.mode == "base" and shine.active_adapters and shine.shine_hypernetwork
        if not active or not any(isinstance(m, ShineLinear) for m in module.modules()):
            pushed.append(None)
            return
        ids = torch.tensor(CONTEXT_IDS, device=model.get_input_embeddings().weight.device)
        factors = shine.generate_lora(ids, torch.ones_like(ids))
        pushed.append(state)
        shine.runtime.state = ShineState("answer", factors)

    def after(module, args, kwargs, output):
        previous = pushed.pop() if pushed else None
        if previous is not None:
            shine.runtime.state = previous

    return [
        model.register_forward_pre_hook(before, with_kwargs=True),
        model.register_forward_hook(after, with_kwargs=True, always_call=True),
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Outcomes


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid not in _items:
        return
    current = _outcomes.get(report.nodeid)
    if current and current["outcome"] != "passed":
        return  # the first failure or skip of a test (setup, call or teardown) is its outcome
    if report.passed and report.when != "call":
        return
    _outcomes[report.nodeid] = {"outcome": report.outcome, "message": _message(report)}


def _message(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message
    return str(report.longrepr or "")[-2000:]


def pytest_sessionfinish(session: pytest.Session) -> None:
    results = [{**_items[nodeid], **_outcomes.get(nodeid, {"outcome": "not run", "message": ""})} for nodeid in _items]
    payload = {"results": results, "deselected": sorted(_deselected)}
    Path(os.environ[RESULTS_ENV]).write_text(json.dumps(payload, indent=1))
