"""Arrow bodies of plain histories, with or without covariate columns, go through the
service as one block (service.arrow_io's `_plain_block`, service.validation's
`_prepare_block`), as JSON ones read by service.json_block do: the same prepared inputs,
answers, errors and monitors as the row path, without a Python object per series."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from service import arrow_io, validation
from service.arrow_io import ARROW_STREAM, read_arrow_request, request_stream
from service.errors import ServiceInputError
from service.fast_path import BlockRequest, FastRequest
from service.json_block import read_json_block
from service.served import ColumnScales, ServedModel
from service.validation import PreparedRequest, PreparedSeries, _prepare_series, prepare
from tests.service.conftest import Registry, history, metric_total, metric_value
from tests.service.test_arrow import read_table, stream_of
from tests.service.test_fast_path import StubModel

LENGTH = 12  # the stub's lookback is 8


def _plain(**columns: Any) -> pa.Table:
    """Four plain histories of LENGTH values with ISO starts; `columns` replace or add
    columns (None drops one)."""
    rows = 4
    rng = np.random.default_rng(rows)
    data: dict[str, Any] = {
        "id": [f"s-{i}" for i in range(rows)],
        "values": pa.array(rng.normal(10, 3, (rows, LENGTH)).tolist(), pa.list_(pa.float64())),
        "start": [f"2024-01-0{1 + i}T0{i}:00:00" for i in range(rows)],
    }
    data.update(columns)
    return pa.table({k: v for k, v in data.items() if v is not None})


def _rows_of(request: BlockRequest) -> FastRequest:
    """The same request as the row path reads it."""
    return FastRequest(horizon=request.horizon, quantiles=request.quantiles, series=request.series)


def _model(**stub: Any) -> ServedModel:
    return cast(ServedModel, StubModel(**stub))


def _same_prepared(block: PreparedRequest, rows: tuple[PreparedSeries, ...]) -> None:
    """`block` (prepared as one block) holds what the series-by-series path gives."""
    assert block.block is not None
    assert block.n_series == len(rows)
    np.testing.assert_array_equal(block.block.target, np.stack([s.target for s in rows]))
    mean, scale = block.unit_stats()
    np.testing.assert_array_equal(mean, [s.target_mean for s in rows])
    np.testing.assert_array_equal(scale, [s.target_scale for s in rows])
    for mine, theirs in zip(block.series, rows, strict=True):
        assert (mine.index, mine.id) == (theirs.index, theirs.id)
        assert (mine.target_mean, mine.target_scale) == (theirs.target_mean, theirs.target_scale)
        np.testing.assert_array_equal(mine.values, theirs.values)
        np.testing.assert_array_equal(mine.target, theirs.target)
        assert mine.target.dtype == theirs.target.dtype == np.float32
        assert (mine.covariates is None) == (theirs.covariates is None)
        if mine.covariates is not None and theirs.covariates is not None:
            np.testing.assert_array_equal(mine.covariates, theirs.covariates)
            assert mine.covariates.dtype == theirs.covariates.dtype == np.float32
        assert mine.drift_inputs.keys() == theirs.drift_inputs.keys()
        assert list(mine.drift_inputs) == list(theirs.drift_inputs)
        for key, values in mine.drift_inputs.items():
            np.testing.assert_array_equal(values, theirs.drift_inputs[key])
        for name in ("past_calendar", "future_calendar"):
            got, wanted = getattr(mine, name), getattr(theirs, name)
            assert (got is None) == (wanted is None), name
            if got is not None:
                assert got.dtype == wanted.dtype == np.float32, name
                assert got.tobytes() == wanted.tobytes(), name  # bit for bit
        assert (mine.dates is None) == (theirs.dates is None)
        if mine.dates is not None and theirs.dates is not None:
            np.testing.assert_array_equal(mine.dates.history_ns, theirs.dates.history_ns)
            np.testing.assert_array_equal(mine.dates.window_ns, theirs.dates.window_ns)
            assert mine.dates.tz is theirs.dates.tz is None


def _row_by_row(
    request: BlockRequest | FastRequest, model: ServedModel
) -> tuple[PreparedSeries, ...]:
    return tuple(_prepare_series(i, s, model) for i, s in enumerate(request.series))


PLAIN_TABLES: dict[str, Callable[[], pa.Table]] = {
    "ISO strings": lambda: _plain(),
    "no start": lambda: _plain(start=None),
    "freq column": lambda: _plain(freq=["h", "60min", None, "h"]),
    "integer histories": lambda: _plain(
        values=pa.array(np.arange(4 * LENGTH).reshape(4, LENGTH).tolist(), pa.list_(pa.int64()))
    ),
    "large lists": lambda: _plain(
        values=pa.array(np.ones((4, LENGTH)).tolist(), pa.large_list(pa.float64()))
    ),
    "timestamp[s]": lambda: _plain(
        start=pa.array(pd.date_range("2024-01-01", periods=4, freq="D"), pa.timestamp("s"))
    ),
    "several record batches": lambda: pa.Table.from_batches(_plain().to_batches(max_chunksize=1)),
    "a sliced table": lambda: _plain().slice(1, 2),
    # whole microseconds in a nanosecond column (finer is a 422: tests/service/test_arrow.py)
    "timestamp[ns] of whole microseconds": lambda: _plain(
        start=pa.array(
            np.array(["2024-01-01T00:00:00.000001000"] * 4, "datetime64[ns]"), pa.timestamp("ns")
        )
    ),
}


@pytest.mark.parametrize("case", sorted(PLAIN_TABLES))
def test_plain_tables_are_one_block_prepared_as_the_rows_are(case: str) -> None:
    model = _model()
    request = read_arrow_request(stream_of(PLAIN_TABLES[case]()))
    assert isinstance(request, BlockRequest), case
    _same_prepared(prepare(request, model), _row_by_row(request, model))
    # JSON bodies of the kind are laid out as the same block (validation._prepare_bulk)
    _same_prepared(prepare(_rows_of(request), model), _row_by_row(request, model))


FLOAT_LISTS = pa.list_(pa.float64())


def _lists(seed: int, kind: pa.DataType = FLOAT_LISTS, width: int = LENGTH) -> pa.Array:
    """Four covariate lists of `width` values (normal around 1), as Arrow lists of `kind`."""
    rows = np.random.default_rng(seed).normal(1, 2, (4, width))
    value_type = kind.value_type
    if pa.types.is_boolean(value_type):
        return pa.array((rows > 1).tolist(), kind)
    if pa.types.is_integer(value_type):
        return pa.array(np.round(rows * 100).astype(np.int64).tolist(), kind)
    return pa.array(rows.tolist(), kind)


def _with(**covariates: Any) -> Callable[[], pa.Table]:
    """`_plain()` with a column `covariates.<name>` per keyword, in the order given."""
    return lambda: _plain(**{f"covariates.{name}": column() for name, column in covariates.items()})


COVARIATE_TABLES: dict[str, Callable[[], pa.Table]] = {
    "one covariate": _with(x=lambda: _lists(1)),
    "two covariates, the known one first": _with(z=lambda: _lists(2), x=lambda: _lists(1)),
    "integer covariates": _with(x=lambda: _lists(1, pa.list_(pa.int64()))),
    "float32 covariates": _with(x=lambda: _lists(1, pa.list_(pa.float32()))),
    "flags (booleans)": _with(x=lambda: _lists(1, pa.list_(pa.bool_()))),
    "large lists": _with(x=lambda: _lists(1, pa.large_list(pa.float64()))),
    "several record batches": lambda: pa.Table.from_batches(
        _with(x=lambda: _lists(1), z=lambda: _lists(3))().to_batches(max_chunksize=1)
    ),
    "a sliced table": lambda: _with(x=lambda: _lists(1), z=lambda: _lists(3))().slice(1, 2),
    "flags in a sliced table": lambda: _with(x=lambda: _lists(1, pa.list_(pa.bool_())))().slice(
        1, 3
    ),
}


@pytest.mark.parametrize("case", sorted(COVARIATE_TABLES))
@pytest.mark.parametrize("stub", ["reads x, knows z", "knows x and z, reads none"])
def test_covariate_columns_are_one_block_prepared_as_the_rows_are(case: str, stub: str) -> None:
    """Covariate columns of plain number lists as long as the histories, no null cell, come
    as one (S, N) float64 block each, in the table's column order, holding what the rows read
    (flags as 1.0 and 0.0), and are prepared as the rows are."""
    table = COVARIATE_TABLES[case]()
    model = _model(**(_READS_X if stub == "reads x, knows z" else {"known_covariates": ("x", "z")}))
    request = read_arrow_request(stream_of(table))
    assert isinstance(request, BlockRequest), case
    names = [n.removeprefix("covariates.") for n in table.column_names if "." in n]
    assert list(request.block.covariates) == names
    for name, column in request.block.covariates.items():
        assert column.dtype == np.float64 and column.shape == request.block.values.shape
        np.testing.assert_array_equal(column, [s.covariates[name] for s in request.series])
        assert all(list(s.covariates) == names for s in request.series)
    prepared = prepare(request, model)
    assert prepared.block is not None
    _same_prepared(prepared, _row_by_row(request, model))
    _same_prepared(prepared, prepare(_rows_of(request), model).series)


def _one_row(column: pa.Array, row: int, cell: Any) -> pa.Array:
    """`column` with row `row` replaced by `cell`."""
    cells = column.to_pylist()
    cells[row] = cell
    return pa.array(cells, column.type)


NOT_PLAIN: dict[str, Callable[[], pa.Table]] = {
    "a null covariate cell": _with(x=lambda: _one_row(_lists(1), 2, None)),
    "a covariate one value short in one row": _with(
        x=lambda: _one_row(_lists(1), 1, [1.0] * (LENGTH - 1))
    ),
    "covariates all shorter than the histories": _with(x=lambda: _lists(1, width=LENGTH - 1)),
    "covariates all longer than the histories": _with(x=lambda: _lists(1, width=LENGTH + 4)),
    "a null among a covariate's values": _with(
        x=lambda: _one_row(_lists(1), 1, [1.0] * (LENGTH - 1) + [None])
    ),
    "a covariate of strings": _with(x=lambda: pa.array([["1"] * LENGTH] * 4)),
    "a fixed-size list covariate": _with(x=lambda: _lists(1, pa.list_(pa.float64(), LENGTH))),
    "a list view covariate": _with(x=lambda: _lists(1, pa.list_view(pa.float64()))),
    "a covariate beside a timestamps column": lambda: _plain(
        start=None,
        timestamps=[[f"2024-01-01T{h:02d}:00:00" for h in range(LENGTH)]] * 4,
        **{"covariates.x": _lists(1)},
    ),
    "a timestamps column": lambda: _plain(
        start=None, timestamps=[[f"2024-01-01T{h:02d}:00:00" for h in range(LENGTH)]] * 4
    ),
    "histories of two lengths": lambda: _plain(
        values=[[1.0] * LENGTH, [1.0] * (LENGTH + 1), [1.0] * LENGTH, [1.0] * LENGTH]
    ),
    "a null among the values": lambda: _plain(values=[[1.0] * (LENGTH - 1) + [None]] * 4),
    "one start missing": lambda: _plain(start=["2024-01-01T00:00:00", None, None, None]),
    "a zoned start": lambda: _plain(start=["2024-01-01T00:00:00+01:00"] * 4),
    "a start with a fraction": lambda: _plain(start=["2024-01-01T00:00:00.5"] * 4),
    "a start that does not exist": lambda: _plain(start=["2024-02-30T00:00:00"] * 4),
    "a zoned timestamp column": lambda: _plain(
        start=pa.array(pd.date_range("2024-01-01", periods=4, tz="UTC"), pa.timestamp("s", "UTC"))
    ),
    "fixed-size lists": lambda: _plain(
        values=pa.array([[1.0] * LENGTH] * 4, pa.list_(pa.float64(), LENGTH))
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_PLAIN))
def test_other_tables_go_row_by_row(case: str) -> None:
    try:
        request = read_arrow_request(stream_of(NOT_PLAIN[case]()))
    except ServiceInputError:  # the row path's 422, as before
        refused = ("a start that does not exist", "a null among the values")
        assert case in (*refused, "a null among a covariate's values", "a covariate of strings")
        return
    assert isinstance(request, FastRequest), case


FAILURES: dict[str, tuple[Callable[[], pa.Table], dict[str, Any], str]] = {
    "NaN": (
        lambda: _plain(values=[[1.0] * LENGTH, [1.0] * 5 + [float("nan")] * 7, *[[1.0] * 12] * 2]),
        {},
        "series 1 ('s-1'), field 'values': holds NaN at position 5",
    ),
    "too short": (
        lambda: _plain(values=[[1.0] * 5] * 4),
        {},
        "series 0 ('s-0'), field 'values': has 5 values; the model needs at least lookback=8",
    ),
    "a repeated id": (
        lambda: _plain(id=["a", "b", "a", "c"]),
        {},
        "series 2 ('a'), field 'id': repeats the id of series 0",
    ),
    "another freq": (
        lambda: _plain(freq=["h", "D", "h", "h"]),
        {},
        "series 1 ('s-1'), field 'freq': 'D' is not the model's",
    ),
    "an id the per-series scaler lacks": (
        lambda: _plain(),
        {"per_series": True},
        "series 1 ('s-1'), field 'id': the model's scaler is per series",
    ),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_a_block_that_fails_a_check_gets_the_row_paths_error(case: str) -> None:
    _assert_the_block_fails_as_its_rows(*FAILURES[case])


def _assert_the_block_fails_as_its_rows(
    table: Callable[[], pa.Table], stub: dict[str, Any], message: str
) -> None:
    """The Arrow `table` is read as a block, and its prepare raises the rows' own error."""
    request = read_arrow_request(stream_of(table()))
    assert isinstance(request, BlockRequest)
    _assert_prepare_fails_as_its_rows(request, stub, message)


def _assert_prepare_fails_as_its_rows(
    request: BlockRequest, stub: dict[str, Any], message: str
) -> None:
    """The block's prepare raises exactly the error its rows' prepare raises, naming `message`."""
    with pytest.raises(ServiceInputError) as by_block:
        prepare(request, _model(**stub))
    with pytest.raises(ServiceInputError) as by_rows:
        prepare(_rows_of(request), _model(**stub))
    assert str(by_block.value) == str(by_rows.value)
    assert message in str(by_block.value)


@pytest.fixture
def plain_client(
    registry: Registry, client_for: Callable[..., TestClient], request: pytest.FixtureRequest
) -> TestClient:
    """The service on a model that reads no covariates (the block path's kind), registered
    under the test's own name, so its version is 1."""
    name = f"plain-{request.node.name}".replace("_", "-")
    assert registry.register(name, seed=4, covariates=False) == "1"
    return client_for(model_uri=f"models:/{name}@champion")


def _plain_body(registry: Registry, stop: int = 500) -> dict[str, Any]:
    series = []
    for i in range(3):
        one = history(registry.frame, f"pump-{i}", stop=stop - 5 * i)
        one.pop("covariates")
        series.append(one)
    return {"quantiles": [0.1, 0.9], "series": series}


def test_block_requests_answer_what_json_answers(
    plain_client: TestClient, registry: Registry
) -> None:
    body = _plain_body(registry)
    arrow = request_stream(body["series"], quantiles=body["quantiles"])
    assert isinstance(read_arrow_request(arrow), BlockRequest)
    headers = {"content-type": ARROW_STREAM}
    by_json = plain_client.post("/forecast", json=body)
    by_arrow = plain_client.post("/forecast", content=arrow, headers=headers)
    assert by_json.status_code == by_arrow.status_code == 200, by_arrow.text
    assert by_arrow.content == by_json.content
    wants_arrow = {"accept": ARROW_STREAM}
    arrow_answer = plain_client.post("/forecast", content=arrow, headers=headers | wants_arrow)
    json_in_arrow_out = plain_client.post("/forecast", json=body, headers=wants_arrow)
    assert arrow_answer.status_code == json_in_arrow_out.status_code == 200
    assert arrow_answer.content == json_in_arrow_out.content


def test_block_requests_feed_drift_and_realised_error(
    plain_client: TestClient, registry: Registry
) -> None:
    headers = {"content-type": ARROW_STREAM}
    first = _plain_body(registry, stop=500)
    later = _plain_body(registry, stop=510)  # covers 10 of the first forecasts' 12 steps
    for body in (first, later):
        arrow = request_stream(body["series"], quantiles=body["quantiles"])
        assert plain_client.post("/forecast", content=arrow, headers=headers).status_code == 200
    version = {"model_version": "1"}
    assert metric_value(plain_client, "urnn_realised_mae_count", **version) == 3.0
    assert metric_total(plain_client, "urnn_realised_points_total", **version) == 3 * 10.0
    assert metric_value(plain_client, "urnn_realised_cache_series") == 3.0
    assert metric_value(plain_client, "urnn_input_drift_window_values", column="y") > 0


def _json_with_covariates(names: tuple[str, ...], *, scale_x: float = 1.0) -> BlockRequest:
    """Four dated histories of LENGTH values with the covariates `names`, read by simdjson."""
    rng = np.random.default_rng(7)
    series = [
        {
            "id": f"s-{i}",
            "start": f"2024-01-0{1 + i}T0{i}:00:00",
            "values": rng.normal(10, 3, LENGTH).tolist(),
            "covariates": {
                name: (rng.normal(1, 2, LENGTH) * (scale_x if name == "x" else 1.0)).tolist()
                for name in names
            },
        }
        for i in range(4)
    ]
    request = read_json_block(json.dumps({"series": series}).encode())
    assert isinstance(request, BlockRequest)
    assert list(request.block.covariates) == list(names)
    return request


_READS_X = {  # a model reading x, knowing z (read by drift, not by the network)
    "covariates": ("x",),
    "known_covariates": ("x", "z"),
    "stats": ColumnScales(10.0, 2.0, np.array([1.0]), np.array([3.0])),
}


@pytest.mark.parametrize(
    ("names", "stub"),
    [
        (("x",), _READS_X),
        (("z", "x"), _READS_X),  # one it knows and does not read, given first
        (("x",), {"known_covariates": ("x",)}),  # known, not read: the network reads none
    ],
)
def test_json_covariates_are_one_block_prepared_as_the_rows_are(
    names: tuple[str, ...], stub: dict[str, Any]
) -> None:
    model = _model(**stub)
    request = _json_with_covariates(names)
    prepared = prepare(request, model)
    assert prepared.block is not None
    _same_prepared(prepared, _row_by_row(request, model))
    # and as the row path prepares the same request read one series at a time
    _same_prepared(prepared, prepare(_rows_of(request), model).series)


COVARIATE_FAILURES: dict[str, tuple[tuple[str, ...], float, dict[str, Any], str]] = {
    "an unknown covariate": (
        ("x", "w"),
        1.0,
        _READS_X,
        "series 0 ('s-0'), field 'covariates': unknown covariate(s) ['w']",
    ),
    "a covariate the model reads missing": (
        ("z",),
        1.0,
        _READS_X,
        "series 0 ('s-0'), field 'covariates': missing covariate(s) ['x']",
    ),
    "covariates to a model trained without": (
        ("x",),
        1.0,
        {},
        "series 0 ('s-0'), field 'covariates': unknown covariate(s) ['x']; this model was "
        "trained without covariates",
    ),
    "a covariate too large once scaled": (
        ("x",),
        1e300,
        {**_READS_X, "stats": ColumnScales(10.0, 2.0, np.array([1.0]), np.array([1e-10]))},
        "series 0 ('s-0'), field 'covariates.x': holds values too large for the model once scaled",
    ),
}


@pytest.mark.parametrize("case", sorted(COVARIATE_FAILURES))
def test_a_json_block_whose_covariates_fail_a_check_gets_the_row_paths_error(case: str) -> None:
    names, scale_x, stub, message = COVARIATE_FAILURES[case]
    _assert_prepare_fails_as_its_rows(_json_with_covariates(names, scale_x=scale_x), stub, message)


def _nan_at(row: int, position: int, value: float) -> Callable[[], pa.Array]:
    def column() -> pa.Array:
        cells = _lists(1).to_pylist()
        cells[row][position] = value
        return pa.array(cells, pa.list_(pa.float64()))

    return column


ARROW_COVARIATE_FAILURES: dict[str, tuple[Callable[[], pa.Table], dict[str, Any], str]] = {
    "an unknown covariate": (
        _with(x=lambda: _lists(1), w=lambda: _lists(2)),
        _READS_X,
        "series 0 ('s-0'), field 'covariates': unknown covariate(s) ['w']",
    ),
    "a covariate the model reads missing": (
        _with(z=lambda: _lists(2)),
        _READS_X,
        "series 0 ('s-0'), field 'covariates': missing covariate(s) ['x']",
    ),
    "covariates to a model trained without": (
        _with(x=lambda: _lists(1)),
        {},
        "series 0 ('s-0'), field 'covariates': unknown covariate(s) ['x']; this model was "
        "trained without covariates",
    ),
    "NaN in a covariate": (
        _with(x=_nan_at(2, 3, float("nan"))),
        _READS_X,
        "series 2 ('s-2'), field 'covariates.x': holds NaN at position 3",
    ),
    "inf in a covariate the model knows and does not read": (
        _with(x=lambda: _lists(1), z=_nan_at(1, 0, float("inf"))),
        _READS_X,
        "series 1 ('s-1'), field 'covariates.z': holds",
    ),
    "a covariate too large once scaled": (
        _with(x=lambda: pa.array([[1e300] * LENGTH] * 4, pa.list_(pa.float64()))),
        {**_READS_X, "stats": ColumnScales(10.0, 2.0, np.array([1.0]), np.array([1e-10]))},
        "series 0 ('s-0'), field 'covariates.x': holds values too large for the model once scaled",
    ),
}


@pytest.mark.parametrize("case", sorted(ARROW_COVARIATE_FAILURES))
def test_an_arrow_block_whose_covariates_fail_a_check_gets_the_row_paths_error(case: str) -> None:
    _assert_the_block_fails_as_its_rows(*ARROW_COVARIATE_FAILURES[case])


def _covariate_series(registry: Registry) -> list[dict[str, Any]]:
    """Three dated histories of 60 values, each with the covariate x (the models' own)."""
    return [history(registry.frame, f"pump-{i}", stop=500 - 5 * i) for i in range(3)]


def _arrow_cases(registry: Registry) -> dict[str, bytes]:
    """Arrow bodies with covariate columns, taken as a block or not, accepted or not."""

    def stream(change: Callable[[list[dict[str, Any]]], object] = lambda series: None) -> bytes:
        series = _covariate_series(registry)
        change(series)
        return request_stream(series, quantiles=[0.1, 0.9])

    def table_of(**columns: Callable[[pa.Table], pa.Array]) -> bytes:
        table = read_table(stream())
        for name, make in columns.items():
            table = table.set_column(table.column_names.index(name), name, make(table))
        return stream_of(table)

    def cast_x(kind: pa.DataType) -> Callable[[pa.Table], pa.Array]:
        return lambda table: table.column("covariates.x").cast(kind)

    def rounded_x(table: pa.Table) -> pa.Array:
        cells = [[round(v) for v in row] for row in table.column("covariates.x").to_pylist()]
        return pa.array(cells, pa.list_(pa.int64()))

    def flags_x(table: pa.Table) -> pa.Array:
        cells = [[v > 0.5 for v in row] for row in table.column("covariates.x").to_pylist()]
        return pa.array(cells, pa.list_(pa.bool_()))

    def each(edit: Callable[[dict[str, Any]], Any]) -> Callable[[list[dict[str, Any]]], None]:
        def apply(series: list[dict[str, Any]]) -> None:
            for s in series:
                edit(s)

        return apply

    def nan_x(series: list[dict[str, Any]]) -> None:
        series[1]["covariates"]["x"][-3] = float("nan")

    return {
        "one covariate": stream(),
        "a second covariate the model does not know": stream(
            each(lambda s: s["covariates"].update(w=s["covariates"]["x"][::-1]))
        ),
        "the covariate under another name": stream(
            each(lambda s: s.update(covariates={"X": s["covariates"]["x"]}))
        ),
        "a null covariate cell": stream(lambda series: series[2].pop("covariates")),
        "a covariate one value long": stream(each(lambda s: s["covariates"]["x"].append(1.0))),
        "NaN in a covariate": stream(nan_x),
        "float32 covariate": table_of(**{"covariates.x": cast_x(pa.list_(pa.float32()))}),
        "integer covariate": table_of(**{"covariates.x": rounded_x}),
        "flags": table_of(**{"covariates.x": flags_x}),
    }


_ARROW_TAKEN = {
    "one covariate",
    "a second covariate the model does not know",
    "the covariate under another name",
    "NaN in a covariate",
    "float32 covariate",
    "integer covariate",
    "flags",
}


@pytest.mark.parametrize("reads_x", [True, False], ids=["covariate-x", "x-known-not-read"])
def test_arrow_bodies_with_covariates_answer_the_same_bytes_as_series_by_series(
    registry: Registry,
    client_for: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    reads_x: bool,
) -> None:
    """Through the app: an Arrow body whose covariate columns are read as one block is
    answered (200 or 422, JSON or Arrow) as the series-by-series path answers it."""
    name = f"arrow-block-covariates-{reads_x}".lower()
    assert registry.register(name, seed=6, covariates=reads_x) == "1"
    client = client_for(model_uri=f"models:/{name}@champion")
    reader = arrow_io._plain_block
    statuses = {}
    for case, content in _arrow_cases(registry).items():
        calls: list[bool] = []

        def spy(table: Any, ids: list[str], calls: list[bool] = calls) -> Any:
            got = reader(table, ids)
            calls.append(got is not None)
            return got

        answers = []
        for accept in ("application/json", ARROW_STREAM):
            headers = {"content-type": ARROW_STREAM, "accept": accept}
            monkeypatch.setattr(arrow_io, "_plain_block", spy)
            on = client.post("/forecast", content=content, headers=headers)
            monkeypatch.setattr(arrow_io, "_plain_block", lambda table, ids: None)
            off = client.post("/forecast", content=content, headers=headers)
            assert (on.status_code, on.content) == (off.status_code, off.content), case
            answers.append(on)
        assert calls == [case in _ARROW_TAKEN] * 2, case
        statuses[case] = answers[0].status_code
    expected = {
        "one covariate": 200,
        "a second covariate the model does not know": 422,
        "the covariate under another name": 422,
        "a null covariate cell": 422 if reads_x else 200,
        "a covariate one value long": 422,
        "NaN in a covariate": 422,
        "float32 covariate": 200,
        "integer covariate": 200,
        "flags": 200,
    }
    assert statuses == expected


def test_arrow_and_json_bodies_with_covariates_answer_alike_on_the_block_path(
    registry: Registry, client_for: Callable[..., TestClient]
) -> None:
    """The same request with a covariate, as JSON (simdjson's block) and as Arrow (a block
    too now): the same answer, in JSON and in Arrow."""
    assert registry.register("arrow-json-covariates", seed=8) == "1"
    client = client_for(model_uri="models:/arrow-json-covariates@champion")
    series, quantiles = _covariate_series(registry), [0.1, 0.9]
    body = {"quantiles": quantiles, "series": series}
    arrow = request_stream(series, quantiles=quantiles)
    request = read_arrow_request(arrow)
    assert isinstance(request, BlockRequest) and list(request.block.covariates) == ["x"]
    assert read_json_block(json.dumps(body).encode()) is not None
    for accept in ("application/json", ARROW_STREAM):
        by_json = client.post("/forecast", json=body, headers={"accept": accept})
        by_arrow = client.post(
            "/forecast", content=arrow, headers={"content-type": ARROW_STREAM, "accept": accept}
        )
        assert by_json.status_code == by_arrow.status_code == 200, by_arrow.text
        assert by_arrow.content == by_json.content


# --- calendar models: the block's features are the per-series path's, bit for bit ---------


def _dated(rows: int, freq: str, *, shared: bool, start: bool = True) -> pa.Table:
    """`rows` plain histories of LENGTH values at `freq`; starts all alike (`shared`) or
    each its own (a day and an hour apart), none without `start`."""
    rng = np.random.default_rng(rows)
    values = pa.array(rng.normal(10, 3, (rows, LENGTH)).tolist(), pa.list_(pa.float64()))
    table = pa.table({"id": [f"s-{i}" for i in range(rows)], "values": values})
    if start:
        first = pd.Timestamp("2024-03-30T22:00:00")  # a European clock change inside
        step = pd.Timedelta(0) if shared else pd.Timedelta(hours=25)
        if freq != "h":  # days: on the grid of midnights
            step = pd.Timedelta(0) if shared else pd.Timedelta(days=1)
            first = first.normalize()
        table = table.append_column(
            "start", pa.array([(first + i * step).isoformat() for i in range(rows)])
        )
    return table


CALENDAR_CASES = [
    pytest.param(
        rows, freq, clock, shared, id=f"{rows}-{freq}-{clock}-{'shared' if shared else 'own'}"
    )
    for rows in (1, 16)
    for freq in ("h", "24h", "D", "2D")
    for clock in ("local", "utc")
    for shared in (True, False)
    if not (rows == 1 and not shared)
]


@pytest.mark.parametrize(("rows", "freq", "clock", "shared"), CALENDAR_CASES)
def test_a_calendar_models_block_carries_the_row_paths_features(
    rows: int, freq: str, clock: str, shared: bool
) -> None:
    model = _model(needs_dates=True, calendar_clock=clock, freq=freq)
    request = read_arrow_request(stream_of(_dated(rows, freq, shared=shared)))
    assert isinstance(request, BlockRequest)
    prepared = prepare(request, model)
    assert prepared.block is not None  # the block path
    _same_prepared(prepared, _row_by_row(request, model))
    # a JSON body of the kind: laid out as a block too (validation._prepare_bulk)
    by_json = prepare(_rows_of(request), model)
    assert by_json.block is not None
    _same_prepared(by_json, _row_by_row(request, model))


@pytest.mark.parametrize("freq", ["D", "2D"])
@pytest.mark.parametrize("needs_dates", [True, False])
def test_a_model_on_calendar_days_takes_the_block_path(freq: str, needs_dates: bool) -> None:
    """'D' is a calendar day since pandas 3, not a Tick; on a naive clock (a block's) it is
    24 hours, so a daily model's block is prepared as its rows are, starts at any time of
    day (a day from 13:00 is a step of 'D', as the rows read it) or none."""
    model = _model(needs_dates=needs_dates, freq=freq)
    tables = [_dated(4, freq, shared=False), _dated(4, freq, shared=True)]
    afternoon = [f"2024-03-{1 + i:02d}T13:00:00" for i in range(4)]
    tables.append(_dated(4, freq, shared=False).set_column(2, "start", pa.array(afternoon)))
    if not needs_dates:
        tables.append(_dated(4, freq, shared=True, start=False))
    for table in tables:
        request = read_arrow_request(stream_of(table))
        assert isinstance(request, BlockRequest)
        for body in (request, _rows_of(request)):  # Arrow's block; JSON's laid out as one
            prepared = prepare(body, model)
            assert prepared.block is not None  # the block path
            _same_prepared(prepared, _row_by_row(request, model))


# the last whole second from which 12 values and 4 forecast steps of a day end by
# pd.Timestamp.max (2262-04-11T23:47:16.854775807), the first one pandas holds, and past them
_LAST_DAILY_START = "2262-03-27T23:47:16"
DAILY_EDGES = {
    "the last start that fits": (_LAST_DAILY_START, None),
    "a second later": ("2262-03-27T23:47:17", "field 'start'"),
    "a day later": ("2262-03-28T23:47:16", "field 'start'"),
    "the first start pandas holds": ("1677-09-21T00:12:44", None),
    "a second earlier": ("1677-09-21T00:12:43", "field 'start'"),
}


@pytest.mark.parametrize("needs_dates", [True, False])
@pytest.mark.parametrize("case", sorted(DAILY_EDGES))
def test_a_daily_block_at_the_edges_of_time_answers_as_the_rows_do(
    case: str, needs_dates: bool
) -> None:
    """Starts at either end of what the service can date: a block of a daily model that
    fits is prepared as its rows; one whose steps run past the end gets the rows' 422."""
    start, refused = DAILY_EDGES[case]
    model = _model(needs_dates=needs_dates, freq="D")
    starts = ["2024-01-01T00:00:00", start, "2024-01-02T00:00:00", "2024-01-03T00:00:00"]
    table = _dated(4, "D", shared=False).set_column(2, "start", pa.array(starts))
    # pyarrow's reading of such starts is by rows; `prepare` lays them out as a block
    request = read_arrow_request(stream_of(table))
    for body in (request, request if isinstance(request, FastRequest) else _rows_of(request)):
        if refused is None:
            prepared = prepare(body, model)
            assert prepared.block is not None
            _same_prepared(prepared, _row_by_row(request, model))
            continue
        with pytest.raises(ServiceInputError) as by_block:
            prepare(body, model)
        with pytest.raises(ServiceInputError) as by_rows:
            _row_by_row(request, model)
        assert str(by_block.value) == str(by_rows.value)
        assert f"series 1 ('s-1'), {refused}" in str(by_block.value)


def test_a_calendar_models_block_without_starts_gets_the_row_paths_422() -> None:
    model = _model(needs_dates=True)
    request = read_arrow_request(stream_of(_dated(4, "h", shared=True, start=False)))
    assert isinstance(request, BlockRequest)
    with pytest.raises(ServiceInputError) as by_block:
        prepare(request, model)
    with pytest.raises(ServiceInputError) as by_rows:
        _row_by_row(request, model)
    assert str(by_block.value) == str(by_rows.value)
    assert "series 0 ('s-0'), field 'start': this model reads calendar features" in str(
        by_block.value
    )


def _calendar_body(
    registry: Registry, rows: int, stop: int = 500, freq: str = "h"
) -> dict[str, Any]:
    """`rows` plain dated histories of the frame (some sharing their instants), ids s-i, at
    `freq` (a daily model's: the frame's hours read as days from their starts)."""
    series = []
    for i in range(rows):
        one = history(registry.frame, f"pump-{i % 3}", stop=stop - 5 * (i % 4))
        one.pop("covariates")
        series.append({**one, "id": f"s-{i}", "freq": freq})
    return {"quantiles": [0.1, 0.9], "series": series}


_MONITORED = ("urnn_input_drift", "urnn_realised")


def _monitored(client: TestClient) -> list[str]:
    """The /metrics lines of drift and realised error (what the monitors were fed), their
    creation times left out."""
    lines = client.get("/metrics").text.splitlines()
    return [line for line in lines if line.startswith(_MONITORED) and "_created" not in line]


@pytest.mark.parametrize(
    ("clock", "freq", "calendar"),
    [("local", "h", True), ("utc", "h", True), ("local", "D", True), ("local", "D", False)],
)
def test_a_calendar_models_block_answers_and_monitors_as_the_rows_do(
    registry: Registry,
    client_for: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    clock: str,
    freq: str,
    calendar: bool,
) -> None:
    """Through the app, JSON and Arrow bodies of 1 and 16 series: a calendar model's block
    gives the bytes the series path gives (that path forced by refusing every block), and
    feeds drift and realised error the same; a daily model's too, with calendar features
    or without."""
    name = f"calendar-block-{clock}-{freq}-{calendar}".lower()
    meta: dict[str, Any] = {"freq": freq}
    if clock == "utc":
        meta["calendar_clock"] = clock
    assert registry.register(name, seed=5, calendar=calendar, covariates=False, meta=meta) == "1"
    arrow_in = {"content-type": ARROW_STREAM}
    real = validation._prepare_block
    answers: dict[bool, list[bytes]] = {}
    monitored: dict[bool, list[str]] = {}
    for blocks in (True, False):
        taken: list[bool] = []

        def spy(
            block: Any, model: ServedModel, taken: list[bool] = taken, on: bool = blocks
        ) -> Any:
            got = real(block, model) if on else None
            taken.append(got is not None)
            return got

        monkeypatch.setattr(validation, "_prepare_block", spy)
        client = client_for(model_uri=f"models:/{name}@champion")
        answers[blocks] = []
        for rows in (1, 16):
            for stop in (500, 510):  # the later covers 10 of the first forecasts' 12 steps
                body = _calendar_body(registry, rows, stop, freq)
                arrow = request_stream(body["series"], quantiles=body["quantiles"])
                for response in (
                    client.post("/forecast", json=body),
                    client.post("/forecast", content=arrow, headers=arrow_in),
                    client.post("/forecast", content=arrow, headers=arrow_in | _ARROW_OUT),
                ):
                    assert response.status_code == 200, response.text
                    answers[blocks].append(response.content)
        # every request a block (the series path: refused twice, as read and as laid out)
        assert taken == [True] * 12 if blocks else taken and not any(taken)
        monitored[blocks] = _monitored(client)
    assert answers[True] == answers[False]
    assert monitored[True] == monitored[False]
    assert any(line.startswith("urnn_realised_points_total") for line in monitored[True])
    assert metric_value(client, "urnn_input_drift_window_values", column="y") > 0


_ARROW_OUT = {"accept": ARROW_STREAM}


@pytest.mark.parametrize("freq", ["h", "D"])
def test_a_calendar_models_block_without_starts_is_the_same_422(
    registry: Registry, client_for: Callable[..., TestClient], freq: str
) -> None:
    name = f"calendar-block-undated-{freq}".lower()
    meta = {"freq": freq}
    assert registry.register(name, seed=5, calendar=True, covariates=False, meta=meta) == "1"
    client = client_for(model_uri=f"models:/{name}@champion")
    body = _calendar_body(registry, 16, freq=freq)
    for one in body["series"]:
        one.pop("start")
    arrow = request_stream(body["series"], quantiles=body["quantiles"])
    by_json = client.post("/forecast", json=body)
    by_arrow = client.post("/forecast", content=arrow, headers={"content-type": ARROW_STREAM})
    assert by_json.status_code == by_arrow.status_code == 422
    assert by_json.json() == by_arrow.json()
    assert "field 'start': this model reads calendar features" in by_json.text


def test_a_batch_of_calendar_blocks_stages_what_a_batch_of_rows_stages() -> None:
    """The runner concatenates the blocks' features; a batch that mixes a block with a
    request held series by series stacks per series: the same (B, L, K) and (B, H, K)."""
    from service.runner import BatchRunner

    stub = StubModel(needs_dates=True)
    stub.streaming = False  # type: ignore[attr-defined]
    model = cast(ServedModel, stub)
    runner = BatchRunner(cast(Any, None), cast(Any, None), cast(Any, None), max_batch_series=8)
    blocks, rows = [], []
    for table in (_dated(16, "h", shared=False), _dated(4, "h", shared=True)):
        request = read_arrow_request(stream_of(table))
        assert isinstance(request, BlockRequest)
        prepared = prepare(request, model)
        assert prepared.block is not None
        blocks.append(prepared)
        rows.append(
            PreparedRequest(
                model=model,
                horizon=prepared.horizon,
                quantile_index=prepared.quantile_index,
                quantile_keys=prepared.quantile_keys,
                series=_row_by_row(request, model),
            )
        )
    wanted = runner.stage(rows)
    for batch in (blocks, [blocks[0], rows[1]], [rows[0], blocks[1]]):
        staged = runner.stage(batch)
        for name in ("target", "past_calendar", "future_calendar"):
            got, expected = getattr(staged, name), getattr(wanted, name)
            assert got.dtype == expected.dtype == np.float32, name
            assert got.shape == expected.shape, name
            assert got.tobytes() == expected.tobytes(), name


@pytest.mark.parametrize("freq", ["h", "512ns"])  # 512 ns: a step that divides 2**64
def test_a_calendar_block_spanning_the_whole_range_of_dates_gets_the_rows_features(
    freq: str,
) -> None:
    """Starts near both ends of what the service can date are 5.8 centuries apart, more
    nanoseconds than an int64 holds: each is still read at its own instants."""
    model = _model(needs_dates=True, freq=freq)
    table = _dated(2, "h", shared=True).set_column(
        2, "start", pa.array(["1678-01-01T00:00:00", "2261-12-31T00:00:00"])
    )
    request = read_arrow_request(stream_of(table))  # read by rows; laid out as a block
    prepared = prepare(request, model)
    assert prepared.block is not None
    _same_prepared(
        prepared, tuple(_prepare_series(i, s, model) for i, s in enumerate(request.series))
    )


def test_a_json_block_with_covariates_to_a_calendar_model_is_prepared_as_the_rows_are() -> None:
    model = _model(**_READS_X, needs_dates=True)
    request = _json_with_covariates(("x",))
    prepared = prepare(request, model)
    assert prepared.block is not None and prepared.block.past_calendar is not None
    _same_prepared(prepared, _row_by_row(request, model))
    _same_prepared(prepared, prepare(_rows_of(request), model).series)
