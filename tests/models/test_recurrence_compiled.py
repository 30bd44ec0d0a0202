"""The compiled recurrence (models.recurrence_cpp) equals the step-by-step reference.

Every path of `URNNConfig.recurrence` is compared with `reference`: the compiled structured
loop (structured W, n a power of two), the compiled dense loop (full W, or a structured W with
n not a power of two) and the Python loop. The first test that needs the extension builds it
(once per machine, cached on disk); where it cannot be built these tests skip with the reason.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor

from models import recurrence_cpp
from models.recurrence_cpp import (
    CompiledOps,
    ExtensionBuildError,
    StructuredFactors,
    compiled_ops,
    dense_recurrence,
    structured_recurrence,
)
from models.urnn import (
    URNN,
    RecurrenceKind,
    StructuredUnitary,
    UnitaryKind,
    URNNConfig,
    URNNConfigError,
    block_form_transposed,
)

# (unitary, n): which compiled loop each case exercises
CASES: list[tuple[UnitaryKind, int]] = [
    ("structured", 16),  # structured loop, own FFT
    ("structured", 2),  # structured loop, smallest FFT
    ("structured", 12),  # not a power of two: dense loop on the materialised W
    ("full", 16),  # dense loop
]
FAST_PATHS: list[RecurrenceKind] = ["fast", "python"]


@pytest.fixture(scope="module")
def ops() -> CompiledOps:
    compiled = compiled_ops()
    if compiled is None:
        # CI has a compiler: there a failed build is a failure, never a quiet skip. A developer
        # machine without one still runs the rest of the suite on the Python loop.
        message = "the C++ recurrence could not be built here (see the logged warning)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return compiled


def make_model(unitary: UnitaryKind, n: int, dtype: torch.dtype = torch.float64) -> URNN:
    torch.manual_seed(0)
    model = URNN(URNNConfig(input_size=3, hidden_size=n, output_size=2, unitary=unitary))
    with torch.no_grad():
        model.modrelu.bias.uniform_(-0.5, 0.5)  # some units switched off, some shrunk
    return model.to(dtype)


def outputs_and_grads(model: URNN, x: Tensor, recurrence: RecurrenceKind) -> list[Tensor]:
    """[y, h_last as real pairs, dL/dp for every parameter] for a loss touching every output."""
    model.config.recurrence = recurrence
    y, h_last = model(x)
    loss = y.square().sum() + h_last.abs().sum()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return [y.detach(), torch.view_as_real(h_last.detach()), *grads]


def relative_error(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max |b|, computed in float64."""
    b64 = b.double()
    return float((a.double() - b64).abs().max() / b64.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("with_input", [True, False])
@pytest.mark.parametrize("batch", [5, 19])  # one partial block of lanes; several blocks
@pytest.mark.parametrize(("unitary", "n"), CASES)
def test_every_path_equals_the_reference_in_float64(
    ops: CompiledOps, unitary: UnitaryKind, n: int, batch: int, with_input: bool
) -> None:
    model = make_model(unitary, n)
    x = torch.randn(batch, 30, 3, dtype=torch.float64) * float(with_input)
    expected = outputs_and_grads(model, x, "reference")
    for recurrence in FAST_PATHS:
        got = outputs_and_grads(model, x, recurrence)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize(("unitary", "n"), CASES)
def test_float32_is_as_accurate_as_the_float32_reference(
    ops: CompiledOps, unitary: UnitaryKind, n: int
) -> None:
    # Measured against the float64 reference. Outputs and h_last: 1e-5. Gradients sum T x B =
    # 200 float32 products per weight, in an order (and with FMA contraction) that depends on
    # the CPU the extension was built for: 3e-5 (~500 float32 ulps; measured 1.1e-5 for one
    # structured gradient on an AMD EPYC, under 1e-5 on a Sapphire Rapids). Where float32
    # itself cannot reach that (the full W's gradients pass through matrix_exp's float32
    # backward and lose ~5e-4 in every implementation), the bound is the float32 reference's
    # own error, with a factor 3.
    model64 = make_model(unitary, n)
    model32 = copy.deepcopy(model64).float()
    x = torch.randn(5, 40, 3, dtype=torch.float64)
    truth = outputs_and_grads(model64, x, "reference")
    reference32 = outputs_and_grads(model32, x.float(), "reference")
    for recurrence in FAST_PATHS:
        got = outputs_and_grads(model32, x.float(), recurrence)
        for index, (a, ref32, b) in enumerate(zip(got, reference32, truth, strict=True)):
            error, bound = relative_error(a, b), max(3e-5, 3 * relative_error(ref32, b))
            assert error < bound, f"{recurrence} output/grad #{index}: {error:.1e} >= {bound:.1e}"
        for a, b in zip(got[:2], truth[:2], strict=True):  # outputs and h_last: 1e-5 always
            assert relative_error(a, b) < 1e-5


@pytest.mark.parametrize("recurrence", FAST_PATHS)
@pytest.mark.parametrize(("unitary", "n"), CASES)
def test_state_carried_across_calls_equals_one_call(
    ops: CompiledOps, unitary: UnitaryKind, n: int, recurrence: RecurrenceKind
) -> None:
    model = make_model(unitary, n)
    model.config.recurrence = recurrence
    x = torch.randn(3, 30, 3, dtype=torch.float64)
    y_all, h_all = model(x)
    y_a, h_a = model(x[:, :11])
    y_b, h_b = model(x[:, 11:23], h0=h_a)
    y_c, h_c = model(x[:, 23:], h0=h_b)
    torch.testing.assert_close(torch.cat([y_a, y_b, y_c], dim=1), y_all, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_c, h_all, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("unitary", "n"), CASES)
def test_gradient_reaching_h0_equals_the_reference(
    ops: CompiledOps, unitary: UnitaryKind, n: int
) -> None:
    model = make_model(unitary, n)
    x = torch.randn(4, 12, 3, dtype=torch.float64)
    h0_value = torch.randn(4, n, dtype=torch.complex128)
    grads = []
    for recurrence in ["reference", *FAST_PATHS]:
        model.config.recurrence = recurrence
        h0 = h0_value.clone().requires_grad_()
        y, h_last = model(x, h0=h0)
        (grad,) = torch.autograd.grad(y.square().sum() + h_last.abs().sum(), h0)
        grads.append(grad)
    for grad in grads[1:]:
        torch.testing.assert_close(grad, grads[0], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize(("unitary", "n"), CASES)
def test_inference_mode_forward_equals_the_training_forward(
    ops: CompiledOps, unitary: UnitaryKind, n: int
) -> None:
    model = make_model(unitary, n, torch.float32)
    x = torch.randn(7, 25, 3)
    y_train, h_train = model(x)
    with torch.inference_mode():
        y_infer, h_infer = model(x)
    with torch.no_grad():
        y_nograd, _ = model(x)
    torch.testing.assert_close(y_infer, y_train.detach(), atol=0, rtol=0)
    torch.testing.assert_close(h_infer, h_train.detach(), atol=0, rtol=0)
    torch.testing.assert_close(y_nograd, y_train.detach(), atol=0, rtol=0)


class SpyOps(CompiledOps):
    """The real ops, recording the keep_z flag of each forward call."""

    def __init__(self, real: CompiledOps) -> None:
        super().__init__(real._ops)
        self.keep_z: list[bool] = []

    def dense_forward(self, *args: Any) -> tuple[Tensor, Tensor]:
        self.keep_z.append(args[-1])
        return super().dense_forward(*args)

    def structured_forward(self, *args: Any) -> tuple[Tensor, Tensor]:
        self.keep_z.append(args[-1])
        return super().structured_forward(*args)


@pytest.mark.parametrize(("unitary", "n"), [("structured", 16), ("full", 16)])
def test_forward_without_grad_keeps_no_pre_activation_history(
    ops: CompiledOps, unitary: UnitaryKind, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = SpyOps(ops)
    monkeypatch.setattr("models.urnn.compiled_ops", lambda: spy)
    model = make_model(unitary, n, torch.float32)
    x = torch.randn(2, 9, 3)
    with torch.inference_mode():
        model(x)
    with torch.no_grad():
        model(x)
    model(x)
    assert spy.keep_z == [False, False, True]
    _, z_all = ops.dense_forward(
        torch.zeros(9, 2, 2 * n),
        torch.eye(2 * n),
        torch.zeros(n),
        torch.ones(2, 2 * n),
        1e-5,
        False,
    )
    assert z_all.numel() == 0


@pytest.mark.parametrize("upstream", ["strided", "expanded"])
def test_states_accept_any_upstream_gradient_layout(ops: CompiledOps, upstream: str) -> None:
    model = make_model("structured", 16)
    x = torch.randn(5, 20, 3, dtype=torch.float64)
    weights = torch.randn(5, 20, 32, dtype=torch.float64)
    used = [p for name, p in model.named_parameters() if not name.startswith("readout.")]
    grads = {}
    for recurrence in ["reference", *FAST_PATHS]:
        model.config.recurrence = recurrence
        states = model.states(x)  # (B, T, 2n), a view of time-major states
        # batch-major weights reach the loop as strided time-major rows; sum() as a gradient
        # whose every stride is 0
        loss = (states * weights).sum() if upstream == "strided" else states.sum()
        grads[recurrence] = torch.autograd.grad(loss, used)
    for recurrence in FAST_PATHS:
        for a, b in zip(grads[recurrence], grads["reference"], strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_dense_loop_passes_gradcheck(ops: CompiledOps) -> None:
    torch.manual_seed(0)
    u = torch.randn(6, 3, 8, dtype=torch.float64, requires_grad=True)
    w_t = torch.randn(8, 8, dtype=torch.float64, requires_grad=True)
    bias = (torch.rand(4, dtype=torch.float64) - 0.5).requires_grad_()
    s0 = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda u, w, b, s: dense_recurrence(ops, u, w, b, s, 1e-5), (u, w_t, bias, s0)
    )


def test_structured_loop_passes_gradcheck(ops: CompiledOps) -> None:
    # The structured loop routes dL/dW through M^T(phases, reflections), whose values it never
    # reads: gradcheck has to perturb the factors themselves.
    torch.manual_seed(0)
    n, m = 8, 3
    unitary = StructuredUnitary(n).double()
    x = torch.randn(5, 3, m, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2 * n, m, dtype=torch.float64, requires_grad=True)
    bias = (torch.rand(n, dtype=torch.float64) - 0.5).requires_grad_()
    s0 = torch.randn(3, 2 * n, dtype=torch.float64, requires_grad=True)
    phases = unitary.phases.detach().clone().requires_grad_()
    reflections = unitary.reflections.detach().clone().requires_grad_()

    def run(
        x: Tensor, v: Tensor, phases: Tensor, reflections: Tensor, bias: Tensor, s0: Tensor
    ) -> Tensor:
        params = {"phases": phases, "reflections": reflections}
        eye = torch.eye(n, dtype=torch.complex128)
        matrix = torch.func.functional_call(unitary, params, (eye,)).transpose(0, 1)  # W
        factors = StructuredFactors(phases.detach(), reflections.detach(), unitary.permutation)
        w_t = block_form_transposed(matrix)
        return structured_recurrence(ops, x, v, w_t, bias, s0, factors, 1e-5)

    assert torch.autograd.gradcheck(run, (x, v, phases, reflections, bias, s0))


def test_structured_and_dense_loops_agree_on_long_sequences(ops: CompiledOps) -> None:
    torch.manual_seed(0)
    n, m = 32, 5
    unitary = StructuredUnitary(n).double()
    x = torch.randn(2000, 4, m, dtype=torch.float64)
    v = torch.randn(2 * n, m, dtype=torch.float64) * 0.2
    bias = torch.rand(n, dtype=torch.float64) - 0.5
    s0 = torch.randn(4, 2 * n, dtype=torch.float64)
    w_t = block_form_transposed(unitary.matrix()).detach()
    factors = StructuredFactors(
        unitary.phases.detach(), unitary.reflections.detach(), unitary.permutation
    )
    with torch.inference_mode():
        dense = dense_recurrence(ops, x @ v.T, w_t, bias, s0, 1e-5)
        structured = structured_recurrence(ops, x, v, w_t, bias, s0, factors, 1e-5)
    torch.testing.assert_close(structured, dense, atol=1e-9, rtol=0)  # round-off, no drift


def test_partial_lane_blocks_stay_finite_over_long_sequences(ops: CompiledOps) -> None:
    # 3 samples fill part of one block of lanes. With a positive modReLU bias the derivative
    # amplifies whatever sits in a lane step after step: nothing from the unused lanes may
    # reach the results.
    model = make_model("structured", 32, torch.float32)
    with torch.no_grad():
        model.modrelu.bias.fill_(0.5)
    x = torch.randn(3, 300, 3)
    got = outputs_and_grads(model, x, "fast")
    expected = outputs_and_grads(model, x, "python")
    # A leak from the unused lanes would blow up (inf or O(1) errors); what remains is float32
    # round-off amplified over 300 steps, which depends on the compiler's summation order
    # (1.1e-4 measured on one build), hence 5e-4 rather than a tighter bound.
    for a, b in zip(got, expected, strict=True):
        assert bool(torch.isfinite(a).all())
        assert relative_error(a, b) < 5e-4


@pytest.fixture
def no_compiler(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """compiled_ops() as on a machine where every build fails; the real one is restored."""

    def fail() -> CompiledOps:
        raise ExtensionBuildError("[-O3] RuntimeError: no C++ compiler here")

    compiled_ops.cache_clear()
    monkeypatch.setattr(recurrence_cpp, "load_extension", fail)
    yield
    monkeypatch.undo()
    compiled_ops.cache_clear()


@pytest.mark.usefixtures("no_compiler")
def test_without_a_compiler_fast_falls_back_to_the_python_loop_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = make_model("structured", 16)
    x = torch.randn(3, 10, 3, dtype=torch.float64)
    with caplog.at_level(logging.WARNING, logger=recurrence_cpp.__name__):
        fast = outputs_and_grads(model, x, "fast")
        outputs_and_grads(model, x, "fast")
    warnings = [r for r in caplog.records if "using the Python loop" in r.getMessage()]
    assert len(warnings) == 1
    assert "no C++ compiler here" in warnings[0].getMessage()
    for a, b in zip(fast, outputs_and_grads(model, x, "reference"), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_a_cpp_extension_that_cannot_be_imported_is_a_build_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch.utils.cpp_extension imports setuptools: in an environment without it (a model
    loaded with `mlflow.pyfunc.load_model` elsewhere) the first forward raised
    ModuleNotFoundError instead of falling back to the Python loop."""
    import sys

    import torch.utils

    monkeypatch.delattr(torch.utils, "cpp_extension", raising=False)
    monkeypatch.setitem(sys.modules, "torch.utils.cpp_extension", None)  # import fails
    with pytest.raises(
        ExtensionBuildError, match="cpp_extension cannot be imported: ModuleNotFoundError"
    ):
        recurrence_cpp.build_inline(
            lambda variant: f"urnn_never_built_{variant}",
            "",
            what="nothing",
            python_module=True,
            openmp=False,
        )


def test_config_accepts_every_recurrence_and_lists_them_on_error() -> None:
    kinds: list[RecurrenceKind] = ["fast", "python", "reference"]
    for recurrence in kinds:
        URNNConfig(input_size=1, hidden_size=4, output_size=1, recurrence=recurrence)
    with pytest.raises(
        URNNConfigError, match="recurrence must be one of 'fast', 'reference', 'python'"
    ):
        URNNConfig(input_size=1, hidden_size=4, output_size=1, recurrence="compiled")  # type: ignore[arg-type]


def test_a_build_lock_left_by_a_dead_process_is_removed_not_waited_on(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """torch waits forever on its `lock` file; one left by a process killed mid-build would
    hang every later load. Under `exclusive_build` a `lock` file is stale by construction."""
    import subprocess
    import sys

    from torch.utils import cpp_extension

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    directory = cpp_extension._get_build_directory("urnn_test_ext", False)
    # a build killed while holding both locks: ours dies with the process, torch's stays
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from models.recurrence_cpp import exclusive_build\n"
            "with exclusive_build('urnn_test_ext'):\n"
            f"    open(os.path.join({directory!r}, 'lock'), 'w').close(); os._exit(9)",
        ],
        env={**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)},
        check=False,
        timeout=120,
    )
    assert killed.returncode == 9
    assert os.path.exists(os.path.join(directory, "lock"))
    with (
        caplog.at_level(logging.WARNING, logger="models.recurrence_cpp"),
        recurrence_cpp.exclusive_build("urnn_test_ext"),  # would block if not released
    ):
        assert not os.path.exists(os.path.join(directory, "lock"))
    assert "a build lock left by a process that died while compiling" in caplog.text


def test_each_torch_install_builds_in_its_own_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = recurrence_cpp.machine_fingerprint()
    monkeypatch.setattr(torch, "__file__", "/elsewhere/site-packages/torch/__init__.py")
    assert recurrence_cpp.machine_fingerprint() != mine


def test_builds_find_the_environments_own_ninja_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """`.venv/bin/urnn` started by its full path has no `.venv/bin` on PATH, where pip put
    ninja: the build failed and the recurrence ran as the Python loop (an audit's)."""
    import os
    import sysconfig

    from models.recurrence_cpp import environment_tools_first

    scripts = sysconfig.get_path("scripts")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with environment_tools_first():
        assert os.environ["PATH"].split(os.pathsep)[0] == scripts
    assert os.environ["PATH"] == "/usr/bin:/bin"  # put back after the build
    monkeypatch.setenv("PATH", os.pathsep.join([scripts, "/usr/bin"]))
    with environment_tools_first():
        assert os.environ["PATH"] == os.pathsep.join([scripts, "/usr/bin"])  # already first
