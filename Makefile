# Rates Platform: `make run` serves the API locally, `make test` runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
# The venv holds what uv.lock pins, hash-checked (a fresh clone gets exactly the lock;
# --inexact spares what a developer added by hand). A change to the lock, to
# pyproject.toml or to uv's own pin re-syncs.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml uv.lock requirements-uv.txt | sha1sum | cut -c1-12)
IAC := .venv-iac
IAC_STAMP := $(IAC)/.installed-$(shell sha1sum requirements-iac.txt | cut -c1-12)
# uv uses the Python that made the venv, never one it would download.
export UV_PYTHON_DOWNLOADS := never

.PHONY: help venv lock system-packages run test iac-check lint typecheck unit integration e2e bdd rotate status audit-anchor audit-verify dr-drill bench bench-scale clean

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV): requirements-uv.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-uv.txt
	touch $@

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --quiet --locked --inexact --extra dev --python $(BIN)/python || { \
		echo >&2 "make: installing uv.lock failed; if uv says the lockfile needs to be updated," \
			"pyproject.toml changed: run 'make lock' and commit uv.lock"; exit 1; }
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create the virtual environment from uv.lock (hash-checked)

lock: $(UV) ## Re-resolve uv.lock (pyproject.toml) and requirements-iac.txt (.in), with hashes
	$(UV) lock
	$(UV) pip compile --quiet --universal --generate-hashes --python-version 3.11 \
		--custom-compile-command "make lock" requirements-iac.in -o requirements-iac.txt

$(IAC_STAMP): requirements-iac.txt
	$(PYTHON) -m venv $(IAC)
	$(IAC)/bin/pip install --quiet --require-hashes -r requirements-iac.txt
	rm -f $(IAC)/.installed-* && touch $@

run: $(STAMP) ## Serve the API on 127.0.0.1:3000 (embedded PostgreSQL unless DATABASE_URL is set)
	$(BIN)/rates dev

system-packages: ## Install the Debian packages the tests drive (scripts/system-packages.txt)
	scripts/system-packages.sh

test: system-packages lint typecheck iac-check bdd ## Run every check and test (what CI runs)
	IAC_BIN=$(CURDIR)/$(IAC)/bin $(BIN)/pytest tests

iac-check: $(STAMP) $(IAC_STAMP) ## Terraform fmt, checkov, zizmor, workflow schemas, shellcheck, bandit
	$(IAC)/bin/python tools/terraform_fmt.py infrastructure
	TF_CLI_CONFIG_FILE=/dev/null $(IAC)/bin/checkov --quiet --compact --skip-download \
		--framework terraform -d infrastructure
	TF_CLI_CONFIG_FILE=/dev/null $(IAC)/bin/checkov --quiet --compact --skip-download \
		--framework dockerfile -f Dockerfile
	TF_CLI_CONFIG_FILE=/dev/null $(IAC)/bin/checkov --quiet --compact --skip-download \
		--framework github_actions -d .github
	$(IAC)/bin/zizmor --offline --quiet --config .github/zizmor.yml .github
	$(IAC)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(IAC)/bin/check-jsonschema --builtin-schema vendor.github-actions .github/actions/*/action.yml
	$(IAC)/bin/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	$(IAC)/bin/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml
	$(IAC)/bin/shellcheck scripts/*.sh .ci/run
	$(IAC)/bin/bandit --quiet -r src -c pyproject.toml

lint: $(STAMP) ## ruff (lint and format) and hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy

unit: $(STAMP) ## Unit tests (no database)
	$(BIN)/pytest tests/unit

integration: $(STAMP) ## Integration tests on a real PostgreSQL started by the tests
	$(BIN)/pytest tests/integration

e2e: $(STAMP) ## End-to-end tests with the real server (granian)
	$(BIN)/pytest tests/e2e

bdd: $(STAMP) ## Behave scenarios of the documented examples
	$(BIN)/behave --format progress features

rotate: $(STAMP) ## Rotate the local API login now (make run must be running)
	set -a && . .data/dbaccess.env && $(BIN)/dbaccess rotate --now

status: $(STAMP) ## Rotation status of the local database
	set -a && . .data/dbaccess.env && $(BIN)/dbaccess status

audit-anchor: $(STAMP) ## Anchor the local audit chain's head in .data/audit-anchors.jsonl
	DATABASE_URL="host=$(CURDIR)/.data/postgres port=$${DEV_PG_PORT:-54329} user=postgres dbname=rates" \
		$(BIN)/dbaccess audit anchor --sink file:$(CURDIR)/.data/audit-anchors.jsonl

audit-verify: $(STAMP) ## Check the local audit trail's hash chain against its anchors (as the superuser)
	DATABASE_URL="host=$(CURDIR)/.data/postgres port=$${DEV_PG_PORT:-54329} user=postgres dbname=rates" \
		$(BIN)/dbaccess audit verify --anchors file:$(CURDIR)/.data/audit-anchors.jsonl

bench: $(STAMP) ## Benchmark /rates against GET / on the sample data (installs wrk if missing)
	$(BIN)/python bench/run.py

bench-scale: $(STAMP) ## The same on synthetic 1M and 10M prices, with 1-client latency
	$(BIN)/python bench/run.py --scale

dr-drill: $(STAMP) ## Restore drill: base backup + WAL to a point in time; API and audit chain checked
	$(BIN)/python -m rates_platform.drdrill local

clean: ## Remove the virtual environments and local data (.data)
	rm -rf $(VENV) $(IAC) .data
