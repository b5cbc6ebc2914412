# Bukong — one entry point for users, developers and CI.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SYSSTAMP:= $(VENV)/.system-installed
DEMO_ARGS ?=

.PHONY: demo test lint typecheck bench bench-all drill venv system-deps clean help

help:
	@echo "make demo    - start broker, Redis, workers, generator and the live view (Ctrl-C to stop)"
	@echo "make test    - install everything and run lint, type checks and the whole test suite"
	@echo "make bench   - end-to-end benchmark: floor, naive Faust, Quix Streams, Pathway, Bukong (benchmarks/README.md)"
	@echo "make bench-all - that, plus the core, rules and selection-quality benchmarks"
	@echo "make drill   - the drill suite: fuzz, kill -9, Redis and broker outages, hostile packs, API attacks, soak"

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found; install Python 3.11 or run 'make PY=/path/to/python3.11'"; exit 1; }
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	@touch $@

venv: $(STAMP)

# Debian tools used by the tests: prometheus + promtool, Chromium + driver (browser tests), a Chinese font.
$(SYSSTAMP):
	@bash docker/install-system-deps.sh
	@touch $@

system-deps: $(SYSSTAMP)

demo: $(STAMP)
	$(BIN)/python -m pipeline demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check pipeline agents features rules benchmarks tests
	$(BIN)/ruff format --check pipeline agents features rules benchmarks tests
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) $(SYSSTAMP) lint typecheck
	$(BIN)/python -m pytest

# end to end: floor, naive Faust, Quix Streams, Pathway and Bukong (1, 2 and 4 workers), each run 3 times
# (medians and spread), ~50 minutes here
bench: $(STAMP)
	$(BIN)/python benchmarks/e2e.py --repeat 3

# everything: end to end, then the in-process core and rules benchmarks and the selection quality
bench-all: bench
	$(BIN)/python benchmarks/core_bench.py
	$(BIN)/python benchmarks/rules_bench.py
	$(BIN)/python -m benchmarks.quality --scenario baseline
	$(BIN)/python -m benchmarks.quality --scenario drift

# the drill suite (docs/reliability.md): ~15 minutes; DRILL_ARGS="--quick" for a short one
DRILL_ARGS ?=
drill: $(STAMP)
	$(BIN)/python -m pipeline.apps.drill $(DRILL_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-output
