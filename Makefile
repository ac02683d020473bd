# The README's two commands: `make run` and `make test`. Both create or reuse the virtual
# environment in $(VENV) and install what they need; torch is pinned by constraints.txt.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install run test demo bench-speed clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: demo

# A small local training run: synthetic pairs with a known nonlinear map, the cube and every baseline.
demo: install
	mkdir -p runs
	$(VENV)/bin/cube synth --out runs/demo-pairs.npz
	$(VENV)/bin/cube train --data runs/demo-pairs.npz --out runs/demo --set grid=[4,4,4] --set n_epochs=20

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench-speed: install
	$(PY) bench/train_speed.py

clean:
	rm -rf runs .pytest_cache
