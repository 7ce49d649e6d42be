# Every install step lives here: `make test` and `make demo` work on a fresh clone with
# only Python 3.11 and pip. torch is the CPU build (torch==2.13.0, see README).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0

.PHONY: venv demo test test-fast bench compat reliability reliability-readme clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@$(PYTHON) -c "import sys; sys.exit(sys.version_info < (3, 11))" || { echo "error: Python 3.11 or newer is needed (found $(PYTHON)); run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check $(TORCH) -c constraints.txt
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m cli.demo

test: $(STAMP)
	$(PY) -m pytest -n 2

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) -m bench

# Real consumers (vLLM CPU, optimum+onnxruntime, accelerate, torch DCP, llama.cpp's converter)
# read a view and its source, each in its own pinned venv under compat/out/venvs/ (several GB,
# downloaded on the first run): not part of `make test` or CI. See compat/harness.py.
compat: $(STAMP)
	$(PY) -m compat

reliability: $(STAMP)
	$(PY) -m tests.reliability.report

# The README's reliability section, regenerated from a full run that checked every figure.
reliability-readme: $(STAMP)
	$(PY) -m tests.reliability.report --write-readme

clean:
	rm -rf $(VENV) .pytest_cache
