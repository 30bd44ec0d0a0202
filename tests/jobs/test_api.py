"""The job and schedule endpoints: 202/404/409/422 contracts on SQLite and PostgreSQL, and one
real retraining job from the API alone: submit, watch a worker train and register it, serve it."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from jobs.db import Database, head_revision, make_engine, upgrade
from jobs.worker import Worker
from service.loader import NoModelError
from service.main import create_app
from service.served import ModelRef
from tests.jobs.conftest import HORIZON, LOOKBACK, tiny_spec
from training.mlflow_model import ForecastPredictor
from urnn_forecast.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's httpx deprecation note, as in tests/service
    from fastapi.testclient import TestClient

KEY = {"X-API-Key": "test-key"}
JSON = {"content-type": "application/json"}


class NoModels:
    """A registry with nothing in it: the service starts not ready, the job API still works."""

    def resolve(self, uri: str) -> ModelRef:
        raise NoModelError(f"nothing registered at {uri}")

    def load(self, ref: ModelRef) -> ForecastPredictor:
        raise AssertionError("never resolved")


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, loader=NoModels())) as test_client:
        yield test_client


def submit(client: TestClient, spec: dict[str, Any]) -> Any:
    return client.post("/jobs", json=spec, headers=KEY)


def test_submit_list_get_cancel(client: TestClient, ett_csv: Path) -> None:
    assert client.post("/jobs", json=tiny_spec(ett_csv)).status_code == 401
    answer = submit(client, tiny_spec(ett_csv))
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body == {"id": body["id"], "status": "queued", "warnings": []}
    job_id = body["id"]
    more = [submit(client, tiny_spec(ett_csv)).json()["id"] for _ in range(2)]

    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "queued" and job["attempts"] == 0 and job["warnings"] == []
    assert job["parameters"]["target"] == "OT"
    assert job["parameters"]["data"] == str(ett_csv.resolve())
    for key in ("created_at", "started_at", "finished_at", "worker_id", "mlflow_run_id",
                "registered_version", "promoted", "error", "log_tail"):  # fmt: skip
        assert key in job

    page = client.get("/jobs", params={"limit": 2}).json()
    assert page["total"] == 3 and [j["id"] for j in page["items"]] == more[::-1]
    rest = client.get("/jobs", params={"limit": 2, "offset": 2}).json()
    assert [j["id"] for j in rest["items"]] == [job_id]

    assert client.post(f"/jobs/{job_id}/cancel").status_code == 401
    cancelled = client.post(f"/jobs/{job_id}/cancel", headers=KEY)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"/jobs/{job_id}/cancel", headers=KEY)
    assert again.status_code == 409 and "already ended" in again.json()["detail"]
    assert client.get("/jobs", params={"status": "cancelled"}).json()["total"] == 1
    assert client.get("/jobs", params={"status": "queued"}).json()["total"] == 2
    assert client.get("/jobs", params={"status": "lost"}).status_code == 422
    for offset in (2**63, 10**23):  # overflowed the driver's 64-bit integer: a 500
        beyond = client.get("/jobs", params={"offset": offset})
        assert beyond.status_code == 422 and "offset" in beyond.json()["detail"], beyond.text
    assert client.get("/jobs/no-such-job").status_code == 404
    assert client.post("/jobs/no-such-job/cancel", headers=KEY).status_code == 404


def _copy(csv: Path, name: str, sep: str = ",") -> str:
    """The ETT stand-in under another name, or written with another separator."""
    copy = csv.with_name(name)
    copy.write_text(csv.read_text().replace(",", sep))
    return str(copy)


def _header_only(csv: Path) -> str:
    copy = csv.with_name("header-only.csv")
    copy.write_text(csv.read_text().splitlines()[0] + "\n\n")
    return str(copy)


def _with(csv: Path, section: str, **values: Any) -> dict[str, Any]:
    """tiny_spec with `values` added to one section of its config."""
    spec = tiny_spec(csv)
    spec["config"][section] = {**spec["config"].get(section, {}), **values}
    return spec


BAD_SPECS: list[tuple[str, Callable[[Path], dict[str, Any]], str]] = [
    (  # accepted, then failed in the worker (an audit's)
        "a header and no rows",
        lambda csv: tiny_spec(csv, data=_header_only(csv)),
        "field 'data': header-only.csv: the file has a header and no data rows",
    ),
    (
        "a ';'-separated file read with ','",
        lambda csv: tiny_spec(csv, data=_copy(csv, "semicolons.csv", ";")),
        "field 'config.load.sep': semicolons.csv: the header reads as one column",
    ),
    (
        "an unsupported suffix",
        lambda csv: tiny_spec(csv, data=_copy(csv, "history.xlsx")),
        "field 'data': history.xlsx: unsupported file type '.xlsx' (an Excel workbook: save the "
        "sheet as 'CSV UTF-8' in Excel); allowed suffixes: .csv",
    ),
    ("no file", lambda csv: tiny_spec(csv, data="/no/such/history.csv"), "field 'data'"),
    (  # was "field 'data': : not a regular file (a folder, pipe or device)": "" is "."
        "an empty path",
        lambda csv: tiny_spec(csv, data=""),
        "field 'data': must be at least 1 character(s) long; got 0",
    ),
    (  # was "field 'config.target': must be a JSON object, not a string": no word of where
        "the target inside config",
        lambda csv: {**tiny_spec(csv), "config": {"target": "OT"}},
        "field 'config': holds 'target', a field of the job itself: give it at the top level",
    ),
    # three an audit answered with 500s
    (
        "a path too long",
        lambda csv: tiny_spec(csv, data="/tmp/" + "a" * 5000 + ".csv"),
        "(5009 chars): cannot be used as a path (File name too long)",
    ),
    (
        "a home that does not exist",
        lambda csv: tiny_spec(csv, data="~nosuchuser/x.csv"),
        "field 'data': ~nosuchuser/x.csv: cannot be used as a path",
    ),
    (
        "a frequency beyond any timestamp",
        lambda csv: tiny_spec(csv, config={"load": {"freq": "100000000000000000000h"}}),
        "'100000000000000000000h' has a multiple too large for any timestamp",
    ),
    ("no target column", lambda csv: tiny_spec(csv, target="oil_temp"), "field 'target'"),
    ("no covariate column", lambda csv: tiny_spec(csv, covariates=["XX"]), "field 'covariates'"),
    ("target missing", lambda csv: {"data": str(csv)}, "field 'target'"),
    (
        "unknown top-level key",
        lambda csv: {**tiny_spec(csv), "epochs": 3},
        "field 'epochs': unknown field; the allowed fields are data, target, covariates, config, "
        "promote, nproc",
    ),
    ("unknown section", lambda csv: tiny_spec(csv, config={"optim": {}}), "field 'config'"),
    (
        "unknown model key",
        lambda csv: tiny_spec(csv, config={"model": {"hidden": 8}}),
        "field 'config.model.hidden': unknown field(s) ['hidden']",
    ),
    (
        "a model no worker can hold",
        lambda csv: tiny_spec(csv, config={"model": {"hidden_size": 10**8}}),
        "field 'config.model.hidden_size': hidden_size must be an integer from 1 to 8,192, got "
        "100000000",
    ),
    (
        "an ensemble that trains for ever",
        lambda csv: tiny_spec(csv, config={"model": {"ensemble": 10**8}}),
        "field 'config.model.ensemble': ensemble must be an integer from 1 to 100, got 100000000",
    ),
    (
        "bad fit value",
        lambda csv: tiny_spec(csv, config={"fit": {"device": "tpu"}}),
        "field 'config.fit.device': device must be one of 'auto', 'cpu', 'cuda'; got 'tpu'",
    ),
    (
        "a learning rate past float32 (queued, then failed in Adam's step)",
        lambda csv: tiny_spec(csv, config={"fit": {"lr": 1e300}}),
        "field 'config.fit.lr': lr must be a finite number of magnitude at most 3.403e+38 "
        "(float32, "
        "what the model trains in), got 1e+300",
    ),
    (
        "more quantile levels than percentiles",
        lambda csv: tiny_spec(
            csv, config={"model": {"quantiles": [i / 20002 for i in range(1, 20002)]}}
        ),
        "field 'config.model.quantiles': quantiles must hold at most 99 levels (every "
        "percentile), got "
        "20,001",
    ),
    (
        "bad train key",
        lambda csv: tiny_spec(csv, config={"train": {"metric": "r2"}}),
        "field 'config.train.metric': metric must be one of 'mae', 'mse', 'rmse', 'smape', "
        "'mase', 'pinball_mean'; got 'r2'",
    ),
    (
        "unknown split",
        lambda csv: tiny_spec(csv, config={"train": {"split_method": "random"}}),
        "field 'config.train.split_method': split_method must be one of 'fractions', 'ett', "
        "'series'; got",
    ),
    (
        "fractions that leave no test share",
        lambda csv: tiny_spec(csv, config={"train": {"train_fraction": 0.95}}),
        "field 'config.train.train_fraction': train_fraction and val_fraction must each lie in "
        "(0, 1)",
    ),
    (
        "no rows between backtest origins",
        lambda csv: tiny_spec(csv, config={"train": {"backtest_step": 0}}),
        "field 'config.train.backtest_step': backtest_step must be an integer >= 1; got 0",
    ),
    (
        "no backtest windows",
        lambda csv: tiny_spec(csv, config={"train": {"backtest_windows": 0}}),
        "field 'config.train.backtest_windows': backtest_windows must be None (every origin) or "
        "an integer >= 1",
    ),
    (
        "a promotion margin of the whole score",
        lambda csv: tiny_spec(csv, config={"train": {"min_improvement": 1.0}}),
        "field 'config.train.min_improvement': min_improvement must lie in [0, 1) (0.02: 2 % "
        "below the "
        "champion's score); got 1.0",
    ),
    (
        "no rows between training windows",
        lambda csv: tiny_spec(csv, config={"train": {"train_stride": 0}}),
        "field 'config.train.train_stride': train_stride must be an integer >= 1; got 0",
    ),
    (
        "no epochs (the QA pass's case: the section alone was named)",
        lambda csv: _with(csv, "fit", max_epochs=0),
        "field 'config.fit.max_epochs': max_epochs must be >= 1, got 0",
    ),
    (
        "a fraction that leaves no test share, the other left at its default",
        lambda csv: _with(csv, "train", val_fraction=2),
        "field 'config.train.val_fraction': train_fraction and val_fraction must each lie in "
        "(0, 1)",
    ),
    (
        "an unknown load option",
        lambda csv: _with(csv, "load", max_gaps=3),
        "field 'config.load.max_gaps': unknown field(s) ['max_gaps']; known: ",
    ),
    (
        "a frequency as a number",
        lambda csv: _with(csv, "load", freq=5),
        "field 'config.load.freq': must be a string or null; got 5",
    ),
    (
        "a number as text",
        lambda csv: tiny_spec(csv, config={"fit": {"max_epochs": "ten"}}),
        "field 'config.fit.max_epochs': must be an integer; got 'ten'",
    ),
    (
        "quantiles as one string",
        lambda csv: tiny_spec(csv, config={"model": {"quantiles": "0.5"}}),
        "field 'config.model.quantiles': must be a list of numbers; got '0.5'",
    ),
    (
        "promote as text",
        lambda csv: {**tiny_spec(csv), "promote": "yes"},
        "promote",
    ),
    (
        "the timestamp column as the target",
        lambda csv: {**tiny_spec(csv), "target": "date"},
        "column 'date' is the timestamp and cannot also be the target",
    ),
    (
        "a timestamp column the file lacks",
        lambda csv: tiny_spec(csv, config={"load": {"timestamp_col": "nope"}}),
        "field 'config.load.timestamp_col': ETTh1-400.csv: no column 'nope'",
    ),
    (
        "an empty experiment name",
        lambda csv: tiny_spec(csv, config={"train": {"experiment": ""}}),
        "field 'config.train.experiment': experiment must be a non-empty name",
    ),
    (
        "named test units under a split by time",
        lambda csv: tiny_spec(csv, config={"train": {"test_series": ["ETTh1"]}}),
        "field 'config.train.test_series': test_series applies to split method 'series' only",
    ),
    (
        "named test units as one string",
        lambda csv: tiny_spec(
            csv, config={"train": {"split_method": "series", "test_series": "3,4"}}
        ),
        "field 'config.train.test_series': must be a list of strings; got '3,4'",
    ),
    (
        "an empty registered name",
        lambda csv: tiny_spec(csv, config={"train": {"registered_name": " "}}),
        "field 'config.train.registered_name': registered_name must be None (log without "
        "registering) or a",
    ),
    # PostgreSQL's text holds no NUL: refused here, not found by a failing worker
    (
        "a NUL in a covariate",
        lambda csv: tiny_spec(csv, covariates=["HUFL\x00"]),
        "field 'covariates[0]': holds a NUL character",
    ),
    (
        "a NUL in the experiment",
        lambda csv: tiny_spec(csv, config={"train": {"experiment": "e\x00"}}),
        "field 'config.train.experiment': holds a NUL character",
    ),
    (
        "a NUL in the data path",
        lambda csv: tiny_spec(csv, data=f"{csv}\x00"),
        "field 'data': holds a NUL character",
    ),
    (
        "a channel embedding, which cannot be served",
        lambda csv: tiny_spec(csv, config={"model": {"n_channels": 3, "decoder": "pmf"}}),
        "field 'config.model.n_channels': n_channels=3: a channel embedding needs the channel id",
    ),
    (
        "a covariate twice",
        lambda csv: tiny_spec(csv, covariates=["HUFL", "HULL", "HUFL"]),
        "field 'covariates': ['HUFL'] listed more than once",
    ),
    (
        # accepted before 2026-12-07, and trained on the ETT split's fixed 12/4/4 months
        "a train fraction under the ETT split, which reads none",
        lambda csv: tiny_spec(csv, config={"train": {"split_method": "ett", "val_fraction": 0.3}}),
        "field 'config.train.val_fraction': val_fraction is read by the splits 'fractions' "
        "and 'series' only",
    ),
    (
        # named 'config.load', a section the body did not have, before 2026-12-07
        "the target among the covariates",
        lambda csv: tiny_spec(csv, covariates=["HUFL", "OT"]),
        "field 'covariates': 'OT' is the target",
    ),
    (
        "decoder search for a kind without decoders",
        lambda csv: tiny_spec(
            csv, config={"model": {"kind": "linear"}, "fit": {"decoder_search": True}}
        ),
        "field 'config.fit.decoder_search': decoder 'auto' (fit.decoder_search) applies to the "
        "kinds urnn",
    ),
    # a fuzzing round's (2026-12-05): accepted, then on PostgreSQL a job that registered its
    # model at every attempt and failed, or a value the worker replaced without a word
    (
        "a registered name longer than the job table holds",
        lambda csv: _with(csv, "train", registered_name="m" * 230),
        "field 'config.train.registered_name': must be a name of at most 200 characters for a "
        "job; got 'mmmm",
    ),
    (
        "a registered name longer than MLflow takes",
        lambda csv: _with(csv, "train", registered_name="m" * 300),
        "registered_name must be a name of at most 256 characters (MLflow's limit)",
    ),
    # accepted, then refused by MLflow once the job had trained (a security walk, 2026-12-06)
    (
        "a registered name MLflow reads as a path",
        lambda csv: _with(csv, "train", registered_name=".."),
        "field 'config.train.registered_name': registered_name '..' is not a name MLflow's "
        "registry accepts: "
        "it cannot be '.' nor start with '..'",
    ),
    (
        "a registered name no models:/ URI can name (the service could never serve it)",
        lambda csv: _with(csv, "train", registered_name="plant@a"),
        "field 'config.train.registered_name': registered_name 'plant@a' cannot be read back from "
        "MLflow's "
        "registry",
    ),
    (
        "a covariate named like a column of the registered model's predict rows",
        lambda csv: tiny_spec(csv, covariates=["HUFL", "start"]),
        "covariate 'start' has the name of a column of the registered model's predict rows",
    ),
    (
        "a run name, which the worker sets",
        lambda csv: _with(csv, "train", run_name="mine"),
        "field 'config.train.run_name': the worker names each job's MLflow run job-",
    ),
    (
        "n_past_covariates against the covariates",
        lambda csv: _with(csv, "model", n_past_covariates=99),
        "field 'config.model.n_past_covariates': model n_past_covariates is set from the "
        "covariates (load.covariates: 1 here); the model "
        "config gives 99: leave it out",
    ),
    (
        "an empty list of timestamp columns",
        lambda csv: _with(csv, "load", timestamp_col=[]),
        "field 'config.load.timestamp_col': timestamp_col must name one column or several (joined "
        "in order), or be left out",
    ),
]


@pytest.mark.parametrize(("case", "make", "named"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_specs_answer_422_naming_the_field(
    client: TestClient, ett_csv: Path, case: str, make: Callable[[Path], dict[str, Any]], named: str
) -> None:
    answer = submit(client, make(ett_csv))
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["detail"]
    assert client.get("/jobs").json()["total"] == 0


def test_a_bad_config_field_is_named_in_full_by_jobs_and_schedules(
    client: TestClient, ett_csv: Path
) -> None:
    """A job's config was refused naming its section alone ("field 'config.fit': ..."): the
    422 names the field in it, under a schedule's `job` too, on POST and PATCH."""
    bad = _with(ett_csv, "fit", max_epochs=0)
    said = "config.fit.max_epochs': max_epochs must be >= 1, got 0"
    assert submit(client, bad).json()["detail"] == f"field '{said}"
    body = {"cron": "0 3 * * *", "job": bad}
    answer = client.post("/schedules", json=body, headers=KEY)
    assert (answer.status_code, answer.json()["detail"]) == (422, f"field 'job.{said}")
    made = client.post("/schedules", json={**body, "job": tiny_spec(ett_csv)}, headers=KEY)
    assert made.status_code == 201, made.text
    changed = client.patch(f"/schedules/{made.json()['id']}", json={"job": bad}, headers=KEY)
    assert (changed.status_code, changed.json()["detail"]) == (422, f"field 'job.{said}")


@pytest.mark.parametrize(
    ("decoder", "hint"),
    [
        (
            "auto",
            " ('auto' is not a decoder but a search that trains each one and keeps the better "
            "on validation: set config.fit.decoder_search to true and leave "
            "config.model.decoder out)",
        ),
        ("seq2seq", ""),  # another unknown decoder: no hint
    ],
)
def test_a_model_decoder_auto_says_where_auto_lives(
    client: TestClient, ett_csv: Path, decoder: str, hint: str
) -> None:
    """README and the CLI offer `--decoder auto`; in a job's config.model it was refused
    without saying that it is the fit's decoder_search."""
    spec = tiny_spec(ett_csv)
    spec["config"]["model"]["decoder"] = decoder
    answer = submit(client, spec)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        "field 'config.model.decoder': decoder must be one of 'direct', 'pmf'; got "
        f"{decoder!r}{hint}"
    )
    # where it says, "auto" is taken
    del spec["config"]["model"]["decoder"]
    spec["config"]["fit"]["decoder_search"] = True
    if decoder == "auto":
        assert submit(client, spec).status_code == 202


def test_nproc_with_the_streaming_kind_is_refused_at_submission(
    client: TestClient, ett_csv: Path
) -> None:
    """nproc 2 with config.model.kind urnn-stream was accepted (202), then failed in the worker
    once the data was loaded ("trains in one process; run it without torchrun/--nproc");
    `urnn train --model urnn-stream --nproc 2` was refused up front. Same check, same words."""
    from training.fit import nproc_error

    spec = tiny_spec(ett_csv, nproc=2)
    spec["config"]["model"] = {"kind": "urnn-stream", "lookback": 24, "horizon": 6}
    answer = submit(client, spec)
    said = nproc_error("urnn-stream", 2)
    assert said is not None and "trains in one process" in said
    assert (answer.status_code, answer.json()["detail"]) == (422, f"field 'nproc': {said}")
    assert client.get("/jobs").json()["total"] == 0
    assert submit(client, {**spec, "nproc": 1}).status_code == 202


def test_an_id_with_a_nul_is_not_found(client: TestClient) -> None:
    """On PostgreSQL these were 500s (a NUL cannot be sent in a query); SQLite said 404."""
    for method, path in (
        ("GET", "/jobs/%00"),
        ("POST", "/jobs/%00/cancel"),
        ("GET", "/schedules/a%00"),
        ("PATCH", "/schedules/a%00"),
        ("DELETE", "/schedules/a%00"),
    ):
        body = {"paused": True} if method == "PATCH" else None
        answer = client.request(method, path, headers=KEY, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
        assert (
            "no job with id '\\x00'" in answer.json()["detail"]
            or "no schedule with id 'a\\x00'" in answer.json()["detail"]
        )


def test_schedules_crud_and_validation(client: TestClient, ett_csv: Path) -> None:
    body = {"cron": "0 3 * * *", "timezone": "Europe/Paris", "job": tiny_spec(ett_csv)}
    assert client.post("/schedules", json=body).status_code == 401
    for bad, field in (
        ({"cron": "0 3 * *"}, "field 'cron'"),
        (
            {"timezone": "Paris"},
            "field 'timezone': 'Paris' is not a time zone; it must be an "
            "IANA time zone name such as 'Europe/London'",
        ),
        ({"cron": "0 0 30 2 *"}, "field 'cron': '0 0 30 2 *' matches no date"),
        (  # the zone's name, in the wrong case: said as such
            {"timezone": "europe/paris"},
            "field 'timezone': 'europe/paris' is not a time zone; it must be an IANA time zone "
            "name such as 'Europe/London': it is written 'Europe/Paris' (names are case-sensitive)",
        ),
        (  # a Quartz-style cron with seconds first: said as such, with the 5 fields to give
            {"cron": "0 0 3 * * *"},
            "field 'cron': '0 0 3 * * *' has 6 fields, not the 5 of a cron expression (minute "
            "hour day-of-month month day-of-week, e.g. '0 3 * * *'); a first field of seconds "
            "is not taken: give '0 3 * * *'",
        ),
        ({"paused": "true"}, "field 'paused'"),  # strict: a string is not a bool
        ({"job": tiny_spec(ett_csv, target="nope")}, "field 'job.target'"),
        ({"job": {**tiny_spec(ett_csv), "data": "/nope.csv"}}, "field 'job.data'"),
        (
            {"colour": 1},
            "field 'colour': unknown field; the allowed fields are cron, timezone, job, paused",
        ),
        (
            {"job": {**tiny_spec(ett_csv), "colour": 1}},
            (
                "field 'job.colour': unknown field; the allowed fields are data, target, "
                "covariates, config, promote, nproc"
            ),
        ),
    ):
        answer = client.post("/schedules", json={**body, **bad}, headers=KEY)
        assert answer.status_code == 422 and field in answer.json()["detail"], answer.text
    # the contract's body has no timezone: read in UTC
    utc = client.post("/schedules", json={"cron": "0 3 * * *", "job": body["job"]}, headers=KEY)
    assert utc.status_code == 201, utc.text
    assert utc.json()["timezone"] == "UTC" and utc.json()["next_due_at"].endswith("T03:00:00Z")
    assert client.delete(f"/schedules/{utc.json()['id']}", headers=KEY).status_code == 204

    created = client.post("/schedules", json=body, headers=KEY)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["timezone"] == "Europe/Paris"
    assert schedule["next_due_at"].endswith("T02:00:00Z")  # 03:00 in Paris, winter time (UTC+1)
    assert [s["id"] for s in client.get("/schedules").json()["items"]] == [schedule["id"]]
    assert client.get(f"/schedules/{schedule['id']}").json()["cron"] == "0 3 * * *"
    assert client.delete(f"/schedules/{schedule['id']}").status_code == 401
    assert client.delete(f"/schedules/{schedule['id']}", headers=KEY).status_code == 204
    assert client.delete(f"/schedules/{schedule['id']}", headers=KEY).status_code == 404
    assert client.get("/schedules").json() == {"items": [], "total": 0, "limit": 50, "offset": 0}


def test_schedules_are_listed_in_pages_oldest_first(client: TestClient, ett_csv: Path) -> None:
    body = {"cron": "0 3 * * *", "job": tiny_spec(ett_csv)}
    made = [client.post("/schedules", json=body, headers=KEY).json()["id"] for _ in range(3)]
    first = client.get("/schedules", params={"limit": 2}).json()
    assert first["total"] == 3 and [s["id"] for s in first["items"]] == made[:2]
    rest = client.get("/schedules", params={"limit": 2, "offset": 2}).json()
    assert [s["id"] for s in rest["items"]] == made[2:]
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"offset": 2**63}, {"limit": "x"}):
        answer = client.get("/schedules", params=bad)
        assert answer.status_code == 422 and next(iter(bad)) in answer.text, answer.text


def test_a_schedule_is_paused_resumed_and_changed_with_patch(
    client: TestClient, ett_csv: Path
) -> None:
    body = {"cron": "0 3 * * *", "job": tiny_spec(ett_csv)}
    made = client.post("/schedules", json={**body, "paused": True}, headers=KEY).json()
    assert made["paused"] is True and made["next_due_at"] is None
    url = f"/schedules/{made['id']}"
    assert client.patch(url, json={"paused": False}).status_code == 401
    resumed = client.patch(url, json={"paused": False}, headers=KEY)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False and resumed.json()["next_due_at"].endswith(
        "T03:00:00Z"
    )
    changed = client.patch(
        url,
        json={
            "cron": "30 4 * * *",
            "timezone": "Europe/Paris",
            "job": tiny_spec(ett_csv, covariates=[]),
        },
        headers=KEY,
    ).json()
    assert (changed["cron"], changed["timezone"], changed["job"]["covariates"]) == (
        "30 4 * * *", "Europe/Paris", [],
    )  # fmt: skip
    assert changed["next_due_at"].endswith("T03:30:00Z")  # 04:30 in Paris, winter time
    for bad, named in (
        ({}, "nothing to change"),
        ({"cron": "0 3 * *"}, "field 'cron'"),
        (
            {"timezone": "Paris"},
            "field 'timezone': 'Paris' is not a time zone; it must be an "
            "IANA time zone name such as 'Europe/London'",
        ),
        ({"paused": None}, "field 'paused': cannot be null"),
        ({"paused": "maybe"}, "paused"),
        ({"paused": "yes"}, "paused"),  # strict: was read as true
        ({"paused": 1}, "paused"),
        ({"job": tiny_spec(ett_csv, target="nope")}, "field 'job.target'"),
        ({"every": "day"}, "every"),
    ):
        answer = client.patch(url, json=bad, headers=KEY)
        assert answer.status_code == 422 and named in answer.json()["detail"], (bad, answer.text)
    assert client.get(url).json() == changed  # a refused change changes nothing
    assert client.patch("/schedules/nope", json={"paused": True}, headers=KEY).status_code == 404


def test_bodies_not_sent_as_json_answer_415_as_forecast_does(
    client: TestClient, ett_csv: Path
) -> None:
    """They answered 422 'Input should be a valid dictionary' (an audit's), about a body that
    was never read as JSON; nothing is stored."""
    spec = json.dumps(tiny_spec(ett_csv))
    schedule = json.dumps({"cron": "0 3 * * *", "job": tiny_spec(ett_csv)})
    made = client.post("/schedules", content=schedule, headers={**KEY, **JSON}).json()["id"]
    for method, url, body in (
        ("POST", "/jobs", spec),
        ("POST", "/schedules", schedule),
        ("PATCH", f"/schedules/{made}", '{"paused": true}'),
    ):
        for kind in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {**KEY, **({"content-type": kind} if kind else {})}
            answer = client.request(method, url, content=body.encode(), headers=headers)
            assert answer.status_code == 415, (method, url, kind, answer.text)
            said = repr(kind) if kind else "missing"
            assert answer.json()["detail"] == (
                f"header 'Content-Type': {said}; this endpoint reads a body sent as "
                "application/json"
            )
        # the key is checked first: no key, 401 whatever the body
        assert client.request(method, url, content=body.encode()).status_code == 401
    assert client.get("/jobs").json()["total"] == 0
    assert client.get(f"/schedules/{made}").json()["paused"] is False
    with_charset = {**KEY, "content-type": "application/json; charset=utf-8"}
    assert client.post("/jobs", content=spec, headers=with_charset).status_code == 202


def test_an_unmigrated_database_answers_503(tmp_path: Path, ett_csv: Path) -> None:
    settings = Settings(
        var_dir=tmp_path / "var", api_key=SecretStr("test-key"), model_poll_seconds=0.0
    )
    with TestClient(create_app(settings, loader=NoModels())) as client:
        answer = client.get("/jobs")
        assert answer.status_code == 503 and "urnn db upgrade" in answer.json()["detail"]
        assert answer.json()["detail"].startswith("no job database at sqlite:///")
        # nothing made: an empty file would turn a worker's "missing file" into "no schema"
        assert not (tmp_path / "var" / "jobs.db").exists()
        upgrade(settings.resolved_database_url())
        assert client.get("/jobs").status_code == 200  # once migrated, no restart needed
    # a schema a newer release migrated: its jobs would stay queued (no worker of this
    # release runs there), so nothing is accepted until this installation is upgraded
    newer = tmp_path / "newer.db"
    upgraded = settings.model_copy(update={"database_url": f"sqlite:///{newer}"})
    upgrade(upgraded.resolved_database_url())
    engine = make_engine(upgraded.resolved_database_url())
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    finally:
        engine.dispose()
    with TestClient(create_app(upgraded, loader=NoModels())) as client:
        for answer in (client.get("/jobs"), submit(client, tiny_spec(ett_csv))):
            assert answer.status_code == 503
            assert "is at revision 0099, newer than this installation's" in answer.json()["detail"]
        engine = make_engine(upgraded.resolved_database_url())
        try:  # as rolling the newer release's migration back leaves it
            with engine.begin() as connection:
                head = head_revision()
                connection.execute(text(f"UPDATE alembic_version SET version_num = '{head}'"))
        finally:
            engine.dispose()
        assert client.get("/jobs").status_code == 200  # checked again: no restart needed
    # a dialect whose driver is not installed: 503 saying so, not a 500
    mysql = settings.model_copy(update={"database_url": "mysql://x@y/z"})
    with TestClient(create_app(mysql, loader=NoModels())) as client:
        answer = client.get("/jobs")
        assert answer.status_code == 503
        assert "needs a database driver that is not installed" in answer.json()["detail"]


@pytest.mark.slow
def test_a_retraining_job_from_the_api_alone_is_trained_registered_and_served(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings
) -> None:
    settings = Settings(
        var_dir=mlflow_settings.var_dir,  # a temp MLflow store
        database_url=f"sqlite:///{tmp_path / 'e2e-jobs.db'}",
        api_key=SecretStr("test-key"),
        model_poll_seconds=0.0,
        job_heartbeat_seconds=0.2,
    )
    upgrade(settings.resolved_database_url())
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 503  # nothing registered yet
        job_id = submit(client, tiny_spec(ett_csv)).json()["id"]
        db = Database.from_settings(settings)
        try:
            assert Worker(db, settings).run_once() == job_id
        finally:
            db.dispose()
        job = client.get(f"/jobs/{job_id}").json()
        assert job["status"] == "succeeded", job["error"]
        assert job["attempts"] == 1 and job["mlflow_run_id"]
        assert (job["registered_name"], job["registered_version"], job["promoted"]) == (
            "urnn-forecaster",
            "1",
            True,
        )
        assert "registered urnn-forecaster version 1" in job["log_tail"]
        # the whole output, not only the tail, is on the run in MLflow
        from mlflow import MlflowClient
        from mlflow.artifacts import download_artifacts

        tracking = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
        assert [a.path for a in tracking.list_artifacts(job["mlflow_run_id"], "job")] == [
            "job/attempt-1.log"
        ]
        # the run list names the job and what it fitted (job-<id> alone said neither)
        run_name = tracking.get_run(job["mlflow_run_id"]).info.run_name
        assert run_name == f"job-{job_id[:8]}-urnn-OT-L{LOOKBACK}-H{HORIZON}"
        whole = Path(
            download_artifacts(
                run_id=job["mlflow_run_id"],
                artifact_path="job/attempt-1.log",
                tracking_uri=settings.resolved_tracking_uri(),
            )
        ).read_text()
        assert whole.startswith("Training urnn") and "registered urnn-forecaster version 1" in whole
        # what `urnn train` prints, the loader's decisions included
        assert f"  {ett_csv.name}: read " in job["log_tail"]
        assert "  MASE season: 24 rows" in job["log_tail"]
        reloaded = client.post("/model/reload", headers=KEY)
        assert reloaded.status_code == 200, reloaded.text
        served = client.get("/model").json()
        assert (served["version"], served["run_id"]) == ("1", job["mlflow_run_id"])
        assert served["covariates"] == ["HUFL"]  # given through the attempt's config file


def long_training_settings(tmp_path: Path, mlflow_settings: Settings, name: str) -> Settings:
    """A job database of its own beside the MLflow store, heartbeats every 0.2 s."""
    settings = Settings(
        var_dir=mlflow_settings.var_dir,
        database_url=f"sqlite:///{tmp_path / name}",
        api_key=SecretStr("test-key"),
        model_poll_seconds=0.0,
        job_heartbeat_seconds=0.2,
    )
    upgrade(settings.resolved_database_url())
    return settings


@dataclass
class LongTraining:
    """A 500-epoch job run by `worker` in `thread`, its MLflow run started and a best-so-far
    checkpoint written."""

    job_id: str
    run_id: str
    checkpoint: Path
    worker: Worker
    thread: Any


@contextlib.contextmanager
def long_training(
    client: TestClient, ett_csv: Path, settings: Settings, db: Database
) -> Iterator[LongTraining]:
    """`LongTraining` once the run has a checkpoint; the worker stopped and joined, and `db`
    disposed, however the test ends."""
    import threading
    import time

    long = tiny_spec(ett_csv)
    long["config"]["fit"] = {"max_epochs": 500, "patience": 500, "batch_size": 8, "device": "cpu"}
    job_id = submit(client, long).json()["id"]
    worker = Worker(db, settings)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        # the child records its MLflow run on the job when the run starts, before the fit
        while not client.get(f"/jobs/{job_id}").json()["mlflow_run_id"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        run_id = client.get(f"/jobs/{job_id}").json()["mlflow_run_id"]
        checkpoint = settings.var_dir / "checkpoints" / run_id
        while not (checkpoint / "config.json").exists():  # an epoch improved: written
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield LongTraining(job_id, run_id, checkpoint, worker, thread)
    finally:
        worker.request_stop()
        thread.join(timeout=30)
        db.dispose()


@pytest.mark.slow
def test_cancelling_a_running_training_job_stops_the_training_loop(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings
) -> None:
    import time

    settings = long_training_settings(tmp_path, mlflow_settings, "cancel-jobs.db")
    with TestClient(create_app(settings, loader=NoModels())) as client:
        db = Database.from_settings(settings)
        with long_training(client, ett_csv, settings, db) as run:
            job_id, run_id, checkpoint = run.job_id, run.run_id, run.checkpoint
            asked = time.monotonic()
            assert client.post(f"/jobs/{job_id}/cancel", headers=KEY).status_code == 200
            run.thread.join(timeout=30)
            stopped_after = time.monotonic() - asked
        job = client.get(f"/jobs/{job_id}").json()
        assert job["status"] == "cancelled", job
        # within a few heartbeats, not after the 500 epochs: 20 s, as a loaded CI machine took
        # 7.9 s (the training alone would take minutes)
        assert stopped_after < 20.0
        assert job["registered_version"] is None
        # The run was recorded when it started, and ends KILLED (its process was stopped).
        from mlflow import MlflowClient

        assert job["mlflow_run_id"] == run_id, job
        tracking = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
        assert tracking.get_run(run_id).info.status == "KILLED"
        # a stopped attempt's best-so-far checkpoint goes with it (a retry starts afresh),
        # and the job's log says so after the child's own line naming it
        assert not checkpoint.exists() and not list(checkpoint.parent.iterdir())
        assert "urnn train: stopped by SIGTERM: MLflow run " in job["log_tail"]
        assert f"removed {checkpoint}, this attempt's checkpoint" in job["log_tail"]


def test_a_worker_shutdown_requeues_the_job_before_the_runs_bookkeeping(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM: the worker marked the MLflow run KILLED and attached the log (15 s on a busy
    machine, importing MLflow alone 4-11 s) before it gave the job back, so a stop grace
    shorter than that SIGKILLed it first and the job waited out its lease, spending an
    attempt. The job is requeued first; the run is ended and its log attached after."""
    import jobs.worker as worker_module
    from jobs import queue

    settings = long_training_settings(tmp_path, mlflow_settings, "shutdown-jobs.db")
    db = Database.from_settings(settings)
    status_at_bookkeeping: list[str] = []
    ending = worker_module.end_run_killed

    def end_run_killed(settings: Settings, run_id: str) -> list[Path]:
        with db.session() as session:
            status_at_bookkeeping.append(queue.get(session, job_id=job_id).status)
        return ending(settings, run_id)

    monkeypatch.setattr(worker_module, "end_run_killed", end_run_killed)
    with TestClient(create_app(settings, loader=NoModels())) as client:
        with long_training(client, ett_csv, settings, db) as run:
            job_id, run_id, checkpoint = run.job_id, run.run_id, run.checkpoint
            run.worker.request_stop()  # what SIGTERM does
            run.thread.join(timeout=60)
            assert not run.thread.is_alive()
        job = client.get(f"/jobs/{job_id}").json()
    assert (job["status"], job["attempts"]) == ("queued", 0), job
    assert status_at_bookkeeping == ["queued"]  # given back before, then the run ended
    from mlflow import MlflowClient

    tracking = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    assert tracking.get_run(run_id).info.status == "KILLED"
    assert [a.path for a in tracking.list_artifacts(run_id, "job")] == ["job/attempt-1.log"]
    assert not checkpoint.exists()
    assert not (settings.var_dir / "job-attempts" / job_id).exists()  # collected


def test_job_data_outside_the_allowed_folders_is_refused_saying_nothing_of_the_file(
    db: Database, settings: Settings, ett_csv: Path, tmp_path: Path
) -> None:
    """URNN_JOB_DATA_DIRS: the job API read any .csv the service could open and answered with
    its header; with the setting, a path outside is refused before the file is looked at."""
    folder = tmp_path / "data"
    folder.mkdir()
    ett_csv = Path(shutil.copy(ett_csv, folder / ett_csv.name))
    allowed = settings.model_copy(update={"job_data_dirs": f"{folder}, /nonexistent"})
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.csv"
    secret.write_text("password,token\nhunter2,abc\n")
    link = ett_csv.parent / "link-to-secret.csv"
    link.symlink_to(secret)  # inside by name, outside once resolved
    loop = outside / "loop.csv"
    loop.symlink_to(loop)  # resolving it fails: still only "outside", nothing else said
    with TestClient(create_app(allowed, loader=NoModels())) as client:
        assert submit(client, tiny_spec(ett_csv)).status_code == 202
        for path in (secret, outside / "absent.csv", link, loop):
            answer = submit(client, {**tiny_spec(ett_csv), "data": str(path)})
            assert answer.status_code == 422, answer.text
            detail = answer.json()["detail"]
            assert "outside the folders jobs may read (URNN_JOB_DATA_DIRS:" in detail
            assert "password" not in detail and "no such file" not in detail
        job = {**tiny_spec(ett_csv), "data": str(secret)}
        schedule = {"cron": "0 3 * * *", "timezone": "UTC", "job": job}
        answer = client.post("/schedules", json=schedule, headers=KEY)
        assert answer.status_code == 422 and "field 'job.data'" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("data", "'data': give absolute folders"),
        ("~/histories", "'~/histories': give absolute folders"),
        ("/data,,/more", "an empty entry in '/data,,/more'"),
    ],
)
def test_job_data_dirs_are_absolute_folders_checked_at_start_up(value: str, said: str) -> None:
    """A relative or '~' entry resolved against each process's own directory, and a bad one
    answered every POST /jobs with a 500."""
    with pytest.raises(ValidationError, match=re.escape(said)):
        Settings(job_data_dirs=value)
    assert Settings(job_data_dirs="").job_data_folders() is None  # empty: unset


SURROGATE = "holds a lone UTF-16 surrogate"
# (case, where in the spec, the raw JSON put there, the detail said for the field)
UNSTORABLE: list[tuple[str, tuple[str, ...], str, str]] = [
    ("a surrogate in load.series_id", ("config", "load", "series_id"), '"\\ud800"', SURROGATE),
    ("a surrogate in train.run_name", ("config", "train", "run_name"), '"\\ud800"', SURROGATE),
    ("a surrogate in the target", ("target",), '"\\ud800"', SURROGATE),
    ("a surrogate in the data path", ("data",), '"\\ud800"', SURROGATE),
    ("a surrogate in a covariate", ("covariates",), '["\\ud800"]', SURROGATE),
    ("a surrogate in a key", ("config", "load"), '{"\\ud800": 1}', "the key " + SURROGATE),
    ("NaN", ("config", "fit", "weight_decay"), "NaN", "must be a finite number; got NaN"),
    ("Infinity", ("config", "fit", "mse_weight"), "Infinity", "must be a finite number; got Inf"),
    (
        "-Infinity",
        ("config", "fit", "weight_decay"),
        "-Infinity",
        "must be a finite number; got -Inf",
    ),
    ("1e400", ("config", "fit", "mse_weight"), "1e400", "must be a finite number; got Infinity"),
    (
        "an integer of 2**63",
        ("config", "model", "horizon"),
        str(2**63),
        "must be an integer from -9,007,199,254,740,991 to 9,007,199,254,740,991 (2**53 - 1",
    ),
]
NAMED = {
    ("config", "load"): "config.load.\\\\ud800",  # the path as repr() writes it
    ("covariates",): "covariates[0]",
}


def _with_raw(spec: dict[str, Any], where: tuple[str, ...], raw: str) -> str:
    """`spec` as JSON text with the value at `where` replaced by `raw` (NaN, 1e400, an escaped
    lone surrogate: JSON text no json.dumps of a Python value writes as such)."""
    marker = "@@RAW@@"
    node = spec
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = marker
    return json.dumps(spec).replace(f'"{marker}"', raw)


@pytest.mark.parametrize(
    ("case", "where", "raw", "said"), UNSTORABLE, ids=[c[0] for c in UNSTORABLE]
)
def test_text_and_numbers_no_row_can_hold_are_refused_naming_the_field(
    db: Database,
    settings: Settings,
    ett_csv: Path,
    tmp_path: Path,
    case: str,
    where: tuple[str, ...],
    raw: str,
    said: str,
) -> None:
    """A lone surrogate was stored with a 202 and then made GET /jobs, GET /schedules and the
    cancel answer 500 for everyone; NaN and Infinity were stored as null on SQLite (not the
    spec sent) and a 500 on PostgreSQL; 2**63 crashed the data check. Each is a 422 naming
    the field, on POST /jobs, POST /schedules and PATCH /schedules, and nothing is stored."""
    folder = tmp_path / "data"  # with URNN_JOB_DATA_DIRS: a surrogate path was a 500 there
    folder.mkdir()
    csv = Path(shutil.copy(ett_csv, folder / ett_csv.name))
    allowed = settings.model_copy(update={"job_data_dirs": str(folder)})
    field = NAMED.get(where, ".".join(where))
    with TestClient(create_app(allowed, loader=NoModels())) as client:
        answer = client.post(
            "/jobs", content=_with_raw(tiny_spec(csv), where, raw), headers={**KEY, **JSON}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"].startswith(f"field '{field}': {said}"), answer.text
        if said.endswith("surrogate"):
            assert "which is not Unicode text and cannot be stored" in answer.json()["detail"]
        schedule = '{"cron": "0 3 * * *", "job": ' + _with_raw(tiny_spec(csv), where, raw) + "}"
        answer = client.post("/schedules", content=schedule, headers={**KEY, **JSON})
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"].startswith(f"field 'job.{field}': {said}"), answer.text
        good = client.post(
            "/schedules", json={"cron": "0 3 * * *", "job": tiny_spec(csv)}, headers=KEY
        )
        assert good.status_code == 201, good.text
        change = '{"job": ' + _with_raw(tiny_spec(csv), where, raw) + "}"
        answer = client.patch(
            f"/schedules/{good.json()['id']}", content=change, headers={**KEY, **JSON}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"].startswith(f"field 'job.{field}': {said}"), answer.text
        # nothing stored, nothing changed, and the listings answer
        jobs = client.get("/jobs")
        assert jobs.status_code == 200 and jobs.json()["total"] == 0, jobs.text
        listed = client.get("/schedules")
        assert listed.status_code == 200, listed.text
        assert [s["job"] for s in listed.json()["items"]] == [good.json()["job"]]
        assert client.get(f"/schedules/{good.json()['id']}").json() == good.json()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("fit", "device"),
        ("load", "sep"),
        ("model", "kind"),
        ("train", "metric"),
        ("train", "split_method"),
        ("load", "timestamp_col"),
        ("load", "series_col"),
        ("load", "freq"),
    ],
)
def test_a_long_value_is_not_echoed_whole_in_the_422(
    client: TestClient, ett_csv: Path, section: str, key: str
) -> None:
    """config.fit.device of 100,000 characters answered a 100 kB detail."""
    spec = tiny_spec(ett_csv)
    spec["config"].setdefault(section, {})[key] = "a" * 100_000
    answer = submit(client, spec)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"field 'config.{section}"), detail
    assert len(detail) < 600 and "(100,000 characters)" in detail, detail
    assert client.get("/jobs").json()["total"] == 0


LONG = "a" * 100_000


@pytest.mark.parametrize(
    "change",
    [
        {"target": LONG},
        {"covariates": [LONG]},
        {"config": {LONG: {}}},
        {"config": {"model": {LONG: 1}}},
    ],
    ids=["target", "covariate", "config section", "model field"],
)
def test_a_long_name_is_not_echoed_whole_in_the_422(
    client: TestClient, ett_csv: Path, change: dict[str, Any]
) -> None:
    answer = submit(client, {**tiny_spec(ett_csv), **change})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert len(detail) < 600 and "(100,000 characters)" in detail, detail[:300]
    assert client.get("/jobs").json()["total"] == 0


def test_many_unknown_covariates_are_counted_not_listed(client: TestClient, ett_csv: Path) -> None:
    spec = tiny_spec(ett_csv, covariates=[f"c{i}" for i in range(20_000)])
    detail = submit(client, spec).json()["detail"]
    assert detail.startswith(
        "field 'covariates': ['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9' and "
        "19,990 more] are not columns of"
    ), detail[:300]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"target": "nope"}, "target"),
        ({"covariates": ["nope"]}, "covariates"),
        ({"target": "c1"}, "config.load.timestamp_col"),  # no column named like a time
    ],
    ids=["target", "covariate", "timestamp"],
)
def test_a_file_of_many_columns_is_not_quoted_whole_in_the_422(
    client: TestClient, tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    """A header of a million columns was quoted whole: a 10.9 MB answer to one POST /jobs
    (the columns of any readable file, with URNN_JOB_DATA_DIRS unset)."""
    columns = [f"c{i}" for i in range(100_000)]
    wide = tmp_path / "wide.csv"
    wide.write_text("\n".join(",".join(row) for row in (columns, ["1"] * 100_000, ["2"] * 100_000)))
    spec = {**tiny_spec(wide, target="c0", covariates=[]), **change}
    answer = submit(client, spec)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"field {field!r}: "), detail[:300]
    assert "'c29' and 99,970 more" in detail and len(detail) < 1_000, detail[:300]


def test_a_long_cron_or_id_is_not_echoed_whole(client: TestClient, ett_csv: Path) -> None:
    for cron in (LONG, f"0 3 * * {LONG}"):
        answer = client.post(
            "/schedules", json={"cron": cron, "job": tiny_spec(ett_csv)}, headers=KEY
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"] == (
            f"field 'cron': must be at most 120 character(s) long; got {len(cron):,}"
        )
    # one that passes the length: croniter's words name the day of the month 150 times
    cron = f"0 0 {','.join(['30'] * 37)} 2 *"
    assert len(cron) <= 120
    answer = client.post("/schedules", json={"cron": cron, "job": tiny_spec(ett_csv)}, headers=KEY)
    assert answer.status_code == 422, answer.text
    assert "matches no date" in answer.text and "characters)" in answer.text, answer.text
    for path in ("/jobs/", "/schedules/"):
        answer = client.get(path + "b" * 5_000)
        assert answer.status_code == 404, answer.text
        assert len(answer.text) < 300 and "(5,000 characters)" in answer.text, answer.text[:300]


def test_a_long_content_type_is_shortened_in_the_415(client: TestClient, ett_csv: Path) -> None:
    answer = client.post(
        "/jobs",
        content=json.dumps(tiny_spec(ett_csv)),
        headers={**KEY, "content-type": "a" * 5_000},
    )
    assert answer.status_code == 415, answer.text
    assert len(answer.json()["detail"]) < 300 and "(5,000 characters)" in answer.text


def test_a_schedule_on_a_link_reads_the_file_the_link_names_at_each_run(
    client: TestClient, db: Database, ett_csv: Path, tmp_path: Path
) -> None:
    """A nightly export written under a dated name, `current.csv` re-pointed at it: the job
    and the schedule stored the file the link named at submission, so every scheduled run
    retrained on that one export for ever (each run kept: the same model as the champion)
    while the link moved on. The path is stored as given (absolute), the link kept."""
    from datetime import timedelta

    from jobs import queue, schedules
    from jobs.models import utcnow
    from jobs.spec import JobSpec
    from training.data import load_data

    exports = tmp_path / "exports"
    exports.mkdir()
    frame = pd.read_csv(ett_csv)
    older, newer = exports / "export-1.csv", exports / "export-2.csv"
    frame.head(300).to_csv(older, index=False)
    frame.to_csv(newer, index=False)  # 100 rows appended since
    link = exports / "current.csv"
    link.symlink_to(older.name)
    answer = submit(client, tiny_spec(link))
    assert answer.status_code == 202, answer.text
    job = client.get(f"/jobs/{answer.json()['id']}").json()
    assert job["parameters"]["data"] == str(link)
    made = client.post(
        "/schedules", json={"cron": "0 3 * * *", "job": tiny_spec(link)}, headers=KEY
    )
    assert made.status_code == 201, made.text
    assert made.json()["job"]["data"] == str(link)

    link.unlink()  # the next export lands: the link is re-pointed
    link.symlink_to(newer.name)
    (run_id,) = schedules.enqueue_due(db, max_attempts=1, now=utcnow() + timedelta(days=2))
    with db.session() as session:
        spec = JobSpec.model_validate(queue.get(session, job_id=run_id).spec)
    config = spec.train_config()
    loaded = load_data(config.data, config.load)  # what the run's `urnn train` reads
    assert [len(series) for series in loaded.series.values()] == [400]


def test_a_stored_lone_surrogate_does_not_break_the_listings(
    client: TestClient, db: Database, ett_csv: Path
) -> None:
    """A row stored before the submission refused lone surrogates made GET /jobs, GET
    /schedules and the cancel answer 500 for everyone; it is answered with the escape."""
    from jobs import queue, schedules

    spec = tiny_spec(ett_csv, config={"train": {"run_name": "r\ud800"}})
    with db.session() as session:
        job = queue.submit(session, spec=spec, max_attempts=1)
        schedule = schedules.create(session, cron="0 3 * * *", timezone="UTC", spec=spec)
    for path in ("/jobs", f"/jobs/{job.id}", "/schedules", f"/schedules/{schedule.id}"):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert "r\\\\ud800" in answer.text, answer.text
    answer = client.post(f"/jobs/{job.id}/cancel", headers=KEY)
    assert answer.status_code == 200, answer.text


def test_a_valid_cron_longer_than_its_column_is_a_422_on_both_databases(
    client: TestClient, ett_csv: Path
) -> None:
    """Every minute listed: valid, 170 characters; PostgreSQL's VARCHAR(120) answered 500,
    SQLite stored it."""
    cron = ",".join(str(m) for m in range(60)) + " * * * *"
    assert len(cron) > 120
    answer = client.post("/schedules", json={"cron": cron, "job": tiny_spec(ett_csv)}, headers=KEY)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        f"field 'cron': must be at most 120 character(s) long; got {len(cron)}"
    )
    made = client.post(
        "/schedules", json={"cron": "0 3 * * *", "job": tiny_spec(ett_csv)}, headers=KEY
    )
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    answer = client.patch(f"/schedules/{sid}", json={"cron": cron}, headers=KEY)
    assert answer.status_code == 422, answer.text
    assert client.get(f"/schedules/{sid}").json()["cron"] == "0 3 * * *"


@pytest.mark.parametrize(
    ("cron", "said"),
    [
        ("*/90 * * * *", "field 1 (minute) steps by 90, and the field has only 60 values"),
        ("0 0 */32 * *", "field 3 (day-of-month) steps by 32, and the field has only 31 values"),
        ("0 0 * */12 *", "field 4 (month) steps by 12"),
        # croniter's random value, drawn anew at every reading: `R * * * *` ran 48 times a day
        ("R * * * *", "the minute field 'R' asks for a random value, which this scheduler "),
        ("0 r(1-5) * * *", "the hour field 'r(1-5)' asks for a random value"),
        ("0 3 R/2 * *", "give it yourself (1-31)"),
    ],
)
def test_a_step_as_long_as_its_field_is_refused(
    client: TestClient, ett_csv: Path, cron: str, said: str
) -> None:
    """croniter took `*/90` as "minute 0 of each hour": not every 90 minutes, as it reads;
    and `R` as a random value (a walk-through on PostgreSQL). Names with an R stay fine."""
    answer = client.post("/schedules", json={"cron": cron, "job": tiny_spec(ett_csv)}, headers=KEY)
    assert answer.status_code == 422, answer.text
    assert said in answer.json()["detail"]
    assert client.get("/schedules").json()["total"] == 0
    named = {"cron": "0 3 * MAR FRI", "job": tiny_spec(ett_csv)}
    assert client.post("/schedules", json=named, headers=KEY).status_code == 201


def test_jobs_are_listed_by_several_statuses(
    client: TestClient, ett_csv: Path, db: Database
) -> None:
    """`?status=queued&status=cancelled` kept the last value without a word."""
    first, second = (submit(client, tiny_spec(ett_csv)).json()["id"] for _ in range(2))
    assert client.post(f"/jobs/{second}/cancel", headers=KEY).status_code == 200
    for query, expected in (
        ("status=queued", {first}),
        ("status=cancelled", {second}),
        ("status=queued&status=cancelled", {first, second}),
        ("status=cancelled&status=queued", {first, second}),
        ("status=running&status=failed", set()),
    ):
        page = client.get(f"/jobs?{query}").json()
        assert {job["id"] for job in page["items"]} == expected, query
        assert page["total"] == len(expected)
    answer = client.get("/jobs?status=queued&status=done")
    assert answer.status_code == 422, answer.text
    assert "status" in answer.json()["detail"] and "'done'" in answer.json()["detail"]


def test_openapi_shows_an_example_of_every_job_and_schedule_body(client: TestClient) -> None:
    """serving.md promises an example of every body; the job and schedule bodies had none."""
    from jobs.spec import JOB_EXAMPLE

    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("JobSpec", "ScheduleCreate", "ScheduleChange"):
        assert schemas[name].get("examples"), name
    assert schemas["ScheduleCreate"]["properties"]["job"].get("description")
    root = Path(__file__).resolve().parents[2]
    example = {**JOB_EXAMPLE, "data": str(root / JOB_EXAMPLE["data"])}  # the bundled file
    answer = submit(client, example)
    assert answer.status_code == 202, answer.text


def test_a_405_lists_every_method_the_path_takes(client: TestClient) -> None:
    """Starlette answered with the first matching route's methods: `PUT /jobs` said only
    POST, though GET /jobs exists; `PUT /schedules/<id>` said only GET."""
    for path, allowed in (("/jobs", "GET, POST"), ("/schedules/x", "GET, PATCH, DELETE")):
        answer = client.put(path, json={})
        assert answer.status_code == 405
        assert answer.headers["allow"] == allowed
        assert answer.json()["detail"].endswith(f"allowed: {allowed}")


def test_a_query_parameter_the_route_does_not_read_or_gives_twice_is_a_422(
    client: TestClient,
) -> None:
    """FastAPI ignored both: `?limt=5` answered a page of 50, `?limit=5&limit=6` one of 6."""
    answer = client.get("/jobs", params={"limt": 5})
    assert answer.status_code == 422
    assert answer.json() == {
        "detail": "query parameter 'limt': is not read by GET /jobs; its parameters: limit, "
        "offset, status"
    }
    answer = client.get("/jobs?limit=5&limit=6")
    assert answer.status_code == 422
    assert answer.json() == {"detail": "query parameter 'limit': is given 2 times; give it once"}
    # a list parameter repeats, and a route that reads no query leaves a probe's alone
    assert client.get("/jobs?status=queued&status=running&limit=5").status_code == 200
    assert client.get("/healthz?_=1733000000").status_code == 200


def test_a_query_on_a_post_is_a_422_and_queues_nothing(client: TestClient, ett_csv: Path) -> None:
    """`POST /jobs?promote=false` queued a job that promoted: a route that acts takes its
    settings from the body, so a query parameter there is refused, not dropped."""
    answer = client.post("/jobs?promote=false", json=tiny_spec(ett_csv), headers=KEY)
    assert answer.status_code == 422
    assert answer.json() == {
        "detail": "query parameter 'promote': is not read by POST /jobs; it takes no query "
        "parameters (its settings go in the body)"
    }
    assert client.get("/jobs").json()["total"] == 0
    assert submit(client, tiny_spec(ett_csv)).status_code == 202  # without it: queued


def test_an_id_in_upper_case_names_the_same_job_and_schedule(
    client: TestClient, ett_csv: Path
) -> None:
    """Ids are UUIDs, which RFC 9562 reads in any case: an upper-cased one answered 404."""
    job_id = submit(client, tiny_spec(ett_csv)).json()["id"]
    answer = client.get(f"/jobs/{job_id.upper()}")
    assert answer.status_code == 200 and answer.json()["id"] == job_id
    made = client.post(
        "/schedules", json={"cron": "0 3 * * *", "job": tiny_spec(ett_csv)}, headers=KEY
    ).json()["id"]
    assert client.get(f"/schedules/{made.upper()}").json()["id"] == made
    assert client.get("/jobs/not-a-uuid").status_code == 404  # other text: looked up as it is


def test_the_schema_offers_no_null_that_a_schedule_patch_refuses(
    client: TestClient, ett_csv: Path
) -> None:
    """A schemathesis run: ScheduleChange showed every field as `anyOf [..., null]`, and the
    PATCH `{"paused": null}` that the schema allowed answered 422 'cannot be null'. The schema
    now shows each field without null (and without a default); null is still refused."""
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ScheduleChange"]
    for name, field in schema["properties"].items():
        assert "anyOf" not in field and field.get("type") != "null", (name, field)
        assert "default" not in field, (name, field)
    assert schema["properties"]["paused"]["type"] == "boolean"
    assert schema["properties"]["cron"] == {
        "type": "string",
        "maxLength": 120,
        "title": "Cron",
        "description": "A new 5-field cron expression.",
    }
    assert schema["properties"]["job"]["$ref"].endswith("/JobSpec")
    made = client.post(
        "/schedules", json={"cron": "0 3 * * *", "job": tiny_spec(ett_csv)}, headers=KEY
    )
    assert made.status_code == 201, made.text
    url = f"/schedules/{made.json()['id']}"
    for field in ("paused", "cron", "timezone", "job"):
        answer = client.patch(url, json={field: None}, headers=KEY)
        assert answer.status_code == 422
        assert answer.json()["detail"] == (
            f"field '{field}': cannot be null; leave the field out to keep it"
        )
    # the schema's edit leaves validation as it was: an error names the field alone
    answer = client.patch(url, json={"paused": "maybe"}, headers=KEY)
    assert answer.status_code == 422 and answer.json()["detail"].startswith("field 'paused': ")
    answer = client.patch(url, json={"job": {**tiny_spec(ett_csv), "target": 1}}, headers=KEY)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("field 'job.target': "), answer.text
    assert client.get(url).json() == made.json()
    answer = client.patch(url, json={"paused": True}, headers=KEY)
    assert answer.status_code == 200 and answer.json()["paused"] is True


def test_the_schema_gives_the_idempotency_key_rule(client: TestClient, ett_csv: Path) -> None:
    """A schemathesis run sent `Idempotency-Key: ''`, which the schema allowed (any text) and
    the service refuses (1 to 255 visible ASCII characters); the schema now says the rule."""
    spec = client.get("/openapi.json").json()
    for path in ("/jobs", "/schedules"):
        (header,) = (
            p for p in spec["paths"][path]["post"]["parameters"] if p["name"] == "Idempotency-Key"
        )
        rule = header["schema"]
        assert (rule["minLength"], rule["maxLength"]) == (1, 255)
        pattern = re.compile(rule["pattern"])
        for key in ("", " ", "a b", "é", "x" * 256):
            said = bool(pattern.search(key)) and 1 <= len(key) <= 255
            assert not said, key
            sent = submit_with_key(client, tiny_spec(ett_csv), key)
            assert sent.status_code == 422 and "Idempotency-Key" in sent.json()["detail"]
        for key in ("a", "nightly-2026-12-04", "~!" * 100, "x" * 255):
            assert pattern.search(key) and len(key) <= 255, key
    assert submit_with_key(client, tiny_spec(ett_csv), "x" * 255).status_code == 202


def submit_with_key(client: TestClient, spec: dict[str, Any], key: str) -> Any:
    headers: dict[str, str | bytes] = {**KEY, **JSON, "Idempotency-Key": key.encode("latin-1")}
    return client.post("/jobs", content=json.dumps(spec), headers=headers)


def test_the_schema_lists_413_and_415_wherever_a_body_is_read(
    client: TestClient, settings: Settings
) -> None:
    """A schemathesis run: the body-size limit and the Content-Encoding check answer 413 and
    415 on every POST and PATCH before any route runs, but POST /model/reload listed neither
    and POST /series/{id}/observations no 415 (its fast path answers a body that is not JSON
    with 415 too). Every such operation now lists both, and they are answered."""
    small = settings.model_copy(update={"max_body_bytes": 1024})
    spec = client.get("/openapi.json").json()
    operations = [
        (method, path, operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
        if method in ("post", "put", "patch")
    ]
    assert {(m, p) for m, p, _ in operations} >= {
        ("post", "/model/reload"),
        ("post", "/series/{series_id}/observations"),
        ("post", "/jobs/{job_id}/cancel"),
    }
    for method, path, operation in operations:
        for status in ("413", "415"):
            answer = operation["responses"].get(status)
            assert answer is not None, (method, path, status)
            assert answer["content"]["application/json"]["schema"]["$ref"].endswith(
                "/ErrorResponse"
            )
    with TestClient(create_app(small, loader=NoModels())) as limited:
        for path in ("/model/reload", "/series/s1/observations", "/jobs/x/cancel"):
            big = limited.post(path, content=b"[" + b"0," * 1024 + b"0]", headers={**KEY, **JSON})
            assert big.status_code == 413, (path, big.text)
            zipped = limited.post(
                path, content=b"{}", headers={**KEY, **JSON, "Content-Encoding": "gzip"}
            )
            assert zipped.status_code == 415, (path, zipped.text)
        plain = limited.post(
            "/series/s1/observations", content=b"x", headers={**KEY, "content-type": "text/plain"}
        )
        assert plain.status_code == 415 and "Content-Type" in plain.json()["detail"]


@pytest.mark.postgres
def test_the_service_lets_go_of_its_job_database_connections_at_shutdown(
    postgres_url: str, tmp_path: Path
) -> None:
    """The job API's engine and the job gauges' reader kept their pooled connections open
    after the app stopped (until the process exited): an app started and stopped in one
    process, as tests and embedders do, left them on the server."""
    from sqlalchemy.engine import make_url

    from tests.jobs.conftest import _admin_connect

    upgrade(postgres_url)
    name = make_url(postgres_url).database
    settings = Settings(var_dir=tmp_path / "var", database_url=postgres_url)

    def connections() -> int:
        with _admin_connect() as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone()
        return int(row[0])

    assert connections() == 0
    with TestClient(create_app(settings, loader=NoModels())) as client:
        assert client.get("/jobs").status_code == 200  # the job API's engine
        assert "urnn_jobs_database_up 1.0" in client.get("/metrics").text  # the reader's
        assert connections() >= 2
    assert connections() == 0


def test_the_schema_says_a_schedule_patch_changes_at_least_one_field(
    client: TestClient, ett_csv: Path
) -> None:
    """The fuzz walk's most frequent schema-valid PATCH /schedules/{id} refused (80 of 8,589
    cases) was `{}`: ScheduleChange showed no lower bound on its fields, while an empty change
    is a 422 'nothing to change'. The schema now says minProperties 1; `{}` is still the 422
    naming the fields it takes."""
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ScheduleChange"]
    assert schema["minProperties"] == 1
    made = client.post(
        "/schedules", json={"cron": "0 3 * * *", "job": tiny_spec(ett_csv)}, headers=KEY
    )
    assert made.status_code == 201, made.text
    answer = client.patch(f"/schedules/{made.json()['id']}", json={}, headers=KEY)
    assert answer.status_code == 422
    assert answer.json()["detail"] == (
        "field 'body': nothing to change: give one or more of paused, cron, timezone, job"
    )


@pytest.mark.postgres
def test_a_read_only_postgres_is_a_503_as_a_read_only_sqlite_file_is(
    postgres_url: str, tmp_path: Path, ett_csv: Path
) -> None:
    """A PostgreSQL that refuses writes (a standby after a failover, or
    default_transaction_read_only set for maintenance) raised the driver's InternalError,
    which no handler answered: every write of the job API was a 500 with a traceback, where
    a read-only SQLite file (OperationalError) is a 503. Reads still answer."""
    from tests.jobs.conftest import _admin_connect

    upgrade(postgres_url)
    settings = Settings(
        var_dir=tmp_path / "var",
        database_url=postgres_url,
        api_key=SecretStr("test-key"),
        model_poll_seconds=0.0,
    )
    app = create_app(settings, loader=NoModels())
    with TestClient(app, raise_server_exceptions=False) as client:
        made = client.post(
            "/schedules", json={"cron": "0 3 * * *", "job": tiny_spec(ett_csv)}, headers=KEY
        ).json()["id"]
        queued = submit(client, tiny_spec(ett_csv)).json()["id"]
        with _admin_connect() as admin:
            name = make_url(postgres_url).database
            admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        app.state.jobs_db.dispose()  # new connections read the setting
        answers = [
            submit(client, tiny_spec(ett_csv)),
            client.post(f"/jobs/{queued}/cancel", headers=KEY),
            client.patch(f"/schedules/{made}", json={"paused": True}, headers=KEY),
            client.delete(f"/schedules/{made}", headers=KEY),
        ]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert "read-only" in answer.json()["detail"], answer.text
        assert client.get("/jobs").json()["total"] == 1
        assert client.get(f"/schedules/{made}").json()["paused"] is False


def test_a_job_database_error_is_logged_in_one_line_without_the_sql(
    client: TestClient, db: Database, ett_csv: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The 503's log line was the driver's whole text: the SQL statement and its parameters
    on further lines (the job's spec, its Idempotency-Key, a 1,500-character INSERT), one
    record per request during an outage. It is one line now: the route, the error's kind
    and the driver's first line, which says what failed."""
    assert client.get("/jobs").status_code == 200  # the API's engine is open
    with db.engine.begin() as connection:  # a table gone under the service
        connection.execute(text("DROP TABLE jobs"))
    headers = {**KEY, "Idempotency-Key": "secret-key-123"}
    with caplog.at_level("ERROR", logger="service.routes.jobs"):
        answer = client.post("/jobs", json=tiny_spec(ett_csv), headers=headers)
    assert answer.status_code == 503, answer.text
    [record] = [r for r in caplog.records if r.name == "service.routes.jobs"]
    line = record.getMessage()
    assert "\n" not in line, line
    assert line.startswith("job database error on POST /jobs: ") and "jobs" in line[35:]
    assert "SQL" not in line and "secret-key-123" not in line and str(ett_csv) not in line


def test_a_database_server_that_does_not_answer_is_a_503_in_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL that accepts the connection and says nothing (a hung or overloaded
    server, a stopped postmaster behind a proxy) held every request of the job API for as
    long as it stayed so (a minute and counting: libpq waits for ever without a connect
    timeout), each holding a threadpool thread, where the job gauges' reader gave up after
    2 s. A connection now has jobs.db.SERVER_CONNECT_TIMEOUT_S (10 s; 2 here) unless the URL
    sets connect_timeout itself: the request is the 503 naming the server."""
    import socket
    import threading
    import time

    import jobs.db

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    def mute() -> None:  # accepts, never answers
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=mute, daemon=True).start()
    monkeypatch.setattr(jobs.db, "SERVER_CONNECT_TIMEOUT_S", 2)
    settings = Settings(
        var_dir=tmp_path / "var",
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/urnn",
        api_key=SecretStr("test-key"),
        model_poll_seconds=0.0,
    )
    try:
        with TestClient(create_app(settings, loader=NoModels())) as client:
            started = time.monotonic()
            answer = client.get("/jobs")
            assert time.monotonic() - started < 8
            assert answer.status_code == 503, answer.text
            assert answer.json()["detail"].startswith(
                f"cannot reach the job database at postgresql+psycopg://postgres@127.0.0.1:{port}"
            )
            assert "timeout" in answer.json()["detail"]
    finally:
        listener.close()
        for connection in accepted:
            connection.close()


def test_a_connect_timeout_in_the_url_is_the_one_used() -> None:
    """The default connect timeout is only a default: a URL's own connect_timeout stays, and
    a best-effort reader's shorter one is kept."""
    from jobs.db import server_connect_args

    assert server_connect_args("postgresql+psycopg://u@h/db", None) == {"connect_timeout": 10}
    assert server_connect_args("postgresql+psycopg://u@h/db?connect_timeout=60", None) == {}
    assert server_connect_args("postgresql+psycopg://u@h/db", 2) == {"connect_timeout": 2}
    assert server_connect_args("postgresql+psycopg2://u@h/db", None) == {"connect_timeout": 10}
    assert server_connect_args("postgresql+pg8000://u@h/db", None) == {}  # takes no such name


def test_a_job_database_pool_with_no_free_connection_is_a_503(
    client: TestClient, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Requests waiting on a slow or locked database hold their pooled connections; the next
    ones waited SQLAlchemy's pool timeout (30 s) and raised its TimeoutError, which no handler
    answered: 20 concurrent GET /jobs while `jobs` was locked (a migration, VACUUM FULL) made
    5 of them 500s with a traceback each. It is a 503 saying the database is busy."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    assert client.get("/jobs").status_code == 200
    engine = create_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    app: Any = client.app
    app.state.jobs_db.dispose()
    app.state.jobs_db = Database(engine=engine, sessions=sessionmaker(engine))
    held = engine.connect()  # a request stuck on a lock holds the pool's only connection
    try:
        with caplog.at_level("ERROR", logger="service.routes.jobs"):
            answer = client.get("/jobs")
        assert answer.status_code == 503, answer.text
        assert "no free connection" in answer.json()["detail"], answer.text
        assert answer.headers["Retry-After"] == "5"
        [record] = [r for r in caplog.records if r.name == "service.routes.jobs"]
        assert "\n" not in record.getMessage() and record.exc_info is None
    finally:
        held.close()
    assert client.get("/jobs").status_code == 200


def test_a_503_says_whether_the_database_is_down_or_not_migrated(
    client: TestClient, db: Database
) -> None:
    """Every job database error of an open API was answered "unavailable or not migrated (run
    `urnn db upgrade`)": a PostgreSQL that stopped answering sent the operator to migrate a
    database that needs none. The 503 says which: tables missing (migrate), or a database
    that does not answer (bring it back; nothing to migrate)."""
    assert client.get("/jobs").status_code == 200
    app: Any = client.app
    opened = app.state.jobs_db
    app.state.jobs_db = Database.from_url("postgresql+psycopg://u@127.0.0.1:1/gone")
    try:
        down = client.get("/jobs")
    finally:
        app.state.jobs_db.dispose()
        app.state.jobs_db = opened
    assert down.status_code == 503
    assert "does not answer" in down.json()["detail"], down.text
    assert "urnn db upgrade" not in down.json()["detail"], down.text
    with db.engine.begin() as connection:  # a database dropped and made again, empty
        connection.execute(text("DROP TABLE jobs"))
    missing = client.get("/jobs")
    assert missing.status_code == 503
    assert "run `urnn db upgrade`" in missing.json()["detail"], missing.text
    assert "tables" in missing.json()["detail"], missing.text
