# The README's two commands are `make demo` and `make test`; each sets up what it needs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: setup demo test lint unit bench layer clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[local,dev]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

setup: $(STAMP)
	@bash .ci/system-deps.sh

demo: $(STAMP)
	$(BIN)/cos-autotag demo

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy

test: setup lint layer
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m tests.bench.run

layer: $(STAMP)
	$(BIN)/python layers/build.py

clean:
	rm -rf $(VENV) layers/build .pytest_cache .mypy_cache .ruff_cache
