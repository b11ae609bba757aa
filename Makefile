# Two commands: `make test` and `make demo`. Both create or refresh .venv when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
STAMP  := $(VENV)/.almadeliver-installed
BIN    := $(VENV)/bin

.PHONY: test demo venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing almadeliver (editable) into $(VENV) ..."
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,dask]'
	@touch $(STAMP)

test: $(STAMP)
	@bash scripts/system-deps.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info demo-output
