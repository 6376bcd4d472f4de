# copart_tf developer commands. Everything runs in the project's virtualenv `.venv`, which
# `make setup` (scripts/setup.sh) creates and keeps up to date; the other targets depend on it.
#
#   make setup       create/refresh .venv (Python 3.11; PYTHON=... to choose the interpreter)
#   make test        the test suite (pytest)
#   make demo        train the small demo model (configs/demo.cfg)
#   make lint        ruff check + ruff format --check
#   make format      ruff check --fix + ruff format
#   make bench       run every benchmarks/*.py
#   make bazel-test  bazel test //... (needs bazel, e.g. Debian's bazel-bootstrap)
#   make clean       remove caches and Bazel outputs (keeps .venv and data)

VENV := .venv
PY := $(VENV)/bin/python
BAZEL ?= bazel
BAZEL_TARGETS ?= //...

.PHONY: setup demo test lint format bench bazel-test clean

setup:
	@scripts/setup.sh

demo: setup
	$(PY) -m copart_tf.train --flagfile=configs/demo.cfg

test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Runs each benchmark that exists; one failing does not stop the others, but fails the target.
bench: setup
	@status=0; for script in benchmarks/*.py; do \
	  [ -f "$$script" ] || continue; \
	  echo "== $$script"; \
	  $(PY) "$$script" || status=1; \
	done; exit $$status

bazel-test: setup
	$(BAZEL) test $(BAZEL_TARGETS)

clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	-command -v $(BAZEL) > /dev/null && $(BAZEL) clean
