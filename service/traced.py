"""The served model's forward as one TorchScript call: a batch runs without the GIL.

    forward = trace_forward(model, device)   # a callable like model(...), or None: use eager

The service runs the model on an inference thread beside the event loop, in one process. An
eager forward is some thirty torch calls, each of which releases the GIL and must take it
back, and while the event loop is busy parsing requests every one of those hand-backs waits
(measured under load: the inference thread spent a third of its samples re-acquiring the GIL
after its ops). A traced module runs its whole graph inside one C++ call that holds no GIL,
so the event loop and the model overlap. It is also ~10-20 % faster on its own (fewer Python
frames): 0.45 -> 0.34 ms at B = 16, 5.2 -> 4.8 ms at B = 256 on the benchmark model.

Tracing records the ops of one call with example inputs. What it freezes is checked here,
not assumed: the graph must give the eager module's numbers exactly (`torch.equal`) on fresh
random batches of other sizes, with every input the model reads. The graph is run with
TorchScript's optimisations off (`optimized_execution(False)`): no fusers and no
shape-specialised recompiles, so a new batch size costs nothing and the numbers stay the eager
ones. Any failure (a kind that does not trace, a future torch without `torch.jit.trace`, a
mismatch) logs why and returns None; the service then runs the eager module as before.
Streaming models are never traced (they run `StreamServing`, not a forward).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from models.forecaster import Forecaster

logger = logging.getLogger(__name__)

TracedForward = Callable[[Tensor, Tensor | None, Tensor | None, Tensor | None], Tensor]
_CHECK_BATCHES = (1, 5)  # besides the traced batch size (2)

# What tracing says on every load, filtered once here rather than around each trace
# (`warnings.catch_warnings` swaps the process-wide filters: not safe beside the event loop's
# thread). TracerWarning: the forward's shape checks, frozen for the traced shapes (the service
# validates shapes before the model sees them); only tracing raises it. And torch's notice
# that torch.jit.trace is deprecated: the graph is checked against eager at every load, and a
# torch without it serves the eager module.
_TRACER_WARNING: type[Warning] | None = getattr(torch.jit, "TracerWarning", None)
if _TRACER_WARNING is not None:
    warnings.filterwarnings("ignore", category=_TRACER_WARNING)
warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=DeprecationWarning)


class PositionalForward(nn.Module):
    """The forecaster called with only the tensors it reads, in the order `input_shapes` gives
    (tracing and CUDA graphs take no None)."""

    def __init__(self, model: Forecaster) -> None:
        super().__init__()
        self.model = model
        self.covariates, self.calendar = reads_inputs(model)

    def forward(self, *inputs: Tensor) -> Tensor:
        target, rest = inputs[0], list(inputs[1:])
        covariates = rest.pop(0) if self.covariates else None
        past_calendar = rest.pop(0) if self.calendar else None
        future_calendar = rest.pop(0) if self.calendar else None
        out: Tensor = self.model(target, covariates, past_calendar, future_calendar)
        return out


def reads_inputs(model: Forecaster) -> tuple[bool, bool]:
    """Whether the forward reads past covariates, and calendar features."""
    c = model.config
    return bool(model.SUPPORTS_PAST_COVARIATES and c.n_past_covariates > 0), c.n_calendar > 0


def input_shapes(model: Forecaster, rows: int) -> list[tuple[int, ...]]:
    """The shapes of the tensors `PositionalForward` takes for a batch of `rows` series."""
    c = model.config
    covariates, calendar = reads_inputs(model)
    shapes: list[tuple[int, ...]] = [(rows, c.lookback)]
    if covariates:
        shapes.append((rows, c.lookback, c.n_past_covariates))
    if calendar:
        shapes += [(rows, c.lookback, c.n_calendar), (rows, c.horizon, c.n_calendar)]
    return shapes


def random_inputs(model: Forecaster, rows: int, device: torch.device) -> tuple[Tensor, ...]:
    """Standard-normal inputs for `rows` series (seeded by `rows`), the checks' test batch."""
    generator = torch.Generator().manual_seed(rows)
    shapes = input_shapes(model, rows)
    return tuple(torch.randn(s, generator=generator).to(device) for s in shapes)


def _plain_execution() -> AbstractContextManager[None]:
    """TorchScript's graph executor without its optimisations (fusers, shape specialisation)."""
    context: AbstractContextManager[None] = torch.jit.optimized_execution(False)  # type: ignore[attr-defined]
    return context


def trace_forward(model: Forecaster, device: torch.device) -> TracedForward | None:
    """The traced forward of `model` (eval mode, on `device`), or None when it cannot be
    traced or its graph does not give the eager numbers."""
    if getattr(model, "STREAMING", False):
        return None
    c = model.config
    covariates, calendar = reads_inputs(model)
    wrapper = PositionalForward(model).eval()

    def batch(b: int) -> tuple[Tensor, ...]:
        return random_inputs(model, b, device)

    try:
        with torch.inference_mode():
            graph = torch.jit.trace(wrapper, batch(2), check_trace=False)  # type: ignore[no-untyped-call]
            with _plain_execution():
                for b in _CHECK_BATCHES:
                    inputs = batch(b)
                    if not torch.equal(graph(*inputs), wrapper(*inputs)):
                        logger.warning(
                            "the traced forward of kind %r differs from the eager one at "
                            "batch %d; serving the eager module",
                            c.kind,
                            b,
                        )
                        return None
    except Exception as error:  # a kind or a torch that does not trace: eager, said once
        logger.warning(
            "cannot trace the forward of kind %r (%s: %s); serving the eager module",
            c.kind,
            type(error).__name__,
            error,
        )
        return None

    def forward(
        target: Tensor,
        covariates_in: Tensor | None,
        past_calendar: Tensor | None,
        future_calendar: Tensor | None,
    ) -> Tensor:
        inputs = [target]
        if covariates:
            assert covariates_in is not None
            inputs.append(covariates_in)
        if calendar:
            assert past_calendar is not None and future_calendar is not None
            inputs += [past_calendar, future_calendar]
        with _plain_execution():
            out: Tensor = graph(*inputs)
        return out

    return forward
