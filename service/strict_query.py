"""Query parameters a route does not read, or repeats of one it reads once: a 422 naming the
parameter, as bodies refuse unknown fields. FastAPI ignores both: `?horzion=5` answered the
default horizon, and `?horizon=1&horizon=2` one of the two, with no word to the client.

The rules come from the app's own OpenAPI description (each operation's query parameters, and
which are arrays), so they follow the routes as they are declared; routes that read no query
that read no query are left alone when they only read (GET, HEAD, OPTIONS: a probe's
cache-busting `?_=...` on /healthz still answers); one that acts (POST, PATCH, DELETE) refuses
any query parameter, since its settings go in the body: `POST /jobs?promote=false` queued a
job that promoted, with no word to the client."""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.requests import HTTPConnection

from service.errors import ServiceInputError
from urnn_forecast.field_types import shown

# Methods that only read: a route of these that declares no query parameter lets any pass
_READS = frozenset(("GET", "HEAD", "OPTIONS"))
# Methods whose settings are in a body (a DELETE's are in its path alone)
_BODIES = frozenset(("POST", "PUT", "PATCH"))

# (path template, method) -> (the query parameters it reads, those it reads as lists)
QueryRules = dict[tuple[str, str], tuple[frozenset[str], frozenset[str]]]


def query_rules(app: FastAPI) -> QueryRules:
    rules: QueryRules | None = getattr(app.state, "query_rules", None)
    if rules is None:
        rules = {}
        for path, operations in app.openapi().get("paths", {}).items():
            for method, operation in operations.items():
                params = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
                if params:
                    rules[(path, method.upper())] = (
                        frozenset(p["name"] for p in params),
                        frozenset(
                            p["name"] for p in params if '"array"' in json.dumps(p.get("schema"))
                        ),
                    )
        app.state.query_rules = rules
    return rules


async def strict_query(request: HTTPConnection) -> None:
    """A dependency of every route, WebSocket ones too (see the module docstring; those have
    no operation in the OpenAPI description, so nothing to check)."""
    query = request.scope.get("query_string", b"")
    if not query or request.scope.get("type") != "http":
        return
    route = request.scope.get("route")
    method = str(request.scope.get("method", ""))
    key = (str(getattr(route, "path", "")), method)
    rule = query_rules(request.app).get(key)
    if rule is None:
        if method in _READS or route is None:
            return
        rule = (frozenset(), frozenset())  # an action's settings are in its body or path
    names, lists = rule
    counts = Counter(k for k, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True))
    if names:
        allowed = f"its parameters: {', '.join(sorted(names))}"
    elif method in _BODIES:
        allowed = "it takes no query parameters (its settings go in the body)"
    else:  # DELETE: it has no body to point at
        allowed = "it takes no query parameters"
    for name in counts:
        if name not in names:
            raise ServiceInputError(
                f"query parameter {shown(name)}", f"is not read by {method} {key[0]}; {allowed}"
            )
    for name, times in counts.items():
        if times > 1 and name not in lists:
            raise ServiceInputError(
                f"query parameter {shown(name)}", f"is given {times} times; give it once"
            )
