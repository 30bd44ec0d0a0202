"""Deep ensembles: K forecasters of one config, trained alone, averaged quantile by quantile.

    config = ForecasterConfig(kind="urnn", ..., ensemble=5)
    model = build_forecaster(config)   # an ensemble of five urnn members
    model(past_target)                 # (B, H, Q): the members' quantiles averaged

Why: members that differ only in their random seed (initialisation, shuffling, dropout) make
errors that partly cancel. On the ETT validation splits five uRNN members lowered val MSE by
1.2 % (ETTh1, H = 336) and 1.5 % (ETTh2, H = 336) against the seed-0 model alone, though on
ETT's test months they gained no benchmark target (docs/benchmarks.md, fifth run); at five
times the training and forward cost, which is why `ensemble` defaults to 1.

How: averaging quantiles across members (Vincentisation; Lichtendahl, Grushka-Cockayne &
Winkler, "Is It Better to Average Probabilities or Quantiles?", Management Science 2013) keeps
them monotone and keeps the median the members' mean median. Each member forecasts in the
input's scale with its own gap multipliers left at one; the ensemble then applies its own
`gap_scale`, fitted on the validation windows after averaging (training.fit), because the
average is narrower than the members' own intervals would suggest. Member i's weights live
under `members.i.` in the state dict, so checkpoints and the MLflow artifact format
(config.json + weights.pt) carry ensembles unchanged.
"""

from __future__ import annotations

from functools import cache
from typing import cast

import torch
from torch import Tensor, nn

from models.forecaster import (
    Forecaster,
    ForecasterConfig,
    ForecasterConfigError,
    build_forecaster,
    scale_gaps,
)


class EnsembleForecaster(Forecaster):
    """Members of one kind with the kind's capability flags (`ensemble_class` copies them)."""

    ENSEMBLE = True
    MEMBER: type[Forecaster]

    def __init__(self, config: ForecasterConfig) -> None:
        if config.ensemble < 2:
            raise ForecasterConfigError(
                f"an ensemble needs ensemble >= 2 members; got {config.ensemble}"
            )
        super().__init__(config)
        member = config.member_config()
        self.members = nn.ModuleList(build_forecaster(member) for _ in range(config.ensemble))

    @property
    def forecasters(self) -> list[Forecaster]:
        """The members, typed (nn.ModuleList yields plain modules)."""
        return cast(list[Forecaster], list(self.members))

    @property
    def reads_channel_ids(self) -> bool:
        return self.forecasters[0].reads_channel_ids

    def forward(
        self,
        past_target: Tensor,
        past_covariates: Tensor | None = None,
        past_calendar: Tensor | None = None,
        future_calendar: Tensor | None = None,
        channel: Tensor | None = None,
    ) -> Tensor:
        """As the members' forward (each checks the inputs); (B, H, Q) in the input's scale."""
        extra = {"channel": channel} if channel is not None else {}
        outs = [
            member(past_target, past_covariates, past_calendar, future_calendar, **extra)
            for member in self.forecasters
        ]
        mean = members_mean(outs)
        # The gaps scale with the window's scale and ignore its location, so the ensemble's
        # multipliers apply in the input's scale as they would in the normalised one.
        return scale_gaps(mean, self.gap_scale, self.config.median_index)

    def forecast_normalised(
        self,
        z: Tensor,
        past_covariates: Tensor | None,
        past_calendar: Tensor | None,
        future_calendar: Tensor | None,
    ) -> Tensor:
        outs = [
            member.forecast_normalised(z, past_covariates, past_calendar, future_calendar)
            for member in self.forecasters
        ]
        return members_mean(outs)

    def unitary_parameters(self) -> list[nn.Parameter]:
        return [p for member in self.forecasters for p in member.unitary_parameters()]


def members_mean(outs: list[Tensor]) -> Tensor:
    """The members' forecasts averaged, value by value, and where every member says the same
    value (each forecasts a flat look-back as its level), that value: float32's mean of three
    equal values is one step beside them for 17 % of them (3 x / 3), which put a stuck
    sensor's forecast and its zero-width interval beside the level, missing every actual."""
    stacked = torch.stack(outs)
    agree = (stacked == stacked[0]).all(dim=0)
    return torch.where(agree, stacked[0], stacked.mean(dim=0))


@cache
def ensemble_class(member: type[Forecaster]) -> type[EnsembleForecaster]:
    """The ensemble of `member`'s kind: EnsembleForecaster with that kind's capability flags,
    which the data stage reads (training.windows) to decide what to feed."""
    flags = {
        name: getattr(member, name)
        for name in (
            "SUPPORTS_PAST_COVARIATES",
            "SUPPORTS_CALENDAR",
            "RECURRENT",
            "TRAINABLE",
            "UNITARY",
            "STREAMING",
            "DEFAULT_HIDDEN",
        )
    }
    return type(f"{member.__name__}Ensemble", (EnsembleForecaster,), {**flags, "MEMBER": member})
