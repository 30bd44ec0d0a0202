"""Job specs that would hold the service rather than fail: what POST /jobs and /schedules refuse
before anything reads the data file with them."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.db import Database
from jobs.spec import JobSpec, JobSpecError, separator_problem
from service.main import create_app
from tests.jobs.conftest import tiny_spec
from tests.jobs.test_api import KEY, NoModels
from urnn_forecast.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's httpx deprecation note, as in tests/service
    from fastapi.testclient import TestClient


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, loader=NoModels())) as test_client:
        yield test_client


# What real exports need: one character, whitespace runs, a doubled or spaced separator
SAFE_SEPARATORS = [",", ";", "\t", "|", ".", r"\s+", ";;", "::", r"\s*;\s*", r"\|", "[;,]"]
SAFE_SEPARATORS += [r"\s{2,}", r"\t+", " +", r"[\t ]+", "\\\\"]

# Each either backtracks exponentially (nested or alternated repeats) or polynomially over
# any text ('.', a negated set, a range, side-by-side repeats), or is more than a separator
HOSTILE_SEPARATORS = ["(.+)+z", "(a|a)+b", "(a+)+$", ".*.*x", r"\S+", "[^,]+", "[ -~]+"]
HOSTILE_SEPARATORS += [r"\s*\s*x", r"a*,b*,c*", "(,)", r"(,)\1", "(?=,),", ",|;", r"\w+"]
HOSTILE_SEPARATORS += ["a{1,2}{3}", "x**", r"\s+?", "a{99999999}"]


@pytest.mark.parametrize("sep", SAFE_SEPARATORS)
def test_plain_separator_patterns_are_allowed(sep: str) -> None:
    assert separator_problem(sep) is None


@pytest.mark.parametrize("sep", HOSTILE_SEPARATORS)
def test_separator_patterns_that_can_run_for_hours_are_refused(sep: str) -> None:
    problem = separator_problem(sep)
    assert problem is not None
    assert "a job's multi-character sep" in problem


def test_the_check_is_the_spec_s_own_so_the_worker_refuses_a_stored_one(ett_csv: Path) -> None:
    """A spec stored before the check (a schedule's job) fails at the worker's
    `train_config()`, before a child reads the file with it."""
    spec = JobSpec.model_validate(tiny_spec(ett_csv, config={"load": {"sep": "(.+)+z"}}))
    with pytest.raises(JobSpecError) as raised:
        spec.train_config()
    assert raised.value.field == "config.load.sep"


def test_a_backtracking_separator_is_a_422_not_a_frozen_service(
    client: TestClient, ett_csv: Path
) -> None:
    """Python's `re` holds the GIL while it matches: sep "(.+)+z" on ETTh1's 38-character
    header froze the whole service (/healthz and /forecast included) for good, from one POST
    /jobs. "(a|a)+b" is as refused, and ends quickly on this header if it were not."""
    for sep in ("(a|a)+b", "(.+)+z"):
        spec = tiny_spec(ett_csv)
        spec["config"]["load"] = {"sep": sep}
        answer = client.post("/jobs", json=spec, headers=KEY)
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith("field 'config.load.sep': "), detail
        assert "a job's multi-character sep" in detail
        schedule = client.post("/schedules", json={"cron": "0 3 * * *", "job": spec}, headers=KEY)
        assert schedule.status_code == 422, schedule.text
        assert "'job.config.load.sep'" in schedule.json()["detail"]
    assert client.get("/jobs", headers=KEY).json()["total"] == 0
