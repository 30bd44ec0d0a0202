"""Data-parallel training across processes: `torchrun` + DistributedDataParallel.

    urnn train --nproc 2 ...     # relaunches itself under torchrun with 2 processes

Every process loads the same data and builds the same model under the same seed; each batch of
window indices (the same shuffled order everywhere) is split by rank, `indices[rank::world]`,
and DDP averages the gradients, so with batches that split evenly a step equals the
single-process step on the whole batch (up to floating-point summation order). Validation,
early stopping and interval calibration run on every rank on identical weights, so all ranks
stop at the same epoch. Rank 0 alone logs to MLflow, backtests and registers; the others exit
after training. Backend: gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int


def launched() -> DistEnv | None:
    """The torchrun environment of this process, or None when it runs alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return DistEnv(
        rank=int(os.environ["RANK"]),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def init(device: str) -> DistEnv | None:
    """Join the process group torchrun set up (no-op when alone or already joined)."""
    env = launched()
    if env is None or dist.is_initialized():
        return env
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return env


def active() -> DistEnv | None:
    """The process group this process trains in, if initialised with more than one rank."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() <= 1:
        return None
    return launched() or DistEnv(dist.get_rank(), dist.get_world_size(), 0)


def is_main() -> bool:
    env = launched()
    return env is None or env.rank == 0


def shard(indices: Tensor, env: DistEnv) -> Tensor:
    """This rank's part of one batch; a batch smaller than the world is used whole by all."""
    if len(indices) < env.world_size:
        return indices
    return indices[env.rank :: env.world_size]


def finish() -> None:
    """Leave the process group, all ranks together: a rank that destroyed its group while
    rank 0 was still backtesting and registering (a replica's fit ends first) aborted in CI
    once ("terminate called without an active exception", SIGABRT), and torchrun then
    stopped rank 0 too. The barrier keeps the replicas until rank 0 is done."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def launch_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """`urnn <argv>` under torchrun with `nproc` processes on this machine. `--nproc` itself is
    left out: torchrun would read it as an abbreviation of its own --nproc-per-node, and the
    ranks know from WORLD_SIZE that they were launched."""
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "urnn_forecast.cli",
        *args,
    ]
