"""Loading, hot reload and the API key: no model -> 503 with the reason; a reload under
concurrent traffic fails no request; a broken version keeps the old one serving and is
reported; the alias poll picks up a promotion; mutating endpoints need the key."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.processes import free_port
from tests.service.conftest import API_KEY, HeldLoader, Registry, history, metric_value
from tests.service.test_contract import state_of

KEY = {"X-API-Key": API_KEY}


def test_a_dead_tracking_server_leaves_the_service_up_and_saying_why(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """MLflow's client would retry a dead server for minutes inside the lifespan, so the service
    would not even answer /healthz; the /health check makes it start, not ready, in seconds."""
    port = free_port()  # nothing listens there
    client = client_for(mlflow_tracking_uri=f"http://127.0.0.1:{port}")
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert client.head("/readyz").status_code == 503  # a HEAD probe takes it out of rotation too
    # anyone is told what is wrong, the operator (the API key) where: the host is internal
    assert "the model registry cannot be read" in ready.json()["detail"]
    assert f"127.0.0.1:{port}" not in ready.text
    keyed = client.get("/readyz", headers=KEY).json()["detail"]
    assert f"the MLflow tracking server at http://127.0.0.1:{port}" in keyed
    assert "does not answer" in keyed
    forecast = client.post("/forecast", json={"series": [history(registry.frame)]})
    assert forecast.status_code == 503
    assert metric_value(client, "urnn_model_reloads_total", outcome="failure") >= 1.0


def test_the_reason_the_service_is_not_ready_shows_no_password(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """/readyz and the 503s answer anyone: a tracking URI's password stays in the settings."""
    uri = f"http://ops:s3cret@127.0.0.1:{free_port()}"  # nothing listens there
    client = client_for(mlflow_tracking_uri=uri)
    body = {"series": [history(registry.frame)]}
    for answer in (client.get("/readyz"), client.post("/forecast", json=body)):
        assert answer.status_code == 503
        assert "s3cret" not in answer.text and "127.0.0.1" not in answer.text
    for answer in (  # the operator's (API key) answers name the server, password masked
        client.get("/readyz", headers=KEY),
        client.post("/forecast", json=body, headers=KEY),
    ):
        assert answer.status_code == 503
        assert "s3cret" not in answer.text
        assert uri.replace("s3cret", "***") in answer.json()["detail"]


def test_no_model_registered_service_starts_and_says_why(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    client = client_for(model_uri="models:/nothing-yet@champion")
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "nothing is registered at models:/nothing-yet@champion" in ready.json()["detail"]
    forecast = client.post("/forecast", json={"series": [history(registry.frame)]})
    assert forecast.status_code == 503
    assert forecast.json()["detail"] == ready.json()["detail"]
    assert client.get("/model").status_code == 503
    assert metric_value(client, "urnn_model_loaded") == 0.0
    assert metric_value(client, "urnn_forecast_rejected_total", reason="no_model") >= 1.0

    # Registering one later and reloading makes the service ready without a restart.
    registry.register("nothing-yet")
    reload = client.post("/model/reload", headers=KEY)
    assert reload.status_code == 200, reload.text
    assert reload.json()["status"] == "reloaded" and reload.json()["previous_version"] is None
    assert client.get("/readyz").status_code == 200
    assert client.post("/forecast", json={"series": [history(registry.frame)]}).status_code == 200


def test_reload_under_concurrent_requests_fails_none(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    v1 = registry.register("hot-swap", seed=1)
    v2 = registry.register("hot-swap", seed=2, alias=None)
    client = client_for(model_uri="models:/hot-swap@champion")
    body = {"series": [history(registry.frame, f"s{i}") for i in range(4)]}
    statuses: list[int] = []
    versions: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def fire() -> None:
        while not stop.is_set():
            response = client.post("/forecast", json=body)
            with lock:
                statuses.append(response.status_code)
                if response.status_code == 200:
                    versions.append(response.json()["model"]["version"])

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        registry.set_alias("hot-swap", v2)
        reload = client.post("/model/reload", headers=KEY)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert reload.status_code == 200, reload.text
    assert reload.json()["status"] == "reloaded"
    assert (reload.json()["previous_version"], reload.json()["model"]["version"]) == (v1, v2)
    assert len(statuses) > 8 and set(statuses) == {200}
    assert versions[0] == v1 and versions[-1] == v2
    assert client.get("/model").json()["version"] == v2
    # The swap is visible in the metrics: v2 served, v1 no longer.
    assert metric_value(client, "urnn_model_info", name="hot-swap", version=v2) == 1.0
    assert metric_value(client, "urnn_model_info", name="hot-swap", version=v1) == 0.0
    # Same alias again: nothing to do, unless forced.
    assert client.post("/model/reload", headers=KEY).json()["status"] == "unchanged"
    forced = client.post("/model/reload", params={"force": "true"}, headers=KEY)
    assert forced.json()["status"] == "reloaded"


def test_broken_version_keeps_the_old_one_serving_and_is_reported(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    v1 = registry.register("breakable", seed=1)
    client = client_for(model_uri="models:/breakable@champion")
    before = client.post("/forecast", json={"series": [history(registry.frame)]}).json()
    bad = registry.register("breakable", seed=2, corrupt=True)
    reload = client.post("/model/reload", headers=KEY)
    assert reload.status_code == 502
    detail = reload.json()["detail"]
    assert f"version {bad} of breakable failed to load" in detail
    assert f"still serving version {v1}" in detail
    info = client.get("/model", headers=KEY).json()
    assert info["version"] == v1
    assert info["last_reload_error"] == detail and info["last_reload_error_at"]
    public = client.get("/model").json()["last_reload_error"]  # anyone's: no store path
    assert public.startswith(f"version {bad} of breakable failed to load (CheckpointError)")
    assert f"still serving version {v1}" in public and "file:" not in public
    after = client.post("/forecast", json={"series": [history(registry.frame)]})
    assert after.status_code == 200 and after.json() == before
    assert metric_value(client, "urnn_model_reloads_total", outcome="failure") == 1.0
    assert metric_value(client, "urnn_model_reload_failing") == 1.0  # UrnnModelReloadFailed
    assert client.get("/readyz").status_code == 200
    # Asked again, it is tried again and the error answered again (not "unchanged" while the
    # alias points at a version that is not served)...
    again = client.post("/model/reload", headers=KEY)
    assert again.status_code == 502 and f"version {bad} of breakable" in again.json()["detail"]
    assert metric_value(client, "urnn_model_reloads_total", outcome="failure") == 2.0
    # ...but the poll skips it while the alias stays on the broken version.
    manager = client.app.state.service.manager  # type: ignore[attr-defined]
    polled = client.portal.call(functools.partial(manager.reload, retry_failed=False))  # type: ignore[union-attr]
    assert polled.status == "unchanged" and polled.model.ref.version == v1
    assert metric_value(client, "urnn_model_reloads_total", outcome="failure") == 2.0
    assert metric_value(client, "urnn_model_reload_failing") == 1.0  # held while skipped
    # The alias back on the served version (a rollback): the failure is over, not reported
    # beside the version that serves (it stayed until some later swap)
    registry.set_alias("breakable", v1)
    assert client.post("/model/reload", headers=KEY).json()["status"] == "unchanged"
    info = client.get("/model").json()
    assert (info["last_reload_error"], info["last_reload_error_at"]) == (None, None)
    # the alert clears with the rollback, not 15 minutes later
    assert metric_value(client, "urnn_model_reload_failing") == 0.0


def test_nothing_registered_yet_is_not_a_failed_load(
    client_for: Callable[..., TestClient], registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """A new stack, before the first `urnn train`: /readyz says why and UrnnNoModelLoaded
    tells. Each poll counted a "failure", so UrnnModelReloadFailed fired too, saying the old
    version still serves when none did (an operator's walk-through)."""
    caplog.set_level(logging.DEBUG, logger="service.manager")
    client = client_for(model_uri="models:/never-trained@champion")
    assert client.get("/readyz").status_code == 503
    # not a matter of seconds: no Retry-After (that is for a load still running)
    refused = client.post("/forecast", json={"series": [history(registry.frame)]})
    assert refused.status_code == 503 and "retry-after" not in refused.headers
    assert client.post("/model/reload", headers=KEY).status_code == 502
    assert metric_value(client, "urnn_model_reloads_total", outcome="not_registered") == 2.0
    assert metric_value(client, "urnn_model_reloads_total", outcome="failure") == 0.0
    said = [r for r in caplog.records if "nothing is registered" in r.getMessage()]
    # once at WARNING, not again at every poll of a stack waiting for its first model
    assert [r.levelno for r in said] == [logging.WARNING, logging.DEBUG]
    assert metric_value(client, "urnn_model_reload_failing") == 0.0
    version = registry.register("never-trained", seed=1)
    assert client.post("/model/reload", headers=KEY).json()["status"] == "reloaded"
    # the new version's counters exist at 0 before its first forecast (rate() counts it)
    text = client.get("/metrics").text
    for family in (
        "urnn_realised_points_total",
        "urnn_realised_interval_hits_total",
        "urnn_realised_abs_error_total",
    ):
        for lead in ("1", "2-3", "4-7"):  # every lead up to the model's horizon
            assert f'{family}{{lead="{lead}",model_version="{version}"}} 0.0' in text, lead
    assert f'urnn_forecast_series_total{{model_version="{version}"}} 0.0' in text


@pytest.mark.parametrize("how", ["random", "truncated"])
def test_a_damaged_weights_file_is_reported_in_one_line_of_our_words(
    client_for: Callable[..., TestClient], registry: Registry, how: str
) -> None:
    """torch's text for a corrupt weights.pt (several lines advising to re-run torch.load with
    weights_only=False, "arbitrary code execution... Please file an issue") was the 502's
    detail and /model's last_reload_error."""
    name = f"damaged-{how}"
    v1 = registry.register(name, seed=1)
    client = client_for(model_uri=f"models:/{name}@champion")
    bad = registry.register(name, seed=2, corrupt=how)
    reload = client.post("/model/reload", headers=KEY)
    assert reload.status_code == 502
    detail = reload.json()["detail"]
    assert detail.startswith(
        f"version {bad} of {name} failed to load: CheckpointError: weights.pt in "
    )
    assert " is not a readable state dict of tensors (" in detail
    assert "(truncated or damaged archive" in detail if how == "truncated" else True
    assert detail.endswith(
        "; register a new version (urnn train) or move the alias to one that loads "
        f"(urnn models promote); still serving version {v1}"
    )
    assert "\n" not in detail and "weights_only" not in detail and "issue" not in detail
    assert "urnn-load-" not in detail  # the stored file, not the deleted temporary copy
    assert client.get("/model", headers=KEY).json()["last_reload_error"] == detail
    public = client.get("/model").json()["last_reload_error"]
    assert public == (
        f"version {bad} of {name} failed to load (CheckpointError): register a new version "
        "(urnn train) or move the alias to one that loads (urnn models promote); the server "
        f"log, GET /model or /readyz with the X-API-Key header say why; still serving version {v1}"
    )


def test_poll_follows_the_alias(client_for: Callable[..., TestClient], registry: Registry) -> None:
    registry.register("polled", seed=1)
    client = client_for(model_uri="models:/polled@champion", model_poll_seconds=0.2)
    assert client.get("/model").json()["version"] == "1"
    registry.register("polled", seed=2)
    deadline = time.monotonic() + 20.0
    while client.get("/model").json()["version"] != "2":
        assert time.monotonic() < deadline, "the poll did not pick up version 2"
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("settings", "headers", "status", "message"),
    [
        ({}, {}, 401, "missing or wrong X-API-Key"),
        ({}, {"X-API-Key": "wrong"}, 401, "missing or wrong X-API-Key"),
        ({}, KEY, 200, None),
        ({"api_key": None}, KEY, 403, "set URNN_API_KEY"),
        ({"api_key": None, "env": "development"}, {}, 200, None),
    ],
)
def test_reload_needs_the_api_key(
    client_for: Callable[..., TestClient],
    settings: dict[str, object],
    headers: dict[str, str],
    status: int,
    message: str | None,
) -> None:
    client = client_for(**settings)
    response = client.post("/model/reload", headers=headers)
    assert response.status_code == status, response.text
    if message is not None:
        assert message in response.json()["detail"]
    # Reading stays open.
    assert client.get("/model").status_code == 200


def test_a_reload_with_a_body_is_refused_saying_what_picks_the_version(
    client_for: Callable[..., TestClient],
) -> None:
    """{"version": "1"} was ignored: "unchanged" read as if the version asked for served."""
    client = client_for()
    response = client.post("/model/reload", headers=KEY, json={"version": "1"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(
        "the body: POST /model/reload takes no body: it loads the version URNN_MODEL_URI names"
    )
    assert client.post("/model/reload", headers=KEY).status_code == 200


def test_missing_key_is_logged_at_startup(
    client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="service.state"):
        client_for(api_key=None)
    assert "URNN_API_KEY is not set" in caplog.text
    assert "disabled" in caplog.text


@pytest.mark.parametrize("key", ["change-me", "test-key", "hunter2hunter2x"])
def test_a_guessable_key_is_logged_at_startup_without_the_key(
    key: str, client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    """The README's and the compose file's `URNN_API_KEY=change-me`, copied as it is, served
    jobs (which read files) and reloads to anyone who had read the README, with nothing said."""
    with caplog.at_level("WARNING", logger="service.state"):
        client_for(api_key=key)
    said = [r.getMessage() for r in caplog.records if "URNN_API_KEY" in r.getMessage()]
    assert len(said) == 1 and "openssl rand -hex 32" in said[0], said
    assert key not in caplog.text


def test_without_a_key_a_page_of_another_site_cannot_post_to_the_local_service(
    client_for: Callable[..., TestClient],
) -> None:
    """URNN_ENV=development, no key: a form on any site the developer opened could POST
    /model/reload?force=true (or cancel a job: both take no body, so the browser sends no
    preflight) to the local service; the WebSocket already refused another origin. A request
    from another origin is refused with a 403 naming the header; curl (no Origin) and the
    service's own pages (/docs) still pass."""
    client = client_for(api_key=None, env="development")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for origin in ("https://evil.example", "null", "http://testserver.evil.example"):
        answer = client.post("/model/reload?force=true", headers={**form, "Origin": origin})
        assert answer.status_code == 403, answer.text
        detail = answer.json()["detail"]
        assert "header 'Origin'" in detail and "URNN_API_KEY" in detail, detail
    for headers in ({}, {"Origin": "http://testserver"}):
        assert client.post("/model/reload", headers=headers).status_code == 200
    # with a key configured the key decides, whatever the Origin
    keyed = client_for()
    answer = keyed.post("/model/reload", headers={**KEY, "Origin": "https://evil.example"})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    "uri", ["mluser:s3cr3t-pw@mlflow:5000", "http//mluser:s3cr3t-pw@mlflow:5000"]
)
def test_a_tracking_uri_with_a_mistyped_scheme_is_not_quoted_with_its_password(
    uri: str, client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    """URNN_MLFLOW_TRACKING_URI=user:password@host:5000 (the http:// left out): MLflow's
    refusal quoted the URI whole, and GET /model and /readyz, open to anyone, answered it with
    the password; so did the log."""
    client = client_for(mlflow_tracking_uri=uri)
    for answer in (
        client.get("/model"),
        client.get("/readyz"),
        client.post("/model/reload", headers=KEY),
    ):
        assert answer.status_code in (502, 503), answer.text
        assert "s3cr3t-pw" not in answer.text, answer.text
    assert "s3cr3t-pw" not in caplog.text


def test_a_long_random_key_is_not_warned_about(
    client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="service.state"):
        client_for(api_key="9f2c4e1a7b3d5f60812a4c6e8b0d2f41")
    assert not [r for r in caplog.records if "URNN_API_KEY" in r.getMessage()]


def test_a_load_that_hangs_does_not_hold_start_up_or_shut_down(registry: Registry) -> None:
    """A registry that accepted and never answered held /healthz and SIGTERM for minutes (an
    audit's): start-up waits URNN_STARTUP_LOAD_WAIT_SECONDS, then answers while it loads."""
    from service.main import create_app

    settings = registry.service_settings(startup_load_wait_seconds=0.2)
    loader = HeldLoader(settings)
    started = time.monotonic()
    with TestClient(create_app(settings, loader=loader)) as client:
        assert time.monotonic() - started < 10.0
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "the service is starting" in ready.text
        answer = client.post("/forecast", json={"series": [history(registry.frame)]})
        assert answer.status_code == 503
        # a matter of seconds: clients that honour Retry-After come back (a worker of
        # --workers restarted after SIGKILL answers so beside siblings that serve)
        assert answer.headers["retry-after"] == "1" and ready.headers["retry-after"] == "1"
        loader.release.set()  # the registry answers: the load ends, the service is ready
        deadline = time.monotonic() + 30.0
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the load did not finish"
            time.sleep(0.05)
        answer = client.post("/forecast", json={"series": [history(registry.frame)]})
        assert answer.status_code == 200, answer.text
    held = HeldLoader(settings)  # never released: shutting down must not wait for it
    started = time.monotonic()
    with TestClient(create_app(settings, loader=held)) as client:
        assert client.get("/readyz").status_code == 503
    assert time.monotonic() - started < 10.0
    held.release.set()


def test_a_fresh_worker_falls_back_to_the_version_this_host_served_last(
    client_for: Callable[..., TestClient], registry: Registry, tmp_path: Any
) -> None:
    """A worker restarted while the alias named a broken version served nothing (503s) where
    its siblings kept the old one; it now serves the version this host served last, and says
    so, until the alias names a version that loads."""
    store = registry.settings.resolved_tracking_uri()  # the registry, whatever the var dir
    var = {"var_dir": tmp_path / "host-var", "mlflow_tracking_uri": store}
    good = registry.register("fallback", seed=1)
    first = client_for(model_uri="models:/fallback@champion", **var)
    assert first.get("/model").json()["version"] == good
    bad = registry.register("fallback", seed=2, nan_weights=True)  # the alias moves to it
    restarted = client_for(model_uri="models:/fallback@champion", **var)
    info = restarted.get("/model").json()
    assert info["version"] == good
    assert f"version {bad} of fallback failed to load" in info["last_reload_error"]
    assert f"serving version {good}, the one this host served last" in info["last_reload_error"]
    answer = restarted.post("/forecast", json={"series": [history(registry.frame)]})
    assert answer.status_code == 200 and answer.json()["model"]["version"] == good
    # the alias names a version that does not load: the alert's gauge says so, through the
    # fallback's swap and the polls after it (the swap cleared it: a review)
    assert metric_value(restarted, "urnn_model_reload_failing") == 1.0
    manager = restarted.app.state.service.manager  # type: ignore[attr-defined]
    polled = restarted.portal.call(functools.partial(manager.reload, retry_failed=False))  # type: ignore[union-attr]
    assert polled.status == "unchanged"
    assert metric_value(restarted, "urnn_model_reload_failing") == 1.0
    # another host (no record of what it served): nothing to fall back to
    other = {"var_dir": tmp_path / "other", "mlflow_tracking_uri": store}
    elsewhere = client_for(model_uri="models:/fallback@champion", **other)
    assert elsewhere.get("/readyz").status_code == 503
    # the alias back on the good version: served as it is, the failure no longer reported
    registry.set_alias("fallback", good)
    assert restarted.post("/model/reload", headers=KEY).json()["status"] == "unchanged"
    assert restarted.get("/model").json()["last_reload_error"] is None
    assert metric_value(restarted, "urnn_model_reload_failing") == 0.0


def test_the_fallback_is_kept_per_uri_when_services_of_two_models_share_a_host(
    client_for: Callable[..., TestClient], registry: Registry, tmp_path: Any
) -> None:
    """Two services on one host (one per registered model, the default ./var) kept one record:
    the second one's load overwrote the first's, so the first, restarted while its alias named
    a broken version, had nothing to fall back to and answered 503 (a user journey's: an ETTh1
    service beside a PJM one)."""
    store = registry.settings.resolved_tracking_uri()
    var = {"var_dir": tmp_path / "shared-var", "mlflow_tracking_uri": store}
    good = registry.register("host-a", seed=1)
    registry.register("host-b", seed=1)
    client_for(model_uri="models:/host-a@champion", **var)
    client_for(model_uri="models:/host-b@champion", **var)  # the other model's service
    bad = registry.register("host-a", seed=2, nan_weights=True)  # host-a's alias moves to it
    restarted = client_for(model_uri="models:/host-a@champion", **var)
    info = restarted.get("/model").json()
    assert info["version"] == good, info
    assert f"version {bad} of host-a failed to load" in info["last_reload_error"]


def test_the_fallback_is_kept_per_registry_when_services_of_two_stores_share_a_host(
    client_for: Callable[..., TestClient], registry: Registry, tmp_path: Any
) -> None:
    """Two registries (a staging and a production store, or a SQLite store beside a file
    store) each with `urnn-forecaster`-like names, served from one var dir: a version number
    recorded from the other store named another model there, so a restart behind a broken
    version either fell back to the wrong store's number or found it equal to the broken one
    and served nothing."""
    from tests.service.conftest import Registry as StoreRegistry
    from urnn_forecast.settings import Settings

    other = StoreRegistry(Settings(var_dir=tmp_path / "store-b"), registry.frame, registry.meta)
    var_dir = tmp_path / "shared-host"
    uri = "models:/two-stores@champion"
    good = registry.register("two-stores", seed=1)
    other.register("two-stores", seed=1)
    other_version = other.register("two-stores", seed=2)
    store_a = {"var_dir": var_dir, "mlflow_tracking_uri": registry.settings.resolved_tracking_uri()}
    store_b = {"var_dir": var_dir, "mlflow_tracking_uri": other.settings.resolved_tracking_uri()}
    assert client_for(model_uri=uri, **store_a).get("/model").json()["version"] == good
    assert client_for(model_uri=uri, **store_b).get("/model").json()["version"] == other_version
    bad = registry.register("two-stores", seed=3, nan_weights=True)
    assert bad == other_version  # the number the other store's service recorded
    restarted = client_for(model_uri=uri, **store_a)
    assert restarted.get("/model").json()["version"] == good


def test_the_record_an_earlier_release_wrote_still_serves_as_the_fallback(
    client_for: Callable[..., TestClient], registry: Registry, tmp_path: Any
) -> None:
    """Before 2026-12-07 one file held the record for every URI: a host upgraded while its
    alias names a broken version still falls back to what it served."""
    import json

    store = registry.settings.resolved_tracking_uri()
    var_dir = tmp_path / "upgraded-var"
    good = registry.register("legacy-host", seed=1)
    registry.register("legacy-host", seed=2, nan_weights=True)
    (var_dir / "serving").mkdir(parents=True)
    record = {"uri": "models:/legacy-host@champion", "name": "legacy-host", "version": good}
    (var_dir / "serving" / "last-served.json").write_text(json.dumps(record))
    restarted = client_for(
        model_uri="models:/legacy-host@champion", var_dir=var_dir, mlflow_tracking_uri=store
    )
    assert restarted.get("/model").json()["version"] == good


def test_an_alias_removed_under_a_served_version_or_a_failing_registry_is_a_failure(
    client_for: Callable[..., TestClient], registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only "nothing registered yet" (no model served) is not_registered: every MLflow error
    was read as that, so a registry whose database was down, and an alias deleted while a
    version served, raised no alert (a review)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    version = registry.register("vanishing", seed=1)
    client = client_for(model_uri="models:/vanishing@champion")
    store = mlflow.MlflowClient(tracking_uri=registry.settings.resolved_tracking_uri())
    store.delete_registered_model_alias("vanishing", "champion")
    assert client.post("/model/reload", headers=KEY).status_code == 502
    assert client.get("/model").json()["version"] == version  # still served
    assert metric_value(client, "urnn_model_reloads_total", outcome="failure") == 1.0
    assert metric_value(client, "urnn_model_reload_failing") == 1.0
    assert metric_value(client, "urnn_model_reloads_total", outcome="not_registered") == 0.0

    def registry_down(*args: object, **kwargs: object) -> None:
        raise MlflowException("(psycopg.OperationalError) connection refused")

    monkeypatch.setattr("service.loader.registered_version", registry_down)
    fresh = client_for(model_uri="models:/vanishing@champion")
    assert fresh.get("/readyz").status_code == 503
    assert metric_value(fresh, "urnn_model_reloads_total", outcome="failure") == 1.0
    assert metric_value(fresh, "urnn_model_reload_failing") == 1.0


def test_an_alias_removed_under_a_served_version_says_to_set_it_again(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """The on-call reads GET /model's last_reload_error: with versions there and only the alias
    gone, the way back is `urnn models promote` (the runbook's fix), not training a new
    model, which is what the message said."""
    import mlflow

    version = registry.register("unaliased", seed=1)
    client = client_for(model_uri="models:/unaliased@champion")
    store = mlflow.MlflowClient(tracking_uri=registry.settings.resolved_tracking_uri())
    store.delete_registered_model_alias("unaliased", "champion")
    assert client.post("/model/reload", headers=KEY).status_code == 502
    error = client.get("/model").json()["last_reload_error"]
    assert f"unaliased has version(s) {version} but no alias 'champion'" in error
    assert "set it with `urnn models promote N --name unaliased`" in error
    assert error.endswith(f"still serving version {version}")

    fresh = client_for(model_uri="models:/never-registered@champion")  # nothing at all: train
    detail = fresh.get("/readyz").json()["detail"]
    assert detail.endswith("register one with `urnn train` (it becomes champion when it wins)")


def test_an_alias_removed_from_a_model_whose_name_holds_a_quote_says_to_set_it_again(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """`urnn train --registered-name` takes a name with a quote (`o'brien`); the hint's search
    wrote it between single quotes, MLflow's filter parser refused that, and the on-call was
    told to train a new model though the versions were there."""
    import mlflow

    name = "o'brien"
    version = registry.register(name, seed=1)
    client = client_for(model_uri=f"models:/{name}@champion")
    store = mlflow.MlflowClient(tracking_uri=registry.settings.resolved_tracking_uri())
    store.delete_registered_model_alias(name, "champion")
    assert client.post("/model/reload", headers=KEY).status_code == 502
    error = client.get("/model").json()["last_reload_error"]
    assert f"{name} has version(s) {version} but no alias 'champion'" in error, error


def test_a_pinned_version_that_does_not_exist_says_which_ones_do(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """models:/NAME/99 follows no alias: the advice was to train a model that "becomes
    champion when it wins", which the pinned URI would never serve; the way out is pinning a
    version that exists."""
    version = registry.register("pinned", seed=1, alias=None)
    detail = client_for(model_uri="models:/pinned/99").get("/readyz").json()["detail"]
    assert f"pinned has version(s) {version} but no version 99: pin one of them in " in detail
    assert f"URNN_MODEL_URI (models:/pinned/{version}), or follow an alias" in detail
    assert "becomes champion" not in detail
    nothing = client_for(model_uri="models:/never-pinned/3").get("/readyz").json()["detail"]
    assert nothing.endswith("register one with `urnn train` and pin its version in URNN_MODEL_URI")


class _SlowLoader:
    """The registry, with loading `slow_version` delayed (a broken version failing slowly)."""

    def __init__(self, settings: Any, slow_version: str) -> None:
        from service.loader import MlflowLoader

        self.inner = MlflowLoader.from_settings(settings)
        self.slow_version = slow_version

    def resolve(self, uri: str) -> Any:
        return self.inner.resolve(uri)

    def load(self, ref: Any) -> Any:
        if ref.version == self.slow_version:
            time.sleep(1.0)
        return self.inner.load(ref)


def test_the_fallback_does_not_replace_what_a_reload_loaded_meanwhile(
    client_for: Callable[..., TestClient], registry: Registry, tmp_path: Any
) -> None:
    """A reload that waited on the first load's lock loaded the alias's new version; the
    fallback that ran after it put the older last-served version back (a review's)."""
    from service.main import create_app

    store = registry.settings.resolved_tracking_uri()
    host = {"var_dir": tmp_path / "host-var", "mlflow_tracking_uri": store}
    good = registry.register("racing", seed=1)
    client_for(model_uri="models:/racing@champion", **host)  # this host served `good`
    bad = registry.register("racing", seed=2, corrupt=True)
    settings = registry.service_settings(
        model_uri="models:/racing@champion", startup_load_wait_seconds=0.1, **host
    )
    with TestClient(create_app(settings, loader=_SlowLoader(settings, bad))) as client:
        newer = registry.register("racing", seed=3)  # the alias moves while `bad` fails
        assert client.post("/model/reload", headers=KEY).json()["status"] == "reloaded"
        # the first load (failed) and its fallback are one task: wait for it, not for a guess
        first_load = state_of(client)._initial
        assert first_load is not None
        deadline = time.monotonic() + 30.0
        while not first_load.done():
            assert time.monotonic() < deadline, "the first load and its fallback did not end"
            time.sleep(0.05)
        assert metric_value(client, "urnn_model_reloads_total", outcome="failure") == 1.0
        info = client.get("/model").json()
        assert info["version"] == newer != good, info


def test_a_registry_answering_again_is_logged_once_the_failure_clears(
    client_for: Callable[..., TestClient],
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An operator tailing the log saw an ERROR at every poll while the tracking server was
    down, then silence once it was back: the same as a poll that hung. GET /model and the
    gauge cleared, but the log never said the failure was over."""
    from mlflow.exceptions import MlflowException

    caplog.set_level(logging.INFO, logger="service.manager")
    version = registry.register("flaky", seed=1)
    client = client_for(model_uri="models:/flaky@champion")

    def registry_down(*args: object, **kwargs: object) -> None:
        raise MlflowException("(psycopg.OperationalError) connection refused")

    with monkeypatch.context() as patched:
        patched.setattr("service.loader.registered_version", registry_down)
        assert client.post("/model/reload", headers=KEY).status_code == 502
    assert metric_value(client, "urnn_model_reload_failing") == 1.0
    caplog.clear()
    assert client.post("/model/reload", headers=KEY).json()["status"] == "unchanged"
    assert metric_value(client, "urnn_model_reload_failing") == 0.0
    said = [r for r in caplog.records if r.name == "service.manager"]
    assert len(said) == 1 and said[0].levelno == logging.INFO, [r.getMessage() for r in said]
    text = said[0].getMessage()
    assert "model reload recovered" in text and f"version {version}" in text
    assert "connection refused" in text  # what was failing
    caplog.clear()
    assert client.post("/model/reload", headers=KEY).json()["status"] == "unchanged"
    assert not [r for r in caplog.records if r.name == "service.manager"]  # said once


def test_a_reload_onto_another_forecasting_contract_serves_it_and_says_so(
    client_for: Callable[..., TestClient], registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """The alias moved (`urnn models promote N --allow-contract-change`) to a version that
    forecasts another quantity: served, since the alias is the operator's decision, but the
    service said nothing of it, and its clients got another quantity than they asked for."""
    name = "reload-contract"
    registry.register(name, seed=1)
    client = client_for(model_uri=f"models:/{name}@champion")
    assert client.get("/model").json()["last_reload_contract_change"] is None
    registry.register(name, seed=2, covariates=False, meta=registry.other_quantity())
    with caplog.at_level(logging.WARNING, logger="service.manager"):
        reload = client.post("/model/reload", headers=KEY)
    assert reload.status_code == 200, reload.text
    info = client.get("/model").json()
    assert (info["version"], info["target"], info["last_reload_error"]) == ("2", "cnt", None)
    change = info["last_reload_contract_change"]
    assert change.startswith("version 2 forecasts another quantity than version 1 did: ")
    assert "target 'y' -> 'cnt'; covariates ['x'] -> none" in change
    assert reload.json()["model"]["last_reload_contract_change"] == change
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("target 'y' -> 'cnt'" in message for message in warned), warned
    # the next swap, within one contract, clears it
    registry.register(name, seed=3, covariates=False, meta=registry.other_quantity())
    assert client.post("/model/reload", headers=KEY).json()["status"] == "reloaded"
    assert client.get("/model").json()["last_reload_contract_change"] is None
