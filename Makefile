# Two commands matter: `make run` (the main job) and `make test` (the whole suite).
# Each sets itself up on a fresh machine: a .venv with the package and its extras.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean bytecode

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# compat: a plain .pth path entry; the default editable finder hook costs every
	# Python start ~11 ms (falls back to it if a future setuptools drops compat)
	$(BIN)/python -m pip install -q -e '.[test,bench]' --config-settings editable_mode=compat \
	  || $(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

# Compiled once here so that each tipcd, `tipc` and test helper process does not
# compile every module again: an editable install writes no bytecode, and with
# PYTHONDONTWRITEBYTECODE set (CI sandboxes) imports never cache it either.  Starting
# tipcd costs 0.12 s of CPU with it and 0.25 s without (64 daemons: 8 s of CPU).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 tipcpy cli bench tests

run: $(STAMP) bytecode
	$(BIN)/python -m cli.demo

test: $(STAMP) bytecode
	$(BIN)/ruff check tipcpy cli tests bench
	$(MAKE) typecheck
	$(BIN)/python -m pytest -q -ra

# files and per-package strictness: [tool.mypy] in pyproject.toml
typecheck: $(STAMP)
	$(BIN)/python -m mypy

lint: $(STAMP)
	$(BIN)/ruff check tipcpy cli tests bench

bench: $(STAMP) bytecode
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info

# N tipcd in network namespaces, random faults, numbered traffic (needs root; see README)
.PHONY: soak
soak: $(STAMP) bytecode
	$(BIN)/python -m bench.soak
