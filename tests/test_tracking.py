"""The MLflow helper writes runs into the store the Settings point at, and nowhere else."""

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.e2e.processes import free_port
from urnn_forecast.settings import Settings
from urnn_forecast.tracking import (
    MlflowTracker,
    TrackingServerError,
    TrackingStoreError,
    check_tracking_server,
    check_tracking_store,
    is_file_store,
    shown_uri,
    start_run,
)


def test_start_run_logs_into_a_fresh_sqlite_store(mlflow_settings: Settings) -> None:
    from mlflow.tracking import MlflowClient

    settings = mlflow_settings
    assert not settings.var_dir.exists()
    with start_run("unit-test", settings, run_name="r1", tags={"suite": "test"}) as run:
        tracker = MlflowTracker(run.info.run_id)
        tracker.log_params({"task": "copy", "seq_len": 10})
        tracker.log_metrics({"train_cost": 0.5}, step=1)
        tracker.log_metrics({"train_cost": 0.25}, step=2)
        run_id = run.info.run_id

    assert (settings.var_dir / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    experiment = client.get_experiment_by_name("unit-test")
    assert experiment is not None
    assert experiment.artifact_location == f"{settings.resolved_artifact_root()}/unit-test"
    stored = client.get_run(run_id)
    assert stored.info.status == "FINISHED"
    assert stored.info.run_name == "r1"
    assert stored.data.params == {"task": "copy", "seq_len": "10"}
    assert stored.data.tags["suite"] == "test"
    # which code made it: MLflow records no commit for an entry point in the ignored .venv
    import subprocess

    from urnn_forecast import __version__

    assert stored.data.tags["urnn.package_version"] == __version__
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():  # a checkout (CI clones one): its commit and state
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        assert stored.data.tags["mlflow.source.git.commit"] == head
        assert stored.data.tags["urnn.code_modified"] in ("true", "false")
    else:  # an unpacked release: the version alone
        assert "urnn.code_modified" not in stored.data.tags
    history = client.get_metric_history(run_id, "train_cost")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25)]

    # a second run reuses the experiment instead of failing to create it again
    with start_run("unit-test", settings) as second:
        assert second.info.experiment_id == experiment.experiment_id


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("../../escaped", ".._.._escaped"),
        ("..", "__"),
        ("team/forecast:v2", "team_forecast_v2"),
        ("%2E%2E%2Fup", "_2E_2E_2Fup"),  # a file: URI would read the escapes as '../'
        ("nightly retrain", "nightly retrain"),  # a plain name keeps its folder
    ],
)
def test_an_experiment_name_stays_one_folder_under_the_artifact_root(
    mlflow_settings: Settings, name: str, folder: str
) -> None:
    """A job's config.train.experiment of '../../../../tmp/x' made the worker write the run's
    model, plots and log into /tmp/x: the name was joined to the artifact root as a path."""
    import mlflow
    from mlflow.tracking import MlflowClient

    settings = mlflow_settings
    with start_run(name, settings) as run:
        mlflow.log_text("logged", "probe.txt")
    experiment = MlflowClient(settings.resolved_tracking_uri()).get_experiment_by_name(name)
    assert experiment is not None
    assert experiment.artifact_location == f"{settings.resolved_artifact_root()}/{folder}"
    root = settings.var_dir / "mlartifacts"
    written = root / folder / run.info.run_id / "artifacts" / "probe.txt"
    assert written.read_text() == "logged"
    assert [p for p in settings.var_dir.parent.rglob("probe.txt")] == [written]


def test_a_failing_body_marks_the_run_failed(mlflow_settings: Settings) -> None:
    from mlflow.tracking import MlflowClient

    settings = mlflow_settings
    with pytest.raises(RuntimeError), start_run("unit-test", settings) as run:
        run_id = run.info.run_id
        raise RuntimeError("boom")
    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    assert client.get_run(run_id).info.status == "FAILED"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: ClassVar[list[str]] = []  # a subclass per test gets its own list

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


def _health(status: int = 200) -> type[_Health]:
    """A /health stand-in answering `status`, with its own list of the paths asked for."""
    return type("Health", (_Health,), {"status": status, "paths": []})


STORE_PROBE = "/api/2.0/mlflow/registered-models/search?max_results=1"


class _StoreDown(_Health):
    """An MLflow server whose database is down: /health answers 200 (it reads no database),
    every API call 503 with MLflow's JSON error, as `mlflow server` did with PostgreSQL
    refusing connections."""

    def do_GET(self) -> None:
        self.paths.append(self.path)
        if self.path == "/health":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")
            return
        body = (
            b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "(psycopg.OperationalError) '
            b'connection failed: FATAL:  database \\"mlflow\\" is not currently accepting '
            b'connections\\n(Background on this error at: https://sqlalche.me/e/21/e3q8)"}'
        )
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """A local HTTP server answering with `handler` while the block runs; yields its port."""
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_a_tracking_server_whose_store_is_down_is_said_in_seconds_not_retried_for_minutes(
    tmp_path: Path,
) -> None:
    """A server up with its database down answers /health, then 503 to every call, which
    MLflow's client retried for about five minutes: `urnn models list` hung, and the service's
    alias check held its reload lock that long before saying "Max retries exceeded"."""
    import time

    handler: type[_StoreDown] = type("StoreDown", (_StoreDown,), {"paths": []})
    with _serving(handler) as port:
        uri = f"http://127.0.0.1:{port}"
        settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=uri)
        started = time.monotonic()
        with pytest.raises(TrackingServerError) as raised:
            check_tracking_server(settings)
        assert time.monotonic() - started < 10
    said = str(raised.value)
    assert f"the MLflow tracking server at {uri} (URNN_MLFLOW_TRACKING_URI)" in said
    assert "HTTP 503" in said and "is not currently accepting connections" in said
    assert "its store" in said and "--backend-store-uri" in said
    assert "\n" not in said and "Background on this error" not in said  # the first line only
    assert handler.paths == ["/health", STORE_PROBE]  # once each: no retries


@pytest.mark.parametrize(("status", "answers"), [(200, True), (503, False)])
def test_a_tracking_server_is_checked_in_seconds_not_retried_for_minutes(
    tmp_path: Path, status: int, answers: bool
) -> None:
    handler = _health(status)
    with _serving(handler) as port:
        uri = f"http://127.0.0.1:{port}"
        settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=uri)
        if answers:
            check_tracking_server(settings)
        else:
            with pytest.raises(TrackingServerError, match=r"HTTP 503 from .*/health"):
                check_tracking_server(settings)
    # asked once: no retries, whatever the answer; the store behind it only once /health is up
    assert handler.paths == (["/health", STORE_PROBE] if answers else ["/health"])


def test_a_tracking_server_named_with_credentials_is_checked_and_its_password_not_shown(
    tmp_path: Path,
) -> None:
    """urllib reads user:password@ as part of the host, so such a URI failed the health check
    whatever the server did; and the failure's message went to /readyz with the password."""
    handler = _health()
    with _serving(handler) as port:
        uri = f"http://ops:s3cret@127.0.0.1:{port}"
        check_tracking_server(Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=uri))
    assert handler.paths == ["/health", STORE_PROBE]  # checked: it reached the server
    dead = f"http://ops:s3cret@127.0.0.1:{free_port()}"
    with pytest.raises(TrackingServerError) as raised:
        check_tracking_server(Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=dead))
    assert "s3cret" not in str(raised.value)
    assert dead.replace("s3cret", "***") in str(raised.value)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
        ("https://u:t%40k@host/x", "https://u:***@host/x"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("http://user@host", "http://user@host"),
        ("sqlite:////srv/var/mlflow.db", "sqlite:////srv/var/mlflow.db"),
        ("http://[::1", "(unparsable)"),
        # SQLAlchemy reads a '/' in a password as part of it; urllib found no password
        ("postgresql+psycopg://u:pa/ss@db:5432/m", "postgresql+psycopg://u:***@db:5432/m"),
        ("postgresql://u:p@ss@db/m", "postgresql://u:***@db/m"),
        ("postgresql://u:p@ss/wd@db/m", "postgresql://u:***@db/m"),
        ("postgresql://u:Zq?9#kL@db/m", "postgresql://u:***@db/m"),
        # the rest as written: an '@' in a query or an http path is not the password's
        (
            "postgresql://u:pw@db/m?sslrootcert=/a@b.pem",
            "postgresql://u:***@db/m?sslrootcert=/a@b.pem",
        ),
        ("https://u:tok@host/users/a@b.com?x=1&y=", "https://u:***@host/users/a@b.com?x=1&y="),
        ("https://host:8080/a@b", "https://host:8080/a@b"),
        ("sqlite:////srv/a@b/c.db", "sqlite:////srv/a@b/c.db"),
        (
            "postgresql://u@db/m?sslmode=require&password=s3",
            "postgresql://u@db/m?sslmode=require&password=***",
        ),
        ("https://host/x?Token=abc&y=1", "https://host/x?Token=***&y=1"),
    ],
)
def test_a_uri_is_shown_without_its_password(uri: str, shown: str) -> None:
    assert shown_uri(uri) == shown


def test_a_dead_tracking_server_stops_a_run_before_it_starts(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=f"http://127.0.0.1:{port}")
    # our check's error, not MLflow's after its minutes of retries
    pattern = r"does not answer: .*URNN_MLFLOW_TRACKING_URI"
    with pytest.raises(TrackingServerError, match=pattern), start_run("never", settings):
        pass
    assert not (tmp_path / "var").exists()


def test_processes_starting_together_on_a_fresh_store_all_get_the_experiment(
    tmp_path: Path,
) -> None:
    """MLflow creates a SQLite store's tables on first use; three processes doing it at once
    (workers, or `urnn train`s started together) used to fail one of them inside Alembic."""
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; from urnn_forecast.settings import Settings; "
        "from urnn_forecast.tracking import ensure_experiment; "
        "var = Path(sys.argv[1]); var.mkdir(parents=True, exist_ok=True); "
        "print(ensure_experiment('together', Settings(var_dir=var)))"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "var")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    answers = [run.communicate(timeout=180) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], [err[-2000:] for _, err in answers]
    assert len({out.strip() for out, _ in answers}) == 1  # one experiment, the same id


def test_service_workers_starting_together_on_a_fresh_store_all_find_it_empty(
    tmp_path: Path,
) -> None:
    """`urnn serve --workers 2` on a fresh var dir: each worker's first model lookup created
    the store's tables at the same time, and one failed ("duplicate column name: step") and
    stayed not ready; now each one is told the same thing: nothing is registered yet."""
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = (
        "import sys; from service.loader import MlflowLoader, NoModelError\n"
        "try:\n"
        "    MlflowLoader(sys.argv[1]).resolve('models:/urnn-forecaster@champion')\n"
        "except NoModelError as error:\n"
        "    print(str(error).split(' in ')[0])\n"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, uri],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    answers = [run.communicate(timeout=180) for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, [err[-2000:] for _, err in answers]
    assert [out.strip() for out, _ in answers] == [
        "nothing is registered at models:/urnn-forecaster@champion"
    ] * 4


def test_a_file_store_is_refused_naming_the_setting_and_a_database_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow 3 refuses its file store with a multi-line MlflowException when the run is
    created; here it is one sentence naming URNN_MLFLOW_TRACKING_URI, before anything runs."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    for uri in (f"file://{tmp_path}/fs", f"{tmp_path}/fs", "mlruns"):
        settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=uri)
        with pytest.raises(TrackingStoreError) as caught:
            check_tracking_store(settings)
        assert str(caught.value).startswith(f"URNN_MLFLOW_TRACKING_URI={uri}: a file store")
        assert "sqlite:///" in str(caught.value)
        # a TrackingServerError, as start_run's callers catch it
        with pytest.raises(TrackingServerError), start_run("x", settings):
            pass
    for uri in ("sqlite:///x.db", "http://127.0.0.1:5000", "databricks", "postgresql://h/db"):
        assert not is_file_store(uri), uri
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's own opt-out is honoured
    check_tracking_store(Settings(var_dir=tmp_path / "var", mlflow_tracking_uri="mlruns"))


def test_a_var_dir_that_is_a_file_is_refused_naming_the_setting(tmp_path: Path) -> None:
    """Settings refuse a var_dir that is a file when they are read; one that became a file
    since (or lies below a file) is refused here, before MLflow's mkdir traceback."""
    taken = tmp_path / "taken"
    settings = [Settings(var_dir=taken), Settings(var_dir=taken / "below")]
    taken.write_text("")
    for each, expected in zip(
        settings,
        (
            f"URNN_VAR_DIR={taken}: is a file, not a folder",
            f"URNN_VAR_DIR={taken / 'below'}: cannot create the folder",
        ),
        strict=True,
    ):
        with pytest.raises(TrackingStoreError) as caught:
            check_tracking_store(each)
        assert str(caught.value).startswith(expected)


@pytest.mark.parametrize(
    ("root", "said"),
    [
        ("s4://nope", "URNN_MLFLOW_ARTIFACT_ROOT=s4://nope: MLflow has no artifact store for "
         "'s4:'; give a local folder or one of "),
        ("{taken}/below", "URNN_MLFLOW_ARTIFACT_ROOT={taken}/below: cannot be made as a "
         "folder ({taken} is a file)"),
        ("file://{taken}/below", "cannot be made as a folder ({taken} is a file)"),
    ],
)  # fmt: skip
def test_an_artifact_root_mlflow_cannot_write_to_is_refused_before_the_work(
    tmp_path: Path, root: str, said: str
) -> None:
    """It failed when the fitted model was logged, after the whole training, and the new
    experiment kept it: every later run failed too, with the setting unset (a walk-through)."""
    taken = tmp_path / "taken"
    taken.write_text("")
    settings = Settings(var_dir=tmp_path / "var", mlflow_artifact_root=root.format(taken=taken))
    with pytest.raises(TrackingStoreError) as caught:
        check_tracking_store(settings, logs_runs=True)
    assert said.format(taken=taken) in str(caught.value)
    check_tracking_store(settings)  # the service and `urnn models` create no experiment
    for fine in (str(tmp_path / "artifacts"), "s3://bucket/mlflow"):
        with pytest.MonkeyPatch.context() as patch:  # boto3 installed, or not needed
            patch.setattr("urnn_forecast.tracking._missing_client", lambda scheme: None)
            check_tracking_store(
                settings.model_copy(update={"mlflow_artifact_root": fine}), logs_runs=True
            )


@pytest.mark.parametrize(
    ("root", "package"),
    [("s3://bucket/mlflow", "boto3"), ("gs://bucket/mlflow", "google.cloud.storage")],
)
def test_a_cloud_artifact_root_whose_client_is_not_installed_is_refused_before_the_work(
    tmp_path: Path, root: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow imports a cloud store's client when the fitted model is logged: with an s3://
    root and no boto3, `urnn train` trained to the end, then failed with ModuleNotFoundError."""
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == package else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    settings = Settings(var_dir=tmp_path / "var", mlflow_artifact_root=root)
    with pytest.raises(TrackingStoreError) as caught:
        check_tracking_store(settings, logs_runs=True)
    assert f"Python package '{package}', which is not installed here" in str(caught.value)
    assert str(caught.value).startswith(f"URNN_MLFLOW_ARTIFACT_ROOT={root}: ")
    # the compose file's root: served by a tracking server, which a local store is not
    served = settings.model_copy(update={"mlflow_artifact_root": "mlflow-artifacts:/"})
    with pytest.raises(TrackingStoreError, match="'mlflow-artifacts:' is served by an MLflow"):
        check_tracking_store(served, logs_runs=True)


def test_a_sqlite_store_whose_folder_cannot_be_made_is_refused_naming_the_setting(
    tmp_path: Path,
) -> None:
    """It failed in a traceback from the store's setup lock."""
    taken = tmp_path / "taken"
    taken.write_text("")
    uri = f"sqlite:///{taken}/x/mlflow.db"
    with pytest.raises(TrackingStoreError) as caught:
        check_tracking_store(Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=uri))
    assert str(caught.value).startswith(
        f"URNN_MLFLOW_TRACKING_URI={uri}: the store's folder {taken}/x cannot be made "
        f"({taken} is a file)"
    )


def test_a_store_file_that_is_not_a_sqlite_database_is_refused_naming_the_setting(
    tmp_path: Path,
) -> None:
    """A damaged mlflow.db (or another program's file under that name) stopped urnn train
    after the data was read, urnn backtest, urnn demo and urnn benchmark paper in a sqlalchemy
    'file is not a database' traceback; `urnn models` said it in other words, exit 1."""
    var = tmp_path / "var"
    var.mkdir()
    (var / "mlflow.db").write_text("not a database")
    with pytest.raises(TrackingStoreError) as caught:
        check_tracking_store(Settings(var_dir=var))
    assert str(caught.value).startswith(
        f"URNN_VAR_DIR={var}: its MLflow store {var / 'mlflow.db'} is not a SQLite database"
    )
    uri = f"sqlite:///{var / 'mlflow.db'}"
    with pytest.raises(TrackingStoreError, match=r"^URNN_MLFLOW_TRACKING_URI=sqlite:///"):
        check_tracking_store(Settings(var_dir=tmp_path / "v2", mlflow_tracking_uri=uri))
    with pytest.raises(TrackingStoreError):  # urnn models (create=False) says the same
        check_tracking_store(Settings(var_dir=var), create=False)
    (var / "mlflow.db").write_bytes(b"")  # an empty file is a new SQLite database
    check_tracking_store(Settings(var_dir=var))


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow",
        "postgresql://mlflow:s3cret@127.0.0.1:{port}/mlflow",
    ],
)
def test_a_tracking_database_out_of_reach_is_one_line_in_seconds(tmp_path: Path, uri: str) -> None:
    """MLflow's SQLAlchemy store retried a PostgreSQL store that was down for minutes
    ("Operation will be retried in 51.1 seconds") before `urnn models list` said anything."""
    import time

    uri = uri.format(port=free_port())  # nothing listens there
    settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=uri)
    started = time.monotonic()
    with pytest.raises(TrackingServerError) as caught:
        check_tracking_server(settings)
    said = str(caught.value)
    assert said.startswith(f"the MLflow tracking database at {shown_uri(uri)} ")
    assert "does not open a connection" in said and "s3cret" not in said
    assert time.monotonic() - started < 30  # one try with a timeout, not MLflow's retries


def test_a_tracking_database_whose_driver_is_missing_is_named(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri="mysql://u@127.0.0.1/m")
    with pytest.raises(TrackingServerError, match=r"not a database URL this install can open"):
        check_tracking_server(settings)


@pytest.mark.parametrize(
    ("uri", "connect_args"),
    [
        ("postgresql+psycopg://u@db/m", {"connect_timeout": 5}),
        ("postgresql+pg8000://u@db/m", {"timeout": 5}),  # connect_timeout was a TypeError
        ("mssql+pymssql://u:p@db/m", {"login_timeout": 5}),
        ("mssql+pymssql://u:p@db/m?timeout=600", {"login_timeout": 5}),  # its query timeout
        ("mssql+pymssql://u:p@db/m?login_timeout=9", {}),  # the URI's own stands
        ("postgresql+psycopg://u@db/m?connect_timeout=2", {}),
        ("mysql+mysqlconnector://u@db/m?connect_timeout=3", {}),
        ("mssql+pyodbc://u:p@dsn", {"timeout": 5}),
    ],
)
def test_the_connection_timeout_is_given_under_each_drivers_own_keyword(
    uri: str, connect_args: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy

    from urnn_forecast.tracking import _check_tracking_database

    given: list[object] = []

    def engine(url: str, connect_args: dict[str, int]) -> None:
        given.append(connect_args)
        raise sqlalchemy.exc.ArgumentError("stop here")

    monkeypatch.setattr(sqlalchemy, "create_engine", engine)
    with pytest.raises(TrackingServerError):
        _check_tracking_database(uri)
    assert given == [connect_args]


def test_urnn_train_prints_where_runs_went_without_passwords(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `urnn train` prints at its end becomes a job's log tail (GET /jobs, open to anyone
    unless URNN_API_KEY_FOR_READS is on): the store's password printed there whole."""
    from urnn_forecast.cli_support import print_mlflow_location

    settings = Settings(
        var_dir=tmp_path,
        mlflow_tracking_uri="postgresql+psycopg://mlflow:hunter2@db:5432/mlflow",
        mlflow_artifact_root="https://user:s3cr3t@store/artifacts",
    )
    print_mlflow_location(settings, "forecast")
    printed = capsys.readouterr().out
    assert "hunter2" not in printed and "s3cr3t" not in printed
    assert "in postgresql+psycopg://mlflow:***@db:5432/mlflow" in printed
    assert "artifacts under https://user:***@store/artifacts" in printed


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("postgresql+psycopg://u:hunter2@db/m", ["hunter2"]),
        ("postgresql://u:p@ss:w0rd@db/m?sslmode=require", ["p@ss:w0rd"]),
        ("https://u:t%40ken@host:5000", ["t%40ken"]),  # 't@ken': too short on its own
        ("https://u:t%40ken-1@host:5000", ["t%40ken-1", "t@ken-1"]),
        ("postgresql://u@db/m?password=qu3ry-pw", ["qu3ry-pw"]),
        ("postgresql://u:pw@db/m", []),  # too short to mask outside the URL
        ("http://host:5000", []),
        ("sqlite:////var/urnn/mlflow.db", []),
        # the scheme mistyped: the worker's output (a job's error) quoted the password
        ("mluser:s3cr3t-pw@mlflow:5000", ["s3cr3t-pw"]),
        ("postgresql:/jobs:s3cret@db/urnn", ["/jobs:s3cret", "s3cret"]),
        ("/srv/runs@2/mlflow", []),
    ],
)
def test_url_secrets_are_what_password_hidden_masks(url: str, secrets: list[str]) -> None:
    from urnn_forecast.url_text import url_secrets

    assert url_secrets(url) == sorted(secrets, key=lambda s: (-len(s), s))


def test_a_tracking_server_keeps_its_own_artifact_root_unless_one_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With an http(s) tracking server and no URNN_MLFLOW_ARTIFACT_ROOT, new experiments take
    the server's default (tests/e2e/test_tracking_server.py runs it against a real server),
    and `urnn train` does not claim the artifacts are under a local folder."""
    from urnn_forecast.cli_support import print_mlflow_location

    server = Settings(var_dir=tmp_path, mlflow_tracking_uri="http://mlflow:5000")
    assert server.resolved_artifact_root() is None
    print_mlflow_location(server, "forecast")
    printed = capsys.readouterr().out
    assert str(tmp_path) not in printed
    assert "artifacts where the tracking server keeps them" in printed
    given = Settings(
        var_dir=tmp_path, mlflow_tracking_uri="https://mlflow", mlflow_artifact_root="s3://b/p"
    )
    assert given.resolved_artifact_root() == "s3://b/p"
    local = Settings(var_dir=tmp_path)
    assert local.resolved_artifact_root() == (tmp_path / "mlartifacts").resolve().as_uri()
