# Shipline: the two commands are `make up` and `make test`.
.PHONY: bootstrap up down status test lint bench chaos soak

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

# The fault scenarios (tests/chaos/test_*.py, which `make test` runs too) plus the network faults
# (tests/chaos/netfaults.py: toxiproxy) and the 100,000-delivery backlog (tests/chaos/backlog.py, last:
# minutes each, named so `make test` does not collect them), then one table. BACKLOG_TOTAL=4000: a smaller backlog.
BACKLOG_TOTAL ?= 100000
chaos: bootstrap
	@rm -f artifacts/chaos-results.jsonl
	@SHIPLINE_BACKLOG_TOTAL=$(BACKLOG_TOTAL) .venv/bin/pytest -q tests/chaos/netfaults.py tests/chaos/test_*.py tests/chaos/backlog.py $(PYTEST_ARGS); status=$$?; echo; \
	.venv/bin/python -m tests.chaos.report || status=1; exit $$status

# A long run at a steady rate with a worker killed and Redis restarted on a clock (tests/chaos/soak.py).
# SOAK_MINUTES=3 SOAK_KILL_EVERY=40 SOAK_REDIS_EVERY=100 make soak: a short one.
SOAK_MINUTES ?= 30
SOAK_RATE ?= 50
SOAK_KILL_EVERY ?= 120
SOAK_REDIS_EVERY ?= 600
soak: bootstrap
	@rm -f artifacts/soak-results.jsonl
	@export SHIPLINE_CHAOS_RESULTS=artifacts/soak-results.jsonl SHIPLINE_SOAK_MINUTES=$(SOAK_MINUTES) \
	  SHIPLINE_SOAK_RATE=$(SOAK_RATE) SHIPLINE_SOAK_KILL_EVERY=$(SOAK_KILL_EVERY) \
	  SHIPLINE_SOAK_REDIS_EVERY=$(SOAK_REDIS_EVERY); \
	.venv/bin/pytest -q tests/chaos/soak.py $(PYTEST_ARGS); status=$$?; echo; \
	.venv/bin/python -m tests.chaos.report || status=1; exit $$status

lint:
	.venv/bin/ruff check service handlers devstack tests bench
	.venv/bin/lint-imports --no-cache

bench: bootstrap
	SHIPLINE_EXTRA_PACKAGES="wrk webhook" scripts/bootstrap.sh
	.venv/bin/python -m bench.run
