# apisix-pubsub-rs: build, test, run, install.
#
#   make            release build: target/release/libapisix_pubsub_rs.so
#   make test       cargo tests + every .t suite (installs missing Debian packages first)
#   make run        demo nginx on 127.0.0.1:9080 serving /pubsub, in the foreground (Ctrl-C stops)
#   make install    the library as $(LUA_LIB_DIR)/apisix_pubsub_rs.so, the APISIX shim under $(LUA_SHARE_DIR)
#   make soak       10,000 connection cycles, 1,000-connection load, 1,000,000-message soak (minutes)
#   make bench      throughput/latency matrix: native vs lua-framing vs floor (vs APISIX's original)
#   make instructions  user-space instructions per message under callgrind (STATE, CONNS, DEPTH)
#   make valgrind   the module's .t suites once under valgrind memcheck (slow)
#   make deps       only the Debian packages

PREFIX        ?= /usr/local
LUA_LIB_DIR   ?= $(PREFIX)/lib/lua/5.1
LUA_SHARE_DIR ?= $(PREFIX)/share/lua/5.1
CARGO         ?= cargo
PROVE         ?= prove
T             ?= t/

DEB_PACKAGES = nginx libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core \
               lua-nginx-websocket libluajit2-5.1-dev luajit2 protobuf-compiler \
               libtest-base-perl libtest-longstring-perl liblist-moreutils-perl libtext-diff-perl \
               libhttp-message-perl liburi-perl

LIB = target/release/libapisix_pubsub_rs.so

.PHONY: all build test test-rust test-t deps run install valgrind soak loadgen bench instructions clean

all: build

build:
	$(CARGO) build --release

# Installs only what is missing; as root through apt-get, otherwise through sudo.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null && \
	    { $$SUDO service nginx stop >/dev/null 2>&1 || true; }; \
	fi

test: deps build test-rust test-t

test-rust:
	$(CARGO) clippy --release --all-targets -- -D warnings -W clippy::undocumented_unsafe_blocks
	$(CARGO) test --release

test-t: build
	$(PROVE) -r $(T)

loadgen:
	cd loadgen && $(CARGO) build --release

bench: deps build loadgen
	./bench/bench.sh

instructions: deps build loadgen
	@command -v valgrind >/dev/null || { SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO apt-get install -y -qq valgrind >/dev/null; }
	./bench/instructions.sh

soak: deps build loadgen
	./scripts/soak.sh

valgrind: deps build
	@command -v valgrind >/dev/null || { SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO apt-get install -y -qq valgrind >/dev/null; }
	./scripts/valgrind.sh

run: deps build
	@./scripts/demo.sh

install: build
	install -d $(DESTDIR)$(LUA_LIB_DIR) $(DESTDIR)$(LUA_SHARE_DIR)/apisix/core
	install -m 0755 $(LIB) $(DESTDIR)$(LUA_LIB_DIR)/apisix_pubsub_rs.so
	install -m 0644 lua/apisix/core/pubsub.lua $(DESTDIR)$(LUA_SHARE_DIR)/apisix/core/pubsub.lua

clean:
	$(CARGO) clean
	rm -rf t/servroot*
