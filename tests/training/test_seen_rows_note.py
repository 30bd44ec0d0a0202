"""`urnn backtest`'s note on forecast values that lie where the model trained (`seen_rows_note`).

The model records, per unit, the last time it trained or early-stopped on
(`train.seen_until`); the note matches the scored rows to it by series id and time only. The
README's fleet walk-through scores C-MAPSS's test engines (`fd001_test.csv`, 100 other engines
numbered 1-100 again) with `--split unseen`, and the note told the user that 65,796 of 88,212
values "lie on rows the model trained or early-stopped on ... their scores are in-sample", which
is false for other engines under the same ids. It now says what it matched, what holds when the
rows are the training data, and how to tell other units apart.
"""

from __future__ import annotations

import pandas as pd

from training.data import LoadConfig, LoadedData
from training.pipeline import seen_rows_note


def _data(*ids: str) -> LoadedData:
    index = pd.date_range("2000-01-01", periods=4, freq="D", name="timestamp")
    frame = pd.DataFrame({"s11": [1.0, 2.0, 3.0, 4.0]}, index=index)
    return LoadedData(
        series={sid: frame for sid in ids},
        filled={sid: frame.isna() for sid in ids},
        target="s11",
        covariates=(),
        freq="D",
        source="fd001_test.csv",
        config=LoadConfig(target="s11"),
    )


def _forecasts(*ids: str) -> pd.DataFrame:
    stamps = pd.date_range("2000-01-02", periods=3, freq="D")
    return pd.DataFrame(
        [{"series": sid, "timestamp": stamp} for sid in ids for stamp in stamps],
    )


META = {"train": {"seen_until": {"1": "2000-01-03 00:00:00", "2": "2000-01-02 00:00:00"}}}


def test_the_note_says_it_matched_ids_and_times_not_the_rows_themselves() -> None:
    note = seen_rows_note(META, _data("1", "2", "3"), _forecasts("1", "2", "3"))
    # unit 1: 2 of its 3 values at or before 01-03; unit 2: 1; unit 3 never trained
    assert note.startswith(
        "3 of 9 forecast values lie on series ids and times the model trained or "
        "early-stopped on ('1' up to 2000-01-03 00:00:00, '2' up to 2000-01-02 00:00:00: its "
        "train.seen_until, matched by id and time, not by value)"
    ), note
    assert "lie on rows the model trained" not in note  # the claim it could not know
    # what holds where these are the training rows, and the remedy either way
    assert "where these are the rows it trained on (its own training file), their scores" in note
    assert "are in-sample" in note and "score a span after those rows" in note
    assert "other units under the same ids" in note and "give them ids of their own" in note


def test_no_note_where_every_value_is_after_what_the_model_saw() -> None:
    assert seen_rows_note(META, _data("3"), _forecasts("3")) == ""
    assert seen_rows_note({}, _data("1"), _forecasts("1")) == ""  # a model from before the key
