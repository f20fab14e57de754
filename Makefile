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

# The second notebook pass: PyTorch held to AVX2 kernels (ATen, oneDNN and MKL's BLAS, which
# reads only its own variable), as on a CPU without AVX-512, AMX or bf16 units; `train.amp=auto`
# then trains in fp32 (ssdlib reads the same variables). Notebook outputs compared by nbval must
# come out equal on both passes.
AVX2_FP32 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
NBVAL := --nbval --nbval-sanitize-with $(NBVAL_SANITIZE)

.PHONY: venv test test-avx2 chromium lint demo lab notebooks figures bench gpu-check clean

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
	$(PY) -m pytest -n 2 --dist loadfile $(NBVAL) -m "not browser" tests notebooks
	$(MAKE) --no-print-directory test-avx2
	$(PY) -m pytest -m browser tests/test_browser.py

# The notebooks again, as a CPU without AVX-512/AMX/bf16 runs them (see AVX2_FP32).
test-avx2: venv
	$(AVX2_FP32) $(PY) -m pytest -n 2 --dist loadfile $(NBVAL) notebooks

lint: venv
	$(VENV)/bin/ruff check ssdlib tests data_setup notebooks/*.py

# Debian's chromium for the JupyterLab browser test (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# The notebooks' sources are the jupytext pairs notebooks/NN_*.py (percent format): sync each
# into its .ipynb and execute that in place, so the committed notebooks carry their outputs.
# `make notebooks NB="05 06"` does only those.
NB ?= 00 01 02 03 04 05 06 07
notebooks: venv
	@for n in $(NB); do py=$$(ls notebooks/$${n}_*.py) || exit 1; nb=$${py%.py}.ipynb; \
	  echo "== $$nb"; $(VENV)/bin/jupytext --sync "$$py" -q && \
	  $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace "$$nb" && \
	  $(VENV)/bin/jupytext --sync "$$nb" -q || exit 1; done

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
