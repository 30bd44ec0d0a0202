"""The un-scaling of a batch's forecasts, timed beside the plain map it replaced.

`python -m bench.unscale [--series 1024] [--rounds 50]`. The service un-scales every batch on
its inference thread (service.runner.unscale), so what this costs is taken from the forward's
share of the cores. `models.forecaster.unscale_from_last` measures forecasts from each
history's last value (a flat look-back comes back as its level exactly); its first version
computed both full un-scalings and chose between them with a where(). This prints the plain
map (the service's until 2026-12-08), that first version and the current one, side by side
in one run, and checks that the current one equals the first bit for bit. On 2 cores, quiet
(2026-12-08), best of 200 at 1,024 x 96 x 3: plain map 1.96 ms, first version 5.10 ms (2.6x),
the current one in three passes over new arrays 3.40 ms (1.7x), and in place 0.36 ms (0.2x):
new arrays of that size (2.4 MB each), not the arithmetic, set the cost.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numpy as np

from models.forecaster import unscale_from_last


def where_of_two(
    scaled: np.ndarray, mean: np.ndarray, scale: np.ndarray, last: np.ndarray
) -> np.ndarray:
    """The first version of unscale_from_last (two full un-scalings, then a where)."""
    values = np.asarray(scaled, dtype=np.float64)
    plain = values * scale + mean
    with np.errstate(invalid="ignore", over="ignore"):
        read = ((last - mean) / scale).astype(np.float32).astype(np.float64)
        measured = last + (values - read) * scale
    known = np.isfinite(last) & np.isfinite(read)
    out: np.ndarray = np.where(known, measured, plain)
    return out


def plain_map(
    scaled: np.ndarray, mean: np.ndarray, scale: np.ndarray, last: np.ndarray
) -> np.ndarray:
    out: np.ndarray = scaled.astype(np.float64) * scale + mean
    return out


def best_ms(function: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1024, help="series in the batch")
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--quantiles", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    shape = (args.series, args.horizon, args.quantiles)
    scaled = rng.standard_normal(shape).astype(np.float32)
    mean = rng.uniform(100, 5000, (args.series, 1, 1))
    scale = rng.uniform(1, 2000, (args.series, 1, 1))
    last = rng.uniform(0, 6000, (args.series, 1, 1))
    last[::7] = np.nan  # histories whose last value is not known: the plain map
    same = np.array_equal(
        unscale_from_last(scaled, mean, scale, last), where_of_two(scaled, mean, scale, last)
    )
    timed = {
        name: best_ms(lambda f=f: f(scaled, mean, scale, last), args.rounds)  # type: ignore[misc]
        for name, f in (
            ("plain map (x scale + mean)", plain_map),
            ("first version (where of two)", where_of_two),
            ("unscale_from_last", unscale_from_last),
        )
    }
    base = timed["plain map (x scale + mean)"]
    print(f"un-scaling a ({args.series}, {args.horizon}, {args.quantiles}) batch, best of "
          f"{args.rounds}, ms")  # fmt: skip
    for name, ms in timed.items():
        print(f"  {name:<30} {ms:8.3f}  ({ms / base:.1f}x the plain map)")
    print(f"unscale_from_last equals the first version bit for bit: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
