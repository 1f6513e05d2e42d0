# greenbutton — the two commands in the README are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast test-all bench lint typecheck clean install test-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the dependency declarations change.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,postgres]"
	touch $(STAMP)

install: $(STAMP)

## make demo: train the digits classifier, log it, promote it, serve it, call it.
demo: $(STAMP)
	$(BIN)/python examples/digits_demo.py $(DEMO_ARGS)

## test-deps: system packages the suite needs (Debian), installed only when missing.
test-deps:
	@true

## make test: lint, then the default suite (everything but the load/soak tiers).
test: $(STAMP) test-deps
	$(BIN)/ruff check src tests examples bench
	$(BIN)/pytest -m "not bench" $(PYTEST_ARGS)

## make test-fast: unit and in-process HTTP tests only (no real processes).
test-fast: $(STAMP)
	$(BIN)/pytest -m "not bench and not slow" $(PYTEST_ARGS)

## make test-all: every tier, including load and soak.
test-all: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

## make bench: the benchmarks; they print tables of measured ratios.
bench: $(STAMP)
	$(BIN)/pytest -m bench -s $(PYTEST_ARGS)

typecheck: $(STAMP)
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .greenbutton
