"""A route class whose JSON bodies are parsed by pydantic-core's Rust parser (jiter).

FastAPI reads a JSON body with `await request.json()` (the standard library's json.loads), then
validates the objects. For /forecast bodies (thousands of floats) json.loads is the largest
single cost of a request; pydantic_core.from_json builds the same Python objects about twice
as fast, and still reads the NaN/Infinity tokens that json.loads reads, so validation can
reject them with a clear 422. Everything else (typed body, OpenAPI, validation errors) stays
FastAPI's own: this is its documented "custom Request and APIRoute" extension point.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from service.json_block import (
    KEYS_CHECKED,
    RepeatedKeyError,
    forecast_repeated_key,
    json_document,
    repeated_observations_key,
)


class FastJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body, allow_inf_nan=True)
            except ValueError as error:  # FastAPI turns JSONDecodeError into a 422
                raise json.JSONDecodeError(str(error), body.decode("utf-8", "replace"), 0) from None
            if not self.scope.get(KEYS_CHECKED):  # a +json media type: the fast path's check
                repeated = forecast_repeated_key(body, json_document(body))
                if isinstance(repeated, RepeatedKeyError):  # FastAPI passes an HTTPException on
                    raise HTTPException(status_code=422, detail=str(repeated))
        return self._json


class _RequestClassRoute(APIRoute):
    """An APIRoute whose handler reads the request as `request_class` (FastAPI's documented
    custom Request and APIRoute extension point)."""

    request_class: type[Request] = Request

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        request_class = self.request_class

        async def route(request: Request) -> Response:
            return await handler(request_class(request.scope, request.receive))

        return route


class FastJSONRoute(_RequestClassRoute):
    request_class = FastJSONRequest


class ObservationsJSONRequest(Request):
    """The body read as Starlette reads it (the standard library's json.loads, whose 422s the
    observations route keeps), then refused when it gives a key twice, as the fast path
    (`service.fast_routes`) refuses it: a +json media type, or a body it left to the route."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            data = await super().json()
            if not self.scope.get(KEYS_CHECKED):
                repeated = repeated_observations_key(await self.body(), data)
                if repeated is not None:  # an HTTPException: FastAPI passes it on as it is
                    raise HTTPException(status_code=422, detail=str(repeated))
        return self._json


class ObservationsJSONRoute(_RequestClassRoute):
    request_class = ObservationsJSONRequest
