#################################################################################
# GLOBALS                                                                       #
#################################################################################

PYTHON_INTERPRETER ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPARK_STAMP := $(VENV)/.installed-spark
DEMO_DIR := data/demo
DEMO_CUSTOMERS ?= 5000
DATA ?= $(DEMO_DIR)
CHROMIUM ?= /usr/bin/chromium
JAVA ?= /usr/bin/java
# The PostgreSQL tests start a throwaway server from Debian's binaries (package postgresql).
PG_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))
PG_STAMP := $(if $(PG_INITDB),$(PG_INITDB),.postgresql-missing)
BENCH_SIZES ?= 10000,100000
CONFIG ?=
OUTPUT ?=
ENGINE ?=
ARGS ?=

.DEFAULT_GOAL := help

#################################################################################
# COMMANDS                                                                      #
#################################################################################

# The environment is a stamp file: it is rebuilt only when pyproject.toml changes.
# Its last step compiles UMAP's numba code once into .cache/numba (about a minute on two
# cores), so no later run or test pays it again (benchmarks/jit.py measures it).
$(STAMP): pyproject.toml
	$(PYTHON_INTERPRETER) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -c "import numpy as np; from models.reducers import UMAPReducer; \
	  UMAPReducer(sample_size=200).fit(np.random.default_rng(0).normal(size=(400, 8)))"
	touch $(STAMP)

# The Spark extra (pyspark) on top: for the tests and `make train ENGINE=spark` only.
$(SPARK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,spark]"
	touch $(SPARK_STAMP)

$(DEMO_DIR)/.stamp: $(STAMP)
	$(BIN)/personas demo --out $(DEMO_DIR) --customers $(DEMO_CUSTOMERS) --seed 0
	touch $@

# The browser test drives Debian's Chromium (never a downloaded one); installed as root
# when missing, else the test is skipped with its reason.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium missing (as root: apt-get install -y chromium): the browser test will be skipped"; fi

# Spark runs on Java 17+ (Debian's default JRE); installed as root when missing, else the
# Spark tests are skipped with their reason.
$(JAVA):
	@if command -v java >/dev/null || [ -n "$$JAVA_HOME" ]; then true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null; \
	else echo "java missing (as root: apt-get install -y default-jre-headless): the Spark tests will be skipped"; fi

# The PostgreSQL tests run a throwaway server (initdb, pg_ctl) of Debian's postgresql
# package, in a temporary folder on a free local port; installed as root when missing,
# else those tests are skipped with their reason.
.postgresql-missing:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "postgresql missing (as root: apt-get install -y postgresql): the PostgreSQL tests will be skipped"; fi

## Create the virtual environment and install the project (only when pyproject.toml changed)
.PHONY: setup
setup: $(STAMP)

## Write the demo data folder (data/demo)
.PHONY: demo
demo: $(DEMO_DIR)/.stamp

## Train personas: make train [DATA=folder] [CONFIG=file.yaml] [OUTPUT=dir] [ENGINE=spark]
.PHONY: train
train: $(STAMP) $(if $(filter spark,$(ENGINE)),$(SPARK_STAMP) $(JAVA)) $(if $(filter $(DEMO_DIR),$(DATA)),$(DEMO_DIR)/.stamp)
	$(BIN)/personas train --data $(DATA) $(if $(CONFIG),--config $(CONFIG)) $(if $(OUTPUT),--output $(OUTPUT)) $(if $(ENGINE),--engine $(ENGINE)) $(ARGS)

B2B_DIR := data/b2b
$(B2B_DIR)/.stamp: $(STAMP)
	$(BIN)/personas demo --b2b --out $(B2B_DIR) --seed 0
	touch $@

## Train personas of accounts on the B2B demo (500 accounts, their people and roles): make train-accounts
.PHONY: train-accounts
train-accounts: $(B2B_DIR)/.stamp
	$(BIN)/personas train --data $(B2B_DIR) --config pipelines/conf/b2b.yaml $(if $(OUTPUT),--output $(OUTPUT)) $(ARGS)

## Fetch the CDNOW sample (real transactions, 2,357 customers) into data/cdnow: make train DATA=data/cdnow
data/cdnow/.stamp: $(STAMP)
	$(BIN)/python scripts/cdnow.py --out data/cdnow
	touch $@

.PHONY: cdnow
cdnow: data/cdnow/.stamp

## Re-segment as a scheduler would: train, compare with the champion, promote if the gates pass
.PHONY: resegment
resegment: $(STAMP) $(if $(filter $(DEMO_DIR),$(DATA)),$(DEMO_DIR)/.stamp)
	$(BIN)/personas train --data $(DATA) $(if $(CONFIG),--config $(CONFIG)) $(if $(OUTPUT),--output $(OUTPUT)) $(ARGS)

## Check a data folder against the contract: make validate [DATA=folder]
.PHONY: validate
validate: $(STAMP) $(if $(filter $(DEMO_DIR),$(DATA)),$(DEMO_DIR)/.stamp)
	$(BIN)/personas validate --data $(DATA) $(if $(CONFIG),--config $(CONFIG))

## Time reading the demo from PostgreSQL vs Parquet, and publishing: make bench-postgres [PG_CUSTOMERS=100000]
PG_CUSTOMERS ?= 100000
.PHONY: bench-postgres
bench-postgres: $(STAMP) $(PG_STAMP)
	$(BIN)/python benchmarks/postgres.py --customers $(PG_CUSTOMERS)

## Time the train recipe stage by stage: make bench [BENCH_SIZES=10000,100000,1000000]
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py --sizes $(BENCH_SIZES)

# The tests run on every core (pytest-xdist), each test file whole on one worker: a file's
# fixtures (a Spark session, a PostgreSQL server, a trained demo) are built once.
TEST_WORKERS ?= auto

## Run the test suite (installs the Spark extra, and Debian's chromium, Java and PostgreSQL if missing)
.PHONY: test
test: $(STAMP) $(SPARK_STAMP) $(CHROMIUM) $(JAVA) $(PG_STAMP)
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadfile

## Lint and check formatting with ruff
.PHONY: lint
lint: $(STAMP)
	$(BIN)/ruff format --check features models pipelines tests scripts benchmarks
	$(BIN)/ruff check features models pipelines tests scripts benchmarks

## Format the code with ruff
.PHONY: format
format: $(STAMP)
	$(BIN)/ruff check --fix features models pipelines tests scripts benchmarks
	$(BIN)/ruff format features models pipelines tests scripts benchmarks

## Open the MLflow UI on the local tracking store (127.0.0.1)
.PHONY: ui
ui: $(STAMP)
	$(BIN)/personas ui

## Delete generated files (outputs, demo data, caches); keeps mlruns/ and .venv/
.PHONY: clean
clean:
	rm -rf outputs $(DEMO_DIR) $(B2B_DIR) .pytest_cache .ruff_cache
	find . -type d -name __pycache__ -prune -exec rm -rf {} +

#################################################################################
# Self Documenting Commands                                                     #
#################################################################################

## Show this help
.PHONY: help
help:
	@awk '/^## /{desc=substr($$0,4); next} /^[a-zA-Z_-]+:/{if(desc){split($$1,t,":"); printf "  \033[36m%-10s\033[0m %s\n", t[1], desc}; desc=""}' $(MAKEFILE_LIST)
