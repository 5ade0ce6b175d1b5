SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLATFORM ?= cpu
REGISTRY ?= localhost:5000
TAG ?= 0.1.0
IMAGE ?= resnext-jobs-$(PLATFORM):$(TAG)
BASE_IMAGE ?=
# The Dockerfile selects its base stage by PLATFORM, which needs BuildKit (the legacy builder would build every
# platform's stage). Point DOCKER at a client with BuildKit if the default one lacks it.
DOCKER ?= docker
SHARED ?= ./shared
DEMO_DATA ?= ./data/synth
DEMO_JOB ?= demo
# Quick-start run length; CI may shorten it.
DEMO_EPOCHS ?= 4

export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help install demo test lint bench image push render image-smoke clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python ## create .venv with the project and all extras (train, dev)
	$(BIN)/pip install -q -e '.[train,dev]'
	@$(BIN)/jobctl --help >/dev/null && echo "installed: $(BIN)/jobctl"

demo: ## generate a small dataset, train resnext_tiny on 2 local CPU workers, evaluate it
	$(BIN)/python -m trainer.data synth --out $(DEMO_DATA) --classes 10 --per_class 40 --size 64 --quiet
	$(BIN)/jobctl submit --backend local --platform cpu --devices 2 --name $(DEMO_JOB) \
		--data $(DEMO_DATA) --shared $(SHARED) --replace --wait \
		--set arch=resnext_tiny --set image_size=64 --set per_batch_size=16 \
		--set max_epoch=$(DEMO_EPOCHS) --set T_max=$(DEMO_EPOCHS) --set lr=0.2 --set ckpt_interval=20 \
		--set log_interval=4
	$(BIN)/jobctl eval $(DEMO_JOB) --backend local --shared $(SHARED) --data $(DEMO_DATA)/val

test: ## run the test suite
	$(BIN)/python -m pytest -q

lint: ## ruff, mypy, hadolint
	$(BIN)/ruff check trainer jobctl tests bench docker
	$(BIN)/ruff format --check trainer jobctl tests bench docker
	$(BIN)/mypy
	$(BIN)/mypy docker/run_pods.py
	$(BIN)/hadolint docker/Dockerfile

bench: ## throughput figures (rendering, input pipeline, MindSpore vs PyTorch on CPU: needs the bench extra)
	$(BIN)/python -m bench.render
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.cpu_speed

render: ## regenerate the example manifests under k8s/examples/
	$(BIN)/python -m jobctl.examples k8s/examples

image: ## build the image for PLATFORM (cpu|gpu|ascend); BASE_IMAGE overrides the base
	DOCKER_BUILDKIT=1 $(DOCKER) build --network host -f docker/Dockerfile --build-arg PLATFORM=$(PLATFORM) \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) -t $(IMAGE) .

push: ## tag and push IMAGE to REGISTRY
	$(DOCKER) tag $(IMAGE) $(REGISTRY)/$(IMAGE)
	$(DOCKER) push $(REGISTRY)/$(IMAGE)

image-smoke: ## build the CPU image and run a 2-rank job and an eval in containers
	bash docker/smoke.sh

clean: ## remove generated data, shared job directories and caches
	rm -rf $(SHARED) ./data .pytest_cache .mypy_cache .ruff_cache
