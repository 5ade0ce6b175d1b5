SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# checkov and Trivy (pyproject's `scan` group) live apart: checkov's pins clash with the dev tools'.
SCAN_VENV ?= .venv-scan
PLATFORM ?= cpu
REGISTRY ?= localhost:5000
TAG ?= 0.1.0
IMAGE ?= resnext-jobs-$(PLATFORM):$(TAG)
# Each platform's base image. MindSpore 2.10's GPU plugin is built for CUDA 11.6 + cuDNN 8 (the runtime flavour has
# the libraries, no compiler); CANN 9.1.0 for MindSpore 2.10 is inferred (docker/README.md). BASE_IMAGE overrides.
BASE_IMAGE_cpu := python:3.11-slim
BASE_IMAGE_gpu := nvidia/cuda:11.6.2-cudnn8-runtime-ubuntu20.04
BASE_IMAGE_ascend := ascendai/cann:9.1.0-910b-ubuntu22.04-py3.11
BASE_IMAGE ?=
# GPU: the image the standalone CPython 3.11 is made in (the CUDA base has none).
PYTHON_DONOR ?= $(if $(filter gpu,$(PLATFORM)),$(BASE_IMAGE_cpu))
# The OCI builder: docker (BuildKit with buildx, else the legacy builder), podman, buildah, or a path to one.
DOCKER ?= docker
SHARED ?= ./shared
DEMO_DATA ?= ./data/synth
DEMO_JOB ?= demo
# Quick-start run length; CI may shorten it.
DEMO_EPOCHS ?= 4

export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help install scan-tools demo test lint scan bench compat image push render image-smoke clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python scan-tools ## create .venv with the project and all extras (train, dev; dev includes plot), and .venv-scan
	$(BIN)/pip install -q -e '.[train,dev]'
	@$(BIN)/jobctl --help >/dev/null && echo "installed: $(BIN)/jobctl"

scan-tools: $(SCAN_VENV)/bin/checkov ## the pinned manifest scanners (checkov, Trivy) in .venv-scan

$(SCAN_VENV)/bin/checkov: pyproject.toml
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install -q --upgrade pip
	$(SCAN_VENV)/bin/pip install -q --group scan
	@touch $@

demo: ## generate a small dataset, train resnext_tiny on 2 local CPU workers, evaluate it, plot its curves
	$(BIN)/python -m trainer.data synth --out $(DEMO_DATA) --classes 10 --per_class 40 --size 64 --quiet
	$(BIN)/jobctl submit --backend local --platform cpu --devices 2 --name $(DEMO_JOB) \
		--data $(DEMO_DATA) --shared $(SHARED) --replace --wait \
		--set arch=resnext_tiny --set image_size=64 --set per_batch_size=16 \
		--set max_epoch=$(DEMO_EPOCHS) --set lr=0.2 --set ckpt_interval=20 \
		--set log_interval=4
	$(BIN)/jobctl eval $(DEMO_JOB) --backend local --shared $(SHARED) --data $(DEMO_DATA)/val
	@plot=$$($(BIN)/jobctl plot $(DEMO_JOB) --backend local --shared $(SHARED) -o $(SHARED)/jobs/$(DEMO_JOB)/plot.png) \
		&& echo "training curves: $$plot"

test: ## run the test suite
	$(BIN)/python -m pytest -q

lint: scan ## ruff, mypy, hadolint, and the manifest scan
	$(BIN)/ruff check contract launcher trainer jobctl tests bench docker
	$(BIN)/ruff format --check contract launcher trainer jobctl tests bench docker
	$(BIN)/mypy
	$(BIN)/mypy docker/run_pods.py
	$(BIN)/hadolint docker/Dockerfile
	$(BIN)/mypy docker/slim_mindspore.py docker/check_mindspore.py

scan: scan-tools ## checkov + Trivy on every rendered variant and k8s/ (accepted findings: tests/scan_manifests.py)
	SCAN_BIN=$(abspath $(SCAN_VENV))/bin $(BIN)/python tests/scan_manifests.py

bench: ## figures: rendering, input pipeline, MindSpore vs PyTorch on CPU (bench extra), graph vs PyNative+jit, checkpoint stall, snapshot cost, recovery (0 s and 30 s NFS-like caches), elastic shrink/grow and its loss curve
	$(BIN)/python -m bench.render
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.cpu_speed
	$(BIN)/python -m bench.execution
	$(BIN)/python -m bench.checkpoint_stall
	$(BIN)/python -m bench.snapshot_cost
	$(BIN)/python -m bench.recovery --shared-cache 30
	$(BIN)/python -m bench.elastic

compat: ## each supported MindSpore release (pyproject) in a throwaway venv: 2-rank train, resume, eval, both paths
	$(BIN)/python tests/compat.py $(if $(VERSIONS),--versions $(VERSIONS))

render: ## regenerate the example manifests under k8s/examples/
	$(BIN)/python -m jobctl.examples k8s/examples

image: ## build the image for PLATFORM (cpu|gpu|ascend) with DOCKER; BASE_IMAGE overrides the base
	@test -n "$(BASE_IMAGE_$(PLATFORM))" || { echo "PLATFORM must be cpu, gpu or ascend, not '$(PLATFORM)'" >&2; exit 2; }
	PLATFORM=$(PLATFORM) IMAGE=$(IMAGE) BASE_IMAGE=$(or $(BASE_IMAGE),$(BASE_IMAGE_$(PLATFORM))) \
		PYTHON_DONOR=$(PYTHON_DONOR) DOCKER=$(DOCKER) bash docker/build.sh

push: ## tag and push IMAGE to REGISTRY
	$(DOCKER) tag $(IMAGE) $(REGISTRY)/$(IMAGE)
	$(DOCKER) push $(REGISTRY)/$(IMAGE)

image-smoke: ## build the CPU image and run a 2-rank job and an eval in containers
	DOCKER=$(DOCKER) bash docker/smoke.sh

clean: ## remove generated data, shared job directories and caches
	rm -rf $(SHARED) ./data .pytest_cache .mypy_cache .ruff_cache
