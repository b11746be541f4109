"""PEFT's shared `PeftCommonTester._test_*` methods that `test_decoder_models.py` does not call, run the way that file
runs the others (its model class, inputs, config rows and model ids, which `plugin.py` replaces by SHINE's).

Only collected by the PEFT-suite run (`test_peft_suite.py` passes this file to pytest next to PEFT's
`test_decoder_models.py`, from the unpacked sdist); the project's own test run does not collect it.
"""

from __future__ import annotations

import inspect

import pytest
from peft_tests import test_decoder_models as decoder_tests  # not its class by name: pytest would collect it here
from peft_tests.test_decoder_models import ALL_CONFIGS, PEFT_DECODER_MODELS_TO_TEST
from peft_tests.testing_common import PeftCommonTester

SHARED_SIGNATURE = ["self", "model_id", "config_cls", "config_kwargs"]


def undriven_methods() -> list[str]:
    """The `_test_*` methods of `PeftCommonTester` taking (model_id, config_cls, config_kwargs) that
    `test_decoder_models.py` never calls."""
    source = inspect.getsource(decoder_tests)
    return sorted(
        name
        for name, method in vars(PeftCommonTester).items()
        if name.startswith("_test_")
        and list(inspect.signature(method).parameters) == SHARED_SIGNATURE
        and f"self.{name}(" not in source
    )


class TestSharedMethods(PeftCommonTester):
    transformers_class = decoder_tests.TestDecoderModels.transformers_class
    prepare_inputs_for_testing = decoder_tests.TestDecoderModels.prepare_inputs_for_testing

    @pytest.mark.parametrize("model_id", PEFT_DECODER_MODELS_TO_TEST)
    @pytest.mark.parametrize("config_cls,config_kwargs", ALL_CONFIGS)
    @pytest.mark.parametrize("method", undriven_methods())
    def test_shared_method(self, method, model_id, config_cls, config_kwargs):
        getattr(self, method)(model_id, config_cls, config_kwargs.copy())
