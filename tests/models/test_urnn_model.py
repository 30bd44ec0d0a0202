"""The uRNN's construction: the paper's factors, parameter counts, fast == reference."""

from __future__ import annotations

import math

import pytest
import torch

from models.urnn import (
    URNN,
    InputShapeError,
    RecurrenceKind,
    StructuredUnitary,
    UnitaryKind,
    URNNConfig,
    URNNConfigError,
    parameter_count,
    unitary_recurrence,
)

UNITARY: list[UnitaryKind] = ["structured", "full"]


def test_structured_matrix_is_the_product_of_the_papers_factors() -> None:
    torch.manual_seed(0)
    n = 16
    op = StructuredUnitary(n).double()
    d = [torch.diag(torch.exp(1j * op.phases[k].detach())) for k in range(3)]
    r = []
    for k in range(2):
        v = torch.complex(op.reflections[k, 0], op.reflections[k, 1]).detach().unsqueeze(1)
        r.append(torch.eye(n, dtype=v.dtype) - 2 * (v @ v.conj().T) / (v.conj().T @ v))
    f = torch.fft.fft(torch.eye(n, dtype=torch.complex128), norm="ortho")  # F e_j as columns
    pi = torch.eye(n, dtype=torch.complex128)[op.permutation]
    expected = d[2] @ r[1] @ f.conj().T @ d[1] @ pi @ r[0] @ f @ d[0]
    assert torch.allclose(op.matrix().detach(), expected, atol=1e-12)


@pytest.mark.parametrize("unitary", UNITARY)
def test_applying_the_operator_equals_multiplying_by_its_matrix(unitary: UnitaryKind) -> None:
    torch.manual_seed(0)
    model = URNN(URNNConfig(input_size=1, hidden_size=12, output_size=1, unitary=unitary)).double()
    h = torch.randn(5, 12, dtype=torch.complex128)
    w = model.unitary_matrix()
    assert torch.allclose(model.unitary(h), h @ w.T, atol=1e-12)


def test_initialisation_follows_the_paper() -> None:
    torch.manual_seed(0)
    n = 256
    model = URNN(URNNConfig(input_size=4, hidden_size=n, output_size=3))
    assert isinstance(model.unitary, StructuredUnitary)
    assert float(model.unitary.phases.detach().abs().max()) <= math.pi
    assert float(model.modrelu.bias.detach().abs().max()) == 0.0
    assert float(model.readout.bias.detach().abs().max()) == 0.0
    assert 0.7 < float(model.initial_state.detach().square().sum()) < 1.3  # E|h_0|^2 = 1


@pytest.mark.parametrize("unitary", UNITARY)
@pytest.mark.parametrize(("n", "m", "p"), [(8, 1, 1), (128, 10, 9), (64, 7, 24)])
def test_parameter_count_matches_the_documented_formula(
    unitary: UnitaryKind, n: int, m: int, p: int
) -> None:
    config = URNNConfig(input_size=m, hidden_size=n, output_size=p, unitary=unitary)
    model = URNN(config)
    assert sum(q.numel() for q in model.parameters()) == parameter_count(config)


def test_copy_task_model_has_the_papers_size() -> None:
    # The paper quotes ~6.5k parameters for its copy-task uRNN (n = 128, 10 in, 9 out).
    assert parameter_count(URNNConfig(input_size=10, hidden_size=128, output_size=9)) == 6153


@pytest.mark.parametrize("with_input", [True, False])
@pytest.mark.parametrize("unitary", UNITARY)
def test_fast_recurrence_equals_the_reference_in_values_and_gradients(
    unitary: UnitaryKind, with_input: bool
) -> None:
    torch.manual_seed(0)
    config = URNNConfig(input_size=3, hidden_size=16, output_size=2, unitary=unitary)
    model = URNN(config).double()
    with torch.no_grad():
        model.modrelu.bias.uniform_(-0.5, 0.5)  # exercise the switched-off branch too
    x = torch.randn(4, 40, 3, dtype=torch.float64) * float(with_input)
    results = []
    for recurrence in ("fast", "reference"):
        model.config.recurrence = recurrence
        y, h_last = model(x)
        loss = y.square().sum() + h_last.abs().sum()
        grads = torch.autograd.grad(loss, list(model.parameters()))
        results.append((y.detach(), h_last.detach(), grads))
    (y1, h1, g1), (y2, h2, g2) = results
    assert torch.allclose(y1, y2, atol=1e-10, rtol=1e-10)
    assert torch.allclose(h1, h2, atol=1e-10, rtol=1e-10)
    for a, b in zip(g1, g2, strict=True):
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-9)


def test_custom_backward_passes_gradcheck() -> None:
    torch.manual_seed(0)
    u = torch.randn(3, 6, 8, dtype=torch.float64, requires_grad=True)
    w_t = torch.randn(8, 8, dtype=torch.float64, requires_grad=True)
    bias = (torch.rand(4, dtype=torch.float64) - 0.5).requires_grad_()
    s0 = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda u, w, b, s: unitary_recurrence(u, w, b, s, 1e-5), (u, w_t, bias, s0)
    )


@pytest.mark.parametrize("recurrence", ["fast", "reference"])
def test_state_carried_across_calls_equals_one_call(recurrence: RecurrenceKind) -> None:
    torch.manual_seed(0)
    config = URNNConfig(input_size=2, hidden_size=8, output_size=1, recurrence=recurrence)
    model = URNN(config).double()
    x = torch.randn(3, 30, 2, dtype=torch.float64)
    y_all, h_all = model(x)
    y_a, h_a = model(x[:, :11])
    y_b, h_b = model(x[:, 11:], h0=h_a)
    assert torch.allclose(torch.cat([y_a, y_b], dim=1), y_all, atol=1e-12)
    assert torch.allclose(h_b, h_all, atol=1e-12)


def test_inference_mode_forward_matches_training_forward() -> None:
    torch.manual_seed(0)
    model = URNN(URNNConfig(input_size=2, hidden_size=8, output_size=1))
    x = torch.randn(2, 20, 2)
    y_train, _ = model(x)
    with torch.inference_mode():
        y_infer, _ = model(x)
    assert torch.allclose(y_train.detach(), y_infer, atol=1e-6)


def test_bad_configs_name_the_field_and_allowed_values() -> None:
    with pytest.raises(URNNConfigError, match="unitary must be one of 'structured', 'full'"):
        URNNConfig(input_size=1, hidden_size=4, output_size=1, unitary="dense")  # type: ignore[arg-type]
    with pytest.raises(URNNConfigError, match="hidden_size must be a positive integer"):
        URNNConfig(input_size=1, hidden_size=0, output_size=1)
    with pytest.raises(URNNConfigError, match="recurrence must be one of 'fast', 'reference'"):
        URNNConfig(input_size=1, hidden_size=4, output_size=1, recurrence="slow")  # type: ignore[arg-type]


def test_bad_inputs_name_the_expected_shape() -> None:
    model = URNN(URNNConfig(input_size=3, hidden_size=4, output_size=1))
    with pytest.raises(InputShapeError, match="input_size=3"):
        model(torch.randn(2, 5, 4))
    with pytest.raises(InputShapeError, match="time >= 1"):
        model(torch.randn(2, 0, 3))
    with pytest.raises(InputShapeError, match="h0 must be a complex tensor"):
        model(torch.randn(2, 5, 3), h0=torch.zeros(2, 4))
