"""Deep ensembles (models.ensemble, training.fit.fit_ensemble): members trained alone with
consecutive seeds, averaged quantile by quantile, calibrated once, saved and served like any
other forecaster."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models.ensemble import EnsembleForecaster
from models.forecaster import (
    ForecasterConfig,
    ForecasterConfigError,
    build_forecaster,
    load_checkpoint,
)
from service.traced import trace_forward
from tests.training.synthetic import seasonal_frame
from tests.training.test_fit import FAST, H, L, urnn_config, windows_of
from training.fit import EpochRecord, fit, predict

PLAIN = replace(FAST, calibrate_intervals=False)


def test_the_ensemble_forecast_is_the_members_mean_and_keeps_the_kinds_flags() -> None:
    torch.manual_seed(0)
    model = build_forecaster(urnn_config(ensemble=3)).eval()
    assert isinstance(model, EnsembleForecaster) and len(model.members) == 3
    assert model.SUPPORTS_PAST_COVARIATES and model.RECURRENT and model.UNITARY
    assert len(model.unitary_parameters()) == 3 * len(model.forecasters[0].unitary_parameters())
    x, covariates = torch.randn(5, L), torch.randn(5, L, 1)
    members = torch.stack([m(x, covariates) for m in model.forecasters])
    out = model(x, covariates)
    torch.testing.assert_close(out, members.mean(dim=0))
    assert torch.all(out.diff(dim=-1) >= 0)  # still monotone in the quantile
    traced = trace_forward(model, torch.device("cpu"))  # what the service runs
    assert traced is not None
    with torch.inference_mode():  # as the service runs it
        torch.testing.assert_close(traced(x, covariates, None, None), out)


def test_an_ensemble_forecasts_a_flat_look_back_as_its_level_exactly() -> None:
    """Every member forecasts a flat look-back as its level, and the mean of three equal
    float32 values is not always that value (3 x / 3: one step off for 17 % of them), so a
    stuck sensor's forecast and its zero-width interval came back one step beside the level
    and missed every actual. Where the members agree, the ensemble answers what they say."""
    torch.manual_seed(0)
    levels = torch.linspace(-2.0, 2.0, 400)
    assert (torch.stack([levels] * 3).mean(dim=0) != levels).any()  # the round-off is there
    model = build_forecaster(urnn_config(ensemble=3)).eval()
    flat = levels[:, None].expand(-1, L).contiguous()
    out = model(flat, torch.zeros(len(levels), L, 1))
    assert (out == levels[:, None, None]).all()
    traced = trace_forward(model, torch.device("cpu"))  # what the service runs
    assert traced is not None
    with torch.inference_mode():
        assert (traced(flat, torch.zeros(len(levels), L, 1), None, None) == out).all()


def test_members_are_the_single_fits_with_consecutive_seeds(tmp_path: Path) -> None:
    sets, _ = windows_of(seasonal_frame(300))
    config = urnn_config(ensemble=2)
    records: list[EpochRecord] = []
    result = fit(config, sets.train, sets.val, replace(PLAIN, seed=3),
                 on_epoch_end=records.append, checkpoint_dir=tmp_path, progress=False)  # fmt: skip
    model = result.model
    assert isinstance(model, EnsembleForecaster) and model.config.ensemble == 2
    for i, member in enumerate(model.forecasters):
        alone = fit(urnn_config(), sets.train, sets.val, replace(PLAIN, seed=3 + i), progress=False)
        torch.testing.assert_close(predict(member, sets.test), predict(alone.model, sets.test))
    assert {r.candidate for r in records} == {"member1", "member2"}
    assert [r.candidate for r in result.history] == [r.candidate for r in records]
    restored, meta = load_checkpoint(tmp_path)
    assert meta["model"]["ensemble"] == 2
    assert torch.equal(predict(restored, sets.test), predict(model, sets.test))


def test_the_first_member_chooses_the_decoder_for_all() -> None:
    sets, _ = windows_of(seasonal_frame(300))
    records: list[EpochRecord] = []
    config = replace(PLAIN, decoder_search=True)
    result = fit(urnn_config(ensemble=2), sets.train, sets.val, config,
                 on_epoch_end=records.append, progress=False)  # fmt: skip
    model = result.model
    assert isinstance(model, EnsembleForecaster)
    chosen = model.config.decoder
    assert set(result.decoder_scores) == {"direct", "pmf"}
    assert all(m.config.decoder == chosen for m in model.forecasters)
    candidates = {r.candidate for r in records}
    assert {"member1/direct", "member1/pmf", "member2"} == candidates


def test_intervals_are_calibrated_on_the_average() -> None:
    sets, _ = windows_of(seasonal_frame(300))
    result = fit(urnn_config(ensemble=2), sets.train, sets.val, FAST, progress=False)
    model = result.model
    assert isinstance(model, EnsembleForecaster)
    assert not torch.all(model.gap_scale == 1.0)  # the ensemble's own multipliers were fitted
    for member in model.forecasters:
        assert torch.all(member.gap_scale == 1.0)  # the members' stay at one


def test_a_cancelled_ensemble_keeps_the_members_that_finished() -> None:
    sets, _ = windows_of(seasonal_frame(300))
    calls = {"n": 0}

    def stop_in_member_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 2 * FAST.max_train_batches * FAST.max_epochs  # type: ignore[operator]

    result = fit(urnn_config(ensemble=3), sets.train, sets.val, PLAIN,
                 should_stop=stop_in_member_three, progress=False)  # fmt: skip
    assert result.stop_reason == "cancelled"
    assert isinstance(result.model, EnsembleForecaster) and result.model.config.ensemble == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "seasonal_naive", "season_length": 24}, "ensemble must be 1 for kind"),
        ({"kind": "urnn-stream", "segment_length": 8}, "ensemble must be 1 for kind"),
        ({"ensemble": 0}, "ensemble must be an integer from 1 to 100"),
    ],
)
def test_ensembles_of_untrainable_or_streaming_kinds_are_refused(
    overrides: dict[str, object], message: str
) -> None:
    base: dict[str, object] = {"kind": "urnn", "lookback": L, "horizon": H, "ensemble": 2}
    with pytest.raises(ForecasterConfigError, match=message):
        ForecasterConfig(**{**base, **overrides})  # type: ignore[arg-type]
