"""Sequence models: the uRNN and the recurrent baselines it is compared with."""

from __future__ import annotations

from torch import nn

from models.baselines import CellKind, RNNBaseline, RNNBaselineConfig
from models.urnn import URNN, URNNConfig
from urnn_forecast.field_types import not_one_of

MODEL_KINDS: tuple[str, ...] = ("urnn", "urnn-full", "lstm", "gru", "rnn")


class UnknownModelError(ValueError):
    """The requested model kind is not one of MODEL_KINDS."""


def build_sequence_model(
    kind: str, *, input_size: int, hidden_size: int, output_size: int
) -> nn.Module:
    """Build any sequence model by name; every one answers `model(x) -> (y, h_last)`."""
    m, n, p = input_size, hidden_size, output_size
    if kind == "urnn":
        return URNN(URNNConfig(input_size=m, hidden_size=n, output_size=p, unitary="structured"))
    if kind == "urnn-full":
        return URNN(URNNConfig(input_size=m, hidden_size=n, output_size=p, unitary="full"))
    cells: dict[str, CellKind] = {"lstm": "lstm", "gru": "gru", "rnn": "tanh"}
    if kind in cells:
        return RNNBaseline(
            RNNBaselineConfig(input_size=m, hidden_size=n, output_size=p, cell=cells[kind])
        )
    raise UnknownModelError(not_one_of("model", kind, MODEL_KINDS))


__all__ = [
    "MODEL_KINDS",
    "URNN",
    "RNNBaseline",
    "RNNBaselineConfig",
    "URNNConfig",
    "UnknownModelError",
    "build_sequence_model",
]
