# `make demo` and `make test` set everything up themselves (a .venv with the pinned stack) and run.
# Python 3.10 to 3.13; 3.11 when there is one: requirements.txt, the lock the tests run on, is for 3.11.
# Other versions install the ranges of pyproject.toml. `make PYTHON=/path/to/python` picks another.
PYTHON ?= $(firstword $(foreach p,python3.11 python3.12 python3.13 python3.10 python3,$(shell command -v $(p) 2>/dev/null)))
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv demo test test-fast test-heavy lint data defaults clean

# One build of .venv at a time: a second make waits for the first (an advisory lock on .venv.lock, released
# when its holder ends, however it ends), then finds .venv built.
define LOCKED
import fcntl, subprocess, sys
if subprocess.call([*sys.argv[1:3], "-q", sys.argv[-1]]) == 0:  # built: nothing to wait for
    sys.exit(0)
lock = open(".venv.lock", "w")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("waiting: another make is building .venv", flush=True)
    fcntl.flock(lock, fcntl.LOCK_EX)
sys.exit(subprocess.call(sys.argv[1:]))
endef
export LOCKED

venv:
	@test -n "$(PYTHON)" || { echo "qd needs Python 3.10 to 3.13 (3.11 best): none found; make PYTHON=/path/to/python3.11"; exit 1; }
	@"$(PYTHON)" -c "$$LOCKED" $(MAKE) --no-print-directory $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@"$(PYTHON)" -c 'import sys; v = sys.version_info[:2]; (3, 10) <= v <= (3, 13) or sys.exit(f"qd needs Python 3.10 to 3.13 (3.11 best); $(PYTHON) is {v[0]}.{v[1]}: make PYTHON=/path/to/python3.11")'
	"$(PYTHON)" -m venv $(VENV)
	if $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
		$(PY) -m pip install -q -r requirements.txt; \
	else \
		echo "Python $$($(PY) -c 'import platform; print(platform.python_version())'): the ranges of pyproject.toml, not the 3.11 lock"; \
		$(PY) -m pip install -q -e '.[experiment,test]'; \
	fi
	touch $@

data: venv
	$(PY) -m qd data synth

demo: venv
	$(PY) -m qd demo

# The tests in three tiers (docs/architecture.md): test-fast the unmarked ones, test adds the slow ones, both on
# every core (pytest-xdist); test-heavy the longest, one at a time: they time their own processes.
# CI runs test and test-heavy. Style: ruff's formatter (120 columns); a `# fmt: skip` keeps a hand-aligned table or
# message as it is.
test: lint
	$(PY) -m pytest -q -n auto -m "not heavy"

test-fast: venv
	$(PY) -m pytest -q -n auto -m "not slow and not heavy"

test-heavy: venv
	$(PY) -m pytest -q -m heavy

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

defaults: venv
	$(PY) -m qd.experiment.conf

clean:
	rm -rf outputs log_files model_files submission report code.zip
