"""The paired F1 gain of `benchmarks/quality/paired_gain.py` on hand-made results."""

import pytest

from benchmarks.quality.paired_gain import paired_gain


def _results(shine: list[float], none: list[float]) -> dict:
    def predictions(scores):
        return [{"id": str(i), "f1": score} for i, score in enumerate(scores)]

    return {"methods": {"shine": {"predictions": predictions(shine)}, "none": {"predictions": predictions(none)}}}


def test_paired_gain_is_the_mean_difference_with_an_interval_around_it():
    gain = paired_gain(_results([1.0, 0.5, 0.0, 1.0], [0.0, 0.5, 0.5, 0.0]), "shine", "none")
    assert gain["gain"] == pytest.approx(100 * (1.0 + 0.0 - 0.5 + 1.0) / 4)
    assert gain["ci_low"] <= gain["gain"] <= gain["ci_high"]
    assert (gain["wins"], gain["losses"]) == (2, 1)


def test_paired_gain_refuses_unpaired_records():
    results = _results([1.0, 0.0], [0.0, 1.0])
    results["methods"]["none"]["predictions"].reverse()
    with pytest.raises(ValueError, match="same records"):
        paired_gain(results, "shine", "none")


def test_paired_gain_against_another_adapters_results():
    new, old = _results([1.0, 1.0, 0.0], [0.0, 0.0, 0.0]), _results([0.0, 1.0, 0.5], [0.0, 0.0, 0.0])
    gain = paired_gain(new, "shine", "none", other=old)
    assert gain["gain"] == pytest.approx(100 * (1.0 + 0.0 - 0.5) / 3)
    assert (gain["wins"], gain["losses"]) == (1, 1)
