"""The training loop: loss, the clipping split, early stopping, hooks, determinism, checkpoints,
and that test values reach neither the scaler nor the model."""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor

from models.forecaster import (
    Forecaster,
    ForecasterConfig,
    NaiveForecaster,
    build_forecaster,
    load_checkpoint,
)
from tests.models.test_forecaster_contract import cpu_peak_bytes
from tests.training.synthetic import seasonal_frame
from training.data import LoadConfig
from training.fit import (
    EpochRecord,
    FitConfig,
    FitConfigError,
    calibrate_baseline,
    calibrate_intervals,
    clip_gradients,
    evaluate,
    fit,
    fit_fields_from_params,
    index_batches,
    make_optimizer,
    pinball_loss,
    predict,
    window_targets,
)
from training.pipeline import (
    Prepared,
    TrainConfig,
    prepare_training,
)
from training.split import CutSeriesError, SplitConfig, StandardScaler, plan_split, split_series
from training.stream_fit import UnobservedStreamValidationError
from training.validation import UnobservedValidationError
from training.windows import WindowConfig, WindowDataset, WindowSets, make_windows

L, H = 24, 6
FAST = FitConfig(max_epochs=2, max_train_batches=3, batch_size=16, device="cpu")


def windows_of(frame: pd.DataFrame) -> tuple[WindowSets, StandardScaler]:
    splits = {"s": split_series(frame, plan_split(len(frame), "h", SplitConfig(lookback=L)))}
    scaler = StandardScaler.fit(splits)
    return make_windows(splits, scaler, WindowConfig(L, H, stride=2), freq="h"), scaler


def urnn_config(**overrides: object) -> ForecasterConfig:
    options: dict[str, object] = {
        "kind": "urnn",
        "lookback": L,
        "horizon": H,
        "segment_length": 6,
        "hidden_size": 8,
        "n_past_covariates": 1,
        "recurrence": "python",
    }
    return ForecasterConfig(**{**options, **overrides})  # type: ignore[arg-type]


def test_pinball_loss_by_hand() -> None:
    pred = torch.tensor([[[0.0, 1.0, 2.0]]])  # quantiles 0.1, 0.5, 0.9 of one step
    target = torch.tensor([[1.5]])
    # e = 1.5, 0.5, -0.5 -> 0.1 * 1.5, 0.5 * 0.5, 0.1 * 0.5
    expected = (0.15 + 0.25 + 0.05) / 3
    loss = pinball_loss(pred, target, torch.tensor([0.1, 0.5, 0.9]))
    assert loss.item() == pytest.approx(expected)


def test_clipping_leaves_the_unitary_parameters_alone() -> None:
    model = build_forecaster(urnn_config())
    for p in model.parameters():
        p.grad = torch.full_like(p, 100.0)
    clip_gradients(model, 1.0)
    unitary = model.unitary_parameters()
    assert unitary and all(torch.all(p.grad == 100.0) for p in unitary if p.grad is not None)
    others = [p.grad for p in model.parameters() if all(p is not u for u in unitary)]
    total = torch.sqrt(sum((g.square().sum() for g in others if g is not None), torch.tensor(0.0)))
    assert total.item() == pytest.approx(1.0, rel=1e-4)


def test_unitary_parameters_get_no_weight_decay() -> None:
    model = build_forecaster(urnn_config())
    optimizer = make_optimizer(model, FitConfig(weight_decay=0.1))
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert all(decay[id(p)] == 0.0 for p in model.unitary_parameters())
    assert decay[id(model.get_parameter("head.weight"))] == 0.1
    assert len(decay) == len(list(model.parameters()))


def test_early_stopping_restores_the_best_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripted val scores 3, 1, 2, 2.5, 4 with patience 3: the loop stops after epoch 5 and
    hands back the weights it had after epoch 2."""
    sets, _ = windows_of(seasonal_frame(300))
    scores = iter([3.0, 1.0, 2.0, 2.5, 4.0, 5.0])
    snapshots: list[dict[str, torch.Tensor]] = []

    def scripted(
        model: Forecaster, dataset: object, config: FitConfig, device: str
    ) -> dict[str, float]:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        score = next(scores)
        return {"loss": score, "mse": score, "mae": score}

    monkeypatch.setattr("training.fit.evaluate", scripted)
    config = FitConfig(
        max_epochs=10,
        patience=3,
        max_train_batches=2,
        batch_size=8,
        device="cpu",
        calibrate_intervals=False,  # it would rescale gap_scale after the restore
    )
    result = fit(urnn_config(), sets.train, sets.val, config, progress=False)
    assert [r.epoch for r in result.history] == [1, 2, 3, 4, 5]
    assert result.best_epoch == 2 and result.best_score == 1.0
    assert result.stop_reason == "patience"
    assert [r.improved for r in result.history] == [True, True, False, False, False]
    final = result.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in snapshots[1].items())
    assert not all(torch.equal(final[k], v) for k, v in snapshots[4].items())
    # the plateau schedule halved the lr after two stale epochs (plateau_patience = 1)
    assert result.history[0].lr == 1e-3 and result.history[-1].lr == 5e-4


def test_early_stopping_ignores_gains_below_min_delta(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat series' val loss creeps down by rounding noise (here 1e-8 an epoch): with the
    default min_delta the loop stops after patience, not at max_epochs; with min_delta 0 every
    creep counts, as before."""
    sets, _ = windows_of(seasonal_frame(300))

    def creeping(start: float) -> Any:
        scores = iter([start - 1e-8 * i for i in range(100)])

        def scripted(model: Forecaster, dataset: object, config: FitConfig, device: str) -> Any:
            score = next(scores)
            return {"loss": score, "mse": score, "mae": score}

        return scripted

    config = FitConfig(
        max_epochs=8,
        patience=3,
        max_train_batches=1,
        batch_size=8,
        device="cpu",
        calibrate_intervals=False,
    )
    assert config.min_delta == 1e-6
    monkeypatch.setattr("training.fit.evaluate", creeping(1e-4))
    stopped = fit(urnn_config(), sets.train, sets.val, config, progress=False)
    assert [r.improved for r in stopped.history] == [True, False, False, False]
    assert stopped.stop_reason == "patience" and stopped.best_epoch == 1
    monkeypatch.setattr("training.fit.evaluate", creeping(1e-4))
    every = fit(urnn_config(), sets.train, sets.val, replace(config, min_delta=0.0), progress=False)
    assert len(every.history) == 8 and every.stop_reason == "max_epochs"
    with pytest.raises(FitConfigError, match="min_delta must be >= 0, got -1"):
        FitConfig(min_delta=-1.0)


def test_hooks_see_every_epoch_and_can_cancel() -> None:
    sets, _ = windows_of(seasonal_frame(300))
    records: list[EpochRecord] = []
    fit(urnn_config(), sets.train, sets.val, FAST, on_epoch_end=records.append, progress=False)
    assert [r.epoch for r in records] == [1, 2]

    calls = iter(range(100))
    result = fit(
        urnn_config(),
        sets.train,
        sets.val,
        FitConfig(max_epochs=5, max_train_batches=3, batch_size=16, device="cpu"),
        should_stop=lambda: next(calls) >= 4,  # lets epoch 1 (3 batches) finish, stops in 2
        progress=False,
    )
    assert result.stop_reason == "cancelled"
    assert len(result.history) == 1 and result.best_epoch == 1


def test_decoder_search_keeps_the_decoder_with_the_better_val_score(tmp_path: Path) -> None:
    """Each candidate equals its own plain fit; the lower best val score wins; epoch records
    name their candidate; the checkpoint keeps both scores."""
    sets, _ = windows_of(seasonal_frame(300))
    plain = {
        d: fit(urnn_config(decoder=d), sets.train, sets.val, FAST, progress=False)
        for d in ("direct", "pmf")
    }
    records: list[EpochRecord] = []
    searched = fit(
        urnn_config(),
        sets.train,
        sets.val,
        replace(FAST, decoder_search=True),
        on_epoch_end=records.append,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    scores = {d: r.best_score for d, r in plain.items()}
    assert searched.decoder_scores == scores
    winner = min(scores, key=scores.__getitem__)
    assert searched.model.config.decoder == winner
    assert searched.best_score == min(scores.values())
    expected = plain[winner].model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in searched.model.state_dict().items())
    assert [(r.candidate, r.epoch) for r in records] == [
        ("direct", 1),
        ("direct", 2),
        ("pmf", 1),
        ("pmf", 2),
    ]
    model, meta = load_checkpoint(tmp_path)
    assert meta["decoder_scores"] == scores and model.config.decoder == winner


def test_decoder_search_leaves_other_kinds_alone() -> None:
    sets, _ = windows_of(seasonal_frame(300))
    config = ForecasterConfig(kind="linear", lookback=L, horizon=H)
    searched = fit(config, sets.train, sets.val, replace(FAST, decoder_search=True), progress=False)
    assert searched.decoder_scores == {} and len(searched.history) == 2


def test_same_seed_same_model() -> None:
    sets, _ = windows_of(seasonal_frame(300))
    config = urnn_config(dropout=0.2)
    first = fit(config, sets.train, sets.val, FAST, progress=False).model.state_dict()
    second = fit(config, sets.train, sets.val, FAST, progress=False).model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = fit(config, sets.train, sets.val, replace(FAST, seed=1), progress=False)
    assert not all(torch.equal(first[k], v) for k, v in other.model.state_dict().items())


def test_checkpoint_holds_the_recipe_and_loads_without_pickle(tmp_path: Path) -> None:
    sets, scaler = windows_of(seasonal_frame(300))
    result = fit(
        urnn_config(),
        sets.train,
        sets.val,
        FAST,
        checkpoint_dir=tmp_path,
        checkpoint_extra={"scaler": scaler.to_dict()},
        progress=False,
    )
    model, meta = load_checkpoint(tmp_path)
    assert meta["best_epoch"] == result.best_epoch and meta["fit"]["max_epochs"] == 2
    assert StandardScaler.from_dict(meta["scaler"]) == scaler
    assert torch.equal(predict(model, sets.test), predict(result.model, sets.test))


def test_changing_test_values_changes_neither_scaler_nor_model() -> None:
    frame = seasonal_frame(300)
    changed = frame.copy()
    test_start = plan_split(300, "h", SplitConfig(lookback=L)).test.start
    changed.iloc[test_start:] = changed.iloc[test_start:] * 10.0 + 50.0
    (sets_a, scaler_a), (sets_b, scaler_b) = windows_of(frame), windows_of(changed)
    assert scaler_a == scaler_b
    model_a = fit(urnn_config(), sets_a.train, sets_a.val, FAST, progress=False).model
    model_b = fit(urnn_config(), sets_b.train, sets_b.val, FAST, progress=False).model
    state_b = model_b.state_dict()
    assert all(torch.equal(v, state_b[k]) for k, v in model_a.state_dict().items())
    assert not torch.equal(sets_a.test.values, sets_b.test.values)


def test_baselines_are_calibrated_not_trained() -> None:
    sets, _ = windows_of(seasonal_frame(300))
    config = ForecasterConfig(kind="seasonal_naive", lookback=L, horizon=H, season_length=24)
    result = fit(config, sets.train, sets.val, FAST, progress=False)
    assert result.stop_reason == "parameter_free" and result.n_params == 0
    assert isinstance(result.model, NaiveForecaster)
    offsets = result.model.offsets
    assert torch.all(offsets[:, 0] < 0) and torch.all(offsets[:, 2] > 0)


def test_invalid_fit_options_name_the_allowed_values() -> None:
    with pytest.raises(FitConfigError, match="schedule must be one of 'plateau', 'cosine', 'none'"):
        FitConfig(schedule="step")  # type: ignore[arg-type]
    with pytest.raises(FitConfigError, match="clip_norm must be None or > 0"):
        FitConfig(clip_norm=0.0)


def test_fit_settings_read_back_from_a_runs_params() -> None:
    """The pipeline logs every FitConfig field as `fit.<field>` = str(value); read back, they
    are the same config (None, booleans, literals, floats written as ints)."""
    recipe = FitConfig(lr=3e-4, batch_size=128, clip_norm=None, mse_weight=1, schedule="cosine",
                       max_train_batches=7, decoder_search=True, seed=11)  # fmt: skip
    params = {f"fit.{k}": str(v) for k, v in asdict(recipe).items()}
    params |= {"model.kind": "urnn", "fit.retired_field": "3"}  # other sections, a gone field
    assert FitConfig(**fit_fields_from_params(params)) == recipe
    assert fit_fields_from_params({"fit.lr": "0.01"}) == {"lr": 0.01}  # a run before a field
    with pytest.raises(ValueError, match=r"fit.batch_size='1.5' does not read as"):
        fit_fields_from_params({"fit.batch_size": "1.5"})


def test_intervals_are_calibrated_on_the_val_windows() -> None:
    """After fit, each quantile's empirical level over the val windows is close to nominal
    (the calibration's own data, so this checks the wiring; the conformal arithmetic is tested
    in tests/models); without calibration the gaps stay at 1."""
    sets, _ = windows_of(seasonal_frame(1200))
    config = ForecasterConfig(kind="seasonal_naive", lookback=L, horizon=H, season_length=24)
    raw = fit(
        config, sets.train, sets.val, replace(FAST, calibrate_intervals=False), progress=False
    )
    assert torch.equal(raw.model.gap_scale, torch.ones(H, 2))
    result = fit(config, sets.train, sets.val, FAST, progress=False)
    assert not torch.equal(result.model.gap_scale, torch.ones(H, 2))
    pred = predict(result.model, sets.val)
    target = sets.val.batch(torch.arange(len(sets.val))).target
    levels = (target.unsqueeze(-1) <= pred).double().mean(dim=(0, 1))
    assert len(sets.val) >= 30
    for level, nominal in zip(levels.tolist(), config.quantiles, strict=True):
        assert abs(level - nominal) < 0.1, (level, nominal)


def test_the_val_forecasts_and_targets_read_in_batches_are_those_of_all_windows_at_once() -> None:
    """`predict` and `window_targets` (what the interval calibration reads of every val
    window) write batch after batch, the last one short, into one tensor: the forecasts and
    targets of all windows in one batch, in order, bit for bit."""
    sets, _ = windows_of(seasonal_frame(1200))
    val = sets.val
    config = ForecasterConfig(kind="seasonal_naive", lookback=L, horizon=H, season_length=24)
    model = fit(config, sets.train, val, FAST, progress=False).model
    assert len(val) % 7 != 0
    everything = torch.arange(len(val))
    torch.testing.assert_close(
        predict(model, val, batch_size=7),
        predict(model, val, batch_size=len(val)),
        rtol=0,
        atol=0,
    )
    assert torch.equal(window_targets(val, 7), val.targets(everything))
    assert predict(model, val, batch_size=7).dtype == torch.float32


def test_interval_calibration_holds_the_val_forecasts_once() -> None:
    """The interval calibration reads every val window (1.6 M on a 16 M-row log, where it set
    `urnn train`'s peak): its memory is their forecasts and targets, held once (float32, 16
    bytes a window and step at 3 quantiles), plus one step's work; the batches joined at the
    end held the forecasts twice, the targets came with an int64 row index of all windows,
    and the fit with float64 copies of everything: 8.1 times them in all, 1.7 now."""
    sets, _ = windows_of(seasonal_frame(40_000))
    val = sets.val
    config = ForecasterConfig(kind="seasonal_naive", lookback=L, horizon=H, season_length=24)
    model = fit(config, sets.train, val, replace(FAST, calibrate_intervals=False)).model
    held = len(val) * H * (len(config.quantiles) + 1) * 4  # the forecasts and targets, float32
    peak = cpu_peak_bytes(lambda: calibrate_intervals(model, val, batch_size=64, device="cpu"))
    assert not torch.equal(model.gap_scale, torch.ones_like(model.gap_scale))
    assert len(val) > 3_000
    assert peak < 2 * held, f"{peak / held:.2f} times the forecasts and targets"


def test_an_interrupted_fit_leaves_its_best_weights_so_far(tmp_path: Path) -> None:
    """Checkpoints were written only once a fit ended: Ctrl-C after an hour of epochs left
    nothing. Now every epoch that improves writes them ("complete": false); a decoder search
    writes the candidate it is fitting into that candidate's own folder."""
    sets, scaler = windows_of(seasonal_frame(300))
    records: list[EpochRecord] = []

    def stop_after_two(record: EpochRecord) -> None:
        records.append(record)
        if len(records) == 2:
            raise KeyboardInterrupt

    config = replace(FAST, max_epochs=50, patience=50)
    with pytest.raises(KeyboardInterrupt):
        fit(urnn_config(), sets.train, sets.val, config, on_epoch_end=stop_after_two,
            checkpoint_dir=tmp_path / "one", checkpoint_extra={"scaler": scaler.to_dict()},
            progress=False)  # fmt: skip
    model, meta = load_checkpoint(tmp_path / "one")
    best = min(records, key=lambda r: r.val_loss)
    assert meta["complete"] is False and meta["best_epoch"] == best.epoch
    assert StandardScaler.from_dict(meta["scaler"]) == scaler and meta["fit"]["max_epochs"] == 50
    # the weights are that epoch's: scored again on val they give its val loss
    assert evaluate(model, sets.val, config, "cpu")["loss"] == pytest.approx(best.val_loss)

    records.clear()
    searched = replace(config, decoder_search=True)
    with pytest.raises(KeyboardInterrupt):
        fit(urnn_config(), sets.train, sets.val, searched, on_epoch_end=stop_after_two,
            checkpoint_dir=tmp_path / "search", progress=False)  # fmt: skip
    assert [p.name for p in (tmp_path / "search").iterdir()] == ["direct"]
    assert load_checkpoint(tmp_path / "search" / "direct")[0].config.decoder == "direct"
    # a fit that ends writes the fitted model over the folder, "complete"
    fit(urnn_config(), sets.train, sets.val, FAST, checkpoint_dir=tmp_path / "one", progress=False)
    assert load_checkpoint(tmp_path / "one")[1]["complete"] is True


def test_a_checkpoint_save_cut_short_keeps_the_previous_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The save wrote config.json, then weights.pt, over the previous best: a Ctrl-C in
    between left a config naming the new epoch over a truncated weights file, and the only
    good weights were gone (a review found it)."""
    sets, _ = windows_of(seasonal_frame(300))
    writes: list[Path] = []
    real_save = torch.save

    def cut_short(state: Any, path: Any) -> None:
        writes.append(Path(path))
        if len(writes) == 2:  # the second improving epoch's save: half a file, then Ctrl-C
            Path(path).write_bytes(b"PK\x03\x04 truncated")
            raise KeyboardInterrupt
        real_save(state, path)

    monkeypatch.setattr(torch, "save", cut_short)
    config = replace(FAST, max_epochs=50, patience=50)
    with pytest.raises(KeyboardInterrupt):
        fit(urnn_config(), sets.train, sets.val, config, checkpoint_dir=tmp_path / "ck",
            progress=False)  # fmt: skip
    monkeypatch.undo()
    model, meta = load_checkpoint(tmp_path / "ck")  # the first save, whole
    assert meta["best_epoch"] == 1 and meta["complete"] is False
    assert torch.isfinite(predict(model, sets.test)).all()
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "weights.pt"]


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"lr": 1e300}, "lr must be a finite number of magnitude at most 3.403e+38"),
        ({"weight_decay": -1e39}, "weight_decay must be a finite number of magnitude at most"),
        ({"lr": 10**400}, "got an integer of 401 digits"),
        ({"lr": 1e-60}, "lr must lie from 1.175e-38 to 3.403e+38 (float32, what the model"),
        (
            {"lr": 1e20, "stream_lr_scale": 1e20},
            "lr * stream_lr_scale (the streaming kind's step) must lie from 1.175e-38",
        ),
    ],
)
def test_learning_rates_float32_cannot_hold_are_refused(
    fields: dict[str, float], said: str
) -> None:
    """lr=1e300 was queued and failed in Adam's step; 1e-60 rounds to 0 and trains nothing."""
    with pytest.raises(FitConfigError) as refused:
        FitConfig(**fields)  # type: ignore[arg-type]
    assert said in str(refused.value)


def test_a_baselines_offsets_leave_out_the_flat_look_backs_they_never_widen() -> None:
    """Intermittent demand: 30 quiet hours, then 10 of sales. A window after 24 zero hours is
    forecast as its level; its residuals divided by the 1e-5 std clamp (1e5 and more) set the
    0.9 offset of every other window, so that each q0.9 was its level plus 1e5 stds."""
    cycle = [0.0] * 30 + [float(k) for k in range(1, 11)]
    index = pd.date_range("2024-01-01", periods=40 * 12, freq="h")
    frame = pd.DataFrame({"sales": cycle * 12}, index=index)
    dataset = WindowDataset.from_frames({"s": frame}, lookback=L, horizon=H)
    config = ForecasterConfig(kind="repeat_last", lookback=L, horizon=H)
    model = build_forecaster(config)
    assert isinstance(model, NaiveForecaster)
    calibrate_baseline(model, dataset, batch_size=64, device="cpu")
    assert 0.0 < float(model.offsets[:, -1].max()) < 10.0


def _gappy_prepared(tmp_path: Path, drop: slice) -> Prepared:
    """`prepare_training` on an hourly CSV whose rows `drop` are missing: the loader fills them
    (interpolation, the default fill) and flags them in `LoadedData.filled`."""
    frame = seasonal_frame(1200)
    path = tmp_path / "gappy.csv"
    frame.drop(frame.index[drop]).to_csv(path)
    config = TrainConfig(
        data=str(path),
        load=LoadConfig(target="y", covariates=("x",)),
        model=urnn_config(),
        fit=FAST,
    )
    return prepare_training(config)


def _filled_targets(prepared: Prepared, windows: WindowDataset) -> Tensor:
    """(N, H) bool: which target points of `windows` the loader filled in, looked up by
    timestamp in `LoadedData.filled` (not through the windows' own bookkeeping)."""
    table = windows.window_table()
    step = pd.Timedelta(hours=1)
    flags = prepared.data.filled[table["source"].iloc[0]]["y"]
    stamps = [
        [origin + h * step for h in range(1, windows.horizon + 1)] for origin in table["origin"]
    ]
    return torch.from_numpy(np.stack([flags.reindex(row).to_numpy(dtype=bool) for row in stamps]))


def test_val_scores_and_interval_calibration_leave_out_filled_targets(tmp_path: Path) -> None:
    """A gap the loader filled (20 missing hours, interpolated) in the val span: early
    stopping's val scores and the interval calibration read only the observed targets, as the
    backtest scores do. Counted in, they scored the model (and sized its intervals) on a
    straight line the loader drew, not on data."""
    prepared = _gappy_prepared(tmp_path, slice(880, 900))  # val: rows 840..960 of 1200
    val = prepared.sets.val
    filled = _filled_targets(prepared, val)
    assert 0 < int(filled.sum()) < filled.numel()
    torch.manual_seed(0)
    model = build_forecaster(prepared.model_config)
    c = model.config
    pred = predict(model, val)
    target = window_targets(val, 64)
    observed = ~filled
    error = (pred[..., c.median_index] - target)[observed].double()
    y = target.unsqueeze(-1)
    q = torch.tensor(c.quantiles)
    pinball = torch.maximum(q * (y - pred), (q - 1.0) * (y - pred)).mean(-1)[observed].double()
    expected = {
        "mse": float(error.square().mean()),
        "mae": float(error.abs().mean()),
        "loss": float(pinball.mean() + FAST.mse_weight * error.square().mean()),
    }
    scores = evaluate(model, val, FAST, "cpu")
    assert scores == pytest.approx(expected, rel=1e-5)
    everything = float((pred[..., c.median_index] - target).abs().double().mean())
    assert scores["mae"] != pytest.approx(everything, rel=1e-3)  # the gap moves the score

    calibrate_intervals(model, val, batch_size=64, device="cpu")
    reference = build_forecaster(prepared.model_config)
    reference.calibrate_gaps(pred, target.masked_fill(filled, math.nan))
    assert torch.equal(model.gap_scale, reference.gap_scale)
    reference.calibrate_gaps(pred, target)
    assert not torch.equal(model.gap_scale, reference.gap_scale)


def test_a_history_without_filled_values_is_scored_as_before(tmp_path: Path) -> None:
    """Nothing filled (the ETT benchmark's files): the windows carry no filled flags, and the
    val scores are the mean of every window's, as they always were."""
    prepared = _gappy_prepared(tmp_path, slice(0, 0))
    val = prepared.sets.val
    assert not bool(_filled_targets(prepared, val).any())
    torch.manual_seed(0)
    model = build_forecaster(prepared.model_config)
    c = model.config
    quantiles = torch.tensor(c.quantiles)
    totals = {"loss": 0.0, "mse": 0.0, "mae": 0.0}
    for indices in index_batches(torch.arange(len(val)), FAST.eval_batch_size):
        batch = val.batch(indices)
        with torch.inference_mode():
            pred = model(*batch.model_inputs(model))
        error = pred[..., c.median_index] - batch.target
        loss = pinball_loss(pred, batch.target, quantiles)
        loss = loss + FAST.mse_weight * error.square().mean()
        totals["loss"] += float(loss) * len(indices)
        totals["mse"] += float(error.square().mean()) * len(indices)
        totals["mae"] += float(error.abs().mean()) * len(indices)
    assert evaluate(model, val, FAST, "cpu") == {k: v / len(val) for k, v in totals.items()}


def _val_gap_config(tmp_path: Path, drop: slice) -> TrainConfig:
    frame = seasonal_frame(1200)  # val: rows 840..960
    path = tmp_path / "val-gap.csv"
    frame.drop(frame.index[drop]).to_csv(path)
    return TrainConfig(
        data=str(path),
        load=LoadConfig(target="y", covariates=("x",), max_gap=130),  # 10 % of rows filled
        model=urnn_config(),
        fit=FAST,
    )


def test_a_validation_span_the_loader_filled_in_whole_is_refused(tmp_path: Path) -> None:
    """A gap the loader filled over the whole val span (under max_filled_fraction overall):
    every val target is left out of the scores, which came out NaN at every epoch; early
    stopping never improved and the last epoch's weights were kept without a word. Refused
    before the fit, naming the span and the ways out."""
    config = _val_gap_config(tmp_path, slice(840, 960))
    with pytest.raises(UnobservedValidationError) as caught:
        prepare_training(config)
    said = str(caught.value)
    start = seasonal_frame(1200).index[840]
    stop = seasonal_frame(1200).index[959]
    assert f"validation span {start} to {stop} (120 rows)" in said, said
    assert "'y'" in said and "filled in" in said
    for way_out in ("--val-fraction", "--train-fraction", "--max-gap", "--on-long-gap split"):
        assert way_out in said, said
    # one observed target value in the span is enough to score on
    assert len(prepare_training(_val_gap_config(tmp_path, slice(840, 959))).sets.val) > 0


def test_the_streaming_kinds_check_reads_its_own_val_origins(tmp_path: Path) -> None:
    """urnn-stream scores its own val origins (training.stream_fit), not the windows: the
    check reads those. A val span filled in whole is refused naming the span, the share
    filled, and only ways out the streaming kind takes: the windowed kinds' advice, a --max-gap
    shorter than the gap with --on-long-gap split, is refused for it (a cut series)."""
    stream = urnn_config(kind="urnn-stream", segment_length=8)
    fit = replace(FAST, stream_crop_length=160, stream_batch_crops=2, stream_batches_per_epoch=2)
    config = replace(_val_gap_config(tmp_path, slice(840, 960)), model=stream, fit=fit)
    with pytest.raises(UnobservedStreamValidationError) as caught:
        prepare_training(config)
    said = str(caught.value)
    start, stop = seasonal_frame(1200).index[840], seasonal_frame(1200).index[959]
    assert f"validation span {start} to {stop} (120 rows)" in said, said
    assert "'urnn-stream'" in said and "'y'" in said and "100%" in said, said
    for way_out in ("--val-fraction", "--train-fraction", "windowed kind", "refuses a cut"):
        assert way_out in said, said
    assert isinstance(caught.value, UnobservedValidationError)  # exit 2 in the CLI
    cut = replace(config, load=replace(config.load, max_gap=24, on_long_gap="split"))
    with pytest.raises(CutSeriesError):  # the windowed kinds' way out, not the stream's
        prepare_training(cut)
    # one observed target value in the span is enough, as for the windows
    kept = replace(_val_gap_config(tmp_path, slice(840, 959)), model=stream, fit=fit)
    assert prepare_training(kept).model_config.kind == "urnn-stream"
