"""Rolling-origin backtests: where the origins fall, refit without look-ahead, units, plots, and
a tiny end-to-end fit in which the uRNN beats the last-value forecast."""

from __future__ import annotations

import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.forecaster import ForecasterConfig, build_forecaster
from tests.training.synthetic import loaded, seasonal_frame
from training.backtest import (
    BacktestConfig,
    BacktestConfigError,
    BacktestResult,
    _refit_split,
    backtest,
    check_backtest_room,
    plotted_series,
    refit_fit_config,
    short_of_room,
    write_backtest_tables,
)
from training.data import LoadedData
from training.fit import FitConfig, fit
from training.metrics import filled_note, zero_width_note
from training.split import SplitConfig, StandardScaler, plan_split, split_data
from training.validation import UnobservedValidationError
from training.windows import make_windows, window_config_for

L, H = 24, 6
SPLIT = SplitConfig(lookback=L)
QUICK = FitConfig(max_epochs=2, max_train_batches=4, batch_size=32, device="cpu")


def linear(kind: str = "linear") -> ForecasterConfig:
    season = L if kind == "seasonal_naive" else None  # the daily season of the hourly data
    return ForecasterConfig(kind=kind, lookback=L, horizon=H, season_length=season)  # type: ignore[arg-type]


def overall(result: BacktestResult, metric: str) -> float:
    return float(result.tables.overall[metric].to_numpy()[0])


def test_origins_roll_back_from_the_end_of_the_test_span() -> None:
    data = loaded({"a": seasonal_frame(400), "b": seasonal_frame(300, seed=1)})
    result = backtest(data, SPLIT, linear(), QUICK, BacktestConfig(n_windows=3, step=5))
    assert len(result.fits) == 1
    for sid, n in (("a", 400), ("b", 300)):
        plan = plan_split(n, "h", SPLIT)
        rows = result.forecasts[result.forecasts["series"] == sid]
        index = data.series[sid].index
        assert len(rows) == 3 * H
        assert rows["timestamp"].max() == index[plan.test.stop - 1]
        assert rows["timestamp"].min() >= index[plan.test.start]
        origins = sorted(rows["origin"].unique())
        assert [index.get_loc(o) for o in origins] == [
            plan.test.stop - H - 1 - 5 * k for k in (2, 1, 0)
        ]
        first = rows[rows["step"] == 1]
        assert (first["timestamp"].to_numpy() > first["origin"].to_numpy()).all()
    assert set(result.tables.by_series.index) == {"a", "b"}
    assert list(result.tables.by_step.index) == list(range(1, H + 1))


def test_all_origins_with_step_one_is_the_ett_window_set() -> None:
    data = loaded({"s": seasonal_frame(300)})
    result = backtest(data, SPLIT, linear(kind="repeat_last"), QUICK, BacktestConfig())
    n_test = len(plan_split(300, "h", SPLIT).test)
    assert result.forecasts["origin"].nunique() == n_test - H + 1
    assert result.fits[0].stop_reason == "parameter_free"  # calibrated and scored once


def test_scaled_and_original_units_differ_by_the_train_scaler() -> None:
    data = loaded({"s": seasonal_frame(300)})
    model = linear("seasonal_naive")
    original = backtest(data, SPLIT, model, QUICK, BacktestConfig(n_windows=4, step=3))
    scaled = backtest(
        data, SPLIT, model, QUICK, BacktestConfig(n_windows=4, step=3, scale="scaled")
    )
    stats = StandardScaler.fit(split_data(data, SPLIT)).stats["s"]["y"]
    for column in ("actual", "point", "q0.1", "q0.9"):
        np.testing.assert_allclose(
            scaled.forecasts[column] * stats.scale + stats.mean,
            original.forecasts[column],
            rtol=1e-5,
        )
    # MASE is unit-free; MSE is not
    mase_o, mase_s = (overall(r, "mase") for r in (original, scaled))
    mse_o, mse_s = (overall(r, "mse") for r in (original, scaled))
    assert mase_o == pytest.approx(mase_s, rel=1e-4)
    assert mse_o == pytest.approx(mse_s * stats.scale**2, rel=1e-4)


def test_refit_never_sees_past_its_origin() -> None:
    """Changing every row from the first origin's first target on changes that origin's actuals
    but not its forecast (its model was fitted on the rows before); the second origin's model
    sees some changed rows (in its val part), so its forecast moves."""
    frame = seasonal_frame(300)
    config = BacktestConfig(n_windows=2, step=6, refit=True)
    first = backtest(loaded({"s": frame}), SPLIT, linear(), QUICK, config)
    assert len(first.fits) == 2
    cut = frame.index.get_loc(first.forecasts["timestamp"].iloc[0])
    changed = frame.copy()
    changed.iloc[cut:] = changed.iloc[cut:] + 5.0
    second = backtest(loaded({"s": changed}), SPLIT, linear(), QUICK, config)
    a, b = first.forecasts, second.forecasts
    origin_0 = (a["origin"] == a["origin"].min()).to_numpy()
    forecast_columns = ["point", "q0.1", "q0.5", "q0.9"]
    pd.testing.assert_frame_equal(
        a.loc[origin_0, forecast_columns], b.loc[origin_0, forecast_columns]
    )
    np.testing.assert_allclose(b.loc[origin_0, "actual"], a.loc[origin_0, "actual"] + 5.0)
    assert not np.allclose(a.loc[~origin_0, "point"], b.loc[~origin_0, "point"])


def test_refits_scale_with_the_scope_they_are_given() -> None:
    """`urnn backtest --refit` of a registered model refitted with per-series scalers whatever
    the model was trained with: `urnn train` fits one global scaler, so a fleet's covariates
    (and targets) reached each refit scaled otherwise than the model's own. Scored in scaled
    units, a global scaler puts the low series below the high one; per series, each is
    centred on its own training mean."""
    data = loaded({"low": seasonal_frame(300), "high": seasonal_frame(300, seed=1, level=100.0)})
    config = BacktestConfig(n_windows=2, step=6, refit=True, scale="scaled")
    pooled = backtest(data, SPLIT, linear("repeat_last"), QUICK, config, refit_scope="global")
    own = backtest(data, SPLIT, linear("repeat_last"), QUICK, config)

    def actuals(result: BacktestResult, sid: str) -> np.ndarray:
        return result.forecasts.loc[result.forecasts["series"] == sid, "actual"].to_numpy()

    assert actuals(pooled, "low").max() < 0.0 < actuals(pooled, "high").min()
    for sid in ("low", "high"):
        assert abs(actuals(own, sid).mean()) < 2.0


def test_plots_are_written(tmp_path: Path) -> None:
    data = loaded({"s": seasonal_frame(300)})
    result = backtest(
        data, SPLIT, linear(), QUICK, BacktestConfig(n_windows=5, step=2), plot_dir=tmp_path
    )
    assert set(result.plots) == {"forecasts", "error_by_horizon"}
    for path in result.plots.values():
        assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"


def test_plots_draw_dollar_signs_in_names_as_written(tmp_path: Path) -> None:
    """matplotlib reads the text between two '$' as TeX math: a file `plant$.csv` with the
    target 'cost_$' stopped `urnn train` after its fit with a mathtext ParseSyntaxException
    (the run failed, nothing registered), and 'cost ($) per unit ($)' was drawn mangled."""
    from matplotlib import cbook

    from training.backtest import as_written, save_plots

    data = loaded({"plant$": seasonal_frame(300)})
    result = backtest(data, SPLIT, linear(), QUICK, BacktestConfig(n_windows=3, step=2))
    for target in ("cost_$", "cost ($) per unit ($)"):
        plots = save_plots(result, (0.1, 0.5, 0.9), tmp_path / "p", target=target, freq="h")
        assert plots["forecasts"].read_bytes()[:4] == b"\x89PNG"
    assert cbook.is_math_text("cost ($) per unit ($)")  # what matplotlib drew as TeX
    assert not cbook.is_math_text(as_written("cost ($) per unit ($)"))  # the words as written


def test_a_fleet_plot_shows_series_from_the_worst_to_the_best(tmp_path: Path) -> None:
    ids = [f"unit-{i:03d}" for i in range(100)]
    mase = np.linspace(0.5, 3.0, len(ids))
    mase[-1] = np.nan  # a constant training span: no MASE, not ranked
    table = pd.DataFrame({"mae": 1.0, "mase": mase}, index=pd.Index(ids, name="series"))
    picked = plotted_series(table, panels=4)
    assert [sid for sid, _ in picked] == ["unit-098", "unit-066", "unit-033", "unit-000"]
    assert picked[0][1] == "MASE 2.97, 1 of 99 worst"
    assert [sid for sid, _ in plotted_series(table.head(2), panels=4)] == ["unit-001", "unit-000"]
    no_mase = table.assign(mase=np.nan)
    assert [sid for sid, _ in plotted_series(no_mase, panels=2)] == ["unit-000", "unit-001"]

    frames = {sid: seasonal_frame(300, seed=k) for k, sid in enumerate(["a", "b", "c"])}
    result = backtest(
        loaded(frames),
        SPLIT,
        linear(),
        QUICK,
        BacktestConfig(n_windows=3, step=2),
        plot_dir=tmp_path,
    )
    assert result.plots["forecasts"].read_bytes()[:4] == b"\x89PNG"


def test_invalid_backtests_are_refused() -> None:
    with pytest.raises(BacktestConfigError, match="give n_windows explicitly"):
        BacktestConfig(refit=True)
    with pytest.raises(BacktestConfigError, match="scale must be one of 'original', 'scaled'"):
        BacktestConfig(scale="z")  # type: ignore[arg-type]
    data = loaded({"s": seasonal_frame(300)})
    with pytest.raises(BacktestConfigError, match="lookback"):
        backtest(data, SplitConfig(lookback=48), linear(), QUICK, BacktestConfig())


def test_a_given_model_is_scored_without_refitting() -> None:
    data = loaded({"s": seasonal_frame(300)})
    fitted = backtest(data, SPLIT, linear(), QUICK, BacktestConfig(n_windows=3, step=2))
    scaler = StandardScaler.fit(split_data(data, SPLIT))
    model = fitted.fits[0].model
    again = backtest(
        data,
        SPLIT,
        linear(),
        QUICK,
        BacktestConfig(n_windows=3, step=2),
        model=model,
        scaler=scaler,
    )
    assert again.fits == []
    pd.testing.assert_frame_equal(again.forecasts, fitted.forecasts)
    with pytest.raises(BacktestConfigError, match="the scaler it was trained with"):
        backtest(data, SPLIT, linear(), QUICK, BacktestConfig(), model=model)


def test_urnn_beats_repeat_last_on_a_seasonal_series() -> None:
    """End to end: load -> split -> scale -> windows -> fit -> backtest on a daily-seasonal
    hourly series, where the last value is a poor forecast and one season of look-back,
    read as segments, tells the uRNN the phase."""
    data = loaded({"s": seasonal_frame(700, noise=0.3)})
    split = SplitConfig(lookback=48)
    urnn = ForecasterConfig(
        kind="urnn",
        lookback=48,
        horizon=12,
        segment_length=12,
        hidden_size=16,
        n_past_covariates=1,
        recurrence="python",
    )
    naive = ForecasterConfig(kind="repeat_last", lookback=48, horizon=12)
    fit_config = FitConfig(max_epochs=8, batch_size=32, lr=3e-3, mse_weight=1.0, device="cpu")
    windows = BacktestConfig(step=4, scale="scaled", train_stride=2)
    ours = overall(backtest(data, split, urnn, fit_config, windows), "mse")
    base = overall(backtest(data, split, naive, fit_config, windows), "mse")
    assert ours < 0.1 * base, (ours, base)


def test_refits_keep_a_capped_train_span_as_a_sliding_window() -> None:
    """With the "tail" split's max_train_rows, every refit trains on that many rows just before
    its val part; without a cap the train part grows with the origin."""
    frame = seasonal_frame(400)
    model = linear()
    capped = split_data(
        loaded({"s": frame}),
        SplitConfig(lookback=L, method="tail", val_rows=40, test_rows=60, max_train_rows=120),
    )["s"].plan
    uncapped = plan_split(
        400, "h", SplitConfig(lookback=L, method="tail", val_rows=40, test_rows=60)
    )
    for origin in (300, 330, 354):
        sliding = _refit_split(frame, capped, origin, model)
        assert len(sliding.train) == 120
        assert sliding.train.index[-1] == frame.index[origin - 40 - 1]
        assert sliding.val.index[-1] == frame.index[origin - 1]
        expanding = _refit_split(frame, uncapped, origin, model)
        assert len(expanding.train) == origin - 40


def test_the_series_split_scores_only_the_units_the_model_never_saw() -> None:
    frames = {f"u{k}": seasonal_frame(150 + 10 * k, seed=k) for k in range(10)}
    data = loaded(frames)
    split = SplitConfig(lookback=L, method="series")
    result = backtest(data, split, linear("repeat_last"), QUICK, BacktestConfig(season_length=1))
    assert set(result.tables.by_series.index) == {"u8", "u9"}  # the last fifth, file order
    for sid in ("u8", "u9"):
        rows = result.forecasts[result.forecasts["series"] == sid]
        index = data.series[sid].index
        # every origin after the unit's first look-back: the whole unit is test
        assert rows["origin"].min() == index[L - 1]
        assert rows["timestamp"].max() == index[-1]
        assert len(rows) == (len(index) - L - H + 1) * H
        # MASE's scale: the unit's own first L rows, the history before its first forecast
        y = frames[sid]["y"].to_numpy()[:L]
        assert rows["mase_scale"].iloc[0] == pytest.approx(np.abs(np.diff(y)).mean())
    with pytest.raises(BacktestConfigError, match=r"'series' split .* need a split by time"):
        backtest(data, split, linear(), QUICK, BacktestConfig(refit=True, n_windows=1))


def test_the_unseen_split_scores_every_series_of_a_new_file_with_a_given_model() -> None:
    frames = {f"u{k}": seasonal_frame(150 + 10 * k, seed=k) for k in range(10)}
    trained = backtest(
        loaded(frames),
        SplitConfig(lookback=L, method="series"),
        linear(),
        QUICK,
        BacktestConfig(season_length=1),
    )
    model = trained.fits[0].model
    scaler = StandardScaler.fit(
        split_data(loaded(frames), SplitConfig(lookback=L, method="series")), scope="global"
    )
    new_units = loaded({f"n{k}": seasonal_frame(100, seed=50 + k) for k in range(3)})
    unseen = SplitConfig(lookback=L, method="unseen")
    result = backtest(
        new_units,
        unseen,
        linear(),
        QUICK,
        BacktestConfig(season_length=1),
        model=model,
        scaler=scaler,
    )
    assert set(result.tables.by_series.index) == {"n0", "n1", "n2"}
    assert len(result.forecasts) == 3 * (100 - L - H + 1) * H
    with pytest.raises(BacktestConfigError, match="nothing is left to train on"):
        backtest(new_units, unseen, linear(), QUICK, BacktestConfig(season_length=1))


def test_a_series_without_room_for_the_windows_is_named_or_left_out() -> None:
    """Two series, one too short in its test span for 30 windows: the backtest names it and
    the option before fitting anything, or leaves it out with drop_short (on_short='drop')."""
    data = loaded({"long": seasonal_frame(600), "short": seasonal_frame(300, seed=1)})
    room = short_of_room(split_data(data, SPLIT), 6, BacktestConfig(n_windows=30, step=3))
    assert list(room) == ["short"]
    with pytest.raises(BacktestConfigError) as refused:
        backtest(data, SPLIT, linear(), QUICK, BacktestConfig(n_windows=30, step=3))
    assert str(refused.value).startswith(
        f"backtest_windows (--backtest-windows): series 'short' has room in its test span for "
        f"{room['short']} of 30 windows of"
    )
    # the ways out read as alternatives (", a smaller step" lacked its "or")
    assert str(refused.value).endswith(
        f"ask for at most {room['short']} windows, or a smaller step (--backtest-step), or "
        "leave such series out with on_short='drop' (--on-short drop)"
    )
    dropping = BacktestConfig(n_windows=30, step=3, drop_short=True)
    kept = backtest(data, SPLIT, linear(), QUICK, dropping)
    assert set(kept.forecasts["series"]) == {"long"}
    assert kept.forecasts["origin"].nunique() == 30
    assert kept.dropped == [
        f"left out of the backtest: series 'short', room for {room['short']} of 30 windows of "
        f"{SPLIT.lookback} + 6 rows, 3 apart (on_short='drop')"
    ]


def test_a_count_of_one_window_is_said_in_the_singular() -> None:
    """ "room for 1 of 30 windows; ask for at most 1 windows" and "1 windows of 48 + 6 rows"
    read as slips: a count of one is said in the singular."""
    splits = split_data(loaded({"long": seasonal_frame(300)}), SPLIT)
    with pytest.raises(BacktestConfigError) as refused:
        check_backtest_room(splits, 6, BacktestConfig(n_windows=30, step=1000))
    assert "room in its test span for 1 of 30 windows of" in str(refused.value)
    assert "ask for at most 1 window, or a smaller step" in str(refused.value)
    test_rows = len(splits["long"].plan.test)
    with pytest.raises(BacktestConfigError) as refused:  # a horizon past the test span
        check_backtest_room(splits, test_rows + 1, BacktestConfig(n_windows=1))
    assert f"for 0 of 1 window of {SPLIT.lookback} + {test_rows + 1} rows, 1 apart" in str(
        refused.value
    )


def test_a_series_with_room_for_no_window_is_told_what_would_fit() -> None:
    """A horizon longer than the test span: the refusal advised "ask for at most 0 windows,
    or a smaller step", neither of which fits a window. It says what would: a horizon of at
    most the span's rows, or as many more test rows as the horizon lacks."""
    splits = split_data(loaded({"long": seasonal_frame(300)}), SPLIT)
    rows = len(splits["long"].plan.test)
    with pytest.raises(BacktestConfigError) as refused:
        check_backtest_room(splits, rows + 2, BacktestConfig(n_windows=1))
    message = str(refused.value)
    assert "at most 0" not in message and "smaller step" not in message
    assert message.endswith(
        f"for 0 of 1 window of {SPLIT.lookback} + {rows + 2} rows, 1 apart; its test span "
        f"holds {rows} rows, fewer than one horizon of {rows + 2}: a window fits with a "
        f"horizon of at most {rows} (--horizon, when training), or 2 more rows in the test "
        "span (a longer series, or a larger test share: a smaller --train-fraction or "
        "--val-fraction)"
    )


def gappy(tmp_path: Path, missing: slice, max_gap: int = 4) -> tuple[pd.DataFrame, LoadedData]:
    """The 300-row seasonal frame with `missing` rows of its target blanked, as written to a
    CSV and loaded: the loader fills them in (up to `max_gap` in a row) and flags them."""
    from training.data import LoadConfig, load_data

    frame = seasonal_frame(300)
    frame.loc[frame.index[missing], "y"] = np.nan
    path = tmp_path / "gappy.csv"
    frame.to_csv(path)
    return frame, load_data(path, LoadConfig(target="y", covariates=("x",), max_gap=max_gap))


def test_target_values_the_loader_filled_in_are_not_scored(tmp_path: Path) -> None:
    """A gap the loader interpolated is a straight line, not an observation: scoring it
    flattered every model (an audit's 200 filled values in Taylor's demand: MAE 26 % lower).
    The forecasts keep the rows, flagged; the scores and their `n` leave them out."""
    frame, data = gappy(tmp_path, slice(280, 284))  # in the test span
    (flags,) = data.filled.values()
    assert int(flags["y"].sum()) == 4
    result = backtest(data, SPLIT, linear("repeat_last"), QUICK, BacktestConfig())
    flagged = result.forecasts[result.forecasts["filled"]]
    assert set(flagged["timestamp"]) == set(frame.index[280:284])
    total = len(result.forecasts)
    assert int(result.tables.overall["n"].iloc[0]) == total - len(flagged)
    assert int(result.tables.by_step["n"].sum()) == total - len(flagged)
    observed = result.forecasts[~result.forecasts["filled"]]
    mae = float(np.abs(observed["point"] - observed["actual"]).mean())
    assert overall(result, "mae") == pytest.approx(mae)
    note = filled_note(result.forecasts)
    assert note.startswith(f"the scores leave out {len(flagged):,} of {total:,} forecast values")
    clean = backtest(loaded({"s": seasonal_frame(300)}), SPLIT, linear("repeat_last"), QUICK,
                     BacktestConfig())  # fmt: skip
    assert not clean.forecasts["filled"].any() and filled_note(clean.forecasts) == ""


def test_the_mase_scale_leaves_out_the_values_the_loader_filled_in(tmp_path: Path) -> None:
    """A gap interpolated in the training span is a straight line, smoother than the data: its
    seasonal differences would shrink the MASE scale and raise every MASE."""
    from training.metrics import seasonal_naive_scale

    _, data = gappy(tmp_path, slice(50, 54))  # in the training span
    (flags,) = data.filled.values()
    (split,) = split_data(data, replace(SPLIT, horizon=H)).values()
    train = split.train["y"].to_numpy()
    filled = flags["y"].reindex(split.train.index).to_numpy(dtype=bool)
    assert int(filled.sum()) == 4
    result = backtest(data, SPLIT, linear("repeat_last"), QUICK, BacktestConfig())
    (scale,) = result.forecasts["mase_scale"].unique()
    season = 24
    pairs = ~(filled[season:] | filled[:-season])
    assert int((~pairs).sum()) == 8  # each filled value ends two differences
    observed = np.mean(np.abs(train[season:] - train[:-season])[pairs])
    assert scale == pytest.approx(observed)
    assert scale != pytest.approx(seasonal_naive_scale(train, season), rel=1e-6)


REFITS = BacktestConfig(n_windows=2, step=6, refit=True)  # origins 288 and 294 of 300 rows


def test_a_refit_whose_val_span_the_loader_filled_in_whole_is_refused_before_any_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each refit early-stops on the 30 rows before its origin (the split's val length). A gap
    filled over all of refit 2's (rows 264..293) left its val loss NaN at every epoch: best
    epoch 0, the last epoch's weights kept and its intervals calibrated on nothing, without a
    word (urnn train refuses such a val span; the refits were never checked). Refused before
    the first refit trains, naming the refit, its origin and val span, the share filled and
    the ways out."""
    frame, data = gappy(tmp_path, slice(264, 294), max_gap=30)
    fits: list[object] = []
    monkeypatch.setattr("training.backtest.fit", lambda *a, **k: fits.append(a))
    with pytest.raises(UnobservedValidationError) as caught:
        backtest(data, SPLIT, linear(), QUICK, REFITS)
    assert fits == []  # refit 1's val holds 6 observed rows, but nothing was trained
    said = str(caught.value)
    assert said.startswith(
        f"refit 2 of 2 of the backtest (origin {frame.index[294]}): every target value of its "
        f"validation span {frame.index[264]} to {frame.index[293]} (30 rows) was filled in by "
        "the loader (fill 'interpolate' across a gap of up to max_gap=30 rows of 'y') "
        "(30 of 30 rows, 100%: the targets of its 25 val windows)"
    ), said
    assert "val loss NaN at every epoch" in said
    for way_out in ("--backtest-step", "--backtest-windows", "--val-fraction", "without --refit"):
        assert way_out in said, said


def test_one_observed_value_in_each_refits_val_span_is_enough(tmp_path: Path) -> None:
    """Row 264 observed: refit 2 early-stops on that one row's targets."""
    _, data = gappy(tmp_path, slice(265, 294), max_gap=30)
    result = backtest(data, SPLIT, linear(), QUICK, REFITS)
    assert len(result.fits) == 2
    for fitted in result.fits:
        assert all(np.isfinite(r.val_loss) for r in fitted.history)
        assert fitted.best_epoch >= 1


def test_the_backtests_own_fit_refuses_a_val_span_filled_in_whole(tmp_path: Path) -> None:
    """backtest() without a model fits one on the split (the ETT and PJM benchmarks): its val
    span (rows 210..239) filled in whole is refused as urnn train refuses it."""
    frame, data = gappy(tmp_path, slice(210, 240), max_gap=30)
    with pytest.raises(UnobservedValidationError) as caught:
        backtest(data, SPLIT, linear(), QUICK, BacktestConfig(n_windows=2))
    said = str(caught.value)
    assert said.startswith(
        f"the backtest's fit: every target value of its validation span {frame.index[210]} to "
        f"{frame.index[239]} (30 rows) was filled in by the loader"
    ), said
    assert "--val-fraction" in said and "--on-long-gap split" in said


def test_fit_itself_refuses_a_val_set_whose_every_target_was_filled_in(tmp_path: Path) -> None:
    """fit() checks its val windows too, so that no caller can train on them unchecked."""
    frame, data = gappy(tmp_path, slice(210, 240), max_gap=30)
    splits = split_data(data, replace(SPLIT, horizon=H))
    sets = make_windows(
        splits,
        StandardScaler.fit(splits),
        window_config_for(linear(), freq=data.freq),
        freq=data.freq,
        filled=data.filled,
    )
    with pytest.raises(UnobservedValidationError) as caught:
        fit(linear(), sets.train, sets.val, QUICK, progress=False)
    said = str(caught.value)
    assert said.startswith(
        f"every target value of the validation span {frame.index[210]} to {frame.index[239]} "
        "(30 rows) was filled in by the loader (30 of 30 rows, 100%"
    ), said


def test_refits_take_the_recorded_fit_settings_but_the_device_and_the_decoder_search() -> None:
    recorded = asdict(
        FitConfig(
            lr=3e-4,
            batch_size=128,
            mse_weight=1.0,
            seed=5,
            max_train_batches=9,
            decoder_search=True,
            device="cuda",
            max_epochs=30,
        )
    )
    config, line = refit_fit_config(recorded, source="its config.json", device="cpu")
    assert config == FitConfig(**{**recorded, "device": "cpu", "decoder_search": False})
    assert line == (
        "Refits: the fit settings the model was trained with (from its config.json): "
        "batch_size=128, lr=0.0003, mse_weight=1.0, seed=5, max_train_batches=9 (others at "
        "their defaults); max_epochs=30; decoder search off (the registered decoder); device cpu"
    )
    capped, line = refit_fit_config(recorded, source="x", device="cpu", max_epochs=2)
    assert capped == replace(config, max_epochs=2) and "max_epochs=2 (--refit-epochs)" in line
    # a field recorded by another version is left out; one FitConfig refuses: the defaults
    config, _ = refit_fit_config({"lr": 0.01, "gone": 1}, source="x", device="cpu")
    assert config == FitConfig(lr=0.01, device="cpu", min_delta=0.0)
    config, line = refit_fit_config({"lr": -1.0}, source="its config.json", device="cpu")
    assert config == FitConfig(device="cpu")
    assert line.startswith(
        "Refits: the default fit settings (those its config.json records cannot be used: lr "
        "must be > 0"
    )
    config, line = refit_fit_config(None, source="none recorded", device="cpu")
    assert config == FitConfig(device="cpu")
    assert line == "Refits: the default fit settings (none recorded); max_epochs=100; device cpu"


@pytest.mark.parametrize(
    ("recorded", "why"),
    [
        ({"seed": "7"}, "seed='7': not int"),
        ({"max_epochs": 2.5}, "max_epochs=2.5: not int"),
        ({"calibrate_intervals": "false"}, "calibrate_intervals='false': not bool"),
        ({"lr": True}, "lr=True: not float"),
        ({"schedule": "bogus"}, "schedule='bogus': not one of 'plateau', 'cosine', 'none'"),
        ({"seed": -1}, "seed must lie in 0 .. 2**32 - 1, got -1"),
        ([1, 2], "not a JSON object but list"),
    ],
)
def test_recorded_fit_settings_of_the_wrong_type_give_the_defaults_saying_why(
    recorded: object, why: str
) -> None:
    """A config.json can be edited: a value FitConfig would take but the fit cannot use (a
    seed of "7", 2.5 epochs) used to fail deep in the first refit."""
    config, line = refit_fit_config(recorded, source="its config.json", device="cpu")
    assert config == FitConfig(device="cpu")
    assert line.startswith(
        f"Refits: the default fit settings (those its config.json records cannot be used: {why}"
    )
    # integers where floats are expected, and None where allowed, are fine
    config, _ = refit_fit_config({"lr": 1, "clip_norm": None}, source="x", device="cpu")
    assert config == FitConfig(lr=1, clip_norm=None, device="cpu", min_delta=0.0)


def test_a_series_cut_at_a_long_gap_is_scored_in_the_test_rows_of_each_segment() -> None:
    """One series cut at a gap inside its test span (on_long_gap="split"): its origins roll
    back from the end of its last segment on into the one before, no window spans the gap, and
    it is scored, and scaled for MASE by its training rows, as the one series it is."""
    from dataclasses import replace

    from training.metrics import seasonal_naive_scale

    frame = seasonal_frame(600)
    first, second = frame.iloc[:500], frame.iloc[530:]  # 570 observed rows: test the last 114
    data = replace(loaded({"u#1": first, "u#2": second}), units={"u#1": "u", "u#2": "u"})
    config = BacktestConfig(n_windows=12, step=5)
    result = backtest(data, SPLIT, linear("repeat_last"), QUICK, config)
    forecasts = result.forecasts
    assert set(forecasts["series"]) == {"u"} and list(result.tables.by_series.index) == ["u"]
    origins = pd.DatetimeIndex(sorted(forecasts["origin"].unique()))
    # room: 8 windows in u#1's 44 test rows, 9 in u#2's 46 (after 24 rows of context)
    assert len(origins) == 12
    assert origins.isin(second.index).sum() == 9 and origins.isin(first.index).sum() == 3
    assert origins[-1] == second.index[-H - 1] and origins[2] == first.index[-H - 1]
    for origin, rows in forecasts.groupby("origin"):
        own = first.index if origin in first.index else second.index
        at = int(own.searchsorted(origin))
        assert list(rows["timestamp"]) == list(own[at + 1 : at + 1 + H])  # inside one segment
    assert forecasts["timestamp"].min() >= first.index[456]
    # MASE: the seasonal naive error of the series' training rows (all in u#1), for both
    y = first["y"].to_numpy()[:399]
    assert forecasts["mase_scale"].unique() == pytest.approx([seasonal_naive_scale(y, 24)])

    splits = split_data(data, replace(SPLIT, horizon=H))
    assert short_of_room(splits, H, BacktestConfig(n_windows=20, step=5), data.units) == {"u": 17}
    with pytest.raises(BacktestConfigError, match="series 'u' has room in its test span for 17"):
        backtest(data, SPLIT, linear(), QUICK, BacktestConfig(n_windows=20, step=5))
    with pytest.raises(BacktestConfigError) as refused:
        backtest(data, SPLIT, linear(), QUICK, BacktestConfig(n_windows=2, refit=True))
    assert str(refused.value).startswith(
        "series 'u' was cut at a long gap into 2 segments (on_long_gap='split'), and "
        "refit=True refits on the history before each origin"
    )
    stream = ForecasterConfig(kind="urnn-stream", lookback=L, horizon=H)
    with pytest.raises(BacktestConfigError, match="the streaming kind 'urnn-stream' reads"):
        backtest(data, SPLIT, stream, QUICK, BacktestConfig())


def test_exact_zeros_of_an_intermittent_series_are_scored_as_zeros() -> None:
    # Counts that are mostly 0: the actuals and the seasonal naive forecasts come back from
    # float32 z-scores; a zero must come back as 0, not +-1e-8, or every sMAPE term where
    # actual = forecast = 0 counts ~200 instead of 0 (sMAPE 129 instead of 74 on such a series).
    rng = np.random.default_rng(0)
    index = pd.date_range("2021-03-01", periods=300, freq="h", name="timestamp")
    counts = rng.binomial(rng.poisson(1.0, size=300), 0.3).astype(np.float64)
    data = loaded({"s": pd.DataFrame({"y": counts}, index=index)}, covariates=())
    assert (counts == 0).mean() > 0.6
    result = backtest(data, SPLIT, linear("seasonal_naive"), QUICK, BacktestConfig())
    rows = result.forecasts
    truth = data.series["s"]["y"].reindex(rows["timestamp"]).to_numpy()
    np.testing.assert_allclose(rows["actual"], truth, atol=1e-5)
    assert (rows["actual"].to_numpy()[truth == 0] == 0).all()
    near_zero = np.abs(rows["point"].to_numpy()) < 1e-5
    assert near_zero.any() and (rows["point"].to_numpy()[near_zero] == 0).all()
    a, f = rows["actual"].to_numpy(), rows["point"].to_numpy()
    exact = np.where((a == 0) & (f == 0), 0.0, 200 * np.abs(f - a) / (np.abs(a) + np.abs(f)))
    assert overall(result, "smape") == pytest.approx(exact.mean())
    assert overall(result, "smape") < 150  # the round-off gave ~ 200 on every zero pair


def test_the_actuals_are_the_data_values_exactly_not_their_float32_round_trip() -> None:
    # Bike rentals: whole counts around 190. The actuals came back through the float32
    # z-scores the windows store, and forecasts.parquet recorded 18 rentals as 17.999998 (and
    # the coverage and below_q shares compared forecasts with those): they are the data's own.
    rng = np.random.default_rng(1)
    index = pd.date_range("2021-03-01", periods=300, freq="h", name="timestamp")
    counts = rng.poisson(190.0, size=300).astype(np.float64) + 0.1
    data = loaded({"s": pd.DataFrame({"y": counts}, index=index)}, covariates=())
    result = backtest(data, SPLIT, linear("repeat_last"), QUICK, BacktestConfig(step=5))
    rows = result.forecasts
    truth = data.series["s"]["y"].reindex(rows["timestamp"]).to_numpy()
    assert (rows["actual"].to_numpy() == truth).all()
    # a series cut at a long gap: each segment's actuals from its own rows
    cut = replace(
        loaded(
            {"u#1": data.series["s"].iloc[:150], "u#2": data.series["s"].iloc[160:]},
            covariates=(),
        ),
        units={"u#1": "u", "u#2": "u"},
    )
    rows = backtest(cut, SPLIT, linear("repeat_last"), QUICK, BacktestConfig(step=5)).forecasts
    truth = data.series["s"]["y"].reindex(rows["timestamp"]).to_numpy()
    assert (rows["actual"].to_numpy() == truth).all()


def test_refits_of_a_model_recorded_before_min_delta_stop_as_it_was_trained() -> None:
    """A fit record without min_delta was trained when any lower val score improved (min_delta
    0): its refits took the new default 1e-6, stopping a flat series' fits early where the
    registered model had trained on; a recorded min_delta is kept."""
    old, line = refit_fit_config({"lr": 0.01, "patience": 3}, source="x", device="cpu")
    assert old.min_delta == 0.0 and "min_delta=0.0" in line
    recorded = asdict(FitConfig(lr=0.01))
    new, _ = refit_fit_config(recorded, source="x", device="cpu")
    assert new.min_delta == FitConfig().min_delta > 0
    new, _ = refit_fit_config({**recorded, "min_delta": 0.01}, source="x", device="cpu")
    assert new.min_delta == 0.01


def _stuck_fleet(level: float, left_at: int | None = None) -> LoadedData:
    """A seasonal series beside a sensor stuck at `level` (from row `left_at` on, 0.5 above
    it): the fleet's one global scaler puts the level at a z-score float32 cannot hold."""
    index = pd.date_range("2021-03-01", periods=300, freq="h", name="timestamp")
    stuck = np.full(300, level)
    if left_at is not None:
        stuck[left_at:] = level + 0.5
    frames = {"a": seasonal_frame(300)[["y"]], "stuck": pd.DataFrame({"y": stuck}, index=index)}
    return loaded(frames, covariates=())


def _scored_with_a_global_scaler(data: LoadedData) -> BacktestResult:
    model = build_forecaster(ForecasterConfig(kind="linear", lookback=L, horizon=H))
    scaler = StandardScaler.fit(split_data(data, SPLIT), scope="global")
    return backtest(data, SPLIT, model.config, QUICK, BacktestConfig(), model=model, scaler=scaler)


def test_a_constant_series_is_forecast_as_its_level_exactly_and_its_interval_covers_it() -> None:
    """A sensor stuck at 5000.0 in a fleet: its flat look-backs are forecast as their level,
    which came back as 5000.0000x from the float32 z-score the model read, and the
    zero-width interval [5000.0000x, 5000.0000x] was scored as missing every actual
    (coverage 0 on a forecast exact to 7 digits). The forecasts are the level exactly now,
    and the interval covers each actual at it; the report says why its width is 0."""
    result = _scored_with_a_global_scaler(_stuck_fleet(5000.0))
    rows = result.forecasts[result.forecasts["series"] == "stuck"]
    for column in ("point", "q0.1", "q0.5", "q0.9"):
        assert (rows[column].to_numpy() == 5000.0).all(), column
    stuck = result.tables.by_series.loc["stuck"]
    assert stuck["coverage_0.1_0.9"] == 1.0 and stuck["mae"] == 0.0
    note = zero_width_note(result.forecasts, (0.1, 0.5, 0.9))
    assert "1 series" in note and "stuck" in note and "'a'" not in note


def test_a_stuck_series_that_leaves_its_level_still_misses_there() -> None:
    """Zero-width intervals cover only an actual at the level: the steps after the sensor
    moved 0.5 off it (forecast from look-backs still flat at 5000) count as misses."""
    result = _scored_with_a_global_scaler(_stuck_fleet(5000.0, left_at=285))
    rows = result.forecasts[result.forecasts["series"] == "stuck"]
    moved_at = np.datetime64("2021-03-01T00:00") + np.timedelta64(285, "h")
    flat = rows["origin"].to_numpy() < moved_at - np.timedelta64(1, "h")  # look-back at 5000
    assert flat.any() and (rows["point"].to_numpy()[flat] == 5000.0).all()
    a = rows["actual"].to_numpy()[flat]
    assert (a == 5000.0).any() and (a != 5000.0).any()
    covered = (rows["q0.1"].to_numpy()[flat] <= a) & (a <= rows["q0.9"].to_numpy()[flat])
    np.testing.assert_array_equal(covered, a == 5000.0)
    coverage = result.tables.by_series["coverage_0.1_0.9"].to_numpy()[-1]  # stuck: after a
    assert 0.0 < coverage < 1.0


@pytest.mark.parametrize("scale", ["original", "scaled"])
def test_a_non_negative_model_is_scored_on_forecasts_floored_at_zero(scale: str) -> None:
    """The backtest scores what the service answers: forecasts below 0 (original units) are
    0, in scaled units where 0 lies; the others unchanged."""
    data = loaded({"s": seasonal_frame(300, level=0.5)})  # 0.5 +- 3: half below 0
    config = BacktestConfig(n_windows=4, step=3, scale=scale)  # type: ignore[arg-type]
    model = linear("seasonal_naive")
    plain = backtest(data, SPLIT, model, QUICK, config).forecasts
    floored = backtest(data, SPLIT, replace(model, non_negative=True), QUICK, config).forecasts
    stats = StandardScaler.fit(split_data(data, SPLIT)).stats["s"]["y"]
    zero = 0.0 if scale == "original" else -stats.mean / stats.scale
    for column in ("point", "q0.1", "q0.9"):
        below = plain[column] < zero
        assert below.any() and (~below).any()
        np.testing.assert_allclose(floored.loc[below, column], zero, atol=1e-12)
        np.testing.assert_array_equal(floored.loc[~below, column], plain.loc[~below, column])
    pd.testing.assert_series_equal(floored["actual"], plain["actual"])


def test_a_backtest_of_many_forecast_rows_says_so_and_the_step_that_bounds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above BACKTEST_ROWS_NOTE forecast rows the backtest says how many before it scores
    them, and the step it names brings them under the note; bounded windows say nothing."""
    import training.backtest as bt

    monkeypatch.setattr(bt, "BACKTEST_ROWS_NOTE", 500)
    data = loaded({"a": seasonal_frame(400), "b": seasonal_frame(300, seed=1)})
    splits = split_data(data, SPLIT)
    notes: list[str] = []
    result = backtest(
        data, SPLIT, linear("repeat_last"), QUICK, BacktestConfig(), on_note=notes.append
    )
    rows = len(result.forecasts)
    assert rows > 500
    [line] = notes
    assert f"{rows // H:,} windows x {H} steps = {rows:,} forecast rows" in line
    step = int(line.split("--backtest-step ")[1].split()[0])
    assert bt.backtest_size_lines(splits, H, BacktestConfig(step=step)) == []
    assert bt.backtest_size_lines(splits, H, BacktestConfig(step=step - 1)) != []  # smallest
    assert bt.backtest_size_lines(splits, H, BacktestConfig(n_windows=5)) == []


def test_a_fleet_that_no_step_bounds_is_told_so_rather_than_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every series scores at least its last window whatever the step, so a fleet of more
    series x horizon than BACKTEST_ROWS_NOTE (60,000 series at H = 168) has no step that
    brings it under: the search for one stepped on for ever, and `urnn train` and `urnn
    backtest` hung before the fit. The line now says what does bound it."""
    import threading

    import training.backtest as bt

    data = loaded({"a": seasonal_frame(400), "b": seasonal_frame(300, seed=1)})
    splits = split_data(data, SPLIT)
    monkeypatch.setattr(bt, "BACKTEST_ROWS_NOTE", 2 * H - 1)  # one window each is over it
    said: list[list[str]] = []
    search = threading.Thread(
        target=lambda: said.append(bt.backtest_size_lines(splits, H, BacktestConfig())),
        daemon=True,
    )
    search.start()
    search.join(20)
    assert said, "backtest_size_lines did not return"
    [line] = said[0]
    assert re.search(r"--backtest-step \d", line) is None  # no step named: none would do
    assert "at least one window per series" in line
    for config in (BacktestConfig(step=10_000), BacktestConfig(n_windows=1)):
        [one_each] = bt.backtest_size_lines(splits, H, config)
        assert f"2 windows x {H} steps" in one_each and "at least one window" in one_each


def test_a_checkpoint_of_an_interrupted_fit_is_said_to_have_uncalibrated_intervals() -> None:
    """A fit writes its best weights at every improving epoch and calibrates the intervals only
    once it ends: `urnn backtest` of the checkpoint of a killed run scored ETTh1's 0.1..0.9
    interval at 0.65 coverage (the finished model's: 0.78) and said nothing of why."""
    from training.backtest import uncalibrated_note

    note = uncalibrated_note({"complete": False, "best_epoch": 2}, (0.1, 0.5, 0.9))
    assert note.startswith("this is a checkpoint of an interrupted fit (best epoch 2): its ")
    assert "never calibrated on validation" in note
    assert uncalibrated_note({"complete": True, "best_epoch": 2}, (0.1, 0.5, 0.9)) == ""
    assert uncalibrated_note({}, (0.1, 0.5, 0.9)) == ""  # a registered model: calibrated
    assert uncalibrated_note({"complete": False}, (0.5,)) == ""  # no interval to calibrate


def test_filled_flags_of_a_span_are_what_reindexing_gives() -> None:
    """A span of a series is read by position (reindexing hashed the whole index: +0.7 GB and
    12 s on a 16 M-row log); any other index still reindexes, unknown times reading False."""
    from training.windows import filled_flags

    index = pd.date_range("2024-01-01", periods=1_000, freq="h", name="timestamp")
    rng = np.random.default_rng(0)
    flags = pd.DataFrame({"y": rng.random(1_000) < 0.1}, index=index)
    filled = {"s": flags}
    spans = [
        index[:700],
        index[700:850],
        index[850:],
        index[:0],
        index[::2],  # not a run of rows
        pd.date_range("2024-02-10", periods=48, freq="h"),  # past the series' end
        pd.date_range("2023-12-31", periods=48, freq="h"),  # before its start
    ]
    for span in spans:
        expected = flags["y"].reindex(span, fill_value=False).to_numpy(dtype=bool)
        got = filled_flags(filled, "s", "y", span)
        assert got is not None
        np.testing.assert_array_equal(got, expected)
    assert filled_flags(filled, "s", "x", index) is None
    assert filled_flags(None, "s", "y", index) is None


def _recomputed(directory: Path) -> dict[str, float]:
    """MAE and the share of actuals at or below the median, from forecasts.parquet alone."""
    stored = pd.read_parquet(directory / "forecasts.parquet")
    observed = stored[~stored["filled"]]
    actual = observed["actual"].to_numpy(dtype=np.float64)
    point = observed["point"].to_numpy(dtype=np.float64)
    return {"mae": float(np.mean(np.abs(point - actual))), "below": float(np.mean(actual <= point))}


@pytest.mark.parametrize("level", [10.0, 1e7])
def test_the_stored_forecasts_recompute_the_reported_scores(tmp_path: Path, level: float) -> None:
    """forecasts.parquet is the evidence behind the tables: a user recomputes every figure
    from it. Stored as float32 (7 significant digits), a series on a large level (a meter
    read in Wh, ETTh1 OT + 1e7) came back with actuals off by up to 0.5: ETTh1's MAE 1.520
    recomputed as 1.536, below_q0.5 0.519 as 0.531. float32 is kept where it loses nothing
    the scores can see (the artifact's size), float64 written where it would."""
    data = loaded({"s": seasonal_frame(300, level=level)})
    result = backtest(data, SPLIT, linear("repeat_last"), QUICK, BacktestConfig())
    write_backtest_tables(result, tmp_path)
    reported = result.tables.overall.iloc[0]
    again = _recomputed(tmp_path)
    assert again["mae"] == pytest.approx(float(reported["mae"]), rel=1e-6)
    assert again["below"] == float(reported["below_q0.5"])
    stored = pd.read_parquet(tmp_path / "forecasts.parquet")
    assert stored["point"].dtype == (np.float32 if level == 10.0 else np.float64)


def test_plot_labels_in_any_script_are_drawn_in_a_font_that_has_them_never_as_boxes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """matplotlib's DejaVu Sans has no CJK glyphs: a series '北京-01' and a target '温度' were
    drawn as empty boxes (matplotlib warned "Glyph ... missing from font(s)"). Each text is
    drawn in a font that has every one of its characters: an installed CJK font, or, where
    none is, the text in ASCII with the series' number, said once in the log."""
    import logging
    import warnings

    from matplotlib import font_manager
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from training.backtest import save_plots
    from training.plot_fonts import ascii_form, covers, font_for

    drawn: list[Figure] = []
    savefig = Figure.savefig

    def keep(self: Figure, *args: Any, **kwargs: Any) -> None:
        drawn.append(self)
        savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    frames = {"北京-01": seasonal_frame(300), "pump-2": seasonal_frame(300, seed=1)}
    result = backtest(loaded(frames), SPLIT, linear(), QUICK, BacktestConfig(n_windows=3, step=2))
    caplog.set_level(logging.WARNING, logger="training.backtest")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        save_plots(result, (0.1, 0.5, 0.9), tmp_path, target="温度", freq="h")
    assert not [w for w in said if "missing from font" in str(w.message)]
    texts = [t for figure in drawn for t in figure.findobj(Text) if t.get_text().strip()]
    for text in texts:  # the font matplotlib draws each text with has all its characters
        path = font_manager.findfont(text.get_fontproperties(), fallback_to_default=False)
        assert covers(path, text.get_text()), (text.get_text(), path)
    titles = " ".join(t.get_text() for t in texts)
    if font_for("北京-01温度") is None:  # no CJK font installed: readable ASCII, said once
        number = list(result.tables.by_series.index.astype(str)).index("北京-01") + 1
        assert f"series {number} '{ascii_form('北京-01')}' (MASE" in titles
        assert ascii_form("温度") in titles
        warned = [r for r in caplog.records if "no installed font" in r.getMessage()]
        assert len(warned) == 1 and "fonts-noto-cjk" in warned[0].getMessage()
    else:
        assert "北京-01" in titles and "温度" in titles
    assert "pump-2 (MASE" in titles  # a Latin id as written
