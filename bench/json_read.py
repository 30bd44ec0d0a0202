"""What reading and preparing a JSON /forecast body costs the event loop, by reader, in process.

    python -m bench.json_read                 # 16 series x 512 values, ~1 min
    python -m bench.json_read --series 1 --rounds 9
    python -m bench.json_read --calendar      # a calendar model's prepare, block vs rows
    python -m bench.json_read --calendar --freq D   # the same for a daily calendar model

Two bodies of `--series` histories of 512 values (bench.serve's), one plain and one whose
series each carry a covariate `temp` as long as the history (an equipment log's sensor
channel: a model trained with past covariates reads the same lookback of it), each read and
prepared two ways, side by side in one run:

- the simdjson block reader (`service.json_block.read_json_block`: numbers as buffers of
  doubles, one block per field) and `prepare`'s block path;
- orjson and the fast path (`fast_request`: a Python float per number, covariates series by
  series) and `prepare` on what it gives (series by series for covariates). Until 2026-12-07
  a body with covariates took this path, after simdjson had parsed it and its keys were
  checked for repeats (`forecast_repeated_key`): the row "route before" adds that parse.

With `--calendar`, instead: the plain body to a model that reads calendar features (hour of
day, day of week, day of year on its local clock), as a simdjson block and as an Arrow body,
prepared by the block path (since 2026-12-07) and series by series, the path such a model's
requests took before (`prepare` with the block preparation declining, as `_takes_blocks` did
for every calendar model). `--freq D` (or another multiple of days): the model is a daily
one, the body's starts midnights a week apart; `_takes_blocks` declined such a model
(calendar features or not) until 2026-12-07, since pandas 3's `D` is no Tick.

The models are untrained (the figures do not depend on weights) and registered in a
temporary MLflow store: bench.serve's, and the same with one covariate. Printed: the least of
`--rounds` rounds of `--repeat` calls, in milliseconds per request.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch
from pandas.tseries.frequencies import to_offset

from bench.serve import HORIZON, LOOKBACK, NAME, best_ms, register_untrained, synthetic_frame

COVARIATE = "temp"
COVARIATE_NAME = "urnn-forecaster-covariate"


def covariate_frame() -> Any:
    """bench.serve's synthetic frame with a sensor channel beside y."""
    frame = synthetic_frame()
    t = np.arange(len(frame))
    rng = np.random.default_rng(1)
    frame[COVARIATE] = 20.0 + 4.0 * np.cos(2 * np.pi * t / 24) + 0.5 * rng.normal(size=len(t))
    return frame


def body(series: int, covariates: bool, freq: str = "h") -> bytes:
    """bench.serve's body of `series` histories, each with the covariate when `covariates`;
    at `freq` other than "h" (days), the same values dated from midnights 7 steps apart."""
    frame = covariate_frame()
    rows = []
    for i in range(series):
        tail = frame.iloc[len(frame) - LOOKBACK - 7 * i : len(frame) - 7 * i]
        start = tail.index[0]
        if freq != "h":
            start = frame.index[-1].normalize() - (LOOKBACK + 7 * i) * to_offset(freq)
        row: dict[str, Any] = {
            "id": f"bench-{i}",
            "start": start.isoformat(),
            "freq": freq,
            "values": [round(v, 4) for v in tail["y"].tolist()],
        }
        if covariates:
            row["covariates"] = {COVARIATE: [round(v, 4) for v in tail[COVARIATE].tolist()]}
        rows.append(row)
    return json.dumps({"horizon": HORIZON, "series": rows}).encode()


def register_covariate_model(
    var_dir: Path,
    hidden_size: int,
    segment_length: int,
    *,
    name: str = NAME,
    covariates: bool = True,
) -> str:
    """Register an untrained uRNN forecaster reading the covariate (or, not `covariates`,
    none) as name@champion; its tracking URI."""
    from models.forecaster import ForecasterConfig

    config = ForecasterConfig(
        kind="urnn",
        lookback=LOOKBACK,
        horizon=HORIZON,
        hidden_size=hidden_size,
        segment_length=segment_length,
        n_past_covariates=1 if covariates else 0,
    )
    columns = [COVARIATE] if covariates else []
    frame = covariate_frame()
    return register_untrained(config, frame, var_dir, name, "bench-json-read", covariates=columns)


CALENDAR_NAME = "urnn-forecaster-calendar"


def calendar_model(var_dir: Path, freq: str = "h") -> Any:
    """An untrained plain model at `freq` reading its calendar features, loaded as the
    service does."""
    from models.forecaster import ForecasterConfig, n_calendar_features
    from service.loader import MlflowLoader
    from service.served import ServedModel

    config = ForecasterConfig(
        kind="urnn",
        lookback=LOOKBACK,
        horizon=HORIZON,
        hidden_size=32,
        segment_length=32,
        n_calendar=n_calendar_features(freq),
    )
    uri = register_untrained(
        config, covariate_frame(), var_dir, CALENDAR_NAME, "bench-json-read-calendar", freq
    )
    loader = MlflowLoader(uri)
    ref = loader.resolve(f"models:/{CALENDAR_NAME}@champion")
    return ServedModel.build(ref, loader.load(ref), torch.device("cpu"))


def prepare_by_rows(request: Any, model: Any) -> Any:
    """`prepare` as it went for a calendar model before: every block declined, so the
    request goes series by series (a DatetimeIndex and calendar_features per series)."""
    from service import validation

    block_path = validation._prepare_block
    validation._prepare_block = lambda block, model: None
    try:
        return validation.prepare(request, model)
    finally:
        validation._prepare_block = block_path


def measure_calendar(args: argparse.Namespace, var_dir: Path) -> list[tuple[str, float, float]]:
    """(row, ms for the JSON body read by simdjson, ms for the Arrow body)."""
    from service.arrow_io import read_arrow_request, request_stream
    from service.validation import prepare

    model = calendar_model(var_dir, args.freq)
    text = body(args.series, False, args.freq)
    series = json.loads(text)["series"]
    requests = {
        "json": read_block(text),
        "arrow": read_arrow_request(request_stream(series, horizon=HORIZON)),
    }
    timed = partial(best_ms, rounds=args.rounds, repeat=args.repeat)
    rows: dict[str, dict[str, float]] = {}
    for kind, request in requests.items():
        block, by_rows = prepare(request, model), prepare_by_rows(request, model)
        assert block.block is not None and by_rows.block is None, kind
        for mine, theirs in zip(block.series, by_rows.series, strict=True):
            assert mine.past_calendar is not None and theirs.past_calendar is not None
            assert mine.past_calendar.tobytes() == theirs.past_calendar.tobytes(), kind
        rows.setdefault("prepare: block path (now)", {})[kind] = timed(
            partial(prepare, request, model)
        )
        rows.setdefault("prepare: series by series (before)", {})[kind] = timed(
            partial(prepare_by_rows, request, model)
        )
    return [(name, by["json"], by["arrow"]) for name, by in rows.items()]


def served_models(var_dir: Path) -> dict[bool, Any]:
    """The plain model and the covariate one, loaded as the service loads them."""
    from service.loader import MlflowLoader
    from service.served import ServedModel

    models = {}
    for covariates, name in ((False, NAME), (True, COVARIATE_NAME)):
        uri = register_covariate_model(var_dir, 32, 32, name=name, covariates=covariates)
        loader = MlflowLoader(uri)
        ref = loader.resolve(f"models:/{name}@champion")
        models[covariates] = ServedModel.build(ref, loader.load(ref), torch.device("cpu"))
    return models


def read_block(text: bytes) -> Any:
    """The route's reader now: simdjson's document, the block read from it."""
    from service.json_block import json_document, read_json_block

    request = read_json_block(text, json_document(text))
    assert request is not None, "the bench bodies are read as blocks"
    return request


def read_orjson(text: bytes) -> Any:
    """orjson and the fast path (the route with the block reader off)."""
    from service.fast_path import fast_request

    request = fast_request(orjson.loads(text))
    assert request is not None, "the bench bodies take the fast path"
    return request


def parse_and_check_keys(text: bytes) -> None:
    """What the route paid before handing a body the block reader refused to orjson."""
    from service.json_block import forecast_repeated_key, json_document

    assert forecast_repeated_key(text, json_document(text)) is None


def read_and_prepare(read: Callable[[bytes], Any], text: bytes, model: Any) -> Any:
    from service.validation import prepare

    return prepare(read(text), model)


def measure(args: argparse.Namespace, var_dir: Path) -> list[tuple[str, float, float]]:
    """(row, ms for the plain body, ms for the body with covariates)."""
    from service.validation import prepare

    models = served_models(var_dir)
    timed = partial(best_ms, rounds=args.rounds, repeat=args.repeat)
    columns: dict[str, dict[bool, float]] = {}
    for covariates in (False, True):
        text, model = body(args.series, covariates), models[covariates]
        block, rows = read_block(text), read_orjson(text)
        assert prepare(block, model).block is not None, "simdjson's block is prepared as one"
        stages = {
            "read: simdjson block": partial(read_block, text),
            "read: orjson + fast path": partial(read_orjson, text),
            "simdjson parse + repeated-key check": partial(parse_and_check_keys, text),
            "prepare: of simdjson's block": partial(prepare, block, model),
            "prepare: of orjson's reading": partial(prepare, rows, model),
            "read + prepare: simdjson block": partial(read_and_prepare, read_block, text, model),
            "read + prepare: orjson path": partial(read_and_prepare, read_orjson, text, model),
        }
        for name, stage in stages.items():
            columns.setdefault(name, {})[covariates] = timed(stage)
    before = "read + prepare: route before (parse + check + orjson path)"
    columns[before] = {
        # plain bodies were read as blocks before too
        False: columns["read + prepare: simdjson block"][False],
        True: columns["simdjson parse + repeated-key check"][True]
        + columns["read + prepare: orjson path"][True],
    }
    return [(name, by[False], by[True]) for name, by in columns.items()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    timing_options(parser)
    parser.add_argument(
        "--calendar",
        action="store_true",
        help="a calendar model's prepare: block path against series by series",
    )
    parser.add_argument(
        "--freq",
        default="h",
        help="with --calendar: the model's frequency, 'h' or days ('D', '2D')",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.calendar:
        with tempfile.TemporaryDirectory(prefix="bench-json-read-") as tmp:
            table = measure_calendar(args, Path(tmp) / "var")
        print(
            f"{args.series} series x {LOOKBACK} values to a calendar model ({args.freq!r}, "
            f"local clock); ms per request, least of {args.rounds} rounds of {args.repeat}"
        )
        print_table(table, ("json", "arrow"))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-json-read-") as tmp:
        table = measure(args, Path(tmp) / "var")
    plain, with_covariates = body(args.series, False), body(args.series, True)
    print(
        f"{args.series} series x {LOOKBACK} values; covariate body: + {COVARIATE!r} of "
        f"{LOOKBACK} each ({len(plain):,} and {len(with_covariates):,} bytes); ms per request, "
        f"least of {args.rounds} rounds of {args.repeat}"
    )
    print_table(table, ("plain", "covariates"))
    return 0


def print_table(table: list[tuple[str, float, float]], columns: tuple[str, str]) -> None:
    """Stage rows of ms per request under two column headings."""
    width = max(len(name) for name, _, _ in table)
    left, right = (max(8, len(c)) for c in columns)
    print(f"{'':{width}}  {columns[0]:>{left}}  {columns[1]:>{right}}")
    for name, first, second in table:
        print(f"{name:{width}}  {first:{left}.3f}  {second:{right}.3f}")


def timing_options(parser: argparse.ArgumentParser) -> None:
    """--series, --rounds and --repeat, as both read benchmarks take them."""
    parser.add_argument("--series", type=int, default=16, help="histories per request")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the least is printed")
    parser.add_argument("--repeat", type=int, default=50, help="calls per round")


if __name__ == "__main__":
    raise SystemExit(main())
