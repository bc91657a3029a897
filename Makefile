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

# Two workers, each taking whole test files (module and session fixtures are built once):
# many tests wait on subprocesses, decoding or one core, so two cores finish sooner together.
test: setup
	$(BIN)/python -m pytest --numprocesses=auto --maxprocesses=2 --dist=loadfile

clean:
	rm -rf $(VENV) $(DEMO_DIR) build dist src/*.egg-info
