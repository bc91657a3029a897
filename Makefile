# Two commands for a new user: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.serkit-installed
DEMO_DIR ?= demo

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[all,test]'
	touch $(STAMP)

demo: setup
	bash scripts/demo.sh $(DEMO_DIR)

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO_DIR) build dist src/*.egg-info
