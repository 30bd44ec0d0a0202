"""Streaming states outlive the process and the model version: restart recovery from snapshots
(SQLite and PostgreSQL, write-behind and write-through), LRU eviction and restore, rebuilds
from the stored tail after a model version change, snapshot conflicts between replicas."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jobs.db import upgrade
from service.main import create_app
from tests.jobs.conftest import postgres_server, postgres_url  # noqa: F401 (fixtures)
from tests.service.conftest import Registry, metric_value, register_streaming
from tests.service.test_streaming_api import (
    KEY,
    exactly,
    late_real_point,
    points,
    post,
    quantile_block,
    stuck_body,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, stream_db: str) -> str:
    if request.param == "sqlite":
        return stream_db
    url: str = request.getfixturevalue("postgres_url")
    upgrade(url)
    return url


class Apps:
    """Apps on the streaming model, each started here and stopped by `stop` or at teardown."""

    def __init__(self, registry: Registry, model_uri: str) -> None:
        self.registry, self.model_uri = registry, model_uri
        self.open: list[TestClient] = []

    def start(self, **overrides: Any) -> TestClient:
        fields: dict[str, Any] = {"model_uri": self.model_uri, **overrides}
        client = TestClient(create_app(self.registry.service_settings(**fields)))
        client.__enter__()
        self.open.append(client)
        return client

    def stop(self, client: TestClient) -> None:
        self.open.remove(client)
        client.__exit__(None, None, None)  # the lifespan's shutdown flushes


@pytest.fixture
def apps(registry: Registry, streaming_model: str) -> Iterator[Apps]:
    made = Apps(registry, streaming_model)
    yield made
    for client in reversed(made.open):
        client.__exit__(None, None, None)


@pytest.mark.parametrize("snapshot_seconds", [30.0, 0.0], ids=["write-behind", "write-through"])
def test_restart_resumes_the_state(
    apps: Apps, registry: Registry, db_url: str, tmp_path: Path, snapshot_seconds: float
) -> None:
    frame = registry.frame
    first = apps.start(database_url=db_url, stream_snapshot_seconds=snapshot_seconds)
    assert post(first, "r", points(frame, 0, 60)).status_code == 200
    apps.stop(first)
    second = apps.start(database_url=db_url, stream_snapshot_seconds=snapshot_seconds)
    status = second.get("/series/r").json()
    assert (status["points_seen"], status["tail_length"]) == (60, 60)
    resumed = post(second, "r", points(frame, 60, 10)).json()
    assert resumed["series"]["points_seen"] == 70
    assert metric_value(second, "urnn_stream_restores_total") == 1
    other_db = f"sqlite:///{tmp_path / 'uninterrupted.db'}"
    upgrade(other_db)
    uninterrupted = apps.start(database_url=other_db)
    whole = post(uninterrupted, "r", points(frame, 0, 70)).json()
    np.testing.assert_allclose(
        quantile_block(resumed["forecast"]), quantile_block(whole["forecast"]), atol=1e-5
    )


def test_a_filled_step_is_still_said_to_be_filled_after_a_restart(
    apps: Apps, registry: Registry, db_url: str
) -> None:
    """The tail's snapshot keeps which of its points the gap policy filled: restored (a
    restart, an eviction, another replica), a late real value for one still says so."""
    frame = registry.frame
    first = apps.start(database_url=db_url)
    assert late_real_point(first, frame, "f").status_code == 409
    apps.stop(first)
    second = apps.start(database_url=db_url)
    answer = post(second, "f", points(frame, 62, 1))
    assert answer.status_code == 409, answer.text
    assert "filled by gap_policy='interpolate' with the interpolated value" in answer.text
    assert metric_value(second, "urnn_stream_restores_total") == 1


def test_a_stuck_sensor_restored_from_a_snapshot_is_forecast_as_its_level_exactly(
    apps: Apps, registry: Registry, db_url: str
) -> None:
    """The level a flat series is forecast as is its last raw point, which the snapshot's raw
    tail already holds: a snapshot in the formats releases before this one wrote (tail 1,
    state 1, unchanged) restores to the exact level, where it was one float step off."""
    import json
    import struct

    from sqlalchemy import create_engine, select

    from service.stream_snapshots import TABLE

    first = apps.start(database_url=db_url)
    body = stuck_body(first, registry.frame, "stuck")
    assert post(first, "stuck", body).status_code == 200
    apps.stop(first)  # its shutdown writes the snapshot
    engine = create_engine(db_url)
    with engine.begin() as connection:
        row = connection.execute(select(TABLE).where(TABLE.c.series_id == "stuck")).one()
    engine.dispose()
    assert struct.unpack_from("<4sH", bytes(row.tail)) == (b"URNT", 1)
    state, magic = bytes(row.state), b"URNNSTATE"
    (size,) = struct.unpack_from("<I", state, len(magic))
    assert json.loads(state[len(magic) + 4 : len(magic) + 4 + size])["format"] == 1
    second = apps.start(database_url=db_url)
    restored = second.get("/series/stuck/forecast")
    assert restored.status_code == 200, restored.text
    assert exactly(restored.json()["forecast"], body["values"][-1]), restored.json()
    assert metric_value(second, "urnn_stream_restores_total") == 1


@pytest.mark.parametrize("offset", ["+00:19:32", "-04:56:02"])
def test_a_series_on_an_offset_with_seconds_comes_back_on_it(
    apps: Apps, registry: Registry, stream_db: str, offset: str
) -> None:
    """A series created from times with a local mean time offset (Amsterdam's +00:19:32
    until 1937) stores it as 'UTC+00:19:32'; restored, pandas read that name cut to the
    minute, and after a restart (an eviction, another replica) the series answered
    '1929-12-31T23:59:28+00:19' for its first point, '...T00:00:00+00:19:32' before."""
    body = points(registry.frame, 0, 60)
    body["start"] = f"1930-01-01T00:00:00{offset}"
    first = apps.start(database_url=stream_db)
    assert post(first, "lmt", body).status_code == 200
    before = first.get("/series/lmt").json(), first.get("/series/lmt/forecast").json()
    assert before[0]["first_timestamp"] == body["start"]
    apps.stop(first)
    second = apps.start(database_url=stream_db)
    after = second.get("/series/lmt").json(), second.get("/series/lmt/forecast").json()
    assert after == before


def test_lru_evicts_and_restores(apps: Apps, registry: Registry, stream_db: str) -> None:
    frame = registry.frame
    client = apps.start(database_url=stream_db, stream_max_states=2)
    answers = {
        sid: post(client, sid, points(frame, 0, 50 + k)).json() for k, sid in enumerate("abc")
    }
    assert metric_value(client, "urnn_stream_evictions_total") == 1  # "a", flushed first
    assert metric_value(client, "urnn_stream_series_live") == 2
    again = client.get("/series/a/forecast").json()
    assert again["forecast"] == answers["a"]["forecast"]
    assert metric_value(client, "urnn_stream_restores_total") == 1
    assert metric_value(client, "urnn_stream_evictions_total") == 2  # "b" made room
    assert metric_value(client, "urnn_stream_snapshot_flush_seconds_count") >= 1


def test_model_version_change_rebuilds_from_the_tail(
    apps: Apps, registry: Registry, stream_db: str
) -> None:
    frame, name = registry.frame, "urnn-stream-versions"
    register_streaming(registry, name, seed=1)
    client = apps.start(database_url=stream_db, model_uri=f"models:/{name}@champion")
    before = post(client, "v", points(frame, 0, 60)).json()
    assert before["model"]["version"] == "1"
    register_streaming(registry, name, seed=2)  # version 2 becomes champion
    assert client.post("/model/reload", headers=KEY).json()["status"] == "reloaded"
    assert client.get("/series/v").json()["model_version"] == "1"  # rebuilt lazily
    after = client.get("/series/v/forecast").json()
    assert after["model"]["version"] == "2"
    assert after["series"]["model_version"] == "2"
    assert metric_value(client, "urnn_stream_rebuilds_total") == 1
    fresh = post(client, "fresh", points(frame, 0, 60)).json()  # the tail holds every point
    np.testing.assert_allclose(
        quantile_block(after["forecast"]), quantile_block(fresh["forecast"]), atol=1e-5
    )
    assert not np.allclose(
        quantile_block(after["forecast"]), quantile_block(before["forecast"]), atol=1e-5
    )
    more = post(client, "v", points(frame, 60, 5)).json()
    assert (more["model"]["version"], more["series"]["points_seen"]) == ("2", 65)
    assert metric_value(client, "urnn_stream_rebuilds_total") == 1


def test_series_status_after_a_new_version_says_what_the_served_version_needs(
    apps: Apps, registry: Registry, stream_db: str
) -> None:
    """GET /series/{id} answered the old version's `ready` and `points_needed` until the
    series' next forecast or update rebuilt it: after a version with a longer look-back, a
    ready series said `ready: true, points_needed: 0` while its forecast answered 409 "warming
    up, needs 36 more", and a warming one said 8 more points where the served version needs
    56: a client that sent them got `forecast: null`."""
    frame, name = registry.frame, "urnn-stream-lookback"
    register_streaming(registry, name, seed=1)  # look-back 48
    client = apps.start(database_url=stream_db, model_uri=f"models:/{name}@champion")
    post(client, "ready", points(frame, 0, 60))
    post(client, "warming", points(frame, 0, 40))
    register_streaming(registry, name, seed=2, lookback=96)  # version 2 becomes champion
    assert client.post("/model/reload", headers=KEY).json()["status"] == "reloaded"
    for sid, seen in (("ready", 60), ("warming", 40)):
        status = client.get(f"/series/{sid}").json()
        assert status["model_version"] == "1"  # still rebuilt lazily
        assert (status["ready"], status["points_needed"]) == (False, 96 - seen)
        refused = client.get(f"/series/{sid}/forecast")
        assert refused.status_code == 409 and f"needs {96 - seen} more" in refused.text
    answer = post(client, "warming", points(frame, 40, 56)).json()
    assert answer["series"]["ready"] and answer["forecast"] is not None


def test_a_version_of_another_frequency_refuses_to_rebuild_the_series(
    apps: Apps, registry: Registry, stream_db: str
) -> None:
    """A new version at another frequency replayed the hourly tail as its own steps: an
    hourly series answered 200 with a forecast at 15-minute steps, made from hourly points
    read as consecutive quarter hours, and its next hourly point was a 'gap'."""
    frame, name = registry.frame, "urnn-stream-freq"
    register_streaming(registry, name, seed=1)
    client = apps.start(database_url=stream_db, model_uri=f"models:/{name}@champion")
    before = post(client, "q", points(frame, 0, 60)).json()
    register_streaming(registry, name, seed=2, freq="15min")  # version 2 becomes champion
    assert client.post("/model/reload", headers=KEY).json()["status"] == "reloaded"
    for answer in (client.get("/series/q/forecast"), post(client, "q", points(frame, 60, 1))):
        assert answer.status_code == 409, answer.text
        detail = answer.json()["detail"]
        assert "frequency 'h'" in detail and "'15min'" in detail and "DELETE" in detail
    status = client.get("/series/q").json()  # left as it was
    assert (status["model_version"], status["points_seen"]) == ("1", 60)
    assert metric_value(client, "urnn_stream_rebuilds_total") == 0
    register_streaming(registry, name, seed=1)  # back at 'h' (version 3, version 1's weights)
    assert client.post("/model/reload", headers=KEY).json()["status"] == "reloaded"
    after = client.get("/series/q/forecast").json()
    assert after["model"]["version"] == "3"
    assert after["forecast"]["timestamps"] == before["forecast"]["timestamps"]
    np.testing.assert_allclose(
        quantile_block(after["forecast"]), quantile_block(before["forecast"]), atol=1e-5
    )


def test_a_version_reading_fewer_covariates_keeps_the_others_in_the_tail(
    apps: Apps, registry: Registry, stream_db: str
) -> None:
    """The rebuild kept only the covariates the new version reads: a GET of the forecast
    under a version without covariates stripped x from the stored tail, and the rollback to
    the version reading x answered 409 (DELETE and resend) for a series whose every point
    had been sent with x. Points taken by the version without x do lack it: with them in the
    tail, the rollback is still refused, naming x."""
    frame, name = registry.frame, "urnn-stream-covariates"
    register_streaming(registry, name, seed=1)
    client = apps.start(database_url=stream_db, model_uri=f"models:/{name}@champion")
    before = post(client, "c", points(frame, 0, 60)).json()
    post(client, "d", points(frame, 0, 60))
    register_streaming(registry, name, seed=2, covariates=False)  # version 2: no covariates
    assert client.post("/model/reload", headers=KEY).json()["status"] == "reloaded"
    assert client.get("/series/c/forecast").json()["model"]["version"] == "2"
    values_only = {"start": frame.index[60].isoformat(), "values": [float(frame["y"].iloc[60])]}
    assert post(client, "d", values_only).json()["series"]["points_seen"] == 61
    apps.stop(client)  # the rebuilt states are written
    register_streaming(registry, name, seed=1)  # version 3: version 1's weights, reads x
    client = apps.start(database_url=stream_db, model_uri=f"models:/{name}@champion")
    after = client.get("/series/c/forecast").json()
    assert after["model"]["version"] == "3"
    np.testing.assert_allclose(
        quantile_block(after["forecast"]), quantile_block(before["forecast"]), atol=1e-5
    )
    assert post(client, "c", points(frame, 60, 1)).json()["series"]["points_seen"] == 61
    refused = client.get("/series/d/forecast")
    assert refused.status_code == 409, refused.text
    assert "lack covariate(s) ['x']" in refused.json()["detail"]


def test_another_models_state_of_the_same_version_number_is_rebuilt_not_used(
    apps: Apps, registry: Registry, stream_db: str
) -> None:
    """States were matched by the version string alone: meters-a version 1's state was read
    as meters-b version 1's (an audit's: a forecast 6 % off under meters-b's name)."""
    frame = registry.frame
    assert register_streaming(registry, "meters-a", seed=1) == "1"
    assert register_streaming(registry, "meters-b", seed=2) == "1"
    a = apps.start(database_url=stream_db, model_uri="models:/meters-a@champion")
    post(a, "m1", points(frame, 0, 60))
    apps.stop(a)  # its shutdown flushes m1's state made by meters-a
    b = apps.start(database_url=stream_db, model_uri="models:/meters-b@champion")
    served = b.get("/series/m1/forecast").json()
    assert served["model"]["name"] == "meters-b"
    assert metric_value(b, "urnn_stream_rebuilds_total") == 1
    fresh = post(b, "fresh", points(frame, 0, 60)).json()  # meters-b fed the same points
    np.testing.assert_allclose(
        quantile_block(served["forecast"]), quantile_block(fresh["forecast"]), atol=1e-5
    )


def test_write_behind_conflict_drops_the_stale_copy(
    apps: Apps, registry: Registry, stream_db: str
) -> None:
    frame = registry.frame
    one = apps.start(database_url=stream_db, stream_snapshot_seconds=0.2)
    two = apps.start(database_url=stream_db, stream_snapshot_seconds=0.0)
    post(one, "c", points(frame, 0, 50))
    _wait_for(lambda: two.get("/series/c").status_code == 200)  # flushed: revision 1
    assert post(one, "c", points(frame, 50, 5)).status_code == 200  # dirty in `one`
    assert post(two, "c", points(frame, 50, 10)).json()["series"]["points_seen"] == 60
    _wait_for(lambda: metric_value(one, "urnn_stream_snapshot_conflicts_total") == 1)
    # `one` dropped its stale copy and restores what `two` wrote.
    assert one.get("/series/c").json()["points_seen"] == 60
    assert two.get("/series/c").json()["points_seen"] == 60


def test_a_delete_the_store_refuses_keeps_the_series(
    apps: Apps, registry: Registry, stream_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DELETE cleared the memory copy before the row: with the database down it answered 503
    and the series came back from its last snapshot, without the points acknowledged since
    (on PostgreSQL: 150 points posted, 100 after the database returned, the next point a
    409 'gap')."""
    from sqlalchemy.exc import OperationalError

    from service.stream_snapshots import SnapshotRepository

    frame = registry.frame
    first = apps.start(database_url=stream_db)
    assert post(first, "d", points(frame, 0, 50)).status_code == 200
    apps.stop(first)  # its shutdown writes the 50 points
    client = apps.start(database_url=stream_db, stream_snapshot_seconds=3600.0)
    assert post(client, "d", points(frame, 50, 10)).status_code == 200  # in memory only

    def down(self: SnapshotRepository, series_id: str) -> bool:
        raise OperationalError("DELETE", {}, Exception("connection refused"))

    with monkeypatch.context() as patch:
        patch.setattr(SnapshotRepository, "delete", down)
        refused = client.delete("/series/d", headers=KEY)
        assert refused.status_code == 503, refused.text
        assert client.get("/series/d").json()["points_seen"] == 60
    after = post(client, "d", points(frame, 60, 1)).json()
    assert after["series"]["points_seen"] == 61
    assert client.delete("/series/d", headers=KEY).status_code == 204
    assert client.get("/series/d").status_code == 404


def test_write_behind_saves_a_bounded_number_of_series_per_transaction(
    apps: Apps, registry: Registry, stream_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush built the snapshot of every dirty series at once and saved them in one
    transaction: 2,000 ETTh1 series with full tails grew the service's RSS by 168 MiB at one
    write-behind round (each snapshot holds the whole tail). Now FLUSH_CHUNK per save."""
    import service.streaming as streaming
    from service.stream_snapshots import SnapshotRepository

    monkeypatch.setattr(streaming, "FLUSH_CHUNK", 2, raising=False)
    sizes: list[int] = []
    save_many = SnapshotRepository.save_many

    def counted(self: SnapshotRepository, snapshots: Any) -> Any:
        sizes.append(len(snapshots))
        return save_many(self, snapshots)

    monkeypatch.setattr(SnapshotRepository, "save_many", counted)
    frame = registry.frame
    first = apps.start(database_url=stream_db, stream_snapshot_seconds=3600.0)
    answers = {sid: post(first, sid, points(frame, 0, 50)).json() for sid in "abcde"}
    apps.stop(first)  # its shutdown flushes the five
    assert sizes == [2, 2, 1]
    second = apps.start(database_url=stream_db)
    for sid, answer in answers.items():
        assert second.get(f"/series/{sid}/forecast").json()["forecast"] == answer["forecast"]


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_write_through_reapplies_after_a_conflict(
    apps: Apps, registry: Registry, stream_db: str
) -> None:
    frame = registry.frame
    one = apps.start(database_url=stream_db, stream_snapshot_seconds=0.0)
    two = apps.start(database_url=stream_db, stream_snapshot_seconds=0.0)
    post(one, "t", points(frame, 0, 50))
    assert post(two, "t", points(frame, 50, 5)).json()["series"]["points_seen"] == 55
    # `one` sees the new revision before applying: any replica serves any series.
    answer = post(one, "t", points(frame, 53, 7)).json()
    assert (answer["duplicates"], answer["accepted"]) == (2, 5)
    assert answer["series"]["points_seen"] == 60
    assert two.get("/series/t").json()["points_seen"] == 60


def test_a_state_is_the_served_models_only_when_key_and_version_both_say_so() -> None:
    """A replica of the code before the key (a rolling deploy) writes a new version's state
    under the old key; a row from before the key (NULL) stays its version's, as it was."""
    from types import SimpleNamespace
    from typing import cast

    from service.served import ServedModel
    from service.streaming import SeriesData, _made_by

    served = cast(ServedModel, SimpleNamespace(ref=SimpleNamespace(name="m", version="1",
                                                                   run_id="r1")))  # fmt: skip

    def state(version: str, key: str | None) -> SeriesData:
        return cast(SeriesData, SimpleNamespace(model_version=version, model_key=key))

    assert _made_by(state("1", "m/1@r1"), served)
    assert not _made_by(state("2", "m/1@r1"), served)  # an old replica's update of the row
    assert not _made_by(state("1", "other/1@r9"), served)  # another model's version 1
    assert _made_by(state("1", None), served)  # saved before migration 0005
    assert not _made_by(state("2", None), served)


def test_eviction_backs_off_while_the_store_is_down(
    apps: Apps,
    registry: Registry,
    stream_db: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past URNN_STREAM_MAX_STATES with the database down, every request tried to write the
    state it evicted and logged a whole traceback: the states are kept, the store is tried
    again after EVICT_RETRY_SECONDS, and the log says so in one line."""
    from sqlalchemy.exc import OperationalError

    import service.streaming as streaming
    from service.stream_snapshots import SnapshotRepository

    monkeypatch.setattr(streaming, "EVICT_RETRY_SECONDS", 0.5, raising=False)
    frame = registry.frame
    client = apps.start(database_url=stream_db, stream_max_states=2, stream_snapshot_seconds=3600.0)
    saves: list[int] = []
    working = SnapshotRepository.save_many

    def down(self: SnapshotRepository, items: Any) -> Any:
        saves.append(len(items))
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    with monkeypatch.context() as patch, caplog.at_level("WARNING", logger="service.streaming"):
        patch.setattr(SnapshotRepository, "save_many", down)
        for sid in "abcdef":
            assert post(client, sid, points(frame, 0, 50)).status_code == 200
        assert saves == [1]  # one try; the other requests within the back-off wrote nothing
        assert metric_value(client, "urnn_stream_series_live") == 6  # nothing dropped
        said = [r for r in caplog.records if "to evict it; kept it" in r.getMessage()]
        assert len(said) == 1 and said[0].exc_info is None
        assert (
            "kept it (3 states held, URNN_STREAM_MAX_STATES=2); eviction tries again in 0.5 s: "
            "the streaming snapshot store" in said[0].getMessage()
        )
    assert SnapshotRepository.save_many is working
    time.sleep(0.6)
    assert post(client, "g", points(frame, 0, 50)).status_code == 200
    assert metric_value(client, "urnn_stream_series_live") == 2
    assert metric_value(client, "urnn_stream_evictions_total") == 5
    for sid in "abcdefg":  # each one whole, from memory or its snapshot
        assert client.get(f"/series/{sid}").json()["points_seen"] == 50


def test_a_newer_versions_state_makes_a_lagging_replica_ask_the_registry(
    apps: Apps, registry: Registry, stream_db: str
) -> None:
    """Two replicas (or `--workers 2`) switch at their own alias polls: in between, each
    rebuilt a shared series to its own version at every request (a walk: 7 rebuilds of one
    series in 18 s with a 30 s poll). The one that meets a newer version's state asks the
    registry at once; it answers this request with what it serves, the next with the new."""
    frame, name = registry.frame, "urnn-stream-lag"
    register_streaming(registry, name, seed=1)
    shared = {
        "database_url": stream_db,
        "model_uri": f"models:/{name}@champion",
        "stream_snapshot_seconds": 0.0,
        "model_poll_seconds": 0.0,  # no poll: only the state can tell the lagging one
    }
    ahead, behind = apps.start(**shared), apps.start(**shared)
    register_streaming(registry, name, seed=2)  # version 2 becomes champion
    assert ahead.post("/model/reload", headers=KEY).json()["status"] == "reloaded"
    assert post(ahead, "w", points(frame, 0, 60)).json()["model"]["version"] == "2"
    assert behind.get("/series/w/forecast").json()["model"]["version"] == "1"
    _wait_for(lambda: behind.get("/model").json()["version"] == "2")
    # an older version's state (behind's rebuild to 1, written through) asks nothing
    asked = metric_value(ahead, "urnn_model_reloads_total", outcome="unchanged")
    assert ahead.get("/series/w/forecast").json()["model"]["version"] == "2"
    assert metric_value(ahead, "urnn_stream_rebuilds_total") == 1
    assert metric_value(ahead, "urnn_model_reloads_total", outcome="unchanged") == asked
    assert behind.get("/series/w/forecast").json()["model"]["version"] == "2"
    assert post(behind, "w", points(frame, 60, 1)).json()["series"]["points_seen"] == 61


def test_a_snapshot_this_version_cannot_read_is_a_503_that_keeps_it(
    apps: Apps, registry: Registry, db_url: str
) -> None:
    """A tail written in a format this code does not know (a newer release's, during a rolling
    deploy or a rollback) or damaged bytes: the series answers 503 naming the cause and the way
    out, the stored row is left as it was, and other series still serve (it was a 500). What
    the reader said of the bytes (formats, byte counts, Python's codec and struct texts) is
    the operator's: in the log and to a request with the API key, not in GET /series/{id}'s
    answer to anyone (it quoted "not a stream tail of version (1, 2) (b'URNT', 99)")."""
    import struct

    from sqlalchemy import create_engine, select, update

    from service.stream_snapshots import TABLE

    frame = registry.frame
    first = apps.start(database_url=db_url)
    assert post(first, "new", points(frame, 0, 50)).status_code == 200
    assert post(first, "fine", points(frame, 0, 50)).status_code == 200
    apps.stop(first)  # its shutdown writes both
    engine = create_engine(db_url)
    with engine.begin() as connection:
        tail = bytes(
            connection.execute(select(TABLE.c.tail).where(TABLE.c.series_id == "new")).scalar_one()
        )
        magic, _, n, c, names = struct.unpack_from("<4sHIII", tail)
        newer = struct.pack("<4sHIII", magic, 99, n, c, names) + tail[struct.calcsize("<4sHIII") :]
        connection.execute(update(TABLE).where(TABLE.c.series_id == "new").values(tail=newer))
    second = apps.start(database_url=db_url)
    reader = "not a stream tail of version (1, 2) (b'URNT', 99)"
    anyone = second.get("/series/new")
    operator = second.get("/series/new", headers=KEY)
    for answer in (anyone, operator, post(second, "new", points(frame, 50, 1))):
        assert answer.status_code == 503, answer.text
        detail = answer.json()["detail"]
        assert "series 'new'" in detail and "cannot be read by this server" in detail
        assert "kept as stored" in detail and "DELETE" in detail
        assert (reader in detail) is (answer is not anyone), detail
    assert "the server log, or this request sent with the X-API-Key header, says" in anyone.text
    assert post(second, "fine", points(frame, 50, 1)).json()["series"]["points_seen"] == 51
    with engine.begin() as connection:
        kept = connection.execute(
            select(TABLE.c.tail).where(TABLE.c.series_id == "new")
        ).scalar_one()
    assert bytes(kept) == newer
    assert second.delete("/series/new", headers=KEY).status_code == 204
    assert post(second, "new", points(frame, 0, 50)).status_code == 200
    engine.dispose()
