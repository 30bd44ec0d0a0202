"""bench.json_read's bodies and bench.loop_cost's covariate options: what they measure is
what they say (the block reader takes the covariate body; the options go together)."""

from __future__ import annotations

from bench.json_read import COVARIATE, body
from bench.loop_cost import _declined, parse_args
from bench.serve import HORIZON, LOOKBACK
from service.fast_path import BlockRequest
from service.json_block import read_json_block


def test_the_covariate_body_is_read_by_the_block_reader_with_its_covariate() -> None:
    request = read_json_block(body(3, True))
    assert isinstance(request, BlockRequest)
    assert list(request.block.covariates) == [COVARIATE]
    assert request.block.covariates[COVARIATE].shape == request.block.values.shape == (3, LOOKBACK)
    plain = read_json_block(body(3, False))
    assert isinstance(plain, BlockRequest) and plain.block.covariates == {}


def test_loop_cost_sends_covariates_in_either_format_and_can_turn_the_reader_off() -> None:
    assert parse_args(["--covariates"]).format == "arrow"  # bench.arrow_read's body
    args = parse_args(["--format", "json", "--covariates", "--block-reader", "off"])
    assert (args.covariates, args.block_reader) == (True, "off")
    assert parse_args([]).block_reader == "on"
    assert _declined(body(1, True)) is None


def test_the_calendar_bench_times_the_rows_as_before_and_restores_the_block_path() -> None:
    """`--calendar`'s "before" row is the series-by-series path, and leaves `prepare` as it
    found it (the "now" row is timed after it)."""
    from typing import cast

    from bench.json_read import prepare_by_rows, read_block
    from service import validation
    from service.served import ServedModel
    from tests.service.test_fast_path import StubModel

    model = cast(ServedModel, StubModel(lookback=LOOKBACK, max_horizon=HORIZON, needs_dates=True))
    request = read_block(body(3, False))
    block_path = validation._prepare_block
    by_rows = prepare_by_rows(request, model)
    assert by_rows.block is None
    assert all(s.past_calendar is not None for s in by_rows.series)
    assert validation._prepare_block is block_path
    assert validation.prepare(request, model).block is not None


def test_the_daily_calendar_bench_body_is_one_block_of_midnights_a_week_apart() -> None:
    """`--calendar --freq D`: the body is read as a block, dated by midnights 7 days apart,
    and a daily calendar model prepares it as a block (its "now" row) or by rows."""
    from typing import cast

    import numpy as np

    from bench.json_read import prepare_by_rows, read_block
    from service import validation
    from service.served import ServedModel
    from tests.service.test_fast_path import StubModel

    request = read_block(body(3, False, "D"))
    assert isinstance(request, BlockRequest) and request.block.start_ns is not None
    day = 86_400 * 10**9
    assert not (request.block.start_ns % day).any()
    assert list(np.diff(request.block.start_ns)) == [-7 * day, -7 * day]
    stub = StubModel(lookback=LOOKBACK, max_horizon=HORIZON, needs_dates=True, freq="D")
    model = cast(ServedModel, stub)
    assert validation.prepare(request, model).block is not None
    assert prepare_by_rows(request, model).block is None
