"""The training dataset logged to MLflow: MLflow's digest and schema, without a Python call
per cell of a many-series frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.data import digest_utils
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.types import utils as type_utils

from training import pipeline
from training.data import LoadConfig, LoadedData


def _loaded(n_series: int, rows: int) -> LoadedData:
    index = pd.date_range("2021-01-01", periods=rows, freq="h", name="timestamp")
    rng = np.random.default_rng(0)
    ids = [f"{i:03d}" for i in range(n_series)] + ["7", "Zürich-Ωmega"]
    series = {sid: pd.DataFrame({"y": rng.normal(size=rows)}, index=index) for sid in ids}
    filled = {sid: frame.astype(bool) & False for sid, frame in series.items()}
    return LoadedData(
        series=series,
        filled=filled,
        target="y",
        covariates=(),
        freq="h",
        source="many.csv",
        config=LoadConfig(target="y", series_col="id"),
    )


def test_dataset_has_mlflows_digest_and_schema_from_a_head_of_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _loaded(n_series=60, rows=300)  # 18,600 rows: more than MLflow's MAX_ROWS
    whole = pd.concat(
        [f.reset_index().assign(series_id=sid) for sid, f in data.series.items()],
        ignore_index=True,
    )
    assert len(whole) > digest_utils.MAX_ROWS
    expected_digest = digest_utils.compute_pandas_digest(whole)
    expected_schema = type_utils._infer_schema(whole)

    inferred_rows: list[int] = []
    real_infer = type_utils._infer_schema

    def counting_infer(frame: Any) -> Any:
        inferred_rows.append(len(frame))
        return real_infer(frame)

    def no_cellwise_digest(frame: Any) -> str:
        raise AssertionError("MLflow's digest visits every cell of the frame")

    monkeypatch.setattr(type_utils, "_infer_schema", counting_infer)
    monkeypatch.setattr(digest_utils, "compute_pandas_digest", no_cellwise_digest)
    monkeypatch.setattr(
        "mlflow.data.pandas_dataset.compute_pandas_digest", no_cellwise_digest, raising=True
    )

    dataset = pipeline._dataset(str(tmp_path / "many.csv"), data)

    assert isinstance(dataset, PandasDataset)
    assert dataset.digest == expected_digest
    assert dataset.schema == expected_schema
    assert dataset.to_dict()["schema"]  # what log_input sends, with no further inference
    assert inferred_rows and max(inferred_rows) <= digest_utils.MAX_ROWS
    frame = dataset.df
    assert len(frame) == len(whole)
    assert frame.groupby("series_id", sort=False).size().to_dict() == {
        sid: 300 for sid in data.series
    }
    got = frame.set_index(["series_id", "timestamp"])["y"]
    want = whole.set_index(["series_id", "timestamp"])["y"]
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index())


def test_columns_named_like_the_time_or_id_column_are_kept() -> None:
    """The dataset adds a time and an id column to the data's own: a covariate called
    `timestamp` stopped `urnn train` as its run started ("cannot insert timestamp, already
    exists"), and one called `series_id` was overwritten by the series ids."""
    index = pd.date_range("2021-01-01", periods=5, freq="h", name="timestamp")
    frame = pd.DataFrame(
        {"y": np.arange(5.0), "timestamp": np.arange(5.0) * 10, "series_id": np.ones(5)},
        index=index,
    )
    data = LoadedData(
        series={"pump": frame},
        filled={"pump": frame.astype(bool) & False},
        target="y",
        covariates=("timestamp", "series_id"),
        freq="h",
        source="plant.csv",
        config=LoadConfig(target="y", covariates=("timestamp", "series_id")),
    )
    logged = pipeline._dataset("plant.csv", data).df
    assert list(logged.columns) == ["_timestamp", "y", "timestamp", "series_id", "_series_id"]
    assert logged["timestamp"].tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]  # the covariate
    assert logged["series_id"].tolist() == [1.0] * 5
    assert logged["_series_id"].tolist() == ["pump"] * 5
    assert logged["_timestamp"].tolist() == list(index)
