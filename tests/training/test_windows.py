"""Windows: the right rows, never across a split boundary, one storage for many series, and a
form that torch's DataLoader takes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from models.forecaster import ForecasterConfig, build_forecaster
from tests.training.synthetic import row_number_frame, seasonal_frame
from training.split import (
    SeriesSplit,
    SplitConfig,
    StandardScaler,
    UnknownSeriesError,
    plan_split,
    split_series,
)
from training.validation import NonFiniteValueError
from training.windows import (
    IncompatibleWindowsError,
    WindowBatch,
    WindowConfig,
    WindowDataset,
    WindowError,
    make_windows,
    window_config_for,
    window_starts,
)

L, H = 12, 4


def splits_of(n: int = 200) -> dict[str, SeriesSplit]:
    """One series whose target is its row number: 140 / 20 / 40 rows (fractions 0.7 / 0.1)."""
    frame = row_number_frame(n)
    return {"s": split_series(frame, plan_split(n, "h", SplitConfig(lookback=L)))}


def identity_scaler(splits: dict[str, SeriesSplit]) -> StandardScaler:
    """Fitted on train, then made the identity, so window values are row numbers."""
    scaler = StandardScaler.fit(splits)
    state = scaler.to_dict()
    for by_column in state["stats"].values():
        for stats in by_column.values():
            stats.update(mean=0.0, scale=1.0)
    return StandardScaler.from_dict(state)


def rows_of_targets(batch: WindowBatch) -> np.ndarray:
    return batch.target.numpy().astype(int)


def test_each_part_windows_its_own_span_only() -> None:
    splits = splits_of()
    plan = splits["s"].plan
    sets = make_windows(splits, identity_scaler(splits), WindowConfig(L, H), freq="h")
    for dataset, span in ((sets.train, plan.train), (sets.val, plan.val), (sets.test, plan.test)):
        batch = dataset.batch(torch.arange(len(dataset)))
        targets = rows_of_targets(batch)
        assert targets.min() >= span.start and targets.max() < span.stop
        # inputs are the L rows just before the targets, targets the H rows after them
        past = batch.past_target.numpy().astype(int)
        np.testing.assert_array_equal(past[:, -1] + 1, targets[:, 0])
        np.testing.assert_array_equal(np.diff(np.concatenate([past, targets], 1), axis=1), 1)
        np.testing.assert_array_equal(batch.past_covariates[..., 0].numpy(), -past)
    # stride 1: every target row of val and test is covered (train: all after the first L)
    assert len(sets.train) == 140 - L - H + 1
    assert len(sets.val) == 20 - H + 1
    assert len(sets.test) == 40 - H + 1
    assert rows_of_targets(sets.test.batch(torch.tensor([0])))[0, 0] == plan.test.start


def test_scaler_is_applied_before_windowing() -> None:
    splits = splits_of()
    scaler = StandardScaler.fit(splits)
    sets = make_windows(splits, scaler, WindowConfig(L, H), freq="h")
    stats = scaler.stats["s"]["y"]
    rows = sets.val.batch(torch.arange(len(sets.val))).target.double().numpy()
    unscaled = rows * stats.scale + stats.mean
    np.testing.assert_allclose(unscaled.min(), splits["s"].plan.val.start, atol=1e-3)


def test_stride_keeps_the_freshest_windows_and_n_windows_counts_back() -> None:
    np.testing.assert_array_equal(window_starts(20, 5, 3, 4), [0, 4, 8, 12])
    np.testing.assert_array_equal(window_starts(21, 5, 3, 4), [1, 5, 9, 13])
    np.testing.assert_array_equal(window_starts(21, 5, 3, 4, n_windows=2), [9, 13])
    assert window_starts(7, 5, 3, 1).size == 0
    with pytest.raises(WindowError, match="room for 4"):
        window_starts(21, 5, 3, 4, n_windows=5)
    # one window is said in the singular, not "1 windows of 5 + 3 rows"
    with pytest.raises(WindowError, match=r"^1 window of 5 \+ 3 rows, 4 apart, need 8 rows"):
        window_starts(7, 5, 3, 4, n_windows=1)


def test_many_series_share_one_storage_and_keep_their_names() -> None:
    frames = {"a": row_number_frame(30), "b": row_number_frame(40) + 1000.0}
    dataset = WindowDataset.from_frames(frames, lookback=L, horizon=H, stride=2)
    assert dataset.values.shape == (70, 2)  # the series once, not once per window
    n_a, n_b = len(window_starts(30, L, H, 2)), len(window_starts(40, L, H, 2))
    assert len(dataset) == n_a + n_b
    table = dataset.window_table()
    assert table["series"].tolist() == ["a"] * n_a + ["b"] * n_b
    last_b = dataset.batch(torch.tensor([len(dataset) - 1]))
    assert last_b.target[0, -1] == 1039.0  # b's last row, never a's
    first_b = dataset.batch(torch.tensor([n_a]))
    assert first_b.past_target.min() >= 1000.0


def test_targets_are_the_batch_targets_without_gathering_the_look_backs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backtest reads every test window's target at once: through `batch` that gathered
    each window's look-back, covariates and calendar too (0.7 GB at 13,841 windows of 4,096 +
    96 rows, for 5 MB of targets). `targets` reads the horizon rows of the target alone."""
    frames = {"a": row_number_frame(30), "b": row_number_frame(40) + 1000.0}
    dataset = WindowDataset.from_frames(frames, lookback=L, horizon=H, stride=3, calendar_freq="h")
    every = torch.arange(len(dataset))
    expected = dataset.batch(every).target
    picked = torch.tensor([len(dataset) - 1, 0, 5])

    def refused(self: WindowDataset, indices: torch.Tensor) -> WindowBatch:
        raise AssertionError("targets gathered whole windows")

    monkeypatch.setattr(WindowDataset, "batch", refused)
    torch.testing.assert_close(dataset.targets(every), expected, rtol=0, atol=0)
    torch.testing.assert_close(dataset.targets(picked), expected[picked], rtol=0, atol=0)
    assert dataset.targets(picked)[0, -1] == 1039.0  # b's last row


def test_channel_independent_windows_make_each_column_a_series() -> None:
    dataset = WindowDataset.from_frames(
        {"s": row_number_frame(30)}, lookback=L, horizon=H, channel_independent=True
    )
    assert [e.name for e in dataset.entries] == ["s/y", "s/x"]
    assert dataset.n_covariates == 0
    assert len(dataset) == 2 * (30 - L - H + 1)
    x_window = dataset.batch(torch.tensor([len(dataset) - 1]))
    assert x_window.target[0, -1] == -29.0


def test_calendar_features_come_with_the_windows() -> None:
    dataset = WindowDataset.from_frames(
        {"s": seasonal_frame(60)}, lookback=L, horizon=H, calendar_freq="h"
    )
    batch = dataset.batch(torch.arange(3))
    assert batch.past_calendar.shape == (3, L, 6) and batch.future_calendar.shape == (3, H, 6)
    # window 0's first two horizon rows are the last two input rows of window 2
    torch.testing.assert_close(batch.future_calendar[0, :2], batch.past_calendar[2, -2:])


def test_dataloader_batches_windows() -> None:
    dataset = WindowDataset.from_frames({"s": row_number_frame(40)}, lookback=L, horizon=H)
    batch = next(iter(DataLoader(dataset, batch_size=4, shuffle=False)))
    assert isinstance(batch, WindowBatch)
    assert batch.past_target.shape == (4, L) and batch.past_covariates.shape == (4, L, 1)
    assert torch.equal(batch.target, dataset.batch(torch.arange(4)).target)


def test_model_inputs_follow_the_capability_flags() -> None:
    dataset = WindowDataset.from_frames(
        {"s": seasonal_frame(60)}, lookback=L, horizon=H, calendar_freq="h"
    )
    batch = dataset.batch(torch.arange(2))
    urnn = build_forecaster(
        ForecasterConfig(
            kind="urnn",
            lookback=L,
            horizon=H,
            segment_length=4,
            hidden_size=4,
            n_past_covariates=1,
            n_calendar=6,
            recurrence="python",
        )
    )
    assert all(t is not None for t in batch.model_inputs(urnn))
    linear = build_forecaster(ForecasterConfig(kind="linear", lookback=L, horizon=H))
    assert batch.model_inputs(linear)[1:] == (None, None, None)
    assert linear(*batch.model_inputs(linear)).shape == (2, H, 3)
    dataset.check_compatible(linear.config)
    with pytest.raises(IncompatibleWindowsError, match=r"n_calendar=6 \(config has 0\)"):
        dataset.check_compatible(
            ForecasterConfig(
                kind="gru", lookback=L, horizon=H, segment_length=4, n_past_covariates=1
            )
        )


def test_too_short_a_part_is_refused_by_name() -> None:
    splits = splits_of(60)  # 42 / 6 / 12 rows: the val frame is 12 context + 6 rows
    with pytest.raises(WindowError, match=r"the val frame of series 's' has 18 rows"):
        make_windows(splits, identity_scaler(splits), WindowConfig(L, 10), freq="h")


def test_window_config_for_a_model() -> None:
    config = ForecasterConfig(
        kind="urnn", lookback=L, horizon=H, segment_length=4, n_calendar=6, recurrence="python"
    )
    assert window_config_for(config, freq="h").calendar
    with pytest.raises(IncompatibleWindowsError, match="gives 4 features"):
        window_config_for(config, freq="D")


@pytest.mark.parametrize("channel_independent", [False, True])
def test_make_windows_from_arrays_matches_windows_over_the_scaled_frames(
    channel_independent: bool,
) -> None:
    """make_windows scales into arrays, not a DataFrame per part: the same storage, calendar,
    entries and windows as `from_frames` over `transform_splits`' frames, bit for bit."""
    splits = {sid: splits_of(n)["s"] for sid, n in (("a", 200), ("b", 160))}
    scaler = StandardScaler.fit(splits, scope="global")
    config = WindowConfig(L, H, stride=3, channel_independent=channel_independent, calendar=True)
    sets = make_windows(splits, scaler, config, freq="h")
    scaled = scaler.transform_splits(splits)
    for part in ("train", "val", "test"):
        want = WindowDataset.from_frames(
            {sid: getattr(split, part) for sid, split in scaled.items()},
            lookback=L,
            horizon=H,
            stride=3 if part == "train" else 1,
            channel_independent=channel_independent,
            calendar_freq="h",
        )
        got = getattr(sets, part)
        for name in ("values", "calendar", "starts", "window_entry", "window_channel"):
            assert torch.equal(getattr(got, name), getattr(want, name)), (part, name)
        assert [(e.name, e.source, e.columns, e.offset, e.channel) for e in got.entries] == [
            (e.name, e.source, e.columns, e.offset, e.channel) for e in want.entries
        ]
        assert all(g.index.equals(w.index) for g, w in zip(got.entries, want.entries, strict=True))


def test_make_windows_names_a_series_the_scaler_does_not_know() -> None:
    """As transform_splits did: the unknown series is named before any part is windowed."""
    splits = splits_of()
    scaler = StandardScaler.fit(splits)
    with pytest.raises(UnknownSeriesError, match="'t'"):
        make_windows({"t": splits["s"]}, scaler, WindowConfig(L, H), freq="h")


@pytest.mark.parametrize("column", ["y", "x"])
def test_a_value_beyond_float32_once_scaled_is_refused_by_series_column_and_time(
    column: str,
) -> None:
    """A glitch of 1e41 after the training span (std 40 there) was cast to inf: its windows
    forecast NaN and the backtest scored MAE inf without a word; in a covariate, only numpy's
    overflow warning."""
    frame = row_number_frame(200)
    frame.loc[frame.index[190], column] = 1e41 if column == "y" else -1e41
    splits = {"s": split_series(frame, plan_split(200, "h", SplitConfig(lookback=L)))}
    scaler = StandardScaler.fit(splits)
    with pytest.raises(
        NonFiniteValueError,
        match=rf"series 's', column '{column}' at 2021-03-08 22:00:00: the value lies "
        r"-?2\.47\d*e\+39 training standard deviations .* beyond the range of float32 .*"
        r"\(1 such cell in this series' part\).* leave the cell empty",
    ):
        make_windows(splits, scaler, WindowConfig(L, H), freq="h")


def test_from_frames_names_the_scaled_value_it_cannot_cast() -> None:
    """`urnn backtest` windows scaled frames through from_frames, which cast to float32 first:
    numpy warned of the overflow and the message said the value lay 'inf' deviations away."""
    frame = row_number_frame(60)
    frame.loc[frame.index[30], "y"] = 4e39
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's RuntimeWarning would fail the test
        with pytest.raises(NonFiniteValueError, match=r"the value lies 4e\+39 training standard"):
            WindowDataset.from_frames({"s": frame}, lookback=L, horizon=H)
