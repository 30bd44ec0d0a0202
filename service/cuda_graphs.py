"""The served model's forward on a GPU as replayed CUDA graphs, one per batch-size bucket.

    graphed = GraphedForward.capture(model, device, max_batch=256)   # or None: not captured
    out = graphed(target, covariates, past_calendar, future_calendar)  # like model(...)

Why: on a GPU the uRNN's recurrence is PyTorch's step-by-step loop, a few small kernels per
segment, and each forward costs about 4 ms of kernel launches whatever the batch (measured on
an H200, docs/serving.md "On a GPU"): the GPU idles while the CPU queues work. A CUDA graph
records those launches once and replays them with one call, so a forward costs about what the
kernels themselves cost: 7.6x the eager forward's throughput at 16 series, 3.9x at 256 (H200,
docs/serving.md "CUDA graphs"). This is what TorchServe, vLLM and `torch.compile(mode=
"reduce-overhead")` do; the last would also fuse kernels, but needs Triton and minutes of
compilation at every load.

A graph replays fixed shapes on fixed memory. So each bucket (1, 2, 4, ... up to `max_batch`,
and `max_batch` itself) owns static input and output tensors: a batch of B series is copied
into the rows of the smallest bucket >= B, the graph replays, and the first B rows of the
output are copied back. The padding rows hold whatever an earlier batch left there (zeros at
first, else real inputs that passed validation): every op of a forecaster's forward works row
by row, so they never touch the rows that are read. The numbers are the eager module's at the
bucket's batch size; cuBLAS may pick another kernel for another batch size, so against an
eager call at B rows they agree to float32 rounding (tests/service/test_cuda_graphs.py).

Checked, not assumed: at capture, every bucket's replay must give the eager module's numbers
on fresh random inputs (to float32 rounding). Anything that fails (a kind whose forward
copies between host and GPU, such as `unitary="full"`'s matrix exponential, which reads the
matrix norm on the host; a torch without CUDA graphs; a mismatch) logs why and returns None,
and the service serves the traced or eager module as before. Streaming models are never
graphed (they run `StreamServing`).

Threads: captures run in thread-local capture mode on a side stream, so work that another
thread launches meanwhile (the version being served, during a hot reload) neither joins nor
breaks the capture; and each bucket's capture and each replay of every graphed model in the
process take one lock, so a capture never records while a graphed version replays, and two
batches never share one bucket's static tensors. A replay holds the lock for its copy in,
replay and copy out (well under a millisecond); a capture for one bucket's warm-up and
capture (tens of milliseconds: torch also collects garbage and empties its cache there), and
the served version replays between two of them. tests/service/test_model_lifecycle.py's reload under
concurrent requests runs this on a GPU machine (URNN_DEVICE=auto) with no failed request.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from models.forecaster import Forecaster
from service.traced import PositionalForward, input_shapes, random_inputs, reads_inputs

if TYPE_CHECKING:
    from torch.cuda import _POOL_HANDLE  # a memory pool's handle (graph.pool())

logger = logging.getLogger(__name__)

# Tolerance of the capture check: the replay against the eager module at the same shape.
_RTOL = 1e-4
_ATOL = 1e-5

_GPU_LOCK = threading.Lock()  # every capture and replay in the process (module docstring)


def bucket_sizes(max_batch: int) -> tuple[int, ...]:
    """Powers of two below `max_batch`, then `max_batch` itself: (1, 2, 4, ..., max_batch).
    At most twice the rows of a batch are computed, and log2(max_batch) + 1 graphs kept."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    sizes = []
    size = 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch)
    return tuple(sizes)


@dataclass
class _Bucket:
    """One captured graph and the tensors it reads and writes."""

    graph: torch.cuda.CUDAGraph
    inputs: tuple[Tensor, ...]  # static (size, ...) inputs in the order _Inputs.order gives
    output: Tensor  # static (size, H, Q)

    @property
    def size(self) -> int:
        return int(self.output.shape[0])


class GraphedForward:
    """A forecaster's forward replayed from CUDA graphs; build with `capture`."""

    def __init__(self, buckets: list[_Bucket], covariates: bool, calendar: bool) -> None:
        self._buckets = sorted(buckets, key=lambda b: b.size)
        self._covariates = covariates
        self._calendar = calendar

    @property
    def sizes(self) -> tuple[int, ...]:
        """The captured batch sizes (GET /model shows them)."""
        return tuple(b.size for b in self._buckets)

    @property
    def max_batch(self) -> int:
        return self._buckets[-1].size

    @classmethod
    def capture(
        cls, model: Forecaster, device: torch.device, *, max_batch: int
    ) -> GraphedForward | None:
        """Graphs of `model`'s forward (eval mode, already on the cuda `device`) for every
        bucket up to `max_batch`, checked against the eager module; None (with the reason
        logged) when the model or the device cannot be graphed."""
        if device.type != "cuda" or getattr(model, "STREAMING", False):
            return None
        return cls._capture(model, device, max_batch)

    @classmethod
    def _capture(
        cls, model: Forecaster, device: torch.device, max_batch: int
    ) -> GraphedForward | None:
        """`capture` past its device check (tests run it on the CPU with torch.cuda faked)."""
        covariates, calendar = reads_inputs(model)
        graphed = cls([], covariates, calendar)
        forward = PositionalForward(model)
        try:
            # The lock is taken per bucket, not for the whole capture: the version being
            # served during a hot reload replays between two captures (a stall of one
            # bucket's capture, not of all of them).
            with torch.inference_mode():
                pool = None
                buckets = []
                for size in reversed(bucket_sizes(max_batch)):  # largest first: one pool
                    with _GPU_LOCK:
                        bucket = graphed._capture_one(forward, device, size, pool)
                    pool = bucket.graph.pool()
                    buckets.append(bucket)
                graphed._buckets = sorted(buckets, key=lambda b: b.size)
                for bucket in graphed._buckets:
                    check = random_inputs(model, bucket.size, device)
                    with _GPU_LOCK:
                        for static, value in zip(bucket.inputs, check, strict=True):
                            static.copy_(value)
                        bucket.graph.replay()
                        expected = forward(*check)
                        matches = torch.allclose(bucket.output, expected, rtol=_RTOL, atol=_ATOL)
                    if not matches:
                        error = (bucket.output - expected).abs().max().item()
                        logger.warning(
                            "the CUDA graph of kind %r differs from the eager forward at "
                            "batch %d (max abs error %.3g); serving without graphs",
                            model.config.kind,
                            bucket.size,
                            error,
                        )
                        return None
                    for static in bucket.inputs:  # padding rows start as valid zeros
                        static.zero_()
                torch.cuda.synchronize(device)
        except Exception as error:  # a kind that copies to the host, a torch without graphs
            logger.warning(
                "cannot capture the forward of kind %r as CUDA graphs (%s: %s); serving "
                "without graphs",
                model.config.kind,
                type(error).__name__,
                error,
            )
            return None
        logger.info(
            "kind %r on %s: forward captured as CUDA graphs for batch sizes %s",
            model.config.kind,
            device,
            ",".join(str(s) for s in graphed.sizes),
        )
        return graphed

    def _capture_one(
        self,
        forward: PositionalForward,
        device: torch.device,
        size: int,
        pool: _POOL_HANDLE | None,
    ) -> _Bucket:
        inputs = tuple(torch.zeros(s, device=device) for s in input_shapes(forward.model, size))
        # Lazy initialisation (cuBLAS handles, workspaces, cuDNN plans) must happen outside
        # the capture: warm up on a side stream, as torch.cuda.graphs' documentation says.
        side = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):
                forward(*inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: another thread's CUDA calls (the request path's copies) do not
        # invalidate this capture; the lock keeps them from running meanwhile anyway.
        with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
            output = forward(*inputs)
        return _Bucket(graph=graph, inputs=inputs, output=output)

    def replay(self, rows: int) -> Tensor:
        """Replay the bucket for `rows` series on whatever its static inputs hold, and return
        its static output on the GPU without waiting: the raw limit that bench.serve's (c)
        measures, with no copy in or out. Not for serving (the next replay overwrites it)."""
        bucket = next(b for b in self._buckets if b.size >= rows)
        with _GPU_LOCK:
            bucket.graph.replay()
        return bucket.output[:rows]

    def __call__(
        self,
        target: Tensor,
        covariates: Tensor | None,
        past_calendar: Tensor | None,
        future_calendar: Tensor | None,
    ) -> Tensor:
        """(B, L) ... -> (B, H, Q) on the CPU (a copy: the static output is reused)."""
        rows = int(target.shape[0])
        bucket = next((b for b in self._buckets if b.size >= rows), None)
        if bucket is None:
            raise ValueError(
                f"a batch of {rows} series is above the largest captured size {self.max_batch}"
            )
        values = [target]
        if self._covariates:
            assert covariates is not None
            values.append(covariates)
        if self._calendar:
            assert past_calendar is not None and future_calendar is not None
            values += [past_calendar, future_calendar]
        with _GPU_LOCK, torch.inference_mode():
            for static, value in zip(bucket.inputs, values, strict=True):
                static[:rows].copy_(value)
            bucket.graph.replay()
            return bucket.output[:rows].cpu()
