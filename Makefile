# Two commands matter: `make run` (the main job) and `make test` (the whole suite).
# Each sets itself up on a fresh machine: a .venv with the package and its extras.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m cli.demo

test: $(STAMP)
	$(BIN)/ruff check tipcpy cli tests bench
	$(MAKE) typecheck
	$(BIN)/python -m pytest -q -ra

# files and per-package strictness: [tool.mypy] in pyproject.toml
typecheck: $(STAMP)
	$(BIN)/python -m mypy

lint: $(STAMP)
	$(BIN)/ruff check tipcpy cli tests bench

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info

# N tipcd in network namespaces, random faults, numbered traffic (needs root; see README)
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m bench.soak
