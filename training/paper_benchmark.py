"""Reproduce the uRNN paper's synthetic benchmarks: train one model on one task, report the cost.

Protocol (Arjovsky, Shah & Bengio 2016, section 4; summary in ANCHORS.md): batch 20, RMSProp
with learning rate 1e-3 and decay 0.9, fresh random batches every iteration. The uRNN is *not*
gradient-clipped; the LSTM (and here the GRU and tanh RNN too) is clipped to gradient norm 1.

The cost that is reported at the end is measured on a held-out batch drawn from a separate,
seeded stream, so that it does not depend on the noise of the last few training batches.
"""

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import nn
from tqdm import tqdm

from models import MODEL_KINDS, UnknownModelError, build_sequence_model
from training.paper_tasks import InvalidSequenceLengthError, PaperTask, get_task
from urnn_forecast.field_types import not_one_of

TaskName = Literal["copy", "adding"]
DeviceName = Literal["auto", "cpu", "cuda"]

UNITARY_KINDS = frozenset({"urnn", "urnn-full"})  # trained without gradient clipping
CLIP_NORM = 1.0  # gradient-norm clip for the gated / tanh baselines (paper: LSTM at 1)

# Hidden sizes per (task, model). uRNN and LSTM are the paper's: copy 128 vs 40, adding 512 vs
# 128. The paper has no GRU; it and the tanh RNN get the width whose parameter count matches
# the paper's LSTM on that task (torch's two bias vectors per gate included). Parameter counts:
#   copy   (input 10, 9 classes): uRNN 6.2k, LSTM 8.7k, GRU 47 -> 8.8k, RNN 83 -> 8.6k
#   adding (input 2, 1 output):   uRNN 8.2k, LSTM 67.7k, GRU 148 -> 67.6k, RNN 258 -> 67.9k
# The full-capacity uRNN (dense unitary W, n^2 parameters) uses n = 128 on both tasks (21.6k on
# copy, 17.5k on adding): n = 512 on adding would be a 262k-parameter dense recurrence, four
# times the LSTM's budget and far slower per step.
PAPER_HIDDEN_SIZES: dict[tuple[str, str], int] = {
    ("copy", "urnn"): 128,
    ("copy", "urnn-full"): 128,
    ("copy", "lstm"): 40,
    ("copy", "gru"): 47,
    ("copy", "rnn"): 83,
    ("adding", "urnn"): 512,
    ("adding", "urnn-full"): 128,
    ("adding", "lstm"): 128,
    ("adding", "gru"): 148,
    ("adding", "rnn"): 258,
}

EVAL_BATCH_SIZE = 100  # held-out batch for the final cost: 5x a training batch, cheap to run
EVAL_SEED_OFFSET = 1_000_003  # held-out data come from their own stream, never a training batch
TAIL_ITERATIONS = 50  # the "training cost at the end" averages this many last iterations


class Tracker(Protocol):
    """Where a run's parameters and metrics go (MLflow in the CLI, nothing in most tests)."""

    def log_params(self, params: Mapping[str, object]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...


class DeviceUnavailableError(RuntimeError):
    """`cuda` was asked for on a machine without a usable CUDA device."""


@dataclass(frozen=True)
class PaperRunConfig:
    """One training run: a task at one sequence length, one model."""

    task: TaskName
    seq_len: int  # copy: the delay T (sequences are T + 20 long); adding: the length T
    iterations: int
    model: str = "urnn"  # one of models.MODEL_KINDS
    hidden_size: int | None = None  # None: PAPER_HIDDEN_SIZES[(task, model)]
    batch_size: int = 20
    lr: float = 1e-3
    rmsprop_alpha: float = 0.9  # the paper's RMSProp decay
    seed: int = 0
    eval_every: int = 50  # log the running training cost every this many iterations
    device: DeviceName = "cpu"

    def __post_init__(self) -> None:
        task = get_task(self.task)
        if self.seq_len < task.min_seq_len:
            raise InvalidSequenceLengthError(
                f"{self.task} needs seq_len >= {task.min_seq_len}, got {self.seq_len}"
            )
        if self.model not in MODEL_KINDS:
            raise UnknownModelError(not_one_of("model", self.model, MODEL_KINDS))
        for name in ("iterations", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size is not None and self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")

    @property
    def resolved_hidden_size(self) -> int:
        if self.hidden_size is not None:
            return self.hidden_size
        return PAPER_HIDDEN_SIZES[(self.task, self.model)]


@dataclass(frozen=True)
class PaperRunResult:
    """What one run measured; `final_cost` is on the held-out batch."""

    task: str
    seq_len: int
    model: str
    hidden_size: int
    n_params: int
    iterations: int
    batch_size: int
    wall_seconds: float  # training loop only, without model construction and final eval
    final_cost: float
    final_accuracy: float | None  # copy: fraction of the 10 recalled symbols right
    train_cost_tail: float  # mean training cost of the last TAIL_ITERATIONS iterations
    baseline: float
    learning_curve: list[tuple[int, float]] = field(default_factory=list)  # (iteration, cost)

    @property
    def cost_ratio(self) -> float:
        """Final cost over the memoryless baseline: ~1 learned nothing, ~0 solved it."""
        return self.final_cost / self.baseline


def resolve_device(name: DeviceName) -> torch.device:
    """`auto` picks CUDA when present; an explicit `cuda` without one fails, never falls back."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError("--device cuda was requested but CUDA is not available")
    return torch.device(name)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_paper_task(
    config: PaperRunConfig, *, tracker: Tracker | None = None, progress: bool = True
) -> PaperRunResult:
    """Train `config.model` on `config.task` with the paper's protocol and measure it."""
    task = get_task(config.task)
    device = resolve_device(config.device)
    hidden_size = config.resolved_hidden_size
    baseline = task.baseline(config.seq_len)

    torch.manual_seed(config.seed)  # model initialisation
    model = build_sequence_model(
        config.model,
        input_size=task.input_size,
        hidden_size=hidden_size,
        output_size=task.output_size,
    ).to(device)
    n_params = count_parameters(model)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=config.lr, alpha=config.rmsprop_alpha)
    clip = config.model not in UNITARY_KINDS
    data = torch.Generator().manual_seed(config.seed)

    if tracker is not None:
        tracker.log_params(
            {
                "task": config.task,
                "seq_len": config.seq_len,
                "model": config.model,
                "hidden_size": hidden_size,
                "n_params": n_params,
                "iterations": config.iterations,
                "batch_size": config.batch_size,
                "lr": config.lr,
                "rmsprop_alpha": config.rmsprop_alpha,
                "grad_clip": CLIP_NORM if clip else "none",
                "seed": config.seed,
                "baseline": baseline,
                "device": str(device),
            }
        )

    costs: list[float] = []
    window_costs: list[float] = []
    window_accuracies: list[float] = []
    curve: list[tuple[int, float]] = []
    model.train()
    start = time.perf_counter()
    bar = tqdm(
        range(1, config.iterations + 1),
        desc=f"{config.task} T={config.seq_len} {config.model}",
        disable=not progress,
        leave=False,
    )
    for iteration in bar:
        batch = task.make_batch(config.batch_size, config.seq_len, data).to(device)
        pred, _ = model(batch.x)
        loss = task.loss(pred, batch.y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        optimizer.step()

        cost = loss.item()
        if not math.isfinite(cost):
            raise FloatingPointError(f"{config.model} diverged at iteration {iteration}: {cost}")
        costs.append(cost)
        window_costs.append(cost)
        if task.accuracy is not None:
            window_accuracies.append(task.accuracy(pred.detach(), batch.y))

        if iteration % config.eval_every == 0 or iteration == config.iterations:
            mean_cost = sum(window_costs) / len(window_costs)
            curve.append((iteration, mean_cost))
            metrics = {"train_cost": mean_cost, "cost_ratio": mean_cost / baseline}
            if window_accuracies:
                metrics["train_accuracy"] = sum(window_accuracies) / len(window_accuracies)
            if tracker is not None:
                tracker.log_metrics(metrics, step=iteration)
            bar.set_postfix(cost=f"{mean_cost:.4f}", base=f"{baseline:.4f}")
            window_costs.clear()
            window_accuracies.clear()
    wall_seconds = time.perf_counter() - start

    final_cost, final_accuracy = evaluate(model, task, config, device)
    tail = costs[-TAIL_ITERATIONS:]
    result = PaperRunResult(
        task=config.task,
        seq_len=config.seq_len,
        model=config.model,
        hidden_size=hidden_size,
        n_params=n_params,
        iterations=config.iterations,
        batch_size=config.batch_size,
        wall_seconds=wall_seconds,
        final_cost=final_cost,
        final_accuracy=final_accuracy,
        train_cost_tail=sum(tail) / len(tail),
        baseline=baseline,
        learning_curve=curve,
    )
    if tracker is not None:
        final = {
            "eval_cost": final_cost,
            "eval_cost_ratio": result.cost_ratio,
            "wall_seconds": wall_seconds,
        }
        if final_accuracy is not None:
            final["eval_accuracy"] = final_accuracy
        tracker.log_metrics(final, step=config.iterations)
    return result


def evaluate(
    model: nn.Module, task: PaperTask, config: PaperRunConfig, device: torch.device
) -> tuple[float, float | None]:
    """Cost (and accuracy, if the task has one) on a held-out batch from a separate stream."""
    data = torch.Generator().manual_seed(config.seed + EVAL_SEED_OFFSET)
    batch = task.make_batch(EVAL_BATCH_SIZE, config.seq_len, data).to(device)
    model.eval()
    with torch.inference_mode():
        pred, _ = model(batch.x)
        cost = task.loss(pred, batch.y).item()
        accuracy = task.accuracy(pred, batch.y) if task.accuracy is not None else None
    model.train()
    return cost, accuracy


def paper_reference(task: str, model: str, seq_len: int) -> str:
    """What the paper (ANCHORS.md) reports for this task and model, to print beside ours."""
    if task == "copy":
        if model == "urnn":
            return "~0 (T=100..500)"
        if model in ("lstm", "rnn"):
            return "stays at baseline" + (" (LSTM barely below)" if model == "lstm" else "")
        return "-"
    if task == "adding":
        if model == "urnn":
            return "~0.01-0.05" if seq_len <= 400 else "below baseline"
        if model == "lstm":
            return "good" if seq_len <= 400 else "~0.08 at T=750"
    return "-"


def _number(value: float, *, decimals: int) -> str:
    """Fixed point, switching to scientific below 10^-(decimals-1) so costs near 0 keep digits."""
    if value != 0 and abs(value) < 10 ** -(decimals - 1):
        return f"{value:.1e}"
    return f"{value:.{decimals}f}"


def format_table(results: Sequence[PaperRunResult]) -> str:
    """A plain-text closing table: our figures beside the memoryless baseline and the paper's.

    "final cost" is on the held-out batch; "train cost" is the mean of the last 50 training
    iterations, which shows the training noise (the unclipped uRNN has occasional spikes).
    """
    header = (
        "task",
        "T",
        "model",
        "params",
        "iters",
        "wall s",
        "final cost",
        "train cost",
        "baseline",
        "cost/base",
        "recall acc",
        "paper",
    )
    rows = [header]
    for r in results:
        rows.append(
            (
                r.task,
                str(r.seq_len),
                r.model,
                f"{r.n_params:,}",
                str(r.iterations),
                f"{r.wall_seconds:.1f}",
                _number(r.final_cost, decimals=4),
                _number(r.train_cost_tail, decimals=4),
                f"{r.baseline:.4f}",
                _number(r.cost_ratio, decimals=3),
                "-" if r.final_accuracy is None else f"{r.final_accuracy:.1%}",
                paper_reference(r.task, r.model, r.seq_len),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    left = {0, 2, len(header) - 1}  # text columns; numbers align right

    def line(row: Sequence[str]) -> str:
        cells = (
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows[1:])])
