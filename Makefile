# Every entry point of the repo. `make` (or `make help`) lists them.
# Each target creates .venv and installs requirements.txt on first use: a fresh clone
# needs nothing but Python 3.11+ and make.

SHELL := /bin/bash
# The first Python >= 3.11 on PATH (override: make test PYTHON=/path/to/python3.12).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
export PYTHONPATH := $(CURDIR)

# Stage folders, newest last (00_services, 01_pass_through, ...).
STAGES := $(sort $(wildcard [0-9][0-9]_*))
NEWEST_GATEWAY := $(lastword $(patsubst %/gateway/,%,$(sort $(wildcard [0-9][0-9]_*/gateway/))))
STAGE ?= $(NEWEST_GATEWAY)

.DEFAULT_GOAL := help
.PHONY: help venv test check propagate diff lint typecheck services pass-through trie lb restart stop-all bench trie-bench \
	lb-bench lb-chaos channelling channelling-bench cache cache-bench cache-conformance auth auth-bench rate-limit ratelimit-bench observability hot-reload bench-all clean

help: ## list every target (the default)
	@echo "usage: make <target>   (first use creates .venv and installs requirements.txt)"
	@# Colour only on a terminal: piped into less or a file, escape codes are noise.
	@if [ -t 1 ]; then on=$$(printf '\033[36m'); off=$$(printf '\033[0m'); fi; \
	grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "}; {printf "  %s%-14s%s %s\n", on, $$1, off, $$2}'

$(STAMP): requirements.txt
	@test -n "$(PYTHON)" || { echo "error: Python 3.11+ is required (none found on PATH; set PYTHON=...)"; exit 1; }
	@echo "creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install requirements.txt (every target does this first)

test: $(STAMP) ## run common/ and every stage's tests, one pytest process per stage
	$(PY) -m common.runtests

check: $(STAMP) ## monorepo checks: structure, drift between stages, docs vs code, demo.http lint
	$(PY) -m common.check

propagate: $(STAMP) ## carry a fix in a stage forward into every later stage: make propagate FROM=02
	@test -n "$(FROM)" || { echo "usage: make propagate FROM=02 [ARGS=--dry-run]"; exit 2; }
	@$(PY) -m common.propagate $(FROM) $(ARGS)

diff: $(STAMP) ## show what a stage adds: make diff A=01 B=02
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make diff A=01 B=02"; exit 2; }
	@$(PY) -m common.diff $(A) $(B)

lint: $(STAMP) ## ruff (lint rules and formatting) over common/ and every stage, then make typecheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@$(MAKE) --no-print-directory typecheck

# One mypy run per stage, from its folder: every stage has a package called `gateway`, and
# one run over all of them would see seven packages of one name. common/ is checked against
# the newest stage's gateway (its benches and contracts import it). Caches under .cache/.
typecheck: $(STAMP) ## mypy --strict (pyproject.toml) over common/ and every stage's gateway and tests
	@for stage in $(STAGES); do \
		echo "mypy $$stage"; \
		(cd $$stage && MYPYPATH=$(CURDIR):$(CURDIR)/$$stage/tests ../$(VENV)/bin/mypy \
			--config-file ../pyproject.toml --cache-dir ../.cache/mypy/$$stage \
			$$(ls -d gateway tests 2>/dev/null)) || exit 1; \
	done
	@echo "mypy common (with $(NEWEST_GATEWAY)'s gateway)"
	@cd $(NEWEST_GATEWAY) && MYPYPATH=$(CURDIR) ../$(VENV)/bin/mypy --config-file ../pyproject.toml \
		--cache-dir ../.cache/mypy/common ../common

services: $(STAMP) ## 00: the three dummy backends alone on :9001-9003 (Ctrl-C stops all)
	$(PY) -m common.launch 00_services

pass-through: $(STAMP) ## 01: backends + the pass-through gateway on :8080
	$(PY) -m common.launch 01_pass_through

trie: $(STAMP) ## 02: backends + the gateway with the radix-trie router on :8080
	$(PY) -m common.launch 02_trie_routing

lb: $(STAMP) ## 03: six backends + the gateway with upstream pools on :8080
	$(PY) -m common.launch 03_load_balancing

channelling: $(STAMP) ## 04: six backends + the gateway with retries, breakers, bulkheads; admin :8081
	$(PY) -m common.launch 04_req_channelling

cache: $(STAMP) ## 05: six backends + the gateway with a shared HTTP cache; REDIS=1: Redis + 2 workers
	$(PY) -m common.launch 05_cache_layer $(if $(REDIS),--redis)

auth: $(STAMP) ## 06: six backends, the identity provider on :9100, the gateway with API keys and JWT
	$(PY) -m common.launch 06_authentication $(if $(REDIS),--redis)

rate-limit: $(STAMP) ## 07: backends, the identity provider, a private Redis, the gateway with rate limits (WORKERS=2: two)
	$(PY) -m common.launch 07_rate_limiting $(if $(WORKERS),--workers $(WORKERS))

observability: $(STAMP) ## 08: stage 07 with metrics, traces, a dashboard (:8081/dashboard), traffic, Prometheus if installed; two workers (WORKERS=1: one; TRAFFIC=0: none)
	$(PY) -m common.launch 08_observability --workers $(or $(WORKERS),2) $(if $(filter 0,$(TRAFFIC)),--no-traffic)

hot-reload: $(STAMP) ## 09: stage 08 whose config reloads live (POST :8081/reload, SIGHUP); runs on a copy in .run/; two workers (WORKERS=1, TRAFFIC=0)
	$(PY) -m common.launch 09_hot_reload --workers $(or $(WORKERS),2) $(if $(filter 0,$(TRAFFIC)),--no-traffic)

restart: $(STAMP) ## start a backend of the running stage again: make restart NAME=users-b
	@test -n "$(NAME)" || { echo "usage: make restart NAME=users-b"; exit 2; }
	@$(PY) -m common.launch --restart $(NAME)

stop-all: $(STAMP) ## stop every process a launcher started (PID files in .run/)
	$(PY) -m common.launch --stop-all

bench: $(STAMP) ## gateway overhead vs a minimal aiohttp proxy: make bench [STAGE=01_pass_through]
	$(PY) -m common.bench $(if $(STAGE),--stage $(STAGE))

trie-bench: $(STAMP) ## dict scan vs radix trie vs regex list at 10..100k routes (ARGS=--quick)
	cd 02_trie_routing && PYTHONPATH=$(CURDIR) ../$(PY) -m common.bench.trie_bench $(ARGS)

lb-bench: $(STAMP) ## hash ring, strategies vs a slow backend, bounded loads (~25 s; ARGS=--no-live)
	cd 03_load_balancing && PYTHONPATH=$(CURDIR) ../$(PY) -m common.bench.lb_bench $(ARGS)

lb-chaos: $(STAMP) ## kill, slow and break backends on a timeline, watch the gateway (~45 s)
	$(PY) -m common.lb_chaos $(ARGS)

channelling-bench: $(STAMP) ## 03 vs 04 when upstreams misbehave: retries, storm, breakers, isolation (~2 min; ARGS=--quick)
	$(PY) -m common.bench.channelling_bench $(ARGS)

cache-bench: $(STAMP) ## 04 vs 05: hit/miss CPU, Zipf hit ratio, coalescing, the memory bound, Redis (~1.5 min; ARGS=--quick)
	$(PY) -m common.bench.cache_bench $(ARGS)

cache-conformance: $(STAMP) ## the public HTTP cache test suite vs the newest stage (~75 s; CACHE_TESTS=dir, ARGS=--id ID)
	$(PY) -m common.cache_conformance $(ARGS)

auth-bench: $(STAMP) ## 05 vs 06: CPU per request for API keys and JWT per algorithm, with and without the verified-token cache (~1.5 min; ARGS=--quick)
	$(PY) -m common.bench.auth_bench $(ARGS)

ratelimit-bench: $(STAMP) ## 06 vs 07: accuracy (2,000 at once, workers, Redis), the window edge, overhead, Redis stopped (~1.5 min; ARGS=--quick)
	$(PY) -m common.bench.ratelimit_bench $(ARGS)

bench-all: $(STAMP) ## every stage 01-09, the same request, its concerns on: CPU µs, p50/p99, what each added; then instructions counted under valgrind, which judge the targets (~8 min; ARGS=--quick, --no-count, "--only 01,07 --rounds 12")
	$(PY) -m common.bench.bench_all $(ARGS)

clean: ## remove caches and .run/ (keeps .venv)
	rm -rf .run .cache .pytest_cache .hypothesis .ruff_cache .mypy_cache
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
