# The two set-up commands (README.md): `make run` and `make test`.
# Each creates .venv with the machine's Python 3.11 and installs the pinned
# requirements first, so both work on a fresh clone.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
TEST_STAMP := $(VENV)/.test-installed

# Debian packages: a Japanese font for rich-menu images (the app), plus Chromium
# for the real-browser linking test. Installed only when missing.
RUN_DEBIAN := fonts-ipafont-gothic
TEST_DEBIAN := $(RUN_DEBIAN) chromium
RUN_DEBIAN_STAMP := $(VENV)/.debian-run
TEST_DEBIAN_STAMP := $(VENV)/.debian-test

.PHONY: run test worker linesim bench clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(TEST_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $(RUN_STAMP) $@

$(RUN_DEBIAN_STAMP): | $(BIN)/python
	@bash tools/debian-packages.sh $(RUN_DEBIAN)
	touch $@

$(TEST_DEBIAN_STAMP): | $(BIN)/python
	@bash tools/debian-packages.sh $(TEST_DEBIAN)
	touch $(RUN_DEBIAN_STAMP) $@

system-deps: $(TEST_DEBIAN_STAMP)

run: $(RUN_STAMP) $(RUN_DEBIAN_STAMP)
	$(BIN)/python -m bot

worker: $(RUN_STAMP)
	$(BIN)/python -m scheduler

linesim: $(RUN_STAMP)
	$(BIN)/python -m linesim --port 8090

test: $(TEST_STAMP) $(TEST_DEBIAN_STAMP)
	$(BIN)/python -m pytest -q

bench: $(TEST_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache
