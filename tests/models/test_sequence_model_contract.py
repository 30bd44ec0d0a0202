"""One contract, every sequence model: shapes, finite outputs, determinism, save/load."""

from __future__ import annotations

import io

import pytest
import torch

from models import MODEL_KINDS, UnknownModelError, build_sequence_model


def build(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_sequence_model(kind, input_size=3, hidden_size=8, output_size=2)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_call_shape_and_finite_outputs(kind: str) -> None:
    y, h_last = build(kind)(torch.randn(4, 7, 3))
    assert y.shape == (4, 7, 2)
    assert h_last.shape == (4, 8)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_same_seed_same_model_same_output(kind: str) -> None:
    x = torch.randn(2, 5, 3)
    assert torch.equal(build(kind, seed=1)(x)[0], build(kind, seed=1)(x)[0])
    assert not torch.equal(build(kind, seed=1)(x)[0], build(kind, seed=2)(x)[0])


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_state_dict_round_trip_without_pickle(kind: str) -> None:
    original = build(kind, seed=3)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = build(kind, seed=4)
    restored.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    x = torch.randn(2, 5, 3)
    assert torch.equal(original(x)[0], restored(x)[0])


def test_unknown_kind_lists_the_valid_ones() -> None:
    with pytest.raises(
        UnknownModelError,
        match="model must be one of 'urnn', 'urnn-full', 'lstm', 'gru', 'rnn'; got 'transformer'",
    ):
        build_sequence_model("transformer", input_size=1, hidden_size=2, output_size=1)
