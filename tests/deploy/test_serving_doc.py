"""docs/serving.md's endpoint table names every field `GET /model` answers. A new user's walk
(2026-12-06) compared the answer with the table and found `cuda_graphs` and
`last_reload_error_at` in the answer but not in the table, which named the others in words."""

from __future__ import annotations

import re
from pathlib import Path

from service.schemas import ModelInfo

SERVING = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def model_row() -> str:
    """The `GET /model` row of the Endpoints table."""
    text = SERVING.read_text(encoding="utf-8")
    rows: list[str] = re.findall(r"^\| `GET /model` \|.*$", text, re.MULTILINE)
    assert len(rows) == 1, rows
    return rows[0]


def test_get_model_row_names_every_field_of_the_answer() -> None:
    named = set(re.findall(r"`([a-z_]+)`", model_row()))
    missing = [field for field in ModelInfo.model_fields if field not in named]
    assert not missing, f"docs/serving.md's GET /model row does not name {missing}"


def test_get_model_row_names_no_field_the_answer_lacks() -> None:
    named = set(re.findall(r"`([a-z_]+)`", model_row()))
    assert named <= set(ModelInfo.model_fields), named - set(ModelInfo.model_fields)
