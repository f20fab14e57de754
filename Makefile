# ssdlib — every target creates .venv and installs the pinned environment when missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt
NBVAL_SANITIZE := tests/nbval_sanitize.cfg
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: venv test chromium lint demo lab figures bench gpu-check clean

venv: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (ssdlib needs Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Unit tests and every notebook under nbval, spread over two workers (loadfile keeps a
# notebook's cells on one kernel); then the JupyterLab browser test on its own, so its kernel
# and Chromium do not compete with a worker training a model (CI timed it out once that way).
test: venv lint chromium
	$(PY) -m pytest -n 2 --dist loadfile --nbval --nbval-sanitize-with $(NBVAL_SANITIZE) -m "not browser" tests notebooks
	$(PY) -m pytest -m browser tests/test_browser.py

lint: venv
	$(VENV)/bin/ruff check ssdlib tests data_setup

# Debian's chromium for the JupyterLab browser test (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Shapes -> train the light model -> VOC07 mAP + COCO AP -> pictures in outputs/demo/.
demo: venv
	$(PY) -m ssdlib.engine.demo_shapes --out outputs/demo

lab: venv
	$(VENV)/bin/jupyter lab notebooks

figures: venv
	$(PY) -m ssdlib figures --out figures

bench: venv
	$(PY) -m ssdlib bench

# Everything that needs a GPU (<= 8 min on one modern GPU): CUDA unit tests, training and
# inference against torchvision, the Shapes demo; outputs/gpu_check.json + a table. Without a
# GPU: one line saying so, exit 0.
gpu-check: venv
	$(PY) -m ssdlib.bench.gpu_check --json outputs/gpu_check.json

clean:
	rm -rf $(VENV) outputs .pytest_cache
