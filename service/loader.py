"""Find and build the model to serve: models:/name@alias -> concrete version -> predictor.

`ModelLoader` is the seam `create_app(loader=...)` exposes: `resolve` turns the configured URI
into a `ModelRef` (name, version, run id), `load` builds that version's `ForecastPredictor`.
`MlflowLoader` does both against the registry of `Settings.resolved_tracking_uri()`, with
explicit URIs (it neither reads nor sets MLflow's process-global URIs), and loads a version
from its storage location with `training.registry.load_registered`: downloaded into a
temporary folder, `config.json` + `weights.pt` read by `ForecastPredictor.from_directory`
(`torch.load(weights_only=True)`: no pickle runs).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from service.served import ModelRef
from training.mlflow_model import ForecastPredictor
from training.registry import first_few, load_registered, names_nothing, registered_version
from urnn_forecast.model_uri import parse_models_uri
from urnn_forecast.settings import Settings
from urnn_forecast.tracking import registry_client, shown_uri

__all__ = ["MlflowLoader", "ModelLoader", "NoModelError"]


class NoModelError(LookupError):
    """Nothing is registered at the configured URI (yet): the service waits, not a crash.
    The message names the store (for the log and the operator); `public` says the same
    without it, for the answers anyone may read (/readyz, the 503s)."""

    def __init__(self, message: str, *, public: str | None = None) -> None:
        super().__init__(message)
        self.public = message if public is None else public


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
                self._client = registry_client(self.tracking_uri)
            return self._client

    def resolve(self, uri: str) -> ModelRef:
        from mlflow.exceptions import MlflowException

        name, alias, version = parse_models_uri(uri)
        client = self.client()
        try:
            found = registered_version(client, name, alias, version)
        except MlflowException as error:
            if not names_nothing(error):  # the registry failing (its database down, a 500,
                raise  # no permission) is a failed load, not "nothing registered yet"
            hint = _what_to_do(client, name, alias, version)
            missing = (
                f"no version of {name} has alias '{alias}'"
                if alias is not None
                else f"{name} has no version {version}"
            )
            raise NoModelError(
                f"nothing is registered at {uri} in {shown_uri(self.tracking_uri)} "
                f"({error.message}); {hint}",
                public=f"nothing is registered at {uri}: {missing}; {hint}",
            ) from None
        return ModelRef(
            name=name, version=str(found.version), run_id=str(found.run_id or ""), uri=uri
        )

    def load(self, ref: ModelRef) -> ForecastPredictor:
        # The version resolved by this client, to its storage location: the files `resolve`
        # found, and what a damaged weights.pt or a missing file is named by.
        location = self.client().get_model_version_download_uri(ref.name, ref.version)
        return load_registered(location, tracking_uri=self.tracking_uri)


REGISTER_HINT = "register one with `urnn train` (it becomes champion when it wins)"


# A URI pinned to a version (models:/NAME/N) follows no alias: a new registration winning
# the champion alias changes nothing it serves.
PINNED_REGISTER_HINT = "register one with `urnn train` and pin its version in URNN_MODEL_URI"


def _what_to_do(client: Any, name: str, alias: str | None, version: str | None = None) -> str:
    """The way out of "nothing at the URI". An alias deleted (or never set) on a model that has
    versions is set again with `urnn models promote`, the runbook's fix: telling the on-call to
    train a new model sent them the long way round. A pinned version that does not exist
    (models:/NAME/99) is fixed in the URI: the versions there are listed to pin one, where
    the advice was to train a model that "becomes champion when it wins", which a pinned URI
    never reads. Any error reading the versions falls back to the general advice: this is
    only a hint."""
    fallback = REGISTER_HINT if alias is not None else PINNED_REGISTER_HINT
    from training.registry_admin import search_versions

    try:
        versions = search_versions(client, name, max_results=20)
    except Exception:  # a hint only: the error that matters is the caller's
        return fallback
    numbers = sorted((int(v.version) for v in versions), reverse=True)
    if not numbers:
        return fallback
    listed = first_few(numbers, 5)
    if alias is None:
        return (
            f"{name} has version(s) {listed} but no version {version}: pin one of them in "
            f"URNN_MODEL_URI (models:/{name}/{numbers[0]}), or follow an alias "
            f"(models:/{name}@champion); `urnn models list --name {name}` shows them"
        )
    return (
        f"{name} has version(s) {listed} but no alias '{alias}': set it with "
        f"`urnn models promote N --name {name}` (`urnn models list --name {name}` shows them), "
        "or register a new one with `urnn train`"
    )
