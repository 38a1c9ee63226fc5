# apisix-pubsub-rs: build, test, run, install.
#
#   make            release build: target/release/libapisix_pubsub_rs.so
#   make test       cargo tests + every .t suite + the clients' tests (installs what is missing first)
#   make test-clients  the Python client/CLI and the browser page (pytest, headless Chromium)
#   make run        demo nginx on 127.0.0.1:9080 serving /pubsub and the page on /, in the
#                   foreground (Ctrl-C stops); also installs the Python CLI in $(CLIENTS_VENV)
#   make install    the library as $(LUA_LIB_DIR)/apisix_pubsub_rs.so, the APISIX shim under $(LUA_SHARE_DIR)
#   make soak       10,000 connection cycles, 1,000-connection load, 1,000,000-message soak, push to non-reading and slow clients (minutes)
#   make bench      throughput/latency matrix: native vs lua-framing vs floor (vs APISIX's original), then bench-push
#   make bench-push push throughput, fan-out to 1,000 and 10,000 subscribers, idle latency: native vs nchan
#   make instructions  user-space instructions per message under callgrind (STATE, CONNS, DEPTH)
#   make valgrind   the module's .t suites once under valgrind memcheck (slow)
#   make deps       only the Debian packages
#   make docs       docs/architecture.svg from docs/architecture.dot (Graphviz)

PREFIX        ?= /usr/local
LUA_LIB_DIR   ?= $(PREFIX)/lib/lua/5.1
LUA_SHARE_DIR ?= $(PREFIX)/share/lua/5.1
CARGO         ?= cargo
PROVE         ?= prove
T             ?= t/

DEB_PACKAGES = nginx libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core \
               lua-nginx-websocket libluajit2-5.1-dev luajit2 protobuf-compiler \
               libtest-base-perl libtest-longstring-perl liblist-moreutils-perl libtext-diff-perl \
               libhttp-message-perl liburi-perl redis-server

# The clients' tests: Debian's Chromium and its driver; Python packages in a venv under target/.
CLIENT_DEB_PACKAGES = chromium chromium-driver python3-venv
PYTHON        ?= python3
NPM           ?= npm
CLIENTS_VENV  ?= target/clients/venv
CLIENT_SOURCES = proto/pubsub.proto clients/python/pyproject.toml clients/python/setup.py \
                 $(wildcard clients/python/src/apisix_pubsub/*.py)

LIB = target/release/libapisix_pubsub_rs.so

.PHONY: all build test test-rust test-t test-clients deps deps-clients client web-deps docs run install \
        valgrind soak loadgen bench bench-push instructions clean

all: build

build:
	$(CARGO) build --release

# Installs the Debian packages of $(1) that are missing; as root through apt-get, otherwise sudo.
define install-debs
	@missing=""; for p in $(1); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null && \
	    { $$SUDO service nginx stop >/dev/null 2>&1 || true; }; \
	fi
endef

deps:
	$(call install-debs,$(DEB_PACKAGES))

deps-clients:
	$(call install-debs,$(CLIENT_DEB_PACKAGES))

test: deps build test-rust test-t test-clients

test-rust:
	$(CARGO) clippy --release --all-targets -- -D warnings -W clippy::undocumented_unsafe_blocks
	$(CARGO) test --release

test-t: build
	$(PROVE) -r $(T)

# The Python client and CLI (pip install ./clients/python), in a venv of its own.
client: $(CLIENTS_VENV)/.installed
$(CLIENTS_VENV)/.installed: $(CLIENT_SOURCES)
	$(PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/pip install -q --disable-pip-version-check ./clients/python
	touch $@

# protobufjs and long for the browser page, from the committed package-lock.json.
web-deps: clients/web/node_modules/.package-lock.json
clients/web/node_modules/.package-lock.json: clients/web/package-lock.json
	@command -v $(NPM) >/dev/null || $(MAKE) --no-print-directory deps DEB_PACKAGES=npm
	$(NPM) ci --prefix clients/web --no-audit --no-fund --loglevel=error

test-clients: deps deps-clients build client web-deps
	$(CLIENTS_VENV)/bin/pip install -q --disable-pip-version-check pytest selenium
	cd clients && PUBSUB_REQUIRE_BROWSER=1 ../$(CLIENTS_VENV)/bin/python -m pytest

docs: docs/architecture.svg
docs/architecture.svg: docs/architecture.dot
	@command -v dot >/dev/null || $(MAKE) --no-print-directory deps DEB_PACKAGES=graphviz
	dot -Tsvg $< -o $@

loadgen:
	cd loadgen && $(CARGO) build --release

bench: deps build loadgen
	./bench/bench.sh
	$(MAKE) bench-push

# nchan (Debian's libnginx-mod-nchan) is the peer of the push benchmark only, so `make deps` leaves it out.
bench-push: deps build loadgen
	@dpkg-query -W -f='$${Status}' libnginx-mod-nchan 2>/dev/null | grep -q "ok installed" || { \
	    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends libnginx-mod-nchan >/dev/null; }
	./bench/push_bench.sh

instructions: deps build loadgen
	@command -v valgrind >/dev/null || { SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO apt-get install -y -qq valgrind >/dev/null; }
	./bench/instructions.sh

soak: deps build loadgen
	./scripts/soak.sh

valgrind: deps build
	@command -v valgrind >/dev/null || { SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO apt-get install -y -qq valgrind >/dev/null; }
	./scripts/valgrind.sh

run: deps build client web-deps
	@./scripts/demo.sh

install: build
	install -d $(DESTDIR)$(LUA_LIB_DIR) $(DESTDIR)$(LUA_SHARE_DIR)/apisix/core
	install -m 0755 $(LIB) $(DESTDIR)$(LUA_LIB_DIR)/apisix_pubsub_rs.so
	install -m 0644 lua/apisix/core/pubsub.lua $(DESTDIR)$(LUA_SHARE_DIR)/apisix/core/pubsub.lua

clean:
	$(CARGO) clean
	rm -rf t/servroot*
