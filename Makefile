# The targets people expect; every one creates or refreshes .venv when it has to.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := all,dev
PY_SOURCES := servicekit gateway medimg_cli $(wildcard *_service) dicom_receiver tests protos/generate.py web

.PHONY: help venv run test unit lint format protos bench chaos images clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

venv: ## create or refresh .venv (stamp keyed on pyproject.toml)
	@scripts/ensure_venv.sh $(EXTRAS)

run: venv ## start the whole stack on embedded defaults (gateway on 127.0.0.1:50051)
	$(BIN)/medimg up

test: venv lint ## lint, then run every test (the web tests marked postgres again on a real PostgreSQL)
	$(BIN)/python -m pytest
	WEB_TEST_DATABASE=postgres $(BIN)/python -m pytest web -m postgres -q

lint: venv ## ruff (lint + format check), mypy, and buf (lint, and breaking against the previous commit)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy $(PY_SOURCES)
	scripts/check_protos.sh

format: venv ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix $(PY_SOURCES)
	$(BIN)/ruff format $(PY_SOURCES)

protos: venv ## regenerate the medimg.v1 stubs and TorchServe's (from its jar)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python protos/generate.py
	$(BIN)/python -m mri_service.backends.torchserve_api.generate

bench: venv ## every benchmark, each ratio against its target, one combined table (var/bench/results.json); BENCH_QUICK=1: a short form of every scenario
	@status=0; started=$$(date +%s); \
	export BENCH_RUN_ID="$$(date +%Y%m%dT%H%M%S)-$$$$"; \
	$(BIN)/python -m tests.bench.gateway_bench || status=1; \
	$(BIN)/python -m tests.bench.skin_bench || status=1; \
	$(BIN)/python -m tests.bench.mri_bench || status=1; \
	$(BIN)/python -m tests.bench.mri_ingest_bench || status=1; \
	$(BIN)/python -m tests.bench.web_load || status=1; \
	$(BIN)/python -m tests.bench.production_bench || status=1; \
	$(BIN)/python -m tests.bench.report || status=1; \
	echo "make bench: $$(( $$(date +%s) - started )) s$${BENCH_QUICK:+ (BENCH_QUICK=$$BENCH_QUICK)}"; \
	exit $$status

chaos: venv ## the fault suite on real processes, full form (10-minute soak); `make test` runs its short form
	CHAOS_FULL=1 $(BIN)/python -m pytest tests/chaos -q -p no:cacheprovider

images: ## build every container image with docker or podman (cannot run here: no engine; see docker/README.md)
	scripts/build_images.sh

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
