"""bench.ett_tune's options: every variant is a valid benchmark config, and --setting /
--lookback combine with a variant's own fields only when they agree."""

from __future__ import annotations

import dataclasses

import pytest

from bench.ett_tune import VARIANTS, TuneError, merged_overrides
from training.ett_benchmark import EttBenchmarkConfig


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_builds_a_valid_m_config(name: str) -> None:
    overrides = merged_overrides({"setting": "M"}, {**VARIANTS[name], "setting": "M"})
    config = dataclasses.replace(EttBenchmarkConfig(models=("urnn",)), **overrides)
    assert config.setting == "M"
    config.model_config("urnn", 96, "h")


def test_command_line_fields_and_variants_must_agree() -> None:
    assert merged_overrides({"setting": "M", "lookback": 720}, {"decoder": "pmf"}) == {
        "setting": "M",
        "lookback": 720,
        "decoder": "pmf",
    }
    assert merged_overrides({"lookback": 720}, {"lookback": 720}) == {"lookback": 720}
    with pytest.raises(TuneError, match=r"lookback: command line 336, variant 720"):
        merged_overrides({"lookback": 336}, VARIANTS["l720"])
