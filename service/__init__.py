"""The forecast service: FastAPI over a registered forecaster (ARCHITECTURE.md, "HTTP API").

Read it top-down, one job per module:

- `main`        create_app(): settings, lifespan (load, batcher, poll), middleware, routes.
- `routes/`     thin endpoints: parse with `schemas`, call one service function, map errors.
- `fast_path`   /forecast bodies that are plainly well-formed, read to arrays without pydantic.
- `forecasting` the /forecast service function: validate -> micro-batch -> response.
- `validation`  request -> scaled arrays, every bad input a `ServiceInputError` naming the
                series and the field.
- `batcher`     groups concurrent requests into one forward pass on one worker thread.
- `runner`      what that thread runs: stack, forward, un-scale, then the monitors.
- `served`      a loaded model version on its device (the tensor forward of the hot path).
- `loader`      resolves models:/name@alias in the MLflow registry and builds the model.
- `manager`     holds the one reference to the served model; reload and poll swap it.
- `drift`, `realised`  input drift (PSI) and realised forecast error monitors.
- `metrics`     every Prometheus metric, in one place.
- `middleware`, `security`, `errors`  body-size limit and request metrics; API key; HTTP errors.
"""

import os

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LEGACY_MULTIPROC_ENV = "prometheus_multiproc_dir"  # prometheus_client still reads it


def settle_multiprocess_variable() -> None:
    """Make PROMETHEUS_MULTIPROC_DIR say what prometheus_client will do, before it is imported.

    prometheus_client turns multiprocess mode on when either variable is present, even
    empty, and then writes every metric file into the working directory (an empty folder
    name); and it reads the deprecated lower-case name where the upper-case one is unset. The
    service read an empty value as unset and ignored the lower-case name: its metric files
    went into the working directory (`/app` in the image, not writable: no start), or into a
    folder `urnn serve` neither checked nor emptied, so a restart added an earlier run's counts
    to the new ones. An empty value now means unset for both; the lower-case folder is copied
    to the upper-case name, as prometheus_client itself does at its first metric."""
    for name in (MULTIPROC_ENV, LEGACY_MULTIPROC_ENV):
        if os.environ.get(name) == "":
            del os.environ[name]
    legacy = os.environ.get(LEGACY_MULTIPROC_ENV)
    if legacy is not None and MULTIPROC_ENV not in os.environ:
        os.environ[MULTIPROC_ENV] = legacy


# Here, before any module of the package imports prometheus_client (service.metrics, drift).
settle_multiprocess_variable()
