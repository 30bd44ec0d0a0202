# syntax=docker/dockerfile:1
# urnn-forecast image: `urnn` is the entrypoint, `urnn serve` the default command.
#
#   docker build -t urnn-forecast .                                   # CPU torch (default)
#   docker build -t urnn-forecast:cuda --build-arg VARIANT=cuda .     # CUDA torch
#   docker build --build-arg TORCH_SPEC=torch==2.13.0 --build-arg TORCH_INDEX_URL=... .
#
# Two stages: `builder` has the compilers, makes the virtual environment in /opt/venv and
# prebuilds the C++ uRNN recurrence; `runtime` is python:3.11-slim with that venv, the source
# tree and no compiler. docs/runbook.md explains the choices (CUDA, the prebuilt recurrence).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# cpu | cuda. The CUDA wheels of torch carry their own CUDA runtime libraries (nvidia-* wheels),
# so both variants share the slim base image; only the driver comes from the host (NVIDIA
# Container Toolkit, `gpus: all` in compose).
ARG VARIANT=cpu
ARG TORCH_SPEC=torch==2.13.0
# Empty: https://download.pytorch.org/whl/cpu for VARIANT=cpu, .../whl/cu128 for VARIANT=cuda.
ARG TORCH_INDEX_URL=
# 1: compile the uRNN recurrence here (needs the compiler this stage has) and ship the build;
# 0: ship none, the image then runs the pure-PyTorch loop (models/recurrence_cpp.py).
ARG PREBUILD_RECURRENCE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TORCH_EXTENSIONS_DIR=/opt/torch-extensions
RUN python -m venv /opt/venv && pip install --upgrade pip

# torch first (as the Makefile does), so the project's open torch range is already satisfied.
RUN set -eu; \
    case "$VARIANT" in \
      cpu) index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" ;; \
      cuda) index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu128}" ;; \
      *) echo "VARIANT must be cpu or cuda, got '$VARIANT'" >&2; exit 1 ;; \
    esac; \
    pip install --index-url "$index" "$TORCH_SPEC"

# Dependencies before the source, so editing code does not reinstall them.
WORKDIR /app
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print(chr(10).join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt
# They include psycopg, the driver of URNN_DATABASE_URL and of the MLflow server's backend store.
RUN pip install -r /tmp/requirements.txt

# The source tree (filtered by .dockerignore). Editable install: the packages are imported from
# /app, so files read beside them (migrations/, data/) are where they are in a checkout.
COPY . .
RUN pip install --no-deps -e . && urnn --help > /dev/null

# The compiled recurrence and streaming head are named after the CPU they are built for
# (-march=native, see models/recurrence_cpp.py): they are reused where the image runs on the
# same kind of CPU as the build machine; elsewhere the image, having no compiler, logs one
# warning each and uses the Python loop and the numpy head.
RUN set -eu; mkdir -p "$TORCH_EXTENSIONS_DIR"; \
    if [ "$PREBUILD_RECURRENCE" = "1" ]; then \
      python -c "from models.recurrence_cpp import load_extension; load_extension()"; \
      python -c "from models.stream_head_cpp import head_kernel; assert head_kernel()"; \
    fi

# --------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VARIANT=cpu
LABEL org.opencontainers.image.title="urnn-forecast" \
      org.opencontainers.image.description="uRNN forecasting service, trainer and worker" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.urnn.variant="${VARIANT}"

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TORCH_EXTENSIONS_DIR=/opt/torch-extensions \
    URNN_VAR_DIR=/var/lib/urnn \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN groupadd --system --gid 10001 urnn \
    && useradd --system --uid 10001 --gid urnn --create-home --home-dir /home/urnn urnn \
    && mkdir -p /var/lib/urnn \
    && chown urnn:urnn /var/lib/urnn

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
# Writable by the service user: torch takes a lock file in the build folder when loading it.
COPY --from=builder --chown=urnn:urnn /opt/torch-extensions /opt/torch-extensions

WORKDIR /app
USER urnn
EXPOSE 8000
VOLUME ["/var/lib/urnn"]

# /healthz answers while the process is alive (readiness, a loaded model, is /readyz).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('URNN_SERVE_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["urnn"]
CMD ["serve", "--host", "0.0.0.0"]
