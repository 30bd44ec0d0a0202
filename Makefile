# The single entry point: the same targets run on a developer's machine and in CI.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-gpu lint typecheck check bench bench-serve bench-loop bench-stream bench-read bench-train clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, so the project's open torch range is already satisfied. Unquoted: TORCH_SPEC
	# may carry pip options ("torch==2.13.0 --index-url URL", README); quote a spec with < or >
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/urnn demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# --durations: CI's log names the slowest tests (the suite must stay well inside CI's limit)
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest --durations=25

# On a machine with a CUDA GPU (torch with CUDA: TORCH_SPEC, see README): the tests marked gpu
# (CUDA against CPU numbers, training and serving on cuda). `make test` skips them without one.
test-gpu: $(STAMP)
	$(BIN)/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'make test-gpu: no CUDA device visible to torch')"
	$(BIN)/python -m pytest -m gpu

bench: $(STAMP)
	$(BIN)/python -m bench.recurrence

# Not a test: this service vs `mlflow models serve` vs the raw model (docs/serving.md).
bench-serve: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench.serve

# Not a test: the event loop's work per /forecast request, in process (bench/loop_cost.py);
# ARGS=--callgrind counts its instructions under valgrind (~8 minutes).
bench-loop: $(STAMP)
	$(BIN)/python -m bench.loop_cost $(ARGS)

# Not a test: streaming updates vs whole-history re-reads through `urnn serve`, by history
# length up to 1M points (bench/stream.py); ARGS=--quick for a smoke run under 2 minutes.
bench-stream: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench.stream $(ARGS)

# Not a test: peak memory and time of loading a 16 M-row (1 GB) CSV and its Parquet copy, this
# loader against the one before it read in chunks (bench/read_memory.py, ~10 min);
# ARGS="--rows 2000000" for a quicker look.
bench-read: $(STAMP)
	$(BIN)/python -m bench.read_memory $(ARGS)

# Not a test: peak memory and time of `urnn train` on the 16 M-row log, stage by stage (load,
# fit, its validation scores and interval calibration, backtest), this checkout against the
# commit before the calibration read one step at a time (bench/train_memory.py, ~10 min);
# ARGS="--rows 4000000" for a quicker look.
bench-train: $(STAMP)
	$(BIN)/python -m bench.train_memory $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
