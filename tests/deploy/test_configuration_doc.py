"""docs/configuration.md lists exactly the `URNN_*` settings the code reads."""

from __future__ import annotations

import re

from tests.deploy.config_doc import DOC, documented_table, env_name, render_table
from urnn_forecast.settings import Settings

REGENERATE = "run `.venv/bin/python -m tests.deploy.config_doc` to regenerate it"


def test_doc_lists_exactly_the_settings_fields() -> None:
    table = documented_table(DOC.read_text(encoding="utf-8"))
    documented = re.findall(r"^\| `(URNN_[A-Z0-9_]+)` \|", table, flags=re.MULTILINE)
    expected = [env_name(name) for name in Settings.model_fields]
    assert sorted(documented) == sorted(expected), (
        f"docs/configuration.md is out of date: missing {sorted(set(expected) - set(documented))}, "
        f"extra {sorted(set(documented) - set(expected))}; {REGENERATE}"
    )


def test_doc_table_matches_types_defaults_and_descriptions() -> None:
    table = documented_table(DOC.read_text(encoding="utf-8"))
    assert table == render_table(), f"docs/configuration.md's table is stale; {REGENERATE}"


def test_every_env_name_carries_the_prefix() -> None:
    assert Settings.model_config.get("env_prefix") == "URNN_"
    assert all(env_name(name).startswith("URNN_") for name in Settings.model_fields)


def test_integer_bounds_are_written_in_full_as_the_settings_error_says_them() -> None:
    """`int, 1024 to 1.07374e+09` could not be typed back; the error says 1073741824."""
    table = documented_table(DOC.read_text(encoding="utf-8"))
    assert "| `URNN_MAX_BODY_BYTES` | int, 1024 to 1073741824 |" in table
    assert "| `URNN_QUEUE_MAX_REQUESTS` | int, 1 to 1000000 |" in table
    assert "e+" not in table  # no bound in exponent notation
    assert "| `URNN_JOB_HEARTBEAT_SECONDS` | float, >= 0.05 |" in table  # floats as before
