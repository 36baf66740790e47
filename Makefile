# rebuilder — every target bootstraps what it needs (venv, pip, npm) and is safe to repeat.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_STAMP   := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: all test lint typecheck layers unit demo bench clean

all: test

$(PY_STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Azurite (the local Table storage) is pinned in package.json / package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(PY_STAMP)
	$(BIN)/mypy

layers: $(PY_STAMP)
	$(BIN)/lint-imports

unit: $(PY_STAMP)
	$(BIN)/pytest tests/unit -q

test: $(PY_STAMP) $(NODE_STAMP) lint typecheck layers
	$(BIN)/pytest

demo: $(PY_STAMP) $(NODE_STAMP)
	$(BIN)/python -m rebuilder demo

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .devstack
