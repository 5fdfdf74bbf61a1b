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

test: bootstrap
	.venv/bin/ruff check service handlers tests bench
	.venv/bin/pytest -q $(PYTEST_ARGS)

lint:
	.venv/bin/ruff check service handlers tests bench

bench: bootstrap
	SHIPLINE_EXTRA_PACKAGES="wrk webhook" scripts/bootstrap.sh
	.venv/bin/python -m bench.run
