"""The /forecast contract of ARCHITECTURE.md against a tiny trained model in a temp registry:
shapes, timestamps, quantile subsets, shorter horizons, the model block, GET /model, health,
OpenAPI, and numbers equal to `ForecastPredictor.predict_frame` (the MLflow pyfunc's path)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from service.state import ServiceState
from tests.service.conftest import NAME, Registry, history, metric_value
from tests.training.test_registry import HORIZON, LOOKBACK


def state_of(client: TestClient) -> ServiceState:
    state: ServiceState = client.app.state.service  # type: ignore[attr-defined]
    return state


def test_forecast_shapes_timestamps_and_model_block(client: TestClient, registry: Registry) -> None:
    body = {"series": [history(registry.frame, "pump-1"), history(registry.frame, "pump-2")]}
    response = client.post("/forecast", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    run_id = state_of(client).manager.require().ref.run_id
    assert out["model"] == {"name": NAME, "version": "1", "run_id": run_id}
    assert len(run_id) == 32
    assert [f["id"] for f in out["forecasts"]] == ["pump-1", "pump-2"]
    first = out["forecasts"][0]
    last_input = registry.frame.index[-1]
    expected = [(last_input + pd.Timedelta(hours=h)).isoformat() for h in range(1, HORIZON + 1)]
    assert first["timestamps"] == expected
    assert len(first["mean"]) == HORIZON
    assert set(first["quantiles"]) == {"0.1", "0.5", "0.9"}
    q = {k: np.array(v) for k, v in first["quantiles"].items()}
    np.testing.assert_allclose(first["mean"], q["0.5"])
    assert (q["0.1"] <= q["0.5"]).all() and (q["0.5"] <= q["0.9"]).all()
    assert 0.0 < float(np.mean(first["mean"])) < 20.0  # original units: the data lives near 10


def test_shorter_horizon_and_quantile_subset(client: TestClient, registry: Registry) -> None:
    series = history(registry.frame)
    full = client.post("/forecast", json={"series": [series]}).json()["forecasts"][0]
    body = {"horizon": 5, "quantiles": [0.9, 0.1], "series": [series]}
    response = client.post("/forecast", json=body)
    assert response.status_code == 200, response.text
    short = response.json()["forecasts"][0]
    assert list(short["quantiles"]) == ["0.9", "0.1"]  # the request's order
    assert short["timestamps"] == full["timestamps"][:5]
    np.testing.assert_allclose(short["mean"], full["mean"][:5], rtol=1e-6)
    np.testing.assert_allclose(short["quantiles"]["0.1"], full["quantiles"]["0.1"][:5], rtol=1e-6)


def test_explicit_timestamps_and_no_dates(client: TestClient, registry: Registry) -> None:
    series = history(registry.frame)
    stamps = pd.date_range(series["start"], periods=len(series["values"]), freq="h")
    dated = {**series, "start": None, "timestamps": [t.isoformat() for t in stamps]}
    undated = {k: v for k, v in series.items() if k not in ("start", "freq")}
    by_start, by_stamps, bare = (
        client.post("/forecast", json={"series": [s]}).json()["forecasts"][0]
        for s in (series, dated, undated)
    )
    assert by_stamps["timestamps"] == by_start["timestamps"]
    assert bare["timestamps"] is None  # this model reads no calendar: dates are optional
    np.testing.assert_allclose(by_stamps["mean"], by_start["mean"], rtol=1e-6)
    np.testing.assert_allclose(bare["mean"], by_start["mean"], rtol=1e-6)


def predict_frame_rows(series: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"id": s["id"], "values": s["values"], "x": s["covariates"]["x"], "start": s["start"]}
            for s in series
        ]
    )


def assert_matches_predict_frame(
    client: TestClient, series: list[dict[str, Any]], expected: pd.DataFrame
) -> None:
    response = client.post("/forecast", json={"series": series})
    assert response.status_code == 200, response.text
    for forecast in response.json()["forecasts"]:
        rows = expected[expected["id"] == forecast["id"]]
        assert forecast["timestamps"] == rows["timestamp"].tolist()
        np.testing.assert_allclose(forecast["mean"], rows["mean"], rtol=1e-6, atol=1e-9)
        for level in ("0.1", "0.5", "0.9"):
            np.testing.assert_allclose(
                forecast["quantiles"][level], rows[f"q{level}"], rtol=1e-6, atol=1e-9
            )


def test_numbers_equal_predict_frame(client: TestClient, registry: Registry) -> None:
    series = [
        history(registry.frame, "a"),
        history(registry.frame, "b", stop=400, length=LOOKBACK),
        history(registry.frame, "c", stop=250, length=130),
    ]
    predictor = state_of(client).manager.require().predictor
    assert_matches_predict_frame(
        client, series, predictor.predict_frame(predict_frame_rows(series))
    )


def test_calendar_model_equals_predict_frame_and_needs_dates(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    registry.register("calendar-model", calendar=True, seed=3)
    client = client_for(model_uri="models:/calendar-model@champion")
    info = client.get("/model").json()
    assert info["needs_dates"] is True
    assert info["calendar_clock"] == "local"  # the test registry's naive hourly frame
    series = [history(registry.frame, "a"), history(registry.frame, "b", stop=333, length=70)]
    predictor = state_of(client).manager.require().predictor
    expected = predictor.predict_frame(predict_frame_rows(series))
    assert_matches_predict_frame(client, series, expected)
    # The same history dated by explicit timestamps gives the same calendar features.
    stamps = pd.date_range(series[0]["start"], periods=len(series[0]["values"]), freq="h")
    dated = {**series[0], "start": None, "timestamps": [t.isoformat() for t in stamps]}
    assert_matches_predict_frame(client, [dated], expected)
    # A zoned start: same calendar (local wall time) as pandas, offsets kept in the output.
    zoned = [{**series[1], "id": "z", "start": series[1]["start"] + "+02:00"}]
    assert_matches_predict_frame(client, zoned, predictor.predict_frame(predict_frame_rows(zoned)))
    first = client.post("/forecast", json={"series": zoned}).json()["forecasts"][0]
    assert first["timestamps"][0].endswith("+02:00")
    undated = {k: v for k, v in series[0].items() if k != "start"}
    response = client.post("/forecast", json={"series": [undated]})
    assert response.status_code == 422
    assert "series 0 ('a'), field 'start'" in response.json()["detail"]
    assert "calendar features" in response.json()["detail"]


def test_a_non_negative_model_answers_no_value_below_zero_as_predict_frame_does(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """A history far below 0 forecasts far below 0; a version trained on a never-negative
    target (ForecasterConfig.non_negative) answers 0 there instead, and its pyfunc's
    predict_frame the same; the same weights without the floor answer the negatives."""
    sunk = [
        {
            **history(registry.frame, "a"),
            "values": [v - 1e4 for v in history(registry.frame)["values"]],
        },
        history(registry.frame, "b", stop=333, length=70),
    ]
    registry.register("floored", seed=5, non_negative=True)
    registry.register("unfloored", seed=5)
    plain = client_for(model_uri="models:/unfloored@champion")
    below = plain.post("/forecast", json={"series": sunk}).json()["forecasts"]
    assert max(below[0]["quantiles"]["0.9"]) < -1_000
    floored = client_for(model_uri="models:/floored@champion")
    assert floored.get("/model").json()["non_negative"] is True
    assert plain.get("/model").json()["non_negative"] is False
    predictor = state_of(floored).manager.require().predictor
    expected = predictor.predict_frame(predict_frame_rows(sunk))
    assert (expected[["q0.1", "q0.5", "q0.9", "mean"]].to_numpy() >= 0).all()
    assert_matches_predict_frame(floored, sunk, expected)
    answer = floored.post("/forecast", json={"series": sunk}).json()["forecasts"]
    assert set(answer[0]["mean"]) == {0.0}
    assert all(q == 0.0 for row in answer[0]["quantiles"].values() for q in row)
    # the other series, above 0, is forecast as without the floor
    assert answer[1]["quantiles"] == below[1]["quantiles"]


def test_a_flat_zero_history_is_forecast_as_exactly_zero_as_the_backtest_scores_it(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """48 quiet hours (every value 0) come back through the float32 scaler as ~1e-6, not 0:
    the service and the pyfunc answered 4e-6 sales where the backtest (which snaps the
    un-scaling's round-off to 0) recorded 0, and a client's sMAPE of such a forecast of a
    zero counted 200 a term. Both now answer exactly 0, with or without the floor."""
    quiet = {**history(registry.frame, "quiet"), "values": [0.0] * 60}
    quiet["covariates"] = {"x": [0.0] * 60}
    registry.register("floored-quiet", seed=5, non_negative=True)
    for name in ("floored-quiet", NAME):
        client = client_for(model_uri=f"models:/{name}@champion")
        answer = client.post("/forecast", json={"series": [quiet]}).json()["forecasts"][0]
        assert set(answer["mean"]) == {0.0}, name
        assert {v for row in answer["quantiles"].values() for v in row} == {0.0}, name
        predictor = state_of(client).manager.require().predictor
        frame = predictor.predict_frame(predict_frame_rows([quiet]))
        assert (frame[["mean", "q0.1", "q0.5", "q0.9"]].to_numpy() == 0.0).all(), name


def test_a_stuck_sensor_is_forecast_as_its_level_exactly_by_the_service_and_the_pyfunc(
    client: TestClient, registry: Registry
) -> None:
    """A sensor stuck at 12.345678 for the whole look-back: forecast as its level, which came
    back from the float32 z-score the model read as 12.3456781 or so, and the zero-width
    interval missed an actual of 12.345678 (realised coverage 0 on an exact forecast). The
    service (block and per-series paths) and the pyfunc answer the level exactly."""
    stuck = {**history(registry.frame, "stuck"), "values": [12.345678] * 60}
    other = history(registry.frame, "pump-1", length=80)  # lengths differ: no block
    predictor = state_of(client).manager.require().predictor
    for series in ([stuck], [stuck, other]):  # a block; series one by one
        answer = client.post("/forecast", json={"series": series}).json()["forecasts"][0]
        assert set(answer["mean"]) == {12.345678}
        assert {v for row in answer["quantiles"].values() for v in row} == {12.345678}
    frame = predictor.predict_frame(predict_frame_rows([stuck]))
    assert (frame[["mean", "q0.1", "q0.5", "q0.9"]].to_numpy() == 12.345678).all()


def test_concurrent_requests_share_batches_and_keep_their_answers(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    client = client_for(batch_max_wait_ms=50.0)
    bodies = [{"series": [history(registry.frame, f"s{i}", stop=300 + 17 * i)]} for i in range(8)]
    alone = [client.post("/forecast", json=b).json()["forecasts"][0]["mean"] for b in bodies]
    count_before = metric_value(client, "urnn_batch_requests_count")
    answers: dict[int, list[float]] = {}
    barrier = threading.Barrier(len(bodies))

    def fire(i: int) -> None:
        barrier.wait()
        response = client.post("/forecast", json=bodies[i])
        assert response.status_code == 200
        answers[i] = response.json()["forecasts"][0]["mean"]

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, mean in enumerate(alone):
        np.testing.assert_allclose(answers[i], mean, rtol=1e-5)
    batches = metric_value(client, "urnn_batch_requests_count") - count_before
    assert 1 <= batches < len(bodies)  # at least two requests shared a forward pass


def test_model_info_health_and_docs(client: TestClient) -> None:
    info = client.get("/model").json()
    # URNN_DEVICE is left at `auto` here: cuda on a machine with a GPU (tests/service/
    # test_cuda_serving.py compares the two).
    where = "cuda" if torch.cuda.is_available() else "cpu"
    assert info["name"] == NAME and info["version"] == "1" and info["device"] == where
    assert (info["lookback"], info["max_horizon"]) == (LOOKBACK, HORIZON)
    assert info["quantiles"] == [0.1, 0.5, 0.9]
    assert (info["target"], info["covariates"], info["freq"]) == ("y", ["x"], "h")
    assert info["uri"] == "models:/urnn-forecaster@champion"
    assert info["last_reload_error"] is None and info["loaded_at"]
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model"]["version"] == "1"
    # probes that send HEAD (load balancers, uptime checks) get the status alone; was 405
    for probe in ("/healthz", "/readyz"):
        head = client.head(probe)
        assert (head.status_code, head.content) == (200, b"")
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/forecast", "/model", "/model/reload", "/healthz", "/readyz", "/metrics"} <= set(
        spec["paths"]
    )
    series = spec["components"]["schemas"]["SeriesIn"]
    assert series["properties"]["values"]["description"]
    assert series["examples"]
    # bounds in JSON Schema's words, which generated clients read (pydantic's own `ge` is not)
    horizon = spec["components"]["schemas"]["ForecastRequest"]["properties"]["horizon"]
    assert {"type": "integer", "minimum": 1} in horizon["anyOf"]
    assert not set(_keys(spec)) & {"ge", "gt", "le", "lt"}

    # /docs' "Try it out" sends the first example: one the served model answers (the schema's
    # own six values were refused by every model, which reads a longer look-back); it is the
    # only one: the static one, listed second until 2026-12-07, was a 422 copied from /docs
    (first,) = spec["components"]["schemas"]["ForecastRequest"]["examples"]
    assert (first["horizon"], first["quantiles"]) == (HORIZON, [0.1, 0.5, 0.9])
    (example,) = first["series"]
    assert len(example["values"]) == LOOKBACK and set(example["covariates"]) == {"x"}
    answer = client.post("/forecast", json=first)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["forecasts"][0]["timestamps"]) == HORIZON


def test_every_operation_has_its_own_operation_id(client: TestClient) -> None:
    """GET and HEAD /healthz and /readyz were one route each, so /openapi.json gave both methods
    one operationId (FastAPI warned "Duplicate Operation ID" at every start; seen on an
    upgrade walk) and clients generated from the spec clashed on it. The GET ids are kept."""
    spec = client.get("/openapi.json").json()
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    probes = {p: spec["paths"][p] for p in ("/healthz", "/readyz")}
    assert probes["/healthz"]["get"]["operationId"] == "healthz_healthz_get"
    assert probes["/readyz"]["get"]["operationId"] == "readyz_readyz_get"
    assert {probes[p]["head"]["operationId"] for p in probes} == {"healthz_head", "readyz_head"}
    assert "503" in probes["/readyz"]["head"]["responses"]


def test_the_docs_example_shows_no_training_level_with_or_without_the_read_key(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """/openapi.json answers without a key: its example is a wave around 0, not the training
    mean. URNN_API_KEY_FOR_READS guards the job and schedule reads, not GET /model, so the
    example (which shows what GET /model does) is there with it too; it was left out."""
    registry.register("docs-example", seed=1)
    open_reads = client_for(model_uri="models:/docs-example@champion")
    first = open_reads.get("/openapi.json").json()["components"]["schemas"]["ForecastRequest"]
    values = first["examples"][0]["series"][0]["values"]
    assert max(abs(v) for v in values) <= 1.0 and values[0] == 0.0
    assert set(first["examples"][0]["series"][0]["covariates"]["x"]) == {0.0}
    closed = client_for(model_uri="models:/docs-example@champion", api_key_for_reads=True)
    assert closed.get("/model").status_code == 200  # no key: GET /model is not a guarded read
    spec = closed.get("/openapi.json").json()
    examples = spec["components"]["schemas"]["ForecastRequest"]["examples"]
    assert examples == first["examples"][:1]  # the served one alone


def test_the_docs_example_fits_weekly_and_monthly_models() -> None:
    """Its start lies on the model's grid, so that a weekly (Sunday) or month-start model is
    not refused for a start off its frequency."""
    from types import SimpleNamespace

    from service.openapi_example import _on_grid
    from service.served import parse_offset

    for freq, start in (("h", "2024-01-01T00:00:00"), ("W-SUN", "2024-01-07T00:00:00"),
                        ("MS", "2024-01-01T00:00:00"), ("ME", "2024-01-31T00:00:00")):  # fmt: skip
        assert _on_grid(SimpleNamespace(offset=parse_offset(freq))) == start  # type: ignore[arg-type]


def _keys(node: object) -> Iterator[str]:
    """Every schema keyword in an OpenAPI document (not field names, not sample data)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("examples", "example"):
                continue
            if key in ("properties", "schemas", "paths", "responses"):  # names -> schemas
                for named in value.values():
                    yield from _keys(named)
                continue
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


@pytest.mark.parametrize("freq", ["h", "60min"])
def test_freq_alias_spelled_differently_is_accepted(
    client: TestClient, registry: Registry, freq: str
) -> None:
    series = {**history(registry.frame), "freq": freq}
    assert client.post("/forecast", json={"series": [series]}).status_code == 200


def test_openapi_history_entries_are_numbers_as_the_service_takes(client: TestClient) -> None:
    """The fuzz walk's schema-valid histories holding null were all refused: /openapi.json
    showed each entry of `values` and of a covariate list as `number | null` (so generated
    clients typed them Optional[float]), while every null is a 422 naming its position. The
    schema now shows a number; the null still parses far enough for that 422."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for model in ("SeriesIn", "ObservationsRequest"):
        fields = schemas[model]["properties"]
        assert fields["values"]["items"] == {"type": "number"}, model
        (lists,) = [kind for kind in fields["covariates"]["anyOf"] if kind["type"] == "object"]
        # numbers, or a flag's true/false throughout (read as 1 and 0), never the two mixed
        assert lists["additionalProperties"] == {
            "anyOf": [
                {"items": {"type": "number"}, "type": "array"},
                {"items": {"type": "boolean"}, "type": "array"},
            ]
        }, model
    values = np.sin(np.arange(LOOKBACK) / 5.0).tolist()
    values[3] = None
    series = {"id": "a", "values": values, "covariates": {"x": [1.0] * LOOKBACK}}
    answer = client.post("/forecast", json={"series": [series]})
    assert answer.status_code == 422
    assert "'values': holds null at position 3" in answer.json()["detail"]


def test_head_is_answered_wherever_get_is(client: TestClient) -> None:
    """RFC 9110 (9.3.2): HEAD is GET without the body, and a general-purpose server answers it
    wherever it answers GET. FastAPI's routes take only the methods they name: HEAD /model,
    /metrics, /jobs, /schedules answered 405 to uptime checks and link checkers."""
    from tests.service.conftest import API_KEY

    key = {"X-API-Key": API_KEY}
    for path, headers in (
        ("/model", {}),
        ("/metrics", {}),
        ("/jobs", key),
        ("/schedules", key),
        ("/openapi.json", {}),
    ):
        got, head = client.get(path, headers=headers), client.head(path, headers=headers)
        assert head.status_code == got.status_code != 405, (path, head.status_code, got.text)
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        if not path.startswith(("/jobs", "/schedules")):  # no job database in this fixture
            assert head.status_code == 200, path
    # HEAD on a POST-only route is refused as GET is, naming the methods it takes
    refused = client.head("/forecast")
    assert refused.status_code == 405 and refused.headers["allow"] == "POST"
    before = metric_value(
        client, "urnn_http_request_duration_seconds_count", route="/model", method="HEAD"
    )
    client.head("/model")
    after = metric_value(
        client, "urnn_http_request_duration_seconds_count", route="/model", method="HEAD"
    )
    assert after == before + 1  # counted as HEAD under its route


@pytest.mark.parametrize(("trained", "spellings"), [("7D", ["W-SUN", "W"]), ("W-SUN", ["7D"])])
def test_a_weekly_model_answers_either_spelling_of_its_weeks_alike(
    client_for: Callable[..., TestClient], registry: Registry, trained: str, spellings: list[str]
) -> None:
    """`urnn train` infers weekly data as '7D' (models registered so say it); clients call
    the same Sundays 'W-SUN' or 'W'. A model trained with --freq W-SUN is sent '7D' alike.
    JSON and Arrow bodies answer each spelling as the model's own."""
    from service.arrow_io import ARROW_STREAM, request_stream

    name = f"weekly-{trained.lower()}"
    weekly = registry.frame.set_axis(
        pd.date_range("2007-01-07", periods=len(registry.frame), freq="W-SUN")
    )
    registry.register(name, seed=5, meta={"freq": trained}, example=weekly)
    client = client_for(model_uri=f"models:/{name}@champion")
    assert client.get("/model").json()["freq"] == trained
    series = {**history(registry.frame, "w"), "start": "2018-07-01T00:00:00"}  # a Sunday

    def post(freq: str, start: str = series["start"], arrow: bool = False) -> Any:
        one = {**series, "freq": freq, "start": start}
        if arrow:
            stream = request_stream([one], horizon=None, quantiles=None)
            return client.post("/forecast", content=stream, headers={"content-type": ARROW_STREAM})
        return client.post("/forecast", json={"series": [one]})

    own = post(trained)
    assert own.status_code == 200, own.text
    stamps = own.json()["forecasts"][0]["timestamps"]
    assert pd.DatetimeIndex(stamps).day_of_week.unique().tolist() == [6]
    for freq in spellings:
        for arrow in (False, True):
            answer = post(freq, arrow=arrow)
            assert answer.status_code == 200, answer.text
            assert answer.json() == own.json()
        refused = post(freq, start="2018-07-02T00:00:00")  # a Monday
        assert refused.status_code == 422
        assert refused.json()["detail"].startswith(
            f"series 0 ('w'), field 'freq': {freq!r} names the model's {trained!r} steps only "
            "from a Sunday, and `start` 2018-07-02T00:00:00 is a Monday"
        )
