"""Rolling intervals (URNN_ADAPTIVE_INTERVALS=rolling): the window's conformal quantile, the
served quantiles moved by it, and the service learning it from realised scores."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from pydantic import ValidationError

from service.adaptive import M_MAX, AdaptiveIntervals, apply, outer_pair, scores
from service.realised import kept_spacing
from tests.service.conftest import API_KEY, ROWS, Registry, history, metric_value
from tests.training.test_registry import HORIZON
from urnn_forecast import cli
from urnn_forecast.settings import Settings

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


def test_a_new_version_serves_the_interval_as_calibrated() -> None:
    adaptive = AdaptiveIntervals(window=20)
    assert adaptive.multipliers("1", 4, 0.8).tolist() == [1.0] * 4
    assert adaptive.current("2") is None and adaptive.scored("1") == 0


def test_the_multiplier_is_the_conformal_quantile_of_the_last_window_scores() -> None:
    adaptive = AdaptiveIntervals(window=20)
    adaptive.multipliers("1", 3, 0.8)
    # step 0: scores 1..20 -> the ceil(21 x 0.8) = 17th smallest
    adaptive.add("1", np.zeros(20, dtype=np.intp), np.arange(1.0, 21.0))
    # step 1: 30 scores, in any order among other steps' scores: the last 20 are kept
    steps = np.array([1, 2] * 30)
    values = np.repeat(np.arange(30.0), 2) / 10.0  # step 1 gets 0.0, 0.1, ..., 2.9
    adaptive.add("1", steps, values)
    m = adaptive.multipliers("1", 3, 0.8)
    assert m[0] == 17.0
    assert m[1] == pytest.approx(np.sort(np.arange(10, 30) / 10.0)[16])  # of 1.0 .. 2.9
    assert m[2] == m[1]
    assert adaptive.scored("1") == 80


def test_it_widens_past_a_fifth_and_narrows_past_four_fifths_of_the_window() -> None:
    # window 20, level 0.8: m is the 17th smallest of the window, which starts as 20 ones
    adaptive = AdaptiveIntervals(window=20)
    adaptive.multipliers("1", 2, 0.8)
    adaptive.add("1", np.zeros(3, dtype=np.intp), np.full(3, 3.0))  # 3 of 20 above 1
    assert adaptive.multipliers("1", 2, 0.8)[0] == 1.0
    adaptive.add("1", np.zeros(1, dtype=np.intp), np.full(1, 3.0))  # the fourth: a fifth
    assert adaptive.multipliers("1", 2, 0.8)[0] == 3.0
    adaptive.add("1", np.ones(16, dtype=np.intp), np.full(16, 0.5))  # 16 of 20 below 1
    assert adaptive.multipliers("1", 2, 0.8)[1] == 1.0
    adaptive.add("1", np.ones(1, dtype=np.intp), np.full(1, 0.5))  # the 17th
    assert adaptive.multipliers("1", 2, 0.8)[1] == 0.5


def test_a_window_shorter_than_its_level_needs_takes_its_largest_score() -> None:
    # level 0.96 (quantiles 0.02..0.98), window 20: ceil(21 x 0.96) = 21 is past the window.
    # It served the 20x clamp at every step once one score came, with every score still 1.
    adaptive = AdaptiveIntervals(window=20)
    adaptive.multipliers("1", 2, 0.96)
    adaptive.add("1", np.zeros(1, dtype=np.intp), np.full(1, 0.5))  # held well inside
    assert adaptive.multipliers("1", 2, 0.96).tolist() == [1.0, 1.0]
    adaptive.add("1", np.ones(20, dtype=np.intp), np.linspace(0.1, 3.0, 20))
    assert adaptive.multipliers("1", 2, 0.96).tolist() == [1.0, 3.0]  # the largest of 20


def test_the_multiplier_is_clamped_and_other_versions_scores_are_dropped() -> None:
    adaptive = AdaptiveIntervals(window=20)
    adaptive.multipliers("1", 2, 0.8)
    adaptive.add("1", np.zeros(20, dtype=np.intp), np.full(20, 1e9))
    adaptive.add("1", np.ones(20, dtype=np.intp), np.zeros(20))
    assert adaptive.multipliers("1", 2, 0.8).tolist() == [M_MAX, 0.05]
    adaptive.add("0", np.zeros(20, dtype=np.intp), np.zeros(20))  # an older version's forecasts
    assert adaptive.multipliers("1", 2, 0.8)[0] == M_MAX
    # a reload starts the new version at 1 and forgets the old window
    assert adaptive.multipliers("2", 2, 0.8).tolist() == [1.0, 1.0]
    assert adaptive.scored("2") == 0 and adaptive.current("1") is None


def test_apply_moves_every_quantile_about_the_unmoved_median_and_keeps_their_order() -> None:
    q = np.array([[[8.0, 9.0, 10.0, 12.0, 13.0], [0.0, 1.0, 2.0, 4.0, 6.0]]])  # (1, 2, 5)
    out = q.copy()
    apply(out, np.array([2.0, 0.5]), median_index=2)
    assert out[0, 0].tolist() == [6.0, 8.0, 10.0, 14.0, 16.0]
    assert out[0, 1].tolist() == [1.0, 1.5, 2.0, 3.0, 4.0]
    pair = outer_pair((0.05, 0.1, 0.5, 0.9, 0.95), 2)
    assert pair is not None and pair[:2] == (0, 4) and pair[2] == pytest.approx(0.9)
    assert outer_pair((0.5, 0.9), 0) is None  # nothing below the median: nothing to adapt


def test_a_score_is_the_smallest_multiplier_that_holds_the_actual() -> None:
    med, low, high = np.full(5, 10.0), np.full(5, 8.0), np.array([11.0, 11.0, 11.0, 11.0, 10.0])
    actual = np.array([13.0, 9.0, 10.0, 4.0, 10.5])
    got = scores(actual, med, low, high)
    assert got[:4].tolist() == [3.0, 0.5, 0.0, 3.0]
    assert got[4] == 10 * M_MAX  # a zero gap holds only the median
    assert scores(np.array([10.0]), np.array([10.0]), np.array([10.0]), np.array([10.0]))[0] == 0


def test_the_settings_refuse_rolling_without_scores_or_with_several_workers() -> None:
    with pytest.raises(ValidationError, match="URNN_FORECAST_CACHE_SIZE above 0"):
        Settings(adaptive_intervals="rolling", forecast_cache_size=0)
    with pytest.raises(ValidationError, match="needs one worker"):
        Settings(adaptive_intervals="rolling", serve_workers=2)
    with pytest.raises(ValidationError, match="'off' or 'rolling'"):
        Settings(adaptive_intervals="aci")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="adaptive_window"):
        Settings(adaptive_window=5)


def test_urnn_serve_refuses_rolling_with_several_workers(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The contradiction is said whatever the machine: with the port taken (by another
    server, as the default 8000 was on a busy machine) the refusal was "cannot listen", and
    the user, having freed the port, met this one next."""
    import socket

    settings = Settings(var_dir=tmp_path / "var", adaptive_intervals="rolling")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert cli.main(["serve", "--workers", "2", "--port", port], settings=settings) == 2
    err = capsys.readouterr().err
    assert "--workers 2 with URNN_ADAPTIVE_INTERVALS=rolling" in err and "--workers 1" in err
    assert "cannot listen" not in err


# --- the service ------------------------------------------------------------------------------

IDS = [f"pump-{i}" for i in range(5)]
STOP = ROWS - 3 * HORIZON


def _body(registry: Registry, stop: int, shift: float = 0.0) -> dict[str, Any]:
    """Five series of the same rows ending at `stop`; the last HORIZON rows moved by `shift`
    (what the forecast of `stop - HORIZON` is scored against)."""
    series = []
    for series_id in IDS:
        one = history(registry.frame, series_id, stop=stop)
        one["values"] = [
            v + (shift if i >= 60 - HORIZON else 0.0) for i, v in enumerate(one["values"])
        ]
        series.append(one)
    return {"horizon": HORIZON, "series": series}


def _served(client: TestClient, body: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    answer = client.post("/forecast", json=body)
    assert answer.status_code == 200, answer.text
    return answer, answer.json()["forecasts"]


def test_the_service_widens_the_interval_from_the_scores_of_its_misses(
    registry: Registry, client_for: Callable[..., TestClient]
) -> None:
    adaptive = client_for(adaptive_intervals="rolling", adaptive_window=20)
    plain = client_for()
    info = adaptive.get("/model").json()["interval_adaptation"]
    assert info == {
        "mode": "rolling",
        "scope": "version",
        "series": 0,
        "window": 20,
        "scores": 0,
        "multipliers": [1.0] * HORIZON,
        "span_steps": 20 * (HORIZON + 1),  # depth 1: one kept forecast every horizon + 1 steps
    }
    deeper = client_for(adaptive_intervals="rolling", adaptive_window=20, forecast_cache_depth=4)
    span = deeper.get("/model").json()["interval_adaptation"]["span_steps"]
    assert span == 20 * kept_spacing(HORIZON, 4) == 20 * 5  # 12 / 4 = 3 -> 4 -> 5 (coprime)
    assert plain.get("/model").json()["interval_adaptation"] is None

    first, _ = _served(adaptive, _body(registry, STOP))
    assert first.headers["x-interval-multiplier"] == "1.0000"
    assert "x-interval-multiplier" not in _served(plain, _body(registry, STOP))[0].headers
    # the next histories reveal every step of those forecasts, 1000 above what came
    _served(adaptive, _body(registry, STOP + HORIZON, shift=1000.0))
    info = adaptive.get("/model").json()["interval_adaptation"]
    assert info["scores"] == len(IDS) * HORIZON
    # 5 of 20 scores far outside: the 17th smallest is one of them, held at the clamp
    assert info["multipliers"] == [M_MAX] * HORIZON
    assert metric_value(adaptive, "urnn_interval_multiplier", model_version="1", lead="1") == M_MAX
    hits = metric_value(adaptive, "urnn_realised_unadapted_interval_hits_total", lead="1")
    points = metric_value(adaptive, "urnn_realised_points_total", lead="1")
    assert (hits, points) == (0.0, len(IDS))

    floored = bool(adaptive.get("/model").json()["non_negative"])
    body = _body(registry, STOP + 2 * HORIZON)
    answer, wide = _served(adaptive, body)
    assert answer.headers["x-interval-multiplier"] == f"{M_MAX:.4f}"
    _, narrow = _served(plain, body)
    for a, p in zip(wide, narrow, strict=True):
        assert a["mean"] == pytest.approx(p["mean"])
        above = np.subtract(a["quantiles"]["0.9"], a["mean"])
        assert above == pytest.approx(M_MAX * np.subtract(p["quantiles"]["0.9"], p["mean"]))
        below = M_MAX * np.subtract(p["mean"], p["quantiles"]["0.1"])
        expected = np.subtract(p["mean"], below)
        if floored:  # the non-negative floor holds what falls below 0 there
            expected = np.maximum(expected, 0.0)
        assert a["quantiles"]["0.1"] == pytest.approx(expected)
    # the Arrow answer is the same forecast, and says so too
    arrow = adaptive.post(
        "/forecast", json=body, headers={"Accept": "application/vnd.apache.arrow.stream"}
    )
    assert arrow.status_code == 200 and arrow.headers["x-interval-multiplier"] == f"{M_MAX:.4f}"


def test_a_reload_starts_the_new_version_at_the_calibrated_interval(
    registry: Registry, client_for: Callable[..., TestClient]
) -> None:
    v1 = registry.register("adaptive-reload")
    adaptive = client_for(
        adaptive_intervals="rolling",
        adaptive_window=20,
        model_uri="models:/adaptive-reload@champion",
    )
    _served(adaptive, _body(registry, STOP))
    _served(adaptive, _body(registry, STOP + HORIZON, shift=1000.0))
    assert adaptive.get("/model").json()["interval_adaptation"]["multipliers"][0] == M_MAX
    v2 = registry.register("adaptive-reload", seed=1)
    reload = adaptive.post("/model/reload", headers={"X-API-Key": API_KEY})
    assert reload.status_code == 200, reload.text
    assert (reload.json()["previous_version"], reload.json()["model"]["version"]) == (v1, v2)
    info = reload.json()["model"]["interval_adaptation"]
    assert info["scores"] == 0 and info["multipliers"] == [1.0] * HORIZON
    answer, _ = _served(adaptive, _body(registry, STOP + 2 * HORIZON))
    assert answer.headers["x-interval-multiplier"] == "1.0000"
    # the gauge says what is served now: v1's last multipliers (M_MAX) are gone, v2's are 1
    text = adaptive.get("/metrics").text
    assert f'urnn_interval_multiplier{{lead="1",model_version="{v1}"}}' not in text
    assert metric_value(adaptive, "urnn_interval_multiplier", model_version=v2, lead="1") == 1.0


def test_openapi_declares_the_interval_header(client_for: Callable[..., TestClient]) -> None:
    document = client_for().get("/openapi.json").json()
    headers = document["paths"]["/forecast"]["post"]["responses"]["200"]["headers"]
    assert "rolling" in headers["X-Interval-Multiplier"]["description"]


def test_the_service_says_how_long_the_window_spans_with_the_cache_depth(
    client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    """Walked on PJM DAYTON (horizon 96, hourly client): the setting said 336 scores were two
    weeks of one hourly series, but the cache scores only the forecasts it keeps, one every
    97 hours at the default depth 1 (336 scores: 3.7 years; the multiplier never moved in
    10 weeks) and one every 5 at depth 64 (70 days). The service now says so at each swap."""
    spacing = kept_spacing(HORIZON, 1)
    with caplog.at_level(logging.INFO, logger="service.state"):
        client_for(adaptive_intervals="rolling", adaptive_window=20)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "rolling" in r.msg]
    assert len(warned) == 1, caplog.text
    assert f"one every {spacing} steps" in warned[0].msg
    assert f"spans {20 * spacing} steps of one series" in warned[0].msg
    assert "raise URNN_FORECAST_CACHE_DEPTH" in warned[0].msg
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="service.state"):
        client_for(adaptive_intervals="rolling", adaptive_window=20, forecast_cache_depth=HORIZON)
    said = [r for r in caplog.records if "rolling intervals" in r.msg]
    assert [r.levelno for r in said] == [logging.INFO]
    assert "spans 20 steps of one series" in said[0].msg  # depth >= horizon: every step kept


def test_the_coverage_counters_say_which_interval_each_counts(
    client_for: Callable[..., TestClient],
) -> None:
    """urnn_realised_interval_hits counts the interval served (after the multiplier): its
    help said "the outermost trained interval", which is what the unadapted counter counts,
    and a reader of /metrics took the adapted coverage for the calibrated one."""
    text = client_for(adaptive_intervals="rolling", adaptive_window=20).get("/metrics").text
    helps = {
        line.split()[2]: line for line in text.splitlines() if line.startswith("# HELP urnn_real")
    }
    served = helps["urnn_realised_interval_hits_total"]
    assert "interval served" in served and "trained interval" not in served
    assert "urnn_realised_unadapted_interval_hits" in served


def test_by_series_each_window_takes_its_own_scores_and_the_least_recent_goes() -> None:
    adaptive = AdaptiveIntervals(window=20, scope="series", capacity=2)
    adaptive.multipliers("1", 2, 0.8)
    adaptive.add("1", np.zeros(5, dtype=np.intp), np.full(5, 50.0), "a")  # 5 of 20 misses
    adaptive.add("1", np.zeros(5, dtype=np.intp), np.zeros(5), "b")
    got = adaptive.for_series("1", 2, 0.8, ["a", "b", "never"])
    assert got.tolist() == [[M_MAX, 1.0], [1.0, 1.0], [1.0, 1.0]]
    assert adaptive.series("1") == 2 and adaptive.scored("1") == 10
    assert adaptive.multipliers("1", 2, 0.8).tolist() == [(M_MAX + 1.0) / 2, 1.0]  # their mean
    adaptive.add("1", np.zeros(1, dtype=np.intp), np.zeros(1), "c")  # a third id: "a" goes
    assert adaptive.for_series("1", 2, 0.8, ["a"]).tolist() == [[1.0, 1.0]]
    assert adaptive.series("1") == 2
    # the pooled mean follows evictions and re-scored windows: that of the ids held now
    assert adaptive.multipliers("1", 2, 0.8).tolist() == [1.0, 1.0]  # "b" and "c", both at 1
    adaptive.add("1", np.zeros(5, dtype=np.intp), np.full(5, 50.0), "c")  # "c" widens
    held = adaptive.for_series("1", 2, 0.8, ["b", "c"])
    assert held.tolist() == [[1.0, 1.0], [M_MAX, 1.0]]
    assert adaptive.multipliers("1", 2, 0.8).tolist() == held.mean(axis=0).tolist()
    adaptive.add("1", np.zeros(1, dtype=np.intp), np.zeros(1), "a")  # "a" back, "b" goes
    pooled = adaptive.current("1")
    assert pooled is not None and pooled.tolist() == [(M_MAX + 1.0) / 2, 1.0]  # "c" and "a"
    adaptive.add("1", np.zeros(1, dtype=np.intp), np.zeros(1), "c")  # a re-scored id stays
    assert adaptive.series("1") == 2
    adaptive.add("1", np.zeros(5, dtype=np.intp), np.full(5, 50.0))  # no id: nothing to file
    assert adaptive.scored("1") == 8  # "c" 1 + 5 + 1, "a" 1 (a fresh window after its drop)
    assert adaptive.for_series("2", 2, 0.8, ["b"]).tolist() == [[1.0, 1.0]]  # a new version


def _scored_rounds(client: TestClient, registry: Registry, rounds: int) -> None:
    """`rounds` forecasts of every id, one a horizon apart, each revealed by the next
    request: pump-0's actuals three times the interval's upper gap above the median it was
    served (every score 3: the multiplier stays 1 during the rounds, 4 misses in a window of
    20 move it only once all are in), the others' exactly that median (every score 0)."""
    stop = ROWS - (rounds + 2) * HORIZON
    revealed: dict[str, list[float]] | None = None
    for _ in range(rounds + 1):
        series = []
        for series_id in IDS:
            one = history(registry.frame, series_id, stop=stop)
            if revealed is not None:
                one["values"][-HORIZON:] = revealed[series_id]
            series.append(one)
        _, answer = _served(client, {"horizon": HORIZON, "series": series})
        revealed = {f["id"]: f["mean"] for f in answer}
        high = answer[0]["quantiles"]["0.9"]
        revealed[IDS[0]] = [m + 3.0 * (h - m) for m, h in zip(revealed[IDS[0]], high, strict=True)]
        stop += HORIZON


def test_by_series_a_missing_series_widens_alone(
    registry: Registry, client_for: Callable[..., TestClient]
) -> None:
    # a version that floors nothing: the trained champion is non-negative, and where it
    # floors a median the multiplier moves the pair about the median before the floor, which
    # the served numbers this test builds its actuals from do not show
    registry.register("adaptive-scope", non_negative=False)
    uri = "models:/adaptive-scope@champion"
    by_series = client_for(
        adaptive_intervals="rolling", adaptive_window=20, adaptive_scope="series", model_uri=uri
    )
    pooled = client_for(adaptive_intervals="rolling", adaptive_window=20, model_uri=uri)
    plain = client_for(model_uri=uri)
    for client in (by_series, pooled):
        _scored_rounds(client, registry, rounds=4)
    info = by_series.get("/model").json()["interval_adaptation"]
    assert (info["scope"], info["series"], info["scores"]) == ("series", 5, 5 * 4 * HORIZON)
    body = _body(registry, ROWS - HORIZON)
    _, calibrated = _served(plain, body)

    def ratios(client: TestClient) -> list[float]:
        _, served = _served(client, body)
        out = []
        for a, p in zip(served, calibrated, strict=True):
            gap = np.subtract(p["quantiles"]["0.9"], p["mean"])
            out.append(float(np.mean(np.subtract(a["quantiles"]["0.9"], a["mean"]) / gap)))
        return out

    # by series: pump-0 (4 scores of 3 in its window of 20 at every step: the 17th smallest)
    # widened, the others as calibrated (their window: 4 zeros, 16 ones)
    assert ratios(by_series) == pytest.approx([3.0, 1.0, 1.0, 1.0, 1.0], rel=1e-4)
    # pooled: the window's 20 scores a step are pump-0's 4 misses and 16 zeros: 3, served to
    # every series
    assert ratios(pooled) == pytest.approx([3.0] * len(IDS), rel=1e-4)


def test_the_scope_setting_names_its_values() -> None:
    with pytest.raises(ValidationError, match="'version' or 'series'"):
        Settings(adaptive_scope="id")  # type: ignore[arg-type]


def test_a_batch_of_the_old_version_scored_after_a_swap_does_not_bring_its_multiplier_back() -> (
    None
):
    """Requests validated against the old version before a swap still run with it, and their
    monitor (after the answers) runs after the swap dropped the old version's gauge: their
    scores published its multipliers again, left on the dashboard for ever, since nothing
    drops them a second time (the new version's first batch only switches the windows)."""
    from prometheus_client import CollectorRegistry

    from service.metrics import ServiceMetrics
    from service.realised import ForecastRows, RealisedErrorTracker, RegularHistories

    step, h, n = 3_600_000_000_000, 4, 8
    metrics = ServiceMetrics(CollectorRegistry())
    adaptive = AdaptiveIntervals(window=20)
    tracker = RealisedErrorTracker(metrics, capacity=10, depth=h, adaptive=adaptive)

    def batch(version: str, hour: int) -> tuple[list[str], RegularHistories, ForecastRows]:
        first = np.array([(hour - n + 1) * step], dtype=np.int64)
        stamps = ((hour + np.arange(1, h + 1)) * step)[None, :]
        mean = np.full((1, h), 5.0)  # the actuals are 0: every step misses, scores of 5
        rows = ForecastRows(version, stamps, mean, mean - 1.0, mean + 1.0)
        rows.unadapted_low, rows.unadapted_high = mean - 1.0, mean + 1.0
        return ["pump"], RegularHistories(first, step, np.zeros((1, n))), rows

    def shown(version: str) -> list[float]:
        return [
            s.value
            for family in metrics.registry.collect()
            for s in family.samples
            if s.name == "urnn_interval_multiplier" and s.labels["model_version"] == version
        ]

    metrics.start_version("1", (0.1, 0.5, 0.9), h, adaptive=True)
    adaptive.multipliers("1", h, 0.8)
    tracker.observe_batch([batch("1", 0)])
    tracker.observe_batch([batch("1", 2)])  # scores two steps of the first forecast
    assert shown("1")
    metrics.end_multipliers("1")  # the swap to version 2
    metrics.start_version("2", (0.1, 0.5, 0.9), h, adaptive=True)
    tracker.observe_batch([batch("1", 3)])  # a batch validated before the swap, scored after
    assert shown("1") == []
    assert shown("2") == [1.0, 1.0, 1.0]  # leads 1, 2-3, 4-7
