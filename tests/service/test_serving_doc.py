"""The JSON bodies docs/serving.md shows are bodies the service takes: the complete ones as
they are written, the abridged exchange with its `...` filled in."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from models.forecaster import ForecasterConfig, build_forecaster, n_calendar_features
from service.forecasting import iso_timestamps
from service.schemas import ForecastRequest, ForecastResponse
from service.validation import prepare
from tests.service.conftest import Registry, _isolate_mlflow
from tests.service.test_fast_path import StubModel, _as_model
from training.mlflow_model import input_example
from training.registry import CHAMPION, log_forecaster

DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def _blocks(language: str) -> list[str]:
    """The fenced blocks of `language`, their list-item indentation removed."""
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(rf"^( *)```{language}\n(.*?)^\1```$", text, flags=re.M | re.S)
    return [re.sub(rf"^{indent}", "", body, flags=re.M) for indent, body in found]


def test_every_json_block_is_a_complete_request_the_service_takes() -> None:
    blocks = _blocks("json")
    assert blocks, "docs/serving.md shows no JSON body"
    for block in blocks:
        body = json.loads(block)  # complete: nothing elided
        request = ForecastRequest.model_validate(body)
        for series in request.series:
            assert series.id and series.values


def test_the_london_body_forecasts_across_spring_forward_as_the_doc_says() -> None:
    """An hourly local-clock model that reads 24 values, as the doc says the body is for."""
    (body,) = [json.loads(b) for b in _blocks("json") if "Europe/London" in b]
    assert body["timezone"] == "Europe/London" and len(body["series"][0]["values"]) == 24
    model = StubModel(lookback=24, max_horizon=12, needs_dates=True)
    prepared = prepare(ForecastRequest.model_validate(body), _as_model(model))
    (stamps,) = iso_timestamps([prepared.series[0].dates], 3)
    assert stamps is not None
    text = DOC.read_text(encoding="utf-8")
    assert f"`{stamps[0]}`, `{stamps[1]}`, ..." in text
    assert list(stamps) == [
        "2024-03-31T00:00:00+00:00",
        "2024-03-31T02:00:00+01:00",
        "2024-03-31T03:00:00+01:00",
    ]
    assert [pd.Timestamp(t).hour for t in stamps] == [0, 2, 3]  # the wall clock, 01:00 skipped


def test_the_abridged_exchange_is_a_request_and_an_answer_once_filled_in() -> None:
    (exchange,) = [b for b in _blocks("text") if b.startswith("POST /forecast")]
    request, answer = exchange.removeprefix("POST /forecast\n").split("\n200\n")
    filled = re.sub(r"\[\.\.\.\]", "[1.5]", request.replace(", ...]", "]"))
    body = ForecastRequest.model_validate(json.loads(filled))
    assert body.horizon == 24 and body.series[0].freq == "h"
    filled = re.sub(r"\[\.\.\.\]", "[1.5]", answer.replace(", ...]", "]"))
    ForecastResponse.model_validate(json.loads(filled))


@pytest.fixture
def london_client(client_for: Callable[..., TestClient], registry: Registry) -> TestClient:
    """The service on the model the London body is for: hourly, 24 values in, calendar
    features on the local clock, no covariates (untrained: the answer's dates are the point)."""
    import mlflow
    import torch

    from urnn_forecast.tracking import start_run

    config = ForecasterConfig(
        kind="urnn", lookback=24, horizon=12, hidden_size=8, segment_length=12,
        n_calendar=n_calendar_features("h"),
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_forecaster(config).eval()
    meta = {**registry.meta, "lookback": 24, "horizon": 12, "covariates": []}
    example = input_example(registry.frame, "y", [], 24, "meter-1")
    with pytest.MonkeyPatch.context() as patch:
        _isolate_mlflow(patch)
        with start_run("service-tests", registry.settings):
            logged = log_forecaster(model, meta, example, registered_name="doc-london")
        assert logged.version is not None
        mlflow.MlflowClient().set_registered_model_alias("doc-london", CHAMPION, logged.version)
    return client_for(model_uri=f"models:/doc-london@{CHAMPION}")


def test_the_service_answers_the_london_body(london_client: TestClient) -> None:
    info = london_client.get("/model").json()
    assert (info["lookback"], info["calendar_clock"], info["covariates"]) == (24, "local", [])
    (block,) = [b for b in _blocks("json") if "Europe/London" in b]
    response = london_client.post("/forecast", content=block.encode(),
                                  headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 200, response.text
    (forecast,) = response.json()["forecasts"]
    assert forecast["id"] == "meter-1"
    assert forecast["timestamps"][:2] == ["2024-03-31T00:00:00+00:00", "2024-03-31T02:00:00+01:00"]
