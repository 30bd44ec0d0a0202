"""Learning curves of `urnn benchmark paper` runs, from the MLflow store they were logged to.

    python -m bench.paper_plots --task copy --output docs/img/paper-copy.png
    python -m bench.paper_plots --task adding --output docs/img/paper-adding.png

Reads every finished run of experiment `paper-<task>` (run names `<model>-T<seq_len>`, the
`train_cost` history `urnn benchmark paper` logs every 50 iterations) in the store the
`URNN_*` settings point at, and draws one panel per sequence length with a line per model
and the task's baseline cost (the run's `baseline` param) as a dashed line: the figures of
docs/paper-results.md. The latest run of each (model, T) is drawn.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from urnn_forecast.settings import get_settings

RUN_NAME = re.compile(r"^(?P<model>[a-z_-]+)-T(?P<seq_len>\d+)$")


def latest_runs(client: Any, experiment_id: str) -> dict[tuple[int, str], Any]:
    """(seq_len, model) -> the most recent finished run of that name."""
    runs = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'FINISHED'", order_by=["start_time"]
    )
    chosen: dict[tuple[int, str], Any] = {}
    for run in runs:
        match = RUN_NAME.match(run.info.run_name or "")
        if match:
            chosen[(int(match["seq_len"]), match["model"])] = run  # later runs replace earlier
    return chosen


def plot(task: str, output: Path) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    settings = get_settings()
    client = mlflow.MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    experiment = client.get_experiment_by_name(f"paper-{task}")
    if experiment is None:
        raise SystemExit(f"no experiment paper-{task}: run `urnn benchmark paper {task}` first")
    runs = latest_runs(client, experiment.experiment_id)
    if not runs:
        raise SystemExit(f"experiment paper-{task} holds no finished run named <model>-T<n>")
    lengths = sorted({seq_len for seq_len, _ in runs})
    figure, axes = plt.subplots(1, len(lengths), figsize=(4.5 * len(lengths), 3.4), squeeze=False)
    for ax, seq_len in zip(axes[0], lengths, strict=True):
        for (length, model), run in sorted(runs.items()):
            if length != seq_len:
                continue
            history = client.get_metric_history(run.info.run_id, "train_cost")
            ax.plot([m.step for m in history], [m.value for m in history], label=model)
            baseline = run.data.params.get("baseline")
            if baseline is not None:
                ax.axhline(float(baseline), color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(f"{task}, T = {seq_len}")
        ax.set_xlabel("iteration")
        ax.set_yscale("log")
        ax.legend()
    axes[0][0].set_ylabel("training cost (dashed: baseline)")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=90)
    plt.close(figure)
    print(f"{output}: {len(runs)} runs, T = {', '.join(map(str, lengths))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("copy", "adding"), required=True)
    parser.add_argument("--output", type=Path, required=True, help="PNG file to write")
    args = parser.parse_args(argv)
    return plot(args.task, args.output)


if __name__ == "__main__":
    raise SystemExit(main())
