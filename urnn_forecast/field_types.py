"""Values from JSON (`urnn train --config`, a job's `config`) against a config dataclass's
field types, before the dataclass is built.

The configs check their values' ranges in `__post_init__` and assume the types: given
`"max_epochs": "ten"` their first comparison failed with "'<' not supported between instances
of 'str' and 'int'", naming neither the field nor what it takes. Here each value is checked
against its field's annotation first, and a mismatch names both. JSON has no tuples, so a list
is accepted where the field is a tuple; an integer where it is a float; never a bool as a
number (JSON `true` is not 1 here).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Literal, Union

# After "holds a lone UTF-16 surrogate ...": the job API's and the 422s' one wording
NOT_UNICODE = "which is not Unicode text and cannot be stored; send valid UTF-8 text"


def shown(value: object) -> str:
    """`value`'s repr for a message, its start only when long: a 100,000-character value sent
    for a choice of a few words is not echoed whole; the service's 422s use it too."""
    if isinstance(value, str) and len(value) > 80:
        return f"{value[:60]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"


def not_one_of(name: str, value: object, allowed: typing.Iterable[object]) -> str:
    """The sentence for a value outside a fixed choice, in one wording everywhere: the field,
    every allowed value, and what was given (shortened: a 5,000-character kind is not echoed
    whole)."""
    return f"{name} must be one of {', '.join(map(repr, allowed))}; got {shown(value)}"


def shown_names(names: typing.Sequence[object], limit: int = 10) -> str:
    """A list of names a client sent, for a message: each `shown`, `limit` of them at most (a
    body naming 10,000 unknown columns is answered with ten and a count)."""
    more = f" and {len(names) - limit:,} more" if len(names) > limit else ""
    return f"[{', '.join(shown(name) for name in names[:limit])}{more}]"


def validator_sentence(error: Any) -> str | None:
    """The sentence of a ValueError our own validator raised, from one pydantic error; None
    for pydantic's own errors. Pydantic writes it after "Value error, ", its own term."""
    raised = error.get("ctx", {}).get("error") if error.get("type") == "value_error" else None
    if isinstance(raised, ValueError) and str(raised):
        return str(raised)
    return None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_type_problem(cls: type, name: str, value: Any) -> str | None:
    """None when `value` fits the annotation of `cls`'s field `name`, else what it must be."""
    annotation = _hints(cls).get(name)
    if annotation is None:
        return None
    if _takes_int(annotation) and isinstance(value, int) and abs(value) > INT_MAX:
        # 10**23 hidden units overflowed inside torch ("Overflow when unpacking long long")
        return f"field {name!r} must be an integer of at most {INT_MAX:,}; got {shown(value)}"
    if _fits(annotation, value):
        return None
    return f"field {name!r} must be {describe(annotation)}; got {shown(value)}"


INT_MAX = 2**32 - 1  # the largest integer a config field takes (a seed's limit)


def _takes_int(annotation: Any) -> bool:
    if annotation is int:
        return True
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return int in typing.get_args(annotation)
    return False


def check_fields(cls: type, values: dict[str, Any]) -> str | None:
    """The first field of `values` whose value does not fit its annotation (see module)."""
    names = {f.name for f in dataclasses.fields(cls)}
    for name, value in values.items():
        if name in names and (problem := field_type_problem(cls, name, value)) is not None:
            return problem
    return None


def _fits(annotation: Any, value: Any) -> bool:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_fits(arg, value) for arg in args)
    if annotation is type(None):
        return value is None
    if origin is Literal:  # a string is the config's to check: it names what it allows
        if isinstance(value, str) and all(isinstance(arg, str) for arg in args):
            return True
        return any(value == arg and type(value) is type(arg) for arg in args)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(args[0], item) for item in value)
        return len(args) == len(value) and all(
            _fits(a, item) for a, item in zip(args, value, strict=True)
        )
    if origin is list:
        return isinstance(value, list | tuple) and all(_fits(args[0], item) for item in value)
    return True  # mappings, dataclasses, anything richer: the config's own checks


def describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin in (tuple, list):
        if (len(args) == 2 and args[1] is Ellipsis) or origin is list:
            return f"a list of {_plural(describe(args[0]))}"
        return f"a list of {len(args)} values ({', '.join(describe(a) for a in args)})"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _plural(text: str) -> str:
    for single, many in (
        ("an integer", "integers"),
        ("a number", "numbers"),
        ("a string", "strings"),
    ):
        if text == single:
            return many
    return text
