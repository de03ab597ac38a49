# BlastBeat — `make run` starts the gateway with the example backend; `make test` runs every test.
SWIFT ?= swift
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: all deps build release run test unit integration integration-libzmq sdk venv bench autobahn clean install uninstall
SDK_FILES := python/pyproject.toml $(wildcard python/src/blastbeat/*.py)

all: build

deps:
	@scripts/install-deps.sh build

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

venv: $(VENV)/.installed

# The integration tests' requirements and the Python SDK (python/): the tests and the examples decode uwsgi
# packets with its blastbeat.uwsgi, and `make run` starts examples/hello.py, which imports it too.
$(VENV)/.installed: Tests/IntegrationTests/requirements.txt $(SDK_FILES)
	@scripts/install-deps.sh test
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r Tests/IntegrationTests/requirements.txt
	$(PY) -m pip install -q ./python
	touch $@

# The Python SDK's test requirements (Flask, ...); the SDK itself comes with the venv.
$(VENV)/.sdk-installed: $(VENV)/.installed Tests/SDKTests/requirements.txt
	$(PY) -m pip install -q -r Tests/SDKTests/requirements.txt
	touch $@

run: release venv
	scripts/run.sh

# Unit tests (swift test) and integration tests (the real binaries with real peers). The release
# binary is built too: the allocations-per-request test measures it. Then the sanitizer runs (~4 min) and a
# short fuzz replay (~2 min), see Tests/Fuzz/README.md.
test: build release venv $(VENV)/.sdk-installed
	$(SWIFT) test
	scripts/check-no-foundation.sh .build/debug/blastbeat
	scripts/check-no-foundation.sh .build/release/blastbeat
	scripts/check-no-foundation.sh .build/debug/swift-hello
	BLASTBEAT_BIN=$(CURDIR)/.build/debug/blastbeat BLASTBEAT_RELEASE_BIN=$(CURDIR)/.build/release/blastbeat \
		$(PY) -m pytest -q Tests/IntegrationTests
	$(MAKE) --no-print-directory integration-libzmq
	BLASTBEAT_BIN=$(CURDIR)/.build/debug/blastbeat $(PY) -m pytest -q Tests/SDKTests
	BLASTBEAT_BIN=$(CURDIR)/.build/release/blastbeat PYTHON=$(CURDIR)/$(PY) Tests/Autobahn/run.sh
	$(MAKE) --no-print-directory test-sanitize
	$(MAKE) --no-print-directory fuzz-replay

sdk: build $(VENV)/.sdk-installed
	BLASTBEAT_BIN=$(CURDIR)/.build/debug/blastbeat $(PY) -m pytest -q Tests/SDKTests

unit: build
	$(SWIFT) test

integration: build release venv
	BLASTBEAT_BIN=$(CURDIR)/.build/debug/blastbeat BLASTBEAT_RELEASE_BIN=$(CURDIR)/.build/release/blastbeat \
		$(PY) -m pytest -q Tests/IntegrationTests

# The suites that exercise the backend side again with zmq-engine = libzmq (the gateway's other ZMTP engine).
LIBZMQ_SUITES := test_http.py test_nodes.py test_node_queue.py test_websocket.py test_seed_examples.py \
	test_memory_budget.py
integration-libzmq: build venv
	BLASTBEAT_ZMQ_ENGINE=libzmq BLASTBEAT_BIN=$(CURDIR)/.build/debug/blastbeat \
		$(PY) -m pytest -q $(addprefix Tests/IntegrationTests/,$(LIBZMQ_SUITES))

clean:
	rm -rf .build .build-asan .build-tsan Tests/Fuzz/.build $(VENV)

# `make install` (README.md, "Running in production"): the release binary, the systemd unit (its paths rewritten
# to where the binary and the configuration go), the logrotate snippet, and an example configuration, which never
# replaces an existing one. PREFIX and DESTDIR as usual; INSTALL_BIN installs another binary (the tests do).
# The release binary is rebuilt only when a source file is newer than it.
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
INSTALL_BIN ?= .build/release/blastbeat
SOURCE_FILES := Package.swift $(shell find Sources -type f)

.build/release/blastbeat: $(SOURCE_FILES)
	$(SWIFT) build -c release

install: $(INSTALL_BIN)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/logrotate.d \
		$(DESTDIR)$(SYSCONFDIR)/blastbeat $(DESTDIR)$(SYSCONFDIR)/blastbeat/sites.d
	install -m 755 $(INSTALL_BIN) $(DESTDIR)$(SBINDIR)/blastbeat
	sed -e 's|/usr/sbin/blastbeat|$(SBINDIR)/blastbeat|g' -e 's|/etc/blastbeat/|$(SYSCONFDIR)/blastbeat/|g' \
		dist/blastbeat.service > $(DESTDIR)$(UNITDIR)/blastbeat.service
	chmod 644 $(DESTDIR)$(UNITDIR)/blastbeat.service
	install -m 644 dist/blastbeat.logrotate $(DESTDIR)$(SYSCONFDIR)/logrotate.d/blastbeat
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/blastbeat/blastbeat.ini ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/blastbeat/blastbeat.ini (the example is dist/blastbeat.ini)"; \
	else \
		echo "install -m 644 dist/blastbeat.ini $(DESTDIR)$(SYSCONFDIR)/blastbeat/blastbeat.ini"; \
		install -m 644 dist/blastbeat.ini $(DESTDIR)$(SYSCONFDIR)/blastbeat/blastbeat.ini; \
	fi

# Removes what `make install` put in place except the configuration (and the logs the gateway wrote).
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/blastbeat $(DESTDIR)$(UNITDIR)/blastbeat.service \
		$(DESTDIR)$(SYSCONFDIR)/logrotate.d/blastbeat

# Side-by-side benchmark, see bench/README.md: BlastBeat vs Mongrel2, Condure and nginx with wrk.
# BENCH_ARGS="--quick" for a smoke run (~3 minutes); results go to bench/results/.
bench: release
	python3 bench/run.py $(BENCH_ARGS)

# Autobahn|Testsuite (WebSocket conformance) against the gateway + examples/ws_echo.py, see Tests/Autobahn/README.md.
# Fast selection by default (< 3 min); AUTOBAHN_ARGS=--full for all 517 cases (with AUTOBAHN_BIN=.build/release/blastbeat).
AUTOBAHN_BIN ?= $(CURDIR)/.build/debug/blastbeat
.PHONY: autobahn
autobahn: build venv
	BLASTBEAT_BIN=$(AUTOBAHN_BIN) PYTHON=$(CURDIR)/$(PY) Tests/Autobahn/run.sh $(AUTOBAHN_ARGS)

# Fuzzing (Tests/Fuzz/README.md): libFuzzer + AddressSanitizer drivers for the parsers and codecs, at nice 19.
# `make fuzz` runs each driver FUZZ_SECONDS (default 15 s, 12 drivers: ~3.5 min with the build); `make fuzz-long`
# FUZZ_LONG_SECONDS each; `make fuzz-replay` runs the committed corpus and FailCases once, then
# FUZZ_REPLAY_SECONDS each. FUZZ_DRIVERS="zmtp inflate" limits any of them to some drivers.
FUZZ_SECONDS ?= 15
FUZZ_LONG_SECONDS ?= 1800
FUZZ_REPLAY_SECONDS ?= 5
FUZZ_DRIVERS ?=
.PHONY: fuzz fuzz-long fuzz-replay fuzz-merge
fuzz:
	SWIFT=$(SWIFT) scripts/fuzz.sh run $(FUZZ_SECONDS) $(FUZZ_DRIVERS)

fuzz-long:
	SWIFT=$(SWIFT) scripts/fuzz.sh run $(FUZZ_LONG_SECONDS) $(FUZZ_DRIVERS)

fuzz-replay:
	SWIFT=$(SWIFT) scripts/fuzz.sh replay $(FUZZ_REPLAY_SECONDS) $(FUZZ_DRIVERS)

# Adds the inputs of the working corpus (Tests/Fuzz/.build/corpus) that bring new coverage to Tests/Fuzz/Corpus.
fuzz-merge:
	SWIFT=$(SWIFT) scripts/fuzz.sh merge $(FUZZ_DRIVERS)

# Sanitizer builds (Tests/Fuzz/README.md, "Sanitizers"). The gateway and the Swift examples built with
# AddressSanitizer (.build-asan) run the integration suite; an ASan report fails the test that caused it
# (conftest.py: no_sanitizer_report) and, since ASan exits non-zero, the gateway's clean-exit check too. The
# allocation and tenant isolation tests measure the release binary, and the RSS bounds of test_node_queue.py and
# test_memory_budget.py's slow readers measure memory that ASan's quarantine and redzones inflate (16.3 MiB against
# 16; 192 MiB against 82): they are left out. Then the SDK's unit tests under ThreadSanitizer.
ASAN_BUILD := .build-asan
TSAN_BUILD := .build-tsan
SANITIZER_ENV := SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
	ASAN_SYMBOLIZER_PATH=$(CURDIR)/Tests/IntegrationTests/asan/llvm-symbolizer \
	LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/IntegrationTests/lsan.supp:print_suppressions=0
.PHONY: test-sanitize test-asan test-tsan
test-sanitize: test-asan test-tsan

# Left out under AddressSanitizer: the RSS bounds (its quarantine keeps freed memory resident); they run in the
# normal suite. The symbolizer is a wrapper (Tests/IntegrationTests/asan/) that keeps llvm-symbolizer's
# broken-pipe message, when a worker is stopped during its exit's leak check, off the gateway's stderr, which the
# start-failure tests compare byte for byte.
test-asan: venv
	nice -n 19 $(SWIFT) build -c debug -Xswiftc -sanitize=address --build-path $(ASAN_BUILD)
	$(SANITIZER_ENV) BLASTBEAT_BIN=$(CURDIR)/$(ASAN_BUILD)/debug/blastbeat SWIFT_EXAMPLES_DIR=$(CURDIR)/$(ASAN_BUILD)/debug \
		$(PY) -m pytest -q Tests/IntegrationTests --ignore=Tests/IntegrationTests/test_allocations.py \
		--ignore=Tests/IntegrationTests/test_tenant_isolation.py \
		--deselect test_node_queue.py::test_upload_to_a_stalled_node_waits_instead_of_filling_memory \
		--deselect test_node_queue.py::test_websocket_messages_to_a_stalled_node_wait_in_the_client \
		--deselect test_memory_budget.py::test_twenty_slow_readers_stay_within_the_budget \
		--deselect test_worker_mesh_flow.py::test_twenty_slow_readers_on_both_workers_stay_within_each_workers_budget

test-tsan:
	nice -n 19 $(SWIFT) build --build-tests -c debug --sanitize=thread --build-path $(TSAN_BUILD)
	SWIFT_BACKTRACE=enable=no TSAN_OPTIONS=halt_on_error=1 \
		$(SWIFT) test -c debug --sanitize=thread --build-path $(TSAN_BUILD) --skip-build --filter BlastBeatBackendTests
