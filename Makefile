# Two commands are the contract: `make demo` runs the pipeline, `make test` runs the tests.
# Each bootstraps what it needs (venv, packages, Airflow metadata DB) and a second run installs nothing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PROJECT := $(CURDIR)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# Which Airflow: 2 (2.11.2 with the Astro SDK, the stack this project was asked for: the default) or
# 3 (3.3.2, the supported line). Each has its own lock, venv and Airflow home; the registry, the
# models and the production bundle under data/ are shared, so moving up keeps history.
AIRFLOW ?= 2
ifeq ($(AIRFLOW),2)
VENV := $(PROJECT)/.venv
LOCK := requirements-dev-lock.txt
RUNTIME_LOCK := requirements-lock.txt
REQUIREMENTS := requirements.txt
DEV_REQUIREMENTS := requirements-dev.txt
# astro-sdk 1.9 caps flask-session below 0.6, which 2.11.1+ cannot meet; astro never imports it.
OVERRIDES := --override overrides-airflow2.txt
AIRFLOW_HOME ?= $(PROJECT)/.airflow
else ifeq ($(AIRFLOW),3)
VENV := $(PROJECT)/.venv-airflow3
LOCK := requirements-airflow3-dev-lock.txt
RUNTIME_LOCK := requirements-airflow3-lock.txt
REQUIREMENTS := requirements-airflow3.txt
DEV_REQUIREMENTS := requirements-airflow3-dev.txt
OVERRIDES :=
AIRFLOW_HOME ?= $(PROJECT)/.airflow-3
else
$(error AIRFLOW=$(AIRFLOW): use AIRFLOW=2 (2.11.2 with the Astro SDK, the default) or AIRFLOW=3 (3.3.2))
endif
export AIRFLOW_HOME
BIN := $(VENV)/bin
# The stamp names the lock's hash and the install recipe (-pyc): changing either reinstalls.
INSTALLED := $(VENV)/.installed-$(shell cat $(LOCK) $(if $(OVERRIDES),overrides-airflow2.txt) | sha256sum | cut -c1-12)-pyc
# torch's CPU wheel: from the local wheel folder where there is one, else from PyTorch's CPU index.
WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)

# The project's Airflow: everything inside the project, SQLite metadata, no example DAGs.
export AIRFLOW__CORE__DAGS_FOLDER := $(PROJECT)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS := False
# Astro SDK 1.9 passes Table/File objects through XCom; glob patterns, not regexes.
export AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES := airflow.* astro.*
# A scheduler restarted after a crash resets the dead one's running tasks at its next orphan check:
# every 30 s here (Airflow's default is 300 s), so a `make demo` after a killed one resumes within ~30 s.
export AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL ?= 30
export PYTHONPATH := $(PROJECT)
# No model hub at run time: a hub id fails at once with how to point at a local model, not after retries.
export HF_HUB_OFFLINE ?= 1
export PATH := $(BIN):$(PATH)
# The registry: DuckDB file by default. Set AIRFLOW_VAR_MRI_DB_CONN_ID=mri_pg to use Postgres.
export AIRFLOW_CONN_MRI_DB ?= {"conn_type": "duckdb", "host": "$(PROJECT)/data/mri.duckdb"}
export AIRFLOW_CONN_MRI_PG ?= postgresql://mri@127.0.0.1:5432/mri

.PHONY: help install lock airflow-db airflow migrate phantom demo demo-scale predict copy-registry system-deps test bench parse-times dq-report lint clean retract
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Byte-compiled at install, as pip does and uv does not by default: where PYTHONDONTWRITEBYTECODE is
# set (CI images), every Airflow task process would otherwise compile ~1,400 modules first (+2.5 s).
# --require-hashes: every file must match a sha256 the lock lists for it, whichever index or wheel
# folder it comes from (torch's extra index included), or uv refuses it and installs nothing. uv
# itself comes the same way, by hash (requirements-uv-lock.txt), wheels only.
# --no-deps, as in the Dockerfile: the lock is the whole resolved set, made with $(OVERRIDES) already;
# hash-checking mode refuses an override that is not pinned and hashed (flask-session>=0.8.0).
install: $(INSTALLED)  ## create .venv and install the locked packages (idempotent)
$(INSTALLED): $(LOCK) requirements-uv-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --only-binary :all: -r requirements-uv-lock.txt
	$(BIN)/uv pip install --python $(BIN)/python --reinstall --compile-bytecode --require-hashes --no-deps $(WHEELS) -r $(LOCK)
	rm -f $(VENV)/.installed-* && touch $@

# Run where the lock files are: uv keeps their pins as preferences, so a re-run changes only what must.
# --generate-hashes: the sha256 of every file of every pinned version, which install requires. torch's
# come from the wheel uv resolves: /opt/wheels where it exists, else PyTorch's CPU index.
lock: install  ## re-resolve the requirements of this AIRFLOW into its lock files (with hashes)
	$(BIN)/uv pip compile $(REQUIREMENTS) --python-version 3.11 --generate-hashes $(WHEELS) $(OVERRIDES) -o $(RUNTIME_LOCK)
	$(BIN)/uv pip compile $(DEV_REQUIREMENTS) -c $(RUNTIME_LOCK) --python-version 3.11 --generate-hashes $(WHEELS) $(OVERRIDES) -o $(LOCK)

# Airflow's metadata DB is migrated once per configured database, not per file: the stamp names the
# hash of the connection string, so switching to the Postgres profile in the same checkout migrates it.
META_DB = $(or $(AIRFLOW__DATABASE__SQL_ALCHEMY_CONN),sqlite:///$(AIRFLOW_HOME)/airflow.db)
META_STAMP = $(AIRFLOW_HOME)/.metadata-db-$(shell printf '%s' '$(META_DB)' | sha256sum | cut -c1-12)
airflow-db: $(META_STAMP)  ## create or upgrade the Airflow metadata DB of the configured profile
$(META_STAMP): | $(INSTALLED)
	$(BIN)/airflow db migrate
	touch $@

# Airflow 3's CLI reads DAGs and import errors from the metadata DB, which a dag-processor fills; outside
# the demo none runs, so on Airflow 3 the DAGs folder is parsed into the DB first (its log: dags-sync.log).
airflow: airflow-db  ## any airflow command in the project's environment: make airflow ARGS="dags list"
ifeq ($(AIRFLOW),3)
	-$(BIN)/airflow dags reserialize > $(AIRFLOW_HOME)/dags-sync.log 2>&1
endif
	$(BIN)/airflow $(ARGS)

migrate: airflow-db  ## apply migrations/ to the registry and size its pool
	$(BIN)/python -m include.db migrate

phantom: install  ## generate the phantom MRI data set into data/phantom (330 per class, seed 0)
	$(BIN)/python -m launcher.phantom --out $(PROJECT)/data/phantom --per-class 330 --seed 0

demo: migrate  ## the whole pipeline on the embedded defaults (real scheduler + triggerer); KEEP_UI=1 keeps the UI up; DEMO_ARGS="--per-class 50"
	$(BIN)/python -m launcher.demo $(if $(KEEP_UI),--keep-ui) $(DEMO_ARGS)

predict: install  ## class probabilities from the production bundle of IMAGES: a file, a folder, one name per line, or "a.jpg b.png" (never run by the shell); JSON=1 for JSON
	@$(BIN)/python -m launcher.predict $(if $(JSON),--json) --images-env IMAGES

demo-scale: install system-deps  ## the same pipeline on CeleryExecutor (Redis, 2 workers), PostgreSQL and S3, all started here
	$(BIN)/python -m launcher.scale_profile

copy-registry: install  ## copy the registry's tables between backends, e.g. FROM=mri_db TO=mri_pg (idempotent, verified)
	$(BIN)/python -m include.db.copy --from $(or $(FROM),$(error set FROM=<connection id>)) --to $(or $(TO),$(error set TO=<connection id>))

# Servers the tests start for real, from Debian's packages: installed here when we are root with
# apt-get (as in CI), otherwise the message says what to install.
SYSTEM_PACKAGES := postgresql-15:/usr/lib/postgresql/15/bin/initdb redis-server:/usr/bin/redis-server
system-deps:  ## install the Debian packages the tests need (PostgreSQL 15, Redis) if missing
	@missing=""; for entry in $(SYSTEM_PACKAGES); do [ -x "$${entry#*:}" ] || missing="$$missing $${entry%%:*}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing$$missing from Debian's packages"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
		else \
			echo "The tests start real servers and need:$$missing. Install them with: sudo apt-get install$$missing" >&2; \
			exit 1; \
		fi; \
	fi

test: install system-deps  ## run the test suite (starts its own PostgreSQL, Redis, S3 endpoint and Airflow)
	$(BIN)/python -m pytest tests

bench: install  ## registry write throughput, where the preprocess DAG's time goes, the quality gate, the Celery scale profile, fine-tune vs bare torch, the recipe's spread over seeds, Airflow 2.11.2 vs 3.3.2 (Markdown tables)
	$(BIN)/python -m benchmarks.registry_writes
	$(BIN)/python -m benchmarks.preprocess_stages
	$(BIN)/python -m benchmarks.quality_gate
	$(BIN)/python -m benchmarks.scale
	$(BIN)/python -m benchmarks.finetune
	$(BIN)/python -m benchmarks.seed_spread
	$(BIN)/python -m benchmarks.parse_times
	$(BIN)/python -m benchmarks.airflow_majors
	$(BIN)/python -m benchmarks.headline

parse-times: install  ## DAG file parse times on this AIRFLOW, each file in a fresh interpreter (ARGS=--json: one JSON line)
	$(BIN)/python -m benchmarks.parse_times $(ARGS)

# The values reach the DAG as JSON through the environment (make exports command-line variables), never
# pasted into the shell: a file name is a name, whatever its spaces, parentheses or quotes.
retract: migrate  ## take back a misplaced upload: URI=<its uri, as the gate names it> REASON="why" [BY=<who>]; the gates run again
	$(BIN)/python -m include.registry.retract

dq-report: migrate  ## validate both splits now (backend of MRI_DB_CONN_ID), print the Data Docs page; gates nothing
	$(BIN)/python -m include.quality report

lint: install  ## ruff (lint + format) and hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

clean:  ## remove the local Airflow home and data (keeps .venv)
	rm -rf $(AIRFLOW_HOME) $(PROJECT)/data
