"""`urnn demo`: the product end to end on the bundled data, on one machine, in 10-25 s.

    result = run_demo(settings, DemoConfig())   # train -> backtest -> register -> serve -> forecast

1. Train a uRNN forecaster on the bundled ETTh1 file (target `OT`, the ETT 12/4/4-month split,
   train-only scaling, early stopping on val), backtest it on the test span, log everything to
   MLflow (the embedded SQLite store under `./var/` unless `URNN_MLFLOW_TRACKING_URI` says
   otherwise) and register it as `urnn-forecaster`; it becomes `champion` if it beats the
   current champion (on a first run there is none).
2. Score the daily seasonal naive forecast on the same backtest windows, so the user sees what
   the model buys.
3. Start the real forecast service (`service.main.create_app` under uvicorn, on loopback port
   8000 or a free one) on the champion, or on the demo's own version by number where the
   champion was kept, wait until it is ready, POST the last look-back of the file to
   `/forecast` and print the answer.
4. With `stay` (the default in a terminal): keep the service up, create the job database
   (`urnn db upgrade`), start the MLflow UI and a worker (`urnn worker`) as child processes,
   print what to open and a ready `curl`, and stop everything on Ctrl-C. Without a terminal
   (CI, scripts) the demo stops after step 3 unless `--stay` says otherwise.

Nothing is downloaded; everything runs on the CPU unless `URNN_DEVICE` picks a GPU.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from urnn_forecast.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

BUNDLED_ETTH1 = Path(__file__).resolve().parents[1] / "data" / "ETT-small" / "ETTh1.csv"


class DemoError(RuntimeError):
    """A demo step that did not work; the message says which and why. `urnn demo` exits 1."""


class DemoInputError(DemoError):
    """The demo's input (--data, or the bundled file it stands for) cannot be run on: bad
    input, so `urnn demo` exits 2 as every command does on it, not 1 as for a step that
    failed with good input (the service not ready, the forecast request refused)."""


def missing_data(path: Path) -> str:
    """Why the demo cannot start without `path`, and what to do. The bundled file lies in the
    repository's data/, beside the packages: an install from a wheel or an sdist (pip install
    of the project, not -e) carries the packages only, so it has none. A path that is there
    but no regular file (a folder, /dev/null) is said as such: "missing" sent users looking
    for a file they could see."""
    if path.is_dir():
        return f"--data {path}: a folder, not a file; give a copy of ETTh1.csv"
    if path != BUNDLED_ETTH1:
        if path.exists():
            return f"--data {path}: not a regular file; give a copy of ETTh1.csv"
        return f"the data file {path} is missing (--data: a copy of ETTh1.csv)"
    return (
        f"the bundled data file {path} is missing: it ships with the repository "
        "(data/ETT-small/ETTh1.csv), not with an installed package; pass --data PATH to a copy "
        "of ETTh1.csv (the repository's, or upstream: github.com/zhouhaoyi/ETDataset, "
        "ETT-small/ETTh1.csv)"
    )


@dataclass(frozen=True)
class DemoConfig:
    data: Path = BUNDLED_ETTH1
    target: str = "OT"
    lookback: int = 336
    horizon: int = 24
    max_epochs: int = 6
    backtest_step: int = 24  # one origin per day keeps the backtest quick
    registered_name: str = "urnn-forecaster"
    experiment: str = "demo"
    serve_timeout_s: float = 60.0
    stay: bool = False  # keep the stack up until Ctrl-C (step 4)
    service_port: int = 8000  # used when free, else any free port
    mlflow_ui_port: int = 5000


@dataclass
class DemoResult:
    run_id: str
    version: str | None
    promoted: bool
    reason: str
    scores: dict[str, float]
    naive_scores: dict[str, float]
    served_version: str | None = None
    forecast: dict[str, Any] = field(default_factory=dict)


def run_demo(settings: Settings, config: DemoConfig | None = None) -> DemoResult:
    from models.forecaster import ForecasterConfig
    from training.data import LoadConfig
    from training.fit import FitConfig
    from training.pipeline import TrainConfig, train_pipeline

    config = config or DemoConfig()
    if not config.data.is_file():
        raise DemoInputError(missing_data(config.data))
    history = demo_history(config)  # before anything trains or is registered
    train = TrainConfig(
        data=str(config.data),
        load=LoadConfig(target=config.target),
        model=ForecasterConfig(
            kind="urnn",
            lookback=config.lookback,
            horizon=config.horizon,
            hidden_size=64,  # the ETT benchmark's recipe, as the next three settings
            normalisation="last",
            dropout=0.3,
        ),
        fit=FitConfig(max_epochs=config.max_epochs, mse_weight=1.0, device=settings.device),
        split_method="ett",
        backtest_step=config.backtest_step,
        registered_name=config.registered_name,
        experiment=config.experiment,
        run_name="demo-urnn",
    )
    print(
        f"1/3 Training a uRNN forecaster on {config.data.name} (target {config.target}, "
        f"look-back {config.lookback} h, horizon {config.horizon} h, up to {config.max_epochs} "
        "epochs, early stopping on the validation months) ...",
        flush=True,
    )
    trained = train_pipeline(train, settings)
    naive = _naive_scores(train)
    result = DemoResult(
        run_id=trained.run_id,
        version=trained.version,
        promoted=trained.promoted,
        reason=trained.reason,
        scores=trained.scores,
        naive_scores=naive,
    )
    print(
        f"    backtest on the test months (original units, one origin per day): "
        f"MAE {trained.scores['mae']:.3f}, MASE {trained.scores['mase']:.3f}; "
        f"seasonal naive (24 h) on the same windows: MAE {naive['mae']:.3f}, "
        f"MASE {naive['mase']:.3f}"
    )
    print(
        f"2/3 Registered {config.registered_name} version {trained.version} in MLflow "
        f"(run {trained.run_id}); "
        + ("promoted to champion" if trained.promoted else "not promoted")
        + f": {trained.reason}",
        flush=True,
    )
    served_uri = demo_model_uri(config.registered_name, trained.version, trained.promoted)
    kept = (
        "" if served_uri.endswith("@champion") else " (this run's version: the champion was kept)"
    )
    print(f"3/3 Serving {served_uri}{kept} and asking it for a forecast")
    service_settings = settings.model_copy(update={"model_uri": served_uri})
    server = DemoServer(service_settings, _port_or_free(config.service_port))
    server.start(config.serve_timeout_s)
    try:
        body = request_body(config, history)
        served = _forecast(server.base, body)
    except BaseException:
        server.stop()
        raise
    result.served_version = served["model"]["version"]
    result.forecast = served["forecasts"][0]
    steps = result.forecast["timestamps"] or []
    q = result.forecast["quantiles"]
    print(
        f"    POST /forecast -> {served['model']['name']} version {result.served_version}; "
        f"next {len(result.forecast['mean'])} hours of {config.target}:"
    )
    for i in range(0, len(result.forecast["mean"]), 6):
        stamp = steps[i] if steps else f"step {i + 1}"
        print(
            f"      {stamp}: {result.forecast['mean'][i]:7.2f}  "
            f"(80 % interval {q['0.1'][i]:.2f} .. {q['0.9'][i]:.2f})"
        )
    if not config.stay:
        server.stop()
        return result
    try:
        _stay_up(service_settings, server, config, body)
    finally:
        server.stop()
    return result


def demo_model_uri(name: str, version: str | None, promoted: bool) -> str:
    """What the demo serves: the champion when its own version became champion (or none was
    registered), else its own version by number. A registry where a champion the demo did not
    replace reads a covariate or other request fields (a user's earlier `urnn train` in the
    same folder) answered the demo's request 422, after the fit and the registration."""
    if promoted or version is None:
        return f"models:/{name}@champion"
    return f"models:/{name}/{version}"


def _naive_scores(train: Any) -> dict[str, float]:
    """The daily seasonal naive forecast on the same backtest windows as the trained model."""
    from models.forecaster import ForecasterConfig
    from training.backtest import backtest
    from training.data import load_data
    from training.pipeline import data_mase_season, overall_scores, resolve_model_config

    data = load_data(train.data, replace(train.load, min_length=train.model.lookback + 1))
    naive = resolve_model_config(
        ForecasterConfig(
            kind="seasonal_naive",
            lookback=train.model.lookback,
            horizon=train.model.horizon,
            season_length=24,
        ),
        data,
    )
    split = train.split(naive.lookback)
    season = data_mase_season(train, data, split)
    result = backtest(data, split, naive, train.fit, train.backtest_config(season.rows))
    return overall_scores(result)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_or_free(preferred: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            return _free_port()
    return preferred


class DemoServer:
    """The forecast service under uvicorn on a thread of this process."""

    def __init__(self, settings: Settings, port: int) -> None:
        import uvicorn

        from service.main import create_app

        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, name="urnn-demo-server", daemon=True)

    def start(self, timeout_s: float) -> None:
        self.thread.start()
        _wait_ready(self.base, timeout_s)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def demo_history(config: DemoConfig) -> pd.Series:
    """The demo file's target as the training loader reads it (its timestamp column found by
    name, gaps filled), named by its series id; DemoInputError unless it is one hourly series with
    the target. Checked before the fit: the demo's look-back (336 h), horizon (24 h), daily
    seasonal naive and its request's `freq: "h"` are hourly, so a 15-minute ETTm1 trained,
    registered and promoted a version, then failed on its own request (422), and a file
    without the target stopped in a traceback once it had trained."""
    from pandas.tseries.frequencies import to_offset

    from training.data import LoadConfig, load_data
    from training.validation import DataValidationError

    try:
        data = load_data(config.data, LoadConfig(target=config.target))
    except (DataValidationError, OSError) as error:
        raise DemoInputError(f"--data {config.data}: {error}") from None
    if to_offset(data.freq) != to_offset("h"):
        raise DemoInputError(
            f"--data {config.data}: the file is at {data.freq!r}, not hourly: the demo's "
            f"look-back of {config.lookback} h, horizon of {config.horizon} h and daily "
            "seasonal naive are hours (it runs on ETTh1 or ETTh2); train other data with "
            "`urnn train --data PATH --target COL`"
        )
    ((series_id, frame),) = data.series.items()  # one series: no series column is given
    return frame[config.target].rename(series_id)


def request_body(config: DemoConfig, history: pd.Series) -> dict[str, Any]:
    """A /forecast request with the last look-back of the demo file (`demo_history`)."""
    tail = history.iloc[-config.lookback :]
    return {
        "horizon": config.horizon,
        "quantiles": [0.1, 0.5, 0.9],
        "series": [
            {
                "id": str(history.name),
                "start": tail.index[0].isoformat(),
                "freq": "h",
                "values": [float(v) for v in tail],
            }
        ],
    }


def _forecast(base: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}/forecast",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise DemoError(f"POST /forecast answered {error.code}: {error.read().decode()}") from None
    return answer


def _stay_up(
    settings: Settings, server: DemoServer, config: DemoConfig, body: dict[str, Any]
) -> None:
    """Job database, MLflow UI and a worker as child processes; wait for Ctrl-C; stop them."""
    env = {**os.environ, **settings.environment()}
    urnn = [sys.executable, "-m", "urnn_forecast.cli"]
    upgrade = subprocess.run([*urnn, "db", "upgrade"], env=env, capture_output=True, text=True)
    if upgrade.returncode != 0:
        raise DemoError(f"urnn db upgrade failed: {upgrade.stderr.strip()[-2000:]}")
    ui_command, ui_url = _mlflow_ui(settings.resolved_tracking_uri(), config.mlflow_ui_port)
    log_dir = settings.var_dir / "demo-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    names: list[str] = []

    def stop_on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # `kill`, systemd and terminals closing stop the demo like Ctrl-C

    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    # A shell starting the demo in the background leaves SIGINT ignored; Ctrl-C must stop it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        ui = [] if ui_command is None else [("mlflow-ui", ui_command)]
        for name, argv in [*ui, ("worker", [*urnn, "worker"])]:
            log = (log_dir / f"{name}.log").open("wb")
            names.append(name)
            child_env = env
            if name == "mlflow-ui":  # MLflow 3's job runner: ~15 processes, 2.4 GB, for nothing
                child_env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env}
            children.append(
                subprocess.Popen(
                    argv,
                    env=child_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        body_file = settings.var_dir / "demo-request.json"
        body_file.write_text(json.dumps(body))
        print(
            f"\nThe stack is up (logs in {log_dir}); Ctrl-C stops everything.\n"
            f"  forecast service  {server.base}/docs   (metrics: {server.base}/metrics)\n"
            f"  MLflow UI         {ui_url}\n"
            f"  worker            runs jobs queued with POST {server.base}/jobs "
            "(needs URNN_API_KEY; docs/jobs.md)\n"
            f"  try:  curl -s {server.base}/forecast -H 'Content-Type: application/json' "
            f"-d @{body_file}",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        dead = [n for n, c in zip(names, children, strict=True) if c.poll() is not None]
        raise DemoError(f"a demo process stopped on its own ({dead}); see {log_dir}")
    except KeyboardInterrupt:
        print("\nstopping the demo stack ...", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)


def _mlflow_ui(uri: str, port: int) -> tuple[list[str] | None, str]:
    """The command of the stack's MLflow UI (None: none to start) and its address. A store
    (the SQLite file, a database) gets `mlflow ui` on `port`, or a free one. A tracking server
    (http, https) is its own UI: `mlflow ui --backend-store-uri http://...` is refused at once
    (MLflow keeps no model registry on an http store), so the banner named a UI nobody
    served and the child's exit stopped the whole stack. Shown without its password."""
    from urnn_forecast.tracking import shown_uri

    if uri.startswith(("http://", "https://")):
        return None, shown_uri(uri)
    port = _port_or_free(port)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    return command, f"http://127.0.0.1:{port}"


def _wait_ready(base: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            last = f"{error.code} {error.read().decode()}"
        except OSError as error:
            last = str(error)
        time.sleep(0.2)
    raise DemoError(f"the service did not become ready within {timeout_s:.0f} s: {last}")
