# greenbutton — the two commands in the README are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast test-all bench bench-deps lint typecheck clean install test-deps bytecode screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the dependency declarations change.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,postgres,explain,s3]"
	touch $(STAMP)

install: $(STAMP) bytecode

## bytecode: compile greenbutton's modules, as a wheel install does. An editable install
## leaves that to the first import, and with PYTHONDONTWRITEBYTECODE set (as on our machines)
## every process would compile them again (0.06-0.09 s of a server's cold start). Quick when
## nothing changed; a module edited later is compiled in memory until the next run.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q src/greenbutton

## make demo: train the digits classifier, log it, promote it, serve it, call it.
demo: $(STAMP) bytecode
	$(BIN)/python examples/digits_demo.py $(DEMO_ARGS)

## test-deps: system packages the suite needs (Debian), installed only when missing.
test-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing="$$missing prometheus"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
	  || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@# S3-compatible server for tests/scaleout (a real separate process; see docs/scale-out.md)
	@command -v s3rver >/dev/null || npm install -g --no-audit --no-fund s3rver@3.7.1

## make test: lint (code, then the layer contract), then the default suite (everything but the load/soak tiers).
test: $(STAMP) bytecode test-deps
	$(BIN)/ruff check src tests examples bench
	$(BIN)/lint-imports
	$(BIN)/pytest -m "not bench" $(PYTEST_ARGS)

## make test-fast: unit and in-process HTTP tests only (no real processes).
test-fast: $(STAMP) bytecode
	$(BIN)/pytest -m "not bench and not slow" $(PYTEST_ARGS)

## make test-all: every tier, including load and soak.
test-all: $(STAMP) bytecode
	$(BIN)/pytest $(PYTEST_ARGS)

## make screenshots: the dashboard's pictures in docs/img (README, docs/dashboard.md), taken by
## its end-to-end test in Chromium on the wine A/B scenario (not part of the default run's output).
screenshots: $(STAMP) bytecode test-deps
	GREENBUTTON_SCREENSHOTS=docs/img $(BIN)/pytest tests/e2e/test_dashboard.py -q $(PYTEST_ARGS)

## make bench-deps: wrk, the load generator of bench/serving_bench.py (Debian package).
bench-deps:
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk) \
	  || (sudo apt-get update && sudo apt-get install -y wrk)

## make bench: the benchmarks; they print tables of measured ratios.
bench: $(STAMP) bytecode bench-deps
	$(BIN)/pytest -m bench -s tests bench $(PYTEST_ARGS)
	$(BIN)/python bench/drift_power.py --trials 200 --write docs/performance.md
	$(BIN)/python bench/monitoring_calibration.py --splits 100 --write docs/performance.md
	$(BIN)/python bench/power_bounds.py --write docs/performance.md
	$(BIN)/python bench/drift_overhead.py
	$(BIN)/python bench/serving_bench.py --write docs/performance.md
	$(BIN)/python bench/plain_mlflow_bench.py --write docs/performance.md
	$(BIN)/python bench/payload_disk_full.py --write docs/performance.md
	$(BIN)/python bench/controller_rollout.py --write docs/performance.md
	$(BIN)/python bench/scaleout_bench.py --write docs/performance.md

typecheck: $(STAMP)
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .greenbutton
