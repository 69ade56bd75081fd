# Everything runs in the project's own virtual environment (.venv), made by scripts/install.sh:
# stock Debian/Ubuntu refuse `pip install` into the system Python (PEP 668).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test bench

install:
	bash scripts/install.sh

demo: install
	$(VENV)/bin/tinykws demo --out tinykws-demo --overwrite

test: install
	$(PY) -m pytest -q -n 2

bench: install
	$(PY) benchmarks/bench_mfcc.py
	$(PY) benchmarks/bench_train.py
