PY ?= python3

.PHONY: install demo test bench

install:
	bash scripts/install.sh

demo: install
	tinykws demo --out tinykws-demo --overwrite

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/bench_mfcc.py
	$(PY) benchmarks/bench_train.py
