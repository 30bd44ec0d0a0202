"""MLflow helpers: open a run in the store the `Settings` point at.

`mlflow` is imported inside the functions, never at module import: it takes seconds to import
and the CLI's `--help` or `--no-mlflow` paths should not pay for it. Nothing here touches the
file system or MLflow's global state until a run is actually started.
"""

import importlib.util
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from urnn_forecast.code_version import code_version_tags
from urnn_forecast.field_types import shown
from urnn_forecast.file_lock import exclusive_file_lock
from urnn_forecast.folders import folder_problem
from urnn_forecast.settings import Settings
from urnn_forecast.url_text import password_hidden

if TYPE_CHECKING:
    import requests
    from mlflow import ActiveRun, MlflowClient


EXPERIMENT_NAME_MAX = 500  # MLflow's limit on an experiment's name
# MLflow's SQL stores: registered_models.name VARCHAR(256), runs.name VARCHAR(250). SQLite does
# not enforce them, PostgreSQL refuses the longer name, after the whole fit.
REGISTERED_NAME_MAX = 256
RUN_NAME_MAX = 250


def experiment_problem(name: object) -> str | None:
    """What MLflow would refuse in `name` as an experiment's name, found before the fit; None
    when it takes it. Said by `TrainConfig` and by `urnn train --experiment`."""
    return _name_problem(name, EXPERIMENT_NAME_MAX)


def run_name_problem(name: object) -> str | None:
    """The same for a run's name. Said by `TrainConfig` and by `urnn train --run-name`."""
    return _name_problem(name, RUN_NAME_MAX)


def _name_problem(name: object, limit: int) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return f"must be a non-empty name; got {shown(name)}"
    if len(name) > limit:
        return f"must be a name of at most {limit} characters (MLflow's limit); got {shown(name)}"
    return None


def registered_name_problem(name: object) -> str | None:
    """What MLflow's registry would refuse in `name` (found here rather than after the fit);
    None when it takes it. Said by `TrainConfig` and by `urnn train --registered-name`."""
    if not isinstance(name, str) or not name.strip():
        return f"must be a non-empty name; got {shown(name)}"
    if any(c in name for c in "/:"):
        return (
            f"{shown(name)} is not a name MLflow's registry accepts: it cannot contain '/' or ':'"
        )
    if any(c in name for c in "@?"):  # MLflow registers it, and no models:/ URI reaches it
        return (
            f"{shown(name)} cannot be read back from MLflow's registry: models:/<name>@<alias> "
            "and models:/<name>/<version> cannot name a model whose name holds an @ or a ?, so "
            "the service could not serve it, nor a later training compare with it"
        )
    if name == "." or name.startswith(".."):  # MLflow: it "would resolve to" another path
        return (
            f"{shown(name)} is not a name MLflow's registry accepts: it cannot be '.' nor "
            "start with '..'"
        )
    if len(name) > REGISTERED_NAME_MAX:
        return (
            f"must be a name of at most {REGISTERED_NAME_MAX} characters (MLflow's limit); "
            f"got {shown(name)}"
        )
    return None


# What a name may not carry into a path segment: separators, a drive or scheme colon, and
# the characters a file: URI reads as escapes, a query or a fragment.
_NOT_IN_FOLDER = re.compile(r"[/\\:%?#]")


def artifact_folder(experiment_name: str) -> str:
    """The experiment's folder under the artifact root: its name as one path segment, each
    separator (and '%', ':', '?', '#') written as '_', and a name of dots alone ('..') with
    its dots as '_'. The name was joined as it was, so that a job's
    `config.train.experiment` of '../../../../tmp/x' made the worker write the run's model,
    plots and log outside the artifact root, wherever it could write. Plain names keep their
    folder (`var/mlartifacts/<name>`); two names that meet in one folder share it harmlessly
    (each run has its own subfolder)."""
    folder = _NOT_IN_FOLDER.sub("_", experiment_name)
    if not folder.strip("."):
        folder = folder.replace(".", "_")
    return folder


class DeletedExperimentError(ValueError):
    """The experiment named is in the store's trash: MLflow refused the run with a traceback
    ("must be in the 'active' state") after the data was read."""


def ensure_experiment(
    experiment_name: str, settings: Settings, *, description: str | None = None
) -> str:
    """Return the experiment's id, creating it with artifacts under the configured root and
    `description` (the UI's; also given to an existing experiment that has none, one made
    before experiments were described: one a person edited is left alone).

    Experiments get an explicit `artifact_location` so that artifacts land beside the SQLite
    store (`var/mlartifacts/<name>`) rather than in an `mlruns/` folder under the working
    directory, which is what MLflow picks by default for a database-backed store. With a
    tracking server and no URNN_MLFLOW_ARTIFACT_ROOT the server picks (`resolved_artifact_root`).
    """
    from mlflow.tracking import MlflowClient

    uri = settings.resolved_tracking_uri()
    with store_setup_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None and experiment.lifecycle_stage == "deleted":
            raise DeletedExperimentError(
                f"experiment {shown(experiment_name)} was deleted in the MLflow store at "
                f"{shown_uri(uri)} (it is in the trash, id {experiment.experiment_id}), which "
                "logs no run and makes no new experiment of that name: restore it (the UI's "
                f"trash, or MLFLOW_TRACKING_URI=... mlflow experiments restore --experiment-id "
                f"{experiment.experiment_id}) or give another experiment name"
            )
        if experiment is not None:
            if description is not None and NOTE_TAG not in experiment.tags:
                client.set_experiment_tag(experiment.experiment_id, NOTE_TAG, description)
            return experiment.experiment_id
        tags = {} if description is None else {NOTE_TAG: description}
        root = settings.resolved_artifact_root()
        if root is None:  # a tracking server: its own default, which its clients can all read
            return client.create_experiment(experiment_name, tags=tags)
        artifact_location = f"{root.rstrip('/')}/{artifact_folder(experiment_name)}"
        return client.create_experiment(
            experiment_name, artifact_location=artifact_location, tags=tags
        )


# An experiment's description (MLflow's tag for the UI's Description column and box). The
# experiments list showed every column but the name empty: what the runs in it are, and how
# they are named, was nowhere in the UI. A description a person has edited is left alone. No
# <angle brackets>: the runs page renders it as markdown and drops them as HTML tags.
NOTE_TAG = "mlflow.note.content"
TRAINING_EXPERIMENT_NOTE = (
    # the experiments list shows the first words as written (markdown unrendered): plain ones
    "Training runs of urnn-forecast, from urnn train and the retraining jobs (urnn worker): "
    "one run per fit, named by kind, target, look-back and horizon (urnn-OT-L336-H96; a job's "
    "by its id first, job-3f0c1a2b-urnn-OT-L96-H24). "
    "Each run's description says what it fitted and what became of its model; per-epoch "
    "metrics are on scaled windows (unitless; `best_val_loss`: the model kept), `backtest_*` in "
    "the target's units over the test span. The registered versions and their `champion` / "
    "`challenger` aliases are under Models."
)
PAPER_EXPERIMENT_NOTE = (
    "Runs of urnn benchmark paper TASK, the uRNN paper's copy or adding problem: one run per "
    "model and sequence length, named by both (urnn-T100). `train_cost` (and `cost_ratio`, over "
    "the task's no-memory baseline) per logged iteration, `eval_*` on held-out sequences at the "
    "end. Results beside the paper's: docs/paper-results.md."
)


def registry_client(uri: str) -> "MlflowClient":
    """A client of the tracking and registry store at `uri`, its tables made. MLflow creates a
    SQLite store's tables on first use, inside whatever call comes first; the service's
    workers started together on a fresh store all made that first call at once, and one
    failed its first load ("duplicate column name") and stayed not ready until the next poll.
    Here the first use happens under `store_setup_lock`."""
    from mlflow import MlflowClient

    follow_file_store(uri)
    with store_setup_lock(uri):  # a no-op but for SQLite
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # may build the tables
        if uri.startswith("sqlite:///"):
            client.search_registered_models(max_results=1)  # else the registry's first use
    return client


def follow_file_store(uri: str) -> None:
    """For a file store (MLFLOW_ALLOW_FILE_STORE): make it MLflow's process-wide store too.
    MLflow's file registry reads each model version through a client of the process-wide
    store, whatever store its own client was given: `urnn models list` and the service's
    loader made MLflow's default ./mlflow.db in the working folder. Other stores: nothing."""
    import mlflow

    if is_file_store(uri):
        mlflow.set_tracking_uri(uri)


@contextmanager
def store_setup_lock(uri: str) -> Iterator[None]:
    """For a SQLite store: one process at a time creates its tables and experiments. MLflow
    migrates a new database on first use, and two processes doing it at once (two `urnn
    train`s, or workers, started together on a fresh store) made one fail inside Alembic;
    two creating the same experiment made one fail on the name. An flock on a file beside
    the database serialises both and dies with its process. Other stores: nothing to do."""
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    with exclusive_file_lock(f"{database}.setup-lock"):
        yield


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// store URI, %-escapes decoded as SQLAlchemy decodes
    them (sqlite:////tmp/a%20b/m.db is /tmp/a b/m.db); None for any other store."""
    from urllib.parse import unquote

    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri.removeprefix("sqlite:///").split("?", 1)[0]))


def missing_store(settings: Settings) -> str | None:
    """Why a command that only reads the registry or runs (`urnn models`, `urnn backtest` of
    a models:/ or runs:/ URI) cannot go on, where the SQLite store file is not there: opening
    it would make an empty store (1 MB, MLflow's table creation logged) in a folder that is
    likely the wrong one (the default ./var/ is relative to the working folder), then say
    the model is not found as if that store were the right one. None where there is a store
    or the store is no SQLite file."""
    database = sqlite_path(settings.resolved_tracking_uri())
    if database is None or database.is_file():
        return None
    return (
        f"no MLflow store at {database} (nothing was registered there); set URNN_VAR_DIR or "
        "URNN_MLFLOW_TRACKING_URI to the store `urnn train` used"
    )


def shown_uri(uri: str) -> str:
    """`uri` for messages that may leave the host (the service's /readyz and 503s): a password
    in it (postgresql://user:secret@db/mlflow, https://user:token@host) as *** (`password_hidden`).
    The raw text when it carries none, so that the local paths and hosts an operator must check
    stay; "(unparsable)" for a netloc urllib cannot read (an unclosed '[')."""
    from urllib.parse import urlsplit

    hidden = password_hidden(uri)
    if hidden != uri:
        return hidden
    try:
        urlsplit(uri)
    except ValueError:
        return "(unparsable)"
    return uri


def _without_userinfo(uri: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class TrackingServerError(RuntimeError):
    """The configured MLflow tracking server does not answer. MLflow's own client retries a
    dead server with backoff for minutes before failing; this answers in seconds."""


HEALTH_TIMEOUT_S = 5.0


class TrackingStoreError(TrackingServerError):
    """The configured store cannot be used at all: a file store MLflow refuses, or URNN_VAR_DIR
    (home of the default store and artifacts) not a folder. A TrackingServerError, so that every
    caller that answers an unusable tracking server with one line answers this one too."""


# MLflow reads these tracking URIs as Databricks stores, not as local paths.
DATABRICKS_URIS = ("databricks", "databricks-uc", "uc")


def is_file_store(uri: str) -> bool:
    """Whether MLflow reads `uri` as its file store (file:, a plain path), as
    mlflow.tracking.registry picks a store by the URI's scheme."""
    from urllib.parse import urlparse

    if uri in DATABRICKS_URIS:
        return False
    return _local_scheme(urlparse(uri).scheme)


def _local_scheme(scheme: str) -> bool:
    """A URI scheme that names a local path: none, file:, or a Windows drive letter (C:\\)."""
    return scheme in ("", "file") or (len(scheme) == 1 and scheme.isalpha())


def check_tracking_store(
    settings: Settings, *, create: bool = True, logs_runs: bool = False, records: bool = True
) -> None:
    """The local side of the store, checked before any data is read: MLflow 3 refuses its file
    store (unless MLFLOW_ALLOW_FILE_STORE is true) only when the run is being created, after
    the data was loaded, and in a traceback; a URNN_VAR_DIR that is a file failed in mkdir.
    `create`: make URNN_VAR_DIR for the default SQLite store (SQLite will not make it).
    `logs_runs`: the command creates runs (and maybe experiments), so URNN_MLFLOW_ARTIFACT_ROOT
    is checked too; the service and `urnn models` only read, and a root this host cannot write
    to is no matter of theirs. `records`: a file store's meta.yaml records are read, and a
    damaged one refused naming it; the service (False) serves one model, which a damaged
    record of another does not stop, and says its own model's load failure in /readyz."""
    import os

    var_dir = settings.var_dir
    if settings.mlflow_tracking_uri is None or settings.mlflow_artifact_root is None:
        if var_dir.exists() and not var_dir.is_dir():
            raise TrackingStoreError(
                f"URNN_VAR_DIR={var_dir}: is a file, not a folder; point URNN_VAR_DIR at a "
                "folder (it holds the default MLflow store and artifacts)"
            )
        if create and settings.mlflow_tracking_uri is None:
            try:
                var_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise TrackingStoreError(
                    f"URNN_VAR_DIR={var_dir}: cannot create the folder "
                    f"({error.strerror or error}); point URNN_VAR_DIR at a writable folder"
                ) from None
    if logs_runs:
        _check_artifact_root(settings.mlflow_artifact_root, settings.resolved_tracking_uri())
    _check_sqlite_folder(settings)
    _check_sqlite_file(settings)
    uri = settings.resolved_tracking_uri()
    allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1")
    if records and is_file_store(uri) and allowed:
        _check_file_store_records(uri)
    if is_file_store(uri) and not allowed:
        from urllib.parse import urlparse

        folder = urlparse(uri).path if uri.startswith("file:") else uri
        raise TrackingStoreError(
            f"URNN_MLFLOW_TRACKING_URI={uri}: a file store, which MLflow no longer opens (its "
            "file backend is in maintenance mode); give a database store such as "
            f"sqlite:///{os.path.abspath(os.path.join(folder, 'mlflow.db'))} (or leave "
            "URNN_MLFLOW_TRACKING_URI unset: sqlite in URNN_VAR_DIR) or an http(s) tracking "
            "server; `mlflow migrate-filestore` moves existing runs, and "
            "MLFLOW_ALLOW_FILE_STORE=true keeps the file store"
        )


def _check_artifact_root(root: str | None, tracking_uri: str) -> None:
    """URNN_MLFLOW_ARTIFACT_ROOT is written into each experiment MLflow creates: one MLflow
    cannot write to failed only when the fitted model was logged, after the whole training,
    and left the experiment pointing there for every later run. Its scheme must be one of
    MLflow's artifact stores (plugins included), and a local folder one that can be made."""
    if not root:
        return
    from urllib.parse import urlparse

    from mlflow.store.artifact.artifact_repository_registry import (
        _artifact_repository_registry as registry,
    )

    scheme = urlparse(root).scheme
    local = _local_scheme(scheme)
    if not local and scheme not in registry._registry:
        known = ", ".join(f"{s}:" for s in sorted(registry._registry) if s)
        raise TrackingStoreError(
            f"URNN_MLFLOW_ARTIFACT_ROOT={root}: MLflow has no artifact store for "
            f"'{scheme}:'; give a local folder or one of {known}"
        )
    if scheme == "mlflow-artifacts" and urlparse(tracking_uri).scheme not in ("http", "https"):
        raise TrackingStoreError(
            f"URNN_MLFLOW_ARTIFACT_ROOT={root}: 'mlflow-artifacts:' is served by an MLflow "
            f"tracking server, and URNN_MLFLOW_TRACKING_URI={password_hidden(tracking_uri)} is "
            "none; give a local folder, or point URNN_MLFLOW_TRACKING_URI at the server"
        )
    if (package := _missing_client(scheme)) is not None:
        raise TrackingStoreError(
            f"URNN_MLFLOW_ARTIFACT_ROOT={root}: MLflow writes '{scheme}:' artifacts with the "
            f"Python package {package!r}, which is not installed here: pip install "
            f"{_CLIENT_PACKAGES[scheme][1]} (in this environment), or give a local folder"
        )
    if local:
        folder = Path(urlparse(root).path if scheme == "file" else root)
        if (problem := folder_problem(folder)) is not None:
            raise TrackingStoreError(
                f"URNN_MLFLOW_ARTIFACT_ROOT={root}: cannot be made as a folder "
                f"({problem}); give a folder this user can write to"
            )


# The module MLflow's artifact store of a scheme imports when it first writes, and the pip
# requirement that provides it: none is a dependency of this project.
_CLIENT_PACKAGES: dict[str, tuple[str, str]] = {
    "s3": ("boto3", "boto3"),
    "gs": ("google.cloud.storage", "google-cloud-storage"),
    "wasbs": ("azure.storage.blob", "azure-storage-blob azure-identity"),
    "abfss": ("azure.storage.filedatalake", "azure-storage-file-datalake azure-identity"),
    "sftp": ("pysftp", "pysftp"),
}


def _missing_client(scheme: str) -> str | None:
    """The module a cloud artifact store needs where it cannot be imported, else None. MLflow
    imports it only when the fitted model is logged: `urnn train` with an s3:// root and no
    boto3 trained to the end and then failed with ModuleNotFoundError."""
    if scheme not in _CLIENT_PACKAGES:
        return None
    module = _CLIENT_PACKAGES[scheme][0]
    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # a parent package (google, azure) is missing
        found = None
    return module if found is None else None


def _check_sqlite_folder(settings: Settings) -> None:
    """A SQLite tracking store whose folder cannot be made failed in a traceback from the
    store's setup lock."""
    uri = settings.mlflow_tracking_uri
    path = None if not uri else sqlite_path(uri)
    if uri is None or path is None or str(path) in ("", ".", ":memory:"):
        return
    if (problem := folder_problem(path.parent)) is not None:
        raise TrackingStoreError(
            f"URNN_MLFLOW_TRACKING_URI={password_hidden(uri)}: the store's folder "
            f"{path.parent} cannot be made ({problem}); give a path in a folder this user can "
            "write to"
        )


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def _check_sqlite_file(settings: Settings) -> None:
    """A SQLite store file that is no SQLite database (a damaged copy, another program's file
    named mlflow.db) stopped urnn train after the data was read, and urnn backtest, urnn demo
    and urnn benchmark paper, in a sqlalchemy 'file is not a database' traceback. An empty
    file is a new database to SQLite; one this user cannot read is left for SQLite to name."""
    path = sqlite_path(settings.resolved_tracking_uri())
    if path is None or not path.is_file():
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError:
        return
    if not head or head == SQLITE_HEADER:
        return
    uri = settings.mlflow_tracking_uri
    where = (
        f"URNN_VAR_DIR={settings.var_dir}: its MLflow store {path}"
        if uri is None
        else f"URNN_MLFLOW_TRACKING_URI={password_hidden(uri)}: the store {path}"
    )
    raise TrackingStoreError(
        f"{where} is not a SQLite database (a damaged file, or another program's); point "
        "URNN_VAR_DIR or URNN_MLFLOW_TRACKING_URI at the store `urnn train` used, or move the "
        "file away to start a new one"
    )


def _check_file_store_records(uri: str) -> None:
    """A file store (MLFLOW_ALLOW_FILE_STORE) whose records MLflow cannot read: an
    experiment's, a registered model's or a version's meta.yaml garbled, cut short or empty.
    MLflow reads them all when it looks up an experiment or a model by name, and failed in a
    yaml traceback or a bare KeyError (exit 1) that named no file, or only after the data was
    read. Each record is checked as MLflow builds it (the fields its entity requires); the
    first that fails is named, and nothing is changed."""
    from urllib.parse import urlparse

    from mlflow.entities import Experiment
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel

    root = Path(urlparse(uri).path if uri.startswith("file:") else uri)
    if not root.is_dir():
        return  # a new store: MLflow makes it
    records: list[tuple[Path, str, type[Any]]] = []
    for parent in (root, root / ".trash"):
        for folder in _subfolders(parent):
            if parent == root and folder.name in (".trash", "models"):
                continue
            records.append((folder / "meta.yaml", "an experiment", Experiment))
    for model in _subfolders(root / "models"):
        records.append((model / "meta.yaml", "a registered model", RegisteredModel))
        for version in _subfolders(model):
            if version.name.startswith("version-"):
                records.append((version / "meta.yaml", "a model version", ModelVersion))
    for path, what, entity in records:
        problem = _record_problem(path, entity)
        if entity is Experiment and problem in (MISSING, EMPTY):
            continue  # MLflow skips such a folder with a warning (artifacts of a SQLite store)
        if problem is not None:
            raise TrackingStoreError(
                f"URNN_MLFLOW_TRACKING_URI={uri}: the file store's {path} cannot be read "
                f"({problem}): the record of {what}, damaged or cut short; restore it from "
                f"a backup, or move its folder {path.parent} out of the store"
            )


MISSING, EMPTY = "the file is missing", "empty"


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(entry for entry in folder.iterdir() if entry.is_dir())
    except OSError:  # not there (no models yet); one this user cannot list is MLflow's to say
        return []


def _record_problem(path: Path, entity: type[Any]) -> str | None:
    """Why MLflow cannot build `entity` from the meta.yaml at `path`, in a few words; None
    when it can."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return MISSING
    except (OSError, UnicodeDecodeError) as error:
        return " ".join(str(error).split())[:200]
    try:
        record = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return " ".join(str(getattr(error, "problem", None) or error).split())[:200]
    if not isinstance(record, dict):
        return EMPTY if record is None else "not a YAML mapping"
    try:
        entity.from_dictionary(record)
    except (TypeError, ValueError, KeyError) as error:
        missing = re.findall(r"'(\w+)'", str(error)) if isinstance(error, TypeError) else []
        return f"no {', '.join(missing)}" if missing else " ".join(str(error).split())[:200]
    return None


# MLflow's database stores (mlflow.utils.uri.DATABASE_ENGINES) other than SQLite, which lives
# on this host: a server there may be down or out of reach.
SERVER_DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")


def check_tracking_server(settings: Settings) -> None:
    """For an http(s) tracking URI: the server's /health must answer within a few seconds; for
    a database store on a server (PostgreSQL, MySQL, SQL Server), one connection must open in
    as long. Local stores (the default SQLite file, file: paths) need no check."""
    import urllib.error
    import urllib.request

    uri = settings.resolved_tracking_uri()
    if uri.split(":", 1)[0].split("+", 1)[0].lower() in SERVER_DATABASE_SCHEMES:
        _check_tracking_database(uri)
        return
    if not uri.startswith(("http://", "https://")):
        return
    # urllib reads user:password@ as part of the host (and fails on it); /health needs none
    url = f"{_without_userinfo(uri).rstrip('/')}/health"
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as answer:
            if answer.status == 200:
                _check_server_store(uri)
                return
            reason = f"HTTP {answer.status}"
    except urllib.error.HTTPError as error:
        reason = f"HTTP {error.code} from {url}"
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = str(getattr(error, "reason", error))
    raise TrackingServerError(
        f"the MLflow tracking server at {shown_uri(uri)} (URNN_MLFLOW_TRACKING_URI) does not "
        f"answer: {reason}; start it (mlflow server ...) or point URNN_MLFLOW_TRACKING_URI "
        "elsewhere"
    )


# One cheap read of the server's store: the registry's first model, if any.
STORE_PROBE_ENDPOINT = "/api/2.0/mlflow/registered-models/search"
STORE_PROBE_REASON_MAX = 300  # characters of the server's error said


def _check_server_store(uri: str) -> None:
    """One read through the tracking server, not retried: its /health reads no database, so
    a server up with its database down passed the health check, and MLflow's client then
    retried every 503 for about five minutes (`urnn models list` hung; the service's alias
    check held its reload lock that long, then said "Max retries exceeded"). Only a 5xx
    answer is refused: a 4xx (no permission, an endpoint a proxy hides) is the store
    answering, left to the call that follows. Sent by MLflow's own HTTP helper, so that its
    credentials and TLS settings (MLFLOW_TRACKING_TOKEN, ..._INSECURE_TLS) apply."""
    import requests
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        answer = http_request(  # type: ignore[no-untyped-call]  # untyped in MLflow
            get_default_host_creds(uri),  # type: ignore[no-untyped-call]
            STORE_PROBE_ENDPOINT,
            "GET",
            params={"max_results": 1},
            max_retries=0,
            timeout=HEALTH_TIMEOUT_S,
            raise_on_status=False,
        )
    except (requests.RequestException, OSError) as error:
        reason = str(error)
    else:
        if answer.status_code < 500:
            return
        reason = f"HTTP {answer.status_code}{_server_error_text(answer)}"
    raise TrackingServerError(
        f"the MLflow tracking server at {shown_uri(uri)} (URNN_MLFLOW_TRACKING_URI) does not "
        f"answer from its store: {reason}; its /health is up, so start its database (the "
        "server's --backend-store-uri) again, or point URNN_MLFLOW_TRACKING_URI elsewhere"
    )


def _server_error_text(answer: "requests.Response") -> str:
    """`: <the first line of MLflow's JSON error message>`, at most STORE_PROBE_REASON_MAX
    characters (SQLAlchemy's text runs on with a link), or '' where the body says none."""
    try:
        said = answer.json()
    except ValueError:  # not JSON: a proxy's page
        return ""
    message = str(said.get("message") or "") if isinstance(said, dict) else ""
    if not message:
        return ""
    first = message.strip().splitlines()[0].strip() if message.strip() else ""
    if len(first) > STORE_PROBE_REASON_MAX:
        first = first[: STORE_PROBE_REASON_MAX - 3] + "..."
    return f": {first}" if first else ""


# The keyword each database driver takes for a connection timeout in seconds (SQLAlchemy
# passes connect_args to the driver's connect() as they are; pg8000 and pymssql refused
# connect_timeout with a TypeError). A driver not listed is connected without one.
_TIMEOUT_KEYWORD = {
    "psycopg": "connect_timeout",
    "psycopg2": "connect_timeout",
    "pymysql": "connect_timeout",
    "mysqldb": "connect_timeout",
    "mysqlconnector": "connection_timeout",
    "pg8000": "timeout",
    "pymssql": "login_timeout",
    "pyodbc": "timeout",  # SQL Server's default driver: its login timeout
    "mariadbconnector": "connect_timeout",
    "psycopg2cffi": "connect_timeout",
}


def _check_tracking_database(uri: str) -> None:
    """One connection with a timeout: MLflow's SQLAlchemy store retried a server that was down
    or out of reach for minutes, printing "Operation will be retried", before any error."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    timeout = int(HEALTH_TIMEOUT_S)
    try:
        url = make_url(uri)
        keyword = _TIMEOUT_KEYWORD.get(url.get_driver_name())
        # the URI's own login timeout stands, under the driver's keyword (pymssql's timeout=
        # is its query timeout; mysqlconnector also takes connect_timeout)
        own = {keyword, "connect_timeout"} if keyword == "connection_timeout" else {keyword}
        given = keyword is None or bool(own & set(url.query))
        engine = create_engine(uri, connect_args={} if given else {keyword: timeout})
    except Exception as error:  # an unknown dialect, a missing driver, a port not a number
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        # a driver or dialect error names them; another (int() of the port) may quote the
        # URL's text, password included: its kind only
        known = isinstance(error, ArgumentError | NoSuchModuleError | ImportError)
        said = str(error) if known else f"{type(error).__name__}: a part does not read"
        raise TrackingServerError(
            f"URNN_MLFLOW_TRACKING_URI={shown_uri(uri)}: not a database URL this install can "
            f"open ({said}); PostgreSQL: "
            "postgresql+psycopg://user@host:5432/mlflow"
        ) from None
    try:
        with engine.connect():
            pass
    except Exception as error:  # the driver's own errors too, wrapped or not
        orig = getattr(error, "orig", None)
        reason = str(orig or error).strip().splitlines()[0] if str(orig or error).strip() else ""
        raise TrackingServerError(
            f"the MLflow tracking database at {shown_uri(uri)} (URNN_MLFLOW_TRACKING_URI) "
            f"does not open a connection (waited up to {timeout} s): "
            f"{reason or type(error).__name__}; start it, create the database, or point "
            "URNN_MLFLOW_TRACKING_URI elsewhere"
        ) from None
    finally:
        engine.dispose()


@contextmanager
def start_run(
    experiment_name: str,
    settings: Settings,
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    experiment_description: str | None = None,
) -> Iterator["ActiveRun"]:
    """Point MLflow at the configured store and yield an active run in `experiment_name`
    (described by `experiment_description` where it has no description yet).

    The run ends with status FINISHED, KILLED when the body is interrupted (Ctrl-C), or
    FAILED if it raises anything else.
    """
    import mlflow

    check_tracking_store(settings, logs_runs=True)  # makes var_dir for the default SQLite store
    check_tracking_server(settings)
    mlflow.set_tracking_uri(settings.resolved_tracking_uri())
    experiment_id = ensure_experiment(experiment_name, settings, description=experiment_description)
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name,
        tags={**code_version_tags(), **dict(tags or {})},
    ) as run:
        try:
            yield run
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")  # MLflow's own exit would mark it FAILED
            raise


class MlflowTracker:
    """Logs to one MLflow run; satisfies `training.paper_benchmark.Tracker`.

    The run id is explicit so that logging never depends on which run happens to be active.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def log_params(self, params: Mapping[str, object]) -> None:
        import mlflow

        mlflow.log_params(dict(params), run_id=self.run_id)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import mlflow

        mlflow.log_metrics(dict(metrics), step=step, run_id=self.run_id)
