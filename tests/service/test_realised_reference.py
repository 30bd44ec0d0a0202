"""The backtest's realised MASE by lead (config.json's realised_reference) is exported when a
version loads, as `urnn_realised_reference_mase{model_version, lead}`, and shown by GET /model:
UrnnRealisedErrorAboveBacktest compares the served error with it. A model trained before the
key loads and serves as before, without the gauge, and says so."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.loader import MlflowLoader
from service.main import create_app
from tests.service.conftest import Registry, history

GAUGE = "urnn_realised_reference_mase"


def _gauge(client: TestClient) -> dict[tuple[str, ...], float]:
    """(sorted label pairs) -> value of every sample of the reference gauge."""
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == GAUGE:
                out[tuple(f"{k}={v}" for k, v in sorted(sample.labels.items()))] = sample.value
    return out


def test_the_reference_gauge_appears_at_load_with_version_and_lead_labels_only(
    client: TestClient, registry: Registry
) -> None:
    stored = registry.meta["realised_reference"]["mase_by_lead"]
    assert stored  # the session's model was trained by urnn train with the key
    expected = {(f"lead={lead}", "model_version=1"): value for lead, value in stored.items()}
    assert _gauge(client) == pytest.approx(expected)
    body = {"series": [history(registry.frame, "pump-7")]}
    assert client.post("/forecast", json=body).status_code == 200
    assert "pump-7" not in str(_gauge(client))  # a series id is never a label
    shown = client.get("/model").json()["realised_reference"]
    assert shown == pytest.approx(stored)


class _OldArtifactLoader:
    """The registry, serving its versions as if their config.json predated the key."""

    def __init__(self, registry: Registry) -> None:
        self.inner = MlflowLoader.from_settings(registry.settings)

    def resolve(self, uri: str) -> Any:
        return self.inner.resolve(uri)

    def load(self, ref: Any) -> Any:
        predictor = self.inner.load(ref)
        predictor.meta.pop("realised_reference", None)
        return predictor


def test_a_model_without_a_reference_serves_and_says_the_alert_is_off(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.manager"):
        app = create_app(registry.service_settings(), loader=_OldArtifactLoader(registry))
        with TestClient(app) as client:
            body = {"series": [history(registry.frame, "pump-1")]}
            assert client.post("/forecast", json=body).status_code == 200
            assert client.get("/model").json()["realised_reference"] is None
            assert _gauge(client) == {}
    said = [r.getMessage() for r in caplog.records if "realised_reference" in r.getMessage()]
    assert said and "UrnnRealisedErrorAboveBacktest stays silent" in said[0]
