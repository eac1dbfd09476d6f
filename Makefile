# Two entry points, both of which set everything up first on a fresh machine:
#   make demo   every faithfulness test of every method on scikit-learn digits (offline, ~30 s),
#               printing its report
#   make test   the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

.PHONY: setup demo test bench
setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/saliencylab evaluate --preset evaluate-quick

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_attribution.py
	$(PY) benchmarks/bench_sgt_step.py
	$(PY) benchmarks/bench_road.py
	PYTHONPATH=src:benchmarks $(PY) benchmarks/bench_metrics.py
	PYTHONPATH=src:benchmarks $(PY) benchmarks/bench_mprt.py
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_executor.py
