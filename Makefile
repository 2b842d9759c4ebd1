# One command each: `make demo` (set up + first run, embedded mode) and `make test` (set up + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo

.PHONY: setup demo test lint bench-paper bench-tile bench-throughput clean

$(BIN)/inspector: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,demo,bench]'
	touch $@

setup: $(BIN)/inspector

demo: setup
	DEMO=$(DEMO) BIN=$(BIN) bash scripts/demo.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest -q

bench-paper: setup
	$(BIN)/python -m bench.paper_table --data ../shared/data/mnist
	$(BIN)/python -m bench.depth_poses
	$(BIN)/python -m bench.paper_report

bench-tile: setup
	$(BIN)/python -m bench.magnetic_tile --data ../shared/data/magnetic-tile

bench-throughput: setup
	$(BIN)/python -m bench.throughput

clean:
	rm -rf $(DEMO) inspector-data .pytest_cache
