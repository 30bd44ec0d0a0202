"""The streaming endpoints through HTTP (TestClient, lifespan run) on the real urnn-stream
model: chunking does not change the forecast, /forecast's whole-history path agrees with the
stored state, warm-up, duplicates, gaps, and every bad input's status and message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import API_KEY, Registry, metric_value

KEY = {"X-API-Key": API_KEY}
LOOKBACK = 48


def points(frame: pd.DataFrame, start: int, n: int, **extra: Any) -> dict[str, Any]:
    """An observations body with rows [start, start + n) of the frame, dated by `start`."""
    rows = frame.iloc[start : start + n]
    return {
        "start": rows.index[0].isoformat(),
        "values": rows["y"].tolist(),
        "covariates": {"x": rows["x"].tolist()},
        **extra,
    }


def post(client: TestClient, series_id: str, body: dict[str, Any]) -> Any:
    return client.post(f"/series/{series_id}/observations", json=body, headers=KEY)


def quantile_block(forecast: dict[str, Any]) -> np.ndarray:
    return np.array([forecast["quantiles"][k] for k in sorted(forecast["quantiles"])])


@pytest.fixture
def client(stream_client_for: Callable[..., TestClient]) -> TestClient:
    return stream_client_for()


def test_point_by_point_chunks_and_at_once_give_one_forecast(
    client: TestClient, registry: Registry
) -> None:
    frame, n = registry.frame, 70
    whole = post(client, "whole", points(frame, 0, n))
    assert whole.status_code == 200, whole.text
    chunks = [(0, 30), (30, 25), (55, 15)]
    for start, size in chunks:
        chunked = post(client, "chunks", points(frame, start, size))
        assert chunked.status_code == 200, chunked.text
    post(client, "single", points(frame, 0, 50))
    for row in range(50, n):
        single = post(client, "single", points(frame, row, 1))
        assert single.status_code == 200, single.text
    expected = quantile_block(whole.json()["forecast"])
    for answer in (chunked.json(), single.json()):
        assert answer["series"]["points_seen"] == n
        assert answer["forecast"]["timestamps"] == whole.json()["forecast"]["timestamps"]
        np.testing.assert_allclose(quantile_block(answer["forecast"]), expected, atol=1e-5)
    got = client.get("/series/single/forecast").json()
    np.testing.assert_allclose(quantile_block(got["forecast"]), expected, atol=1e-5)
    assert got["model"]["version"] == "1"
    assert metric_value(client, "urnn_stream_points_total") == 3 * n


def test_forecast_endpoint_reads_the_whole_history_like_the_state(
    client: TestClient, registry: Registry
) -> None:
    frame, n = registry.frame, 90
    streamed = post(client, "s", points(frame, 0, n)).json()["forecast"]
    body = {"series": [{"id": "s", **points(frame, 0, n)}]}
    answer = client.post("/forecast", json=body)
    assert answer.status_code == 200, answer.text
    full = answer.json()["forecasts"][0]
    np.testing.assert_allclose(quantile_block(full), quantile_block(streamed), atol=1e-5)
    assert full["timestamps"] == streamed["timestamps"]
    # The whole history counts, not only its last lookback points.
    short = {"series": [{"id": "s", **points(frame, n - LOOKBACK, LOOKBACK)}]}
    windowed = client.post("/forecast", json=short).json()["forecasts"][0]
    assert not np.allclose(quantile_block(windowed), quantile_block(full), atol=1e-5)
    # So a history too short is not told that only its last lookback values are read (the
    # windowed model's words): cutting a history to them changes this model's forecast.
    too_short = {"series": [{"id": "s", **points(frame, 0, LOOKBACK - 1)}]}
    refused = client.post("/forecast", json=too_short)
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        f"series 0 ('s'), field 'values': has {LOOKBACK - 1} values; the model needs at least "
        f"lookback={LOOKBACK} (it fixes the series' normalisation from the first {LOOKBACK} "
        "and reads the whole history)"
    )


def test_a_covariate_too_large_once_scaled_is_named_by_its_column(
    client: TestClient, registry: Registry
) -> None:
    """The whole-history path scales every point, not only the look-back: a covariate that
    leaves float64 once scaled is a 422 naming `covariates.x`, as every other covariate
    message names the column (it said 'covariates')."""
    body = {"series": [{"id": "s", **points(registry.frame, 0, 60)}]}
    body["series"][0]["covariates"]["x"][0] = -1.7e308  # before the look-back window
    answer = client.post("/forecast", json=body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    # the facts every other entry point's 422 gives: the value, its position, the range the
    # model takes in the data's units and what to send instead (it said only 'too large')
    assert detail.startswith(
        "series 0 ('s'), field 'covariates.x': holds values too large for the model once "
        "scaled (beyond float64's range): -1.7e+308 at position 0; the model takes "
    ), detail
    assert "send the series in the units it was trained on" in detail, detail


def test_a_forecast_overflowed_by_a_covariate_before_the_look_back_names_it(
    client: TestClient, registry: Registry
) -> None:
    """The 422 for a forecast that is not finite names the input with the largest scaled
    value; a streaming model reads the whole history, so that is looked for there: a
    covariate of 1e300 before the last `lookback` points was answered as a problem of
    'values', the largest inside the window."""
    series = {"id": "s", **points(registry.frame, 0, 60)}
    series["values"] = [v + 100.0 for v in series["values"]]  # the window's largest, scaled
    series["covariates"]["x"][0] = 1e300  # before the look-back window
    body = {"series": [series]}
    answer = client.post("/forecast", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(
        "series 0 ('s'), field 'covariates.x': the model's forecast from this history is not finite"
    )


def test_warm_up_then_ready(client: TestClient, registry: Registry) -> None:
    first = post(client, "w", points(registry.frame, 0, 10))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["forecast"] is None
    assert (body["series"]["ready"], body["series"]["points_needed"]) == (False, 38)
    early = client.get("/series/w/forecast")
    assert early.status_code == 409
    assert "needs 38 more" in early.json()["detail"]
    ready = post(client, "w", points(registry.frame, 10, 38)).json()
    assert ready["series"]["ready"] is True and ready["series"]["points_needed"] == 0
    assert len(ready["forecast"]["mean"]) == 12


def test_horizon_quantiles_and_status(client: TestClient, registry: Registry) -> None:
    frame = registry.frame
    answer = post(client, "h", points(frame, 0, 60, horizon=5, quantiles=[0.9, 0.1])).json()
    assert list(answer["forecast"]["quantiles"]) == ["0.9", "0.1"]
    assert len(answer["forecast"]["mean"]) == 5
    got = client.get("/series/h/forecast", params={"horizon": 3, "quantiles": [0.1]}).json()
    assert list(got["forecast"]["quantiles"]) == ["0.1"]
    np.testing.assert_allclose(
        got["forecast"]["quantiles"]["0.1"], answer["forecast"]["quantiles"]["0.1"][:3]
    )
    status = client.get("/series/h").json()
    assert status == {
        "id": "h",
        "first_timestamp": frame.index[0].isoformat(),
        "last_timestamp": frame.index[59].isoformat(),
        "timezone": None,
        "points_seen": 60,
        "model_version": "1",
        "ready": True,
        "points_needed": 0,
        "tail_length": 60,
    }


def test_duplicates_are_idempotent(client: TestClient, registry: Registry) -> None:
    frame = registry.frame
    first = post(client, "d", points(frame, 0, 60)).json()
    again = post(client, "d", points(frame, 50, 10)).json()
    assert (again["accepted"], again["duplicates"]) == (0, 10)
    assert again["series"]["points_seen"] == 60
    assert again["forecast"] == first["forecast"]
    overlap = post(client, "d", points(frame, 55, 10)).json()  # 5 old, 5 new
    assert (overlap["accepted"], overlap["duplicates"]) == (5, 5)
    assert overlap["series"]["points_seen"] == 65


LATE_REAL = (
    "was missing when a later point arrived and was filled by gap_policy='interpolate' with the "
    "interpolated value {filled!r}; this request sends its real value {real!r}; the series' "
    "state has consumed the filled step and cannot take it again (the last stored timestamp is "
    "{last}): to use the real value, DELETE the series and send its history again with it; to "
    "keep the filled one, leave this point out"
)


def late_real_point(client: TestClient, frame: pd.DataFrame, series_id: str) -> Any:
    """Rows 0..59, then 63..67 with gap_policy='interpolate' (61 filled), then row 61 late."""
    post(client, series_id, points(frame, 0, 60))
    assert (
        post(client, series_id, points(frame, 63, 5, gap_policy="interpolate")).status_code == 200
    )
    return post(client, series_id, points(frame, 61, 1))


def test_a_late_real_point_at_a_filled_step_is_said_to_be_one(
    client: TestClient, registry: Registry
) -> None:
    """A step gap_policy='interpolate' filled, then sent late with its real value, answered
    409 "was already consumed with value <the interpolation's>; this request has <real>":
    the user never sent that value. It says the step was filled, both values and the ways
    out; a point the user did send, changed, keeps its own message."""
    frame = registry.frame
    answer = late_real_point(client, frame, "late")
    assert answer.status_code == 409, answer.text
    detail = answer.json()["detail"]
    filled = frame.y.iloc[59] + (frame.y.iloc[63] - frame.y.iloc[59]) * 2 / 4
    stamp, last = frame.index[61].isoformat(), frame.index[67].isoformat()
    expected = LATE_REAL.format(filled=float(filled), real=float(frame.y.iloc[61]), last=last)
    assert detail == f"late point: timestamp {stamp} (position 0) {expected}", detail
    assert client.get("/series/late").json()["points_seen"] == 68  # unchanged
    # the filled value itself is a duplicate, as any consumed point sent again
    again = points(frame, 61, 1)
    again["values"], again["covariates"]["x"] = (
        [float(filled)],
        [float(frame.x.iloc[59] + (frame.x.iloc[63] - frame.x.iloc[59]) * 2 / 4)],
    )
    assert post(client, "late", again).json()["duplicates"] == 1
    # a sent point changed: the message it had
    sent = points(frame, 65, 1)
    sent["values"] = [sent["values"][0] + 1.0]
    detail = post(client, "late", sent).json()["detail"]
    assert detail.startswith(f"conflicting duplicate: timestamp {frame.index[65].isoformat()}")
    assert "interpolate" not in detail


def test_gap_interpolate_fills_linearly(client: TestClient, registry: Registry) -> None:
    frame = registry.frame
    post(client, "g", points(frame, 0, 60))
    filled = post(client, "g", points(frame, 63, 5, gap_policy="interpolate"))
    assert filled.status_code == 200, filled.text
    body = filled.json()
    assert (body["filled"], body["accepted"]) == (3, 5)
    assert body["series"]["points_seen"] == 68
    # The same as sending the linear fill explicitly.
    post(client, "explicit", points(frame, 0, 60))
    last, nxt = frame.iloc[59], frame.iloc[63]
    weights = np.arange(1, 4) / 4
    manual = {
        "start": frame.index[60].isoformat(),
        "values": [*(last.y + (nxt.y - last.y) * weights), *frame["y"].iloc[63:68]],
        "covariates": {"x": [*(last.x + (nxt.x - last.x) * weights), *frame["x"].iloc[63:68]]},
    }
    explicit = post(client, "explicit", manual).json()
    np.testing.assert_allclose(
        quantile_block(body["forecast"]), quantile_block(explicit["forecast"]), atol=1e-9
    )


def test_unknown_series_and_delete(client: TestClient, registry: Registry) -> None:
    for answer in (
        client.get("/series/nope"),
        client.get("/series/nope/forecast"),
        client.delete("/series/nope", headers=KEY),
    ):
        assert answer.status_code == 404
        assert "'nope'" in answer.json()["detail"]
    post(client, "x", points(registry.frame, 0, 50))
    assert client.delete("/series/x", headers=KEY).status_code == 204
    assert client.get("/series/x").status_code == 404
    assert client.delete("/series/x", headers=KEY).status_code == 404
    fresh = post(client, "x", points(registry.frame, 100, 10)).json()  # starts again
    assert fresh["series"]["points_seen"] == 10


def test_mutating_endpoints_need_the_key(client: TestClient, registry: Registry) -> None:
    body = points(registry.frame, 0, 50)
    assert client.post("/series/k/observations", json=body).status_code == 401
    assert (
        client.post("/series/k/observations", json=body, headers={"X-API-Key": "no"}).status_code
        == 401
    )
    post(client, "k", body)
    assert client.delete("/series/k").status_code == 401
    assert client.get("/series/k").json()["points_seen"] == 50


def test_a_windowed_model_answers_409(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    client = client_for()  # the trained kind "urnn" champion
    answer = post(client, "s", points(registry.frame, 0, 50))
    assert answer.status_code == 409
    assert "not a streaming model" in answer.json()["detail"]
    # and what to do instead: the windowed model forecasts whole histories, or serve one
    assert answer.json()["detail"].endswith(
        "; send the history to POST /forecast (this model reads its last 48 values), or serve "
        "a model trained with `urnn train --model urnn-stream`"
    ), answer.json()["detail"]
    # every /series endpoint, not only the POST (a GET used to answer 404, or a snapshot a
    # streaming server had left in a shared database)
    for response in (
        client.get("/series/s"),
        client.get("/series/s/forecast"),
        client.delete("/series/s", headers=KEY),
    ):
        assert response.status_code == 409, response.text
        assert "not a streaming model" in response.json()["detail"]


def test_a_raw_tail_shorter_than_the_lookback_is_refused_at_load(
    stream_client_for: Callable[..., TestClient],
) -> None:
    """A version swap rebuilds each state from the stored tail: kept shorter than one window,
    every series would start warming up again. Said at load, in /readyz (the whole reason to
    a request with the API key, as every failed load's since 567e3b3)."""
    client = stream_client_for(stream_tail_points=1)
    ready = client.get("/readyz", headers=KEY)
    assert ready.status_code == 503
    assert "URNN_STREAM_TAIL_POINTS=1 is below the model's lookback" in ready.json()["detail"]
    # to anyone: a server setting, not a version to replace (it said "register a new version")
    public = client.get("/readyz").json()["detail"]
    assert "a setting of this server does not fit the model" in public, public
    assert "register a new version" not in public and "URNN_STREAM_TAIL_POINTS" not in public


def test_the_docs_observations_example_is_one_the_served_model_answers(
    client: TestClient, client_for: Callable[..., TestClient]
) -> None:
    """/docs' "Try it out" sends the first example: the schema's own (ETTh1's `HUFL`
    covariate, horizon 24) was a 422 from this model (covariate `x`, horizon 12), as from
    every model that reads other covariates or forecasts fewer steps."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    (first,) = schemas["ObservationsRequest"]["examples"]  # the static one, a 422, left out
    assert set(first["covariates"]) == {"x"} and len(first["values"]) == LOOKBACK
    for _ in range(2):  # a second "Try it out" is a retry of the same points
        answer = post(client, "docs-example", first)
        assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["duplicates"]) == (0, LOOKBACK)
    assert len(body["forecast"]["mean"]) == first["horizon"] == 12
    # a windowed model answers the /series endpoints 409 whatever is sent: no such example
    windowed = client_for().get("/openapi.json").json()["components"]["schemas"]
    (static,) = windowed["ObservationsRequest"]["examples"]
    assert set(static["covariates"]) == {"HUFL"}  # the schema's own


def test_a_flat_zero_history_is_forecast_as_exactly_zero_as_the_main_kind_answers_it(
    client: TestClient, registry: Registry
) -> None:
    """The main kind snaps the un-scaling's round-off about 0 to 0 (`snap_zeros`: a flat
    zero history was served as 4.2e-06); the streaming kind answered a series of zeros with
    tiny non-zero values (QA, 2026-12-07) on every route. All answer exactly 0 now."""
    quiet = points(registry.frame, 0, 60)
    quiet["values"] = [0.0] * 60
    quiet["covariates"] = {"x": [0.0] * 60}

    def zeros(forecast: dict[str, Any]) -> bool:
        values = {v for row in forecast["quantiles"].values() for v in row}
        return values == {0.0} and set(forecast["mean"]) == {0.0}

    posted = post(client, "quiet", quiet)
    assert posted.status_code == 200, posted.text
    assert zeros(posted.json()["forecast"]), posted.json()["forecast"]
    assert zeros(client.get("/series/quiet/forecast").json()["forecast"])
    with client.websocket_connect("/series/stream", headers=KEY) as socket:
        socket.send_json({"series_id": "quiet-socket", **quiet})
        assert zeros(socket.receive_json()["forecast"])
    whole = client.post("/forecast", json={"series": [{"id": "quiet", **quiet}]})
    assert whole.status_code == 200, whole.text
    assert zeros(whole.json()["forecasts"][0])


def off_by_the_scaler(client: TestClient, series_id: str) -> float:
    """A level that the served scaler's round trip, level -> z -> z x scale + mean in float64,
    does not give back (a few % of them), so that an answer computed that way shows."""
    from tests.service.test_contract import state_of

    scales = state_of(client).manager.require().scales_for(series_id)
    assert scales is not None
    mean, scale = scales.target_mean, scales.target_scale
    for level in 5000.0 + 0.25 * np.arange(400):
        if ((level - mean) / scale) * scale + mean != level:
            return float(level)
    raise AssertionError("no level in 5000..5100 is moved by the scaler's round trip")


def stuck_body(client: TestClient, frame: pd.DataFrame, series_id: str) -> dict[str, Any]:
    body = points(frame, 0, 60)
    body["values"] = [off_by_the_scaler(client, series_id)] * 60
    return body


def exactly(forecast: dict[str, Any], level: float) -> bool:
    values = {v for row in forecast["quantiles"].values() for v in row}
    return values == {level} and set(forecast["mean"]) == {level}


def test_a_stuck_sensor_is_forecast_as_its_level_exactly_on_every_route(
    client: TestClient, registry: Registry
) -> None:
    """A sensor stuck at one level since its first point is forecast as that level, every
    quantile. It was answered as the level's z-score x scale + mean in float64, one float step
    off for some levels (5004.000000000001 for 5004.0): the zero-width interval missed
    every actual at the level. The windowed kinds answer the level exactly (their forecasts
    are un-scaled from the look-back's last value); the streaming routes now do too."""
    body = stuck_body(client, registry.frame, "stuck")
    level = body["values"][-1]
    posted = post(client, "stuck", body)
    assert posted.status_code == 200, posted.text
    assert exactly(posted.json()["forecast"], level), posted.json()["forecast"]
    assert exactly(client.get("/series/stuck/forecast").json()["forecast"], level)
    with client.websocket_connect("/series/stream", headers=KEY) as socket:
        socket.send_json({"series_id": "stuck-socket", **body})
        assert exactly(socket.receive_json()["forecast"], level)
    whole = client.post("/forecast", json={"series": [{"id": "stuck", **body}]})
    assert whole.status_code == 200, whole.text
    assert exactly(whole.json()["forecasts"][0], level)
    # A sensor that leaves its level is not answered as it any more: the model forecasts it.
    moved = post(client, "stuck", {**points(registry.frame, 60, 1), "values": [level + 1.0]})
    assert not exactly(moved.json()["forecast"], level + 1.0)
