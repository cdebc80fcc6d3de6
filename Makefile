# The two set-up commands (README.md): `make run` and `make test`.
# Each creates .venv with the machine's Python 3.11 and installs the pinned
# requirements first, so both work on a fresh clone.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
TEST_STAMP := $(VENV)/.test-installed

# Debian packages the app and tests need: a Japanese font for rich-menu images,
# Chromium for the real-browser linking test. Installed only when missing.
DEBIAN_PACKAGES := fonts-ipafont-gothic chromium
DEBIAN_STAMP := $(VENV)/.debian-installed

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

$(DEBIAN_STAMP): | $(BIN)/python
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null \
	      || echo "warning: could not install$$missing"; \
	  else echo "warning: missing Debian packages:$$missing (install them as root)"; fi; \
	fi
	touch $@

system-deps: $(DEBIAN_STAMP)

run: $(RUN_STAMP) $(DEBIAN_STAMP)
	$(BIN)/python -m bot

worker: $(RUN_STAMP)
	$(BIN)/python -m scheduler

linesim: $(RUN_STAMP)
	$(BIN)/python -m linesim --port 8090

test: $(TEST_STAMP) $(DEBIAN_STAMP)
	$(BIN)/python -m pytest -q

bench: $(TEST_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache
