"""Unitary Evolution Recurrent Neural Network (uRNN).

References:
1) Arjovsky, Shah & Bengio, "Unitary Evolution Recurrent Neural Networks", ICML 2016,
   arXiv:1511.06464 -- the model, its structured unitary matrix, modReLU, the initialisation.
2) Wisdom, Powers, Hershey, Le Roux & Atlas, "Full-Capacity Unitary Recurrent Neural
   Networks", NeurIPS 2016, arXiv:1611.00035 -- why the O(n) product can be too narrow.
3) Lezcano-Casado & Martinez-Rubio, "Cheap Orthogonal Constraints in Neural Networks"
   (expRNN), ICML 2019, arXiv:1901.08428 -- the exponential map used for `unitary="full"`.

The recurrence is

    h_t = modReLU(W h_{t-1} + V x_t),    o_t = U [Re h_t; Im h_t] + b_o

with W unitary, so |W h| = |h|: the state keeps its norm and the Jacobian of a long chain of
steps neither vanishes nor explodes (up to what modReLU removes). States are complex; inside
this file a complex state h is also carried as the real pair s = [Re h, Im h] (2n values).

Three ways to run the same recurrence (`URNNConfig.recurrence`):
- `reference`: one complex operation after another, autograd through every step. For the
  structured form it applies the paper's FFT chain at every step. Kept because it is the
  obvious-to-read definition the other two are tested against.
- `python`: W is materialised once per forward pass in the real block form [[A, -B], [B, A]]
  (W = A + iB), all input projections V x_t are done in one matmul before the loop, and a custom
  autograd Function runs the step loop and the backward-through-time loop itself in real
  arithmetic, accumulating dW as one matmul after the loop.
- `fast` (default): the same loops compiled to C++ (`models.recurrence_cpp`, built on first
  use): a dense step (`addmm` + fused modReLU) for the full W, the paper's O(n log n) factor
  chain (input projection fused in) for the structured W with n a power of two. Falls back to
  `python`, with one logged warning, where the extension cannot be built, and off the CPU.
  docs/performance.md has the timings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.recurrence_cpp import (
    StructuredFactors,
    compiled_ops,
    dense_recurrence,
    grad_w_t_from_states,
    keeps_history,
    structured_recurrence,
)
from urnn_forecast.field_types import not_one_of

UnitaryKind = Literal["structured", "full"]
RecurrenceKind = Literal["fast", "reference", "python"]
UNITARY_KINDS: tuple[UnitaryKind, ...] = ("structured", "full")
RECURRENCE_KINDS: tuple[RecurrenceKind, ...] = ("fast", "reference", "python")


class URNNConfigError(ValueError):
    """A URNNConfig field holds a value the model cannot be built with."""


class InputShapeError(ValueError):
    """The input tensor handed to a model does not have the shape the model was built for."""


@dataclass
class URNNConfig:
    input_size: int
    hidden_size: int  # n complex units; the real state has 2n numbers
    output_size: int
    unitary: UnitaryKind = "structured"  # "structured": 7n parameters; "full": n^2
    # "fast": compiled C++ loop (Python loop if it cannot be built); "python": the Python loop;
    # "reference": the step-by-step complex definition. Same values, different speeds.
    recurrence: RecurrenceKind = "fast"
    # Added to |z|^2 inside the modulus: keeps d|z|/dz finite at z = 0, where the complex
    # `abs` has a NaN gradient. Small enough not to change the forward value noticeably.
    modrelu_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "output_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise URNNConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.unitary not in UNITARY_KINDS:
            raise URNNConfigError(not_one_of("unitary", self.unitary, UNITARY_KINDS))
        if self.recurrence not in RECURRENCE_KINDS:
            raise URNNConfigError(not_one_of("recurrence", self.recurrence, RECURRENCE_KINDS))
        if not self.modrelu_eps > 0:
            raise URNNConfigError(f"modrelu_eps must be > 0, got {self.modrelu_eps!r}")


def glorot_bound(fan_in: int, fan_out: int) -> float:
    return math.sqrt(6.0 / (fan_in + fan_out))


def complex_dtype_for(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


# -----------------------------------------------------------------------------
# modReLU


class ModReLU(nn.Module):
    """modReLU(z) = relu(|z| + b) * z / |z|: shrinks the modulus, keeps the phase.

    With b = 0 (the paper's initialisation) it is the identity, so the network starts as a
    purely unitary, norm-preserving system.
    """

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        self.eps = eps

    def forward(self, z: Tensor) -> Tensor:
        modulus = torch.sqrt(z.real.square() + z.imag.square() + self.eps)  # (B, n)
        return z * (F.relu(modulus + self.bias) / modulus)


# -----------------------------------------------------------------------------
# Unitary operators. Both act on row-batches of complex states: op(h) = (W h^T)^T.


class StructuredUnitary(nn.Module):
    """W = D3 R2 F^-1 D2 Pi R1 F D1 (the paper's eq. 6), 7n real parameters.

    D: diagonal phases e^{i w}; R: complex Householder reflections I - 2 v v* / |v|^2;
    F: unitary DFT; Pi: a fixed random permutation (a buffer, saved with the weights).
    """

    permutation: Tensor

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        n = hidden_size
        self.phases = nn.Parameter(torch.empty(3, n).uniform_(-math.pi, math.pi))  # D1, D2, D3
        # (reflection index, real/imag, n): v1 = r[0,0] + i r[0,1], v2 = r[1,0] + i r[1,1]
        self.reflections = nn.Parameter(torch.empty(2, 2, n).uniform_(-1.0, 1.0))
        self.register_buffer("permutation", torch.randperm(n))

    def _diagonal(self, k: int) -> Tensor:
        w = self.phases[k]
        return torch.complex(torch.cos(w), torch.sin(w))  # (n,)

    def _reflect(self, h: Tensor, k: int) -> Tensor:
        v = torch.complex(self.reflections[k, 0], self.reflections[k, 1])  # (n,)
        norm_sq = self.reflections[k].square().sum()
        projection = (h * v.conj()).sum(dim=-1, keepdim=True)  # v* h, (B, 1)
        return h - (2.0 / norm_sq) * projection * v

    def forward(self, h: Tensor) -> Tensor:
        h = h * self._diagonal(0)
        h = torch.fft.fft(h, norm="ortho")
        h = self._reflect(h, 0)
        h = h[..., self.permutation]
        h = h * self._diagonal(1)
        h = torch.fft.ifft(h, norm="ortho")
        h = self._reflect(h, 1)
        return h * self._diagonal(2)

    def matrix(self) -> Tensor:
        n = self.phases.shape[1]
        eye = torch.eye(n, dtype=complex_dtype_for(self.phases.dtype), device=self.phases.device)
        return self.forward(eye).transpose(0, 1)  # row j of op(I) is column j of W


class FullUnitary(nn.Module):
    """A full-capacity unitary W = exp(S), S skew-Hermitian (expRNN's parametrisation).

    n^2 real parameters, exactly the dimension of the unitary group U(n): the strictly lower
    triangle of `generator` gives the real antisymmetric part of S, the upper triangle with the
    diagonal its imaginary symmetric part. Initialised at a Haar-random unitary.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.generator = nn.Parameter(haar_unitary_generator(hidden_size))

    def skew_hermitian(self) -> Tensor:
        g = self.generator
        lower = torch.tril(g, diagonal=-1)
        upper = torch.triu(g)
        return torch.complex(lower - lower.T, upper + upper.T - torch.diag(torch.diagonal(g)))

    def matrix(self) -> Tensor:
        w: Tensor = torch.linalg.matrix_exp(self.skew_hermitian())
        return w

    def forward(self, h: Tensor) -> Tensor:
        return h @ self.matrix().transpose(0, 1)


@torch.no_grad()
def haar_unitary_generator(n: int) -> Tensor:
    """Generator G whose FullUnitary matrix is a Haar-random unitary (QR of a complex Gaussian).

    The principal logarithm of Q = V diag(e^{i theta}) V^H is S = V diag(i theta) V^H,
    skew-Hermitian; G packs S's independent entries as `FullUnitary.skew_hermitian` reads them.
    """
    z = torch.complex(
        torch.randn(n, n, dtype=torch.float64), torch.randn(n, n, dtype=torch.float64)
    )
    q, r = torch.linalg.qr(z)
    d = torch.diagonal(r)
    q = q * (d / d.abs())  # phase fix that makes the QR factor Haar distributed (Mezzadri 2007)
    eigenvalues, vectors = torch.linalg.eig(q)
    log_q = vectors @ torch.diag(1j * torch.angle(eigenvalues)) @ torch.linalg.inv(vectors)
    log_q = 0.5 * (log_q - log_q.conj().T)  # remove round-off: exactly skew-Hermitian
    generator = torch.tril(log_q.real, diagonal=-1) + torch.triu(log_q.imag, diagonal=1)
    generator = generator + torch.diag(torch.diagonal(log_q.imag))
    return generator.to(torch.get_default_dtype())


# -----------------------------------------------------------------------------
# The recurrence as one autograd node for the whole sequence (the Python loop; the compiled
# loops in models.recurrence_cpp have the same contract)


class UnitaryRecurrence(torch.autograd.Function):
    """s_t = modReLU(s_{t-1} @ M^T + u_t) over all t, in real pairs, with a hand-written BPTT.

    Time-major: u (T, B, 2n) the projected inputs; w_t = M^T (2n, 2n) the block form of W,
    transposed for row-batch states; bias (n,) modReLU bias; s0 (B, 2n) initial state; keep:
    whether to keep z_t for a backward pass. Returns all states (T, B, 2n).
    """

    @staticmethod
    def forward(
        ctx: Any, u: Tensor, w_t: Tensor, bias: Tensor, s0: Tensor, eps: float, keep: bool
    ) -> Tensor:
        steps, batch, two_n = u.shape
        n = two_n // 2
        z_all = torch.empty_like(u) if keep else u.new_empty(1, batch, two_n)
        states = torch.empty_like(u)
        for t in range(steps):
            z = z_all[t] if keep else z_all[0]
            torch.addmm(u[t], s0 if t == 0 else states[t - 1], w_t, out=z)  # (B, 2n)
            zr, zi = z[:, :n], z[:, n:]
            modulus = torch.sqrt(zr * zr + zi * zi + eps)  # (B, n)
            scale = F.relu(modulus + bias).div_(modulus)  # (B, n)
            torch.mul(z.view(batch, 2, n), scale.unsqueeze(1), out=states[t].view(batch, 2, n))
        if keep:
            ctx.save_for_backward(w_t, bias, s0, states, z_all)
            ctx.eps = eps
        return states

    @staticmethod
    def backward(ctx: Any, grad_states: Tensor) -> tuple[Tensor | None, ...]:
        w_t, bias, s0, states, z_all = ctx.saved_tensors
        eps: float = ctx.eps
        steps, two_n = z_all.shape[0], z_all.shape[2]
        n = two_n // 2
        dz_all = torch.empty_like(z_all)
        carry = torch.zeros_like(s0)  # dL/ds_t arriving from step t + 1
        grad_bias = torch.zeros_like(bias)
        for t in range(steps - 1, -1, -1):
            gs = grad_states[t] + carry
            gr, gi = gs[:, :n], gs[:, n:]
            z = z_all[t]
            zr, zi = z[:, :n], z[:, n:]
            modulus = torch.sqrt(zr * zr + zi * zi + eps)
            pre = modulus + bias
            active = (pre > 0).to(z.dtype)
            scale = F.relu(pre) / modulus  # g(r)
            # d s / d z = g I + (g'(r) / r) z z^T per unit, with g'(r) / r = (1[a>0] - g) / r^2
            radial = (gr * zr + gi * zi) * (active - scale) / (modulus * modulus)
            dz = dz_all[t]
            torch.addcmul(radial * zr, scale, gr, out=dz[:, :n])
            torch.addcmul(radial * zi, scale, gi, out=dz[:, n:])
            grad_bias += ((gr * zr + gi * zi) * active / modulus).sum(dim=0)
            carry = dz @ w_t.T  # dL/ds_{t-1}
        grad_w_t = grad_w_t_from_states(s0, states, dz_all) if ctx.needs_input_grad[1] else None
        return dz_all, grad_w_t, grad_bias, carry, None, None


def python_recurrence(u: Tensor, w_t: Tensor, bias: Tensor, s0: Tensor, eps: float) -> Tensor:
    """All states (T, B, 2n) of the Python loop; u (T, B, 2n) (see UnitaryRecurrence)."""
    keep = keeps_history(u, w_t, bias, s0)
    states: Tensor = UnitaryRecurrence.apply(u.contiguous(), w_t, bias, s0, eps, keep)  # type: ignore[no-untyped-call]  # torch leaves Function.apply untyped
    return states


def unitary_recurrence(u: Tensor, w_t: Tensor, bias: Tensor, s0: Tensor, eps: float) -> Tensor:
    """Batch-major entry point to the Python loop: u (B, T, 2n) -> states (B, T, 2n)."""
    return python_recurrence(u.transpose(0, 1), w_t, bias, s0, eps).transpose(0, 1)


def is_power_of_two(n: int) -> bool:
    return n >= 2 and n & (n - 1) == 0


def block_form_transposed(w: Tensor) -> Tensor:
    """M^T for M = [[A, -B], [B, A]], W = A + iB, so that [Re, Im](W h) = s @ M^T."""
    a, b = w.real.T, w.imag.T
    return torch.cat([torch.cat([a, b], dim=1), torch.cat([-b, a], dim=1)], dim=0)  # (2n, 2n)


# -----------------------------------------------------------------------------
# The network


class URNN(nn.Module):
    """A uRNN sequence model: `model(x) -> (y, h_last)`.

    x (B, T, input_size) -> y (B, T, output_size) read out at every step, h_last (B, n) the
    final complex state. Pass `h0` (B, n) complex to continue from an earlier call's state.
    """

    def __init__(self, config: URNNConfig) -> None:
        super().__init__()
        self.config = config
        n, m, p = config.hidden_size, config.input_size, config.output_size
        self.unitary: StructuredUnitary | FullUnitary = (
            StructuredUnitary(n) if config.unitary == "structured" else FullUnitary(n)
        )
        # V as one real map x -> [Re Vx; Im Vx]; Glorot on each of Re V and Im V
        self.input_map = nn.Linear(m, 2 * n, bias=False)
        nn.init.uniform_(self.input_map.weight, -glorot_bound(m, n), glorot_bound(m, n))
        self.modrelu = ModReLU(n, config.modrelu_eps)
        # learned h_0 as [Re; Im], U[-sqrt(3/2n), sqrt(3/2n)] per part so that E|h_0|^2 = 1
        h0_bound = math.sqrt(3.0 / (2 * n))
        self.initial_state = nn.Parameter(torch.empty(2 * n).uniform_(-h0_bound, h0_bound))
        self.readout = nn.Linear(2 * n, p)  # U [Re h; Im h] + b_o
        nn.init.uniform_(self.readout.weight, -glorot_bound(2 * n, p), glorot_bound(2 * n, p))
        nn.init.zeros_(self.readout.bias)

    def unitary_matrix(self) -> Tensor:
        """W as a complex (n, n) tensor."""
        return self.unitary.matrix()

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        states = self._time_major_states(x, h0)  # (T, B, 2n)
        n = self.config.hidden_size
        h_last = torch.complex(states[-1, :, :n], states[-1, :, n:])  # (B, n)
        y = self.readout(states)  # (T, B, p): one matmul on contiguous rows
        return y.transpose(0, 1).contiguous(), h_last

    def states(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        """All hidden states as real pairs [Re h_t, Im h_t], (B, T, 2n), a view of time-major."""
        return self._time_major_states(x, h0).transpose(0, 1)

    def _time_major_states(self, x: Tensor, h0: Tensor | None) -> Tensor:
        self._check_input(x)
        x_tb = x.transpose(0, 1)  # (T, B, m)
        s0 = self._initial_pairs(x.shape[0], h0)  # (B, 2n)
        kind = self.config.recurrence
        ops = compiled_ops() if kind == "fast" and x.device.type == "cpu" else None
        unitary, bias, eps = self.unitary, self.modrelu.bias, self.config.modrelu_eps
        if (
            ops is not None
            and isinstance(unitary, StructuredUnitary)
            and is_power_of_two(self.config.hidden_size)
        ):  # the structured loop: O(n log n) per step, input projection fused in
            grad_to_w = torch.is_grad_enabled() and any(
                p.requires_grad for p in unitary.parameters()
            )
            # the loop never reads M^T: it is built only to route dL/dW to autograd
            w_t = block_form_transposed(unitary.matrix()) if grad_to_w else x.new_empty(0)
            factors = StructuredFactors(
                unitary.phases.detach(), unitary.reflections.detach(), unitary.permutation
            )
            v = self.input_map.weight  # (2n, m)
            return structured_recurrence(ops, x_tb, v, w_t, bias, s0, factors, eps)
        u = self.input_map(x_tb)  # (T, B, 2n), V x_t for every t in one matmul
        if kind == "reference":
            return self._reference_states(u, s0)
        w_t = block_form_transposed(unitary.matrix())
        if ops is None:
            return python_recurrence(u, w_t, bias, s0, eps)
        return dense_recurrence(ops, u, w_t, bias, s0, eps)

    def _reference_states(self, u: Tensor, s0: Tensor) -> Tensor:
        n = self.config.hidden_size
        h = torch.complex(s0[:, :n], s0[:, n:])
        uc = torch.complex(u[..., :n], u[..., n:])  # (T, B, n)
        structured = isinstance(self.unitary, StructuredUnitary)
        w_t = None if structured else self.unitary.matrix().transpose(0, 1)
        out = []
        for t in range(u.shape[0]):
            wh = self.unitary(h) if w_t is None else h @ w_t
            h = self.modrelu(wh + uc[t])
            out.append(torch.cat([h.real, h.imag], dim=-1))
        return torch.stack(out, dim=0)  # (T, B, 2n)

    def _initial_pairs(self, batch: int, h0: Tensor | None) -> Tensor:
        n = self.config.hidden_size
        if h0 is None:
            return self.initial_state.expand(batch, 2 * n)
        if not h0.is_complex() or h0.shape != (batch, n):
            raise InputShapeError(
                f"h0 must be a complex tensor of shape (batch={batch}, hidden_size={n}); "
                f"got dtype {h0.dtype} and shape {tuple(h0.shape)}"
            )
        return torch.cat([h0.real, h0.imag], dim=-1).to(self.initial_state.dtype)

    def _check_input(self, x: Tensor) -> None:
        m = self.config.input_size
        if x.dim() != 3 or x.shape[-1] != m or x.shape[1] < 1:
            raise InputShapeError(
                f"x must have shape (batch, time >= 1, input_size={m}); got {tuple(x.shape)}"
            )


def parameter_count(config: URNNConfig) -> int:
    """Trainable parameters of URNN(config), by the formula in docs/model.md.

    W: 7n structured (3n phases + 2 x 2n reflection entries) or n^2 full; V: 2nm;
    modReLU bias: n; h_0: 2n; read-out: 2np + p.
    """
    n, m, p = config.hidden_size, config.input_size, config.output_size
    unitary = 7 * n if config.unitary == "structured" else n * n
    return unitary + 2 * n * m + n + 2 * n + 2 * n * p + p
