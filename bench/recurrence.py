"""How fast is the uRNN recurrence next to PyTorch's fused LSTM and GRU? (`make bench`)

    python -m bench.recurrence            # the full table (about 2.5 min on 2 cores)
    python -m bench.recurrence --quick    # n in {64, 128}, T in {100, 500}

Every row times, in the same run and interleaved round by round (so load from other
processes hits all columns alike): the step-by-step `reference` uRNN, the `fast` uRNN
(compiled loop), `nn.LSTM` and `nn.GRU` of the same hidden size n, all batch-first on
(B, T, input) inputs and returning every hidden state. forward+backward is one forward pass
and `backward` of a fixed random gradient on all states; forward-only runs under
`torch.inference_mode()`. The uRNN times include the input projection and, with gradients,
materialising W; they exclude the read-out (the LSTM and GRU have none either).

Memory is what a training step holds for backward: the bytes of the distinct storages autograd
saves during one forward pass (saved_tensors_hooks; the saved outputs included, parameters
too). That is the activation memory that grows with B * T and limits training; it leaves out
transient buffers of a single op. Forward-only calls save nothing and keep only their output.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.recurrence_cpp import (
    StructuredFactors,
    compiled_ops,
    dense_recurrence,
    structured_recurrence,
)
from models.urnn import URNN, StructuredUnitary, UnitaryKind, URNNConfig, block_form_transposed

MODELS = ("reference", "fast", "lstm", "gru")
DASH = "—"

Runner = Callable[[bool], None]  # run(with_grad): one forward (+ backward if with_grad)


@dataclass
class Timings:
    """Medians in milliseconds and saved-for-backward MiB per model (None: not measured)."""

    train_ms: dict[str, float | None]
    infer_ms: dict[str, float | None]
    saved_mib: dict[str, float | None]


# -----------------------------------------------------------------------------
# Machine and memory


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return DASH


def saved_mib(run: Callable[[], None]) -> float:
    """MiB of distinct storages autograd saves for backward during run() (activation memory)."""
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values()) / 2**20


# -----------------------------------------------------------------------------
# The models under test


def urnn_runner(kind: str, unitary: UnitaryKind, hidden: int, x: Tensor, grad: Tensor) -> Runner:
    config = URNNConfig(
        input_size=x.shape[-1],
        hidden_size=hidden,
        output_size=1,
        unitary=unitary,
        recurrence="reference" if kind == "reference" else "fast",
    )
    model = URNN(config)

    def run(with_grad: bool) -> None:
        if with_grad:
            model.zero_grad(set_to_none=True)
            torch.autograd.backward(model.states(x), grad)
        else:
            with torch.inference_mode():
                model.states(x)

    return run


def torch_rnn_runner(kind: str, hidden: int, x: Tensor, grad: Tensor) -> Runner:
    rnn_class = nn.LSTM if kind == "lstm" else nn.GRU
    rnn = rnn_class(x.shape[-1], hidden, batch_first=True)

    def run(with_grad: bool) -> None:
        if with_grad:
            rnn.zero_grad(set_to_none=True)
            out, _ = rnn(x)
            torch.autograd.backward(out, grad)
        else:
            with torch.inference_mode():
                rnn(x)

    return run


def measure_row(
    hidden: int,
    steps: int,
    *,
    batch: int,
    input_size: int,
    unitary: UnitaryKind,
    repeats: int,
    reference_cap: int,
) -> Timings:
    torch.manual_seed(0)
    x = torch.randn(batch, steps, input_size)
    runners: dict[str, Runner] = {}
    for kind in MODELS:
        if kind == "reference" and hidden * steps > reference_cap:
            continue
        if kind in ("reference", "fast"):
            grad = torch.randn(batch, steps, 2 * hidden)
            runners[kind] = urnn_runner(kind, unitary, hidden, x, grad)
        else:
            runners[kind] = torch_rnn_runner(kind, hidden, x, torch.randn(batch, steps, hidden))
    train: dict[str, list[float]] = {kind: [] for kind in runners}
    infer: dict[str, list[float]] = {kind: [] for kind in runners}
    saved: dict[str, float] = {}
    for kind, run in runners.items():  # warm-up; then what one training call saves
        run(True)
        run(False)
        saved[kind] = saved_mib(lambda run=run: run(True))  # type: ignore[misc]
    for _ in range(repeats):  # round-robin: drifting load hits every model alike
        for kind, run in runners.items():
            train[kind].append(timed_ms(lambda run=run: run(True)))  # type: ignore[misc]
            infer[kind].append(timed_ms(lambda run=run: run(False)))  # type: ignore[misc]
    return Timings(
        train_ms={k: statistics.median(train[k]) if k in train else None for k in MODELS},
        infer_ms={k: statistics.median(infer[k]) if k in infer else None for k in MODELS},
        saved_mib={k: saved.get(k) for k in MODELS},
    )


def timed_ms(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1e3


# -----------------------------------------------------------------------------
# Structured vs dense compiled step: where does the O(n log n) chain pay?


def compiled_runners(n: int, *, steps: int, batch: int, input_size: int) -> dict[str, Runner]:
    """The compiled structured and dense loops on the same structured W, input map included."""
    ops = compiled_ops()
    assert ops is not None
    torch.manual_seed(0)
    unitary = StructuredUnitary(n)
    factors = StructuredFactors(
        unitary.phases.detach(), unitary.reflections.detach(), unitary.permutation
    )
    x = torch.randn(steps, batch, input_size)
    v = torch.randn(2 * n, input_size, requires_grad=True)
    bias = torch.zeros(n, requires_grad=True)
    s0 = torch.randn(batch, 2 * n, requires_grad=True)
    grad = torch.randn(steps, batch, 2 * n)

    def structured(with_grad: bool) -> None:
        with torch.set_grad_enabled(with_grad):
            w_t = block_form_transposed(unitary.matrix()) if with_grad else x.new_empty(0)
            states = structured_recurrence(ops, x, v, w_t, bias, s0, factors, 1e-5)
            if with_grad:
                torch.autograd.backward(states, grad)

    def dense(with_grad: bool) -> None:
        with torch.set_grad_enabled(with_grad):
            w_t = block_form_transposed(unitary.matrix())
            states = dense_recurrence(ops, x @ v.T, w_t, bias, s0, 1e-5)
            if with_grad:
                torch.autograd.backward(states, grad)

    return {"structured": structured, "dense": dense}


def crossover_rows(
    sizes: Sequence[int], *, steps: int, batch: int, input_size: int, repeats: int
) -> list[tuple[int, float, float, float, float]]:
    """(n, structured fwd+bwd, dense fwd+bwd, structured fwd, dense fwd) in ms per n."""
    rows = []
    for n in sizes:
        runners = compiled_runners(n, steps=steps, batch=batch, input_size=input_size)
        times: dict[tuple[str, bool], list[float]] = {}
        for run in runners.values():
            run(True)
            run(False)
        for _ in range(repeats):
            for name, run in runners.items():
                for with_grad in (True, False):
                    ms = timed_ms(lambda run=run, g=with_grad: run(g))  # type: ignore[misc]
                    times.setdefault((name, with_grad), []).append(ms)
        med = {key: statistics.median(values) for key, values in times.items()}
        rows.append(
            (
                n,
                med[("structured", True)],
                med[("dense", True)],
                med[("structured", False)],
                med[("dense", False)],
            )
        )
    return rows


# -----------------------------------------------------------------------------
# Report


def fmt(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return DASH if a is None or b is None else f"{a / b:.2f}x"


def print_table(results: dict[tuple[int, int], Timings]) -> None:
    print(
        "| n | T | fwd+bwd ms: reference | fast | LSTM | GRU | fast / LSTM "
        "| fwd ms: reference | fast | LSTM | GRU | fast / LSTM "
        "| saved MiB: fast | LSTM | GRU |"
    )
    print("|" + "---|" * 15)
    for (n, steps), t in results.items():
        train, infer, saved = t.train_ms, t.infer_ms, t.saved_mib
        cells = [
            str(n),
            str(steps),
            *(fmt(train[k]) for k in MODELS),
            ratio(train["fast"], train["lstm"]),
            *(fmt(infer[k]) for k in MODELS),
            ratio(infer["fast"], infer["lstm"]),
            *(fmt(saved[k]) for k in ("fast", "lstm", "gru")),
        ]
        print("| " + " | ".join(cells) + " |")


def print_growth(results: dict[tuple[int, int], Timings]) -> None:
    sizes = sorted({n for n, _ in results})
    lengths = sorted({steps for _, steps in results})
    print("\nCost per step in µs, fwd+bwd (linear in T <=> constant along a row):")
    print("| model | n | " + " | ".join(f"T = {steps}" for steps in lengths) + " |")
    print("|" + "---|" * (2 + len(lengths)))
    for kind in ("fast", "lstm"):
        for n in sizes:
            cells = []
            for steps in lengths:
                ms = results[(n, steps)].train_ms[kind] if (n, steps) in results else None
                cells.append(fmt(None if ms is None else ms * 1e3 / steps))
            print(f"| {kind} | {n} | " + " | ".join(cells) + " |")
    if len(sizes) < 2:
        return
    steps = max(lengths)
    print(f"\nGrowth in n at T = {steps}: exponent p in time ~ n^p between neighbouring sizes")
    for kind in ("fast", "lstm"):
        for mode in ("train_ms", "infer_ms"):
            parts = []
            for small, large in itertools.pairwise(sizes):
                a = getattr(results[(small, steps)], mode)[kind]
                b = getattr(results[(large, steps)], mode)[kind]
                if a is not None and b is not None:
                    parts.append(
                        f"{small}->{large}: {math.log(b / a) / math.log(large / small):.2f}"
                    )
            label = "fwd+bwd" if mode == "train_ms" else "fwd"
            print(f"  {kind:5s} {label:8s} " + ", ".join(parts))


def print_crossover(rows: list[tuple[int, float, float, float, float]], steps: int) -> None:
    print(f"\nCompiled structured step vs compiled dense step (same structured W), T = {steps}:")
    print(
        "| n | fwd+bwd ms: structured | dense | structured / dense | fwd ms: structured "
        "| dense | structured / dense |"
    )
    print("|" + "---|" * 7)
    for n, s_train, d_train, s_infer, d_infer in rows:
        print(
            f"| {n} | {s_train:.1f} | {d_train:.1f} | {s_train / d_train:.2f}x "
            f"| {s_infer:.1f} | {d_infer:.1f} | {s_infer / d_infer:.2f}x |"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.recurrence",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="n in {64, 128}, T in {100, 500}, 3 repeats, no crossover table",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed calls per model and cell; the median is reported",
    )
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[64, 128, 512],
        help="hidden sizes n (complex units for the uRNN)",
    )
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[100, 500, 2000], help="sequence lengths T"
    )
    parser.add_argument("--batch", type=int, default=32, help="batch size B")
    parser.add_argument("--input-size", type=int, default=8, help="input features per step")
    parser.add_argument(
        "--unitary",
        choices=["structured", "full"],
        default="structured",
        help="the uRNN's W: the paper's product or full-capacity expRNN",
    )
    parser.add_argument(
        "--reference-cap",
        type=int,
        default=64_000,
        help="time the step-by-step reference only where n * T <= this",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's own choice)",
    )
    parser.add_argument(
        "--crossover",
        type=int,
        nargs="*",
        default=[8, 16, 32, 64, 128, 256, 512],
        help="sizes n for the structured-vs-dense table; empty to skip",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.steps, args.repeats, args.crossover = [64, 128], [100, 500], 3, []
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    ops = compiled_ops()
    build_s = time.perf_counter() - started
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_model()}")
    print(
        f"fast uRNN: {'compiled loop' if ops is not None else 'PYTHON LOOP (no compiled build)'}"
        f" (build or cache load {build_s:.1f} s); W {args.unitary}; B = {args.batch}, "
        f"input {args.input_size}; median of {args.repeats}; load average {load_average()}"
    )
    print(f"reference uRNN timed only where n * T <= {args.reference_cap}, {DASH} elsewhere\n")
    results: dict[tuple[int, int], Timings] = {}
    for n in args.hidden:
        for steps in args.steps:
            results[(n, steps)] = measure_row(
                n,
                steps,
                batch=args.batch,
                input_size=args.input_size,
                unitary=args.unitary,
                repeats=args.repeats,
                reference_cap=args.reference_cap,
            )
    print_table(results)
    print_growth(results)
    if args.crossover and ops is not None:
        steps = 500
        rows = crossover_rows(
            args.crossover,
            steps=steps,
            batch=args.batch,
            input_size=args.input_size,
            repeats=args.repeats,
        )
        print_crossover(rows, steps)
    print(
        f"\nload average at the end {load_average()}; total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
