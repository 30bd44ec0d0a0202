"""The uRNN paper's synthetic long-memory tasks: copying memory and the adding problem.

Reference: Arjovsky, Shah & Bengio, "Unitary Evolution Recurrent Neural Networks", ICML 2016,
section 4.1 (copying memory) and 4.2 (adding problem); protocol summary in ANCHORS.md.

Both tasks come with a *memoryless baseline*: the best cost a model reaches without carrying
information across the delay. A model that learns nothing settles there, so every benchmark
reports its cost as a ratio to that number.

Batches are drawn from an explicit `torch.Generator` on the CPU (then moved to the device), so a
seed reproduces the exact data stream on any machine and the global RNG is left alone.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# --- copying memory --------------------------------------------------------------------------
BLANK = 0
N_DATA_SYMBOLS = 8  # data symbols are 1..8
DELIMITER = 9  # "start recalling now"
N_COPY_SYMBOLS = 10  # one-hot width of the input: blank, 8 data symbols, delimiter
N_COPY_CLASSES = 9  # the model only ever has to emit blank or a data symbol
COPY_LENGTH = 10  # how many symbols are shown and recalled


class InvalidSequenceLengthError(ValueError):
    """A delay / sequence length outside what the task can be built with."""


class UnknownTaskError(ValueError):
    """A task name that is not one of `PAPER_TASKS`."""


@dataclass(frozen=True)
class Batch:
    """One training batch: `x` is float (B, L, input_size); `y` depends on the task."""

    x: Tensor
    y: Tensor

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.x.to(device), self.y.to(device))


def copy_batch(batch_size: int, delay: int, generator: torch.Generator) -> Batch:
    """Copying memory with delay `T`: sequences of length T + 20.

    Input symbols: 10 data symbols drawn uniformly from 1..8, T - 1 blanks, the delimiter,
    10 blanks; given one-hot as (B, T + 20, 10). Target (B, T + 20): T + 10 blanks, then the
    10 data symbols in order.
    """
    if delay < 1:
        raise InvalidSequenceLengthError(f"copy task needs a delay T >= 1, got {delay}")
    data = torch.randint(
        1, N_DATA_SYMBOLS + 1, (batch_size, COPY_LENGTH), generator=generator
    )  # (B, 10)
    length = delay + 2 * COPY_LENGTH
    symbols = torch.full((batch_size, length), BLANK, dtype=torch.long)  # (B, T+20)
    symbols[:, :COPY_LENGTH] = data
    symbols[:, COPY_LENGTH + delay - 1] = DELIMITER
    target = torch.full((batch_size, length), BLANK, dtype=torch.long)  # (B, T+20)
    target[:, -COPY_LENGTH:] = data
    x = F.one_hot(symbols, N_COPY_SYMBOLS).float()  # (B, T+20, 10)
    return Batch(x, target)


def copy_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy over every step; pred (B, L, 9) logits, target (B, L)."""
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1))


def copy_accuracy(pred: Tensor, target: Tensor) -> float:
    """Fraction of the 10 recalled symbols predicted exactly (the part that needs memory)."""
    recalled = pred[:, -COPY_LENGTH:].argmax(dim=-1)  # (B, 10)
    return (recalled == target[:, -COPY_LENGTH:]).float().mean().item()


def copy_baseline(delay: int) -> float:
    """Cost of emitting blanks, then a uniform guess over 8 symbols: 10 ln 8 / (T + 20)."""
    return COPY_LENGTH * math.log(N_DATA_SYMBOLS) / (delay + 2 * COPY_LENGTH)


# --- adding problem --------------------------------------------------------------------------
ADDING_BASELINE = 1.0 / 6.0  # variance of the sum of two U[0, 1]: predicting 1 always


def adding_batch(batch_size: int, seq_len: int, generator: torch.Generator) -> Batch:
    """Adding problem of length T: x (B, T, 2), y (B, 1).

    Channel 0 holds U[0, 1] values; channel 1 marks exactly two steps, one uniform in the first
    half [0, T // 2) and one in the second half [T // 2, T). The target is the sum of the two
    marked values.
    """
    if seq_len < 2:
        raise InvalidSequenceLengthError(
            f"adding problem needs T >= 2 (one marker per half), got {seq_len}"
        )
    half = seq_len // 2
    values = torch.rand(batch_size, seq_len, generator=generator)  # (B, T)
    first = torch.randint(0, half, (batch_size,), generator=generator)  # (B,)
    second = torch.randint(half, seq_len, (batch_size,), generator=generator)  # (B,)
    markers = torch.zeros(batch_size, seq_len)  # (B, T)
    rows = torch.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=-1)  # (B, T, 2)
    y = (values[rows, first] + values[rows, second]).unsqueeze(-1)  # (B, 1)
    return Batch(x, y)


def adding_loss(pred: Tensor, target: Tensor) -> Tensor:
    """MSE of the last step's output; pred (B, T, 1), target (B, 1)."""
    return F.mse_loss(pred[:, -1], target)


def adding_baseline(seq_len: int) -> float:
    """Predicting the mean (1) regardless of input costs Var(U1 + U2) = 1/6 at every T."""
    del seq_len  # the baseline does not depend on T; kept for a uniform task signature
    return ADDING_BASELINE


# --- task descriptions -----------------------------------------------------------------------
@dataclass(frozen=True)
class PaperTask:
    """Everything a trainer needs to know about a task, so the training loop stays generic."""

    name: str
    input_size: int
    output_size: int
    min_seq_len: int
    make_batch: Callable[[int, int, torch.Generator], Batch]  # (batch_size, T, generator)
    loss: Callable[[Tensor, Tensor], Tensor]  # (model output, target) -> scalar
    baseline: Callable[[int], float]  # T -> memoryless cost
    accuracy: Callable[[Tensor, Tensor], float] | None = None  # classification tasks only


COPY_TASK = PaperTask(
    name="copy",
    input_size=N_COPY_SYMBOLS,
    output_size=N_COPY_CLASSES,
    min_seq_len=1,
    make_batch=copy_batch,
    loss=copy_loss,
    baseline=copy_baseline,
    accuracy=copy_accuracy,
)

ADDING_TASK = PaperTask(
    name="adding",
    input_size=2,
    output_size=1,
    min_seq_len=2,
    make_batch=adding_batch,
    loss=adding_loss,
    baseline=adding_baseline,
)

PAPER_TASKS: dict[str, PaperTask] = {task.name: task for task in (COPY_TASK, ADDING_TASK)}


def get_task(name: str) -> PaperTask:
    """Look a task up by name, with an error that lists the valid names."""
    try:
        return PAPER_TASKS[name]
    except KeyError:
        valid = ", ".join(PAPER_TASKS)
        raise UnknownTaskError(f"unknown paper task {name!r}; valid tasks: {valid}") from None
