"""Invariants of the uRNN that must hold whatever the training does (geotorch-style)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from models.baselines import CellKind, RNNBaseline, RNNBaselineConfig
from models.urnn import URNN, ModReLU, RecurrenceKind, UnitaryKind, URNNConfig

UNITARY: list[UnitaryKind] = ["structured", "full"]
# fp32 bound on max|W^H W - I| after training; the structured product stays at round-off
# (measured ~2e-7), the matrix exponential of a growing generator a little above (~6e-6).
UNITARITY_BOUND = {"structured": 1e-5, "full": 5e-5}


def unitarity_error(w: Tensor) -> float:
    eye = torch.eye(w.shape[0], dtype=w.dtype)
    return float((w.conj().T @ w - eye).abs().max())


@pytest.mark.parametrize("unitary", UNITARY)
def test_w_stays_unitary_after_1000_rmsprop_steps(unitary: UnitaryKind) -> None:
    torch.manual_seed(0)
    model = URNN(URNNConfig(input_size=3, hidden_size=32, output_size=2, unitary=unitary))
    w_before = model.unitary_matrix().detach().clone()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9)
    for _ in range(1000):
        x = torch.randn(4, 6, 3)
        y, _ = model(x)
        loss = (y - x[..., :2].cumsum(dim=1)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    w_after = model.unitary_matrix().detach()
    assert (w_after - w_before).abs().max() > 1e-2  # it did train
    assert unitarity_error(w_after) < UNITARITY_BOUND[unitary]


@pytest.mark.parametrize("unitary", UNITARY)
def test_zero_input_zero_bias_preserves_the_hidden_norm_over_10000_steps(
    unitary: UnitaryKind,
) -> None:
    torch.manual_seed(0)
    model = URNN(URNNConfig(input_size=1, hidden_size=64, output_size=1, unitary=unitary))
    model = model.double()
    with torch.no_grad():
        states = model.states(torch.zeros(2, 10_000, 1, dtype=torch.float64))  # (B, T, 2n)
    norms = states.norm(dim=-1)
    initial = model.initial_state.detach().norm()
    assert float((norms / initial - 1).abs().max()) < 1e-10
    # In float32 the round-off of each step accumulates; it stays small over 10,000 steps.
    model = model.float()
    with torch.no_grad():
        norms32 = model.states(torch.zeros(2, 10_000, 1)).norm(dim=-1)
    assert float((norms32 / initial.float() - 1).abs().max()) < 1e-2


@pytest.mark.parametrize("unitary", UNITARY)
def test_gradient_reaching_h0_from_step_1000_keeps_its_norm_for_the_urnn(
    unitary: UnitaryKind,
) -> None:
    torch.manual_seed(0)
    model = URNN(URNNConfig(input_size=2, hidden_size=32, output_size=1, unitary=unitary))
    h0 = (torch.randn(4, 32, dtype=torch.complex64) / 8).requires_grad_()
    x = torch.randn(4, 1000, 2)
    _, h_last = model(x, h0=h0)
    upstream = torch.randn_like(h_last)  # dL/dh_T
    (grad_h0,) = torch.autograd.grad((h_last * upstream.conj()).real.sum(), h0)
    ratio = float(grad_h0.norm() / upstream.norm())
    assert 0.5 < ratio < 2.0


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_gradient_reaching_h0_from_step_1000_collapses_for_tanh_rnn_and_lstm(
    cell: CellKind,
) -> None:
    torch.manual_seed(0)
    baseline = RNNBaseline(
        RNNBaselineConfig(input_size=2, hidden_size=32, output_size=1, cell=cell)
    )
    h0 = torch.zeros(1, 4, 32, requires_grad=True)
    x = torch.randn(4, 1000, 2)
    if cell == "lstm":
        states, _ = baseline.rnn(x, (h0, torch.zeros(1, 4, 32)))
    else:
        states, _ = baseline.rnn(x, h0)
    upstream = torch.randn_like(states[:, -1])
    (grad_h0,) = torch.autograd.grad((states[:, -1] * upstream).sum(), h0)
    assert float(grad_h0.norm() / upstream.norm()) < 1e-6


@pytest.mark.parametrize("recurrence", ["fast", "reference"])
@pytest.mark.parametrize("unitary", UNITARY)
def test_no_nan_or_inf_at_zero_states(unitary: UnitaryKind, recurrence: RecurrenceKind) -> None:
    config = URNNConfig(
        input_size=2, hidden_size=8, output_size=1, unitary=unitary, recurrence=recurrence
    )
    model = URNN(config)
    with torch.no_grad():
        model.modrelu.bias.fill_(-0.1)  # modReLU switches units off: zero states persist
    h0 = torch.zeros(3, 8, dtype=torch.complex64, requires_grad=True)
    x = torch.zeros(3, 5, 2)
    y, h_last = model(x, h0=h0)
    (y.sum() + h_last.real.sum()).backward()
    used = [p for name, p in model.named_parameters() if name != "initial_state"]  # h0 given
    grads = [p.grad for p in used] + [h0.grad]
    assert all(
        g is not None and bool(torch.isfinite(torch.view_as_real(g) if g.is_complex() else g).all())
        for g in grads
    )
    assert torch.isfinite(y).all()


def test_modrelu_at_zero_has_finite_gradient_and_is_identity_at_zero_bias() -> None:
    modrelu = ModReLU(4, eps=1e-5)
    z = torch.zeros(2, 4, dtype=torch.complex64, requires_grad=True)
    modrelu(z).real.sum().backward()
    assert z.grad is not None and torch.isfinite(torch.view_as_real(z.grad)).all()
    w = torch.randn(2, 4, dtype=torch.complex64)
    assert torch.allclose(modrelu(w), w)
