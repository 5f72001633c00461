# xrbench: `make bench METHOD=patchcore` and `make test` set everything up on first use.
# VENV=path uses (or creates) another virtual environment, shared between clones for example;
# by default each checkout has its own .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
READY := $(VENV)/.xrbench-ready
METHOD ?= patchcore
BOARD ?= synth-cxr-ad
ARGS ?=

.PHONY: setup browser test test-bridge bench check leaderboard site verify rerun-check lint docs notebooks wheel wheel-check benchmark \
	benchmark-smoke benchmark-anomalib benchmark-scale gpu-check mutants clean

# The environment, installed (editable, with the dev tools) into $(VENV) when missing or when
# the project's dependencies changed since; every target below needs it.
$(READY): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	@$(MAKE) --no-print-directory browser
	@touch $(READY)

setup: $(READY)

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
test: $(READY)
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests were collected" >&2; fi; exit $$rc

# Every bridged anomalib model through the conformance checks (about nine minutes on two cores).
test-bridge: $(READY)
	$(BIN)/python -m pytest -q -m bridge tests/test_anomalib_bridge.py

bench: $(READY)
	$(BIN)/xrbench bench --method $(METHOD) --board $(BOARD) $(ARGS)

# The conformance checks of one method on tiny generated boards: what a contributor runs first.
check: $(READY)
	$(BIN)/xrbench check $(METHOD) $(ARGS)

# Every method that supports each board's task, on the synthetic boards; cells already in the
# results database are skipped, so an interrupted grid resumes where it stopped; each finished
# cell without a bundle in leaderboards/submissions gets one (commit them as they come).
METHODS ?= all
BOARDS ?= synth-cxr-ad,synth-dental-ad,synth-cxr-cls
leaderboard: $(READY)
	$(BIN)/xrbench grid --methods $(METHODS) --boards $(BOARDS) --bundles leaderboards/submissions $(ARGS)

# The leaderboard from the committed submission bundles (verified; a failing one is shown
# flagged, never ranked) and from the runs in the results database.
site: $(READY)
	$(BIN)/xrbench import --unverified leaderboards/submissions
	$(BIN)/xrbench site

# Every committed submission bundle, re-scored from its predictions; fails on any failure.
verify: $(READY)
	$(BIN)/xrbench verify leaderboards/submissions

# The committed intensity bundle run again here: its corrupted test set must hash to the one the
# board file froze, and its predictions must be byte-identical (a few minutes: the synthetic
# dataset is generated first).
rerun-check: $(READY)
	$(BIN)/xrbench verify --rerun --quiet leaderboards/submissions/synth-cxr-ad/intensity

lint: $(READY)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The documentation site (mkdocs-material), built offline; a warning fails the build.
docs: $(READY)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The example notebooks, each run top to bottom in a fresh kernel: a cell that errors fails. They
# store their runs in a database of their own (the workspace's is left alone); the executed
# copies, outputs included, are written to build/notebooks/.
NOTEBOOKS ?= $(wildcard docs/notebooks/*.ipynb)
notebooks: $(READY)
	@mkdir -p build/notebooks
	@db=$$(mktemp -d)/notebooks.duckdb; for nb in $(NOTEBOOKS); do \
		start=$$(date +%s); \
		XRBENCH_DB=$$db $(BIN)/jupyter-execute --timeout=1200 --output="$(CURDIR)/build/notebooks/{notebook_name}" \
			"$$nb" || exit 1; \
		echo "$$nb ran top to bottom in $$(( $$(date +%s) - start )) s"; \
	done

wheel: $(READY)
	rm -rf dist && $(BIN)/pip wheel . --no-deps --no-build-isolation -w dist -q

# The wheel installed into a fresh virtual environment outside the checkout, then one run.
wheel-check: wheel
	$(BIN)/python benchmarks/wheel_check.py dist/xrbench-*.whl

benchmark: $(READY)
	$(BIN)/python -m pytest benchmarks -q --benchmark-enable --benchmark-columns=min,median,mean,ops,rounds

# A synthetic board of IMAGES images through the whole protocol: images/s of every stage.
IMAGES ?= 20000
# Native methods against their anomalib implementations on synth-cxr-ad (about an hour on two cores).
# Every benchmark once, untimed (pytest-benchmark disabled): checks they still run; CI runs it.
benchmark-smoke: $(READY)
	$(BIN)/python -m pytest -q benchmarks

benchmark-anomalib: $(READY)
	$(BIN)/python benchmarks/native_vs_anomalib.py

benchmark-scale: $(READY)
	$(BIN)/python benchmarks/scale.py --images $(IMAGES) $(ARGS)

# Every CUDA path measured in one call, within 8 minutes (benchmarks/gpu_check.py): the report
# goes to benchmarks/results/gpu-check.{json,md}. DRY=1 runs the same steps on the CPU with tiny
# boards and sizes (into build/gpu-check/). GPU_PYTHON=python3 runs it with another interpreter
# that has the dependencies (a GPU machine's own), without setting up $(VENV).
gpu-check: $(if $(GPU_PYTHON),,$(READY))
	PYTHONPATH=. $(or $(GPU_PYTHON),$(BIN)/python) benchmarks/gpu_check.py $(if $(DRY),--dry) $(ARGS)

# Deliberate bugs in the statistics and metric code; every one must fail a test.
mutants: $(READY)
	$(BIN)/python tests/mutants.py

clean:
	rm -rf site/_build dist build .pytest_cache .ruff_cache
