# rebuilder — every target bootstraps what it needs (venv, pip, npm) and is safe to repeat.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_STAMP   := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
INFRA_VENV  := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed

.PHONY: all test lint typecheck layers unit demo bench clean browser infra-check

all: test

$(PY_STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Azurite (the local Table storage) is pinned in package.json / package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# checkov lives in its own venv: its pins would fight the app's.
$(INFRA_STAMP): requirements-infra.txt
	test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-infra.txt
	touch $@

# infra/ checked offline (the Bicep CLI cannot be installed here): checkov must pass; every suppression
# is an inline comment with its reason (tests/infra checks the reasons are there).
infra-check: $(INFRA_STAMP)
	$(INFRA_VENV)/bin/checkov --directory infra --framework bicep --compact --quiet --skip-download

# The report's browser test needs Debian's Chromium; installed here where it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(PY_STAMP)
	$(BIN)/mypy

layers: $(PY_STAMP)
	$(BIN)/lint-imports

unit: $(PY_STAMP)
	$(BIN)/pytest tests/unit -q

# Two workers; a module's tests stay on one worker (module fixtures such as the demo run once).
test: $(PY_STAMP) $(NODE_STAMP) browser lint typecheck layers infra-check
	$(BIN)/pytest -n 2 --dist loadscope

demo: $(PY_STAMP) $(NODE_STAMP)
	$(BIN)/python -m devstack demo

clean:
	rm -rf $(VENV) $(INFRA_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .devstack
