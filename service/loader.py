"""Find and build the model to serve: models:/name@alias -> concrete version -> predictor.

`ModelLoader` is the seam `create_app(loader=...)` exposes: `resolve` turns the configured URI
into a `ModelRef` (name, version, run id), `load` builds that version's `ForecastPredictor`.
`MlflowLoader` does both against the registry of `Settings.resolved_tracking_uri()`, with
explicit URIs (it neither reads nor sets MLflow's process-global URIs), downloads the
version's files into a temporary folder and reads `config.json` + `weights.pt` with
`ForecastPredictor.from_directory` (`torch.load(weights_only=True)`: no pickle runs).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

from models.forecaster import CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS, CheckpointError
from service.served import ModelRef
from training.mlflow_model import ForecastPredictor
from urnn_forecast.model_uri import ModelUriError, parse_models_uri
from urnn_forecast.settings import Settings
from urnn_forecast.tracking import shown_uri

__all__ = ["MlflowLoader", "ModelLoader", "ModelUriError", "NoModelError", "parse_models_uri"]


class NoModelError(LookupError):
    """Nothing is registered at the configured URI (yet): the service waits, not a crash."""


class ModelLoader(Protocol):
    def resolve(self, uri: str) -> ModelRef: ...

    def load(self, ref: ModelRef) -> ForecastPredictor: ...


class MlflowLoader:
    """Resolves and downloads registered versions from one MLflow tracking/registry store."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> MlflowLoader:
        return cls(settings.resolved_tracking_uri())

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from mlflow import MlflowClient

                self._client = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
            return self._client

    def resolve(self, uri: str) -> ModelRef:
        from mlflow.exceptions import MlflowException

        name, alias, version = parse_models_uri(uri)
        client = self.client()
        try:
            if alias is not None:
                found = client.get_model_version_by_alias(name, alias)
            else:
                found = client.get_model_version(name, version)
        except MlflowException as error:
            raise NoModelError(
                f"nothing is registered at {uri} in {shown_uri(self.tracking_uri)} "
                f"({error.message}); "
                "register one with `urnn train` (it becomes champion when it wins)"
            ) from None
        return ModelRef(
            name=name, version=str(found.version), run_id=str(found.run_id or ""), uri=uri
        )

    def load(self, ref: ModelRef) -> ForecastPredictor:
        import mlflow

        # The version's storage location, resolved by this client: a models:/ URI handed to
        # download_artifacts would be resolved against MLflow's process-global registry.
        location = self.client().get_model_version_download_uri(ref.name, ref.version)
        with tempfile.TemporaryDirectory(prefix="urnn-serve-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=tmp, tracking_uri=self.tracking_uri
            )
            found = sorted(Path(local).rglob(CHECKPOINT_CONFIG))
            if not found or not (found[0].parent / CHECKPOINT_WEIGHTS).exists():
                raise FileNotFoundError(
                    f"{ref.version_uri} holds no {CHECKPOINT_CONFIG} + {CHECKPOINT_WEIGHTS}"
                )
            try:
                return ForecastPredictor.from_directory(found[0].parent)
            except CheckpointError as error:  # named as stored, not as the deleted copy
                raise error.at(f"{CHECKPOINT_WEIGHTS} in {shown_uri(location)}") from None
