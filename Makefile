# Two commands: `make test` (the docstring check, then the tests) and `make demo`. Both create or refresh .venv when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
STAMP  := $(VENV)/.almadeliver-installed
BIN    := $(VENV)/bin
# Python may run with PYTHONDONTWRITEBYTECODE=1 (as on our CI machines): every process would then compile
# casatasks, scipy and astropy from source when it imports them (7 of the 12 CPU seconds a CASA child
# took to start). The install writes the bytecode once; our own modules may write theirs.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: test demo venv bench clean

venv: $(STAMP)

# uv installs in seconds from its cache and shows what it fetches; pip is the fallback. Both write the
# bytecode of what they install (uv only when asked: --compile-bytecode).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing almadeliver (editable) and its dependencies into $(VENV) ..."
	@( UV="$$(command -v uv)"; \
	   if [ -z "$$UV" ]; then $(BIN)/python -m pip install -q --disable-pip-version-check uv && UV="$(BIN)/python -m uv"; fi; \
	   $$UV pip install --compile-bytecode --python $(BIN)/python -e '.[test,dask]' ) \
	 || $(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -e '.[test,dask]'
	@touch $(STAMP)

test: $(STAMP)
	@bash scripts/system-deps.sh
	$(BIN)/ruff check almadeliver
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

demo: $(STAMP)
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

# every benchmark runs (a missed target does not stop the others), then one summary table; exit 1 if
# any target was missed. BENCH_ARGS goes to every script (e.g. BENCH_ARGS="--repeat 5").
bench: $(STAMP)
	@summary=$$(mktemp); failed=0; \
	for b in benchmarks/bench_*.py; do echo "== $$b"; \
	  BENCH_SUMMARY=$$summary $(BIN)/python $$b $(BENCH_ARGS) || failed=1; done; \
	echo; echo "== summary"; $(BIN)/python benchmarks/summary.py $$summary || failed=1; rm -f $$summary; \
	exit $$failed

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info demo-output
