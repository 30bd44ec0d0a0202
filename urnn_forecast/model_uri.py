"""The form of the model URI the service follows (`URNN_MODEL_URI`): models:/<name>@<alias>
or models:/<name>/<version>.

Shared by the settings (which refuse another form at start-up, before any registry is read),
the service's loader and `urnn models`; it imports neither the service nor MLflow.
"""

from __future__ import annotations

import re

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")

MODELS_URI_FORMS = "models:/<name>@<alias> or models:/<name>/<version>"


class ModelUriError(ValueError):
    """URNN_MODEL_URI is not of a form the service can follow."""


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """models:/name@alias -> (name, alias, None); models:/name/3 -> (name, None, "3")."""
    match = _MODELS_URI.match(uri)
    if match is None:
        raise ModelUriError(f"model URI {uri!r} is not {MODELS_URI_FORMS}")
    return match["name"], match["alias"], match["version"]
