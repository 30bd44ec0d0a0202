"""What reading and preparing an Arrow /forecast body costs the event loop, before and after
covariate columns joined the block path, in process.

    python -m bench.arrow_read                 # 16 series x 512 values, ~1 min
    python -m bench.arrow_read --series 1 --rounds 9

bench.json_read's two bodies (`--series` histories of 512 values, one plain and one whose
series each carry the covariate `temp` as long as the history) as Arrow streams
(`service.arrow_io.request_stream`: float64 lists, `covariates.temp` a column), each read
and prepared two ways, side by side in one run:

- now: `read_arrow_request` reads the covariate column into the block as it reads `values`
  (`_plain_block`: a view of the buffer per column), and `prepare` takes the block path;
- before: `_plain_block` declining any table with a covariate column (what it did until
  2026-12-07), so the body is read series by series (`_fast_series`: a FastSeries per row,
  covariates as views of the column) and prepared series by series. The plain body is read
  as a block either way (its column shows the two readers agree on it).

The models are bench.json_read's (untrained, in a temporary MLflow store; the figures do not
depend on weights). Printed: the least of `--rounds` rounds of `--repeat` calls, in
milliseconds per request.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from bench.json_read import (
    COVARIATE,
    body,
    print_table,
    read_and_prepare,
    served_models,
    timing_options,
)
from bench.serve import LOOKBACK, best_ms


def arrow_body(series: int, covariates: bool) -> bytes:
    """bench.json_read's body of `series` histories as an Arrow stream."""
    from service.arrow_io import request_stream

    data = json.loads(body(series, covariates))
    return request_stream(data["series"], horizon=data["horizon"])


@contextmanager
def before() -> Iterator[None]:
    """Within: service.arrow_io's `_plain_block` as it was until 2026-12-07, None for a table
    with a covariate column (which is then read series by series)."""
    from service import arrow_io

    plain_block = arrow_io._plain_block

    def declining_covariates(table: Any, ids: list[str]) -> Any:
        if any(name.startswith(arrow_io.COVARIATE_PREFIX) for name in table.column_names):
            return None
        return plain_block(table, ids)

    arrow_io._plain_block = declining_covariates
    try:
        yield
    finally:
        arrow_io._plain_block = plain_block


def read(content: bytes) -> Any:
    from service.arrow_io import read_arrow_request

    return read_arrow_request(content)


def measure(args: argparse.Namespace, var_dir: Path) -> list[tuple[str, float, float]]:
    """(row, ms for the plain body, ms for the body with a covariate)."""
    from service.fast_path import BlockRequest, FastRequest
    from service.validation import prepare

    models = served_models(var_dir)
    timed = partial(best_ms, rounds=args.rounds, repeat=args.repeat)
    columns: dict[str, dict[bool, float]] = {}
    for covariates in (False, True):
        content, model = arrow_body(args.series, covariates), models[covariates]
        now = read(content)
        assert isinstance(now, BlockRequest), "the bench bodies are read as blocks now"
        assert prepare(now, model).block is not None, "and prepared as one"
        with before():
            then = read(content)
            assert isinstance(then, FastRequest if covariates else BlockRequest)
            stages: dict[str, Callable[[], object]] = {
                "read: before (series by series with covariates)": partial(read, content),
                "prepare: of that reading": partial(prepare, then, model),
                "read + prepare: before": partial(read_and_prepare, read, content, model),
            }
            for name, stage in stages.items():
                columns.setdefault(name, {})[covariates] = timed(stage)
        stages = {
            "read: now (one block)": partial(read, content),
            "prepare: of the block": partial(prepare, now, model),
            "read + prepare: now": partial(read_and_prepare, read, content, model),
        }
        for name, stage in stages.items():
            columns.setdefault(name, {})[covariates] = timed(stage)
    return [(name, by[False], by[True]) for name, by in columns.items()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    timing_options(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-arrow-read-") as tmp:
        table = measure(args, Path(tmp) / "var")
    plain, with_covariates = arrow_body(args.series, False), arrow_body(args.series, True)
    print(
        f"Arrow, {args.series} series x {LOOKBACK} values; covariate body: + "
        f"'covariates.{COVARIATE}' of {LOOKBACK} each ({len(plain):,} and "
        f"{len(with_covariates):,} bytes); ms per request, least of {args.rounds} rounds of "
        f"{args.repeat}"
    )
    print_table(table, ("plain", "covariates"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
