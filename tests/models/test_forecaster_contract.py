"""One contract, every forecaster kind: shapes, finite and monotone quantiles, determinism,
state-dict and checkpoint round trips without pickle, and the equivariances that the
per-window normalisation promises. Then the pieces: config errors, baselines, calendar."""

from __future__ import annotations

import fractions
import io
import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from models.forecaster import (
    FORECASTER_KINDS,
    FORECASTERS,
    CheckpointError,
    Decoder,
    Forecaster,
    ForecasterConfig,
    ForecasterConfigError,
    ForecasterKind,
    GatedEncoder,
    ModelConfigError,
    NaiveForecaster,
    RecurrentForecaster,
    build_forecaster,
    calendar_features,
    calendar_periods,
    load_checkpoint,
    load_forecaster,
    monotone_quantiles,
    n_calendar_features,
    save_checkpoint,
    scale_gaps,
)
from models.urnn import InputShapeError

L, H, B = 24, 6, 3
Inputs = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]


def config_for(kind: ForecasterKind, **overrides: Any) -> ForecasterConfig:
    """A tiny config using every input the kind can read."""
    cls = FORECASTERS[kind]
    options: dict[str, Any] = {
        "kind": kind,
        "lookback": L,
        "horizon": H,
        "hidden_size": 8,
        "segment_length": 6,
        "season_length": 12,
        "recurrence": "python",  # no C++ build inside the unit tests
        "n_past_covariates": 2 if cls.SUPPORTS_PAST_COVARIATES else 0,
        "n_calendar": 4 if cls.SUPPORTS_CALENDAR else 0,
        "decomposition_kernel": 5 if kind == "linear" else 0,
    }
    return ForecasterConfig(**{**options, **overrides})


def inputs_for(
    config: ForecasterConfig, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Inputs:
    g = torch.Generator().manual_seed(seed)
    target = 5.0 + 2.0 * torch.randn(B, L, generator=g, dtype=dtype)
    c, k = config.n_past_covariates, config.n_calendar
    covariates = torch.randn(B, L, c, generator=g, dtype=dtype) if c else None
    past_cal = torch.randn(B, L, k, generator=g, dtype=dtype) if k else None
    future_cal = torch.randn(B, H, k, generator=g, dtype=dtype) if k else None
    return target, covariates, past_cal, future_cal


def built(config: ForecasterConfig, seed: int = 0) -> Forecaster:
    torch.manual_seed(seed)
    model = build_forecaster(config)
    if isinstance(model, NaiveForecaster):  # non-zero offsets, so round trips test something
        model.calibrate_offsets(torch.randn(50, H, generator=torch.Generator().manual_seed(seed)))
    return model.eval()


@pytest.mark.parametrize("kind", FORECASTER_KINDS)
def test_shapes_finite_and_monotone_quantiles(kind: ForecasterKind) -> None:
    config = config_for(kind)
    out = built(config)(*inputs_for(config))
    assert out.shape == (B, H, len(config.quantiles))
    assert torch.isfinite(out).all()
    assert (out.diff(dim=-1) >= 0).all()


@pytest.mark.parametrize("kind", FORECASTER_KINDS)
def test_point_forecast_is_the_median(kind: ForecasterKind) -> None:
    config = config_for(kind, quantiles=(0.05, 0.25, 0.5, 0.75, 0.95))
    model, x = built(config), inputs_for(config)
    assert torch.equal(model.point_forecast(*x), model(*x)[..., 2])


@pytest.mark.parametrize("kind", FORECASTER_KINDS)
def test_same_seed_same_forecast(kind: ForecasterKind) -> None:
    config = config_for(kind)
    x = inputs_for(config)
    assert torch.equal(built(config, seed=1)(*x), built(config, seed=1)(*x))
    if FORECASTERS[kind].TRAINABLE:
        assert not torch.equal(built(config, seed=1)(*x), built(config, seed=2)(*x))


@pytest.mark.parametrize("kind", FORECASTER_KINDS)
def test_state_dict_round_trip_without_pickle(kind: ForecasterKind) -> None:
    config = config_for(kind)
    original = built(config, seed=3)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    config_json = json.loads(json.dumps(config.to_dict()))
    torch.manual_seed(4)  # a different initialisation, overwritten by the state dict
    restored = load_forecaster(config_json, state)
    x = inputs_for(config)
    assert torch.equal(original(*x), restored(*x))


@pytest.mark.parametrize("kind", ["urnn", "seasonal_naive"])
def test_checkpoint_directory_round_trip(kind: ForecasterKind, tmp_path: Path) -> None:
    config = config_for(kind)
    original = built(config, seed=5)
    save_checkpoint(original, tmp_path, extra={"freq": "h"})
    restored, meta = load_checkpoint(tmp_path)
    assert meta["freq"] == "h" and meta["model"] == config.to_dict()
    x = inputs_for(config)
    assert torch.equal(original(*x), restored(*x))


def corrupt_weights(path: Path, how: str) -> None:
    """Damage a weights.pt as disks, copies and other writers do."""
    data = path.read_bytes()
    if how == "junk":
        path.write_bytes(b"not a state dict")
    elif how == "random":
        path.write_bytes(np.random.default_rng(7).bytes(len(data)))
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "pickled":  # a class torch's weights-only reader refuses to build
        state = torch.load(path, weights_only=True)
        torch.save({**state, "note": fractions.Fraction(1, 3)}, path)
    else:
        raise ValueError(f"unknown corruption {how!r}")


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("random", "(not a torch checkpoint: Unsupported operand "),
        ("truncated", "(truncated or damaged archive"),
        ("junk", "(not a torch checkpoint: Unsupported operand "),
        ("empty", "(the file is empty)"),
        ("pickled", "(it pickles a fractions.Fraction, which is not a tensor)"),
        ("list", "(it holds a list, not a dict of tensors)"),
        ("number", "(entry 'note' is an int, not a tensor)"),
    ],
)
def test_a_damaged_weights_file_is_one_line_in_our_words(
    how: str, reason: str, tmp_path: Path
) -> None:
    """torch's message for a corrupt weights.pt ran to several lines and advised re-running
    torch.load with weights_only=False ("...arbitrary code execution... Please file an
    issue"): the file is named, with why, and what to do instead."""
    save_checkpoint(built(config_for("urnn"), seed=5), tmp_path)
    weights = tmp_path / "weights.pt"
    state = torch.load(weights, weights_only=True)
    if how == "empty":
        weights.write_bytes(b"")
    elif how == "list":
        torch.save(list(state.values()), weights)
    elif how == "number":
        torch.save({**state, "note": 3}, weights)
    else:
        corrupt_weights(weights, how)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{weights} is not a readable state dict of tensors {reason}")
    assert message.endswith(
        "; register a new version (urnn train) or move the alias to one that loads "
        "(urnn models promote)"
    )
    assert "\n" not in message and "weights_only" not in message and "issue" not in message
    error = raised.value  # nor torch's text chained below it in a traceback
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


@pytest.mark.parametrize("cut", [0.05, 0.3, 0.6, 0.9, 0.99])
def test_a_weights_file_cut_anywhere_is_said_to_be_truncated(cut: float, tmp_path: Path) -> None:
    """Cut late, torch's reader raised a bare OSError "[Errno 22] Invalid argument" (read
    as a disk error, and passed on as it was)."""
    save_checkpoint(built(config_for("urnn"), seed=5), tmp_path)
    weights = tmp_path / "weights.pt"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError, match=r"tensors \(truncated or damaged archive"):
        load_checkpoint(tmp_path)


def test_a_missing_weights_file_is_still_file_not_found(tmp_path: Path) -> None:
    save_checkpoint(built(config_for("urnn"), seed=5), tmp_path)
    (tmp_path / "weights.pt").unlink()
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path)


def test_loading_weights_runs_no_pickled_code(tmp_path: Path) -> None:
    """The no-pickle guarantee stays: an object whose unpickling would run code is refused,
    and the code never runs."""
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (Path.touch, (str(ran),))

    save_checkpoint(built(config_for("urnn"), seed=5), tmp_path)
    weights = tmp_path / "weights.pt"
    torch.save({"payload": Payload()}, weights)
    with pytest.raises(CheckpointError, match=r"\(it pickles a [\w.]+, which is not a tensor\)"):
        load_checkpoint(tmp_path)
    assert not ran.exists()


def test_a_weights_file_built_to_run_a_command_is_said_to_pickle_it(tmp_path: Path) -> None:
    """torch blocks os.system's module outright, with a text of its own ("unsupported GLOBAL
    posix.system whose module posix is blocked"): it was said to be a "truncated or damaged
    archive" (a contract walk-through)."""
    import os

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    save_checkpoint(built(config_for("urnn"), seed=5), tmp_path)
    torch.save({"payload": Payload()}, tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match=r"\(it pickles a \w+\.system, which is not a tensor"):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{bad", "(not JSON: "),
        ("[1, 2]", "(it holds a JSON list, not an object)"),
        ('{"x": 1}', "(no 'model' object)"),
    ],
)
def test_a_config_that_is_no_models_is_one_line_naming_it(
    text: str, reason: str, tmp_path: Path
) -> None:
    """A bare KeyError: 'model' or JSONDecodeError reached `urnn backtest --model DIR` as a
    traceback naming neither the file nor what is wrong with it."""
    save_checkpoint(built(config_for("urnn"), seed=5), tmp_path)
    config = tmp_path / "config.json"
    config.write_text(text)
    with pytest.raises(ModelConfigError) as raised:
        load_checkpoint(tmp_path)
    assert str(raised.value).startswith(f"{config} is not a model's config.json {reason}")


@pytest.mark.parametrize("kind", FORECASTER_KINDS)
def test_instance_normalisation_makes_forecasts_scale_equivariant(kind: ForecasterKind) -> None:
    """forecast(a x + b) = a forecast(x) + b for a > 0 (covariates and calendar unchanged)."""
    config = config_for(kind, normalisation="instance")
    model = built(config).double()
    target, *rest = inputs_for(config, dtype=torch.float64)
    a, b = 3.5, -20.0
    expected = a * model(target, *rest) + b
    torch.testing.assert_close(model(a * target + b, *rest), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", FORECASTER_KINDS)
def test_last_value_normalisation_makes_forecasts_shift_equivariant(kind: ForecasterKind) -> None:
    config = config_for(kind, normalisation="last")
    model = built(config).double()
    target, *rest = inputs_for(config, dtype=torch.float64)
    torch.testing.assert_close(
        model(target + 7.0, *rest), model(target, *rest) + 7.0, rtol=1e-9, atol=1e-9
    )


def test_inputs_of_the_wrong_shape_are_refused_with_the_expected_shape() -> None:
    config = config_for("urnn")
    model = built(config)
    target, covariates, past_cal, future_cal = inputs_for(config)
    assert future_cal is not None
    with pytest.raises(
        InputShapeError, match=r"past_target must have shape \(batch, lookback=24\)"
    ):
        model(target[:, 1:], covariates, past_cal, future_cal)
    with pytest.raises(InputShapeError, match=r"past_covariates must have shape \(3, 24, 2\)"):
        model(target, None, past_cal, future_cal)
    with pytest.raises(InputShapeError, match=r"future_calendar must have shape \(3, 6, 4\)"):
        model(target, covariates, past_cal, future_cal[:, :2])
    linear = built(config_for("linear"))
    with pytest.raises(InputShapeError, match="past_covariates must be None"):
        linear(target, covariates)


# --- the quantile construction and the baselines ----------------------------------------------


def test_monotone_quantiles_keep_the_median_and_order_the_rest() -> None:
    raw = torch.tensor([[[-3.0, 2.0, 0.5, -1.0, 4.0]]])  # median index 2
    q = monotone_quantiles(raw, 2)
    assert q[0, 0, 2] == 0.5
    assert (q.diff(dim=-1) > 0).all()
    softplus = torch.nn.functional.softplus
    assert torch.isclose(q[0, 0, 1], 0.5 - softplus(torch.tensor(2.0)))
    assert torch.isclose(
        q[0, 0, 0], 0.5 - softplus(torch.tensor(2.0)) - softplus(torch.tensor(-3.0))
    )


def test_baselines_forecast_the_textbook_rules() -> None:
    x = torch.arange(1.0, L + 1).unsqueeze(0)  # 1..24
    repeat = build_forecaster(config_for("repeat_last", normalisation="none"))
    assert torch.equal(repeat.point_forecast(x), torch.full((1, H), 24.0))
    seasonal = build_forecaster(config_for("seasonal_naive", season_length=4, normalisation="none"))
    # one season back: 21, 22, 23, 24, then again 21, 22
    assert seasonal.point_forecast(x).tolist() == [[21.0, 22.0, 23.0, 24.0, 21.0, 22.0]]


def test_calibrated_offsets_are_monotone_with_a_zero_median() -> None:
    model = build_forecaster(config_for("repeat_last"))
    assert isinstance(model, NaiveForecaster)
    residuals = torch.randn(400, H, generator=torch.Generator().manual_seed(0)) + 0.5
    model.calibrate_offsets(residuals)
    offsets = model.offsets
    assert torch.all(offsets[:, 1] == 0)
    assert torch.all(offsets[:, 0] <= 0) and torch.all(offsets[:, 2] > 0)
    expected_upper = torch.quantile(residuals.double(), 0.9, dim=0).float()
    torch.testing.assert_close(offsets[:, 2], expected_upper)


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"quantiles": (0.1, 0.9)}, r"must include 0.5"),
        ({"quantiles": (0.5, 0.1)}, r"strictly increasing"),
        ({"quantiles": (0.0, 0.5)}, r"values in \(0, 1\)"),
        ({"lookback": 25}, r"lookback must be a multiple of segment_length"),
        ({"normalisation": "revin"}, r"normalisation must be one of 'instance', 'last', 'none'"),
        ({"dropout": 1.0}, r"dropout must lie in \[0, 1\)"),
        ({"hidden_size": 0}, r"hidden_size must be an integer from 1 to 8,192, got 0"),
        ({"hidden_size": 10**8}, r"hidden_size must be an integer from 1 to 8,192, got 100000000"),
        ({"ensemble": 10**8}, r"ensemble must be an integer from 1 to 100, got 100000000"),
    ],
)
def test_invalid_configs_name_the_field_and_the_options(
    overrides: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(ForecasterConfigError, match=pattern):
        config_for("urnn", **overrides)


@pytest.mark.parametrize("kind", ["urnn", "urnn-full", "lstm", "urnn-stream"])
def test_a_long_lookback_the_segment_length_does_not_divide_names_values_that_fit(
    kind: ForecasterKind,
) -> None:
    """A power-of-two look-back against the default segment length of 24 is refused with the
    nearest segment lengths that divide it and the nearest look-backs that 24 divides, each
    of which the config then accepts."""
    with pytest.raises(ForecasterConfigError) as caught:
        ForecasterConfig(kind=kind, lookback=4096, horizon=24)
    message = str(caught.value)
    assert "such as 16 (256 recurrent steps) or 32 (128 recurrent steps)" in message
    assert "a lookback that 24 divides, such as 4,080 or 4,104" in message
    for segment in (16, 32):
        assert ForecasterConfig(kind=kind, lookback=4096, horizon=24, segment_length=segment)
    for lookback in (4080, 4104):
        assert ForecasterConfig(kind=kind, lookback=lookback, horizon=24).lookback == lookback


@pytest.mark.parametrize(("kind", "decoder"), [("lstm", "direct"), ("gru", "pmf"), ("lstm", "pmf")])
def test_the_gated_baselines_read_a_long_look_back_in_chunks_too(
    kind: ForecasterKind, decoder: Decoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LSTM and GRU encoders carry their hidden state ((h, c) for the LSTM) from chunk to
    chunk without autograd: the same forecast, the pmf decoder's steps from the same state."""
    import models.forecaster as forecaster_module

    torch.manual_seed(0)
    config = ForecasterConfig(
        kind=kind, lookback=64, horizon=6, hidden_size=8, segment_length=2, decoder=decoder
    )
    model = build_forecaster(config).eval()
    x = torch.randn(5, 64, dtype=torch.float32) * 3 + 1
    whole = model(x).detach()
    monkeypatch.setattr(forecaster_module, "ENCODER_CHUNK_STEPS", 7)
    assert isinstance(model, RecurrentForecaster)
    encoder = model.encoder
    assert isinstance(encoder, GatedEncoder)
    read: list[int] = []
    hook = encoder.rnn.register_forward_pre_hook(lambda _, args: read.append(args[0].shape[1]))
    with torch.inference_mode():
        chunked = model(x)
    hook.remove()
    assert read[:5] == [7, 7, 7, 7, 4]  # then the pmf decoder's one step, if any
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kind", "decoder"), [("urnn", "direct"), ("urnn-full", "pmf")])
def test_evaluation_reads_a_long_look_back_in_chunks_with_the_same_forecast(
    kind: ForecasterKind, decoder: Decoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without autograd the uRNN encoder reads ENCODER_CHUNK_STEPS steps at a time (a
    (512, 4096)-step batch at n = 128 held 2 GiB of states to keep the last one); the forecast
    is the one a single pass gives, and no call reads more steps than a chunk."""
    import models.forecaster as forecaster_module
    from models.urnn import URNN

    torch.manual_seed(0)
    config = ForecasterConfig(
        kind=kind, lookback=64, horizon=6, hidden_size=8, segment_length=2, decoder=decoder
    )
    model = build_forecaster(config).eval()
    x = torch.randn(5, 64, dtype=torch.float32) * 3 + 1
    whole = model(x).detach()  # autograd on: one pass over the 32 segments
    monkeypatch.setattr(forecaster_module, "ENCODER_CHUNK_STEPS", 7)  # uneven: 7 x 4 + 4
    read: list[int] = []
    original = URNN.states

    def spy(self: URNN, steps: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        read.append(steps.shape[1])
        return original(self, steps, h0)

    monkeypatch.setattr(URNN, "states", spy)
    with torch.inference_mode():
        chunked = model(x)
    assert read == [7, 7, 7, 7, 4]
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


def test_capability_flags_decide_which_kinds_take_covariates() -> None:
    with pytest.raises(ForecasterConfigError, match=r"kind must be one of 'urnn', 'urnn-full'"):
        ForecasterConfig(kind="transformer")  # type: ignore[arg-type]
    with pytest.raises(ForecasterConfigError, match=r"n_past_covariates must be 0 .* 'linear'"):
        ForecasterConfig(kind="linear", lookback=L, horizon=H, n_past_covariates=1)
    with pytest.raises(ForecasterConfigError, match="season_length must be <= lookback"):
        ForecasterConfig(kind="seasonal_naive", lookback=L, horizon=H, season_length=48)
    with pytest.raises(ForecasterConfigError, match="decomposition_kernel"):
        ForecasterConfig(kind="linear", lookback=L, horizon=H, decomposition_kernel=4)
    # recorded in config.json and read by no other kind: refused, not silently ignored
    for kind in ("gru", "urnn-stream"):
        with pytest.raises(
            ForecasterConfigError, match=rf"decomposition_kernel must be 0 for kind '{kind}'"
        ):
            ForecasterConfig(kind=kind, lookback=L, horizon=H, decomposition_kernel=5)
    # ...but a checkpoint saved before that refusal still loads, the kernel ignored as it was
    saved = {**config_for("gru").to_dict(), "decomposition_kernel": 5}
    assert ForecasterConfig.from_dict(saved).decomposition_kernel == 0
    # the linear and naive kinds do not read segments, so any lookback is allowed
    ForecasterConfig(kind="linear", lookback=25, horizon=H)


def test_config_round_trips_through_json_and_refuses_unknown_fields() -> None:
    config = config_for("urnn-full", quantiles=(0.25, 0.5, 0.75))
    assert ForecasterConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ForecasterConfigError, match=r"unknown ForecasterConfig field\(s\)"):
        ForecasterConfig.from_dict({**config.to_dict(), "layers": 2})
    assert replace(config, horizon=12).horizon == 12


def test_unitary_parameters_are_those_of_w() -> None:
    urnn = build_forecaster(config_for("urnn"))
    names = {
        n for n, p in urnn.named_parameters() if any(p is u for u in urnn.unitary_parameters())
    }
    assert names == {"encoder.urnn.unitary.phases", "encoder.urnn.unitary.reflections"}
    full = build_forecaster(config_for("urnn-full"))
    assert [p.shape for p in full.unitary_parameters()] == [(8, 8)]
    assert build_forecaster(config_for("lstm")).unitary_parameters() == []


# --- calendar features -----------------------------------------------------------------------


def test_calendar_features_by_frequency() -> None:
    assert calendar_periods("15min") == ("hour_of_day", "day_of_week", "day_of_year")
    assert calendar_periods("D") == calendar_periods("B") == ("day_of_week", "day_of_year")
    assert calendar_periods("W-SUN") == calendar_periods("MS") == ("day_of_year",)
    assert n_calendar_features("h") == 6

    index = pd.DatetimeIndex(["2021-01-04 06:00", "2021-01-04 18:00"])  # a Monday
    features = calendar_features(index, "h")
    assert features.shape == (2, 6)
    np.testing.assert_allclose(features[:, :2], [[1.0, 0.0], [-1.0, 0.0]], atol=1e-12)  # hour
    np.testing.assert_allclose(features[:, 2:4], [[0.0, 1.0], [0.0, 1.0]], atol=1e-12)  # Monday
    np.testing.assert_allclose(np.hypot(features[:, 4], features[:, 5]), 1.0)


# --- linear skip (LSTNet's highway) ---------------------------------------------------------


# The streaming kind has its tail map built in and rejects the flag (tests/models/test_streaming).
@pytest.mark.parametrize(
    "kind",
    [k for k in FORECASTER_KINDS if FORECASTERS[k].RECURRENT and not FORECASTERS[k].STREAMING],
)
def test_linear_skip_adds_a_linear_map_of_the_look_back_to_the_median_only(
    kind: ForecasterKind,
) -> None:
    """With the encoder and head zeroed, the median is exactly skip(normalised look-back) and
    the other quantiles keep their gaps around it; the config survives the JSON round trip."""
    config = config_for(kind, linear_skip=True, normalisation="last")
    model = built(config).double()
    assert isinstance(model, RecurrentForecaster)
    assert ForecasterConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    target, *rest = inputs_for(config, dtype=torch.float64)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    skip = model.skip
    assert skip is not None and skip.weight.shape == (H, L)
    out = model(target, *rest)
    z = target - target[:, -1:]
    expected_median = skip(z) + target[:, -1:]
    torch.testing.assert_close(out[..., config.median_index], expected_median)
    assert (out.diff(dim=-1) > 0).all()  # gaps of softplus(0) keep the quantiles apart
    without = built(config_for(kind, normalisation="last"))
    assert not any("skip" in name for name in without.state_dict())


def test_linear_skip_is_refused_for_kinds_without_an_encoder() -> None:
    with pytest.raises(ForecasterConfigError, match=r"linear_skip applies to the recurrent kinds"):
        config_for("linear", linear_skip=True)


# --- interval calibration -------------------------------------------------------------------


def test_calibrate_gaps_brings_each_quantile_to_its_nominal_level_and_keeps_the_median() -> None:
    """Forecasts whose intervals are 3x too wide (upper) and 2x too narrow (lower) around a
    correct median: after calibration on one sample, each quantile's level on a fresh sample
    is within 0.02 of nominal, the median is unchanged and the quantiles stay ordered."""
    quantiles = (0.05, 0.1, 0.5, 0.9, 0.95)
    config = ForecasterConfig(kind="repeat_last", lookback=L, horizon=H, quantiles=quantiles)
    model = build_forecaster(config)
    nominal_levels = torch.tensor(quantiles, dtype=torch.float64)
    z = math.sqrt(2.0) * torch.erfinv(2.0 * nominal_levels - 1.0)  # true N(0, 1) quantiles
    wrong = torch.where(z > 0, 3.0 * z, 0.5 * z)  # (Q,)
    g = torch.Generator().manual_seed(0)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        centre = 10.0 * torch.randn(n, H, 1, generator=g, dtype=torch.float64)
        y = centre[..., 0] + torch.randn(n, H, generator=g, dtype=torch.float64)
        return centre + wrong, y

    pred, y = sample(4000)
    model.calibrate_gaps(pred, y)
    fresh, y_fresh = sample(20000)
    calibrated = scale_gaps(fresh, model.gap_scale.double(), config.median_index)
    torch.testing.assert_close(calibrated[..., 2], fresh[..., 2])
    assert (calibrated.diff(dim=-1) > 0).all()
    levels = (y_fresh.unsqueeze(-1) <= calibrated).double().mean(dim=(0, 1))
    for level, nominal in zip(levels.tolist(), quantiles, strict=True):
        assert abs(level - nominal) < 0.02, (level, nominal)
    before = (y_fresh.unsqueeze(-1) <= fresh).double().mean(dim=(0, 1))
    assert abs(float(before[0]) - 0.05) > 0.05  # the uncalibrated lower tail was far off


def test_calibrate_gaps_leaves_out_windows_with_no_spread() -> None:
    """Intermittent demand: 40 % of the held-out windows have a flat look-back, forecast as its
    level with every gap zero; after 30 % of them a sale comes. Those windows say nothing about
    the multipliers (their interval stays [level, level]); kept in, their ratios (a sale / 1e-12
    or 0) set the upper multiplier to the 20 clamp for every other window. The fit must equal
    the one on the windows with a spread alone, and bring those to their nominal levels."""
    quantiles = (0.1, 0.5, 0.9)
    config = ForecasterConfig(kind="repeat_last", lookback=L, horizon=H, quantiles=quantiles)
    g = torch.Generator().manual_seed(0)
    wrong = torch.tensor([-0.5, 0.0, 3.0], dtype=torch.float64)  # truth: +-1.2816 (N(0, 1))

    def spread(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        centre = 10.0 * torch.randn(n, H, 1, generator=g, dtype=torch.float64)
        return centre + wrong, centre[..., 0] + torch.randn(n, H, generator=g, dtype=torch.float64)

    pred, y = spread(3000)
    n_flat = 2000
    flat = torch.zeros(n_flat, H, len(quantiles), dtype=torch.float64)  # quiet: every quantile 0
    sale = (torch.rand(n_flat, H, generator=g) < 0.3).double() * 5.0
    alone = build_forecaster(config)
    alone.calibrate_gaps(pred, y)
    mixed = build_forecaster(config)
    mixed.calibrate_gaps(torch.cat([pred, flat]), torch.cat([y, sale]))
    torch.testing.assert_close(mixed.gap_scale, alone.gap_scale)
    fresh, y_fresh = spread(20000)
    calibrated = scale_gaps(fresh, mixed.gap_scale.double(), config.median_index)
    levels = (y_fresh.unsqueeze(-1) <= calibrated).double().mean(dim=(0, 1))
    for level, nominal in zip(levels.tolist(), quantiles, strict=True):
        assert abs(level - nominal) < 0.02, (level, nominal)
    everywhere_flat = build_forecaster(config)
    everywhere_flat.calibrate_gaps(flat, sale)  # nothing to fit from: left uncalibrated
    assert torch.equal(everywhere_flat.gap_scale, torch.ones(H, len(quantiles) - 1))


def whole_tensor_gap_scale(
    config: ForecasterConfig, quantiles: torch.Tensor, target: torch.Tensor, min_windows: int
) -> torch.Tensor:
    """`calibrate_gaps` as it was up to 2026-12-06: float64 copies of every window's
    forecasts, calibrated quantiles and ratios, all horizon steps at once (3 KB a validation
    window at 24 steps). The reference the step-at-a-time fit must equal, bit for bit."""
    from models.forecaster import GAP_SCALE_MAX, GAP_SCALE_MIN

    def level_quantile(ratio: torch.Tensor, level: float) -> torch.Tensor:
        counts = (~ratio.isnan()).sum(dim=0)
        if int(counts.min()) >= min_windows:
            return torch.nanquantile(ratio, level, dim=0)
        if int(counts.sum()) == 0:
            return torch.ones(ratio.shape[1], dtype=ratio.dtype)
        return torch.nanquantile(ratio.reshape(-1), level).expand(ratio.shape[1])

    q, y = quantiles.double(), target.double()
    raw_gaps = q.diff(dim=-1)
    informative = raw_gaps > 0
    gaps = torch.where(informative, raw_gaps, 1.0)
    levels = torch.tensor(config.quantiles, dtype=torch.float64)
    scale = torch.ones(config.horizon, len(config.quantiles) - 1, dtype=torch.float64)
    m = config.median_index
    calibrated = q.clone()
    for k in range(m + 1, len(config.quantiles)):
        ratio = ((y - calibrated[..., k - 1]) / gaps[..., k - 1]).where(
            informative[..., k - 1], torch.nan
        )
        scale[:, k - 1] = level_quantile(ratio, float(levels[k])).clamp(
            GAP_SCALE_MIN, GAP_SCALE_MAX
        )
        calibrated[..., k] = calibrated[..., k - 1] + scale[:, k - 1] * raw_gaps[..., k - 1]
    for k in range(m - 1, -1, -1):
        ratio = ((calibrated[..., k + 1] - y) / gaps[..., k]).where(informative[..., k], torch.nan)
        scale[:, k] = level_quantile(ratio, 1.0 - float(levels[k])).clamp(
            GAP_SCALE_MIN, GAP_SCALE_MAX
        )
        calibrated[..., k] = calibrated[..., k + 1] - scale[:, k] * raw_gaps[..., k]
    return scale.to(torch.float32)


@pytest.mark.parametrize("quantiles", [(0.1, 0.5, 0.9), (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("n", "flat_share"),
    [(3000, 0.0), (3000, 0.5), (150, 0.4), (60, 0.0), (3000, 0.97), (40, 1.0)],
    ids=["per-step", "half-flat", "pooled-flat", "pooled-few", "mostly-flat", "all-flat"],
)
def test_calibrate_gaps_one_step_at_a_time_equals_the_whole_tensor_fit(
    quantiles: tuple[float, ...], dtype: torch.dtype, n: int, flat_share: float
) -> None:
    """The fit reads one horizon step's ratios at a time (its memory a step's, not every
    step's): each multiplier is bit for bit the whole-tensor fit's, per step and pooled
    (too few windows with a spread at some step), with flat windows left out and a missing
    target among them (skipped, as nanquantile skips it)."""
    config = ForecasterConfig(kind="repeat_last", lookback=L, horizon=H, quantiles=quantiles)
    g = torch.Generator().manual_seed(n)
    centre = 10.0 * torch.randn(n, H, 1, generator=g, dtype=dtype)
    offsets = torch.rand(n, H, len(quantiles), generator=g, dtype=dtype).cumsum(-1)
    m = config.median_index
    offsets = offsets - offsets[..., m : m + 1]
    flat = torch.rand(n, H, 1, generator=g) < flat_share  # every quantile on the level
    pred = centre + torch.where(flat, 0.0, offsets)
    target = centre[..., 0] + 2.0 * torch.randn(n, H, generator=g, dtype=dtype)
    target[n // 2, 1] = math.nan
    model = build_forecaster(config)
    model.calibrate_gaps(pred, target)
    expected = whole_tensor_gap_scale(config, pred, target, min_windows=100)
    assert torch.equal(model.gap_scale, expected)
    if flat_share < 1.0:
        assert not torch.equal(expected, torch.ones_like(expected))  # a fit, not the default


def cpu_peak_bytes(run: Callable[[], object]) -> int:
    """The most bytes torch's CPU allocator held at once during `run` beyond what it held
    before (torch's profiler; tracemalloc does not see torch's allocations)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    held = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    return peak


def test_calibrate_gaps_holds_memory_for_one_step_not_every_window_step() -> None:
    """The interval calibration runs on every validation window (1.6 M on a 16 M-row log):
    holding float64 copies of every window's forecasts, calibrated quantiles and ratios at
    every step took 2,700 bytes a window beyond its inputs at 24 steps (4.4 GB there, the
    peak of `urnn train`); one step at a time it takes ~65. The bound leaves room for torch's
    own allocations and stays far under the whole-tensor fit."""
    n, horizon = 20_000, 24
    config = ForecasterConfig(kind="repeat_last", lookback=L, horizon=horizon)
    g = torch.Generator().manual_seed(0)
    spread = torch.tensor([-1.0, 0.0, 1.0])
    pred = 10.0 * torch.randn(n, horizon, 1, generator=g) + spread  # (N, H, Q) float32
    target = pred[..., 1] + torch.randn(n, horizon, generator=g)
    model = build_forecaster(config)
    peak = cpu_peak_bytes(lambda: model.calibrate_gaps(pred, target))
    assert not torch.equal(model.gap_scale, torch.ones_like(model.gap_scale))
    assert peak < 300 * n, f"{peak / n:.0f} bytes a window at the peak"


@pytest.mark.parametrize(
    ("quantiles", "offset", "outer"),
    [((0.5, 0.9, 0.99), [0.0, 0.0, 1.0], 2), ((0.01, 0.1, 0.5), [-1.0, 0.0, 0.0], 0)],
)
def test_calibrate_gaps_places_an_outer_quantile_beyond_a_zero_gap_as_inference_does(
    quantiles: tuple[float, ...], offset: list[float], outer: int
) -> None:
    """The quantile heads floor each offset at 0 (never crossed), so a window's inner gap can
    be zero while the next one out is not: q0.9 on the median, q0.99 above it. Inference puts
    q0.9 on the median (multiplier x 0) and q0.99 a multiplier of its gap above; the fit put
    q0.9 a whole unit above the median (the zero gap read as 1 to leave it out) and fitted
    q0.99's multiplier from there, so q0.99 covered 0.91 of fresh data instead of 0.99."""
    config = ForecasterConfig(kind="repeat_last", lookback=L, horizon=H, quantiles=quantiles)
    g = torch.Generator().manual_seed(0)
    offsets = torch.tensor(offset, dtype=torch.float64)  # the inner gap zero, the outer 1

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        centre = 10.0 * torch.randn(n, H, 1, generator=g, dtype=torch.float64)
        return centre + offsets, centre[..., 0] + torch.randn(
            n, H, generator=g, dtype=torch.float64
        )

    model = build_forecaster(config)
    model.calibrate_gaps(*sample(4000))
    fresh, y_fresh = sample(20000)
    calibrated = scale_gaps(fresh, model.gap_scale.double(), config.median_index)
    level = float((y_fresh <= calibrated[..., outer]).double().mean())
    assert abs(level - quantiles[outer]) < 0.01, level


def test_gap_scale_round_trips_and_old_checkpoints_load_uncalibrated(tmp_path: Path) -> None:
    config = config_for("urnn")
    model = built(config)
    model.gap_scale.fill_(1.7)
    save_checkpoint(model, tmp_path)
    restored, _ = load_checkpoint(tmp_path)
    assert torch.equal(restored.gap_scale, model.gap_scale)
    old_state = {k: v for k, v in model.state_dict().items() if k != "gap_scale"}
    legacy = load_forecaster(config, old_state)
    assert torch.equal(legacy.gap_scale, torch.ones(H, len(config.quantiles) - 1))


def test_an_unset_hidden_size_is_the_kinds_default_and_stored_as_a_number() -> None:
    assert ForecasterConfig().hidden_size == 128  # windowed recurrent kinds: chosen on val
    assert ForecasterConfig(kind="lstm").hidden_size == 128
    # the streaming kind keeps the size its per-update costs were measured with
    assert ForecasterConfig(kind="urnn-stream").hidden_size == 64
    assert ForecasterConfig(kind="urnn", hidden_size=32).hidden_size == 32
    stored = ForecasterConfig(kind="urnn-stream").to_dict()
    assert stored["hidden_size"] == 64
    assert ForecasterConfig.from_dict(stored).hidden_size == 64
    assert (
        ForecasterConfig.from_dict({"kind": "urnn-stream", "hidden_size": None}).hidden_size == 64
    )
    for bad in (0, -1):
        with pytest.raises(ForecasterConfigError, match="hidden_size must be an integer from 1"):
            ForecasterConfig(hidden_size=bad)


def test_an_outer_gap_is_fitted_against_the_clamped_inner_one() -> None:
    """Truth 25x wider than the forecast: the inner multipliers hit the clamp (20); the outer
    ones must be fitted from where the clamped inner quantile will be, so they reach the
    clamp too, and the outermost quantiles lie at least as far out as the inner ones' gaps
    allow (they were fitted against the unclamped inner quantiles: 18.6 and 19.9)."""
    quantiles = (0.05, 0.1, 0.5, 0.9, 0.95)
    config = ForecasterConfig(kind="repeat_last", lookback=L, horizon=1, quantiles=quantiles)
    model = build_forecaster(config)
    g = torch.Generator().manual_seed(0)
    y = 50.0 * torch.randn(5000, 1, generator=g)
    base = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]).expand(5000, 1, 5).clone()
    model.calibrate_gaps(base, y)
    assert model.gap_scale.flatten().tolist() == pytest.approx([20.0, 20.0, 20.0, 20.0])


def test_a_stored_config_with_many_quantile_levels_still_loads() -> None:
    """The 99-level limit is for models to be trained (urnn train, jobs): in ForecasterConfig
    it refused to load versions registered before it (a review)."""
    from models.forecaster import MAX_QUANTILES, new_model_problem

    levels = tuple(i / 200 for i in range(1, 200))  # 0.005 .. 0.995, 0.5 included
    config = ForecasterConfig(kind="linear", lookback=L, horizon=H, quantiles=levels)
    assert len(config.quantiles) == 199 > MAX_QUANTILES
    assert new_model_problem(config) == (
        "quantiles must hold at most 99 levels (every percentile), got 199"
    )
    assert new_model_problem(replace(config, quantiles=(0.1, 0.5, 0.9))) is None


def test_levels_that_would_share_one_column_name_are_refused_for_a_new_model() -> None:
    """0.9 and 0.9000001 were both `q0.9` in the backtest tables and the pyfunc's answer:
    one level silently vanished from both."""
    from models.forecaster import new_model_problem

    config = ForecasterConfig(kind="linear", lookback=L, horizon=H, quantiles=(0.1, 0.5, 0.9))
    close = replace(config, quantiles=(0.1, 0.5, 0.9, 0.9000001))
    assert new_model_problem(close) == (
        "quantiles 0.9 and 0.9000001 are both named q0.9 in the backtest tables and the "
        "pyfunc's columns (6 significant digits); give levels that differ within 6 significant "
        "digits"
    )
    assert new_model_problem(replace(config, quantiles=(0.1, 0.5, 0.9, 0.900001))) is None


@pytest.mark.parametrize("kind", [k for k in FORECASTER_KINDS if k != "urnn-stream"])
def test_a_flat_look_back_is_forecast_as_its_level_exactly(kind: ForecasterKind) -> None:
    """48 hours without a sale: every quantile is the look-back's level, not the level plus the
    network's output times the 1e-5 std clamp (2e-6 sales, each a 200 % sMAPE term). The
    streaming kind normalises by its stream's first window instead (models/streaming.py)."""
    config = config_for(kind, normalisation="instance")
    model = built(config)
    _, *rest = inputs_for(config)
    with torch.no_grad():
        model.gap_scale.fill_(3.0)
    # 3.3 and 123456.7: float32's rounded mean of copies is off their value (by 2e-7, by one
    # ulp, 0.0078, at L = 24, which made the std over the clamp: not read as flat at all)
    for level in (0.0, 4.0, 3.3, 123456.7, -1e9):
        flat = torch.full((B, L), level)
        assert torch.equal(model(flat, *rest), torch.full((B, H, len(config.quantiles)), level))
    varied, *_ = inputs_for(config)
    assert not torch.equal(model(varied, *rest)[..., 0], model(varied, *rest)[..., -1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_instance_statistics_of_a_constant_window_are_its_value_and_the_clamp(
    dtype: torch.dtype,
) -> None:
    """The rounded mean of copies of one value need not be that value (float32, 48 copies of
    123456.7: one ulp off), and the std then came out as that ulp, 1000 times the clamp."""
    from models.forecaster import MIN_WINDOW_STD, window_statistics

    levels = torch.tensor([123456.7, 3.3, 0.1, 1e9, 1e30, 0.0], dtype=dtype)
    windows = levels.unsqueeze(1).expand(-1, 720)
    varied = torch.arange(720, dtype=dtype).unsqueeze(0) * 1e-3 + 5.0
    batch = torch.cat([windows, varied])
    loc, scale = window_statistics(batch, "instance")
    assert torch.equal(loc[:-1, 0], levels)
    assert torch.equal(scale[:-1, 0], torch.full_like(levels, MIN_WINDOW_STD))
    # a window with a spread keeps its plain mean and std
    assert loc[-1, 0] == batch.mean(dim=1)[-1]
    assert scale[-1, 0] == batch.std(dim=1, unbiased=False)[-1]


def test_the_floor_at_zero_leaves_an_overflow_for_the_caller_to_refuse() -> None:
    """-inf floored to 0 would have turned an overflowed forecast (a 422) into a plausible 0."""
    from models.forecaster import floor_at_zero

    values = np.array([-2.0, 3.0, -np.inf, np.nan, np.inf])
    floored = floor_at_zero(values.copy(), True)
    np.testing.assert_array_equal(floored, [0.0, 3.0, -np.inf, np.nan, np.inf])
    untouched = floor_at_zero(values.copy(), False)
    np.testing.assert_array_equal(untouched, values)


PMF_KINDS = [k for k, cls in FORECASTERS.items() if cls.RECURRENT and not cls.STREAMING]


@pytest.mark.parametrize(
    ("kind", "decoder"),
    [(k, "direct") for k in FORECASTER_KINDS] + [(k, "pmf") for k in PMF_KINDS],
)
def test_a_batch_of_no_windows_answers_no_forecasts(kind: ForecasterKind, decoder: Decoder) -> None:
    """A filter that leaves no windows (every series too short, a cut test span) reaches the
    model as a batch of 0: the recurrent kinds' reshape with -1 and MKL's FFT refused it."""
    config = config_for(kind, decoder=decoder)
    model = built(config)
    target, covariates, past_cal, future_cal = (
        None if t is None else t[:0] for t in inputs_for(config)
    )
    assert target is not None
    with torch.no_grad():
        out = model(target, covariates, past_cal, future_cal)
    assert out.shape == (0, H, len(config.quantiles))
