"""bench.arrow_read's bodies and its `before`: what it measures is what it says (the covariate
body is one block now, series by series within `before`, a block again after it)."""

from __future__ import annotations

from bench.arrow_read import arrow_body, before
from bench.json_read import COVARIATE
from bench.serve import LOOKBACK
from service.arrow_io import read_arrow_request
from service.fast_path import BlockRequest, FastRequest


def test_the_covariate_body_is_a_block_now_and_was_read_series_by_series_before() -> None:
    content = arrow_body(3, True)
    now = read_arrow_request(content)
    assert isinstance(now, BlockRequest)
    assert list(now.block.covariates) == [COVARIATE]
    assert now.block.covariates[COVARIATE].shape == now.block.values.shape == (3, LOOKBACK)
    with before():
        then = read_arrow_request(content)
        assert isinstance(then, FastRequest)
        assert [list(s.covariates) for s in then.series] == [[COVARIATE]] * 3
        assert isinstance(read_arrow_request(arrow_body(3, False)), BlockRequest)
    assert isinstance(read_arrow_request(content), BlockRequest)
