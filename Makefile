# bulkhead — build, test, demo, bench, install.
#
#   make            release build of the library (target/release/libbulkhead.{so,a})
#   make test       every suite: Rust, C/C++, Ruby, Python (installs what is missing)
#   make demo       the outage story on an embedded mock ingestion server
#   make bench      latency and throughput figures
#   make install PREFIX=/usr/local
#   make header     regenerate include/bulkhead.h after changing src/ffi

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
PREFIX ?= /usr/local
ROOT := $(abspath .)
LIB := $(ROOT)/target/release/libbulkhead.so
MOCK := $(ROOT)/target/release/bulkhead-mock
VENV := $(ROOT)/bindings/python/.venv
# Root, or sudo when there is one, for apt-get.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

.PHONY: all build header lint test test-rust test-c test-ruby test-python deps-ruby deps-python \
        demo bench install clean

all: build

# Two invocations so the library is not built with the mock's tokio features (signal).
build:
	$(CARGO) build --release -p bulkhead
	$(CARGO) build --release -p bulkhead-mock

header:
	BULKHEAD_BLESS_HEADER=1 $(CARGO) build -p bulkhead

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: lint test-rust test-ruby test-python

# test-rust includes these; here to run them alone.

# Unit tests, the mock's tests, the Rust integration tests, the header drift check, and the
# C/C++ tests (tests/c_api.rs compiles bindings/c/tests/*.c as C99 and C++).
test-rust:
	$(CARGO) test --workspace

test-c:
	$(CARGO) test --test c_api

deps-ruby:
	@if ! ruby -e 'require "ffi"; require "minitest"' >/dev/null 2>&1; then \
	  echo "installing ruby, ruby-ffi, ruby-minitest from Debian's packages"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ruby ruby-ffi ruby-minitest; \
	fi

test-ruby: build deps-ruby
	cd bindings/ruby && BULKHEAD_LIB=$(LIB) BULKHEAD_MOCK=$(MOCK) \
	  ruby -Ilib -Itest -e 'Dir.glob("test/**/*_test.rb").sort.each { |f| require File.expand_path(f) }'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

deps-python: $(VENV)/bin/python
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q pytest mixpanel
	$(VENV)/bin/pip install -q mypy
	CARGO_TARGET_DIR=$(ROOT)/target $(VENV)/bin/pip install -q --force-reinstall --no-deps ./bindings/python

# Without BULKHEAD_LIB: the copy bundled by `pip install` is what gets tested.
test-python: build deps-python
	cd bindings/python && $(VENV)/bin/python -m mypy --strict bulkhead
	cd bindings/python && env -u BULKHEAD_LIB BULKHEAD_MOCK=$(MOCK) $(VENV)/bin/python -m pytest -q tests

# The outage story on an embedded mock (`-- --hang` for a service that never answers).
demo:
	$(CARGO) run --release --example demo

# Host-call latency (median/p99) with the sender busy, and end-to-end events/s, from C.
bench: build
	$(CC) -O2 -std=c99 -Iinclude bindings/c/bench/bench.c -o target/release/bulkhead-bench \
	  -Ltarget/release -lbulkhead -Wl,-rpath,$(ROOT)/target/release -lpthread
	target/release/bulkhead-bench $(MOCK)

install: build
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 target/release/libbulkhead.so $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 target/release/libbulkhead.a $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 include/bulkhead.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e "s|@VERSION@|$$(sed -n 's/^version = \"\(.*\)\"/\1/p' Cargo.toml | head -1)|" \
	  bulkhead.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/bulkhead.pc

clean:
	$(CARGO) clean
	rm -rf $(VENV)
