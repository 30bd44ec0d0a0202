"""Which field of a `--config`-style config (sections `load`, `model`, `fit`, `train`) a check's
message is about, so that a refusal names `fit.max_epochs`, not the `fit` section alone.

One implementation for both readers of such configs: the job API (jobs/spec.py, a 422 at
`config.fit.max_epochs`) and `urnn train --config FILE` (`--config FILE: fit.max_epochs: ...`).
Standard library only: the CLI imports it before any argument is parsed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def field_in_section(
    sections: Mapping[str, Mapping[str, Any]], section: str, message: str
) -> tuple[str, str]:
    """`(path, message)`: the dotted path of the field within `sections` that a check of
    `section` is about (`fit` -> `fit.max_epochs`), and the message to show with it.

    A field's wrong type (field_types.check_fields: "field 'max_epochs' must be an integer")
    and an unknown field name it, and the message loses the naming; a config's own check
    names it in its words ("max_epochs must be >= 1"): the first field of the section's, as
    `sections` gives them, that the message names, or a field of another section named with
    it ("model n_past_covariates", checked by the train section). `section` alone when the
    message names none of the given fields (a problem of the whole, or of defaults)."""
    typed = re.match(r"field '(\w+)' (.+)", message, re.DOTALL)
    if typed is not None:
        return f"{section}.{typed.group(1)}", typed.group(2)
    unknown = re.match(r"unknown field\(s\) \['(\w+)'", message)
    if unknown is not None:
        return f"{section}.{unknown.group(1)}", message
    named = [
        (found.start(), f"{section}.{key}")
        for key in sections.get(section, {})
        if (found := re.search(rf"(?<![\w-]){re.escape(key)}(?!\w)", message)) is not None
    ]
    named += [
        (found.start(), f"{other}.{key}")
        for other, values in sections.items()
        if other != section
        for key in values
        if (found := re.search(rf"\b{other}[ .]{re.escape(key)}(?!\w)", message))
    ]
    return (min(named)[1], message) if named else (section, message)


# The loader's settings (training.data.LoadConfig) that are English words too ("fill the gap",
# "a decimal comma", "the target"): named as settings only where a value follows them
# (`fill='ffill'`, `decimal ','`). The others (`max_gap`, `freq`, `sep`) are no words of prose.
_PROSE_WORDS = frozenset({"target", "covariates", "duplicates", "fill", "decimal"})


# A quoted text of a loader message: a column name, a series id, a value read ('series_id',
# 'Sensor freq', ';'), or a --config file's JSON ({"train": {"test_series": [...]}}, whose
# field names are the file's words). It opens after no letter and closes before none, so that
# an apostrophe of prose ("the series' rows", "the file's") opens or closes none.
_QUOTED = re.compile(r"(?<!\w)'[^'\n]*'(?!\w)|\"[^\"\n]*\"")


def _sub_outside_quotes(pattern: str, repl: str, message: str) -> str:
    """re.sub of `pattern` where a match starts outside every quoted text of `message`: a
    fleet's id column named `series_id`, or a column named `freq`, is data, not the setting of
    that name ("column 'series_id'" was said as "column '--series-id'")."""
    quoted = [found.span() for found in _QUOTED.finditer(message)]

    def replace(match: re.Match[str]) -> str:
        if any(start < match.start() < end for start, end in quoted):
            return match.group(0)
        return match.expand(repl)

    return re.sub(pattern, replace, message)


def in_flags(message: str, flags: Mapping[str, str]) -> str:
    """`message` of the data loader (training.data, training.validation) in a command line's
    terms: each setting it names as a field of LoadConfig (`pass decimal=','`, `raise max_gap to
    30`, `series_col (--series-col)`) named as the option that sets it (`pass --decimal ','`,
    `raise --max-gap to 30`, `--series-col`). `flags`: field -> option, the settings the
    command has options for; a field without one keeps its name (`--config`'s load section).

    The loader speaks in fields because the jobs API (POST /jobs, `config.load.decimal`) and
    `urnn train --config` read its messages as they are; the CLI translates where it prints
    them, so that one loader serves both front doors."""
    for field, flag in flags.items():
        name = re.escape(field)
        # both given already ("series_col (--series-col)", "(max_gap, --max-gap)"): the option
        message = _sub_outside_quotes(rf"(?<![\w.-]){name} \({re.escape(flag)}\)", flag, message)
        message = _sub_outside_quotes(rf"\({name}, {re.escape(flag)}", f"({flag}", message)
        # "freq 'B' (--freq B)", "sep=',' (--sep ',')": the option once, its value as typed
        message = _sub_outside_quotes(
            rf"(?<![\w.-]){name}[= ](?:'[^']*'|[^\s()]+) \({re.escape(flag)} ([^)]*)\)",
            rf"{flag} \1",
            message,
        )
        # "decimal=','", "max_gap=24", "decimal ','": the option and its value
        message = _sub_outside_quotes(
            rf"(?<![\w.-]){name}=|(?<![\w.-]){name} (?=['\"])", f"{flag} ", message
        )
        # "Set duplicates to one of mean, first, last": a setting where the remedy names it
        message = _sub_outside_quotes(rf"(?i:(set|pass)) {name}(?![\w-])", rf"\1 {flag}", message)
        if field not in _PROSE_WORDS:  # "raise max_gap to 30", "pass freq (an alias...)"
            message = _sub_outside_quotes(rf"(?<![\w.-]){name}(?![\w-])", flag, message)
    return message
