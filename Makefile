# The two commands of the book: `make book` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
PROFILE ?= demo
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.irbook-installed

.PHONY: install book lab test lint unit golden clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[cpu,dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv (if missing) and install irbook with faiss-cpu, book and dev tools

book: install  ## execute every chapter with PROFILE (default demo) and build _build/html
	$(BIN)/irbook book --profile $(PROFILE)

lab: install  ## open JupyterLab on the chapter notebooks (the first code cell holds the parameters)
	$(BIN)/jupyter lab notebooks/

lint: install
	$(BIN)/ruff check lib tests notebooks tools

unit: install
	$(BIN)/pytest

golden: install  ## regenerate the golden notebooks after an intended change of results
	$(BIN)/python tests/golden/make_golden.py

test: lint unit  ## ruff, unit tests, notebook smoke runs and the golden-notebook regression net

clean:
	rm -rf _build runs
