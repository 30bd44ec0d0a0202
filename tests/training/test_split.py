"""Time splits and the train-only scaler: ETT row counts, the no-leakage invariants, and the
scaler's statistics, independence from val/test values, dict round trip and inverse."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.shared_data import SHARED_DATA, needs_shared
from tests.training.synthetic import loaded, row_number_frame, seasonal_frame
from training.data import LoadConfig, LoadedData, load_data
from training.split import (
    ScalerError,
    ScalerScope,
    SeriesSplit,
    Span,
    SplitConfig,
    SplitError,
    SplitPlan,
    StandardScaler,
    UnknownSeriesError,
    constant_in_training,
    deciding_parts,
    plan_split,
    shortest_train_rows,
    split_data,
    split_series,
)
from training.validation import InvalidOptionError, NonFiniteValueError
from training.windows import WindowConfig, make_windows

BUNDLED_ETT = Path(__file__).resolve().parents[2] / "data" / "ETT-small" / "ETTh1.csv"
LOOKBACK = 96


def frame_of(n: int, seed: int = 0, columns: tuple[str, ...] = ("y", "x")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2020-01-01", periods=n, freq="h", name="timestamp")
    return pd.DataFrame(rng.normal(5.0, 2.0, (n, len(columns))), index=index, columns=columns)


def splits_of(frames: dict[str, pd.DataFrame], config: SplitConfig) -> dict[str, SeriesSplit]:
    return {k: split_series(f, plan_split(len(f), "h", config)) for k, f in frames.items()}


# --- splits ----------------------------------------------------------------------------------


def test_ett_preset_on_the_bundled_file_gives_the_protocol_row_counts() -> None:
    data = load_data(BUNDLED_ETT, LoadConfig(target="OT", covariates=("HUFL", "HULL")))
    split = split_data(data, SplitConfig(method="ett", lookback=LOOKBACK))["ETTh1"]
    plan = split.plan

    assert (len(plan.train), len(plan.val), len(plan.test)) == (8640, 2880, 2880)
    assert (len(split.train), len(split.val), len(split.test)) == (8640, 2976, 2976)
    frame = data.series["ETTh1"]
    assert split.val.index[0] == frame.index[8640 - LOOKBACK]
    assert split.test.index[-1] == frame.index[14400 - 1]  # rows after 20 months are unused


def test_ett_preset_scales_with_the_frequency() -> None:
    plan = plan_split(69_680, "15min", SplitConfig(method="ett", lookback=LOOKBACK))
    assert (len(plan.train), len(plan.val), len(plan.test)) == (34_560, 11_520, 11_520)


def test_ett_preset_refuses_short_series_and_calendar_frequencies() -> None:
    config = SplitConfig(method="ett", lookback=LOOKBACK)
    with pytest.raises(SplitError, match=r"needs 14,400 rows .* has 14,399"):
        plan_split(14_399, "h", config)
    with pytest.raises(SplitError, match="fixed step"):
        plan_split(100_000, "MS", config)


def test_ett_preset_says_which_lookback_its_twelve_train_months_fit() -> None:
    """A year of hourly look-back (8,760) under the ETT split, whose train part is 12 months
    of 30 days (8,640 rows): refused naming the options and the largest look-back that fits
    (it was a dump of the plan's spans, "the train span (8,640 rows) is shorter than the
    lookback"; one under 8,640 but over it with the horizon failed later, at the windows)."""
    for lookback in (8760, 8592):
        config = SplitConfig(method="ett", lookback=lookback, horizon=96)
        with pytest.raises(SplitError) as caught:
            plan_split(17_420, "h", config)
        message = str(caught.value)
        assert "{" not in message, message
        assert f"--lookback {lookback:,} + --horizon 96" in message, message
        assert "8,640 rows" in message and "--lookback 8,544 or less" in message, message
        assert "--split fractions" in message, message
    fits = plan_split(17_420, "h", SplitConfig(method="ett", lookback=8544, horizon=96))
    assert len(fits.train) == 8640 and fits.val.input_start == 96


def test_fraction_split_counts() -> None:
    plan = plan_split(1000, "h", SplitConfig(lookback=10))
    assert (len(plan.train), len(plan.val), len(plan.test)) == (700, 100, 200)
    assert plan.val.input_start == 690 and plan.test.input_start == 790
    plan = plan_split(1000, "h", SplitConfig(lookback=10, train_fraction=0.5, val_fraction=0.25))
    assert (len(plan.train), len(plan.val), len(plan.test)) == (500, 250, 250)
    with pytest.raises(SplitError, match="lookback=800"):
        plan_split(1000, "h", SplitConfig(lookback=800))


@pytest.mark.parametrize("method", ["ett", "fractions"])
def test_no_split_sees_the_future_of_another(method: str) -> None:
    """Owned spans are disjoint and in time order; context rows are the rows just before."""
    frame = frame_of(15_000)
    config = SplitConfig(method=method, lookback=LOOKBACK)  # type: ignore[arg-type]
    split = split_series(frame, plan_split(len(frame), "h", config))
    val_own, test_own = split.val.iloc[LOOKBACK:], split.test.iloc[LOOKBACK:]

    assert split.train.index.max() < val_own.index.min()
    assert val_own.index.max() < test_own.index.min()
    assert split.val.iloc[:LOOKBACK].equals(split.train.iloc[-LOOKBACK:])
    assert split.test.iloc[:LOOKBACK].equals(
        frame.loc[: test_own.index[0]].iloc[-LOOKBACK - 1 : -1]
    )
    assert set(split.train.index).isdisjoint(val_own.index)
    assert set(val_own.index).isdisjoint(test_own.index)


def test_a_plan_that_breaks_time_order_cannot_exist() -> None:
    with pytest.raises(SplitError, match="disjoint, in time order"):
        SplitPlan(100, 5, Span(0, 60), Span(50, 80, context=5), Span(80, 100, context=5))
    with pytest.raises(SplitError, match="exactly `lookback` rows of context"):
        SplitPlan(100, 5, Span(0, 60), Span(60, 80, context=0), Span(80, 100, context=5))
    with pytest.raises(SplitError, match="shorter than the lookback"):
        SplitPlan(100, 70, Span(0, 60), Span(60, 80, context=70), Span(80, 100, context=70))


def test_plan_round_trips_through_json() -> None:
    plan = plan_split(1000, "h", SplitConfig(lookback=10))
    assert SplitPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"method": "random"}, r"'ett', 'fractions'"),
        ({"lookback": 0}, r"lookback must be an integer >= 1"),
        ({"train_fraction": 0.8, "val_fraction": 0.2}, r"sum < 1"),
    ],
)
def test_invalid_split_options(options: dict[str, object], pattern: str) -> None:
    with pytest.raises(InvalidOptionError, match=pattern):
        SplitConfig(**{"lookback": 10, **options})  # type: ignore[arg-type]


# --- scaler ----------------------------------------------------------------------------------


def test_scaler_statistics_come_from_the_train_rows() -> None:
    frame = frame_of(1000)
    splits = splits_of({"s": frame}, SplitConfig(lookback=10))
    scaler = StandardScaler.fit(splits)

    train = frame.iloc[:700]
    for column in ("y", "x"):
        stats = scaler.stats["s"][column]
        assert stats.mean == pytest.approx(train[column].mean())
        assert stats.scale == pytest.approx(train[column].std(ddof=0))
    scaled = scaler.transform("s", splits["s"].train)
    np.testing.assert_allclose(scaled.mean().to_numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled.std(ddof=0).to_numpy(), 1.0)


def test_changing_val_and_test_values_does_not_change_the_scaler() -> None:
    frame = frame_of(1000)
    config = SplitConfig(lookback=10)
    before = StandardScaler.fit(splits_of({"s": frame}, config)).to_dict()

    poisoned = frame.copy()
    poisoned.iloc[700:] = 1e9  # every val and test row, owned or not
    after = StandardScaler.fit(splits_of({"s": poisoned}, config)).to_dict()
    assert after == before


def test_scaler_round_trips_through_json_and_inverts() -> None:
    splits = splits_of({"a": frame_of(500, 1), "b": frame_of(500, 2)}, SplitConfig(lookback=10))
    scaler = StandardScaler.fit(splits)
    restored = StandardScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert restored == scaler

    test = splits["b"].test
    scaled = restored.transform("b", test)
    pd.testing.assert_frame_equal(restored.inverse_transform("b", scaled), test)
    np.testing.assert_allclose(
        restored.inverse_values("b", "y", scaled["y"].to_numpy()), test["y"].to_numpy()
    )
    scaled_all = restored.transform_splits(splits)
    pd.testing.assert_frame_equal(scaled_all["b"].test, scaled)


def test_series_scope_refuses_unknown_series_and_global_scope_serves_any() -> None:
    splits = splits_of({"a": frame_of(500, 1), "b": frame_of(500, 2)}, SplitConfig(lookback=10))
    with pytest.raises(UnknownSeriesError, match=r"'new'.*fitted on 2 series: 'a', 'b'"):
        StandardScaler.fit(splits).transform("new", frame_of(10))

    pooled = StandardScaler.fit(splits, scope="global")
    both = pd.concat([splits["a"].train, splits["b"].train])
    assert pooled.stats["*"]["y"].mean == pytest.approx(both["y"].mean())
    assert pooled.transform("new", frame_of(10)).shape == (10, 2)


def test_constant_train_column_is_only_centred() -> None:
    frame = frame_of(100)
    frame["x"] = 0.1
    scaler = StandardScaler.fit(splits_of({"s": frame}, SplitConfig(lookback=5)))
    assert scaler.stats["s"]["x"].scale == 1.0
    assert np.isfinite(scaler.transform("s", frame).to_numpy()).all()


@pytest.mark.parametrize("unit", [1e-11, 1e-15])
def test_a_series_in_tiny_units_is_scaled_as_in_its_usual_ones(unit: float) -> None:
    """A current logged in amperes (~27 pA as 2.7e-11, varying by 7e-12) was called constant
    by an absolute tolerance (std <= 1e-10): left unscaled, every window then looked flat to
    the model, and the report said the target never moves. Scaling is unit-free now."""
    frame = frame_of(200)
    splits = splits_of({"s": frame}, SplitConfig(lookback=5))
    tiny = splits_of({"s": frame * unit}, SplitConfig(lookback=5))
    scaled = StandardScaler.fit(splits).transform("s", frame)
    scaled_tiny = StandardScaler.fit(tiny).transform("s", frame * unit)
    np.testing.assert_allclose(scaled_tiny.to_numpy(), scaled.to_numpy(), rtol=1e-9, atol=1e-9)
    assert constant_in_training(tiny) == {}
    stuck = frame * unit
    stuck["x"] = 2.7e-11  # a stuck sensor in these units is still one value
    assert constant_in_training(splits_of({"s": stuck}, SplitConfig(lookback=5))) == {"x": ["s"]}


def test_pooled_constant_columns_are_read_by_name_across_series() -> None:
    """The pooled test joins the series' arrays where their columns agree; where a series
    holds them in another order, by name (as pd.concat aligns them): a column constant over
    every training span is named, one that moves is not."""
    first = frame_of(100)
    first["x"] = 3.0
    second = first[["x", "y"]].copy()
    second["y"] = second["y"] + 1.0
    config = SplitConfig(lookback=5)
    assert constant_in_training(splits_of({"a": first, "b": first}, config), pooled=True) == {
        "x": ["a", "b"]
    }
    mixed = splits_of({"a": first, "b": second}, config)
    assert constant_in_training(mixed, pooled=True) == {"x": ["a", "b"]}
    second["x"] = 4.0  # x differs between the series: constant in each, not pooled
    differ = splits_of({"a": first, "b": second}, config)
    assert constant_in_training(differ, pooled=True) == {}
    assert constant_in_training(differ) == {"x": ["a", "b"]}


def test_a_series_on_a_large_level_is_scaled_as_its_variation_asks() -> None:
    """A meter reading on a large level (ETTh1 OT + 1e12: std 8e-12 of the level, held to 1e-4
    by float64) was called constant by a tolerance of 1e-10 of the mean, left unscaled, and the
    report said the target never moves."""
    frame = frame_of(200)
    splits = splits_of({"s": frame}, SplitConfig(lookback=5))
    high = splits_of({"s": frame + 1e12}, SplitConfig(lookback=5))
    scaled = StandardScaler.fit(splits).transform("s", frame)
    scaled_high = StandardScaler.fit(high).transform("s", frame + 1e12)
    np.testing.assert_allclose(scaled_high.to_numpy(), scaled.to_numpy(), atol=1e-3)
    assert constant_in_training(high) == {}
    stuck = frame + 1e12
    stuck["x"] = 1e12 + 0.1  # one repeated value on that level is still constant
    assert constant_in_training(splits_of({"s": stuck}, SplitConfig(lookback=5))) == {"x": ["s"]}


def test_columns_constant_over_a_training_span_are_named_in_the_report() -> None:
    """A stuck sensor was centred and left unscaled without a word; a target that never moves
    only showed as a NaN MASE. Both are named, by the scaler's own test, where the pipeline's
    (global) scaler reads them; a covariate constant inside each series but different between
    them is scaled, and tells the series apart: not named."""
    from training.pipeline import constant_lines

    moving, stuck = frame_of(100), frame_of(100)
    moving["x"] = 0.1  # a stuck sensor in both series
    stuck["x"] = 0.1
    stuck["y"] = 7.0  # and one whose target never moves
    splits = splits_of({"pump 2": stuck, "pump-1": moving}, SplitConfig(lookback=5))
    assert constant_in_training(splits) == {"x": ["pump 2", "pump-1"], "y": ["pump 2"]}
    assert constant_in_training(splits, pooled=True) == {"x": ["pump 2", "pump-1"]}
    assert constant_lines(splits, "y") == [
        "target 'y' holds one value over the training span of 1 of 2 series ('pump 2'): there "
        "it has nothing to learn, and no MASE scale (its MASE is left out of the overall)",
        "covariate 'x' holds one value over every series' training span (2): centred and not "
        "scaled, it tells the model nothing (a stuck sensor?); leave it out of --covariates, "
        "or train on a span where it varies",
    ]
    capacity = {"a": frame_of(100), "b": frame_of(100, seed=1)}
    capacity["a"]["x"], capacity["b"]["x"] = 10.0, 20.0  # one per store: it tells them apart
    by_store = splits_of(capacity, SplitConfig(lookback=5))
    assert constant_lines(by_store, "y") == []
    assert constant_lines(by_store, "y", scope="series") == [
        "covariate 'x' holds one value over the training span of 2 of 2 series ('a', 'b'): centred "
        "and not scaled, it tells the model nothing (a stuck sensor?); leave it out of "
        "--covariates, or train on a span where it varies"
    ]
    assert constant_lines(splits_of({"s": frame_of(100)}, SplitConfig(lookback=5)), "y") == []


def test_malformed_scaler_state_is_refused() -> None:
    state = StandardScaler.fit(splits_of({"s": frame_of(100)}, SplitConfig(lookback=5))).to_dict()
    with pytest.raises(ScalerError, match="expected kind 'standard'"):
        StandardScaler.from_dict({**state, "scope": "everything"})
    state["stats"]["s"]["y"]["scale"] = 0.0
    with pytest.raises(ScalerError, match="scale > 0"):
        StandardScaler.from_dict(state)
    del state["stats"]["s"]["x"]
    with pytest.raises(ScalerError, match="malformed"):
        StandardScaler.from_dict(state)


@pytest.mark.parametrize("scope", ["global", "series"])
def test_training_values_whose_std_overflows_are_refused_by_column_series_and_time(
    scope: ScalerScope,
) -> None:
    # each cell finite, but 1e200 squares past float64's range: the std was inf, every value
    # scaled to 0, and the run failed only after the fit, when the model was saved
    glitch = frame_of(100)
    glitch.iloc[5, 0] = -1e200
    splits = splits_of({"a": frame_of(100, seed=1), "b": glitch}, SplitConfig(lookback=5))
    with pytest.raises(
        NonFiniteValueError,
        match=r"column 'y': its training values are too large .*\(the largest in size, -1e\+200, "
        r"in series 'b' at 2020-01-01 05:00:00\).* leave such a cell empty",
    ):
        StandardScaler.fit(splits, scope=scope)


def test_split_data_splits_every_series(tmp_path: Path) -> None:
    rows = [
        f"{s},{t},{i}"
        for s, n in (("a", 50), ("b", 80))
        for i, t in enumerate(pd.date_range("2020-01-01", periods=n, freq="h"))
    ]
    path = tmp_path / "long.csv"
    path.write_text("id,timestamp,y\n" + "\n".join(rows) + "\n")
    data: LoadedData = load_data(path, LoadConfig(target="y", series_col="id"))
    splits = split_data(data, SplitConfig(lookback=5))
    assert {k: len(v.plan.train) for k, v in splits.items()} == {"a": 35, "b": 56}


def test_interpolated_values_at_a_border_are_named_as_a_look_ahead(tmp_path: Path) -> None:
    """A gap across the train/val border was interpolated toward the first val value, so the
    train-only scaler and the training windows read a value computed from val, target and
    covariate alike, and nothing said so (split.py's docstring promised the report would)."""
    from training.pipeline import lookahead_fill_lines

    frame = seasonal_frame(200).reset_index()
    frame.loc[137:142, "y"] = np.nan  # train owns rows 0-139 (0.7 of 200): 3 of them filled
    frame.loc[138:139, "x"] = np.nan  # a gap that ends on the border: the next value is val's
    frame.loc[50:52, "x"] = np.nan  # inside train: interpolated from train values only
    path = tmp_path / "gappy.csv"
    frame.to_csv(path, index=False)
    data = load_data(path, LoadConfig(target="y", covariates=("x",)))
    splits = split_data(data, SplitConfig(lookback=5))
    assert splits["gappy"].train.index[-1] == pd.Timestamp("2021-03-06 19:00")
    assert lookahead_fill_lines(data, splits) == [
        "series 'gappy': the last train values (y 3, x 2, up to 2021-03-06 19:00:00) were "
        "filled by interpolation toward the next observed value, which lies in the val span or "
        "later: a look-ahead across the train/val border; --fill ffill never looks ahead"
    ]
    carried = load_data(path, LoadConfig(target="y", covariates=("x",), fill="ffill"))
    assert lookahead_fill_lines(carried, split_data(carried, SplitConfig(lookback=5))) == []
    frame.loc[137:142, "y"] = frame.loc[137:142, "x"] = 1.0  # only the gap inside train left
    frame.to_csv(path, index=False)
    inside = load_data(path, LoadConfig(target="y", covariates=("x",)))
    assert lookahead_fill_lines(inside, split_data(inside, SplitConfig(lookback=5))) == []


def test_the_shortest_training_span_is_read_off_the_plans() -> None:
    data = loaded({"a": seasonal_frame(400), "b": seasonal_frame(250, seed=1)})
    config = SplitConfig(lookback=24)
    expected = min(len(s.train) for s in split_data(data, config).values())
    assert shortest_train_rows(data, config) == expected == int(250 * 0.7)


# --- the "series" split: whole units held out -------------------------------------------------


def fleet(n_units: int, rows: int = 120) -> LoadedData:
    return loaded({f"u{k}": frame_of(rows + k, seed=k) for k in range(n_units)})


def test_the_series_split_holds_out_whole_units_in_file_order() -> None:
    data = fleet(10)
    splits = split_data(data, SplitConfig(lookback=24, method="series"))
    roles = {sid: s.plan.role for sid, s in splits.items()}
    assert roles == {
        **{f"u{k}": "train" for k in range(7)},
        "u7": "val",
        **{f"u{k}": "test" for k in (8, 9)},
    }
    train, val, test = splits["u0"], splits["u7"], splits["u9"]
    # a training unit's whole history trains; nothing of it is scored
    assert train.train.equals(data.series["u0"]) and train.val.empty and train.test.empty
    # val and test units: the whole series, the first lookback rows as the first input
    assert val.train.empty and val.val.equals(data.series["u7"]) and val.test.empty
    assert test.train.empty and test.val.empty and test.test.equals(data.series["u9"])
    assert (test.plan.test.start, test.plan.test.stop) == (24, 129)
    # their MASE history is the look-back before the first origin; the train units' own spans
    assert shortest_train_rows(data, SplitConfig(lookback=24, method="series")) == 24
    assert shortest_train_rows(data, SplitConfig(lookback=24, method="fractions")) == 84


def test_a_held_out_plan_round_trips_and_fills_one_span_only() -> None:
    splits = split_data(
        fleet(3), SplitConfig(lookback=24, method="series", train_fraction=0.34, val_fraction=0.34)
    )
    for s in splits.values():
        assert SplitPlan.from_dict(json.loads(json.dumps(s.plan.to_dict()))) == s.plan
    with pytest.raises(SplitError, match="held out for test fills that span and no other"):
        SplitPlan(100, 5, Span(0, 50), Span(50, 50, 5), Span(50, 100, 5), role="test")
    # plans stored before roles existed read as time splits
    old = plan_split(1000, "h", SplitConfig(lookback=10)).to_dict()
    del old["role"]
    assert SplitPlan.from_dict(old).role == "all"


def test_too_few_units_for_the_series_split_say_how_many_are_needed() -> None:
    with pytest.raises(SplitError, match=r"4 series split 2 / 0 / 2 .* at least 10 series"):
        split_data(fleet(4), SplitConfig(lookback=24, method="series"))
    with pytest.raises(SplitError, match="assigns whole series: use split_data"):
        plan_split(100, "h", SplitConfig(lookback=24, method="series"))


def test_held_out_units_are_scaled_by_the_training_units_alone() -> None:
    data = fleet(10)
    splits = split_data(data, SplitConfig(lookback=24, method="series"))
    with pytest.raises(ScalerError, match=r"series 'u7' has no training rows .* scope 'global'"):
        StandardScaler.fit(splits)
    scaler = StandardScaler.fit(splits, scope="global")
    trains = pd.concat([data.series[f"u{k}"] for k in range(7)])
    assert scaler.stats["*"]["y"].mean == pytest.approx(trains["y"].mean())
    # the held-out units' values move nothing
    changed = {**data.series, "u9": data.series["u9"] * 100.0}
    other = StandardScaler.fit(
        split_data(loaded(changed), SplitConfig(lookback=24, method="series")), scope="global"
    )
    assert other.stats == scaler.stats


def roles_of(data: LoadedData, config: SplitConfig) -> dict[str, str]:
    return {sid: s.plan.role for sid, s in split_data(data, config).items()}


def test_named_units_are_held_out_instead_of_the_last_in_id_order() -> None:
    data = fleet(10)
    roles = roles_of(data, SplitConfig(lookback=24, method="series", test_series=("u2", "u5")))
    # the named units test; the last val_fraction of the others (u9) validates; the rest train
    assert roles == {
        **{f"u{k}": "train" for k in (0, 1, 3, 4, 6, 7, 8)},
        "u9": "val",
        "u2": "test",
        "u5": "test",
    }
    lists: dict[str, object] = {"test_series": ["u2"], "val_series": ["u0"]}  # as JSON gives
    named = SplitConfig(lookback=24, method="series", **lists)  # type: ignore[arg-type]
    assert named.test_series == ("u2",)  # JSON lists are kept as tuples
    roles = roles_of(data, named)
    assert (roles["u2"], roles["u0"]) == ("test", "val")
    assert sorted(sid for sid, role in roles.items() if role == "train") == [
        f"u{k}" for k in (1, 3, 4, 5, 6, 7, 8, 9)
    ]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"test_series": ("u11", "x")}, SplitError, r"test_series names 2 series the data does "),
        ({"test_series": ("u1",), "val_series": ("u1",)}, InvalidOptionError, "in both"),
        ({"val_series": ("u1",)}, InvalidOptionError, "val_series needs test_series"),
        ({"test_series": "u1"}, InvalidOptionError, "test_series must be a list of series ids"),
        ({"test_series": ("u1", "u1")}, InvalidOptionError, "names 'u1' more than once"),
        ({"test_series": ("",)}, InvalidOptionError, "non-empty series ids"),
        ({"test_series": ("u0", "u1"), "val_series": ("u2",)}, SplitError, "hold out all 3"),
    ],
)
def test_bad_named_units_say_what_is_wrong(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        split_data(fleet(3), SplitConfig(lookback=24, method="series", **options))  # type: ignore[arg-type]


def test_named_units_need_the_series_split() -> None:
    with pytest.raises(InvalidOptionError, match="applies to split method 'series' only"):
        SplitConfig(lookback=24, test_series=("u1",))


def test_the_segments_of_a_unit_cut_at_a_gap_are_held_out_together() -> None:
    # "u7#1" / "u7#2" are one engine cut at a long gap: counted as two series, the border
    # between val and test would fall between them and one half would score what the other
    # early-stopped on
    frames = {f"u{k}": frame_of(120 + k, seed=k) for k in (0, 1, 2, 3, 4, 5, 6, 8, 9)}
    frames |= {"u7#1": frame_of(100, seed=20), "u7#2": frame_of(100, seed=21)}
    data = replace(loaded(frames), units={"u7#1": "u7", "u7#2": "u7"})
    roles = roles_of(data, SplitConfig(lookback=24, method="series"))
    assert roles["u7#1"] == roles["u7#2"] == "val"
    assert sorted(sid for sid, role in roles.items() if role == "test") == ["u8", "u9"]
    named = roles_of(data, SplitConfig(lookback=24, method="series", test_series=("u7",)))
    assert named["u7#1"] == named["u7#2"] == "test"


def test_the_unseen_split_makes_every_series_a_test_unit() -> None:
    splits = split_data(fleet(3), SplitConfig(lookback=24, method="unseen"))
    assert {s.plan.role for s in splits.values()} == {"test"}
    assert all(s.train.empty and s.val.empty and len(s.test) > 24 for s in splits.values())


def test_a_named_unit_the_loader_dropped_is_said_to_be_dropped_not_unknown() -> None:
    """'test_series names 1 series the data does not hold ('u3')' read as a typo, though u3
    is in the file and on_short='drop' left it out (an audit's)."""
    from training.split import SplitError
    from training.validation import Decision

    data = fleet(10)
    kept = {sid: frame for sid, frame in data.series.items() if sid != "u3"}
    dropped = Decision("u3", "drop", 20, "dropped: 20 rows, fewer than min_length=60")
    data = replace(data, series=kept, report=(*data.report, dropped))
    with pytest.raises(SplitError, match=r"\('u3'\); 'u3' left out by the loader as too short"):
        split_data(data, SplitConfig(lookback=24, method="series", test_series=("u3",)))


# --- a series cut at a long gap (on_long_gap="split"), split by time ------------------------

CUT_L, CUT_H = 24, 6


def cut_data(n: int, gaps: list[tuple[int, int]], **others: pd.DataFrame) -> LoadedData:
    """Series "u" of `n` hourly rows (y = the row number) with the rows of each gap [a, b)
    removed, cut there into "u#1", "u#2"... as the loader does; `others`: whole series beside
    it."""
    frame = row_number_frame(n)
    edges = [0, *[row for gap in gaps for row in gap], n]
    bounds = zip(edges[::2], edges[1::2], strict=True)
    pieces = {f"u#{k}": frame.iloc[a:b] for k, (a, b) in enumerate(bounds, 1)}
    return replace(loaded({**pieces, **others}), units=dict.fromkeys(pieces, "u"))


def window_targets(data: LoadedData, config: SplitConfig) -> dict[str, dict[str, list[int]]]:
    """unit -> part -> the target timestamps (ns) of every window of that part, checking on the
    way that every window's rows are consecutive steps (none spans a gap)."""
    splits = split_data(data, config)
    scaler = StandardScaler.fit(splits, scope="global")
    sets = make_windows(splits, scaler, WindowConfig(lookback=CUT_L, horizon=CUT_H), freq="h")
    step = pd.Timedelta("1h").value
    out: dict[str, dict[str, list[int]]] = {}
    for part in ("train", "val", "test"):
        windows = getattr(sets, part)
        starts, owners = windows.starts.numpy(), windows.window_entry.numpy()
        for e, entry in enumerate(windows.entries):
            stamps = entry.index.to_numpy(dtype="datetime64[ns]").view(np.int64)
            for first in starts[owners == e] - entry.offset:
                rows = stamps[first : first + CUT_L + CUT_H]
                assert len(rows) == CUT_L + CUT_H and (np.diff(rows) == step).all(), entry.name
                unit = out.setdefault(data.unit_of(entry.source), {})
                unit.setdefault(part, []).extend(rows[CUT_L:].tolist())
    return out


CUT_SPLITS = [
    SplitConfig(lookback=CUT_L, horizon=CUT_H),
    SplitConfig(lookback=CUT_L, horizon=CUT_H, method="tail", val_rows=48, test_rows=72),
    SplitConfig(
        lookback=CUT_L, horizon=CUT_H, method="tail", val_rows=48, test_rows=72, max_train_rows=300
    ),
]


@pytest.mark.parametrize("config", CUT_SPLITS, ids=["fractions", "tail", "tail-capped"])
@pytest.mark.parametrize(
    "gaps",
    [[(200, 230)], [(430, 460)], [(520, 540)], [(100, 140), (470, 480), (560, 575)]],
    ids=["in-train", "train-val", "in-test", "three"],
)
def test_a_cut_series_keeps_time_order_across_its_segments(
    config: SplitConfig, gaps: list[tuple[int, int]]
) -> None:
    """Each segment split at its own fractions used to train u#2 on rows after u#1's test
    rows. Drawn once over the segments together, the borders keep every train target before
    every val target before every test target, and no window spans a gap."""
    data = cut_data(600, gaps, v=row_number_frame(500))
    targets = window_targets(data, config)
    for unit in ("u", "v"):
        parts = targets[unit]
        assert max(parts["train"]) < min(parts["val"]), unit
        assert max(parts["val"]) < min(parts["test"]), unit
    # the borders of a whole series of the same observed rows: same shares of the data
    observed = 600 - sum(b - a for a, b in gaps)
    whole = plan_split(observed, "h", config)
    splits = split_data(data, config)
    cut = {sid: s.plan for sid, s in splits.items() if sid != "v"}
    assert all(plan.role == "segment" for plan in cut.values())
    stamps = pd.DatetimeIndex([t for sid in cut for t in data.series[sid].index])
    for part in ("train", "val", "test"):
        span = getattr(whole, part)
        held = [t for sid, plan in cut.items() for t in data.series[sid].index[_own(plan, part)]]
        assert set(held) <= set(stamps[span.start : span.stop]), part


def _own(plan: SplitPlan, part: str) -> slice:
    span = getattr(plan, part)
    return slice(span.start, span.stop)


def test_a_segment_before_the_borders_is_all_train_and_gives_each_part_to_one_series() -> None:
    data = cut_data(600, [(200, 230)])
    config = SplitConfig(lookback=CUT_L, horizon=CUT_H)
    splits = split_data(data, config)
    first, second = splits["u#1"], splits["u#2"]
    assert (len(first.plan.train), len(first.plan.val), len(first.plan.test)) == (200, 0, 0)
    assert first.train.equals(data.series["u#1"]) and first.val.empty and first.test.empty
    # 570 observed rows: train 399 (200 + 199), val 57, test 114: the fractions of a whole
    # series of those rows
    assert (len(second.plan.train), len(second.plan.val), len(second.plan.test)) == (199, 57, 114)
    assert shortest_train_rows(data, config) == 200  # the longest training segment
    roles = {s.plan.role for s in splits.values()}
    assert roles == {"segment"}


def test_val_and_test_read_their_context_from_their_own_segment() -> None:
    """The gap falls in the val rows: u#1 ends on val rows; u#2 opens on its last 24 val rows
    (its first `lookback` rows, context only: what lies before them is across the gap), then
    its test rows."""
    data = cut_data(600, [(440, 460)])  # 580 observed: train 406, val 58, test 116
    splits = split_data(data, SplitConfig(lookback=CUT_L, horizon=CUT_H))
    first, second = splits["u#1"].plan, splits["u#2"].plan
    assert (first.train, first.val) == (Span(0, 406), Span(406, 440, context=CUT_L))
    assert len(first.test) == 0
    assert len(second.train) == len(second.val) == 0
    assert second.test == Span(CUT_L, 140, context=CUT_L)
    test = splits["u#2"].test
    assert test.index[0] == data.series["u#2"].index[0]  # context from u#2, not across the gap
    assert list(test["y"].iloc[:CUT_L]) == list(range(460, 460 + CUT_L))


def test_a_share_too_short_for_a_window_is_left_out_and_a_part_with_no_window_is_an_error() -> None:
    # 400 observed rows, horizon 24: train 280, val 40, test 80; the gap cuts the val rows
    # 20 / 20, too few for a val window on either side
    data = cut_data(420, [(300, 320)])
    config = SplitConfig(lookback=CUT_L, horizon=24)
    with pytest.raises(SplitError) as caught:
        split_data(data, config)
    message = str(caught.value)
    assert message.startswith(
        "the split by time ('fractions') leaves no val window in the data: series 'u' was cut "
        "at a long gap into 2 segments (on_long_gap='split': 'u#1' 300 rows from "
    )
    assert (
        "its 40 val rows, 2021-03-12 16:00:00 to 2021-03-15 03:00:00, lie in 'u#1' (20 of "
        "them), 'u#2' (20 of them), and a val window needs 24 rows (horizon) after 24 rows of "
        "context inside one segment (no window spans a gap). Ways out: fill the gap (max_gap, "
        "--max-gap"
    ) in message
    assert "a larger val_fraction (--val-fraction)" in message
    # beside a whole series the data has val windows: the cut series gives none, no error
    splits = split_data(cut_data(420, [(300, 320)], v=row_number_frame(400)), config)
    assert len(splits["u#1"].plan.val) == len(splits["u#2"].plan.val) == 0
    assert splits["u#1"].val.empty and len(splits["v"].plan.val) == 40
    # too few rows together for the split at all: said of the series, with its segments
    with pytest.raises(SplitError, match=r"^series 'u', cut at a long gap into 2 segments \('u#1'"):
        split_data(cut_data(40, [(20, 30)]), SplitConfig(lookback=CUT_L))


def test_the_segments_of_a_cut_series_share_its_scaler_statistics() -> None:
    data = cut_data(600, [(520, 540)])
    splits = split_data(data, SplitConfig(lookback=CUT_L, horizon=CUT_H))
    assert splits["u#2"].train.empty  # all val and test
    with pytest.raises(ScalerError, match="series 'u#2' has no training rows"):
        StandardScaler.fit(splits)
    scaler = StandardScaler.fit(splits, units=data.units)
    train = splits["u#1"].train["y"]
    assert scaler.stats["u#1"] == scaler.stats["u#2"]
    assert scaler.stats["u#2"]["y"].mean == pytest.approx(train.mean())
    # the series split still holds the segments of a series out together
    held_out = split_data(
        replace(data, series={**data.series, **fleet(4).series}),
        SplitConfig(lookback=CUT_L, method="series", test_series=("u",), val_series=("u0",)),
    )
    assert (held_out["u#1"].plan.role, held_out["u#2"].plan.role) == ("test", "test")


def test_a_gap_policy_of_split_keeps_the_whole_series_floor_for_uncut_series(
    tmp_path: Path,
) -> None:
    """on_long_gap="split" lowers the floor of a cut series' segments to one window only: a
    short series with no gap is still dropped (on_short="drop") as under "error", and one
    segment left of a cut series is an uncut series again (cut_series leaves it out)."""
    from models.forecaster import ForecasterConfig
    from training.fit import FitConfig
    from training.pipeline import TrainConfig, prepare_training
    from training.split import cut_series

    rng = np.random.default_rng(0)
    frames = []
    for unit, n in (("long", 2000), ("short", 150)):
        stamps = pd.date_range("2024-01-01", periods=n, freq="h")
        frames.append(pd.DataFrame({"unit": unit, "timestamp": stamps, "y": rng.normal(size=n)}))
    frame = pd.concat(frames)
    # long: an 80-hour outage after its first 30 rows, which alone hold no window
    frame = frame[~((frame["unit"] == "long") & frame.index.isin(range(30, 110)))]
    frame.to_csv(tmp_path / "fleet.csv", index=False)
    model = ForecasterConfig(kind="urnn", lookback=24, horizon=24, hidden_size=8)
    for policy in ("error", "split"):
        load = LoadConfig(target="y", series_col="unit", on_short="drop", on_long_gap=policy)
        if policy == "error":
            load = replace(load, max_gap=100)
        config = TrainConfig(
            data=str(tmp_path / "fleet.csv"), load=load, model=model, fit=FitConfig(device="cpu")
        )
        prepared = prepare_training(config)
        dropped = [line for line in prepared.data.report_lines() if "dropped:" in line]
        assert any(line.startswith("series 'short': dropped: 150 rows") for line in dropped), policy
        assert cut_series(prepared.data) == {}
    assert list(prepared.data.series) == ["long#2"]  # its 30-row first segment dropped


def test_the_parts_that_decide_the_one_window_floor() -> None:
    """What training.pipeline's too-short advice reads: the share that sets the floor."""
    assert deciding_parts(SplitConfig(lookback=24), 6) == ("val",)  # 6 rows of 0.1: 60
    assert deciding_parts(SplitConfig(lookback=24, train_fraction=0.001), 6) == ("train",)
    assert deciding_parts(SplitConfig(lookback=72), 12) == ("train", "val")
    assert deciding_parts(SplitConfig(lookback=24, method="ett"), 6) == ()


def test_the_data_report_says_why_a_segment_is_unused() -> None:
    """An audit's Bike data under the ETT split: its second segment (1,499 rows) was reported
    'none (too short for a window)', but it lies after the split's 20 months. The line says
    which rows lie outside the split's span, and which shares are too short for a window."""
    from training.split import cut_series_lines

    ett = SplitConfig(lookback=CUT_L, horizon=CUT_H, method="ett")  # 14,400 hourly rows
    data = cut_data(15_000, [(14_500, 14_520)])
    (line,) = cut_series_lines(data, split_data(data, ett), ett)
    assert line.endswith(
        "rows per segment: 'u#1' 8,640 train, 2,880 val, 2,880 test (unused: 100 rows after "
        "the split's span); 'u#2' none (all its rows after the split's span); the split's "
        "span: the 'ett' split's 20 months (12 + 4 + 4), the first 14,400 of the 14,980 rows"
    ), line
    # 400 observed rows, horizon 24: the gap cuts the 40 val rows 20 / 20
    config = SplitConfig(lookback=CUT_L, horizon=24)
    data = cut_data(420, [(300, 320)], v=row_number_frame(400))
    (line,) = cut_series_lines(data, split_data(data, config), config)
    assert line.endswith(
        "rows per segment: 'u#1' 280 train (unused: its 20 val rows too short for a window); "
        "'u#2' 76 test (unused: its 20 val rows too short for a window)"
    ), line
    short = SplitConfig(lookback=CUT_L, horizon=CUT_H)
    data = cut_data(600, [(560, 585)], v=row_number_frame(600))  # u#2: 15 test rows
    (line,) = cut_series_lines(data, split_data(data, short), short)
    assert "; 'u#2' none (its 15 test rows too short for a window)" in line, line


def test_a_named_unit_whose_id_has_outer_spaces_is_pointed_to() -> None:
    """`--test-series " PJM"` strips the name: 'PJM' was refused as unknown beside the
    file's ' PJM', with no word on the space."""
    from training.split import NamedSeriesError, series_roles

    config = SplitConfig(lookback=24, method="series", test_series=("PJM",))
    with pytest.raises(NamedSeriesError) as caught:
        series_roles([" PJM", "FE", "PJM2"], config)
    assert str(caught.value).startswith(
        "test_series names 1 series the data does not hold ('PJM'); ' PJM' begins or ends with "
        "a space: name it with the space (--test-series strips each name; a --config file, "
        '{"train": {"test_series": [...]}}, keeps it)'
    )
    assert series_roles([" PJM", "FE", "PJM2"], replace(config, test_series=(" PJM",)))[" PJM"] == (
        "test"
    )


def test_a_named_unit_whose_id_holds_a_comma_is_pointed_to_a_config_file() -> None:
    """`--test-series "FE, north"` for a unit so named is split at its comma: 'FE' and
    'north' were refused as unknown beside the file's 'FE, north', with no word on how to
    name such an id."""
    from training.split import NamedSeriesError, series_roles

    config = SplitConfig(lookback=24, method="series", test_series=("FE", "north"))
    with pytest.raises(NamedSeriesError) as caught:
        series_roles(["FE, north", "PJME, north", "DEOK"], config)
    said = str(caught.value)
    assert said.startswith(
        "test_series names 2 series the data does not hold ('FE', 'north'); 'FE, north' holds a "
        "comma, at which --test-series splits its names: name it in a --config file, "
        '{"train": {"test_series": ["FE, north"]}}'
    ), said
    roles = series_roles(
        ["FE, north", "PJME, north", "DEOK"], replace(config, test_series=("FE, north",))
    )
    assert roles["FE, north"] == "test"


def test_held_out_ids_with_outer_spaces_are_quoted_in_the_report() -> None:
    from types import SimpleNamespace

    from training.pipeline import held_out_lines

    splits = {
        sid: SimpleNamespace(plan=SimpleNamespace(role=role))
        for sid, role in ((" PJM", "test"), ("PJM ", "val"), ("007", "test"), ("FE", "train"))
    }
    assert held_out_lines(splits) == [  # type: ignore[arg-type]
        "split 'series': 1 series trains on its whole history; 1 validates ('PJM '); 2 are "
        "the test units, never seen in training ('007', ' PJM')"
    ]


def test_the_report_states_each_parts_borders_and_the_rows_no_part_holds() -> None:
    """The borders every score depends on were not in the data report, nor the rows the ETT
    split's 20 months leave unused at the end of a longer file (3,020 of ETTh1's)."""
    from training.pipeline import time_split_lines

    ett = SplitConfig(method="ett", lookback=LOOKBACK)
    (line,) = time_split_lines(splits_of({"log": frame_of(15_000, columns=("y",))}, ett), "ett")
    assert line == (
        "split 'ett' of series 'log': train 2020-01-01 00:00:00 to 2020-12-25 23:00:00 "
        "(8,640 rows), val 2020-12-26 00:00:00 to 2021-04-24 23:00:00 (2,880 rows), test "
        "2021-04-25 00:00:00 to 2021-08-22 23:00:00 (2,880 rows); unused: 600 rows after test, the "
        "split's span ended"
    )
    fleet = {f"pump-{i}": frame_of(600 + i, seed=i, columns=("y",)) for i in range(5)}
    lines = time_split_lines(splits_of(fleet, SplitConfig(lookback=48, horizon=12)), "fractions")
    assert lines[0].startswith(
        "split 'fractions' of series 'pump-0': train 2020-01-01 00:00:00 to "
    )
    assert "(420 rows), val" in lines[0] and "(120 rows)" in lines[0]
    assert "unused" not in lines[0]
    assert lines[3:] == ["(and 2 more series, split the same way)"]


def test_seen_until_counts_every_row_trained_or_early_stopped_on(tmp_path: Path) -> None:
    """train.seen_until (what a later challenger leaves out of the champion's score) holds the
    last train or val row of each unit: a validation unit of the series split, and a cut
    series' later segment with val rows only, were left out as if never fitted on."""
    from training.pipeline import seen_until

    data = fleet(5)
    splits = split_data(
        data, SplitConfig(lookback=24, method="series", train_fraction=0.6, val_fraction=0.2)
    )
    roles = {sid: s.plan.role for sid, s in splits.items()}
    assert roles == {"u0": "train", "u1": "train", "u2": "train", "u3": "val", "u4": "test"}
    seen = seen_until(data, splits)
    assert seen == {sid: data.series[sid].index[-1].isoformat() for sid in ("u0", "u1", "u2", "u3")}

    first = pd.date_range("2020-01-01", periods=100, freq="h")
    second = pd.date_range("2020-03-01", periods=40, freq="h")
    stamps = first.append(second)
    path = tmp_path / "plant.csv"
    values = np.random.default_rng(0).random(len(stamps))
    pd.DataFrame({"timestamp": stamps, "y": values}).to_csv(path, index=False)
    cut = load_data(path, LoadConfig(target="y", on_long_gap="split", min_segment_length=10))
    parts = split_data(cut, SplitConfig(lookback=10, horizon=2))
    val_only = [s for s in parts.values() if s.train.empty and not s.val.empty]
    assert val_only, "a segment with val rows and no train rows"
    last_val = max(s.val.index[-1] for s in parts.values() if not s.val.empty)
    assert seen_until(cut, parts) == {"plant": last_val.isoformat()}


@needs_shared("PJM_hourly/DAYTON_hourly.csv")
def test_an_outage_written_as_zeros_is_named_with_its_span(tmp_path: Path) -> None:
    """8 hours of 0 in PJM DAYTON's demand (other values 1,199 to 3,327; 6 robust standard
    deviations from the median, so no spike) went into a retraining job's test span and the
    data report said nothing: both versions were backtested against the outage. The export as
    it was, and a series whose zero comes every night (how it behaves), name nothing."""
    from training.pipeline import stuck_run_lines

    raw = pd.read_csv(SHARED_DATA / "PJM_hourly" / "DAYTON_hourly.csv")
    raw = raw.sort_values("Datetime", kind="stable")
    rows = raw[(raw.Datetime >= "2016-10-01") & (raw.Datetime < "2016-12-25")].copy()
    path = tmp_path / "DAYTON.csv"
    rows.to_csv(path, index=False)
    config = LoadConfig(target="DAYTON_MW")
    data = load_data(path, config)
    assert stuck_run_lines(data, split_data(data, SplitConfig(lookback=168)), "DAYTON_MW") == []

    outage = (rows.Datetime >= "2016-12-20 09:00:00") & (rows.Datetime < "2016-12-20 17:00:00")
    rows.loc[outage, "DAYTON_MW"] = 0.0
    rows.to_csv(path, index=False)
    data = load_data(path, config)
    lines = stuck_run_lines(data, split_data(data, SplitConfig(lookback=168)), "DAYTON_MW")
    assert len(lines) == 1
    assert lines[0].startswith(
        "series 'DAYTON': 8 values in a row at exactly 0 from 2016-12-20 09:00:00 to 2016-12-20 "
        "16:00:00 (test span), outside the range of every other value of 'DAYTON_MW'"
    )
    assert "leave such cells empty" in lines[0]

    nightly = frame_of(24 * 60, seed=4)
    nightly.loc[np.arange(len(nightly)) % 24 < 4, "y"] = -1.0e3  # a value of its own, nightly
    lines = stuck_run_lines(
        loaded({"plant": nightly}), splits_of({"plant": nightly}, SplitConfig(lookback=24)), "y"
    )
    assert lines == []


def test_spikes_in_the_training_span_are_named_and_kept() -> None:
    """x10 spikes in 1 % of a series' training rows widened the MASE scale 3.6 times (every
    MASE read better) and the report said nothing; they are named, not removed. A plain
    seasonal series and a mostly-constant one (MAD 0) are not."""
    from training.pipeline import spike_lines

    frames = {"plain": frame_of(600, seed=1), "flat": frame_of(600, seed=2)}
    spiked = frame_of(600, seed=3)
    rows = np.random.default_rng(0).choice(400, 6, replace=False)
    y = spiked["y"].to_numpy(copy=True)
    y[rows] *= 50  # far outside N(5, 2)
    spiked["y"] = y
    frames["spiked"] = spiked
    frames["flat"]["y"] = 3.0
    frames["flat"].iloc[10, 0] = 4.0
    splits = splits_of(frames, SplitConfig(lookback=24))
    lines = spike_lines(splits, "y")
    assert len(lines) == 1
    first = spiked.index[int(sorted(rows)[0])]
    assert "series 'spiked': 6 (first at " + str(first) in lines[0]
    assert "'plain'" not in lines[0] and "'flat'" not in lines[0]
    assert spike_lines(splits_of({"plain": frames["plain"]}, SplitConfig(lookback=24)), "y") == []
    assert splits["spiked"].train["y"].max() > 100  # kept as they are
