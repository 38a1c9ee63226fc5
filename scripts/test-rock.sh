#!/usr/bin/env bash
# `make test`'s rock check: `luarocks make` installs the rockspec into a temp tree, offline, and a
# real nginx (the runtime scripts/runtime.sh decides) on a free port requires both modules from
# that tree alone and serves one cmd_ping through the shim. Exits non-zero on any miss.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$root/scripts/runtime.sh")"
tree="$(mktemp -d /tmp/apisix-pubsub-rs-rock.XXXXXX)" dir="" master=""
cleanup() {
    [ -n "$master" ] && { kill -QUIT "$master" 2>/dev/null; wait "$master" 2>/dev/null || true; }
    rm -rf "$tree"
}
trap cleanup EXIT

(cd "$root" && luarocks --tree="$tree" make >"$tree/luarocks.log" 2>&1) ||
    { cat "$tree/luarocks.log" >&2; echo "test-rock: luarocks make failed" >&2; exit 1; }
lib="$tree/lib/lua/5.1/apisix_pubsub_rs.so" shim="$tree/share/lua/5.1/apisix/core/pubsub.lua"
[ -f "$lib" ] && [ -f "$shim" ] || { echo "test-rock: the rock lacks $lib or $shim" >&2; exit 1; }

dir="$tree/nginx"
# Bash's /dev/tcp, so nothing beyond bash is needed: a port nobody answers on, then one GET.
port=""
for _ in $(seq 20); do
    p=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { port=$p; break; }
done
[ -n "$port" ] || { echo "test-rock: no free port found" >&2; exit 1; }
get() {
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$1" >&3
    local response
    response="$(cat <&3)"
    exec 3<&-
    grep -q '^HTTP/1\.[01] 200' <<<"$response" || return 1
    sed '1,/^\r\{0,1\}$/d' <<<"$response"
}
mkdir -p "$dir/conf" "$dir/logs"
# Only the rock's tree is searched for the modules (t/lib gives the test client, nothing more).
cat > "$dir/conf/nginx.conf" <<CONF
$("$root/scripts/runtime.sh" --main-conf)
events { worker_connections 64; }
daemon off;
error_log logs/error.log warn;
http {
    access_log off;
    lua_package_path "$tree/share/lua/5.1/?.lua;$root/t/lib/?.lua;$PUBSUB_LUA_PATH;";
    lua_package_cpath "$tree/lib/lua/5.1/?.so;$PUBSUB_LUA_CPATH;";
    server {
        listen 127.0.0.1:$port;
        location /pubsub {
            content_by_lua_block {
                local pubsub = assert(require("apisix.core.pubsub").new())
                pubsub:wait()
            }
        }
        location /t {
            content_by_lua_block {
                local native = require("apisix_pubsub_rs")
                ngx.say("version ", native.version)
                ngx.say("library ", package.searchpath("apisix_pubsub_rs", package.cpath))
                ngx.say("shim ", package.searchpath("apisix.core.pubsub", package.path))
                local shim = require("apisix.core.pubsub")
                ngx.say("shim is native ", getmetatable(shim).__index == native and shim.version == native.version)
                local ws = assert(require("rawws").connect("/pubsub"))
                ws:send(ws.req({ sequence = 7, cmd_ping = { state = "from the rock" } }))
                local r = assert(ws:resp())
                ngx.say("reply ", r.sequence, " ", r.pong_resp.state)
            }
        }
    }
}
CONF
"$PUBSUB_NGINX" -p "$dir/" -c conf/nginx.conf &
master=$!
body=""
for _ in $(seq 50); do
    body="$(get /t 2>/dev/null)" && break
    kill -0 "$master" 2>/dev/null || break
    sleep 0.1
done
echo "$body" | sed 's/^/test-rock: /'
fail() { echo "test-rock: $1" >&2; cat "$dir/logs/error.log" >&2 2>/dev/null || true; exit 1; }
grep -qx "version [0-9][0-9.]*.*" <<<"$body" || fail "no version from the rock's library"
grep -qx "library $lib" <<<"$body" || fail "the library did not come from the rock's tree"
grep -qx "shim $shim" <<<"$body" || fail "the shim did not come from the rock's tree"
grep -qx "shim is native true" <<<"$body" || fail "apisix.core.pubsub is not the native module"
grep -qx "reply 7 from the rock" <<<"$body" || fail "no pong through the rock's modules"
echo "test-rock: ok ($PUBSUB_RUNTIME runtime, $PUBSUB_NGINX)"
