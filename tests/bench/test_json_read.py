"""bench.json_read's bodies and bench.loop_cost's covariate options: what they measure is
what they say (the block reader takes the covariate body; the options go together)."""

from __future__ import annotations

from bench.json_read import COVARIATE, body
from bench.loop_cost import _declined, parse_args
from bench.serve import LOOKBACK
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
