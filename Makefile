# Two commands do everything: `make demo` and `make test` (each sets up .venv first).
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
PYTEST_ARGS ?=
export PYTHON VENV CONSTRAINTS

.PHONY: setup demo test report clean-venv

setup:
	@bash tools/bootstrap.sh

demo: setup
	@$(VENV)/bin/pti demo

test: setup
	@$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

report: setup
	@$(VENV)/bin/python -m pti report

clean-venv:
	rm -rf $(VENV)
