# Two commands for a fresh machine: `make run` and `make test`. `make check` lints and checks the layers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
CUTS   := data/cuts
PORT   ?= 8501
# The interface to serve on: this machine only unless told (`make run ADDRESS=0.0.0.0` serves every one).
ADDRESS ?= 127.0.0.1

.PHONY: run test check demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

demo: $(VENV)/.runtime  ## rebuild the demo's three data cuts (its decision log and review marks go with them)
	rm -rf $(CUTS)
	$(BIN)/python -m smc build-demo --cuts $(CUTS)

# The demo sign-in provider (dev/idp, npm oidc-provider) from its lockfile.
IDP_MODULES := dev/idp/node_modules/.package-lock.json
$(IDP_MODULES): dev/idp/package-lock.json
	npm ci --prefix dev/idp --no-audit --no-fund --silent

# serve-demo builds the demo's three data cuts in data/cuts if it has none, starts the demo sign-in provider,
# prints its users, and serves the app signing in there, with
# MALLOC_ARENA_MAX=2 (glibc gives each session's thread its own malloc arena; two keep the server about 50 MB
# smaller with 5 sessions open: docs/performance.md). The other server defaults (upload limit, no error details,
# no developer menu) are in .streamlit/config.toml.
run: $(VENV)/.runtime $(IDP_MODULES)  ## serve the app on the demo data at http://$(ADDRESS):$(PORT), sign-in beside it
	$(BIN)/python -m smc serve-demo --address $(ADDRESS) --port $(PORT)

check: $(VENV)/.dev  ## ruff, and the import contracts of pyproject.toml (the layers of docs/architecture.md)
	$(BIN)/ruff check .
	PYTHONPATH=. $(BIN)/lint-imports --no-cache

test: $(VENV)/.dev $(IDP_MODULES)  ## the whole suite, browser tests included (they start their own provider)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(CUTS) data/demo.duckdb .pytest_cache
