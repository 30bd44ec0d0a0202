"""API-key guard of the mutating endpoints (`service.errors.GUARDED` lists them), and of the
job and schedule reads when URNN_API_KEY_FOR_READS is on (`service.errors.GUARDED_READS`).

The key comes in the X-API-Key header and is compared with URNN_API_KEY in constant time
(`hmac.compare_digest`): 401 when missing or wrong. With no key configured the endpoints are
closed (403, saying how to open them) unless URNN_ENV=development; the lifespan logs which.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader

from service.errors import ApiKeyError
from service.state import StateDep

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
    state: StateDep, key: Annotated[str | None, Security(API_KEY_HEADER)] = None
) -> None:
    configured = state.settings.api_key
    if configured is None:
        if state.settings.env == "development":
            return
        raise ApiKeyError(NO_KEY_CONFIGURED, status_code=403)
    expected = configured.get_secret_value().encode()
    if key is None or not hmac.compare_digest(key.encode(), expected):
        raise ApiKeyError(MISSING_OR_WRONG_KEY, status_code=401)


def require_api_key_for_reads(
    state: StateDep, key: Annotated[str | None, Security(API_KEY_HEADER)] = None
) -> None:
    """The same check on a read endpoint, when URNN_API_KEY_FOR_READS asks for it."""
    if state.settings.api_key_for_reads:
        require_api_key(state, key)


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
