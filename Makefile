# xrbench: `make setup`, then `make bench METHOD=patchcore`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
METHOD ?= patchcore
BOARD ?= synth-cxr-ad
ARGS ?=

.PHONY: setup test bench lint benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	$(BIN)/pip install -e '.[dev]'

# pytest exits 5 when it collected no tests: that is a failure too.
test:
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests were collected" >&2; fi; exit $$rc

bench:
	$(BIN)/xrbench bench --method $(METHOD) --board $(BOARD) $(ARGS)

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

benchmark:
	$(BIN)/python -m pytest benchmarks -q --benchmark-enable --benchmark-columns=min,median,mean,ops,rounds

clean:
	rm -rf site/_build .pytest_cache .ruff_cache
