"""A temporary MLflow store with a tiny trained forecaster, shared by the service tests.

`registry` trains once per session (lookback 48, horizon 12, hidden 8, one short epoch: the
same recipe as tests/training/test_registry.py) and registers it as `urnn-forecaster`
(champion). Tests that move aliases register their own versions under their own names with
`registry.register(...)` (an untrained model with the same data schema: quick), so no test sees
another's registry changes. MLflow's process-global tracking URI is set only while logging and
put back afterwards; the service itself reads the store through explicit URIs.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest

from models.forecaster import ForecasterConfig, build_forecaster, n_calendar_features
from service.main import create_app
from tests.models.test_forecaster_contract import corrupt_weights
from tests.training.synthetic import seasonal_frame
from tests.training.test_registry import HORIZON, LOOKBACK, tiny_config
from training.mlflow_model import EXTRA, input_example
from training.registry import CHAMPION, log_forecaster
from urnn_forecast.settings import Settings

with warnings.catch_warnings():
    # Starlette asks for `httpx2` here; httpx still works and is what FastAPI documents.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NAME = "urnn-forecaster"
API_KEY = "test-key"
ROWS = 600


@dataclass
class Registry:
    """The shared store: its settings, the training frame, and a way to add versions."""

    settings: Settings
    frame: pd.DataFrame  # the training data (hourly y, covariate x)
    meta: dict[str, Any]  # config.json keys beside "model" of the trained version

    def service_settings(self, **overrides: Any) -> Settings:
        """Settings for an app on this store: no poll, an API key, fast batching."""
        fields: dict[str, Any] = {
            "var_dir": self.settings.var_dir,
            "model_poll_seconds": 0.0,
            "api_key": API_KEY,
            "batch_max_wait_ms": 1.0,
            "drift_window": 200,
        }
        fields.update(overrides)
        return Settings(**fields)

    def register(
        self,
        name: str,
        *,
        seed: int = 0,
        calendar: bool = False,
        covariates: bool = True,
        corrupt: bool | str = False,
        nan_weights: bool = False,
        alias: str | None = CHAMPION,
        non_negative: bool = False,
        meta: dict[str, Any] | None = None,
        example: pd.DataFrame | None = None,
    ) -> str:
        """Register an untrained tiny forecaster (same schema) as a new version of `name`;
        `corrupt`: its weights file replaced by junk (True), by random bytes ("random"), cut
        to half its length ("truncated") or saved with a non-tensor object beside the tensors
        ("pickled"), or deleted ("removed"); `nan_weights`: a readable state dict whose
        tensors are NaN (loads, and forecasts nothing finite); `non_negative`: forecasts
        floored at 0; `meta`: config.json keys replacing the trained version's
        (`{"covariates": []}`: a model trained without any); `example`: the frame its input
        example is cut from (one dated at the `meta` frequency, where that is a calendar
        one), the training frame by default."""
        import mlflow
        import torch

        from urnn_forecast.tracking import start_run

        freq = str({**self.meta, **(meta or {})}.get("freq", "h"))
        config = ForecasterConfig(
            kind="urnn",
            lookback=LOOKBACK,
            horizon=HORIZON,
            hidden_size=8,
            segment_length=12,
            n_past_covariates=1 if covariates else 0,
            # the features of the frequency it is served at (`meta`'s "freq", "D": 4, not 6)
            n_calendar=n_calendar_features(freq) if calendar else 0,
            non_negative=non_negative,
        )
        torch.manual_seed(seed)
        model = build_forecaster(config).eval()
        frame = self.frame if example is None else example
        logged_example = input_example(frame, "y", ["x"], LOOKBACK, "pump-1")
        with pytest.MonkeyPatch.context() as patch:
            _isolate_mlflow(patch)
            with start_run("service-tests", self.settings):
                logged = log_forecaster(
                    model, {**self.meta, **(meta or {})}, logged_example, registered_name=name
                )
            assert logged.version is not None
            client = mlflow.MlflowClient()
            if alias is not None:
                client.set_registered_model_alias(name, alias, logged.version)
            if corrupt or nan_weights:
                model_id = logged.model_uri.rsplit("/", 1)[-1]
                location = mlflow.get_logged_model(model_id).artifact_location
                weights = list(Path(unquote(urlparse(location).path)).rglob("weights.pt"))
                assert weights, f"no weights.pt under {location}"
                for path in weights:
                    if corrupt == "removed":
                        path.unlink()
                        continue
                    if corrupt:
                        corrupt_weights(path, "junk" if corrupt is True else corrupt)
                        continue
                    state = torch.load(path, weights_only=True)
                    torch.save(
                        {
                            k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                            for k, v in state.items()
                        },
                        path,
                    )
        return logged.version

    def other_quantity(self, target: str = "cnt") -> dict[str, Any]:
        """`register(meta=...)` for a version forecasting `target` with no covariate (another
        forecasting contract than the trained version's 'y' with covariate 'x'): every 'y' of
        the trained config.json keys (target, scaler columns, references) renamed."""
        import json

        renamed = json.loads(json.dumps(self.meta).replace('"y"', json.dumps(target)))
        return {**renamed, "covariates": []}

    def set_alias(self, name: str, version: str, alias: str = CHAMPION) -> None:
        import mlflow

        mlflow.MlflowClient(
            tracking_uri=self.settings.resolved_tracking_uri()
        ).set_registered_model_alias(name, alias, version)


def _isolate_mlflow(patch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking._tracking_service import utils as tracking_utils

    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    patch.setattr(tracking_utils, "_tracking_uri", None)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    import json

    from training.pipeline import train_pipeline
    from training.registry import model_artifact_dir

    root = tmp_path_factory.mktemp("service-store")
    frame = seasonal_frame(ROWS)
    csv = root / "plant.csv"
    frame.to_csv(csv)
    settings = Settings(var_dir=root / "var")
    with pytest.MonkeyPatch.context() as patch:
        _isolate_mlflow(patch)
        result = train_pipeline(tiny_config(csv), settings)
        assert (result.version, result.promoted) == ("1", True)
        files = model_artifact_dir(f"models:/{NAME}/1", root / "download")
    meta = json.loads((files / "config.json").read_text())
    return Registry(settings=settings, frame=frame, meta={k: meta[k] for k in EXTRA if k in meta})


@pytest.fixture
def client_for(registry: Registry) -> Iterator[Callable[..., TestClient]]:
    """`client_for(**settings overrides)`: a started TestClient (lifespan run) on the store."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(registry.service_settings(**overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_for: Callable[..., TestClient]) -> TestClient:
    """The service on the trained champion (urnn-forecaster v1)."""
    return client_for()


def history(
    frame: pd.DataFrame, series_id: str = "pump-1", *, stop: int = ROWS, length: int = 60
) -> dict[str, Any]:
    """A /forecast series from rows [stop - length, stop) of the frame, dated by `start`."""
    tail = frame.iloc[stop - length : stop]
    return {
        "id": series_id,
        "start": tail.index[0].isoformat(),
        "freq": "h",
        "values": tail["y"].tolist(),
        "covariates": {"x": tail["x"].tolist()},
    }


def metric_value(client: TestClient, metric: str, **labels: str) -> float:
    """The value of one sample of /metrics (0 when absent), matched by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def metric_total(client: TestClient, metric: str, **labels: str) -> float:
    """The sum of the samples of /metrics matched by name and labels: a counter over the
    labels not given (the realised counters over their leads)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
        if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items())
    )


# --- streaming (kind urnn-stream): /series endpoints, /forecast's whole-history path ---------

STREAM_NAME = "urnn-stream-forecaster"


def register_streaming(
    registry: Registry,
    name: str,
    *,
    seed: int = 0,
    calendar: bool = False,
    freq: str = "h",
    covariates: bool = True,
    lookback: int = LOOKBACK,
) -> str:
    """Register an untrained streaming forecaster (lookback 48 unless `lookback`, horizon
    12, the covariate x unless not `covariates`; calendar features of `freq`, read on the
    local clock, with `calendar`) as a new version of `name` (champion), with the trained
    model's data meta (scaler...), served at `freq` (the trained model's hours by default;
    another, e.g. "D", for calendar steps)."""
    import mlflow
    import torch

    from urnn_forecast.tracking import start_run

    config = ForecasterConfig(
        kind="urnn-stream",
        lookback=lookback,
        horizon=HORIZON,
        hidden_size=8,
        segment_length=8,
        n_past_covariates=1 if covariates else 0,
        n_calendar=n_calendar_features(freq) if calendar else 0,
    )
    torch.manual_seed(seed)
    model = build_forecaster(config).eval()
    example = input_example(registry.frame, "y", ["x"], lookback, "pump-1")
    meta = {**registry.meta, "freq": freq}
    with pytest.MonkeyPatch.context() as patch:
        _isolate_mlflow(patch)
        with start_run("service-tests", registry.settings):
            logged = log_forecaster(model, meta, example, registered_name=name)
        assert logged.version is not None
        mlflow.MlflowClient().set_registered_model_alias(name, CHAMPION, logged.version)
    return logged.version


@pytest.fixture(scope="session")
def streaming_model(registry: Registry) -> str:
    """The URI of a registered streaming forecaster (version 1 of STREAM_NAME, champion)."""
    register_streaming(registry, STREAM_NAME)
    return f"models:/{STREAM_NAME}@{CHAMPION}"


@pytest.fixture
def stream_db(tmp_path: Path) -> str:
    """A SQLite job database in tmp_path, upgraded to head (the snapshot table included)."""
    from jobs.db import upgrade

    url = f"sqlite:///{tmp_path / 'stream.db'}"
    upgrade(url)
    return url


@pytest.fixture
def stream_client_for(
    client_for: Callable[..., TestClient], streaming_model: str, stream_db: str
) -> Callable[..., TestClient]:
    """`stream_client_for(**overrides)`: a started app serving the streaming model on stream_db."""

    def make(**overrides: Any) -> TestClient:
        fields: dict[str, Any] = {"model_uri": streaming_model, "database_url": stream_db}
        fields.update(overrides)
        return client_for(**fields)

    return make


class HeldLoader:
    """The registry, with `resolve` held until `release` is set: a registry that hangs, or a
    model that takes long to load."""

    def __init__(self, settings: Settings) -> None:
        from service.loader import MlflowLoader

        self.inner = MlflowLoader.from_settings(settings)
        self.release = threading.Event()

    def resolve(self, uri: str) -> Any:
        self.release.wait(timeout=60)
        return self.inner.resolve(uri)

    def load(self, ref: Any) -> Any:
        return self.inner.load(ref)
