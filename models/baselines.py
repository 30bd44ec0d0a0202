"""Recurrent baselines with the uRNN's call shape: `model(x) -> (y, h_last)`.

The paper compares the uRNN with an LSTM (and a tanh RNN in its gradient analysis); GRU is
the other recurrent cell users reach for. All three use PyTorch's fused implementations, so
they are also the speed yardstick for the uRNN recurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from models.urnn import InputShapeError
from urnn_forecast.field_types import not_one_of

CellKind = Literal["lstm", "gru", "tanh"]
CELL_KINDS: tuple[CellKind, ...] = ("lstm", "gru", "tanh")


class RNNBaselineConfigError(ValueError):
    """An RNNBaselineConfig field holds a value the model cannot be built with."""


@dataclass
class RNNBaselineConfig:
    input_size: int
    hidden_size: int
    output_size: int
    cell: CellKind = "lstm"

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "output_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RNNBaselineConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.cell not in CELL_KINDS:
            raise RNNBaselineConfigError(not_one_of("cell", self.cell, CELL_KINDS))


class RNNBaseline(nn.Module):
    """One recurrent layer (PyTorch's default initialisation) and a linear read-out."""

    def __init__(self, config: RNNBaselineConfig) -> None:
        super().__init__()
        self.config = config
        m, n = config.input_size, config.hidden_size
        self.rnn: nn.LSTM | nn.GRU | nn.RNN
        if config.cell == "lstm":
            self.rnn = nn.LSTM(m, n, batch_first=True)
        elif config.cell == "gru":
            self.rnn = nn.GRU(m, n, batch_first=True)
        else:
            self.rnn = nn.RNN(m, n, nonlinearity="tanh", batch_first=True)
        self.readout = nn.Linear(n, config.output_size)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m = self.config.input_size
        if x.dim() != 3 or x.shape[-1] != m or x.shape[1] < 1:
            raise InputShapeError(
                f"x must have shape (batch, time >= 1, input_size={m}); got {tuple(x.shape)}"
            )
        states, _ = self.rnn(x)  # (B, T, n)
        return self.readout(states), states[:, -1]
