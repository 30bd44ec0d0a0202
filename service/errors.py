"""Domain errors of the service and the one place that turns them into HTTP answers.

The core raises specific exceptions that carry a user-facing message; `install_handlers`
maps each to a status code with a `{"detail": ...}` body. Pydantic's own validation errors are
rewritten here too, so that every 422 names the series (index and id) and the field.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.series_ids import SERIES_ID_RULE
from urnn_forecast.field_types import NOT_UNICODE, shown, validator_sentence

logger = logging.getLogger(__name__)

# How many pydantic errors one 422 lists; the rest are counted, not shown.
MAX_LISTED_ERRORS = 5

# Where ApiKeyDep guards (said in the startup warning and the docs).
GUARDED = (
    "POST /model/reload, POST /jobs, POST /jobs/{id}/cancel, POST, PATCH and DELETE /schedules, "
    "POST /series/{id}/observations and its WebSocket, DELETE /series/{id}"
)
GUARDED_READS = "GET /jobs, /jobs/{id}, /schedules and /schedules/{id}"


# FastAPI's 400 detail for a body its JSON parser raised on with anything but a decode error
# (a RecursionError for 1,000 nested brackets): `install_handlers` answers it as a 422.
UNPARSABLE_BODY = "There was an error parsing the body"


class ServiceInputError(ValueError):
    """A request the model cannot forecast (422). `where` names the series and the field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where


class BodyTooLargeError(ValueError):
    """A body whose content, once unpacked, exceeds URNN_MAX_BODY_BYTES (413)."""


# What every 413 tells the client to do. A long look-back (4,096 values per series and more)
# meets the limit first, and "shorter series" alone did not say how short: a windowed model
# reads only the last `lookback` values of a history, and a streaming one is sent new points,
# not its whole history again.
TOO_LARGE_ADVICE = (
    "send fewer or shorter series per request: a windowed model reads only the last "
    "`lookback` values of each series (GET /model), older ones feed only the realised-error "
    "check, and a streaming model (kind urnn-stream) takes new points at "
    "POST /series/{id}/observations; or raise URNN_MAX_BODY_BYTES"
)


class UnsupportedMediaTypeError(ValueError):
    """A body sent as another type than the endpoint reads (415); the message names both."""


class ModelUnavailableError(RuntimeError):
    """No model is loaded (503); the message says why (e.g. nothing registered yet), in words
    fit for anyone who reaches the service. `detail`: the whole reason (the store's path or
    host, MLflow's own text), answered only to a request carrying the API key.
    `retry_after` (seconds) where the wait is short: the first load is still running."""

    def __init__(
        self, message: str, *, retry_after: int | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.detail = detail


class DrainingError(RuntimeError):
    """SIGTERM came and the service is draining (service.drain): /readyz answers 503."""


class QueueFullError(RuntimeError):
    """The inference queue is full (503 with Retry-After): shed load instead of queueing."""


class ReloadError(RuntimeError):
    """A reload that could not resolve or build the new version (502); the old one serves on."""


class ApiKeyError(PermissionError):
    """A mutating endpoint called without the right key (401) or with none configured (403)."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def series_where(index: int, series_id: object, field: str) -> str:
    """`series 3 ('pump-1'), field 'values'`: the prefix of every per-series message."""
    name = f" ({shown(series_id)})" if isinstance(series_id, str) and series_id else ""
    return f"series {index}{name}, field {shown(field)}"


def describe_validation_errors(
    errors: Sequence[Any], body: object, model: type[BaseModel] | None = None
) -> str:
    """Pydantic's error list as sentences that name the series index, id and field.

    `model`: the body's model, when known, so that an unknown field is answered with the
    fields the object it sits in does take (pydantic says only "Extra inputs are not
    permitted")."""
    # One problem repeated along a list (100 timestamps in one wrong form) is one sentence
    # naming its first position and counting the others, not 100 copies of one sentence.
    groups: dict[object, _Group] = {}
    unlisted = 0  # errors past MAX_LISTED_ERRORS problems: counted, not said
    for number, error in enumerate(errors):
        loc = [part for part in error.get("loc", ()) if part != "body"]
        along = len(loc) >= 4 and loc[0] == "series" and isinstance(loc[1], int)
        # the message too where the type says little: every check of the service's own
        # validators is a "value_error", whatever it found
        kind = error.get("type")
        said = error.get("msg") if kind in ("value_error", "assertion_error") else None
        key = (tuple(loc[:3]), kind, said, str(loc[3:-1])) if along else number
        if key in groups:
            groups[key].also.append("".join(f"[{shown(part)}]" for part in loc[3:]))
        elif len(groups) < MAX_LISTED_ERRORS:
            groups[key] = _Group(_sentence(error, loc, body, model))
        else:
            unlisted += 1
    sentences = [group.said() for group in groups.values()]
    if unlisted:
        sentences.append(f"and {unlisted} more error(s)")
    return "; ".join(sentences)


_LISTED_POSITIONS = 4  # of a repeated problem, the positions named after the first


@dataclass
class _Group:
    """A sentence, and the further positions of a list where the same problem recurs."""

    sentence: str
    also: list[str] = field(default_factory=list)

    def said(self) -> str:
        if not self.also:
            return self.sentence
        named = ", ".join(self.also[:_LISTED_POSITIONS])
        more = len(self.also) - _LISTED_POSITIONS
        tail = f" and {more:,} more" if more > 0 else ""
        return f"{self.sentence} (the same problem at {named}{tail})"


# A covariate's entry: what service.schemas takes there (a flag's list is true/false throughout).
FLAG_DUE = "a number (or every entry of the list true or false: a flag, read as 1 and 0)"


def _bool_in_covariate(error: Any, loc: list[Any]) -> bool:
    """A true/false among the numbers of a covariate's list (`covariates`, name, position)."""
    return (
        error.get("type") == "float_type"
        and isinstance(error.get("input"), bool)
        and len(loc) >= 3
        and loc[-3] == "covariates"
    )


def _sentence(error: Any, loc: list[Any], body: object, model: type[BaseModel] | None) -> str:
    """One pydantic error as a sentence that names the series index, id and field."""
    if error.get("type") == "extra_forbidden" and loc:
        message = _unknown_field(model, loc)
    else:  # a query's every value is text: what was sent is shown as written
        message = _message(error, text_as_written=bool(loc) and loc[0] == "query")
    if _bool_in_covariate(error, loc):
        message = f"must be {FLAG_DUE}; got {_sent(error.get('input'))}"
    if error.get("type") == "json_invalid":
        return f"the body is not valid JSON: {json_problem(body)}"
    if len(loc) == 2 and loc[0] == "series" and isinstance(loc[1], int):
        return f"series {loc[1]}: {message}"  # the item itself, not a field
    if len(loc) >= 3 and loc[0] == "series" and isinstance(loc[1], int):
        index = loc[1]
        field_name = str(loc[2])
        rest = "".join(f"[{shown(part)}]" for part in loc[3:])
        where = series_where(index, _series_id(body, index), field_name)
        return f"{where}{rest}: {message}"
    if len(loc) >= 2 and loc[0] == "query":  # GET ...?horizon=...&quantiles=...
        # named as the same fields of a body and the service's own checks name them
        name, rest = str(loc[1]), "".join(f"[{shown(part)}]" for part in loc[2:])
        hint = " (one level per parameter: ?quantiles=0.1&quantiles=0.9)"
        return f"field {shown(name)}{rest}: {message}" + (hint if name == "quantiles" else "")
    if len(loc) == 2 and loc[0] == "path" and loc[1] == "series_id":
        # the rule in words, as the WebSocket says it, not the pattern's regular expression
        return f"field 'series_id': {SERIES_ID_RULE}"
    if len(loc) >= 2 and loc[0] == "header":  # named as the client spells it
        name = "-".join(part.capitalize() for part in str(loc[1]).split("-"))
        return f"header {name!r}: {message}"
    if loc:
        # a field's name dotted (`config.model`), a position in a list from there on in
        # brackets, as the service's own checks write it (`field 'quantiles'[2]: 0.9 repeats
        # ...`): a bool among the quantiles was `field 'quantiles.0'` beside it, and one
        # among a stream's values `field 'values.1'` where POST /forecast says 'values'[1]
        first = next((n for n, part in enumerate(loc) if isinstance(part, int)), len(loc))
        name = shown(".".join(map(str, loc[:first])))
        return f"field {name}{''.join(f'[{shown(part)}]' for part in loc[first:])}: {message}"
    if error.get("type") in _OBJECT_DUE:  # the body as a whole, not a JSON object
        return f"the body: {message}"
    if error.get("type") == "missing":  # no body at all: as one of only whitespace
        return f"the body is not valid JSON: {json_problem('')}"
    return f"the body: {message} (send a JSON object)"  # the body as a whole


# Pydantic's errors for a value where a model's JSON object was due; theirs say 'a valid
# dictionary or instance of SeriesIn' (a class's name) or 'or object to extract fields from'.
_OBJECT_DUE = frozenset(("model_type", "model_attributes_type"))


# A JSON integer too large for a float (400 digits): pydantic's float_type error, whose
# "must be a number" told the client that a number was none. Written 1e400, it reads as inf.
BEYOND_FLOAT = "a finite number within float64's range (at most about 1.8e308 in size)"


def _int_beyond_float(error: Any) -> bool:
    value = error.get("input")
    return (
        error.get("type") in ("float_type", "float_parsing")
        and isinstance(value, int)
        and not isinstance(value, bool)
    )


def _message(error: Any, *, text_as_written: bool = False) -> str:
    """Pydantic's message for one error, less the 'Value error, ' it writes before the text
    of a ValueError that a validator of the service raised (service.schemas): that text is
    the service's own sentence, and the prefix a pydantic term."""
    kind = error.get("type")
    sentence = validator_sentence(error)
    if sentence is not None:
        return sentence
    if kind in _OBJECT_DUE:
        return f"must be a JSON object, not {_json_kind(error.get('input'))}"
    if kind == "missing":
        return "is required"
    if kind == "string_unicode":  # a lone UTF-16 surrogate ("\ud800"), as jobs.spec says it
        return "holds a lone UTF-16 surrogate, " + NOT_UNICODE
    sent = _sent(error.get("input"), text_as_written=text_as_written)
    if _int_beyond_float(error):
        return f"must be {BEYOND_FLOAT}; got {sent}"
    due = _DUE.get(str(kind))
    if due is not None:
        return f"must be {due}; got {sent}"
    ctx = error.get("ctx") or {}
    bound = _BOUNDS.get(str(kind))
    if bound is not None:
        word, key = bound
        return f"must be {word} {ctx.get(key)}; got {sent}"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected')}; got {sent}"
    if kind in ("too_short", "too_long"):
        word, key = ("at least", "min_length") if kind == "too_short" else ("at most", "max_length")
        return f"must hold {word} {ctx.get(key)} item(s); got {ctx.get('actual_length')}"
    if kind in ("string_too_short", "string_too_long"):
        word = "at least" if kind == "string_too_short" else "at most"
        limit = ctx.get("min_length" if kind == "string_too_short" else "max_length")
        value = error.get("input")
        got = f"{len(value):,}" if isinstance(value, str) else sent
        return f"must be {word} {limit} character(s) long; got {got}"
    return str(error.get("msg", "invalid"))


# Pydantic's bound errors ("Input should be greater than or equal to 1"): the word and the
# key of the bound in the error's context.
_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("above", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("below", "lt"),
}


# Pydantic's type errors ("Input should be a valid number") as what the field takes, followed
# by what was sent: the client sees which value of its body was refused.
_DATETIME = (
    "an ISO 8601 date-time such as '2024-03-01T00:00:00' (local wall time) or "
    "'2024-03-01T00:00:00+01:00'"
)
_DUE = {
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "int_parsing_size": "an integer below 2**63",  # 1e300: pydantic's words were its own
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "an array",
    "tuple_type": "an array",
    "dict_type": "a JSON object",
    "datetime_type": _DATETIME,
    "datetime_parsing": _DATETIME,
    "datetime_from_date_parsing": _DATETIME,
    "finite_number": "a finite number",
}


def _sent(value: object, *, text_as_written: bool = False) -> str:
    """A refused value as the client wrote it: JSON's words for null, booleans, arrays and
    objects; strings and numbers themselves (shortened when long). `text_as_written`: where
    every value is text (a query string), a string is not called one."""
    if value is None or isinstance(value, bool | list | tuple | dict):
        return _json_kind(value)
    if isinstance(value, str) and not text_as_written:
        return f"the string {shown(value)}"
    return shown(value)


def _unknown_field(model: type[BaseModel] | None, loc: Sequence[Any]) -> str:
    """Pydantic's extra_forbidden, with the fields the enclosing object takes where the
    model says which."""
    fields = _fields_at(model, loc[:-1]) if model is not None else None
    if not fields:
        return "unknown field"
    return f"unknown field; the allowed fields are {', '.join(fields)}"


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str] | None:
    """The field names (as sent: aliases) of the object at `loc` inside a `model` body, or
    None where the path does not lead to one model (a union of several, a plain value)."""
    current: Any = model
    for part in loc:
        current = _one_type(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            if not isinstance(part, str):
                return None
            found = [f for name, f in current.model_fields.items() if (f.alias or name) == part]
            if not found:
                return None
            current = found[0].annotation
            continue
        args = typing.get_args(current)
        origin = typing.get_origin(current)
        if origin in (list, tuple, set, frozenset) or (
            isinstance(origin, type) and issubclass(origin, Sequence) and origin is not str
        ):
            current = args[0] if args else None
        elif origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
            current = args[1] if len(args) == 2 else None
        else:
            return None
    current = _one_type(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return None


def _one_type(annotation: Any) -> Any:
    """`X | None` and `Annotated[X, ...]` as X; other unions as they are."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _one_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _one_type(members[0]) if len(members) == 1 else annotation
    return annotation


def body_model(request: Request) -> type[BaseModel] | None:
    """The pydantic model a FastAPI route reads its JSON body into, if it has one."""
    field = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    annotation = _one_type(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _json_kind(value: object) -> str:
    """What JSON calls a value that pydantic read where an object was due."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# pydantic-core's parser (service.routes.fast_json) refuses arrays and objects nested deeper.
JSON_MAX_DEPTH = 200
_NOT_UTF8 = "\ufffd"  # what fast_json decodes a body's bytes that are not UTF-8 to


NOT_JSON = "the body is not valid JSON: "


def arrow_labelled_json(doc: object) -> str | None:
    """What an Arrow IPC body sent as application/json to POST /forecast is, and the type to
    send it with; None for any other body. The other way round (JSON labelled as Arrow) was
    told "it looks like JSON" while this one was told only that its bytes were not UTF-8,
    or that an 'A' was unexpected. `doc`: the body as the JSON reader decoded it (bytes that
    are not UTF-8 as U+FFFD): a stream's every message begins with FF FF FF FF."""
    if not isinstance(doc, str):
        return None
    if doc.startswith("ARROW1"):
        kind = "an Arrow IPC file"
        media = "application/vnd.apache.arrow.file"
    elif doc.startswith(_NOT_UTF8 * 4):
        kind = "an Arrow IPC stream (it begins with the bytes FF FF FF FF)"
        media = "application/vnd.apache.arrow.stream"
    else:
        return None
    return f"it looks like {kind}; send it with Content-Type: {media}"


# A \uD800-\uDFFF escape that is not half of a pair (a high one before a low one), after an
# even run of backslashes (an odd one escapes the backslash itself: `\\ud800` is text). The
# standard library's parser takes such escapes, so it gives no position for them.
_LONE_SURROGATE = re.compile(
    r"(?<!\\)((?:\\\\)*)"
    r"(\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)


def json_problem(doc: object) -> str:
    """Where and how `doc`, a body that did not parse, stops being JSON, in the service's
    words: the parsers' own name their states ('EOF while parsing a value', 'expected ident',
    'Expecting property name enclosed in double quotes'). The position is the standard
    library's parser's, found again on this error path only (bodies that parse never pay
    for it); what that parser accepts and pydantic-core's does not is told apart after."""
    if not isinstance(doc, str) or not doc.strip():
        return "it is empty; send one JSON object"
    try:
        json.loads(doc)
    except json.JSONDecodeError as error:
        # "Extra data": a whole value, then more; what follows is unexpected, not cut short
        cut_short = error.pos >= len(doc.rstrip()) or _ends_inside_a_token(doc, error.pos)
        if error.msg != "Extra data" and cut_short:
            return "it ends before its JSON value is complete (cut short?)"
        if doc[error.pos] == _NOT_UTF8:
            return (
                f"line {error.lineno}, column {error.colno} holds bytes that are not UTF-8 "
                "text; JSON is UTF-8"
            )
        return (
            f"unexpected {shown(doc[error.pos])} at line {error.lineno}, column {error.colno}; "
            "send one JSON object"
        )
    except RecursionError:
        return "it is nested too deeply"
    except ValueError:  # not a JSONDecodeError: an integer longer than Python converts
        return _LONG_INTEGER
    else:
        if _NOT_UTF8 in doc:
            return "it holds bytes that are not UTF-8 text; JSON is UTF-8"
        if _nesting(doc) > JSON_MAX_DEPTH:
            return f"it nests arrays or objects more than {JSON_MAX_DEPTH} deep"
        if (lone := _LONE_SURROGATE.search(doc)) is not None:
            at = lone.start(2)
            line = doc.count("\n", 0, at) + 1
            column = at - doc.rfind("\n", 0, at)
            return (
                f"line {line}, column {column} holds the escape {lone.group(2)}, a lone UTF-16 "
                "surrogate that names no character; send the character itself, or both halves "
                "of its surrogate pair"
            )
        return "it holds an escape that names no character, or another form JSON does not allow"


def unparsable_body(cause: BaseException | None) -> str:
    """What FastAPI's 400 'There was an error parsing the body' was about, told by the
    exception its parser (json.loads) raised: the body's own problem, as `json_problem`
    says it for /forecast."""
    if isinstance(cause, RecursionError):
        return "it is nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "it holds bytes that are not UTF-8 text; JSON is UTF-8"
    if isinstance(cause, ValueError):  # int(): more digits than Python converts
        return _LONG_INTEGER
    return "it cannot be parsed"


_LONG_INTEGER = (
    f"number out of range: it holds an integer of more than {sys.get_int_max_str_digits()} "
    "digits, more than any value the service reads"
)
# A number, string or literal the document ends in the middle of (what a JSON parser reports
# at the token's first character, or where it stopped reading a number: '1e').
_NUMBER_PREFIX = re.compile(r"-?(?:0|[1-9][0-9]*)?(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?")
_NUMBER_CHARS = frozenset("0123456789+-.eE")


def _ends_inside_a_token(doc: str, pos: int) -> bool:
    """Whether the token at `pos`, where the standard parser stopped, runs to the document's
    end unfinished: a string never closed, a number or a true/false/null cut off."""
    rest = doc[pos:].rstrip()
    if rest.startswith('"'):
        escaped = False
        for char in rest[1:]:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                return False
        return True
    if rest and any(word.startswith(rest) for word in ("true", "false", "null")):
        return True
    start = pos
    while start > 0 and doc[start - 1] in _NUMBER_CHARS:
        start -= 1
    token = doc[start:].rstrip()
    return bool(token) and _NUMBER_PREFIX.fullmatch(token) is not None


def _nesting(doc: str) -> int:
    """How deep `doc`'s brackets nest, outside strings (a JSON text the standard parser read)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in doc:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _series_id(body: object, index: int) -> object:
    if isinstance(body, dict):
        series = body.get("series")
        if isinstance(series, list) and 0 <= index < len(series):
            item = series[index]
            if isinstance(item, dict):
                return item.get("id")
    return None


def plain_errors_in_schema(schema: dict[str, Any]) -> None:
    """Every 422 the service sends is `{"detail": "<sentence>"}` (service.errors), also for a
    bad query or path parameter, where FastAPI's schema lists its own validation-error list
    (`HTTPValidationError`, `detail` an array): a generated client would fail to read it."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "422" not in operation.get("responses", {}):
                continue
            answer = operation["responses"]["422"]
            body = answer.get("content", {}).get("application/json", {})
            if body.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                body["schema"] = {"$ref": "#/components/schemas/ErrorResponse"}
                answer["description"] = "A bad parameter or body; the detail names it."
    components = schema.get("components", {}).get("schemas", {})
    if "ErrorResponse" in components and "HTTPValidationError" not in str(schema.get("paths")):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)


BODY_TOO_LARGE = "A body above URNN_MAX_BODY_BYTES."
BODY_NOT_READ = (
    "A body the endpoint does not read: a Content-Type other than the one it takes, or "
    "compressed (a Content-Encoding other than identity)."
)


def body_answers_in_schema(schema: dict[str, Any]) -> None:
    """Every operation whose method carries a body can answer 413 (a body above
    URNN_MAX_BODY_BYTES) and 415 (a Content-Encoding other than identity; for a route that
    reads a body, another Content-Type): `service.middleware.BodySizeLimitMiddleware` and the
    fast path answer them before any route runs, so the schema lists them on each such
    operation (POST /model/reload listed neither, POST /series/{id}/observations no 415; a
    client generated from the schema met them as undocumented statuses)."""
    from service.middleware import BODYLESS_METHODS

    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or method.upper() in BODYLESS_METHODS:
                continue
            answers = operation.setdefault("responses", {})
            for status, description in (("413", BODY_TOO_LARGE), ("415", BODY_NOT_READ)):
                if status not in answers:
                    answers[status] = {
                        "description": description,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                            }
                        },
                    }


def no_endpoint(request: Request) -> str:
    """Starlette's bare 'Not Found' for a path no route matches, said with the path, and
    for a series path with more segments than one id, the rule ids follow: an id sent with
    its '/' percent-encoded (%2F) arrives decoded and splits the path."""
    detail = f"no endpoint at {request.method} {_path(request)}"
    parts = request.url.path.split("/")
    if len(parts) > 3 and parts[1] == "series" and parts[2] != "stream":
        detail += f"; field 'series_id': {SERIES_ID_RULE} (a %2F in the URL is read as '/')"
    return f"{detail}; the endpoints are listed at /docs"


def _path(request: Request) -> str:
    """The request's path for a message, its start only when long."""
    path = request.url.path
    return path if len(path) <= 120 else f"{path[:100]}... ({len(path):,} characters)"


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method some route takes at this path, as an Allow header writes them. Starlette
    answers a 405 with the methods of the first route whose path matched: `PUT /jobs` said
    'allow: POST', though GET /jobs exists too. Each method is matched as a request would be
    (FastAPI's included routers hold their routes out of reach)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHOD_ORDER
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    )


# Set on an exception `install_handlers`' catch-all logged: the server's log of it is dropped.
_LOGGED = "_urnn_logged"


def mark_logged(exc: BaseException) -> None:
    """Mark `exc` as logged with its request (method and path) by the catch-all handler."""
    with contextlib.suppress(AttributeError):  # a type that takes no attributes: logged twice
        setattr(exc, _LOGGED, True)


class AlreadyLogged(logging.Filter):
    """Drops the server's "Exception in ASGI application" record of an exception the app's
    catch-all handler already logged. Starlette's ServerErrorMiddleware (and the fast path,
    as it) re-raises after the handler answered 500, so that the server logs it: every 500
    of `urnn serve` logged two ~60-line tracebacks of one error, the second without the
    request. Installed on uvicorn's error logger; other records pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not getattr(error, _LOGGED, False)


def install_handlers(app: FastAPI) -> None:
    """Every error the service knows becomes `{"detail": <sentence>}` with its status code."""

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = describe_validation_errors(exc.errors(), exc.body, body_model(request))
        if request.url.path.rstrip("/") == "/forecast" and detail.startswith(NOT_JSON):
            detail = f"{NOT_JSON}{arrow_labelled_json(exc.body) or detail[len(NOT_JSON) :]}"
        return JSONResponse(status_code=422, content={"detail": detail})

    async def on_input(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    async def on_too_large(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            status_code=413, content={"detail": str(exc)}, headers={"Connection": "close"}
        )

    async def on_media_type(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=415, content={"detail": str(exc)})

    async def on_unavailable(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ModelUnavailableError)
        wait = exc.retry_after
        from service.security import carries_api_key  # it imports this module

        # the store's path, host and MLflow's text to the operator only: /readyz and the
        # 503s answer anyone, and named sqlite:////var/lib/urnn/mlflow.db to them
        reason = exc.detail if exc.detail and carries_api_key(request) else str(exc)
        return JSONResponse(
            status_code=503,
            content={"detail": f"no model is loaded: {reason}"},
            headers=None if wait is None else {"Retry-After": str(wait)},
        )

    async def on_draining(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    async def on_queue_full(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "1"}
        )

    async def on_reload(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=502, content={"detail": str(exc)})

    async def on_api_key(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiKeyError)
        headers = {"WWW-Authenticate": "ApiKey"} if exc.status_code == 401 else None
        return JSONResponse(
            status_code=exc.status_code, content={"detail": str(exc)}, headers=headers
        )

    async def on_http(request: Request, exc: Exception) -> Any:
        """FastAPI's own HTTP errors, as it answers them, except the 400 it gives a JSON body
        its parser gave up on (nested too deeply for the standard parser): malformed JSON is
        a 422 on every route, as /forecast answers it."""
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == UNPARSABLE_BODY:
            return JSONResponse(
                status_code=422,
                content={"detail": "the body is not valid JSON: "
                         + unparsable_body(exc.__cause__)},
            )  # fmt: skip
        if exc.status_code == 404 and exc.detail == "Not Found" and "route" not in request.scope:
            return JSONResponse(status_code=404, content={"detail": no_endpoint(request)})
        allow = (exc.headers or {}).get("Allow")
        if exc.status_code == 405 and exc.detail == "Method Not Allowed" and allow:
            allow = allowed_methods(request) or allow
            detail = f"method {request.method} is not allowed at {_path(request)}; allowed: {allow}"
            headers = {**(exc.headers or {}), "Allow": allow}
            return JSONResponse(status_code=405, content={"detail": detail}, headers=headers)
        return await http_exception_handler(request, exc)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: log the traceback, answer without leaking internals.
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        mark_logged(exc)
        # Connection: close, said: the server drops the connection after an unhandled error,
        # and a client that reused it would see its next request reset.
        return JSONResponse(
            status_code=500,
            content={"detail": f"internal error ({type(exc).__name__})"},
            headers={"Connection": "close"},
        )

    server_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, AlreadyLogged) for f in server_log.filters):
        server_log.addFilter(AlreadyLogged())
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ServiceInputError, on_input)
    app.add_exception_handler(BodyTooLargeError, on_too_large)
    app.add_exception_handler(UnsupportedMediaTypeError, on_media_type)
    app.add_exception_handler(ModelUnavailableError, on_unavailable)
    app.add_exception_handler(DrainingError, on_draining)
    app.add_exception_handler(QueueFullError, on_queue_full)
    app.add_exception_handler(ReloadError, on_reload)
    app.add_exception_handler(ApiKeyError, on_api_key)
    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(StarletteHTTPException, on_http)
