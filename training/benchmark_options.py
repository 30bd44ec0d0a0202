"""Option checks shared by the benchmark configs (`training.ett_benchmark`,
`training.pjm_benchmark`): lists of names chosen from a fixed set, and horizons."""

from __future__ import annotations

from collections.abc import Sequence


def check_names(
    field: str, values: Sequence[str], allowed: Sequence[str], error: type[ValueError]
) -> None:
    """`values` must be non-empty and every one of them in `allowed`; the error names the
    field, the allowed names and what was given."""
    if not values or any(v not in allowed for v in values):
        raise error(f"{field} must be among {', '.join(allowed)}; got {list(values)}")


def check_horizons(horizons: Sequence[int], error: type[ValueError]) -> None:
    if not horizons or any(h < 1 for h in horizons):
        raise error(f"horizons must be integers >= 1; got {list(horizons)}")
