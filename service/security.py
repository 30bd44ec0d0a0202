"""API-key guard of the mutating endpoints (`service.errors.GUARDED` lists them), and of the
job and schedule reads when URNN_API_KEY_FOR_READS is on (`service.errors.GUARDED_READS`).

The key comes in the X-API-Key header and is compared with URNN_API_KEY in constant time
(`hmac.compare_digest`): 401 when missing or wrong. With no key configured the endpoints are
closed (403, saying how to open them) unless URNN_ENV=development; the lifespan logs which.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from service.errors import ApiKeyError
from service.state import StateDep
from urnn_forecast.field_types import shown

API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="The value of URNN_API_KEY; required by endpoints that change the service.",
)


# The details of the guard's 403 and 401; WS /series/stream refuses its handshake with the same.
NO_KEY_CONFIGURED = (
    "this endpoint is disabled because no API key is configured: set URNN_API_KEY "
    "(or URNN_ENV=development for local use without a key)"
)
MISSING_OR_WRONG_KEY = "missing or wrong X-API-Key header"


def require_api_key(
    request: Request,
    state: StateDep,
    key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
) -> None:
    configured = state.settings.api_key
    if configured is None:
        if state.settings.env == "development":
            refuse_other_origins(request)
            return
        raise ApiKeyError(NO_KEY_CONFIGURED, status_code=403)
    expected = configured.get_secret_value().encode()
    if key is None or not hmac.compare_digest(key.encode(), expected):
        raise ApiKeyError(MISSING_OR_WRONG_KEY, status_code=401)


def carries_api_key(request: Request) -> bool:
    """Whether `request` carries the configured API key in X-API-Key: such a caller is the
    operator, and is answered the whole reason a model does not load (GET /model, /readyz,
    the 503s), where anyone else is told it without the store's paths and hosts."""
    app = request.scope.get("app")  # none in a scope built by hand
    state = None if app is None else getattr(app.state, "service", None)
    configured = None if state is None else state.settings.api_key
    key = request.headers.get("x-api-key")
    if configured is None or key is None:
        return False
    return hmac.compare_digest(key.encode(), configured.get_secret_value().encode())


def require_api_key_for_reads(
    request: Request,
    state: StateDep,
    key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
) -> None:
    """The same check on a read endpoint, when URNN_API_KEY_FOR_READS asks for it."""
    if state.settings.api_key_for_reads:
        require_api_key(request, state, key)


def refuse_other_origins(request: Request) -> None:
    """With no key (URNN_ENV=development), a guarded request sent by a page of another site:
    a form's POST to /model/reload?force=true or /jobs/{id}/cancel takes no body, so the
    browser sends it without a preflight, and without a key nothing else stops it."""
    headers = {name: value for name, value in reversed(request.scope["headers"])}
    if same_origin(headers):
        return
    origin = headers.get(b"origin", b"").decode("latin-1")
    host = headers.get(b"host", b"").decode("latin-1").strip()[:100]  # echoed: shortened
    own = f"'http://{host}' or 'https://{host}'" if host else "none (no Host header)"
    raise ApiKeyError(
        f"header 'Origin': {shown(origin)} is a page of another origin; with no URNN_API_KEY "
        "configured (URNN_ENV=development) this endpoint takes requests with no Origin header "
        f"(a client that is not a browser) or with this service's own origin, {own}; set "
        "URNN_API_KEY and send it as X-API-Key otherwise",
        status_code=403,
    )


def same_origin(headers: dict[bytes, bytes]) -> bool:
    """Whether a handshake comes from no browser page (no Origin header) or from a page of this
    service's own origin (its host and port are the Host header's). Checked where no key is
    configured (URNN_ENV=development): a browser sends no preflight for a WebSocket, and a
    page cannot set X-API-Key on one, so without a key any site the user opened could
    otherwise connect to the local service and write its streaming series."""
    origin = headers.get(b"origin")
    if origin is None:
        return True
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    try:
        parts = urlsplit(origin.decode("latin-1").strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host


# For `dependencies=[ApiKeyDep]` on a route: the check runs, the value is not needed.
ApiKeyDep = Depends(require_api_key)
ReadKeyDep = Depends(require_api_key_for_reads)


# Marks a read's OpenAPI operation as guarded by ReadKeyDep (`openapi_extra=READ_GUARD`), so
# that `open_reads_in_schema` finds it in the schema itself, whatever the routers' nesting.
READ_GUARD_MARK = "x-urnn-read-guard"
READ_GUARD: dict[str, Any] = {READ_GUARD_MARK: True}


def open_reads_in_schema(schema: dict[str, Any], *, reads_need_key: bool) -> None:
    """With URNN_API_KEY_FOR_READS off, the guarded reads take no key: their OpenAPI entries
    must not ask for X-API-Key nor list the 401/403 they cannot answer (a generated client
    would otherwise send the key, or refuse to call without one)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or not operation.pop(READ_GUARD_MARK, False):
                continue
            if reads_need_key:
                continue
            operation.pop("security", None)
            for status in ("401", "403"):
                operation.get("responses", {}).pop(status, None)
