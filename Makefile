# Pacer: `make run` brings up a one-node cluster with the hello example; `make test` runs every
# test tier CI runs. Both install what is missing first (Debian packages; you are root in CI).

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
DEB_PACKAGES := etcd-server etcd-client protobuf-compiler libprotobuf-dev busybox-static
PACER := target/debug/pacer

.PHONY: run test deps build images crds fmt lint unit e2e chaos marathon-client bench clean

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
	@python3 -m venv --help >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get install -y -qq python3-venv >/dev/null; }

build: deps
	cargo build --workspace --bins

images: deps
	bash e2e/images/build.sh

run: build images
	bash scripts/run.sh

# Every tier: unit, integration (real etcd), API (in-process, and the real marathon client)
# and e2e (real etcd + Docker).
test: build images
	cargo nextest run --workspace --no-fail-fast
	bash e2e/marathon-client/run.sh

# 30 rounds of random faults on the multi-host test bed (hosts as containers: 3 etcd members,
# 3 servers, 3 agents), invariants checked after each; `make test` runs 5.
# PACER_CHAOS_SEED=N replays a run.
chaos: build images
	PACER_CHAOS_ROUNDS=$${PACER_CHAOS_ROUNDS:-30} cargo nextest run --workspace -E 'binary(chaos)' --no-capture

# The real `marathon` Python client (PyPI) against a fresh `pacer up`.
marathon-client: build images
	bash e2e/marathon-client/run.sh

unit: deps
	cargo nextest run --workspace --lib --bins

e2e: build images
	cargo nextest run --workspace -E 'package(pacer-e2e)'

# Rewrites manifests/crds/*.yaml from the record types (a test fails when they differ).
crds:
	PACER_WRITE_CRDS=1 cargo test -q -p pacer-crd --test crds

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Every figure against a baseline measured in the same run, on release builds; writes the run
# into bench/RESULTS.md (about 6 minutes on 2 cores after the build). `make test` runs a smoke
# version of it.
bench: deps images
	cargo build --release -p pacer-cli -p pacer-bench
	target/release/pacer-bench --out bench/RESULTS.md

clean:
	cargo clean
	rm -rf .pacer
