# apisix-pubsub-rs: build, test, run, install.
#
#   make            release build: target/release/libapisix_pubsub_rs.so
#   make test       cargo tests + every .t suite + the clients' tests + the rock and install checks
#                   (installs what is missing first)
#   make test-clients  the Python client/CLI and the browser page (pytest, headless Chromium)
#   make run        demo nginx on 127.0.0.1:9080 serving /pubsub and the page on /, in the
#                   foreground (Ctrl-C stops); also installs the Python CLI in $(CLIENTS_VENV)
#   make install    the library as $(LUA_LIB_DIR)/apisix_pubsub_rs.so, the APISIX shim under $(LUA_SHARE_DIR);
#                   with APISIX_DIR=<an APISIX tree>: into that tree, its pubsub.lua kept as pubsub.lua.orig
#   make uninstall  APISIX_DIR=<an APISIX tree>: removes both and puts pubsub.lua.orig back
#   make soak       10,000 connection cycles, 1,000-connection load, 1,000,000-message soak, push to non-reading and slow clients, channels through Redis restarted twice (that step about six minutes)
#   make bench      throughput/latency matrix: native vs lua-framing vs floor (vs APISIX's original), then bench-push
#   make bench-push push throughput, fan-out to 1,000 and 10,000 subscribers, idle latency: native vs nchan
#   make bench-channels  channels over Redis, 1,000 and 10,000 subscribers, 1 and 2 workers: native vs nchan with Redis
#   make instructions  user-space instructions per message under callgrind (STATE, CONNS, DEPTH)
#   make bench-compression  permessage-deflate on against off: msgs/s, worker CPU, wire bytes
#   make valgrind   the module's .t suites once under valgrind memcheck (slow)
#   make deps       only the Debian packages (deps-run: only those make run needs)
#   make docs       docs/architecture.svg from docs/architecture.dot (Graphviz)
#
# The runtime (Debian's nginx packages, or an OpenResty named by OPENRESTY_PREFIX, TEST_NGINX_BINARY
# or an openresty on PATH) is what scripts/runtime.sh decides; on OpenResty no nginx package is installed.

PREFIX        ?= /usr/local
LUA_LIB_DIR   ?= $(PREFIX)/lib/lua/5.1
LUA_SHARE_DIR ?= $(PREFIX)/share/lua/5.1
CARGO         ?= cargo
PROVE         ?= prove
T             ?= t/

# Debian's runtime: what make run needs, and what the suites add to it (their websocket client).
DEB_RUN_PACKAGES  = nginx libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core
DEB_RUN_TEST_PACKAGES = lua-nginx-websocket
# What make test needs on any runtime: cargo's tests (LuaJIT), protoc, the rock check, the .t runner.
# (openssl: the test certificate of t/pubsub/direct.t)
DEB_TEST_PACKAGES = libluajit2-5.1-dev luajit2 protobuf-compiler luarocks \
               libtest-base-perl libtest-longstring-perl liblist-moreutils-perl libtext-diff-perl \
               libhttp-message-perl liburi-perl redis-server openssl
RUNTIME = $(shell scripts/runtime.sh --kind)
DEB_RUNTIME = $(if $(filter debian,$(RUNTIME)),$(1))
# All of them for this runtime (make deps DEB_PACKAGES=x installs x alone).
DEB_PACKAGES = $(call DEB_RUNTIME,$(DEB_RUN_PACKAGES) $(DEB_RUN_TEST_PACKAGES)) $(DEB_TEST_PACKAGES)

# The clients' tests: Debian's Chromium and its driver; Python packages in a venv under target/.
CLIENT_DEB_PACKAGES = chromium chromium-driver python3-venv
PYTHON        ?= python3
NPM           ?= npm
CLIENTS_VENV  ?= target/clients/venv
CLIENT_SOURCES = proto/pubsub.proto clients/python/pyproject.toml clients/python/setup.py \
                 $(wildcard clients/python/src/apisix_pubsub/*.py)

LIB = target/release/libapisix_pubsub_rs.so

.PHONY: all build test test-rust test-t test-clients test-rock test-install test-bench-results deps deps-run \
        deps-clients client web-deps docs run install uninstall \
        valgrind soak loadgen bench bench-push bench-channels bench-compression instructions clean

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

deps-run:
	$(call install-debs,$(call DEB_RUNTIME,$(DEB_RUN_PACKAGES)))

deps:
	$(call install-debs,$(DEB_PACKAGES))

deps-clients:
	$(call install-debs,$(CLIENT_DEB_PACKAGES))

test: deps build test-rust test-t test-clients test-rock test-install test-bench-results

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
	$(CLIENTS_VENV)/bin/pip install -q --disable-pip-version-check pytest selenium prometheus_client
	cd clients && PUBSUB_REQUIRE_BROWSER=1 ../$(CLIENTS_VENV)/bin/python -m pytest

docs: docs/architecture.svg
docs/architecture.svg: docs/architecture.dot
	@command -v dot >/dev/null || $(MAKE) --no-print-directory deps DEB_PACKAGES=graphviz
	dot -Tsvg $< -o $@

# The rockspec, installed into a temp tree and required from there by a real nginx.
test-rock: build
	./scripts/test-rock.sh

# make install / uninstall APISIX_DIR=... against a temp fake APISIX tree.
test-install: build
	./scripts/test-install.sh

# bench/results holds the runs BENCHMARKS.md cites, and only those.
test-bench-results:
	@for f in $$(git ls-files 'bench/results/*' 2>/dev/null); do \
	    grep -qF "$$f" BENCHMARKS.md || { echo "$$f is committed, but BENCHMARKS.md does not cite it" >&2; exit 1; }; \
	done
	@for f in $$(grep -o 'bench/results/[A-Za-z0-9._-]*' BENCHMARKS.md | sort -u); do \
	    [ -f "$$f" ] || { echo "BENCHMARKS.md cites $$f, which is not there" >&2; exit 1; }; \
	done
	@echo "test-bench-results: every run BENCHMARKS.md cites is in bench/results, and nothing else is"

loadgen:
	cd loadgen && $(CARGO) build --release

bench: deps build loadgen
	./bench/bench.sh
	$(MAKE) bench-push
	$(MAKE) bench-channels

# nchan (Debian's libnginx-mod-nchan) is the peer of the push benchmark only, so `make deps` leaves it out.
bench-push: deps build loadgen
	$(call install-debs,libnginx-mod-nchan)
	./bench/push_bench.sh

bench-compression: deps build loadgen
	./bench/compression_bench.sh

instructions: deps build loadgen
	@command -v valgrind >/dev/null || { SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO apt-get install -y -qq valgrind >/dev/null; }
	./bench/instructions.sh

soak: deps build loadgen
	./scripts/soak.sh

valgrind: deps build
	@command -v valgrind >/dev/null || { SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO apt-get install -y -qq valgrind >/dev/null; }
	./scripts/valgrind.sh

run: deps-run build client web-deps
	@./scripts/demo.sh

# Into an APISIX tree: the library where its lua_package_cpath looks (deps/lib64/lua/5.1 when the
# tree has it, else deps/lib/lua/5.1, both in apisix/cli/ngx_tpl.lua), the shim over
# apisix/core/pubsub.lua, the original kept once as pubsub.lua.orig.
APISIX_CPATH_DIR = $(if $(wildcard $(APISIX_DIR)/deps/lib64/lua/5.1),$(APISIX_DIR)/deps/lib64/lua/5.1,$(APISIX_DIR)/deps/lib/lua/5.1)
APISIX_PUBSUB = $(APISIX_DIR)/apisix/core/pubsub.lua

install: build
ifdef APISIX_DIR
	@test -f $(APISIX_PUBSUB) || { echo "install: $(APISIX_PUBSUB) not found: APISIX_DIR must be an APISIX tree" >&2; exit 1; }
	install -d $(APISIX_CPATH_DIR)
	install -m 0755 $(LIB) $(APISIX_CPATH_DIR)/apisix_pubsub_rs.so
	test -f $(APISIX_PUBSUB).orig || cp -p $(APISIX_PUBSUB) $(APISIX_PUBSUB).orig
	install -m 0644 lua/apisix/core/pubsub.lua $(APISIX_PUBSUB)
else
	install -d $(DESTDIR)$(LUA_LIB_DIR) $(DESTDIR)$(LUA_SHARE_DIR)/apisix/core
	install -m 0755 $(LIB) $(DESTDIR)$(LUA_LIB_DIR)/apisix_pubsub_rs.so
	install -m 0644 lua/apisix/core/pubsub.lua $(DESTDIR)$(LUA_SHARE_DIR)/apisix/core/pubsub.lua
endif

uninstall:
ifdef APISIX_DIR
	@test -f $(APISIX_PUBSUB).orig || { echo "uninstall: no $(APISIX_PUBSUB).orig to restore" >&2; exit 1; }
	rm -f $(APISIX_CPATH_DIR)/apisix_pubsub_rs.so
	mv $(APISIX_PUBSUB).orig $(APISIX_PUBSUB)
else
	rm -f $(DESTDIR)$(LUA_LIB_DIR)/apisix_pubsub_rs.so $(DESTDIR)$(LUA_SHARE_DIR)/apisix/core/pubsub.lua
endif

clean:
	$(CARGO) clean
	rm -rf t/servroot*

# Channels over Redis against nchan using Redis (nchan_use_redis), on one redis-server.
bench-channels: deps build loadgen
	$(call install-debs,libnginx-mod-nchan)
	./bench/channels_bench.sh
