"""One typed settings object for the whole product, read from `URNN_*` environment variables.

Built once per process (`get_settings()`), never at import time, so tests can hand a different
`Settings` to the code under test instead of mutating `os.environ`.
"""

import difflib
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self

import annotated_types
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from urnn_forecast.field_types import validator_sentence
from urnn_forecast.model_uri import MODELS_URI_FORMS, ModelUriError, parse_models_uri
from urnn_forecast.url_text import before_query, password_hidden

# `urnn serve` worker processes at most (URNN_SERVE_WORKERS and --workers): each loads the
# model.
SERVE_WORKERS_MAX = 256


class Settings(BaseSettings):
    """Operator-facing configuration; every field is `URNN_<FIELD>` in the environment."""

    # allow_inf_nan: `inf` passed every `ge` bound (URNN_BATCH_MAX_WAIT_MS=inf hung every
    # /forecast after the first batch); unknown URNN_* names are refused by get_settings()
    # protected_namespaces: pydantic-settings before 2.7 protected all of `model_`, and every
    # command warned twice that `model_uri` and `model_poll_seconds` collide with it
    model_config = SettingsConfigDict(
        env_prefix="URNN_",
        extra="ignore",
        allow_inf_nan=False,
        protected_namespaces=("settings_",),
    )

    var_dir: Path = Field(
        default=Path("var"),
        description="Folder for the embedded default's local state (SQLite files, MLflow store).",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description=(
            "MLflow tracking URI; default: a SQLite-backed store at <var_dir>/mlflow.db. An "
            "http(s) server must answer /health, then one registry read without a 5xx (a "
            "server up with its database down answers 503 to every call), and a database "
            "server store (postgresql, "
            "mysql, mssql) open one connection, within 5 s when a command starts, else it "
            "stops with that error (MLflow's client would retry for minutes). A file store "
            "(file:, a plain path), which MLflow refuses, is an error before any data is read "
            "(MLFLOW_ALLOW_FILE_STORE=true: MLflow's opt-out). MLflow's own "
            "MLFLOW_TRACKING_URI is not read: a command or service started with it naming "
            "another store says where its runs and models go instead."
        ),
    )
    mlflow_artifact_root: str | None = Field(
        default=None,
        description=(
            "Where new MLflow experiments keep artifacts. Default: with an http(s) tracking "
            "server, the server's own default (mlflow-artifacts:/ under `mlflow server "
            "--serve-artifacts`, else its --default-artifact-root), so that whoever trains and "
            "whoever serves read the same files; with a local store, <var_dir>/mlartifacts. "
            "A cloud root (s3://, gs://, wasbs://) needs its client package, which this "
            "project does not install (boto3, google-cloud-storage, azure-storage-blob): "
            "checked before any work starts."
        ),
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where models run: cuda when available under `auto`."
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description=(
            "Threads torch uses for intra-op CPU work (torch.set_num_threads), applied by the "
            "`urnn` command before training or evaluating; default None keeps torch's default "
            "(one per core). Set it on shared machines, e.g. 2 on a 2-core box shared with "
            "other jobs, so torch does not oversubscribe the CPU."
        ),
    )

    # --- the forecast service (service/, `urnn serve`) ---------------------------------------
    model_uri: str = Field(
        default="models:/urnn-forecaster@champion",
        description=(
            "The model the service serves: models:/<name>@<alias> (followed: a moved alias is "
            "picked up by the poll or POST /model/reload) or models:/<name>/<version> (pinned)."
        ),
    )
    trace_model: bool = Field(
        default=True,
        description=(
            "Run batches through a TorchScript trace of the model (one call that releases the "
            "GIL: the event loop keeps parsing requests meanwhile), checked at load to give the "
            "eager module's numbers exactly; false, or a failed check, serves the eager module."
        ),
    )
    cuda_graphs: bool = Field(
        default=True,
        description=(
            "On a GPU, replay the forward from CUDA graphs captured at load, one per batch-size "
            "bucket up to batch_max_series (one launch instead of the recurrence's hundreds), "
            "checked against the eager module; false, or a failed check, serves without them. "
            "No effect on the CPU."
        ),
    )
    startup_load_wait_seconds: float = Field(
        default=10.0,
        ge=0.0,
        le=3600.0,
        description=(
            "How long start-up waits for the first model load before the service answers "
            "anyway (/healthz 200, /readyz and /forecast 503 'the service is starting' until "
            "the load ends). A registry that hangs held every endpoint, SIGTERM included, "
            "for as long as it hung."
        ),
    )
    shutdown_drain_seconds: float = Field(
        default=0.0,
        ge=0.0,
        le=3600.0,
        description=(
            "After SIGTERM keep serving this long with /readyz answering 503, so that a load "
            "balancer takes the replica out of rotation before it stops accepting connections; "
            "then shut down gracefully. A second SIGTERM or Ctrl-C ends the drain early. 0: "
            "no drain."
        ),
    )
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            "Key that mutating endpoints require in the X-API-Key header: POST /model/reload, "
            "POST /jobs and /jobs/{id}/cancel, POST, PATCH and DELETE /schedules, POST "
            "/series/{id}/observations (and its WebSocket) and DELETE /series/{id}. "
            "Printable ASCII without spaces. Unset: those endpoints answer 403 unless env is "
            "'development'."
        ),
    )
    api_key_for_reads: bool = Field(
        default=False,
        description=(
            "Also require api_key on GET /jobs, /jobs/{id}, /schedules and /schedules/{id}: "
            "job specs and log tails name data files, MLflow runs and hosts. Off: anyone who "
            "reaches the service can read them."
        ),
    )
    env: Literal["production", "development"] = Field(
        default="production",
        description="'development' opens mutating endpoints when no api_key is set (local use).",
    )
    model_poll_seconds: float = Field(
        default=60.0,
        ge=0.0,
        le=86_400.0,
        description=(
            "How often the service re-resolves model_uri's alias; 0 disables the poll, else at "
            "least 0.1 (each poll reads the registry)."
        ),
    )
    batch_max_series: int = Field(
        default=256,
        ge=1,
        le=65_536,
        description="Most series in one batched forward pass (bounds memory and latency).",
    )
    batch_max_wait_ms: float = Field(
        default=2.0,
        ge=0.0,
        le=1000.0,
        description=(
            "How long the batcher waits for more requests after the first one arrives; requests "
            "that arrive while a batch runs join the next one without any wait. At most 1000."
        ),
    )
    queue_max_requests: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="Requests waiting for inference beyond which /forecast answers 503.",
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest request body accepted; larger ones answer 413.",
    )
    otel_telemetry: bool = Field(
        default=False,
        description=(
            "FastAPI's built-in OpenTelemetry traces, metrics and logs (for a configured "
            "OpenTelemetry provider); off by default: the service's own Prometheus metrics "
            "cover it, and FastAPI's per-request provider check costs ~20 us per request."
        ),
    )
    drift_window: int = Field(
        default=20_000,
        ge=100,
        le=10_000_000,
        description="Recent input values per column that the drift PSI is computed over.",
    )
    forecast_cache_size: int = Field(
        default=10_000,
        ge=0,
        le=10_000_000,
        description=(
            "Series ids whose recent forecasts are kept to score them once later histories "
            "reveal the actual values (realised error); 0 disables."
        ),
    )
    forecast_cache_depth: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "Forecasts kept pending per series id for realised error, spaced horizon / depth "
            "steps apart (for a client that asks more often, the next spacing above that shares "
            "no factor with the horizon, so that each lead is read at every hour of the day): 1 "
            "scores one forecast a horizon at every "
            "lead; more score more points (faster coverage readings) for that many times the "
            "memory."
        ),
    )
    adaptive_intervals: Literal["off", "rolling"] = Field(
        default="off",
        description=(
            "'rolling': POST /forecast moves each quantile's distance from the median by a "
            "multiplier per horizon step, the conformal quantile at the outermost pair's level "
            "of the last URNN_ADAPTIVE_WINDOW realised scores of that step (service/adaptive.py), "
            "so that the interval's coverage follows the data after training instead of the "
            "validation span's season. Needs URNN_FORECAST_CACHE_SIZE > 0 (the scores come from "
            "realised error; raise URNN_FORECAST_CACHE_DEPTH for more of them) and one worker. "
            "'off': the interval as trained and calibrated."
        ),
    )
    adaptive_window: int = Field(
        default=336,
        ge=20,
        le=100_000,
        description=(
            "Realised scores per horizon step that URNN_ADAPTIVE_INTERVALS=rolling takes its "
            "multiplier from. Only the forecasts the realised-error cache keeps are scored: per "
            "series one every horizon / URNN_FORECAST_CACHE_DEPTH steps (for a client asking "
            "every step, the next spacing that shares no factor with the horizon), each adding "
            "one score to every step; so the window spans window x spacing / series steps: 336 "
            "at horizon 96 is 70 days of one hourly series at depth 64 (spacing 5) and 3.7 "
            "years at depth 1 (spacing 97). Size it as series x steps to span / spacing "
            "(docs/serving.md, Rolling intervals); `urnn serve` logs the span at each swap."
        ),
    )
    adaptive_scope: Literal["version", "series"] = Field(
        default="version",
        description=(
            "What URNN_ADAPTIVE_INTERVALS=rolling keeps a window for: 'version', one for every "
            "series the served version forecasts (pooled: a mixed fleet's under-covered series "
            "lift the others' intervals too); 'series', one per series id (each series' "
            "interval follows its own scores; up to URNN_FORECAST_CACHE_SIZE ids, the least "
            "recently scored dropped first and served at 1 until scored again; memory: "
            "horizon x URNN_ADAPTIVE_WINDOW x 4 bytes an id, 25 KB at horizon 96 and 67)."
        ),
    )
    stream_max_states: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description=(
            "Streaming series (/series/{id}/observations) whose model state is kept in memory "
            "(least recently used beyond this are flushed to the database and dropped). Each "
            "costs up to about 1.125 x URNN_STREAM_TAIL_POINTS x (16 + 8 x covariates) bytes "
            "(its raw tail): 83 KiB at the default tail without covariates, 160 KiB with two."
        ),
    )
    stream_tail_points: int = Field(
        default=4096,
        ge=1,
        le=1_000_000,
        description=(
            "Raw recent points kept per streaming series in its snapshot: they verify "
            "duplicates and rebuild the state when the served model version changes."
        ),
    )
    stream_snapshot_seconds: float = Field(
        default=1.0,
        ge=0.0,
        le=3600.0,
        description=(
            "How often changed streaming states are written to the database (write-behind: "
            "assumes sticky routing by series id); 0 = write-through, each POST commits its "
            "snapshot before answering (any replica may serve any series)."
        ),
    )
    stream_max_gap: int = Field(
        default=24,
        ge=0,
        le=1_000_000,
        description=(
            "Most missing steps that gap_policy='interpolate' fills linearly in a streaming "
            "series; larger gaps answer 409."
        ),
    )
    stream_max_scaled: float = Field(
        default=1e4,
        gt=0,
        description=(
            "Largest |value| a streaming update takes once scaled, in training standard "
            "deviations from the training mean (values and covariates); beyond it 422 and the "
            "series is left unchanged: a unitary state would carry such a value for good."
        ),
    )
    stream_busy_poll_us: int = Field(
        default=200,
        ge=0,
        le=10_000,
        description=(
            "Microseconds the event loop keeps polling (instead of sleeping) after a streaming "
            "answer, so that the next update finds it awake (~25 % lower update latency, "
            "docs/streaming.md); costs up to that much CPU per answer when answers are sparse. "
            "0 = off (tight CPU quotas)."
        ),
    )
    serve_host: str = Field(default="127.0.0.1", description="`urnn serve` bind address.")
    serve_port: int = Field(default=8000, ge=1, le=65535, description="`urnn serve` port.")
    serve_workers: int = Field(
        default=1,
        ge=1,
        le=SERVE_WORKERS_MAX,
        description=(
            "`urnn serve` worker processes (uvicorn --workers); each loads the model: keep "
            "workers x URNN_TORCH_THREADS at or below the cores."
        ),
    )
    serve_access_log: bool = Field(
        default=False,
        description=(
            "`urnn serve` writes uvicorn's access log line per request (off by default, as in "
            "gunicorn: request counts and latencies by route and status are in /metrics; the "
            "line cost 0.05-0.1 ms of a 0.4-0.5 ms streaming update). Server faults are logged "
            "either way (a 500 with its traceback, a model that fails to load, a job database "
            "that cannot be read); refused requests (4xx: bad input, a wrong API key) and the "
            "503s of a full queue are in the access log only."
        ),
    )

    # --- the job database and workers (jobs/, `urnn worker`, `urnn db upgrade`) ---------------
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the job database, e.g. postgresql+psycopg://user@host/urnn; "
            "default: a SQLite file at <var_dir>/jobs.db. A SQLite file is named by its path "
            "(sqlite:////abs/path/jobs.db): in-memory databases and URI filenames (uri=true) "
            "are refused. A PostgreSQL connection that does not open in 10 s fails (the job "
            "API answers 503) unless the URL sets ?connect_timeout=N."
        ),
    )
    job_lease_seconds: float = Field(
        default=60.0,
        ge=1.0,
        le=86_400.0,
        description=(
            "How long a running job stays claimed without a heartbeat; after that another "
            "worker retries it (the worker is presumed dead)."
        ),
    )
    job_heartbeat_seconds: float = Field(
        default=5.0,
        ge=0.05,
        description=(
            "How often a worker renews its job's lease and checks for a cancel request (a "
            "cancel is honoured within about this long); at most half of job_lease_seconds, "
            "so that one late heartbeat does not hand a live job to another worker."
        ),
    )
    job_data_dirs: str | None = Field(
        default=None,
        description=(
            "Absolute folders (separated by ',') that job and schedule data files must lie in, "
            "checked after resolving links; a path outside them is 422 without saying whether it "
            "exists. Unset: any readable history file (.csv, .tsv, .txt, .parquet, ...) the "
            "service can open, and the job API's answers quote from it (its header, up to 10 "
            "series ids, a cell that does not parse): to the key holder at submission, and to "
            "anyone in a failed job's error (GET /jobs/{id}) unless api_key_for_reads is on; the "
            "service logs a warning at start. Set it wherever the key holder should not read the "
            "service's files."
        ),
    )
    job_data_check_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description=(
            "Largest data file (bytes unpacked: a .csv.gz counts decompressed, a Parquet file "
            "its uncompressed size and at least 8 bytes a cell) that POST /jobs, POST "
            "/schedules and PATCH /schedules load and split in full at submission, as the "
            "worker will, so that a spec the data cannot train (a "
            "test_series the file lacks, series too short for lookback + horizon, a timestamp "
            "that does not parse) is a 422 naming the field. A larger file gets the header "
            "check only and is accepted with a warning that the worker checks the rest. 0: "
            "header only, always."
        ),
    )
    job_max_attempts: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Claims a job gets before a lost worker (expired lease) fails it for good.",
    )
    job_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Wall time an attempt may run before its training process group is terminated "
            "(wherever it is) and the job failed. Unset: no limit."
        ),
    )
    worker_poll_seconds: float = Field(
        default=2.0,
        ge=0.01,
        le=3600.0,
        description="How long an idle worker sleeps between looks at the queue and schedules.",
    )

    @field_validator("var_dir", mode="before")
    @classmethod
    def _a_folder_name(cls, value: object) -> object:
        """An empty URNN_VAR_DIR meant the working folder (not the documented `var`) and " "
        made a folder named by a space; one that is a file failed later, in a traceback of
        whichever command first made a folder under it."""
        if isinstance(value, str) and (not value.strip() or value != value.strip()):
            raise ValueError(
                "must name a folder, without leading or trailing spaces (unset: ./var)"
            )
        path = Path(value) if isinstance(value, str) else value
        if isinstance(path, Path) and path.exists() and not path.is_dir():
            raise ValueError(
                "is a file, not a folder; point it at a folder (it holds the SQLite job "
                "database, the default MLflow store and the service's state)"
            )
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _a_lasting_database(cls, value: object) -> object:
        """An in-memory SQLite URL (`sqlite://`, `sqlite:///`, `:memory:`) is a new, empty
        database on every connection: `urnn db upgrade` said "upgraded to None" and every
        job, schedule and streaming state would vanish. Empty means unset."""
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        _one_at_sign(value)
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
        from sqlalchemy.util import asbool  # SQLite's own reading of uri=

        try:
            url = make_url(value)
        except (ArgumentError, ValueError) as error:  # ValueError: a port not a number
            said = "" if isinstance(error, ArgumentError) else f" ({error})"
            raise ValueError(
                f"is not a SQLAlchemy database URL{said}; give e.g. "
                "postgresql+psycopg://user@host:5432/urnn or sqlite:////abs/path/jobs.db "
                "(unset: a SQLite file at <var_dir>/jobs.db)"
            ) from None
        in_memory = url.database in (None, "", ":memory:") or "memory" in str(
            url.query.get("mode", "")
        )
        if url.get_backend_name() == "sqlite" and in_memory:
            raise ValueError(
                "is an in-memory SQLite database, new and empty on every connection: jobs, "
                "schedules and streaming states would not last; give a file, e.g. "
                "sqlite:////abs/path/jobs.db (unset: <var_dir>/jobs.db)"
            )
        if url.get_backend_name() == "sqlite" and asbool(url.query.get("uri", False)):
            # SQLite's URI filename (`file:/path?mode=...`): the job database's checks read
            # the database as a path, so `urnn db upgrade` made a folder named `file:` in the
            # working directory and the service answered 503 "no job database" for ever
            raise ValueError(
                "is a SQLite URI filename (uri=true), which the job database does not read; "
                "give the file's path, e.g. sqlite:////abs/path/jobs.db (unset: "
                "<var_dir>/jobs.db)"
            )
        return value

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _tracking_uri_one_at_sign(cls, value: str | None) -> str | None:
        if value is not None:
            _one_at_sign(value)
        return value

    @field_validator("model_poll_seconds")
    @classmethod
    def _off_or_a_real_interval(cls, value: float) -> float:
        if 0.0 < value < 0.1:
            raise ValueError(
                "must be 0 (no poll) or at least 0.1: each poll reads the model registry"
            )
        return value

    @model_validator(mode="after")
    def _heartbeats_inside_the_lease(self) -> Self:
        """A heartbeat as long as the lease let the lease lapse between two renewals: a
        second worker claimed the running job and trained it twice."""
        if self.job_heartbeat_seconds * 2 > self.job_lease_seconds:
            raise ValueError(
                f"URNN_JOB_HEARTBEAT_SECONDS={self.job_heartbeat_seconds:g} must be at most half "
                f"of URNN_JOB_LEASE_SECONDS={self.job_lease_seconds:g}: a lease must outlast a "
                "late heartbeat, or another worker claims the running job"
            )
        return self

    @model_validator(mode="after")
    def _adaptive_needs_scores_in_one_process(self) -> Self:
        """Rolling intervals learn from realised scores, which a cache of 0 never produces,
        and from the scores one process sees: several workers would each serve their own."""
        if self.adaptive_intervals == "off":
            return self
        if self.forecast_cache_size == 0:
            raise ValueError(
                "URNN_ADAPTIVE_INTERVALS=rolling needs URNN_FORECAST_CACHE_SIZE above 0: the "
                "multipliers come from the realised scores of cached forecasts"
            )
        if self.serve_workers > 1:
            raise ValueError(
                f"URNN_ADAPTIVE_INTERVALS=rolling needs one worker (URNN_SERVE_WORKERS="
                f"{self.serve_workers}): each worker would learn from its own share of the "
                "scores and serve a different interval for the same request"
            )
        return self

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        """`URNN_API_KEY=` (empty) means "no key", not "the empty string is the key"."""
        if value == "":
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and not all(" " < c <= "~" for c in text):
            # HTTP carries header values as bytes: the service's routes compared a key such as
            # "cl\u00e9" in different encodings, so it opened some routes and not others
            raise ValueError(
                "must be printable ASCII without spaces (letters, digits, punctuation): "
                "clients send it as an X-API-Key header"
            )
        return value

    @field_validator("model_uri")
    @classmethod
    def _followable_model_uri(cls, value: str) -> str:
        """The URI's form, checked once here (no registry is read): a malformed one let
        `urnn serve` start and answer /readyz 503 for good, and `urnn models list` list the
        default name instead."""
        try:
            parse_models_uri(value)
        except ModelUriError:
            raise ValueError(
                f"must be {MODELS_URI_FORMS}, e.g. models:/urnn-forecaster@champion "
                "(followed) or models:/urnn-forecaster/3 (pinned)"
            ) from None
        return value

    @field_validator("job_data_dirs", mode="before")
    @classmethod
    def _absolute_folders(cls, value: object) -> object:
        """Absolute folders only, checked once here: the service and each worker would resolve
        a relative or `~` entry against their own working directory or home, and a bad entry
        was found request by request (a 500)."""
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None  # empty means unset, as for URNN_API_KEY
        entries = [entry.strip() for entry in value.split(",")]
        if any(not entry for entry in entries):
            raise ValueError(f"an empty entry in {value!r}; give folders separated by ','")
        relative = [entry for entry in entries if not Path(entry).is_absolute()]
        if relative:
            raise ValueError(
                f"{', '.join(map(repr, relative))}: give absolute folders (each process would "
                "resolve a relative or '~' path against its own working directory or home)"
            )
        return ",".join(entries)

    def job_data_folders(self) -> tuple[Path, ...] | None:
        """`job_data_dirs` as resolved folders; None when jobs may read anywhere."""
        if self.job_data_dirs is None or not self.job_data_dirs.strip():
            return None
        return tuple(Path(part).resolve() for part in self.job_data_dirs.split(","))

    def resolved_tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.var_dir / 'mlflow.db').resolve()}"

    def environment(self) -> dict[str, str]:
        """These settings as `URNN_*` variables, for child processes (torchrun ranks) that build
        their own; unset fields and secrets are left out (children inherit those, if any)."""
        return {
            f"URNN_{name.upper()}": str(value)
            for name, value in self
            if value is not None and not isinstance(value, SecretStr)
        }

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'jobs.db').resolve()}"

    def resolved_artifact_root(self) -> str | None:
        """The artifact root new experiments are given; None leaves it to the tracking server.

        A tracking server knows where its artifacts live (the runbook's `mlflow server
        --serve-artifacts`): a local folder here put a worker's models on its own disk, where
        the service on another host, asking the server, found nothing to load."""
        if self.mlflow_artifact_root:
            return self.mlflow_artifact_root
        if self.resolved_tracking_uri().startswith(("http://", "https://")):
            return None
        return (self.var_dir / "mlartifacts").resolve().as_uri()


def _one_at_sign(url: str) -> None:
    """A password holding an unencoded '@' (user:p@ss@db): the driver splits at the first one
    and takes the rest of the password for the host, which then showed in messages ("failed
    to resolve host 'ss@db'"). Read as the URL's own reader reads it: urllib's netloc for
    http(s) (an '@' in the path is fine); for a database URL, the text before its query (a
    '?' before `name=`: a query may name a file holding '@'); a path (SQLite, file:) may hold
    '@' as any folder name may."""
    from urllib.parse import urlsplit

    scheme = url.split(":", 1)[0].lower()
    if "://" not in url or "sqlite" in scheme or scheme == "file":
        return
    if scheme in ("http", "https"):
        try:
            doubled = urlsplit(url).netloc.count("@") > 1
        except ValueError:
            return  # not for this check to say
    else:
        doubled = before_query(url).count("@") > 1
    if doubled:
        raise ValueError(
            "holds more than one '@' before its host: write an '@' inside the user name or "
            "password as %40 (user:p%40ss@db)"
        )


SECRET_FIELDS = frozenset({"api_key"})
URL_FIELDS = frozenset({"database_url", "mlflow_tracking_uri", "mlflow_artifact_root"})

# URNN_* variables that are not Settings fields but are read elsewhere: the recurrence's build
# (models/recurrence_cpp.py), docker-compose.yml's own variables (a user who exports them for
# compose runs `urnn` in the same shell) and the test suite's switches (URNN_TEST_*).
OTHER_URNN_VARIABLES = frozenset(
    {
        "URNN_NATIVE_BUILD",
        "URNN_VARIANT",
        "URNN_DATA_DIR",
        "URNN_SERVICE_PORT",
        "URNN_SERVICE_STOP_GRACE",
        "URNN_SERVICE_TORCH_THREADS",
        "URNN_WORKER_TORCH_THREADS",
    }
)
OTHER_URNN_PREFIXES = ("URNN_TEST_",)
# Kubernetes' service links: a Service named "urnn" (or "urnn-mlflow") puts URNN_PORT,
# URNN_SERVICE_HOST, URNN_PORT_8000_TCP_ADDR, URNN_MLFLOW_SERVICE_PORT_HTTP ... into every pod
# of its namespace (unless enableServiceLinks is false): not settings, and not typos.
KUBERNETES_SERVICE_LINK = re.compile(
    r"URNN(?:_[A-Z0-9_]+?)?_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
    r"|PORT_\d+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)"
)
# <SERVICE>_PORT itself, told from a typo of URNN_SERVE_PORT by its value: tcp://10.0.0.7:8000
KUBERNETES_PORT_LINK = re.compile(r"URNN(?:_[A-Z0-9_]+?)?_PORT")
KUBERNETES_PORT_VALUE = re.compile(r"(?:tcp|udp|sctp)://\S+:\d+")


class SettingsError(ValueError):
    """`URNN_*` variables that do not make valid settings; the message names each variable,
    the value it held and what it accepts."""


# What a yes/no setting takes (pydantic's, without case), said where pydantic says only that
# it is "unable to interpret input": URNN_SERVE_ACCESS_LOG=maybe named no value it accepts.
BOOL_ACCEPTED = "must be true or false (also 1/0, yes/no, on/off, y/n, t/f; any case)"


def _range_sentence(field: str) -> str | None:
    """ "must be from LO to HI" for a field bounded on both sides (Ge and Le), None otherwise:
    pydantic names only the bound a value crossed (URNN_SERVE_WORKERS=0: "greater than or
    equal to 1"), where `--workers 0` and the configuration table name both."""
    info = Settings.model_fields.get(field)
    if info is None:
        return None
    low = next((m.ge for m in info.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in info.metadata if isinstance(m, annotated_types.Le)), None)
    if low is None or high is None:
        return None
    return f"must be from {_bound(low)} to {_bound(high)}"


def _bound(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:g}"


def describe_settings_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        message = validator_sentence(item) or str(item["msg"])
        if item.get("type") == "bool_parsing":  # pydantic: "unable to interpret input"
            message = BOOL_ACCEPTED
        elif item.get("type") in ("greater_than_equal", "less_than_equal") and item["loc"]:
            whole = _range_sentence(str(item["loc"][0]))
            message = message if whole is None else f"{message}; it {whole}"
        if not item["loc"]:  # a check across fields: its sentence names the variables
            problems.append(message)
            continue
        field = str(item["loc"][0])
        value = item.get("input")
        secret = field in SECRET_FIELDS  # the value of a key is not for logs
        if isinstance(value, str) and field in URL_FIELDS:
            value = password_hidden(value)
        shown = f"={value!r}" if isinstance(value, str | int | float) and not secret else ""
        problems.append(f"URNN_{field.upper()}{shown}: {message}")
    return "invalid settings: " + "; ".join(problems)


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    """URNN_* variables that no setting reads, each with the setting it likely meant: a typo
    such as URNN_JOB_DATA_DIR (for ..._DIRS) was ignored without a word and left every file
    readable to job submitters. Names are matched without case, as pydantic-settings reads
    them."""
    environ = dict(os.environ) if environ is None else environ
    known = {f"URNN_{name.upper()}" for name in Settings.model_fields}
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("URNN_") or upper in known or upper in OTHER_URNN_VARIABLES:
            continue
        if upper.startswith(OTHER_URNN_PREFIXES) or KUBERNETES_SERVICE_LINK.fullmatch(upper):
            continue
        link = KUBERNETES_PORT_VALUE.fullmatch(environ[name].strip())
        if KUBERNETES_PORT_LINK.fullmatch(upper) and link:
            continue
        close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.75)
        hint = f"did you mean {close[0]}?" if close else "docs/configuration.md lists them"
        problems.append(f"{name}: no such setting ({hint})")
    return problems


def mlflow_variable_note(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> str | None:
    """A line for a user who set MLflow's own MLFLOW_TRACKING_URI, which MLflow's tools read
    and urnn does not (its setting is URNN_MLFLOW_TRACKING_URI, ARCHITECTURE.md): their runs
    and models went to another store without a word, and `mlflow ui` on theirs showed
    nothing. None when it is unset or names the store urnn uses."""
    from urnn_forecast.tracking import shown_uri

    environ = os.environ if environ is None else environ
    theirs = environ.get("MLFLOW_TRACKING_URI", "").strip()
    ours = settings.resolved_tracking_uri()
    if not theirs or theirs == ours:
        return None
    given = "set" if settings.mlflow_tracking_uri else "unset: the embedded store"
    return (
        f"MLFLOW_TRACKING_URI={shown_uri(theirs)} is set, but urnn reads "
        f"URNN_MLFLOW_TRACKING_URI ({given}): runs and models go to {shown_uri(ours)}; export "
        "URNN_MLFLOW_TRACKING_URI with the store you mean"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    unknown = unknown_variables()
    try:
        settings = Settings()
    except ValidationError as error:
        raise SettingsError("; ".join([describe_settings_error(error), *unknown])) from None
    if unknown:
        raise SettingsError("invalid settings: " + "; ".join(unknown))
    return settings
