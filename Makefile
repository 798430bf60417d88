# aijob: `make run` (build, start redis-server with the module, and the fetcher) and
# `make test` (every test). `make deps` installs what a fresh Debian/Ubuntu machine lacks.

SHELL := /bin/bash
PORT ?= 6379
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
MODULE_RELEASE := target/release/libaijob.so
MODULE_DEBUG := target/debug/libaijob.so
TEST_THREADS ?= 8

.PHONY: all deps build build-debug run test test-cluster cluster fmt clean

all: build

# Installs the system packages the build and the tests need, only when one is missing.
deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	command -v cc >/dev/null || missing="$$missing build-essential"; \
	ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || missing="$$missing libclang-dev"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi; \
	if ! command -v $(CARGO) >/dev/null; then \
	  echo "make deps: installing Rust (rustup)"; \
	  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal; \
	fi

build: deps
	$(CARGO) build --release --workspace

build-debug: deps
	$(CARGO) build --workspace

# Redis in the foreground with the module and redis.conf; the fetcher beside it.
run: build
	@mkdir -p run
	@./scripts/run.sh $(PORT)

test: deps build-debug
	$(CARGO) test --workspace -- --test-threads=$(TEST_THREADS)

# A local 3-master, 3-replica cluster with the module on every node (CLUSTER_PORT=30001).
CLUSTER_PORT ?= 30001
cluster: build
	@./scripts/cluster.sh $(CLUSTER_PORT)

# The cluster suite: it starts its own cluster (free ports, bus ports included).
test-cluster: deps build-debug
	$(CARGO) test --test cluster -- --test-threads=2

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf run
