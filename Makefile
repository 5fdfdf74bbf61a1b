# Shipline: the two commands are `make up` and `make test`.
.PHONY: bootstrap up down status test lint bench chaos

STATE_DIR ?= $(HOME)/.local/state/shipline/dev
SHIPLINE := .venv/bin/shipline

bootstrap:
	@scripts/bootstrap.sh

up: bootstrap
	@$(SHIPLINE) dev up --services --demo --state-dir $(STATE_DIR)

down:
	@$(SHIPLINE) dev down --state-dir $(STATE_DIR)

status:
	@$(SHIPLINE) dev status --state-dir $(STATE_DIR)

test: bootstrap lint
	.venv/bin/pytest -q $(PYTEST_ARGS)

chaos: bootstrap
	@rm -f artifacts/chaos-results.jsonl
	@.venv/bin/pytest -q tests/chaos $(PYTEST_ARGS); status=$$?; echo; \
	.venv/bin/python -m tests.chaos.report || status=1; exit $$status

lint:
	.venv/bin/ruff check service handlers devstack tests bench
	.venv/bin/lint-imports --no-cache

bench: bootstrap
	SHIPLINE_EXTRA_PACKAGES="wrk webhook" scripts/bootstrap.sh
	.venv/bin/python -m bench.run
