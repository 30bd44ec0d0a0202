"""The compiled streaming head (`models.stream_head_cpp`) against `StreamServing`'s numpy path:
the same quantiles to float64-accumulation rounding of the float32 skip map, for every
quantile layout, with calendar features, at every phase of a segment."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from models import stream_head_cpp
from models.recurrence_cpp import ExtensionBuildError
from models.stream_head_cpp import head_kernel
from models.streaming import StreamServing
from tests.models.test_streaming import SEG, history, model_for


def test_the_kernel_builds_here() -> None:
    # CI has a compiler: a build failure there is a bug, not a reason to skip.
    assert head_kernel() is not None


@pytest.mark.parametrize(
    "quantiles", [(0.1, 0.5, 0.9), (0.5,), (0.05, 0.25, 0.5, 0.75, 0.95), (0.5, 0.9)]
)
@pytest.mark.parametrize("n_calendar", [0, 3])
def test_compiled_and_numpy_heads_agree(quantiles: tuple[float, ...], n_calendar: int) -> None:
    model = model_for(0, n_calendar, quantiles=quantiles)
    compiled = model.serving()
    plain = StreamServing(compiled.module, compiled_head=False)
    assert compiled._kernel is not None and plain._kernel is None
    n = 120
    target, _ = history(n)
    rng = np.random.default_rng(1)
    calendar = rng.normal(size=(n, n_calendar)) if n_calendar else None
    future = rng.normal(size=(model.config.horizon, n_calendar)) if n_calendar else None
    state = compiled.new_state()
    for i in range(n):  # every phase of the segment, and states with and without a cached base
        state = compiled.advance(
            state, target[i : i + 1], None, None if calendar is None else calendar[i : i + 1]
        )
        if not state.ready:
            continue
        got = compiled.forecast(state, future, unit_scale=2.5, unit_loc=-7.0)
        want = plain.forecast(state, future, unit_scale=2.5, unit_loc=-7.0)
        assert got.shape == want.shape == (model.config.horizon, len(quantiles))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
        assert (np.diff(got, axis=1) >= 0).all()  # quantiles stay ordered
    assert state.seen % SEG != 0 or state.ready


def test_the_kernel_refuses_arrays_of_the_wrong_shape_or_type() -> None:
    kernel = head_kernel()
    assert kernel is not None
    h, q, w = 4, 3, 6
    out = np.empty((q, h))
    base, phase, gaps = np.zeros(h * q), np.zeros(h * q), np.ones(h * q)
    skip, tail = np.zeros((h, w), np.float32), np.zeros(w)
    kernel(out, base, phase, skip, tail, gaps, 1, 1.0, 0.0)
    with pytest.raises(ValueError, match="skip"):
        kernel(out, base, phase, skip.astype(np.float64), tail, gaps, 1, 1.0, 0.0)
    with pytest.raises(ValueError, match="tail"):
        kernel(out, base, phase, skip, np.zeros(w + 1), gaps, 1, 1.0, 0.0)
    with pytest.raises(ValueError, match="median"):
        kernel(out, base, phase, skip, tail, gaps, 3, 1.0, 0.0)
    with pytest.raises(TypeError):
        kernel(out, base)


def test_without_a_compiler_the_numpy_head_serves_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(*args: object, **kwargs: object) -> object:
        raise ExtensionBuildError("[-O3] RuntimeError: no C++ compiler here")

    head_kernel.cache_clear()
    monkeypatch.setattr(stream_head_cpp, "build_inline", fail)
    try:
        with caplog.at_level(logging.WARNING, logger=stream_head_cpp.__name__):
            model = model_for()
            serving = StreamServing(model.serving().module)
            again = StreamServing(serving.module)
        assert serving._kernel is None and again._kernel is None
        warnings = [r for r in caplog.records if "numpy instead" in r.getMessage()]
        assert len(warnings) == 1 and "no C++ compiler here" in warnings[0].getMessage()
        target, _ = history(80)
        state = serving.advance(serving.new_state(), target)
        assert np.isfinite(serving.forecast(state)).all()
    finally:
        monkeypatch.undo()
        head_kernel.cache_clear()
    assert head_kernel() is not None  # the real build is back for the other tests
