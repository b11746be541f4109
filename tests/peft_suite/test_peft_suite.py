"""PEFT's own shared tests over SHINE (issue 22), compared with the committed table `expectations.py`.

The sdist of the installed peft version (`pip download peft==<version> --no-deps --no-binary :all:`) holds PEFT's test
suite; `sdist.py` downloads it once and unpacks its `tests/` into `.pytest_cache/d/peft-sdist/<version>/`. A pytest
run over its `test_decoder_models.py` (plus `shared_methods.py`: the `PeftCommonTester` methods that file does not
call) with the plugin `plugin.py` puts a SHINE row and tiny local models in place of PEFT's rows and Hub models, in two
modes (no context; a context absorbed for every forward). Every outcome must match the table: a test that newly fails,
or a not-applicable one that starts passing, fails here. docs/peft_conformance.md shows the table.

Without network on the first run the comparison is skipped, saying how to un-skip it; with PEFT_SUITE_REQUIRED=1 (as
`.ci/run` sets) that is a failure instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peft_suite import expectations
from tests.peft_suite.expectations import EXPECTED, Expected, differences, markdown_table
from tests.peft_suite.plugin import MODELS_ENV, RESULTS_ENV
from tests.peft_suite.sdist import PACKAGE, SDIST_ENV, SdistUnavailable, peft_version, unpacked_tests

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DOC = ROOT / "docs" / "peft_conformance.md"
REQUIRED_ENV = "PEFT_SUITE_REQUIRED"
TIMEOUT_S = 900


def suite_root(cache_dir: Path) -> Path:
    """PEFT's unpacked tests, or a skip (a failure under PEFT_SUITE_REQUIRED=1) that says how to get them."""
    try:
        return unpacked_tests(cache_dir)
    except SdistUnavailable as error:
        message = (
            f"PEFT's test suite (the sdist of the installed peft=={peft_version()}) is not available: {error}. "
            f"Run the tests once with access to PyPI (the sdist is then cached in {cache_dir}), or set "
            f"{SDIST_ENV}=/path/to/peft-{peft_version()}.tar.gz."
        )
        if os.environ.get(REQUIRED_ENV) == "1":
            pytest.fail(message + f" {REQUIRED_ENV}=1 makes this a failure.")
        pytest.skip(message)


def run_suite(root: Path, models: Path, results: Path) -> dict:
    """PEFT's decoder tests and the shared methods, over SHINE (`plugin.py`), in a pytest subprocess."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(root), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        MODELS_ENV: str(models),
        RESULTS_ENV: str(results),
    }
    command = [sys.executable, "-m", "pytest", f"{PACKAGE}/test_decoder_models.py", str(HERE / "shared_methods.py")]
    command += ["-c", "pytest.ini", "--rootdir", str(root), "-p", "tests.peft_suite.plugin", "-p", "no:cacheprovider"]
    command += ["-q", "--no-header", "-p", "no:warnings"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    if not results.is_file():
        pytest.fail(f"PEFT's suite did not report (exit {done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    return json.loads(results.read_text())


@pytest.fixture(scope="module")
def suite(request, tmp_path_factory) -> dict:
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    cache_dir = Path(cache.mkdir("peft-sdist")) if cache else tmp_path_factory.mktemp("peft-sdist")
    root = suite_root(cache_dir)
    return run_suite(root, tmp_path_factory.mktemp("models"), cache_dir / f"results-{peft_version()}.json")


def test_peft_shared_tests_over_shine_match_the_expectation_table(suite):
    problems = differences(suite["results"], suite["deselected"])
    header = (
        f"PEFT's shared tests over SHINE depart from tests/peft_suite/expectations.py (made with peft "
        f"{expectations.PEFT_VERSION}, running {peft_version()}); fix SHINE, or update the table and "
        "docs/peft_conformance.md with the reason:"
    )
    assert not problems, "\n".join([header, *problems])
    assert {r["mode"] for r in suite["results"]} == {"plain", "context"}
    assert sum(r["outcome"] == "passed" for r in suite["results"]) >= 60  # the run really exercised SHINE


def test_the_docs_show_the_expectation_table():
    text = DOC.read_text()
    assert markdown_table() in text, (
        "docs/peft_conformance.md does not show the current table: paste the output of "
        "`python -m tests.peft_suite.expectations` between its table markers."
    )
    assert f"peft {expectations.PEFT_VERSION}" in text


# ---------------------------------------------------------------------------------------------------------------------
# The comparison itself


def result(test: str, mode: str, outcome: str, message: str = "", model: str = "llama") -> dict[str, str]:
    return {"test": test, "mode": mode, "model": model, "outcome": outcome, "message": message}


def listed_results() -> list[dict[str, str]]:
    """A run in which every listed test does exactly what the table says."""
    runs = []
    for test, modes in EXPECTED.items():
        for mode, entry in modes.items():
            for model, expected in (entry if isinstance(entry, dict) else {"llama": entry}).items():
                message = expected.messages[0] if expected.messages else ""
                runs.append(result(test, mode, expected.outcome, message, model))
    return runs


def test_a_run_that_does_what_the_table_says_has_no_differences():
    assert differences(listed_results(), list(expectations.NOT_PARAMETRIZED)) == []


@pytest.mark.parametrize(
    "test, mode, outcome, message, complaint",
    [
        ("test_save_pretrained", "plain", "failed", "AttributeError: boom", "newly failed"),
        ("test_delete_adapter", "context", "passed", "", "now passes"),
        ("test_delete_adapter", "context", "failed", "KeyError: 'default'", "not for the listed reason"),
        ("test_generate", "context", "skipped", "no GPU", "newly skipped"),
        ("test_mixed_adapter_batches", "plain", "failed", "ValueError", "but failed"),
    ],
)
def test_the_comparison_reports_a_changed_outcome(test, mode, outcome, message, complaint):
    runs = [r for r in listed_results() if (r["test"], r["mode"]) != (test, mode)]
    runs.append(result(test, mode, outcome, message))
    problems = differences(runs, list(expectations.NOT_PARAMETRIZED))
    assert len(problems) == 1 and problems[0].startswith(f"{test} [{mode}, llama]") and complaint in problems[0]


def test_the_comparison_reports_unlisted_missing_and_deselected_changes():
    runs = [r for r in listed_results() if r["test"] != "test_generate"]
    runs.append(result("test_brand_new", "plain", "passed"))
    problems = differences(runs, [*expectations.NOT_PARAMETRIZED[1:], "test_lora_new_feature"])
    assert any(p.startswith("test_brand_new [plain, llama]: passed, but the table does not list it") for p in problems)
    assert "test_generate [plain]: listed in the table, but not run" in problems
    assert any("new ['test_lora_new_feature']" in p and expectations.NOT_PARAMETRIZED[0] in p for p in problems)


def test_a_documented_noise_pass_is_accepted_only_where_listed():
    noisy = next(test for test, modes in EXPECTED.items() if getattr(modes["plain"], "may_pass", False))
    runs = [r for r in listed_results() if (r["test"], r["mode"]) != (noisy, "plain")]
    assert differences([*runs, result(noisy, "plain", "passed")], list(expectations.NOT_PARAMETRIZED)) == []
    assert isinstance(EXPECTED[noisy]["context"], Expected) and EXPECTED[noisy]["context"].outcome == "passed"
