# xrbench: `make setup`, then `make bench METHOD=patchcore`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
METHOD ?= patchcore
BOARD ?= synth-cxr-ad
ARGS ?=

.PHONY: setup browser test bench leaderboard site verify lint benchmark benchmark-scale mutants clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	@$(MAKE) --no-print-directory browser

# Debian's Chromium and ChromeDriver drive the site's browser tests.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium and chromedriver are installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else \
		echo "warning: install Debian's chromium and chromium-driver to run the browser tests" >&2; \
	fi

# pytest exits 5 when it collected no tests: that is a failure too.
test:
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests were collected" >&2; fi; exit $$rc

bench:
	$(BIN)/xrbench bench --method $(METHOD) --board $(BOARD) $(ARGS)

# Every method that supports each board's task, on the synthetic boards; cells already in the
# results database are skipped, so an interrupted grid resumes where it stopped.
METHODS ?= all
BOARDS ?= synth-cxr-ad,synth-dental-ad,synth-cxr-cls
leaderboard:
	$(BIN)/xrbench grid --methods $(METHODS) --boards $(BOARDS) $(ARGS)

# The leaderboard from the committed submission bundles (verified; a failing one is shown
# flagged, never ranked) and from the runs in the results database.
site:
	$(BIN)/xrbench import --unverified leaderboards/submissions
	$(BIN)/xrbench site

# Every committed submission bundle, re-scored from its predictions; fails on any failure.
verify:
	$(BIN)/xrbench verify leaderboards/submissions

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

benchmark:
	$(BIN)/python -m pytest benchmarks -q --benchmark-enable --benchmark-columns=min,median,mean,ops,rounds

# A synthetic board of IMAGES images through the whole protocol: images/s of every stage.
IMAGES ?= 20000
benchmark-scale:
	$(BIN)/python benchmarks/scale.py --images $(IMAGES) $(ARGS)

# Deliberate bugs in the statistics and metric code; every one must fail a test.
mutants:
	$(BIN)/python tests/mutants.py

clean:
	rm -rf site/_build .pytest_cache .ruff_cache
