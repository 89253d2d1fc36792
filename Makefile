# Epochscope: `make demo` to see it run, `make test` to check it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNS   ?= runs
DATA   ?= data/demo
HOST   ?= 127.0.0.1
PORT   ?= 8050

.PHONY: install install-mxnet demo demo-data dashboard stop test test-quick test-real test-package test-faults lint format bench catalogue clean

install: $(STAMP)  ## make .venv with the dashboard, trainer and dev requirements (quick when nothing changed)

$(STAMP): requirements.txt requirements-train.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-train.txt -r requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

MXNET_VENV    := .venv-mxnet
MXNET_PACKAGE ?= mxnet
MXNET_STAMP   := $(MXNET_VENV)/.installed-$(MXNET_PACKAGE)

install-mxnet: $(MXNET_STAMP)  ## .venv-mxnet for `train --engine mxnet` (MXNET_PACKAGE=mxnet-cu112: CUDA 11.2 GPUs)

$(MXNET_STAMP): requirements-mxnet.txt
	@test -x $(MXNET_VENV)/bin/python || $(PYTHON) -m venv $(MXNET_VENV)
	-$(MXNET_VENV)/bin/pip uninstall -q -y $(filter-out $(MXNET_PACKAGE),mxnet mxnet-cu112)
	$(MXNET_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-mxnet.txt "$(MXNET_PACKAGE)==1.9.1"
	@rm -f $(MXNET_VENV)/.installed-*
	@touch $@

demo-data: install  ## make the embedded synthetic demo dataset (all 1000 classes, 32 px)
	$(BIN)/python -m trainer make-demo-data $(DATA) --if-missing

demo: demo-data  ## demo data, trainer in the background, dashboard in the foreground
	$(BIN)/python -m trainer train --data $(DATA) --runs-dir $(RUNS) --name demo --demo --background --resume-or-start
	@echo ""
	@echo "Dashboard: http://$(HOST):$(PORT)/?run=demo   (Ctrl-C stops the dashboard;"
	@echo "           'make stop' stops the trainer)"
	$(BIN)/python -m dashboard --runs-dir $(RUNS) --host $(HOST) --port $(PORT) --data-root $(DATA)

stop: install  ## stop the background demo trainer cleanly
	$(BIN)/python -m trainer stop demo --runs-dir $(RUNS)

# one pytest-xdist worker per core, each test module on one worker (its module fixtures built
# once); the session's tiny dataset and training run are built once for all workers
WORKERS ?= auto
PYTEST  := $(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile
# the fault tests are a few long tests (the damage test in shards): spread test by test
PYTEST_EACH := $(BIN)/python -m pytest -q -n $(WORKERS) --dist load
TIMED    = start=$$(date +%s); $(1); rc=$$?; echo "$@: $$(( $$(date +%s) - start )) s"; exit $$rc

# Azurite (Microsoft's Azure Blob emulator) for the bucket tests, from npm into .tools/
AZURITE := .tools/node_modules/.bin/azurite-blob
$(AZURITE):
	npm install --prefix .tools --no-audit --no-fund --loglevel=error azurite@3.37.0

test: install lint $(AZURITE)  ## the whole suite: unit, real training runs, browser tests (not the fault or real-photo tests)
	@$(call TIMED,$(PYTEST) -m "not faults and not realphotos and not packaging")

test-quick: install $(AZURITE)  ## about a minute: no browser, no slow tests
	@$(call TIMED,$(PYTEST) -m "not browser and not slow and not faults and not realphotos and not packaging")

test-real: install  ## accuracy on real photos: planted label errors found, similar images agree
	@$(call TIMED,$(PYTEST) -m realphotos)

test-package: install  ## the built wheel with [dashboard,s3] in a fresh venv serves a bucket run
	@$(call TIMED,$(PYTEST) -m packaging)

test-faults: install  ## heavy fault tests: kills, full disk, lost rank, load (docs/reliability.md)
	@$(call TIMED,$(PYTEST_EACH) -m faults)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install  ## benchmarks: bench/results/latest.json and docs/performance.md
	$(BIN)/python -m bench

catalogue: install  ## regenerate assets/imagenet/*.tsv (needs apt wordnet-base)
	$(BIN)/python -m assets.build_catalogue

clean:
	rm -rf $(RUNS) data .pytest_cache test-output
