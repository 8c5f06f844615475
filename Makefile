# Set-up and everyday commands. `make run` and `make test` each create the virtual environment on
# first use, so on a fresh machine they are the only two commands needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_CPU ?= torch==2.13.0
OUT ?= artifacts

.PHONY: run test test-fast lint install install-runtime install-dev app benchmark prepare train clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Lean runtime: numpy, pydantic, onnxruntime (no torch).
$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet -e ".[cpu]"
	touch $@

# Everything: training (torch), app, tests. Without a CUDA driver, take the CPU build of torch
# first so that the package's torch range does not pull a multi-GB CUDA build.
$(VENV)/.dev: pyproject.toml | $(VENV)/bin/python
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install --quiet "$(TORCH_CPU)"; fi
	$(PIP) install --quiet -e ".[cpu,train,app,parquet,dev]"
	touch $@ $(VENV)/.runtime

install-runtime: $(VENV)/.runtime
install install-dev: $(VENV)/.dev

## The main job: cluster real MSR Action3D pose files with the shipped model and score the clusters.
run: $(VENV)/.runtime
	mkdir -p $(OUT)
	$(VENV)/bin/codt-cluster examples/msr_action3d --labels examples/msr_action3d/labels.csv \
		--output $(OUT)/msr_action3d_clusters.csv --show 40

## The test suite (CI runs this).
test: $(VENV)/.dev
	$(PY) -m pytest

test-fast: $(VENV)/.dev
	$(PY) -m pytest -m "not slow and not browser and not ddp"

## Lint and type-check the whole tree (CI runs this before the tests; settings in pyproject.toml).
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

app: $(VENV)/.dev
	$(PY) -m app

prepare: $(VENV)/.dev
	$(PY) -m training.prepare ucla2msr

train: $(VENV)/.dev
	$(PY) -m training.run --task ucla2msr-paper-cpu

benchmark: $(VENV)/.dev
	$(PY) -m benchmarks.harness

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache $(OUT)
