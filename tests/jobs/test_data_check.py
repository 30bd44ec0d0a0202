"""POST /jobs and the schedules load, validate and split the job's data at submission, as the
worker will (jobs.spec.check_job_data -> training.pipeline.prepare_training): a spec the data
cannot train is a 422 naming the field, with the loader's or splitter's message, instead of a
job that fails in a worker later. Files above URNN_JOB_DATA_CHECK_MAX_BYTES keep the header
check and are accepted with a warning; the worker still checks every run."""

from __future__ import annotations

import gzip
import inspect
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from jobs import spec as job_spec
from jobs.db import Database
from jobs.spec import JobSpec, JobSpecError, check_job_data, validate_spec
from service.main import create_app
from service.routes import jobs as job_routes
from service.routes import schedules as schedule_routes
from tests.jobs.conftest import HORIZON, tiny_spec
from tests.jobs.test_api import KEY, NoModels
from training.data import LoadConfig, header_columns, load_data
from training.split import SplitConfig, rows_for_one_window_each
from training.validation import UnreadableFileError
from urnn_forecast.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's httpx deprecation note, as in tests/service
    from fastapi.testclient import TestClient

UNITS = [f"u{i}" for i in range(1, 13)]  # 12: more than the 10 a message lists


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: what is checked here is the data, not the database."""
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, loader=NoModels())) as test_client:
        yield test_client


@pytest.fixture
def fleet_csv(tmp_path: Path) -> Path:
    """A long-format file: 12 units of 200 hourly rows (`unit`, `timestamp`, `load`)."""
    rng = np.random.default_rng(0)
    stamps = pd.date_range("2024-01-01", periods=200, freq="h")
    frames = [
        pd.DataFrame({"unit": unit, "timestamp": stamps, "load": rng.normal(size=200).cumsum()})
        for unit in UNITS
    ]
    path = tmp_path / "fleet.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path


def fleet_spec(csv: Path, **train: Any) -> dict[str, Any]:
    """tiny_spec on the fleet, split by series (the units named in `train`, if any)."""
    spec = tiny_spec(csv, target="load", covariates=[])
    spec["config"]["load"] = {"series_col": "unit"}
    spec["config"]["train"].update(split_method="series", **train)
    return spec


def submit(client: TestClient, spec: dict[str, Any]) -> Any:
    return client.post("/jobs", json=spec, headers=KEY)


def refused(client: TestClient, spec: dict[str, Any]) -> str:
    """The 422's detail; nothing was stored."""
    answer = submit(client, spec)
    assert answer.status_code == 422, answer.text
    assert client.get("/jobs").json()["total"] == 0
    detail: str = answer.json()["detail"]
    return detail


def test_a_test_series_the_file_lacks_is_refused_naming_the_field_and_the_series_it_holds(
    client: TestClient, fleet_csv: Path
) -> None:
    detail = refused(client, fleet_spec(fleet_csv, test_series=["u99"]))
    assert detail.startswith(
        "field 'config.train.test_series': test_series names 1 series the data does not hold "
        "('u99'); its 12 series are 'u1', 'u2', 'u3'"
    ), detail
    assert detail.endswith("'u9', 'u10' ...")  # the first 10, in id order, then shortened
    long_id = "u" * 100_000  # quoted as every sent value is (docs/serving.md), not whole
    detail = refused(client, fleet_spec(fleet_csv, test_series=[long_id]))
    assert f"does not hold ({'u' * 60!r}... (100,000 characters)); its 12 series" in detail
    detail = refused(client, fleet_spec(fleet_csv, test_series=["u3"], val_series=["u0"]))
    assert detail.startswith("field 'config.train.val_series': val_series names 1 series")
    # named right, the same file and spec are accepted
    answer = submit(client, fleet_spec(fleet_csv, test_series=["u3"], val_series=["u4"]))
    assert answer.status_code == 202, answer.text
    assert answer.json()["warnings"] == []  # the file was checked in full


@pytest.mark.parametrize(
    ("train", "field"),
    [
        ({"test_series": ["u3"], "train_fraction": 0.5}, "train_fraction"),
        ({"test_series": ["u3"], "val_series": ["u4"], "val_fraction": 0.2}, "val_fraction"),
    ],
)
def test_a_fraction_the_named_series_replace_is_refused_not_ignored(
    client: TestClient, fleet_csv: Path, train: dict[str, Any], field: str
) -> None:
    """Named test_series make every other unit train (but the validating ones), and named
    val_series the validating ones: a train_fraction or val_fraction beside them was
    accepted and read by nothing."""
    detail = refused(client, fleet_spec(fleet_csv, **train))
    assert detail.startswith(f"field 'config.train.{field}': {field} is not read"), detail


def test_a_series_too_short_for_lookback_and_horizon_is_refused_with_the_minimum(
    client: TestClient, ett_csv: Path
) -> None:
    spec = tiny_spec(ett_csv)
    spec["config"]["model"].update(lookback=96, horizon=48)
    spec["config"]["train"] = {"backtest_step": 48, "backtest_windows": 1}
    minimum = rows_for_one_window_each(SplitConfig(lookback=96), 48)
    assert minimum > 400  # the file's rows
    detail = refused(client, spec)
    assert detail.startswith(
        f"field 'config.model.lookback': ETTh1-400.csv: every series is shorter than "
        f"min_length={minimum:,} (the longest has 400 rows)"
    ), detail
    assert "a shorter look-back or horizon" in detail
    # where the user's own min_length decides, it is the field named
    spec = tiny_spec(ett_csv)
    spec["config"]["load"] = {"min_length": 500}
    detail = refused(client, spec)
    assert detail.startswith("field 'config.load.min_length': ETTh1-400.csv: every series is")


@pytest.mark.parametrize(
    ("train", "field", "advice"),
    [
        # 0.001 of 400 rows holds no window of 24 + 6: no look-back can help, the fraction can
        (
            {"train_fraction": 0.001},
            "config.train.train_fraction",
            "the train share decides: a larger --train-fraction (0.1 needs 300 rows) keeps more "
            "series (no look-back or horizon would)",
        ),
        (
            {"val_fraction": 0.001},
            "config.train.val_fraction",
            "the val share decides: a larger --val-fraction (0.05 needs 120 rows) keeps more "
            "series (no look-back or horizon would)",
        ),
    ],
)
def test_a_series_too_short_for_the_users_own_fraction_names_that_fraction(
    client: TestClient, ett_csv: Path, train: dict[str, Any], field: str, advice: str
) -> None:
    """An audit's train_fraction of 0.001 was refused naming config.model.lookback, with
    only a shorter look-back or horizon as advice; the fraction is what made the part short."""
    spec = tiny_spec(ett_csv)
    spec["config"]["train"].update(train)
    detail = refused(client, spec)
    assert detail.startswith(f"field '{field}': ETTh1-400.csv: every series is shorter"), detail
    assert detail.endswith(advice), detail


def test_a_sliver_of_a_test_share_is_refused_at_once(client: TestClient, ett_csv: Path) -> None:
    """train_fraction 0.7 and val_fraction 0.29999 (a test share of 1e-5): the rows each part
    needs were found by counting up one row at a time from a bound that left the test share
    out, so POST /jobs held its thread (and a core) for 51 s; at 0.2999999, for hours. The
    bound counts the test share too."""
    started = time.monotonic()
    minimum = rows_for_one_window_each(
        SplitConfig(lookback=24, train_fraction=0.7, val_fraction=0.2999999), 6
    )
    assert time.monotonic() - started < 1.0
    assert minimum > 6 / 1e-7 * 0.99  # the test share holds the horizon
    spec = tiny_spec(ett_csv)
    spec["config"]["train"].update(train_fraction=0.7, val_fraction=0.2999999)
    started = time.monotonic()
    detail = refused(client, spec)
    assert time.monotonic() - started < 10.0
    assert "every series is shorter than min_length=" in detail, detail


@pytest.mark.parametrize(
    ("val_fraction", "split", "remedy"),
    [
        (
            0.2999,
            "a test share of 0.0001 of the rows: the longest series (400 rows) splits "
            "280 / 119 / 1, a test span of 1 step",
            "a smaller val_fraction (--val-fraction 0.25 leaves the longest series a test span "
            "of 20 steps) or train_fraction (--train-fraction 0.65 leaves the longest series a "
            "test span of 21 steps)",
        ),
        (
            0.2999999,
            "a test share of 1e-07 of the rows: the longest series (400 rows) splits "
            "280 / 119 / 1, a test span of 1 step",
            "a smaller val_fraction (--val-fraction 0.25 leaves the longest series a test span "
            "of 20 steps) or train_fraction (--train-fraction 0.65 leaves the longest series a "
            "test span of 21 steps)",
        ),
    ],
)
def test_a_test_share_too_small_names_the_fractions_the_span_and_what_it_needs(
    client: TestClient, ett_csv: Path, val_fraction: float, split: str, remedy: str
) -> None:
    """train_fraction 0.7 and val_fraction 0.2999 on 400 rows leave the test span 1 row: the
    422 named config.model.lookback and advised a shorter look-back, which cannot help (the
    test span needs the horizon; its look-back is context from val). It names the fractions
    that made the test span short, its length, what it needs and why, and the fix."""
    spec = tiny_spec(ett_csv)
    spec["config"]["train"].update(train_fraction=0.7, val_fraction=val_fraction)
    detail = refused(client, spec)
    assert detail.startswith("field 'config.train.val_fraction': ETTh1-400.csv: every"), detail
    assert "config.model.lookback" not in detail
    assert (
        f"the test share decides: train_fraction 0.7 and val_fraction {val_fraction} leave "
        f"{split}; a test span needs at least the horizon, 6 steps (its look-back of 24 "
        "steps is read from the val rows before it)"
    ) in detail, detail
    assert detail.endswith(
        f"{remedy} keeps more series, as does a horizon of at most 1 step (--horizon 1)"
    ), detail


@pytest.mark.parametrize(
    ("pad", "said"),
    [
        (" {} ", "the path begins and ends with whitespace, and is read as given: give it without"),
        ("{}\n", "the path ends with whitespace, and is read as given: give it without"),
        ("   ", "the path is only whitespace: give the history file's path"),
    ],
)
def test_a_data_path_with_spaces_around_it_is_quoted_and_said_to_have_them(
    client: TestClient, ett_csv: Path, pad: str, said: str
) -> None:
    """' /data/x.csv ' (a path pasted with spaces) was answered "field 'data':  /data/x.csv :
    no such file", the spaces invisible in the message; "   " as "field 'data':    : ..."."""
    data = pad.format(ett_csv)
    detail = refused(client, {**tiny_spec(ett_csv), "data": data})
    assert detail == f"field 'data': {data!r}: no such file ({said})", detail


@pytest.mark.parametrize("name", ["train_fraction", "val_fraction"])
@pytest.mark.parametrize("fraction", [1e-20, 5e-324])
def test_a_vanishing_fraction_is_a_422_not_a_check_that_failed_unexpectedly(
    client: TestClient, ett_csv: Path, name: str, fraction: float
) -> None:
    """Below about 1e-17 the rows a part needs overflowed (OverflowError: the bound past
    what an index holds; `need / 5e-324` is infinite): the submission was accepted with the
    warning that the data check "failed unexpectedly", and the worker's run failed with a
    traceback. The bound is now exact and the answer the same 422 as for 0.001."""
    fractions: dict[str, Any] = {name: fraction}
    split = SplitConfig(lookback=24, **fractions)
    minimum = rows_for_one_window_each(split, 6)
    assert minimum > 10**18
    spec = tiny_spec(ett_csv)
    spec["config"]["train"][name] = fraction
    detail = refused(client, spec)
    assert detail.startswith(f"field 'config.train.{name}': ETTh1-400.csv: every series is"), detail


def _with_row(csv: Path, tmp_path: Path, row: int, column: str, value: str) -> Path:
    frame = pd.read_csv(csv, dtype=str)
    frame.loc[row - 1, column] = value
    path = tmp_path / f"changed-{column}.csv"
    frame.to_csv(path, index=False)
    return path


DATA_MISTAKES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "an unparseable timestamp deep in the file",
        {"row": 300, "column": "date", "value": "2016-13-45 99:00:00"},
        "data",
        "column 'date', data row 300 (1-based, header not counted): cannot parse "
        "'2016-13-45 99:00:00' as a timestamp",
    ),
    (
        "a timestamp the declared format does not read",
        {"config": {"load": {"timestamp_format": "%d/%m/%Y %H:%M"}}},
        "config.load.timestamp_format",
        "with timestamp_format='%d/%m/%Y %H:%M'",
    ),
    (
        "a frequency the timestamps are not on",
        {"config": {"load": {"freq": "D"}}},
        "config.load.freq",
        "is not on the 'D' grid",
    ),
    (
        "a gap longer than max_gap",
        {"drop": range(100, 140)},
        "config.load.max_gap",
        "40 missing steps at 'h'",
    ),
    (
        "a streaming model on a series cut at a long gap",
        {
            "drop": range(100, 140),
            "config": {"load": {"on_long_gap": "split"}, "model": {"kind": "urnn-stream"}},
        },
        "config.load.on_long_gap",
        "was cut at a long gap into 2 segments",
    ),
    (
        "a value that is not a number",
        {"row": 250, "column": "OT", "value": "n/a?"},
        "data",
        "column 'OT', data row 250 (1-based, header not counted): 'n/a?' is not a number",
    ),
    (
        "more backtest windows than the test span holds",
        {"config": {"train": {"backtest_step": HORIZON, "backtest_windows": 500}}},
        "config.train.backtest_windows",
        "has room in its test span for",
    ),
    (
        "a season longer than the shortest training span",
        {"config": {"train": {"season_length": 1000}}},
        "config.train.season_length",
        "set season_length (--season-length) to at most",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "field", "said"), DATA_MISTAKES, ids=[c[0] for c in DATA_MISTAKES]
)
def test_data_mistakes_found_only_by_the_loader_are_422s_naming_the_field(
    client: TestClient,
    ett_csv: Path,
    tmp_path: Path,
    case: str,
    change: dict[str, Any],
    field: str,
    said: str,
) -> None:
    spec = tiny_spec(ett_csv)
    if "row" in change:
        spec["data"] = str(
            _with_row(ett_csv, tmp_path, change["row"], change["column"], change["value"])
        )
    if "drop" in change:
        frame = pd.read_csv(ett_csv).drop(index=list(change["drop"]))
        spec["data"] = str(tmp_path / "gap.csv")
        frame.to_csv(spec["data"], index=False)
    for section, values in change.get("config", {}).items():
        spec["config"].setdefault(section, {}).update(values)
    detail = refused(client, spec)
    assert detail.startswith(f"field {field!r}: "), detail
    assert said in detail, detail


def test_a_file_above_the_size_setting_is_accepted_saying_the_worker_checks_it(
    db: Database, settings: Settings, fleet_csv: Path
) -> None:
    small = settings.model_copy(update={"job_data_check_max_bytes": 1024})
    assert fleet_csv.stat().st_size > 1024
    bad = fleet_spec(fleet_csv, test_series=["u99"])  # a 422 when checked in full
    with TestClient(create_app(small, loader=NoModels())) as client:
        answer = submit(client, bad)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["status"] == "queued"
        assert body["warnings"] == [
            "data: only the header was checked at submission: the file is larger than "
            "URNN_JOB_DATA_CHECK_MAX_BYTES (1,024 bytes); the worker loads and splits the whole "
            "file when the job runs, and fails the job with the reason if the data cannot train "
            "it (a series the file lacks, series too short, a timestamp that does not parse)"
        ]
        # stored with the job: GET and the list say what the POST said
        stored = client.get(f"/jobs/{body['id']}").json()
        assert (stored["status"], stored["warnings"]) == ("queued", body["warnings"])
        assert client.get("/jobs").json()["items"][0]["warnings"] == body["warnings"]
        # the header is still checked
        answer = submit(client, {**bad, "target": "nope"})
        assert answer.status_code == 422 and "field 'target'" in answer.json()["detail"]
        # a replay answers the job as stored, its warnings included (the data is not checked
        # again: a replay says what the first call said)
        keyed = {**KEY, "Idempotency-Key": "big-file"}
        first = client.post("/jobs", json=bad, headers=keyed)
        assert first.json()["warnings"] == body["warnings"]
        again = client.post("/jobs", json=bad, headers=keyed)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
    never = settings.model_copy(update={"job_data_check_max_bytes": 0})
    with TestClient(create_app(never, loader=NoModels())) as client:
        answer = submit(client, bad)
        assert answer.status_code == 202, answer.text
        assert answer.json()["warnings"][0].startswith(
            "data: only the header was checked at submission (URNN_JOB_DATA_CHECK_MAX_BYTES=0); "
            "the worker loads and splits the whole file"
        )


def gzipped(csv: Path) -> Path:
    packed = csv.with_name(csv.name + ".gz")
    with csv.open("rb") as plain, gzip.open(packed, "wb") as out:
        shutil.copyfileobj(plain, out)
    return packed


def test_a_gzip_file_small_on_disk_is_sized_by_what_it_unpacks_to(
    db: Database, settings: Settings, fleet_csv: Path
) -> None:
    """A 534 KB .csv.gz of 10 million rows was loaded in full by the API process at
    submission (25 s, 2.5 GB more memory, kept after the answer): the setting read its size
    on disk only."""
    packed = gzipped(fleet_csv)
    limit = (packed.stat().st_size + fleet_csv.stat().st_size) // 2
    assert packed.stat().st_size < limit < fleet_csv.stat().st_size
    small = settings.model_copy(update={"job_data_check_max_bytes": limit})
    bad = fleet_spec(packed, test_series=["u99"])  # a 422 when checked in full
    with TestClient(create_app(small, loader=NoModels())) as client:
        answer = submit(client, bad)
        assert answer.status_code == 202, answer.text
        assert answer.json()["warnings"] == [
            "data: only the header was checked at submission: the file is larger unpacked "
            f"than URNN_JOB_DATA_CHECK_MAX_BYTES ({limit:,} bytes); " + job_spec.WORKER_CHECKS
        ]
    # unpacked within the limit, it is checked in full as before
    roomy = settings.model_copy(update={"job_data_check_max_bytes": fleet_csv.stat().st_size})
    with TestClient(create_app(roomy, loader=NoModels())) as client:
        answer = submit(client, bad)
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"].startswith("field 'config.train.test_series'")


def test_a_parquet_file_counts_eight_bytes_a_cell_however_well_it_packs(
    tmp_path: Path, fleet_csv: Path
) -> None:
    """A 185 KB Parquet file of 20 million repeated rows took the API process to 4.2 GB."""
    frame = pd.read_csv(fleet_csv)
    frame["unit"] = "u1"  # one long run of one value: a few bytes in the file
    frame["load"] = 1.0
    path = tmp_path / "fleet.parquet"
    frame.to_parquet(path)
    cells = len(frame) * len(frame.columns)
    assert path.stat().st_size < cells * job_spec.PARQUET_CELL_BYTES
    assert job_spec.unpacked_size(path, limit=1) >= cells * job_spec.PARQUET_CELL_BYTES
    spec = validate_spec(JobSpec.model_validate(fleet_spec(path, test_series=["u99"])))
    limit = cells * job_spec.PARQUET_CELL_BYTES - 1
    (warning,) = check_job_data(spec, max_bytes=limit)
    assert warning.startswith(
        "data: only the header was checked at submission: the file is "
        "larger unpacked than URNN_JOB_DATA_CHECK_MAX_BYTES"
    )


def test_a_damaged_gzip_file_is_still_checked_in_full_for_its_message(
    client: TestClient, tmp_path: Path, fleet_csv: Path
) -> None:
    """Sizing it must not hide what is wrong with it: the full check says the file is cut."""
    packed = gzipped(fleet_csv)
    cut = packed.read_bytes()[: packed.stat().st_size // 2]
    packed.write_bytes(cut)
    detail = refused(client, fleet_spec(packed))
    assert detail.startswith("field 'data': fleet.csv.gz"), detail


def gzip_member(data: bytes, *, name: bytes = b"", comment: bytes = b"") -> bytes:
    """One gzip member of `data`, its header naming `name` and `comment` where given."""
    flags = (8 if name else 0) | (16 if comment else 0)
    header = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\0\xff"
    header += (name + b"\0" if name else b"") + (comment + b"\0" if comment else b"")
    body = gzip.compress(data, mtime=0)[10:]  # gzip.compress writes a header of 10 bytes
    return header + body


def test_concatenated_gzip_members_are_sized_whole_and_checked_in_full(
    client: TestClient, fleet_csv: Path
) -> None:
    """`cat a.gz b.gz` is a gzip file pandas reads whole: it is sized as all its members
    unpack to, names, comments and padding included, and checked as any other file."""
    lines = fleet_csv.read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    packed = fleet_csv.with_name("fleet.csv.gz")
    packed.write_bytes(
        gzip_member(b"".join(lines[:half]), name=b"a.csv")
        + b"\0" * 512
        + gzip_member(b"".join(lines[half:]), name=b"b.csv", comment=b"the rest")
    )
    assert pd.read_csv(packed).shape == pd.read_csv(fleet_csv).shape
    assert job_spec.unpacked_size(packed, limit=10**9) == fleet_csv.stat().st_size
    detail = refused(client, fleet_spec(packed, test_series=["u99"]))
    assert detail.startswith("field 'config.train.test_series'"), detail


def test_a_gzip_file_of_many_members_is_refused_naming_the_limit(
    client: TestClient, fleet_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 10 MB file of 500,000 empty gzip members took the API 3.2 s of CPU to size (and
    pandas as long again to load): members past GZIP_MEMBERS_FREE, and past one per
    GZIP_BYTES_PER_MEMBER bytes unpacked, are a 422 naming the limit."""
    monkeypatch.setattr(job_spec, "GZIP_MEMBERS_FREE", 20)
    monkeypatch.setattr(job_spec, "GZIP_BYTES_PER_MEMBER", 10**9)
    packed = gzipped(fleet_csv)
    packed.write_bytes(packed.read_bytes() + gzip_member(b"") * 20)
    assert pd.read_csv(packed).shape == pd.read_csv(fleet_csv).shape  # a file pandas reads
    detail = refused(client, fleet_spec(packed))
    assert detail.startswith("field 'data': "), detail
    assert "more than 20 gzip members" in detail and "GZIP_MEMBERS_FREE" in detail, detail
    # as many members, each with its share of data, pass
    monkeypatch.setattr(job_spec, "GZIP_BYTES_PER_MEMBER", 1)
    assert job_spec.unpacked_size(packed, limit=10**9) == fleet_csv.stat().st_size


@pytest.mark.parametrize(
    "member",
    [
        gzip_member(b"unit,timestamp,load\n", name=b"n" * 2000),
        gzip_member(b"unit,timestamp,load\n", comment=b"c" * 2000),
        gzip_member(b"unit,timestamp,load\n") + b"\0" * 2000,
    ],
    ids=["name", "comment", "padding"],
)
def test_gzip_header_text_and_padding_read_a_byte_at_a_time_are_bounded(
    client: TestClient, fleet_csv: Path, monkeypatch: pytest.MonkeyPatch, member: bytes
) -> None:
    """A gzip header with a 10 MB name took the API 0.8 s to size (Python's gzip reads it
    a byte at a time, as it does the zero padding after a member): a 422 past
    GZIP_BYTEWISE_MAX such bytes."""
    monkeypatch.setattr(job_spec, "GZIP_BYTEWISE_MAX", 1000)
    packed = fleet_csv.with_name("fleet.csv.gz")
    packed.write_bytes(member + gzip.compress(fleet_csv.read_bytes().split(b"\n", 1)[1]))
    detail = refused(client, fleet_spec(packed))
    assert detail.startswith(f"field 'data': {packed}: its gzip headers' names"), detail
    assert "1,000 bytes" in detail and "GZIP_BYTEWISE_MAX" in detail, detail


@pytest.mark.parametrize("where", ["name", "members"])
def test_the_header_check_bounds_a_gzip_files_start_before_reading_it(
    fleet_csv: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The header check (validate_spec, before the data check, and alone for a file over
    URNN_JOB_DATA_CHECK_MAX_BYTES) read a 10 MB gzip name a byte at a time, and walked every
    empty member before the first rows: it is refused there as in the data check."""
    monkeypatch.setattr(job_spec, "GZIP_BYTEWISE_MAX", 1000)
    monkeypatch.setattr(job_spec, "GZIP_MEMBERS_FREE", 20)
    packed = fleet_csv.with_name("fleet.csv.gz")
    rows = gzip.compress(fleet_csv.read_bytes())
    if where == "name":
        packed.write_bytes(gzip_member(b"", name=b"n" * 2000) + rows)
    else:
        packed.write_bytes(gzip_member(b"") * 30 + rows)
    assert pd.read_csv(packed).shape == pd.read_csv(fleet_csv).shape
    with pytest.raises(JobSpecError) as refusal:
        validate_spec(JobSpec.model_validate(fleet_spec(packed)))
    assert refusal.value.field == "data"
    limit = "GZIP_BYTEWISE_MAX" if where == "name" else "GZIP_MEMBERS_FREE"
    assert limit in refusal.value.message, refusal.value.message


def test_schedules_check_the_file_as_it_is_at_creation_and_at_a_job_change(
    db: Database, settings: Settings, client: TestClient, fleet_csv: Path
) -> None:
    good = {"cron": "0 3 * * *", "job": fleet_spec(fleet_csv, test_series=["u3"])}
    bad = {**good, "job": fleet_spec(fleet_csv, test_series=["u99"])}
    answer = client.post("/schedules", json=bad, headers=KEY)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(
        "field 'job.config.train.test_series': test_series names 1 series the data does not hold"
    )
    assert client.get("/schedules").json()["total"] == 0  # nothing stored
    made = client.post("/schedules", json=good, headers=KEY)
    assert made.status_code == 201, made.text
    assert made.json()["warnings"] == []  # checked in full
    url = f"/schedules/{made.json()['id']}"
    answer = client.patch(url, json={"job": bad["job"]}, headers=KEY)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("field 'job.config.train.test_series': ")
    assert client.get(url).json() == made.json()  # a refused change changes nothing
    # above the size setting: created, saying so; stored, so GET says it too
    small = settings.model_copy(update={"job_data_check_max_bytes": 1024})
    with TestClient(create_app(small, loader=NoModels())) as big:
        answer = big.post("/schedules", json=bad, headers=KEY)
        assert answer.status_code == 201, answer.text
        assert answer.json()["warnings"][0].startswith("data: only the header was checked")
        assert big.get(f"/schedules/{answer.json()['id']}").json() == answer.json()
        changed = big.patch(url, json={"job": bad["job"]}, headers=KEY)
        assert changed.status_code == 200 and len(changed.json()["warnings"]) == 1
        assert big.get(url).json()["warnings"] == changed.json()["warnings"]
        # no job change, no check: the stored warnings still describe the job, and stay
        paused = big.patch(url, json={"paused": True}, headers=KEY)
        assert paused.status_code == 200
        assert paused.json()["warnings"] == changed.json()["warnings"]
        listed = {s["id"]: s["warnings"] for s in big.get("/schedules").json()["items"]}
        assert listed == {
            made.json()["id"]: changed.json()["warnings"],
            answer.json()["id"]: answer.json()["warnings"],
        }
    # a job change checked in full clears them
    cleared = client.patch(url, json={"job": good["job"]}, headers=KEY)
    assert cleared.status_code == 200 and cleared.json()["warnings"] == []
    assert client.get(url).json()["warnings"] == []


def test_the_data_folders_are_checked_again_before_the_file_is_read(
    ett_csv: Path, tmp_path: Path
) -> None:
    """URNN_JOB_DATA_DIRS: a link re-pointed outside between the header check and the full
    check is refused before it is read, saying nothing of what it points to."""
    folder, outside = tmp_path / "data", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    shutil.copy(ett_csv, outside / "secret.csv")
    inner = folder / "inner"
    inner.mkdir()
    shutil.copy(ett_csv, inner / "history.csv")
    checked = validate_spec(
        JobSpec.model_validate(tiny_spec(inner / "history.csv")), data_folders=[folder]
    )
    shutil.rmtree(inner)
    inner.symlink_to(outside)  # the folder the checked path runs through, re-pointed
    (outside / "history.csv").write_text((outside / "secret.csv").read_text())
    with pytest.raises(JobSpecError, match="outside the folders jobs may read") as raised:
        check_job_data(checked, data_folders=[folder], max_bytes=1 << 30)
    assert raised.value.field == "data"


def test_a_file_gone_since_the_header_check_is_refused(ett_csv: Path, tmp_path: Path) -> None:
    path = Path(shutil.copy(ett_csv, tmp_path / "going.csv"))
    checked = validate_spec(JobSpec.model_validate(tiny_spec(path)))
    path.unlink()
    with pytest.raises(JobSpecError) as raised:
        check_job_data(checked, max_bytes=1 << 30)
    assert (raised.value.field, raised.value.message) == (
        "data",
        f"{path}: cannot be read (No such file or directory)",
    )


def test_busy_checks_and_unexpected_failures_leave_the_data_to_the_worker(
    client: TestClient, ett_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_spec, "FULL_CHECK_WAIT_SECONDS", 0.0)
    held = [job_spec._full_checks.acquire() for _ in range(job_spec.FULL_CHECKS_AT_ONCE)]
    try:
        answer = submit(client, tiny_spec(ett_csv))
    finally:
        for _ in held:
            job_spec._full_checks.release()
    assert answer.status_code == 202, answer.text
    assert answer.json()["warnings"][0].startswith(
        "data: only the header was checked at submission: the service was busy checking other "
        "submissions' data for 0 s; the worker loads"
    )

    def broken(config: Any) -> None:
        raise RuntimeError("a bug that quotes a cell: hunter2")

    monkeypatch.setattr("training.pipeline.prepare_training", broken)
    answer = submit(client, tiny_spec(ett_csv))
    assert answer.status_code == 202, answer.text
    said = answer.json()["warnings"][0]
    assert "the full check failed unexpectedly (RuntimeError, logged by the service)" in said
    assert "hunter2" not in said
    assert client.get("/jobs").json()["total"] == 2


def test_the_submitting_routes_run_in_the_threadpool_not_on_the_event_loop() -> None:
    """The data check blocks for as long as the file takes to load: FastAPI runs plain
    functions in its threadpool; an `async def` here would run it on the event loop."""
    for route in (
        job_routes.submit_job,
        schedule_routes.create_schedule,
        schedule_routes.change_schedule,
    ):
        assert not inspect.iscoroutinefunction(route), route.__name__


@pytest.mark.slow
def test_the_worker_still_checks_the_data_a_submission_left_to_it(
    tmp_path: Path, fleet_csv: Path, mlflow_settings: Settings
) -> None:
    """A file above the size setting (or changed since submission) is checked when the job
    runs: the job fails with the message a full check at submission would have given."""
    from tests.jobs.conftest import worker_settings
    from tests.jobs.test_child_process import run_one_job

    settings = worker_settings(tmp_path, mlflow_settings)
    spec = validate_spec(JobSpec.model_validate(fleet_spec(fleet_csv, test_series=["u99"])))
    assert check_job_data(spec, max_bytes=1024)[0].startswith("data: only the header")
    job = run_one_job(settings, spec.model_dump())
    assert job.status == "failed"
    assert job.error is not None
    assert "test_series names 1 series the data does not hold ('u99')" in job.error, job.error


def test_the_service_warns_at_start_when_job_data_may_come_from_any_file(
    db: Database, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Unconfined, the job API's answers quote from any file the service can read (its header,
    series ids, a bad cell): a key holder could read files that are not data. Say so at start."""
    assert settings.api_key is not None and settings.job_data_dirs is None
    with (
        caplog.at_level("WARNING", logger="service.state"),
        TestClient(create_app(settings, loader=NoModels())),
    ):
        pass
    assert any("URNN_JOB_DATA_DIRS is not set" in r.getMessage() for r in caplog.records)
    caplog.clear()
    confined = settings.model_copy(update={"job_data_dirs": str(tmp_path)})
    with (
        caplog.at_level("WARNING", logger="service.state"),
        TestClient(create_app(confined, loader=NoModels())),
    ):
        pass
    assert not any("URNN_JOB_DATA_DIRS" in r.getMessage() for r in caplog.records)


def test_the_service_warns_at_start_when_a_job_data_folder_is_not_there(
    db: Database, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder that is missing (a volume not mounted) made every job 'outside the folders
    jobs may read' with nothing in the log to say why."""
    gone = tmp_path / "not-mounted"
    confined = settings.model_copy(update={"job_data_dirs": f"{tmp_path},{gone}"})
    with (
        caplog.at_level("WARNING", logger="service.state"),
        TestClient(create_app(confined, loader=NoModels())),
    ):
        pass
    said = [r.getMessage() for r in caplog.records if "URNN_JOB_DATA_DIRS" in r.getMessage()]
    assert len(said) == 1 and f"are not folders here: {gone};" in said[0], said


def test_a_column_named_twice_is_a_422_only_where_the_job_reads_it(
    ett_csv: Path, tmp_path: Path
) -> None:
    """An export that repeats 'Status' after every tag is accepted (the loader used to refuse
    any repeated name); the target named twice is refused at submission naming the file, a
    JobSpecError on field 'data' as before, not an unexpected error of the header check."""
    frame = pd.read_csv(ett_csv)
    tagged = frame.assign(Status="ok")
    tagged.insert(3, "Status ", "ok")
    path = tmp_path / "tagged.csv"
    tagged.rename(columns={"Status ": "Status"}).to_csv(path, index=False)
    assert validate_spec(JobSpec.model_validate(tiny_spec(path))).data == str(path)
    twice = tmp_path / "twice.csv"
    frame.assign(extra=frame["OT"]).rename(columns={"extra": "OT"}).to_csv(twice, index=False)
    with pytest.raises(JobSpecError) as raised:
        validate_spec(JobSpec.model_validate(tiny_spec(twice)))
    assert raised.value.field == "data"
    assert raised.value.message.startswith("twice.csv: the header names column 'OT' twice")


def test_a_target_written_with_a_trailing_space_is_named_as_written_in_the_422(
    ett_csv: Path, tmp_path: Path
) -> None:
    path = tmp_path / "spaced.csv"
    pd.read_csv(ett_csv).rename(columns={"OT": "OT "}).to_csv(path, index=False)
    with pytest.raises(JobSpecError) as raised:
        validate_spec(JobSpec.model_validate(tiny_spec(path)))
    assert raised.value.field == "target"
    assert raised.value.message.endswith(
        "; 'OT' is written 'OT ' in the file: give the name as written, or fix the header"
    )


def test_numbers_that_may_group_thousands_are_a_warning_of_the_submission(
    client: TestClient, tmp_path: Path
) -> None:
    """An export with '.' between thousands (1.606 for 1,606 MW) in a ';' file reads as
    decimals. The data report said so, but only in the run's report after training: the job's
    `warnings` were empty, so a user submitting through the API learnt it after the fact."""
    values = 1_000 + np.arange(200) * 7 + 3  # 1,003 ... 2,396 MW; 180 end in a non-zero digit
    rows = "".join(
        f"{stamp:%Y-%m-%d %H:%M};{v // 1000}.{v % 1000:03d}\n"
        for stamp, v in zip(pd.date_range("2024-01-01", periods=200, freq="h"), values, strict=True)
    )
    path = tmp_path / "export.csv"
    path.write_text("Datetime;MW\n" + rows)
    spec = tiny_spec(path, target="MW", covariates=[])
    spec["config"]["load"] = {"sep": ";", "timestamp_col": "Datetime"}
    answer = submit(client, spec)
    assert answer.status_code == 202, answer.text
    (warning,) = answer.json()["warnings"]
    assert warning.startswith(
        "data: export.csv: column 'MW': 180 of its numbers have exactly three decimals "
        "(such as 1.003) and none has more, read with '.' as the decimal mark: if '.' "
        "separates thousands in this file (1.606 for 1,606), remove those marks first"
    ), warning
    stored = client.get(f"/jobs/{answer.json()['id']}", headers=KEY).json()
    assert stored["warnings"] == [warning]
    # written with plain decimal points, the same data says nothing
    path.write_text("Datetime;MW\n" + rows.replace(".", "").replace(";1", ";1.5"))
    assert submit(client, spec).json()["warnings"] == []


def _fifo_in_place_of(path: Path) -> None:
    """`path`, a checked data file, swapped for a named pipe that no one writes to."""
    path.unlink()
    os.mkfifo(path)


def _within(seconds: float, call: Callable[[], object], fifo: Path) -> BaseException | None:
    """What `call` raised, run in a thread that must end within `seconds`: an open of the pipe
    waits for a writer for ever, so one is opened (and closed: end of file) if it does not."""
    raised: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            raised.append(None)
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # lets the blocked open return
        thread.join(10)
        pytest.fail(f"still opening the named pipe after {seconds} s")
    return raised[0]


@pytest.mark.parametrize("name", ["swapped.csv", "swapped.csv.gz", "swapped.parquet"])
def test_a_data_file_swapped_for_a_named_pipe_after_its_check_is_refused_not_waited_on(
    ett_csv: Path, tmp_path: Path, name: str
) -> None:
    """The file is checked by name (a regular file), then opened by name: swapped for a named
    pipe in between, the open waited for a writer for ever (the API's check held a threadpool
    thread and a check slot; a worker's training never ended, its lease renewed). Each open
    of the data is now checked on the opened descriptor."""
    path = tmp_path / name
    frame = pd.read_csv(ett_csv)
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    checked = validate_spec(JobSpec.model_validate(tiny_spec(path)))
    _fifo_in_place_of(path)
    said = f"{path.name}: not a regular file (a named pipe); the data must be a regular file"
    error = _within(10, lambda: check_job_data(checked, max_bytes=1 << 30), path)
    assert isinstance(error, JobSpecError), error
    assert (error.field, error.message) == ("data", said)
    for read in (lambda: load_data(path, LoadConfig(target="OT")), lambda: header_columns(path)):
        error = _within(10, read, path)
        assert isinstance(error, UnreadableFileError), error
        assert str(error) == said


@pytest.mark.parametrize("units", [2, 12])
def test_a_long_file_sent_without_series_col_is_refused_at_series_col(
    client: TestClient, fleet_csv: Path, tmp_path: Path, units: int
) -> None:
    """A fleet sent without `config.load.series_col`: the loader asks "Does the file hold
    several series? Name their id column with series_col", and the 422 named the field
    `config.load.duplicates`, a setting no value of which reads the file right. Two series
    (every timestamp twice) and twelve (more than two rows under each) alike."""
    path = tmp_path / "few.csv"
    pd.read_csv(fleet_csv).query("unit in @UNITS[:@units]").to_csv(path, index=False)
    spec = tiny_spec(path, target="load", covariates=[])
    detail = refused(client, spec)
    assert detail.startswith("field 'config.load.series_col': "), detail
    assert "Name their id column with series_col" in detail, detail
    # duplicates "error" on the fleet read as one series: series_col too, its column named
    spec["config"]["load"] = {"duplicates": "error"}
    detail = refused(client, spec)
    assert detail.startswith("field 'config.load.series_col': "), detail
    assert "series_col (--series-col); column 'unit' looks like one" in detail, detail
    # a duplicates refusal that is not about series ids still names duplicates
    spec["config"]["load"] = {"series_col": "unit", "duplicates": "error"}
    doubled = tmp_path / "doubled.csv"
    frame = pd.read_csv(path)
    pd.concat([frame, frame.iloc[:1]]).to_csv(doubled, index=False)
    spec["data"] = str(doubled)
    assert refused(client, spec).startswith("field 'config.load.duplicates': ")
