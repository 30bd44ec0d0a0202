"""SegRNN's two pieces on our recurrent forecasters: the parallel multi-step ("pmf") decoder and
the channel embedding (ForecasterConfig.decoder, ForecasterConfig.n_channels)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from models.forecaster import (
    ForecasterConfig,
    ForecasterConfigError,
    ForecasterKind,
    GatedEncoder,
    RecurrentForecaster,
    URNNEncoder,
    build_forecaster,
    load_checkpoint,
    load_forecaster,
    save_checkpoint,
)
from models.urnn import InputShapeError

L, B = 24, 4
RECURRENT: tuple[ForecasterKind, ...] = ("urnn", "urnn-full", "lstm", "gru")


def pmf_config(kind: ForecasterKind = "urnn", **overrides: Any) -> ForecasterConfig:
    options: dict[str, Any] = {
        "kind": kind,
        "lookback": L,
        "horizon": 7,  # not a multiple of the segment: 2 output segments, cut to 7 rows
        "hidden_size": 8,
        "segment_length": 6,
        "recurrence": "python",  # no C++ build inside the unit tests
        "decoder": "pmf",
        "n_channels": 3,
    }
    return ForecasterConfig(**{**options, **overrides})


def recurrent(config: ForecasterConfig, seed: int = 0) -> RecurrentForecaster:
    torch.manual_seed(seed)
    model = build_forecaster(config)
    assert isinstance(model, RecurrentForecaster)
    return model


def target(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, L, generator=torch.Generator().manual_seed(seed))


CHANNELS = torch.tensor([0, 1, 2, 1])


@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("n_channels", [0, 3])
def test_pmf_forecasts_have_the_horizon_shape_and_monotone_quantiles(
    kind: ForecasterKind, n_channels: int
) -> None:
    config = pmf_config(kind, n_channels=n_channels, n_past_covariates=2, n_calendar=4)
    model = recurrent(config).eval()
    assert model.position is not None and model.position.shape[0] == math.ceil(7 / 6)
    assert (model.channel_embedding is not None) == (n_channels > 0)
    assert model.reads_channel_ids == (n_channels > 0)
    out = model(
        target(),
        torch.randn(B, L, 2),
        torch.randn(B, L, 4),
        torch.randn(B, 7, 4),
        channel=CHANNELS if n_channels else None,
    )
    assert out.shape == (B, 7, 3)
    assert torch.isfinite(out).all()
    assert (out.diff(dim=-1) >= 0).all()


def test_the_channel_id_changes_the_forecast_and_is_checked() -> None:
    model = recurrent(pmf_config()).eval()
    x = target()[:1].expand(3, -1)
    out = model(x, channel=torch.tensor([0, 1, 2]))
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    with pytest.raises(InputShapeError, match=r"channel ids are required"):
        model(target())
    with pytest.raises(InputShapeError, match=r"channel ids must lie in \[0, n_channels=3\)"):
        model(target(), channel=torch.tensor([0, 1, 3, 0]))
    with pytest.raises(InputShapeError, match=r"integer tensor of shape \(batch=4,\)"):
        model(target(), channel=torch.zeros(4))
    plain = recurrent(pmf_config(n_channels=0)).eval()
    with pytest.raises(InputShapeError, match=r"channel must be None"):
        plain(target(), channel=CHANNELS)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"decoder": "seq2seq"}, r"decoder must be one of 'direct', 'pmf'; got 'seq2seq'"),
        ({"kind": "linear", "n_channels": 0}, r"decoder='pmf' applies to the recurrent kinds"),
        ({"kind": "urnn-stream", "n_channels": 0}, r"decoder='pmf' applies.*'urnn-stream'"),
        ({"decoder": "direct"}, r"n_channels must be 0 unless decoder='pmf'"),
        ({"n_channels": -1}, r"n_channels must be an integer >= 0, got -1"),
        ({"n_channels": 2.0}, r"n_channels must be an integer >= 0, got 2.0"),
    ],
)
def test_invalid_decoder_settings_name_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ForecasterConfigError, match=message):
        pmf_config(**overrides)


def test_config_round_trips_through_json_and_old_configs_load_as_direct() -> None:
    config = pmf_config("lstm")
    assert ForecasterConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    old = ForecasterConfig(kind="urnn", lookback=L, horizon=6, segment_length=6).to_dict()
    del old["decoder"], old["n_channels"]  # a config.json written before these fields existed
    loaded = ForecasterConfig.from_dict(old)
    assert loaded.decoder == "direct" and loaded.n_channels == 0


@pytest.mark.parametrize("kind", RECURRENT)
def test_a_direct_model_has_the_same_parameters_and_draws_as_before(kind: ForecasterKind) -> None:
    """Defaults add nothing: no new state-dict entries, the head still emits H x Q at once, and
    building consumes the same random numbers (the same weights under the same seed)."""
    config = pmf_config(kind, decoder="direct", n_channels=0, horizon=6)
    model = recurrent(config)
    keys = set(model.state_dict())
    assert not any(k.startswith(("position", "channel_embedding")) for k in keys)
    assert model.position is None and model.channel_embedding is None
    assert model.head.out_features == 6 * 3
    after_direct = torch.rand(1)
    torch.manual_seed(0)
    type(model.encoder)(config.segment_length, config)  # what the encoder alone draws...
    torch.nn.Dropout(0.0)
    torch.nn.Linear(model.head.in_features, 18)  # ...then the head: nothing else is drawn
    assert torch.equal(torch.rand(1), after_direct)


@pytest.mark.parametrize("kind", ["urnn", "lstm"])
def test_pmf_checkpoints_round_trip(kind: ForecasterKind, tmp_path: Path) -> None:
    model = recurrent(pmf_config(kind)).eval()
    save_checkpoint(model, tmp_path)
    loaded, meta = load_checkpoint(tmp_path)
    assert meta["model"]["decoder"] == "pmf" and meta["model"]["n_channels"] == 3
    assert torch.equal(loaded(target(), channel=CHANNELS), model(target(), channel=CHANNELS))
    # the same state dict refuses to load into a direct model of the same shape
    with pytest.raises(RuntimeError, match=r"position"):
        load_forecaster(pmf_config(kind, decoder="direct", n_channels=0), model.state_dict())


def test_urnn_decoder_step_is_modrelu_of_w_h_plus_the_learned_input() -> None:
    config = pmf_config("urnn", hidden_size=4)
    model = recurrent(config).eval()
    encoder = model.encoder
    assert isinstance(encoder, URNNEncoder)
    x = torch.randn(B, 4, 6)
    inputs = torch.randn(B, 2, 8)
    decoded = encoder.decode(x, inputs)  # (B, 2, 8)
    last = encoder(x)
    h = torch.complex(last[:, :4], last[:, 4:])
    w = encoder.urnn.unitary_matrix()
    for j in range(2):
        u = torch.complex(inputs[:, j, :4], inputs[:, j, 4:])
        expected = encoder.urnn.modrelu(h @ w.T + u)
        got = torch.complex(decoded[:, j, :4], decoded[:, j, 4:])
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gated_decoder_step_is_one_more_step_of_the_same_cell(kind: ForecasterKind) -> None:
    model = recurrent(pmf_config(kind)).eval()
    encoder = model.encoder
    assert isinstance(encoder, GatedEncoder)
    x = torch.randn(B, 4, 6)
    inputs = torch.randn(B, 2, 6)
    decoded = encoder.decode(x, inputs)  # (B, 2, 8)
    for j in range(2):
        longer = torch.cat([x, inputs[:, j : j + 1]], dim=1)  # the input as a fifth step
        torch.testing.assert_close(decoded[:, j], encoder(longer), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["urnn", "lstm"])
def test_a_tiny_pmf_model_learns_a_channel_dependent_pattern(kind: ForecasterKind) -> None:
    """A few Adam steps lower the loss; the target depends on the channel id, which the model
    can only learn from its embedding."""
    config = pmf_config(kind, normalisation="none", quantiles=(0.5,))
    model = recurrent(config)
    g = torch.Generator().manual_seed(1)
    x = 0.1 * torch.randn(64, L, generator=g)
    channel = torch.randint(0, 3, (64,), generator=g)
    y = (channel.float() - 1.0).unsqueeze(1) * torch.linspace(0.5, 1.5, 7)  # (64, 7)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss() -> torch.Tensor:
        median: torch.Tensor = model(x, channel=channel)[..., 0]
        return (median - y).abs().mean()

    before = float(loss())
    for _ in range(30):
        optimizer.zero_grad()
        value = loss()
        value.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    assert float(loss()) < 0.5 * before
