"""Frequency aliases that pandas renamed: the error says the new spelling."""

from __future__ import annotations

import pytest

from service.served import freq_problem
from training.data import LoadConfig
from training.validation import InvalidOptionError, renamed_alias_hint


@pytest.mark.parametrize(
    ("alias", "now"),
    [("M", "ME"), ("2H", "2h"), ("15T", "15min"), ("A-DEC", "YE-DEC"), ("Q", "QE")],
)
def test_a_renamed_alias_names_its_new_spelling(alias: str, now: str) -> None:
    assert renamed_alias_hint(alias) == f"; pandas now spells {alias!r} as {now!r}"
    with pytest.raises(InvalidOptionError, match=f"pandas now spells {alias!r} as {now!r}"):
        LoadConfig(target="y", freq=alias)
    assert f"pandas now spells {alias!r} as {now!r}" in (freq_problem(alias, "h") or "")


def test_an_unknown_alias_gets_examples_instead() -> None:
    assert renamed_alias_hint("fortnightly") == "" and renamed_alias_hint("W-SUN") == ""
    assert freq_problem("fortnightly", "h") == (
        "'fortnightly' is not a pandas offset alias (e.g. 'h', '15min', 'D')"
    )
