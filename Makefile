# `make demo` and `make test` set everything up themselves (a .venv with the pinned stack) and run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv demo test test-fast lint data defaults clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "qd needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.installed

data: venv
	$(PY) -m qd data synth

demo: venv
	$(PY) -m qd demo

test: venv
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

lint: venv
	$(PY) -m ruff check .

defaults: venv
	$(PY) -m qd.experiment.conf

clean:
	rm -rf outputs log_files model_files submission report code.zip
