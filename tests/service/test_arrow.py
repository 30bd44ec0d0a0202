"""/forecast with Arrow IPC bodies (`service.arrow_io`): the same forecasts as JSON, the same
422s for the same mistakes, and clear errors for tables that are not request tables."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from service.arrow_io import ARROW_FILE, ARROW_STREAM, request_stream, wants_arrow
from service.errors import TOO_LARGE_ADVICE
from tests.service.conftest import API_KEY, Registry, history, metric_value
from tests.service.test_bad_input import BAD, CASES

Body = dict[str, Any]
ARROW_IN = {"content-type": ARROW_STREAM}
ARROW_BOTH = {"content-type": ARROW_STREAM, "accept": ARROW_STREAM}


@pytest.fixture
def body(registry: Registry) -> Body:
    return {
        "quantiles": [0.1, 0.5, 0.9],
        "series": [history(registry.frame, "pump-1"), history(registry.frame, "pump-2", stop=550)],
    }


def arrow_of(body: Body) -> bytes:
    return request_stream(
        body["series"], horizon=body.get("horizon"), quantiles=body.get("quantiles")
    )


def read_table(content: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(content)).read_all()


def stream_of(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    out: bytes = sink.getvalue().to_pybytes()
    return out


def test_arrow_request_answers_exactly_what_json_answers(client: TestClient, body: Body) -> None:
    by_json = client.post("/forecast", json=body)
    by_arrow = client.post("/forecast", content=arrow_of(body), headers=ARROW_IN)
    assert by_json.status_code == by_arrow.status_code == 200, by_arrow.text
    assert by_arrow.headers["content-type"] == "application/json"
    assert by_arrow.content == by_json.content  # same float64 histories: byte for byte


def test_arrow_answer_holds_the_json_answers_numbers(client: TestClient, body: Body) -> None:
    expected = client.post("/forecast", json=body).json()
    response = client.post("/forecast", content=arrow_of(body), headers=ARROW_BOTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW_STREAM
    table = read_table(response.content)
    assert table.column_names == [
        "id",
        "timestamps",
        "mean",
        "quantiles.0.1",
        "quantiles.0.5",
        "quantiles.0.9",
    ]
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    assert meta == {f"model.{k}": v for k, v in expected["model"].items()}
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == ["pump-1", "pump-2"]
    for row, want in zip(rows, expected["forecasts"], strict=True):
        np.testing.assert_array_equal(row["mean"], want["mean"])
        for key, values in want["quantiles"].items():
            np.testing.assert_array_equal(row[f"quantiles.{key}"], values)
        stamps = [pd.Timestamp(t).isoformat() for t in row["timestamps"]]
        assert stamps == want["timestamps"]
    frame = table.to_pandas()  # what a pandas user does with it
    assert len(frame) == 2 and len(frame["mean"][0]) == len(expected["forecasts"][0]["mean"])


def test_json_request_can_ask_for_an_arrow_answer_on_both_paths(
    client: TestClient, body: Body
) -> None:
    fast = client.post("/forecast", json=body, headers={"accept": ARROW_STREAM})
    # horizon 12.0 is not for the fast path (an int there): FastAPI's route and the schema
    slow_body = {**body, "horizon": 12.0}
    slow = client.post("/forecast", json=slow_body, headers={"accept": ARROW_STREAM})
    for response in (fast, slow):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == ARROW_STREAM
    assert read_table(fast.content).equals(read_table(slow.content))


def test_a_query_on_post_forecast_is_a_422_whichever_reader_takes_the_body(
    client: TestClient, body: Body
) -> None:
    """POST /forecast reads its settings from the body: `?horizon=3` was dropped without a
    word (the answer had the body's horizon), by the fast path and the route alike."""
    arrow = request_stream(body["series"], horizon=body.get("horizon"))
    said = (
        "query parameter 'horizon': is not read by POST /forecast; it takes no query "
        "parameters (its settings go in the body)"
    )
    for answer in (
        client.post("/forecast?horizon=3", json=body),
        client.post("/forecast?horizon=3", json={**body, "horizon": 12.0}),  # the route's
        client.post("/forecast?horizon=3", content=arrow, headers={"content-type": ARROW_STREAM}),
    ):
        assert answer.status_code == 422, answer.text
        assert answer.json() == {"detail": said}
    assert client.post("/forecast", json=body).status_code == 200


def test_arrow_file_and_typed_columns_are_read(client: TestClient, body: Body) -> None:
    """The Arrow file format; `start` as a timestamp column, float32 histories, a covariate
    as a fixed-size list, several record batches: the same answer as the JSON body."""
    series = body["series"]
    table = pa.table(
        {
            "id": [s["id"] for s in series],
            "values": pa.array([s["values"] for s in series], pa.list_(pa.float64())),
            "start": pa.array([pd.Timestamp(s["start"]) for s in series], pa.timestamp("s")),
            "covariates.x": pa.array(
                [s["covariates"]["x"] for s in series], pa.list_(pa.float64(), 60)
            ),
        },
        metadata={"quantiles": "[0.1, 0.5, 0.9]"},
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=1):
            writer.write_batch(batch)
    answer = client.post(
        "/forecast", content=sink.getvalue().to_pybytes(), headers={"content-type": ARROW_FILE}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == client.post("/forecast", json=body).json()


def test_a_table_made_by_pandas_keeps_its_schema_record(client: TestClient, body: Body) -> None:
    """pa.Table.from_pandas writes a 'pandas' metadata key: the library's, not a setting."""
    frame = pd.DataFrame(
        {
            "id": [s["id"] for s in body["series"]],
            "values": [s["values"] for s in body["series"]],
            "start": [s["start"] for s in body["series"]],
            "covariates.x": [s["covariates"]["x"] for s in body["series"]],
        }
    )
    table = pa.Table.from_pandas(frame, preserve_index=False)
    assert b"pandas" in (table.schema.metadata or {})
    answer = client.post("/forecast", content=stream_of(table), headers=ARROW_IN)
    assert answer.status_code == 200, answer.text
    assert answer.json() == client.post("/forecast", json=body).json()


def test_a_pandas_index_column_is_refused_saying_how_to_leave_it_out(
    client: TestClient, body: Body
) -> None:
    """pa.Table.from_pandas writes a frame's index as a column unless it is a plain
    RangeIndex; a frame filtered to some rows (or sorted) has such an index, and the 422
    named only the request's columns. It says now which argument leaves it out."""
    frame = pd.DataFrame(
        {
            "id": [s["id"] for s in body["series"]],
            "values": [s["values"] for s in body["series"]],
            "covariates.x": [s["covariates"]["x"] for s in body["series"]],
        },
        index=[3, 7],  # the rows a filter kept
    )
    table = pa.Table.from_pandas(frame)
    assert "__index_level_0__" in table.column_names
    answer = client.post("/forecast", content=stream_of(table), headers=ARROW_IN)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("column '__index_level_0__': is not a request column;"), detail
    assert "the DataFrame's index" in detail
    assert "pa.Table.from_pandas(frame, preserve_index=False)" in detail
    named = pa.Table.from_pandas(frame.rename_axis("row"))  # a named index keeps its name
    answer = client.post("/forecast", content=stream_of(named), headers=ARROW_IN)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("column 'row': is not a request column;")
    assert "preserve_index=False" in answer.json()["detail"]
    assert (
        "preserve_index"
        not in client.post(
            "/forecast",
            content=stream_of(_table(body, colour=pa.array(["red", "blue"]))),
            headers=ARROW_IN,
        ).json()["detail"]
    ), "a column of the caller's own is no index"


def test_timestamps_column_and_zones(client: TestClient, body: Body) -> None:
    """`timestamps` as a list of zoned timestamps: the answer's steps are in that zone."""
    values = body["series"][0]["values"]
    stamps = pd.date_range("2024-03-01", periods=len(values), freq="h", tz="Europe/Paris")
    table = pa.table(
        {
            "id": ["pump-1"],
            "values": pa.array([values], pa.list_(pa.float64())),
            "timestamps": pa.array([list(stamps)], pa.list_(pa.timestamp("ns", tz="Europe/Paris"))),
            "covariates.x": pa.array([body["series"][0]["covariates"]["x"]]),
        }
    )
    json_body = {
        "series": [
            {
                "id": "pump-1",
                "values": values,
                "timestamps": [t.isoformat() for t in stamps],
                "covariates": body["series"][0]["covariates"],
            }
        ]
    }
    expected = client.post("/forecast", json=json_body).json()["forecasts"][0]["timestamps"]
    response = client.post(
        "/forecast", content=stream_of(table), headers={**ARROW_IN, "accept": ARROW_STREAM}
    )
    assert response.status_code == 200, response.text
    column = read_table(response.content).column("timestamps")
    assert str(column.type.value_type.tz) == "Europe/Paris"
    assert [t.isoformat() for t in column.to_pylist()[0]] == expected


@pytest.mark.parametrize("offset", ["+00:19:32", "-00:19:32", "-04:56:02"])
def test_an_offset_with_seconds_is_answered_in_utc_not_cut_to_the_minute(
    client: TestClient, body: Body, offset: str
) -> None:
    """Local mean times (Amsterdam's +00:19:32 until 1937) are read from ISO texts, but an
    Arrow zone names whole minutes: the answer's column was labelled '+00:19' ('-00:20' for
    -00:19:32, floored), so every step read 32 (or 28) seconds off its local time. The
    instants are answered in UTC, the one zone that names them exactly."""
    series = body["series"][0]
    series["start"] = f"1930-01-01T00:00:00{offset}"
    json_body = {"series": [series], "horizon": 3}
    expected = client.post("/forecast", json=json_body).json()["forecasts"][0]["timestamps"]
    assert expected[0].endswith(offset)
    answer = client.post("/forecast", json=json_body, headers={"accept": ARROW_STREAM})
    assert answer.status_code == 200, answer.text
    column = read_table(answer.content).column("timestamps")
    assert str(column.type.value_type.tz) == "UTC"
    assert column.to_pylist()[0] == [datetime.fromisoformat(t) for t in expected]


def test_a_nanosecond_time_finer_than_the_microsecond_is_refused_as_in_json(
    client: TestClient, body: Body
) -> None:
    """The JSON body refuses 03:00:00.000000900 (service.schemas); a timestamp[ns] column cut
    it to 03:00:00 and answered 200, so the same time on the hourly grid or 0.9 us off it
    depended on the body's format. Zeros past the microsecond say nothing finer: read."""
    first = body["series"][0]
    values = first["values"]
    stamps = pd.date_range("2024-03-01", periods=len(values), freq="h")
    plain = pa.table({"id": ["pump-1", "pump-2"], "values": [values, values],
                      "start": pa.array([stamps[0]] * 2, pa.timestamp("ns")), "freq": ["h"] * 2,
                      "covariates.x": [first["covariates"]["x"]] * 2})  # fmt: skip
    assert client.post("/forecast", content=stream_of(plain), headers=ARROW_IN).status_code == 200
    late = pa.array([stamps[0], stamps[0] + pd.Timedelta(900, "ns")], pa.timestamp("ns"))
    answer = client.post(
        "/forecast", content=stream_of(plain.set_column(2, "start", late)), headers=ARROW_IN
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        "series 1 ('pump-2'), field 'start': '2024-03-01T00:00:00.000000900' gives a fraction "
        "of a second finer than the microsecond; the service dates to the microsecond: send "
        "timestamp[us] or whole microseconds"
    )
    zoned = list(pd.date_range("2024-03-01", periods=len(values), freq="h", tz="Europe/Paris"))
    zoned[3] += pd.Timedelta(1, "ns")
    table = pa.table(
        {
            "id": ["pump-1"],
            "values": pa.array([values], pa.list_(pa.float64())),
            "timestamps": pa.array([zoned], pa.list_(pa.timestamp("ns", tz="Europe/Paris"))),
            "covariates.x": pa.array([first["covariates"]["x"]]),
        }
    )
    answer = client.post("/forecast", content=stream_of(table), headers=ARROW_IN)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(
        "series 0 ('pump-1'), field 'timestamps[3]': '2024-03-01T02:00:00.000000001' (UTC) "
        "gives a fraction of a second finer than the microsecond"
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2024-03-01T00:00:00.1234567", "gives a fraction of a second finer than the microsecond"),
        ("1930-01-01T00:00:00+00:19:32.5", "has a UTC offset with a fraction of a second"),
    ],
)
def test_a_time_text_the_schema_refuses_is_said_why_as_in_json(
    client: TestClient, body: Body, text: str, why: str
) -> None:
    """An ISO text in a `start` or `timestamps` column goes through the JSON body's reader;
    where that refuses one for its precision (seven fractional digits, as .NET writes them;
    an offset with a fraction of a second), the Arrow 422 said only that the text "is not an
    ISO 8601 date and time", which the first one is."""
    first = body["series"][0]
    n = len(first["values"])
    for column, field in ((pa.array([text]), "start"), (pa.array([[text] * n]), "timestamps[0]")):
        name = field.split("[")[0]
        table = pa.table({"id": ["pump-1"], "values": [first["values"]], name: column})
        answer = client.post("/forecast", content=stream_of(table), headers=ARROW_IN)
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"].startswith(
            f"series 0 ('pump-1'), field '{field}': '{text}' {why}"
        ), answer.text
    json_body = {"series": [{"id": "pump-1", "values": first["values"], "start": text}]}
    assert why in client.post("/forecast", json=json_body).json()["detail"]


def test_a_finer_time_is_named_at_its_own_series_past_a_null_row_that_spans_values(
    client: TestClient, body: Body
) -> None:
    """The format lets a null list slot span any range of the child values (writers that
    null out rows after building them leave the data there). Those values belong to no
    series: a finer time under the null row is not refused, and one in a later row is named
    at that row and position; counted through the null row's values, the 422 named the
    series before it."""
    first = body["series"][0]
    values, n = first["values"], len(first["values"])
    hour, origin = 3_600_000_000_000, pd.Timestamp("2024-03-01").value
    flat = [origin + hour * k + 7 for k in range(n)]  # row 0 (null): finer times, no one's
    flat += [origin + hour * k for k in range(n)]  # row 1: on the microsecond
    flat += [origin + hour * k + (3 if k == 5 else 0) for k in range(n)]  # row 2: one finer
    stamps = pa.ListArray.from_arrays(
        pa.array([0, n, 2 * n, 3 * n], pa.int32()),
        pa.array(flat, pa.timestamp("ns")),
        mask=pa.array([True, False, False]),
    )
    table = pa.table(
        {
            "id": ["pump-0", "pump-1", "pump-2"],
            "values": [values] * 3,
            "timestamps": stamps,
            "covariates.x": [first["covariates"]["x"]] * 3,
        }
    )
    answer = client.post("/forecast", content=stream_of(table), headers=ARROW_IN)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(
        "series 2 ('pump-2'), field 'timestamps[5]': '2024-03-01T05:00:00.000000003' gives a "
        "fraction of a second finer than the microsecond"
    )
    fine = stamps.values.to_numpy().view(np.int64).copy()
    fine[2 * n + 5] -= 3  # only the null row's values are finer now: read, not refused
    table = table.set_column(
        2, "timestamps", pa.ListArray.from_arrays(
            stamps.offsets, pa.array(fine, pa.timestamp("ns")), mask=pa.array([True, False, False])
        )
    )  # fmt: skip
    assert client.post("/forecast", content=stream_of(table), headers=ARROW_IN).status_code == 200


ARROW_CASES = [
    "null value",
    "value too large",
    "short history",
    "horizon above max",
    "unknown quantile",
    "unknown covariate",
    "missing covariate",
    "covariate length",
    "covariate with future values",
    "covariate too large",
    "null covariate",
    "timestamps length",
    "timestamps not increasing",
    "timestamps off the grid",
    "unparsable freq",
    "other freq",
    "duplicate id",
]


@pytest.mark.parametrize("case", ARROW_CASES)
def test_bad_arrow_input_gets_the_json_bodys_422(client: TestClient, body: Body, case: str) -> None:
    mutate, pattern = CASES[case]
    bad = copy.deepcopy(body)
    bad.pop("quantiles")
    mutate(bad)
    response = client.post("/forecast", content=arrow_of(bad), headers=ARROW_IN)
    assert response.status_code == 422, response.text
    assert pattern in response.json()["detail"]


def test_nan_in_an_arrow_history_is_422(client: TestClient, body: Body) -> None:
    """Arrow carries NaN and inf as numbers (JSON needs the non-standard tokens)."""
    body["series"][1]["values"][5] = float("nan")
    body["series"][1]["values"][6] = float("inf")
    response = client.post("/forecast", content=arrow_of(body), headers=ARROW_IN)
    assert response.status_code == 422
    assert f"{BAD} 'values': holds NaN at position 5" in response.json()["detail"]


def _table(body: Body, **replace: pa.Array) -> pa.Table:
    table = read_table(arrow_of(body))
    for name, column in replace.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(name, column)
    return table


def _not_utf8(*cells: bytes) -> pa.Array:
    """A string column holding these bytes as they are (pyarrow checks them as it builds a
    column from Python, not as it reads a body)."""
    offsets = np.cumsum([0, *map(len, cells)]).astype(np.int32)
    data = [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(cells))]
    return pa.Array.from_buffers(pa.string(), len(cells), data)


def _drop(name: str) -> Callable[[pa.Table], pa.Table]:
    return lambda t: t.drop_columns([name])


TABLE_CASES: dict[str, tuple[Callable[[Body], bytes], str]] = {
    "not arrow": (lambda b: b"PAR1 not an arrow stream", "the body: is not an Arrow IPC stream"),
    "json sent as arrow": (
        lambda b: json.dumps(b).encode(),
        "the body: is not an Arrow IPC stream (application/vnd.apache.arrow.stream)",
    ),
    "unknown column": (
        lambda b: stream_of(_table(b, colour=pa.array(["red", "blue"]))),
        "column 'colour': is not a request column; allowed: id, values, start, freq, "
        "timestamps, covariates.<name>",
    ),
    "timezone column": (  # JSON's field, which a flattened JSON body carries over
        lambda b: stream_of(_table(b, timezone=pa.array(["Europe/London"] * 2))),
        "column 'timezone': is not a request column; allowed: id, values, start, freq, "
        "timestamps, covariates.<name>; an Arrow body names the zone in the type of its "
        "`start` or `timestamps` column (timestamp[ns, tz=Europe/London])",
    ),
    "missing values": (
        lambda b: stream_of(_drop("values")(_table(b))),
        "column 'values': is missing",
    ),
    "missing id": (lambda b: stream_of(_drop("id")(_table(b))), "column 'id': is missing"),
    "values as text": (
        lambda b: stream_of(_table(b, values=pa.array([["1"], ["2"]]))),
        "column 'values': must be lists of floats or integers; got list<item: string>",
    ),
    "values not lists": (
        lambda b: stream_of(_table(b, values=pa.array([1.0, 2.0]))),
        "column 'values': must be lists of floats or integers; got double",
    ),
    "null history": (
        lambda b: stream_of(
            _table(b, values=pa.array([b["series"][0]["values"], None], pa.list_(pa.float64())))
        ),
        f"{BAD} 'values': is null; give the history's values",
    ),
    "null id": (
        lambda b: stream_of(_table(b, id=pa.array(["pump-1", None], pa.string()))),
        "series 1, field 'id': is null",
    ),
    "id not text": (
        lambda b: stream_of(_table(b, id=pa.array([1, 2]))),
        "column 'id': must be strings; got int64",
    ),
    "bad start": (
        lambda b: stream_of(_table(b, start=pa.array([b["series"][0]["start"], "yesterday"]))),
        f"{BAD} 'start': 'yesterday' is not an ISO 8601 date and time",
    ),
    "start as digits": (  # a Unix time to pydantic's lax datetime, a misreading
        lambda b: stream_of(_table(b, start=pa.array([b["series"][0]["start"], "20180601"]))),
        f"{BAD} 'start': '20180601' is not an ISO 8601 date and time",
    ),
    "start as number": (
        lambda b: stream_of(_table(b, start=pa.array([1, 2]))),
        "column 'start': must be timestamps, dates or ISO 8601 strings; got int64",
    ),
    "empty table": (
        lambda b: stream_of(_table(b).slice(0, 0)),
        "the table: holds no series",
    ),
    "bad horizon": (
        lambda b: stream_of(_table(b).replace_schema_metadata({"horizon": "soon"})),
        "metadata 'horizon': must be a positive integer (steps); got 'soon'",
    ),
    "misspelt metadata": (
        lambda b: stream_of(_table(b).replace_schema_metadata({"horizn": "3"})),
        "metadata 'horizn': is not a request setting; allowed: horizon, quantiles",
    ),
    "zero horizon": (
        lambda b: stream_of(_table(b).replace_schema_metadata({"horizon": "0"})),
        "metadata 'horizon': must be a positive integer",
    ),
    "bad quantiles": (
        lambda b: stream_of(_table(b).replace_schema_metadata({"quantiles": "0.5"})),
        "metadata 'quantiles': must be a non-empty JSON list of numbers",
    ),
    # 500s: '²' is a digit to str.isdigit and not to int(); int() refuses 5000 digits;
    # json.loads recurses once per '['
    "superscript horizon": (
        lambda b: stream_of(_table(b).replace_schema_metadata({"horizon": "\u00b2"})),
        "metadata 'horizon': must be a positive integer (steps); got '\u00b2'",
    ),
    "5000-digit horizon": (
        lambda b: stream_of(_table(b).replace_schema_metadata({"horizon": "9" * 5000})),
        "metadata 'horizon': must be a positive integer (steps); got '"
        + "9" * 60
        + "'... (5,000 characters)",
    ),
    "quantiles nested too deeply": (
        lambda b: stream_of(_table(b).replace_schema_metadata({b"quantiles": b"[" * 100000})),
        "metadata 'quantiles': must be a non-empty JSON list of numbers",
    ),
    # three found by an audit as 500s
    "quantile beyond float": (
        lambda b: stream_of(
            _table(b).replace_schema_metadata({"quantiles": "[1" + "0" * 400 + "]"})
        ),
        "metadata 'quantiles': holds a number beyond float range; levels lie in (0, 1)",
    ),
    "start in an unknown zone": (
        lambda b: stream_of(
            _table(b, start=pa.array([0, 0], pa.timestamp("ns", tz="Mars/Olympus")))
        ),
        "column 'start': has the time zone 'Mars/Olympus' in its type (timestamp[ns, "
        "tz=Mars/Olympus]), which names no zone; a zone is an IANA name such as "
        "'Europe/London' or an offset such as '+02:00'",
    ),
    "timestamps in an unknown zone": (
        lambda b: stream_of(
            _table(b, timestamps=pa.array([[0], [0]], pa.list_(pa.timestamp("s", tz="+0200"))))
        ),
        "column 'timestamps': has the time zone '+0200' in its type",
    ),
    "start beyond year 9999": (
        lambda b: stream_of(_table(b, start=pa.array([2**62, 0], pa.timestamp("s")))),
        "column 'start': holds a date or time outside the years 1 to 9999; request times lie "
        "within them",
    ),
    "start beyond year 9999 on its zone's clock": (  # 9999-12-31T23:00Z, a year on at +02:00
        lambda b: stream_of(
            _table(b, start=pa.array([253402297200] * 2, pa.timestamp("s", tz="+02:00")))
        ),
        "column 'start': holds a date or time outside the years 1 to 9999 on its zone's clock",
    ),
    # answered 500 (UnicodeDecodeError): Arrow's reader checks no string's bytes
    "id not utf-8": (
        lambda b: stream_of(_table(b, id=_not_utf8(b"\xffa", b"b"))),
        "column 'id': holds text that is not UTF-8; Arrow strings must be UTF-8",
    ),
    "freq not utf-8": (
        lambda b: stream_of(_table(b, freq=_not_utf8(b"h", b"\xffh"))),
        "column 'freq': holds text that is not UTF-8",
    ),
    "start not utf-8": (
        lambda b: stream_of(_table(b, start=_not_utf8(b"2018-06-01", b"2018\xff"))),
        "column 'start': holds text that is not UTF-8",
    ),
    # answered "is damaged or inconsistent": only plain string columns were told apart
    "timestamps not utf-8": (
        lambda b: stream_of(
            _table(
                b,
                timestamps=pa.ListArray.from_arrays(
                    pa.array([0, 1, 2], pa.int32()), _not_utf8(b"2018-06-01", b"2018\xff")
                ),
            )
        ),
        "column 'timestamps': holds text that is not UTF-8; Arrow strings must be UTF-8",
    ),
    "dictionary id not utf-8": (
        lambda b: stream_of(
            _table(
                b,
                id=pa.DictionaryArray.from_arrays(
                    pa.array([0, 1], pa.int32()), _not_utf8(b"\xffa", b"b")
                ),
            )
        ),
        "column 'id': holds text that is not UTF-8; Arrow strings must be UTF-8",
    ),
    "timestamps with offsets going backwards": (
        lambda b: stream_of(
            _table(
                b,
                timestamps=pa.ListArray.from_arrays(
                    pa.array([0, 1, 2], pa.int32()),
                    pa.Array.from_buffers(
                        pa.string(),
                        2,
                        [None, pa.py_buffer(_offsets(0, 10, 4)), pa.py_buffer(b"2018-06-01")],
                    ),
                ),
            )
        ),
        "column 'timestamps': is damaged or inconsistent in the body: its offsets or lengths "
        "point outside its buffers",
    ),
    "freq too long": (
        lambda b: stream_of(_table(b, freq=pa.array(["100000000000000000000h"] * 2))),
        "'100000000000000000000h' has a multiple too large for any timestamp",
    ),
}


@pytest.mark.parametrize("case", list(TABLE_CASES))
def test_tables_that_are_not_requests_are_422_naming_the_column(
    client: TestClient, body: Body, case: str
) -> None:
    make, pattern = TABLE_CASES[case]
    response = client.post("/forecast", content=make(body), headers=ARROW_IN)
    assert response.status_code == 422, response.text
    assert pattern in response.json()["detail"]


def _file_of(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    out: bytes = sink.getvalue().to_pybytes()
    return out


def _flipped(content: bytes, start: int, stop: int) -> bytes:
    """`content` with the bytes from `start` to `stop` inverted: a damaged message."""
    damaged = bytearray(content)
    damaged[start:stop] = bytes(255 - byte for byte in damaged[start:stop])
    return bytes(damaged)


_STREAM_422 = f"the body: is not an Arrow IPC stream ({ARROW_STREAM}): "
_FILE_422 = f"the body: is not an Arrow IPC file ({ARROW_FILE}): "
BODY_CASES: dict[str, tuple[Callable[[Body], bytes], str, str]] = {
    "empty": (lambda b: b"", ARROW_STREAM, _STREAM_422 + "it is empty"),
    "json": (
        lambda b: json.dumps(b).encode(),
        ARROW_STREAM,
        _STREAM_422 + "it looks like JSON; send JSON with Content-Type: application/json",
    ),
    "parquet": (lambda b: b"PAR1 not an arrow stream", ARROW_STREAM, "it is a Parquet file"),
    "not a stream": (
        lambda b: b"id,values\na,1 2 3\n",
        ARROW_STREAM,
        _STREAM_422 + "it does not begin with a stream's schema message (damaged, or not "
        "written by pyarrow.ipc.new_stream or another Arrow IPC writer?)",
    ),
    "stream cut inside its batch": (
        lambda b: arrow_of(b)[:-100],
        ARROW_STREAM,
        _STREAM_422 + "it stops in the middle of a message (cut short in sending?)",
    ),
    "stream cut inside its schema": (
        lambda b: arrow_of(b)[:50],
        ARROW_STREAM,
        _STREAM_422 + "it stops in the middle of a message",
    ),
    "stream cut inside a length": (
        lambda b: arrow_of(b)[:2],
        ARROW_STREAM,
        _STREAM_422 + "it stops in the middle of a message",
    ),
    "damaged schema": (
        lambda b: _flipped(arrow_of(b), 12, 40),
        ARROW_STREAM,
        _STREAM_422 + "a message in it cannot be decoded (damaged, or not written by "
        "pyarrow.ipc.new_stream or another Arrow IPC writer?)",
    ),
    "file sent as a stream": (
        lambda b: _file_of(read_table(arrow_of(b))),
        ARROW_STREAM,
        _STREAM_422 + f"it is an Arrow IPC file; send it with Content-Type: {ARROW_FILE}",
    ),
    "stream sent as a file": (
        arrow_of,
        ARROW_FILE,
        _FILE_422 + "it does not begin with 'ARROW1', as an Arrow IPC file does; an Arrow IPC "
        f"stream goes with Content-Type: {ARROW_STREAM}",
    ),
    # the other way round: Arrow sent as JSON was told only "bytes that are not UTF-8" (a
    # stream) or "unexpected 'A'" (a file), not what it was and the type that reads it
    "stream sent as JSON": (
        arrow_of,
        "application/json",
        "the body is not valid JSON: it looks like an Arrow IPC stream (it begins with the "
        f"bytes FF FF FF FF); send it with Content-Type: {ARROW_STREAM}",
    ),
    "file sent as JSON": (
        lambda b: _file_of(read_table(arrow_of(b))),
        "application/json",
        f"the body is not valid JSON: it looks like an Arrow IPC file; send it with "
        f"Content-Type: {ARROW_FILE}",
    ),
    "other bytes sent as JSON": (
        lambda b: b"\xff\xfe{}",
        "application/json",
        "the body is not valid JSON: line 1, column 1 holds bytes that are not UTF-8 text",
    ),
    "file cut short": (
        lambda b: _file_of(read_table(arrow_of(b)))[:-20],
        ARROW_FILE,
        _FILE_422 + "it stops before the file's footer (cut short in sending?)",
    ),
    # a file with bytes appended was said to be cut short, sending the client to look for a
    # truncation; the stream's case names the bytes after its end-of-stream marker
    "bytes after a file's end": (
        lambda b: _file_of(read_table(arrow_of(b))) + b"16 more bytes..",
        ARROW_FILE,
        _FILE_422 + "15 bytes follow its closing 'ARROW1' (another file or other bytes "
        "appended?); send one file holding every series, as pyarrow.ipc.new_file writes it",
    ),
    # a count of one in the singular ("1 bytes follow" read as a typo)
    "a newline after a file's end": (
        lambda b: _file_of(read_table(arrow_of(b))) + b"\n",
        ARROW_FILE,
        _FILE_422 + "1 byte follows its closing 'ARROW1' (another file or other bytes ",
    ),
    "damaged footer": (
        lambda b: (lambda f: _flipped(f, len(f) - 60, len(f) - 12))(
            _file_of(read_table(arrow_of(b)))
        ),
        ARROW_FILE,
        _FILE_422 + "its footer or a message in it cannot be decoded (damaged, or not written "
        "by pyarrow.ipc.new_file or another Arrow IPC writer?)",
    ),
}
# What pyarrow's reader says of these bodies, which no answer repeats.
_READER_WORDS = ("metadata bytes", "flatbuffer", "Not an Arrow file", "too small", "Corrupted")


@pytest.mark.parametrize("case", list(BODY_CASES))
def test_bodies_that_are_not_arrow_say_why_in_the_services_words(
    client: TestClient, body: Body, case: str
) -> None:
    """Each 422 said pyarrow's reader's text ('Expected to read 1330795073 metadata bytes,
    but only read 902'); it now says what is wrong with the body and what is read."""
    make, kind, pattern = BODY_CASES[case]
    response = client.post("/forecast", content=make(body), headers={"content-type": kind})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert pattern in detail
    assert not any(words.lower() in detail.lower() for words in _READER_WORDS), detail


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(lambda b: arrow_of({**b, "series": b["series"][1:]}), id="a second stream"),
        pytest.param(lambda b: b"junk", id="junk"),
        pytest.param(lambda b: b"\n", id="a newline"),
    ],
)
def test_bytes_after_the_streams_end_are_422_not_dropped(
    client: TestClient, body: Body, tail: Callable[[Body], bytes]
) -> None:
    """The fuzz walk sent two streams one after the other (two tables a client meant as one
    request): the service answered 200 for the first table's series and dropped the second's
    without a word, as pyarrow's reader stops at the first end-of-stream marker. A JSON body
    with anything after its object is a 422; so is an Arrow stream with anything after its
    end, naming how many bytes were left unread."""
    first = arrow_of({**body, "series": body["series"][:1]})
    extra = tail(body)
    response = client.post("/forecast", content=first + extra, headers=ARROW_IN)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(_STREAM_422), detail
    unread = "1 byte follows" if len(extra) == 1 else f"{len(extra):,} bytes follow"
    assert f"{unread} its end-of-stream marker" in detail
    # The stream alone, and the stream without its end-of-stream marker, still read.
    assert client.post("/forecast", content=first, headers=ARROW_IN).status_code == 200
    assert client.post("/forecast", content=first[:-8], headers=ARROW_IN).status_code == 200


def test_other_body_types_are_415_naming_the_accepted_ones(client: TestClient) -> None:
    response = client.post(
        "/forecast", content=b"id,values\n", headers={"content-type": "text/csv"}
    )
    assert response.status_code == 415
    detail = response.json()["detail"]
    assert "'text/csv'" in detail and ARROW_STREAM in detail and "application/json" in detail
    assert (
        metric_value(
            client,
            "urnn_http_request_duration_seconds_count",
            route="/forecast",
            method="POST",
            status_class="4xx",
        )
        >= 1
    )
    # no Content-Type at all (curl -H 'Content-Type:'): FastAPI would read no body and answer
    # a schema error naming no field; the header is what is wrong
    bare = client.post("/forecast", content=b'{"series": []}')
    assert bare.status_code == 415
    assert bare.json()["detail"].startswith("header 'Content-Type': missing; this endpoint reads")


def test_a_compressed_body_is_415_naming_the_encoding(client: TestClient, body: Body) -> None:
    """A gzip body was read as JSON and answered 'not valid JSON', which never said why."""
    import gzip
    import json as jsonlib

    packed = gzip.compress(jsonlib.dumps(body).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    response = client.post("/forecast", content=packed, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["detail"] == (
        "header 'Content-Encoding': 'gzip' is not read here; send the body uncompressed "
        "(Content-Encoding absent or 'identity')"
    )
    plain = {**headers, "content-encoding": "identity"}
    assert client.post("/forecast", content=jsonlib.dumps(body), headers=plain).status_code == 200
    # bodies the fast routes would have read (JSON that parses, Arrow) get the same 415
    for content, kind in ((jsonlib.dumps(body).encode(), "application/json"),
                          (arrow_of(body), ARROW_STREAM)):  # fmt: skip
        labelled = {"content-type": kind, "content-encoding": "gzip"}
        response = client.post("/forecast", content=content, headers=labelled)
        assert response.status_code == 415, response.text
    # every Content-Encoding line counts, as one list: `identity` then `gzip` on two lines is
    # `identity, gzip` (only the first was read, and the gzip body parsed as JSON: a 422 "not
    # valid JSON" that never said why), on the fast routes and the stack alike
    for content, kind in ((packed, "application/json"), (b"{}", "application/json"),
                          (arrow_of(body), ARROW_STREAM)):  # fmt: skip
        lines = [("content-type", kind), ("content-encoding", "identity"),
                 ("content-encoding", "gzip")]  # fmt: skip
        response = client.post("/forecast", content=content, headers=lines)
        assert response.status_code == 415, response.text
        assert response.json()["detail"].startswith(
            "header 'Content-Encoding': 'identity, gzip' is not read here"
        )
    lines = [("content-type", "application/json"), ("content-encoding", "identity"),
             ("content-encoding", "IDENTITY")]  # fmt: skip
    assert client.post("/forecast", content=jsonlib.dumps(body), headers=lines).status_code == 200


def test_oversized_arrow_body_is_413(client_for: Callable[..., TestClient], body: Body) -> None:
    client = client_for(max_body_bytes=2048)
    response = client.post("/forecast", content=arrow_of(body), headers=ARROW_IN)
    assert response.status_code == 413


def _compressed(table: pa.Table, codec: str, *, file: bool = False) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=codec)
    opened = pa.ipc.new_file if file else pa.ipc.new_stream
    with opened(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    out: bytes = sink.getvalue().to_pybytes()
    return out


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_compressed_arrow_body_counts_what_it_unpacks_to(
    client_for: Callable[..., TestClient], body: Body, codec: str
) -> None:
    """A few KB of compressed zeros unpacked to gigabytes under the 1 MB limit (an audit found
    1.2 GB from a 38 KB body, twice the memory per request); now the limit counts the unpacked
    batches, read from the stream's metadata before pyarrow allocates them."""
    plain = read_table(arrow_of(body))
    client = client_for(max_body_bytes=1_000_000)
    small = _compressed(plain, codec)
    answer = client.post("/forecast", content=small, headers=ARROW_IN)
    assert answer.status_code == 200, answer.text  # a compressed body within the limit is read
    zeros = pa.table(
        {"id": ["a", "b"], "values": pa.array([np.zeros(200_000)] * 2, pa.list_(pa.float64()))}
    )
    for file in (False, True):
        bomb = _compressed(zeros, codec, file=file)
        assert len(bomb) < 50_000
        answer = client.post(
            "/forecast",
            content=bomb,
            headers={"content-type": ARROW_FILE if file else ARROW_STREAM},
        )
        assert answer.status_code == 413, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith("request body too large: its Arrow record batches unpack to 3,2")
        assert detail.endswith(
            "bytes (IPC compression), above the limit of 1,000,000 bytes (URNN_MAX_BODY_BYTES); "
            f"{TOO_LARGE_ADVICE}"
        )


def _prefixes(body: bytes, message_at: int, body_at: int) -> list[tuple[int, int]]:
    """(position, declared length) of each compressed buffer of the message at `message_at`."""
    import struct

    from service import arrow_limits as limits

    message = message_at + limits._u32(body, message_at)
    header = limits._table_field(body, message, 2)
    assert header is not None
    buffers = limits._table_field(body, header, 2)
    assert buffers is not None
    found = []
    for i in range(limits._u32(body, buffers)):
        offset, length = struct.unpack_from("<qq", body, buffers + 4 + 16 * i)
        if length >= 8:
            found.append((body_at + offset, struct.unpack_from("<q", body, body_at + offset)[0]))
    return found


def test_a_damaged_length_or_block_does_not_hide_a_compressed_batch(
    client_for: Callable[..., TestClient],
) -> None:
    """An audit's bypasses of the unpacked-size count: a second buffer declaring a length of
    minus the first's (pyarrow unpacks the first, then refuses the second), and a file whose
    second footer block lies past its end (the count gave up on the whole file and answered
    0; pyarrow unpacks the first batch before it finds the second damaged). 7 KB bodies that
    took 200 MB each; now counted, 413."""
    import struct

    from service import arrow_limits as limits

    client = client_for(max_body_bytes=1_000_000)
    zeros = pa.table({"id": ["a"], "values": pa.array([np.zeros(200_000)], pa.list_(pa.float64()))})
    stream = bytearray(_compressed(zeros, "zstd"))
    at, batches = 0, []
    while at + 8 <= len(stream):  # continuation marker, metadata length, metadata, body
        (length,) = struct.unpack_from("<i", stream, at + 4)
        if length <= 0:
            break
        message_length = limits._message_body_length(bytes(stream), at + 8)
        batches.append((at + 8, at + 8 + length))
        at += 8 + length + message_length
    prefixes = _prefixes(bytes(stream), *batches[-1])  # the record batch, after the schema
    declared, small = max(p[1] for p in prefixes), prefixes[0][0]
    struct.pack_into("<q", stream, small, -declared)
    answer = client.post("/forecast", content=bytes(stream), headers=ARROW_IN)
    assert answer.status_code == 413, answer.text

    two = pa.Table.from_batches([*zeros.to_batches(), *pa.table({"id": ["b"], "values": pa.array(
        [np.zeros(48)], pa.list_(pa.float64()))}).to_batches()])  # fmt: skip
    file = bytearray(_compressed(two, "zstd", file=True))
    end = len(file) - len(limits.ARROW_FILE_MAGIC)
    (footer_length,) = struct.unpack_from("<i", file, end - 4)
    footer_at = end - 4 - footer_length
    read = bytes(file)
    footer = footer_at + limits._u32(read, footer_at)
    blocks = limits._table_field(read, footer, 3)  # the record batches' blocks
    assert blocks is not None and limits._u32(read, blocks) == 2
    struct.pack_into("<q", file, blocks + 4 + 24 + 16, 1 << 40)  # block 1: past the end
    answer = client.post("/forecast", content=bytes(file), headers={"content-type": ARROW_FILE})
    assert answer.status_code == 413, answer.text


def _string_views(rows: int, text: bytes) -> pa.Array:
    """`rows` string views that all point at the same `text` (16 bytes a row)."""
    views = np.zeros((rows, 4), dtype="<i4")
    views[:, 0] = len(text)  # length, then its first 4 bytes; buffer 0, offset 0
    views[:, 1] = int.from_bytes(text[:4].ljust(4, b"\0"), "little", signed=True)
    buffers = [None, pa.py_buffer(views.tobytes()), pa.py_buffer(text)]
    return pa.Array.from_buffers(pa.string_view(), rows, buffers)


def _repeated(rows: int, entry: pa.Array) -> pa.Array:
    """`rows` one-byte indices into a one-entry dictionary."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int8)), entry)


def test_arrow_columns_are_measured_as_they_decode(
    client_for: Callable[..., TestClient], body: Body
) -> None:
    """An audit's finding: a dictionary-encoded column repeats its entry for each row when
    decoded, and string or list views may all point at the same data, so an uncompressed
    400 KB body (one 1,000-character id, 200,000 one-byte indices) took 400 MB of the
    service's memory before the id's length was checked (8 MB: the machine's memory). The
    limit now counts what the columns take once read; nothing is decoded past it."""
    client = client_for(max_body_bytes=1_000_000)
    history = pa.array([np.zeros(48)], pa.list_(pa.float64()))
    rows = 50_000  # 16 bytes a string view: 800 KB
    overlapping = pa.ListViewArray.from_arrays(
        pa.array(np.zeros(rows, np.int32)),
        pa.array(np.full(rows, 1_000, np.int32)),
        pa.array(np.zeros(1_000)),
    )
    bombs = {
        "dictionary id": {"id": _repeated(rows, pa.array(["x" * 1_000])),
                          "values": _repeated(rows, history)},
        "string view id": {"id": _string_views(rows, b"x" * 1_000),
                           "values": _repeated(rows, history)},
        "overlapping list views": {"id": _repeated(rows, pa.array(["x"])),
                                   "values": overlapping},
    }  # fmt: skip
    for case, columns in bombs.items():
        content = stream_of(pa.table(columns))
        assert len(content) < 1_000_000, case  # the plain body limit is not what stops it
        answer = client.post("/forecast", content=content, headers=ARROW_IN)
        assert answer.status_code == 413, (case, answer.text)
        assert answer.json()["detail"].startswith(
            "request body too large: its Arrow columns take more than 1,000,000 bytes once read"
        ), case
    # what pandas and Polars send (a categorical id, string views) is read as before
    plain = read_table(arrow_of(body))
    for id_column in (plain["id"].dictionary_encode(), plain["id"].cast(pa.string_view())):
        sent = plain.set_column(plain.schema.get_field_index("id"), "id", id_column)
        answer = client.post("/forecast", content=stream_of(sent), headers=ARROW_IN)
        assert answer.status_code == 200, answer.text
        assert answer.content == client.post("/forecast", json=body).content


def test_a_dictionary_column_of_no_request_type_is_422_before_decoding(
    client: TestClient,
) -> None:
    structs = pa.array([{"a": 1}])
    table = pa.table({"id": _repeated(3, structs), "values": [[1.0], [2.0], [3.0]]})
    answer = client.post("/forecast", content=stream_of(table), headers=ARROW_IN)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("column 'id': is dictionary<values=struct")


def test_a_file_whose_stream_is_cut_short_is_measured_by_its_footer(
    client_for: Callable[..., TestClient],
) -> None:
    """An audit's bypass: the file's leading message overwritten by an end-of-stream marker.
    The limit's walk stopped there; pyarrow's file reader reads the batches from the footer
    (96 MB from a 4 KB body, answered 200). Files are now measured by their footer."""
    zeros = pa.table(
        {"id": ["a", "b"], "values": pa.array([np.zeros(200_000)] * 2, pa.list_(pa.float64()))}
    )
    doctored = bytearray(_compressed(zeros, "zstd", file=True))
    doctored[8:16] = b"\xff\xff\xff\xff\x00\x00\x00\x00"
    client = client_for(max_body_bytes=1_000_000)
    answer = client.post("/forecast", content=bytes(doctored), headers={"content-type": ARROW_FILE})
    assert answer.status_code == 413, answer.text


def test_unpacked_bytes_reads_every_batch_and_dictionary() -> None:
    from service.arrow_limits import unpacked_bytes

    column = pa.array([np.arange(1000.0)] * 3, pa.list_(pa.float64()))
    table = pa.table({"id": pa.array(["a", "b", "a"]).dictionary_encode(), "values": column})
    batches = pa.Table.from_batches(table.to_batches() * 4)
    plain = stream_of(batches)
    packed = _compressed(batches, "zstd")
    assert len(packed) < len(plain) // 2
    assert unpacked_bytes(packed) >= 4 * 3 * 1000 * 8  # the four batches' values at least
    assert abs(unpacked_bytes(packed) - unpacked_bytes(plain)) < 1_000  # both near the data
    for garbage in (b"", b"not arrow", plain[:40], b"\xff" * 64):
        assert unpacked_bytes(garbage) <= len(garbage)  # pyarrow's reader says what is wrong


def test_openapi_lists_the_arrow_body_and_answer(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/forecast"]["post"]
    assert {ARROW_STREAM, ARROW_FILE, "application/json"} <= set(
        operation["requestBody"]["content"]
    )
    assert ARROW_STREAM in operation["responses"]["200"]["content"]
    assert any(p["name"] == "accept" for p in operation["parameters"])


@pytest.mark.parametrize(
    ("accept", "arrow"),
    [
        (None, False),
        (b"application/json", False),
        (b"*/*", False),
        (ARROW_STREAM.encode(), True),
        (b"application/vnd.apache.arrow.stream, application/json", True),
        (b"application/json, application/vnd.apache.arrow.stream", False),
        (b"application/json;q=0.5, application/vnd.apache.arrow.stream", True),
        (b"application/vnd.apache.arrow.stream;q=0", False),
        (b"text/csv, application/vnd.apache.arrow.stream;q=0.2", True),
        # media types are case-insensitive (RFC 9110, 8.3.1); Content-Type already was
        (b"APPLICATION/VND.APACHE.ARROW.STREAM", True),
        (b"Application/Vnd.Apache.Arrow.Stream, application/json", True),
    ],
)
def test_accept_negotiation(accept: bytes | None, arrow: bool) -> None:
    assert wants_arrow(accept) is arrow


def test_arrow_answer_names_the_version_after_a_reload(
    client_for: Callable[..., TestClient], registry: Registry, body: Body
) -> None:
    """Answers of one shape share a cached schema message; the model block in its metadata
    must still follow a reload."""
    v1 = registry.register("arrow-swap", seed=1)
    v2 = registry.register("arrow-swap", seed=2, alias=None)
    client = client_for(model_uri="models:/arrow-swap@champion")
    body.pop("quantiles")

    def version() -> str:
        response = client.post("/forecast", content=arrow_of(body), headers=ARROW_BOTH)
        assert response.status_code == 200, response.text
        metadata = read_table(response.content).schema.metadata or {}
        return str(metadata[b"model.version"].decode())

    assert version() == v1
    registry.set_alias("arrow-swap", v2)
    reload = client.post("/model/reload", headers={"X-API-Key": API_KEY})
    assert reload.json()["status"] == "reloaded"
    assert version() == v2


def test_hand_built_answers_match_pyarrows_for_every_shape(
    client: TestClient, registry: Registry
) -> None:
    """`service.arrow_answer` writes the stream from numpy buffers once pyarrow's own bytes for
    that shape matched; every shape here must pass that check (else the service silently
    pays pyarrow's price), and what it writes must read back as the JSON answer's numbers."""
    from service import arrow_answer

    dated = history(registry.frame, "dated")
    undated = {
        k: v for k, v in history(registry.frame, "undated", stop=500).items() if k != "start"
    }
    zoned = {**history(registry.frame, "zoned", stop=400), "start": "2024-03-01T00:00:00+01:00"}
    shapes = {
        "one series": {"series": [dated]},
        "a series without dates (null timestamps)": {"series": [dated, undated], "horizon": 5},
        "zoned, and a long id": {"series": [zoned, {**zoned, "id": "é" * 40}], "quantiles": [0.5]},
        "two zones (a UTC column)": {
            "series": [zoned, {**dated, "start": dated["start"] + "+02:00"}]
        },
    }
    arrow_answer._TEMPLATES.clear()
    for name, body in shapes.items():
        expected = client.post("/forecast", json=body).json()
        for _ in range(2):  # the first answer of a shape makes its template, the second uses it
            response = client.post("/forecast", json=body, headers={"accept": ARROW_STREAM})
            assert response.status_code == 200, (name, response.text)
            rows = read_table(response.content).to_pylist()
            for row, want in zip(rows, expected["forecasts"], strict=True):
                assert row["id"] == want["id"], name
                np.testing.assert_array_equal(row["mean"], want["mean"], err_msg=name)
                for key, values in want["quantiles"].items():
                    np.testing.assert_array_equal(row[f"quantiles.{key}"], values, err_msg=name)
                if want["timestamps"] is None:
                    assert row["timestamps"] is None, name
                elif "two zones" in name:  # the same instants, written in UTC
                    got = [pd.Timestamp(t) for t in row["timestamps"]]
                    assert got == [pd.Timestamp(t) for t in want["timestamps"]], name
                else:
                    stamps = [pd.Timestamp(t).isoformat() for t in row["timestamps"]]
                    assert stamps == want["timestamps"], name
    assert len(arrow_answer._TEMPLATES) == len(shapes)
    assert all(t.head is not None for t in arrow_answer._TEMPLATES.values())


def test_streaming_model_reads_arrow_bodies_as_json_ones(
    stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """A streaming kind reads each whole history (not the last lookback): the Arrow body
    must carry it whole, as the JSON one does."""
    client = stream_client_for()
    body = {"series": [history(registry.frame, "s", stop=90, length=90)]}
    by_json = client.post("/forecast", json=body)
    by_arrow = client.post("/forecast", content=arrow_of(body), headers=ARROW_IN)
    assert by_json.status_code == by_arrow.status_code == 200, by_arrow.text
    assert by_arrow.content == by_json.content


def test_view_layouts_are_read_as_lists(client: TestClient, body: Body) -> None:
    """string_view and list_view columns (newer Arrow layouts, which Polars may export) give
    the JSON body's answer; a list view's rows may share and reorder its buffer."""
    series = body["series"]
    values = [s["values"] for s in series]
    flat = pa.array([*values[1], *values[0]], pa.float64())  # rows out of buffer order
    n0, n1 = len(values[0]), len(values[1])
    view = pa.ListViewArray.from_arrays(
        pa.array([n1, 0], pa.int32()), pa.array([n0, n1], pa.int32()), flat
    )
    table = pa.table(
        {
            "id": pa.array([s["id"] for s in series], pa.string_view()),
            "values": view,
            "start": pa.array([s["start"] for s in series], pa.string_view()),
            "covariates.x": pa.array(
                [s["covariates"]["x"] for s in series], pa.list_view(pa.float64())
            ),
        },
        metadata={"quantiles": json.dumps(body["quantiles"])},
    )
    answer = client.post("/forecast", content=stream_of(table), headers=ARROW_IN)
    assert answer.status_code == 200, answer.text
    assert answer.json() == client.post("/forecast", json=body).json()
    # a null inside the second row's view, at its position 3
    flat_with_null = pa.array([*values[1][:3], None, *values[1][4:], *values[0]], pa.float64())
    view = pa.ListViewArray.from_arrays(
        pa.array([n1, 0], pa.int32()), pa.array([n0, n1], pa.int32()), flat_with_null
    )
    bad = stream_of(table.set_column(1, "values", view))
    response = client.post("/forecast", content=bad, headers=ARROW_IN)
    assert response.status_code == 422
    assert f"{BAD} 'values': holds null at position 3" in response.json()["detail"]


def test_an_arrow_answer_to_naive_and_zoned_series_is_refused_not_labelled_utc(
    client: TestClient, body: Body
) -> None:
    """The answer's timestamps column holds one kind of time: a naive series beside a zoned
    one was written as UTC, a zone its caller never gave (an audit's)."""
    naive, zoned = copy.deepcopy(body["series"][0]), copy.deepcopy(body["series"][1])
    zoned["start"] = pd.Timestamp(zoned["start"]).tz_localize("+01:00").isoformat()
    mixed = {"series": [naive, zoned]}
    answer = client.post("/forecast", json=mixed, headers={"accept": ARROW_STREAM})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        "series 0 ('pump-1'), field 'timestamps': naive, while series 1 ('pump-2') carries a "
        "zone: an Arrow answer's timestamps column holds one kind of time; give every series "
        "a zone (or none), send them in separate requests, or ask for JSON (Accept: "
        "application/json)"
    )
    assert client.post("/forecast", json=mixed).status_code == 200  # JSON keeps each as sent
    # two zones: one kind of time, written in UTC
    naive["start"] = pd.Timestamp(naive["start"]).tz_localize("+02:00").isoformat()
    answer = client.post("/forecast", json=mixed, headers={"accept": ARROW_STREAM})
    assert answer.status_code == 200, answer.text
    column = read_table(answer.content).column("timestamps")
    assert str(column.type.value_type.tz) == "UTC"


def _patched(content: bytes, old: bytes, new: bytes, before: bytes = b"") -> bytes:
    """`content` with the one `old` that `before` follows replaced by `new` (a buffer is
    told by the one after it: the string data after a string's offsets)."""
    assert content.count(old + before) == 1, (old, content.count(old + before))
    return content.replace(old + before, new + before)


def _one_row_stream(series_id: str = "pump-00000001") -> bytes:
    """A one-row request whose id is 13 characters: the id column's offsets are [0, 13]."""
    table = pa.table(
        {
            "id": pa.array([series_id], pa.string()),
            "values": pa.array([[float(v) for v in range(64)]], pa.list_(pa.float64())),
            "freq": pa.array(["h"], pa.string()),
        }
    )
    return stream_of(table)


def _offsets(*positions: int) -> bytes:
    return np.array(positions, "<i4").tobytes()


_OFFSETS_13 = _offsets(0, 13)
_INCONSISTENT = (
    ": is damaged or inconsistent in the body: its offsets or lengths point outside its "
    "buffers; send the table as pyarrow.ipc.new_stream writes it"
)
DAMAGED_CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    # The process died in array.to_pylist() (a read a gigabyte past the buffer).
    "string offsets past the data": (
        lambda: _patched(_one_row_stream(), _OFFSETS_13, _offsets(0, 1 << 30), b"pump-"),
        "column 'id'" + _INCONSISTENT,
    ),
    # 500 SystemError
    "string offsets going backwards": (
        lambda: _patched(_one_row_stream(), _OFFSETS_13, _offsets(0, -16), b"pump-"),
        "column 'id'" + _INCONSISTENT,
    ),
    "list offsets past the values": (
        lambda: _patched(
            _one_row_stream(), _offsets(0, 64), _offsets(0, 1 << 20), np.arange(2.0).tobytes()
        ),
        "column 'values'" + _INCONSISTENT,
    ),
    "an id that is not UTF-8": (
        lambda: _patched(_one_row_stream("pump-0000000Z"), b"pump-0000000Z", b"pump-0000000\xff"),
        "column 'id': holds text that is not UTF-8; Arrow strings must be UTF-8",
    ),
    # 500 UnicodeDecodeError from table.column_names
    "a column name that is not UTF-8": (
        lambda: _patched(_one_row_stream(), b"freq", b"fre\xff"),
        "the body: has a column name that is not UTF-8; Arrow field names must be UTF-8",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGED_CASES))
def test_a_stream_whose_contents_contradict_themselves_is_422(
    client: TestClient, case: str
) -> None:
    """pyarrow's reader checks a message's framing, not its buffers: these bodies read, then
    crashed the process or answered 500 when a cell or column name was read."""
    make, pattern = DAMAGED_CASES[case]
    response = client.post("/forecast", content=make(), headers=ARROW_IN)
    assert response.status_code == 422, response.text
    assert pattern in response.json()["detail"]


def test_a_date64_cell_holding_a_time_of_day_is_422_saying_so(
    client: TestClient, body: Body
) -> None:
    """date64 counts milliseconds but holds whole days (Arrow's format; JavaScript's Arrow
    writes a Date's time of day into it). Full validation refuses such a cell; the 422 said
    the column's offsets or lengths pointed outside its buffers, which sent the client
    looking for damage in transit."""
    values = body["series"][0]["values"]
    day, n = 86_400_000, len(values)
    noon = pa.array([day * 19_000 + 12 * 3_600_000], pa.int64()).view(pa.date64())
    table = pa.table({"id": ["pump-1"], "values": [values], "start": noon})
    response = client.post("/forecast", content=stream_of(table), headers=ARROW_IN)
    assert response.status_code == 422, response.text
    said = (
        "holds date64 cells that are not whole days (milliseconds since 1970 that 86,400,000 "
        "does not divide); send dates as whole days, or times as timestamp[ms]"
    )
    assert response.json()["detail"] == f"column 'start': {said}"
    hours = pa.array([day * 19_000 + 3_600_000 * k for k in range(n)], pa.int64())
    stamps = pa.ListArray.from_arrays(pa.array([0, n], pa.int32()), hours.view(pa.date64()))
    table = pa.table({"id": ["pump-1"], "values": [values], "timestamps": stamps})
    response = client.post("/forecast", content=stream_of(table), headers=ARROW_IN)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == f"column 'timestamps': {said}"


def test_a_damaged_arrow_file_is_422_in_its_own_words(client: TestClient) -> None:
    table = pa.ipc.open_stream(pa.py_buffer(_one_row_stream())).read_all()
    content = _patched(_file_of(table), _OFFSETS_13, _offsets(0, -16), b"pump-")
    response = client.post("/forecast", content=content, headers={"content-type": ARROW_FILE})
    assert response.status_code == 422, response.text
    assert "column 'id': is damaged or inconsistent in the body" in response.text
    assert "pyarrow.ipc.new_file" in response.text


def test_the_decoded_size_count_allocates_nothing_a_body_does_not_bound(
    client_for: Callable[..., TestClient],
) -> None:
    """A review of the count's first version: a size-0 fixed list of dictionaries declares
    rows no buffer holds (624 bytes took 3.8 GB in the count itself), a list view of booleans
    was counted a value at a time (9 MB took 1.6 GB), a dictionary of string views is not
    decodable (a 500), and dictionary deltas (each a longer copy of the dictionary, kept by
    every batch before it) were not counted. Each is now refused before any allocation."""
    client = client_for(max_body_bytes=1_000_000)
    rows = 10_000_000
    entries = pa.DictionaryArray.from_arrays(pa.array([], pa.int8()), pa.array([1.0]))
    no_bytes = pa.Array.from_buffers(pa.list_(entries.type, 0), rows, [None], children=[entries])
    content = stream_of(pa.table({"id": pa.nulls(rows), "values": no_bytes}))
    assert len(content) < 1_000  # rows that no buffer holds
    answer = client.post("/forecast", content=content, headers=ARROW_IN)
    assert answer.status_code == 413, answer.text

    flags = pa.ListViewArray.from_arrays(
        pa.array([0], pa.int32()), pa.array([8], pa.int32()), pa.array([True] * 8)
    )
    answer = client.post(
        "/forecast", content=stream_of(pa.table({"id": ["a"], "values": flags})), headers=ARROW_IN
    )
    assert answer.status_code == 422, answer.text
    assert "a dictionary or view layout no request column has" in answer.json()["detail"]

    views = pa.DictionaryArray.from_arrays(
        pa.array([0], pa.int8()), pa.array(["a"], pa.string_view())
    )
    table = pa.table({"id": views, "values": pa.array([np.zeros(48)], pa.list_(pa.float64()))})
    answer = client.post("/forecast", content=stream_of(table), headers=ARROW_IN)
    assert answer.status_code == 422, answer.text

    kind = pa.dictionary(pa.int32(), pa.string())
    schema = pa.schema([("id", kind), ("values", pa.list_(pa.float64()))])
    words = [f"{k:05d}" + "x" * 4_000 for k in range(150)]
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(emit_dictionary_deltas=True)
    with pa.ipc.new_stream(sink, schema, options=options) as writer:
        for k in range(1, len(words) + 1):
            ids = pa.DictionaryArray.from_arrays(pa.array([k - 1], pa.int32()), words[:k])
            writer.write_batch(pa.record_batch([ids, pa.array([[1.0]])], schema=schema))
    content = sink.getvalue().to_pybytes()
    assert len(content) < 1_000_000  # 150 deltas of 4 KB; read, they hold 45 MB
    answer = client.post("/forecast", content=content, headers=ARROW_IN)
    assert answer.status_code == 413, answer.text
    assert "unpack to" in answer.json()["detail"]


def test_per_batch_dictionaries_of_histories_and_polars_categoricals_are_read(
    client: TestClient, body: Body
) -> None:
    """A review's findings: a stream whose batches each carry their own dictionary of
    histories was a 500 (pyarrow cannot merge list dictionaries), and Polars' categorical id
    (a dictionary of string views) was refused. Both now read as the plain table does."""
    plain = read_table(arrow_of(body)).combine_chunks()
    at = plain.schema.get_field_index("values")
    encoded = pa.dictionary(pa.int8(), plain["values"].type)
    schema = plain.schema.set(at, pa.field("values", encoded))
    assert plain.num_rows > 1
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        for row in range(plain.num_rows):  # one batch per series, each with its dictionary
            batch = plain.slice(row, 1).to_batches()[0]
            history = batch.column(at)
            values = pa.DictionaryArray.from_arrays(pa.array([0], pa.int8()), history)
            columns = [*batch.columns[:at], values, *batch.columns[at + 1 :]]
            writer.write_batch(pa.record_batch(columns, schema=schema))
    answer = client.post("/forecast", content=sink.getvalue().to_pybytes(), headers=ARROW_IN)
    assert answer.status_code == 200, answer.text
    assert answer.content == client.post("/forecast", json=body).content
    polars_id = pa.DictionaryArray.from_arrays(
        pa.array(range(plain.num_rows), pa.uint32()), plain["id"].cast(pa.string_view()).chunk(0)
    )
    sent = plain.set_column(plain.schema.get_field_index("id"), "id", polars_id)
    answer = client.post("/forecast", content=stream_of(sent), headers=ARROW_IN)
    assert answer.status_code == 200, answer.text
    assert answer.content == client.post("/forecast", json=body).content
