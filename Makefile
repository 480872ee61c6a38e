# bulkhead — build, test, demo, bench, package, install.
#
#   make            release build of the library (target/release/libbulkhead.{so,a})
#   make test       every suite: Rust, C/C++, Ruby, Python, and the packages (installs what is missing)
#   make demo       the outage story on an embedded mock ingestion server
#   make bench      side-by-side figures against the peer SDKs (bench/results.md; BENCH_QUICK=1)
#   make chaos      the chaos accounting test at a million events (tests/chaos.rs)
#   make soak       ten minutes at 20 000 events/s with the service flapping (examples/soak.rs)
#   make story      the outage story with real Redis and Sidekiq (bench/story.md, bench/story.svg)
#   make fork-storms  the C fork storms, writing their Reliability rows
#   make fuzz       each fuzz target (fuzz/) for FUZZ_SECONDS (600) on the stable toolchain
#   make memcheck   the C test suite under valgrind memcheck
#   make asan       the C test suite built with AddressSanitizer (the C side)
#   make miri       Miri over the hot path's unsafe code (needs nightly + the miri component)
#   make install PREFIX=/usr/local      (and make uninstall PREFIX=...)
#   make gems       the Ruby platform gem and source gem, in target/gems/
#   make python-dist  the Python wheel and sdist, in target/python-dist/
#   make header     regenerate include/bulkhead.h after changing src/ffi

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
ROOT := $(abspath .)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR := $(firstword $(subst ., ,$(VERSION)))
LIB := $(ROOT)/target/release/libbulkhead.so
STATICLIB := $(ROOT)/target/release/libbulkhead.a
MOCK := $(ROOT)/target/release/bulkhead-mock
VENV := $(ROOT)/bindings/python/.venv
BENCH_VENV := $(ROOT)/target/bench-venv
GEMS := $(ROOT)/target/gems
PYDIST := $(ROOT)/target/python-dist
# The source gem and the sdist build the packaged crate here, sharing compiled dependencies.
PKG_CARGO_TARGET := $(ROOT)/target/pkg
# Inputs of the library, so `make install` builds nothing that is already built.
LIB_SOURCES := Cargo.toml Cargo.lock build.rs cbindgen.toml $(shell find src -name '*.rs')
# Root, or sudo when there is one, for apt-get.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

.PHONY: all build header lint test test-rust test-c test-ruby test-python deps-ruby deps-python deps-c \
        test-install test-gems test-python-dist gems python-dist demo bench deps-bench install uninstall clean \
        chaos soak story test-story deps-story fork-storms fuzz memcheck asan miri deps-valgrind

all: build

# Two invocations so the library is not built with the mock's tokio features (signal).
build:
	$(CARGO) build --release -p bulkhead
	$(CARGO) build --release -p bulkhead-mock

$(LIB) $(STATICLIB) &: $(LIB_SOURCES)
	$(CARGO) build --release -p bulkhead
	@touch $(LIB) $(STATICLIB)

$(MOCK): $(shell find mock/src -name '*.rs') mock/Cargo.toml Cargo.lock
	$(CARGO) build --release -p bulkhead-mock
	@touch $(MOCK)

header:
	BULKHEAD_BLESS_HEADER=1 $(CARGO) build -p bulkhead

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps -p bulkhead -q
	$(PYTHON) scripts/reliability.py --check

test: lint test-rust test-ruby test-python test-story test-install test-gems test-python-dist

# test-rust includes these; here to run them alone.

# Unit tests, the mock's tests, the Rust integration tests, the header drift check, the
# exported-symbols and SONAME check (tests/exports.rs), and the C/C++ tests (tests/c_api.rs
# compiles bindings/c/tests/*.c as C99 and C++).
test-rust:
	$(CARGO) test --workspace

test-c:
	$(CARGO) test --test c_api

deps-ruby:
	@if ! ruby -e 'require "ffi"; require "minitest"; require "puma"; require "rack"; require "oj"' >/dev/null 2>&1; then \
	  echo "installing ruby, ruby-ffi, ruby-minitest, ruby-oj, puma, ruby-rack from Debian's packages"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ruby ruby-ffi ruby-minitest ruby-oj puma ruby-rack; \
	fi

test-ruby: build deps-ruby
	cd bindings/ruby && BULKHEAD_LIB=$(LIB) BULKHEAD_MOCK=$(MOCK) \
	  ruby -Ilib -Itest -e 'Dir.glob("test/**/*_test.rb").sort.each { |f| require File.expand_path(f) }'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

deps-python: $(VENV)/bin/python $(LIB)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q pytest mixpanel orjson gunicorn
	$(VENV)/bin/pip install -q mypy
	BULKHEAD_PREBUILT_LIB=$(LIB) $(VENV)/bin/pip install -q --force-reinstall --no-deps ./bindings/python

# Without BULKHEAD_LIB: the copy bundled by `pip install` is what gets tested (`pytest`, not
# `python -m pytest`, so the source tree is not put first on sys.path).
test-python: build deps-python
	cd bindings/python && $(VENV)/bin/python -m mypy --strict bulkhead
	cd bindings/python && env -u BULKHEAD_LIB BULKHEAD_MOCK=$(MOCK) $(VENV)/bin/pytest -q tests

# Chaos accounting (issue #9) at a million events: every fault of the mock, outages, several
# threads; then the same with a disk spool (nothing accepted may be lost), one after the other
# (each has the machine to itself; their summaries do not interleave). BULKHEAD_CHAOS_SEED=<n>
# replays a run (the seed is printed).
chaos:
	@mkdir -p bench/reliability
	BULKHEAD_CHAOS_EVENTS=1000000 BULKHEAD_CHAOS_ROW=$(ROOT)/bench/reliability/chaos.md \
	  BULKHEAD_CHAOS_SPOOL_ROW=$(ROOT)/bench/reliability/chaos-spool.md \
	  $(CARGO) test --release --test chaos -- --nocapture --test-threads=1
	@$(PYTHON) scripts/reliability.py

# The fork storms (also in make test), writing their rows of the README's Reliability table.
fork-storms: $(MOCK)
	@mkdir -p bench/reliability
	BULKHEAD_RELIABILITY_DIR=$(ROOT)/bench/reliability $(CARGO) test --test c_api forks_among
	@$(PYTHON) scripts/reliability.py

# Soak (issue #9, not in CI): SOAK_SECONDS (600) at SOAK_RATE events/s (20000) with the mock
# down every other 30 s; samples to bench/soak.csv, chart bench/soak.svg, fails on a memory
# bound or trend, an undrained recovery or an unaccounted event (examples/soak.rs).
SOAK_SECONDS ?= 600
SOAK_RATE ?= 20000
soak: $(MOCK)
	$(CARGO) build --release --example soak
	@mkdir -p bench/reliability
	target/release/examples/soak --mock $(MOCK) --seconds $(SOAK_SECONDS) --rate $(SOAK_RATE) \
	  --csv bench/soak.csv --svg bench/soak.svg --row bench/reliability/soak.md; \
	  status=$$?; $(PYTHON) scripts/reliability.py; exit $$status

# The story with real parts (issue #9): a Sidekiq app's crucial jobs while the analytics
# service refuses, then hangs, then comes back; (a) a synchronous consumer in the job, (b) the
# seed's guarded analytics jobs with buffered consumers, (c) bulkhead. Processes on 127.0.0.1.
STORY := BULKHEAD_LIB=$(LIB) ruby -I bindings/ruby/lib scripts/story/run.rb --mock $(MOCK)

deps-story: deps-ruby
	@if ! command -v redis-server >/dev/null 2>&1 || ! ruby -e 'require "sidekiq"' >/dev/null 2>&1; then \
	  echo "installing redis-server, ruby-sidekiq from Debian's packages"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server ruby-sidekiq; \
	fi

# About five minutes; writes bench/story.md and bench/story.svg; fails on bulkhead's checks.
story: build deps-story
	@mkdir -p bench/reliability
	$(STORY) --out bench --row bench/reliability/story.md; \
	  status=$$?; $(PYTHON) scripts/reliability.py; exit $$status

# A short (a) and (c) for make test (about a minute); loose checks only; writes to a temp dir.
test-story: build deps-story
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(STORY) --out $$tmp --runs sync,bulkhead --phases 6,3,5,6 --drain 40 --test

# --- Fuzzing (fuzz/, its own workspace): cargo-fuzz with --sanitizer none runs on stable.
# FUZZ_PARALLEL=2 runs two targets at once; FUZZ_TARGETS picks some. A crashing input is
# copied to fuzz/regressions/<target>/, replayed by tests/fuzz_regressions.rs in make test.
FUZZ_SECONDS ?= 600
FUZZ_PARALLEL ?= 1
FUZZ_TARGETS ?= track send config response json
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_PARALLEL=$(FUZZ_PARALLEL) FUZZ_TARGETS="$(FUZZ_TARGETS)" \
	  CARGO=$(CARGO) fuzz/run.sh; status=$$?; $(PYTHON) scripts/reliability.py; exit $$status

# --- The C test suite (tests/c_api.rs runs bindings/c/tests/*.c as C99 and C++11) under
# valgrind memcheck and under AddressSanitizer, one program at a time. Both fail on any
# memory error or definite leak (a forked child's leaks of the parent's runtime are listed, not failed:
# the child leaks it on purpose); scripts/sanitizer-report.sh prints a line per program.
# Under valgrind (code runs 20-50 times slower) the helper's 2 s request timeout becomes 60 s
# (BH_REQUEST_TIMEOUT_MS in bh_test.h), else first requests time out and the programs' exact
# retry counts fail; fork_stress is left out: 300 forks among busy threads, each child under
# valgrind, outlast its 15 s per-child watchdog (a timing test, not a memory one).
# MEMCHECK_SKIP=fork_stress,sigpipe also leaves out sigpipe (46 events of up to 6 MB, resent
# after early closes: the longest run under valgrind, many minutes on a loaded machine).
MEMCHECK_DIR := $(ROOT)/target/memcheck
MEMCHECK_SKIP ?= fork_stress
ASAN_DIR := $(ROOT)/target/asan

deps-valgrind:
	@if ! command -v valgrind >/dev/null 2>&1; then \
	  echo "installing valgrind from Debian's packages"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq valgrind; \
	fi

memcheck: deps-valgrind
	rm -rf $(MEMCHECK_DIR) && mkdir -p $(MEMCHECK_DIR)
	BULKHEAD_C_TEST_WRAPPER="valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
	  --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=none \
	  --suppressions=$(ROOT)/scripts/memcheck.supp --log-file=$(MEMCHECK_DIR)/{name}.%p.log" \
	  BULKHEAD_C_TEST_CFLAGS=-DBH_REQUEST_TIMEOUT_MS=60000 BULKHEAD_C_TEST_SKIP=$(MEMCHECK_SKIP) \
	  $(CARGO) test --test c_api -- --test-threads=1; \
	  status=$$?; mkdir -p bench/reliability; \
	  TESTS_STATUS=$$status ROW=bench/reliability/memcheck.md MEMCHECK_SKIP=$(MEMCHECK_SKIP) scripts/sanitizer-report.sh memcheck $(MEMCHECK_DIR) || status=1; \
	  $(PYTHON) scripts/reliability.py; exit $$status

# Only the C programs are instrumented; libbulkhead is the ordinary (test-profile) Rust
# build. ASan still sees its heap (malloc/free are intercepted). Leak detection is off here:
# forked children leak the parent's runtime on purpose and LeakSanitizer cannot tell a child
# from its parent; `make memcheck` judges leaks, the program's own process apart.
# The fork programs (spool.c forks too) are left out: a child forked while another thread is inside ASan's
# allocator inherits that allocator's lock held and deadlocks in its first malloc (seen in
# gcc 12's libsanitizer: every thread of the child waiting in SizeClassAllocator64's mutex).
ASAN_SKIP ?= fork,fork_stress,spool
# Miri over the hot path's unsafe code: the JSON reader's unchecked slices, the SSE2 form-length
# counter, the form encoder's writes into spare capacity (src/json.rs, src/transport.rs) and
# their callers in src/fields.rs. Not part of `make test`: it needs the nightly toolchain with
# Miri (`rustup component add --toolchain nightly miri`). The 200 000-text differential tests
# and the multi-megabyte batch test are skipped (Miri runs about 1000 times slower); a few
# minutes here.
miri:
	$(CARGO) +nightly miri test --lib -- json:: fields:: transport:: --skip random_ --skip oversized_

asan:
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR)
	BULKHEAD_C_TEST_CFLAGS="-fsanitize=address -fno-omit-frame-pointer" BULKHEAD_C_TEST_SKIP=$(ASAN_SKIP) \
	  ASAN_OPTIONS=detect_leaks=0:log_path=$(ASAN_DIR)/asan \
	  $(CARGO) test --test c_api -- --test-threads=1; \
	  status=$$?; mkdir -p bench/reliability; \
	  TESTS_STATUS=$$status ASAN_SKIP=$(ASAN_SKIP) ROW=bench/reliability/asan.md scripts/sanitizer-report.sh asan $(ASAN_DIR) || status=1; \
	  $(PYTHON) scripts/reliability.py; exit $$status

# --- C packaging: install into a throw-away PREFIX, check the files and links, link a
# program statically through pkg-config --static (Libs.private) and one dynamically through
# the SONAME, run both, uninstall.
deps-c:
	@if ! command -v pkg-config >/dev/null 2>&1; then \
	  echo "installing pkg-config from Debian's packages"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq pkg-config; \
	fi

test-install: $(LIB) $(STATICLIB) $(MOCK) deps-c
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	prefix=$$tmp/prefix; lib=$$prefix/lib; \
	plan=$$($(MAKE) --no-print-directory -n install PREFIX=$$prefix); \
	if grep -q '$(CARGO) ' <<<"$$plan"; then \
	  echo "test-install: make install would run cargo"; exit 1; fi; \
	$(MAKE) --no-print-directory install PREFIX=$$prefix >$$tmp/install.log; \
	grep -q 'ldconfig' $$tmp/install.log || { echo "test-install: no ldconfig hint"; exit 1; }; \
	test -f $$lib/libbulkhead.so.$(VERSION) -a ! -L $$lib/libbulkhead.so.$(VERSION); \
	test "$$(readlink $$lib/libbulkhead.so.$(MAJOR))" = libbulkhead.so.$(VERSION); \
	test "$$(readlink $$lib/libbulkhead.so)" = libbulkhead.so.$(MAJOR); \
	export PKG_CONFIG_PATH=$$lib/pkgconfig; \
	test "$$(pkg-config --modversion bulkhead)" = $(VERSION); \
	static=$$(pkg-config --static --cflags --libs bulkhead); \
	$(CC) -std=c99 -Wall -Werror -o $$tmp/static scripts/install_check.c $${static/-lbulkhead/-l:libbulkhead.a}; \
	needed=$$(readelf -d $$tmp/static); \
	if grep -q 'libbulkhead' <<<"$$needed"; then echo "test-install: not a static link"; exit 1; fi; \
	$(CC) -std=c99 -Wall -Werror -o $$tmp/dynamic scripts/install_check.c \
	  $$(pkg-config --cflags --libs bulkhead) -Wl,-rpath,$$lib; \
	needed=$$(readelf -d $$tmp/dynamic); \
	grep -q 'NEEDED.*\[libbulkhead.so.$(MAJOR)\]' <<<"$$needed"; \
	mkfifo $$tmp/mock.in; exec 3<>$$tmp/mock.in; \
	$(MOCK) --port 0 --exit-on-stdin-eof <$$tmp/mock.in >$$tmp/mock.url 3>&- & \
	for _ in $$(seq 300); do [ -s $$tmp/mock.url ] && break; sleep 0.1; done; \
	url=$$(head -1 $$tmp/mock.url); \
	(cd $$tmp && ./static "$$url" && ./dynamic "$$url"); \
	exec 3>&-; wait; \
	$(MAKE) --no-print-directory uninstall PREFIX=$$prefix >/dev/null; \
	left=$$(find $$prefix -type f -o -type l); \
	if [ -n "$$left" ]; then echo "test-install: uninstall left $$left"; exit 1; fi; \
	echo "test-install: ok (static link through pkg-config, dynamic link through the SONAME)"

install: $(LIB) $(STATICLIB) include/bulkhead.h bulkhead.pc.in
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 0755 $(LIB) $(DESTDIR)$(LIBDIR)/libbulkhead.so.$(VERSION)
	ln -sfn libbulkhead.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libbulkhead.so.$(MAJOR)
	ln -sfn libbulkhead.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libbulkhead.so
	install -m 0644 $(STATICLIB) $(DESTDIR)$(LIBDIR)/
	install -m 0644 include/bulkhead.h $(DESTDIR)$(INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	  -e 's|@VERSION@|$(VERSION)|g' bulkhead.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/bulkhead.pc
	@echo "Installed libbulkhead $(VERSION) in $(DESTDIR)$(LIBDIR). Not run: ldconfig."
	@echo "  If $(LIBDIR) is a system library directory, run: sudo ldconfig"
	@echo "  (otherwise add it to /etc/ld.so.conf.d/ first, or use -Wl,-rpath,$(LIBDIR))."

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libbulkhead.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libbulkhead.so.$(MAJOR) \
	  $(DESTDIR)$(LIBDIR)/libbulkhead.so $(DESTDIR)$(LIBDIR)/libbulkhead.a \
	  $(DESTDIR)$(INCLUDEDIR)/bulkhead.h $(DESTDIR)$(LIBDIR)/pkgconfig/bulkhead.pc
	@echo "Uninstalled libbulkhead from $(DESTDIR)$(LIBDIR). Not run: ldconfig (run it to drop the cache entry)."

# --- Ruby: a platform gem bundling target/release/libbulkhead.so, and a source gem whose
# install builds the packaged crate with cargo (bindings/ruby/ext/bulkhead/extconf.rb).
gems: $(LIB) deps-ruby
	rm -rf $(GEMS) && mkdir -p $(GEMS)/platform $(GEMS)/source
	cp -rL bindings/ruby/. $(GEMS)/platform/ && cp -rL bindings/ruby/. $(GEMS)/source/
	rm -rf $(GEMS)/platform/ext $(GEMS)/source/lib/bulkhead/native
	mkdir -p $(GEMS)/platform/lib/bulkhead/native
	cp $(LIB) $(GEMS)/platform/lib/bulkhead/native/libbulkhead.so
	cd $(GEMS)/platform && BULKHEAD_GEM_PLATFORM=1 gem build -q bulkhead.gemspec -o $(GEMS)/bulkhead-$(VERSION)-$$(ruby -e 'print Gem::Platform.local').gem
	scripts/package-crate.sh $(GEMS)/source/ext/bulkhead/crate
	cd $(GEMS)/source && gem build -q bulkhead.gemspec -o $(GEMS)/bulkhead-$(VERSION).gem
	@ls -l $(GEMS)/*.gem

# Each gem into its own throw-away GEM_HOME (ffi from the system's gems), then a smoke test
# from outside the repository against the mock.
test-gems: gems $(MOCK)
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp scripts/smoke.rb $$tmp/; sys=$$(gem env gempath); \
	for gem in $(GEMS)/*.gem; do \
	  home=$$tmp/$$(basename $$gem .gem); echo "test-gems: $$(basename $$gem)"; \
	  env -u BULKHEAD_LIB GEM_HOME=$$home GEM_PATH=$$home:$$sys CARGO_TARGET_DIR=$(PKG_CARGO_TARGET) \
	    gem install --local --no-document $$gem >$$tmp/install.log 2>&1 || { cat $$tmp/install.log; exit 1; }; \
	  (cd $$tmp && env -u BULKHEAD_LIB -u RUBYLIB GEM_HOME=$$home GEM_PATH=$$home:$$sys \
	    ruby smoke.rb $(MOCK) $$home); \
	done

# --- Python: the wheel (py3-none-manylinux_2_N_<arch>, bundling target/release/libbulkhead.so)
# and the sdist (which carries the crate and builds it with cargo on install).
python-dist: $(LIB)
	rm -rf $(PYDIST) && mkdir -p $(PYDIST)
	$(PYTHON) -m venv $(PYDIST)/tools
	$(PYDIST)/tools/bin/pip install -q build auditwheel
	$(PYDIST)/tools/bin/python -m build -q --sdist --outdir $(PYDIST) bindings/python
	BULKHEAD_PREBUILT_LIB=$(LIB) $(PYDIST)/tools/bin/python -m build -q --wheel --outdir $(PYDIST) bindings/python
	@ls -l $(PYDIST)/*.whl $(PYDIST)/*.tar.gz

# auditwheel must call the wheel manylinux with exactly its own tag; then each of wheel and
# sdist into a fresh venv outside the repository, and a smoke test against the mock.
test-python-dist: python-dist $(MOCK)
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	wheel=$$(ls $(PYDIST)/*.whl); sdist=$$(ls $(PYDIST)/*.tar.gz); \
	tag=$$(basename $$wheel .whl | cut -d- -f5); \
	case $$tag in manylinux_2_*) ;; *) echo "test-python-dist: wheel tag $$tag is not manylinux"; exit 1;; esac; \
	case $$(basename $$wheel) in *-py3-none-*) ;; *) echo "test-python-dist: not py3-none: $$wheel"; exit 1;; esac; \
	$(PYDIST)/tools/bin/auditwheel show $$wheel | tee $$tmp/show.txt; \
	show=$$(tr -s ' \n' ' ' <$$tmp/show.txt); \
	grep -q "is consistent with the following platform tag: \"$$tag\"" <<<"$$show" \
	  || { echo "test-python-dist: auditwheel does not agree with $$tag"; exit 1; }; \
	tar tzf $$sdist >$$tmp/sdist.txt; \
	grep -q '/rust/src/lib.rs$$' $$tmp/sdist.txt || { echo "test-python-dist: no crate in the sdist"; exit 1; }; \
	cp scripts/smoke.py $$tmp/; \
	for dist in $$wheel $$sdist; do \
	  venv=$$tmp/venv-$$(basename $$dist | cut -c1-40); echo "test-python-dist: $$(basename $$dist)"; \
	  $(PYTHON) -m venv $$venv; \
	  (cd $$tmp && env -u BULKHEAD_PREBUILT_LIB CARGO_TARGET_DIR=$(PKG_CARGO_TARGET) \
	    $$venv/bin/pip install -q $$dist); \
	  (cd $$tmp && env -u BULKHEAD_LIB $$venv/bin/python smoke.py $(MOCK) $$venv); \
	done

# The outage story on an embedded mock, twice: on the defaults (the full queue drops), then
# with spool_dir set to a temporary directory (the overflow goes to disk and is replayed).
# HANG=1: the service holds connections open without answering instead of refusing them.
demo:
	@echo "make demo: two app threads track 20 000 events/s each for 15 s into an embedded mock"
	@echo "Mixpanel that goes down from second 5 to 10$(if $(HANG), (hanging),) and comes back; bulkhead runs on"
	@echo "its default settings, first without a spool, then with spool_dir set (about a minute in all)."
	@echo "Building the release library and the demo first (a minute or two)..."
	@$(CARGO) build --release -q --example demo
	@$(ROOT)/target/release/examples/demo $(if $(HANG),--hang,)

# Side by side (issue #10): C, Ruby and Python against the peer SDKs, on the mock. Writes
# bench/results.md, bench/*.svg, bench/raw.json and the README's Benchmarks section.
# BENCH_RUNS (3) runs, BENCH_OUTAGE_SECONDS (40); BENCH_QUICK=1 for a short smoke run.
bench: build deps-bench
	$(CC) -O2 -std=c99 -Iinclude bindings/c/bench/bench.c -o target/release/bulkhead-bench \
	  -Ltarget/release -lbulkhead -Wl,-rpath,$(ROOT)/target/release -lpthread
	$(PYTHON) bench/run.py --mock $(MOCK) --c-bench target/release/bulkhead-bench \
	  --python $(BENCH_VENV)/bin/python
	$(PYTHON) bench/readme.py

$(BENCH_VENV)/bin/python:
	$(PYTHON) -m venv $(BENCH_VENV)

# The bench's own venv: the peers from PyPI, and bulkhead bundling this build of the library.
deps-bench: $(BENCH_VENV)/bin/python $(LIB) deps-ruby
	$(BENCH_VENV)/bin/pip install -q mixpanel segment-analytics-python posthog orjson
	BULKHEAD_PREBUILT_LIB=$(LIB) $(BENCH_VENV)/bin/pip install -q --force-reinstall --no-deps ./bindings/python

clean:
	$(CARGO) clean
	rm -rf $(VENV)
