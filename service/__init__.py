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
