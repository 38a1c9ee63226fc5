#!/usr/bin/env bash
# User-space instructions per message of one nginx worker, counted by callgrind: a measure that,
# unlike msgs/s on a shared 2-vCPU machine, does not move with the neighbours. Kernel work (socket
# copies, TCP) is not counted, and the same for every build.
#
#   bench/instructions.sh [server]      server: native (default), native_lua_handler, lua_framing or floor
#
#   STATE=60000 CONNS=1 DEPTH=16 MESSAGES=2000   the load (after a 200-message warm-up)
#   LIB_DIR=target/release                       where libapisix_pubsub_rs.so is (compare builds)
#   PROTO=path/to/pubsub.proto                   a schema loaded at run time (load_proto), to compare
#   QUERY=direct=0                               added to the location's query (direct=0: every write by the writer thread)
#   TOP=15                                       functions listed, by their own instructions
#   LOADGEN_ARGS="--compress --payload json"     more load generator options (permessage-deflate: with
#                                                the server native_compressed; its level by QUERY=level=N)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$root/scripts/runtime.sh")"
server="${1:-native}"
state="${STATE:-60000}" conns="${CONNS:-1}" depth="${DEPTH:-16}" n="${MESSAGES:-2000}"
lib_dir="$(cd "${LIB_DIR:-$root/target/release}" && pwd)"
lg="$root/loadgen/target/release/pubsub-loadgen"
command -v valgrind >/dev/null || { echo "instructions: valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
dir="$(mktemp -d /tmp/apisix-pubsub-rs-instr.XXXXXX)"
mkdir -p "$dir/conf" "$dir/logs" "$dir/lua"
"$root/scripts/runtime.sh" --lua > "$dir/lua/pubsub_runtime.lua"
port=9480
# PROTO=<file>: serve a schema loaded at run time (pubsub.load_proto) instead of the built-in one.
proto_init=""
if [ -n "${PROTO:-}" ]; then
    proto="$(cd "$(dirname "$PROTO")" && pwd)/$(basename "$PROTO")"
    proto_init="init_by_lua_block { assert(require(\"apisix_pubsub_rs\").load_proto(\"$proto\")) }"
fi
cat > "$dir/conf/nginx.conf" <<CONF
$("$root/scripts/runtime.sh" --main-conf)
daemon off;
master_process off;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    lua_socket_log_errors off;
    lua_package_path "$root/bench/?.lua;$dir/lua/?.lua;$PUBSUB_LUA_PATH;";
    lua_package_cpath "$lib_dir/lib?.so;$PUBSUB_LUA_CPATH;";
    $proto_init
    server {
        listen 127.0.0.1:$port;
        location = /native { content_by_lua_block { require("servers").native(tonumber(ngx.var.arg_max)) } }
        location = /native_compressed { content_by_lua_block { require("servers").native_compressed(tonumber(ngx.var.arg_max), tonumber(ngx.var.arg_level)) } }
        location = /native_lua_handler { content_by_lua_block { require("servers").native_lua_handler(tonumber(ngx.var.arg_max)) } }
        location = /lua_framing { content_by_lua_block { require("servers").lua_framing(tonumber(ngx.var.arg_max)) } }
        location = /floor { content_by_lua_block { require("servers").floor(tonumber(ngx.var.arg_max)) } }
    }
}
CONF
valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "$PUBSUB_NGINX" -p "$dir/" -c conf/nginx.conf \
    > "$dir/valgrind.log" 2>&1 &
vg=$!
trap 'kill -QUIT $vg 2>/dev/null; wait $vg 2>/dev/null || true' EXIT
for _ in $(seq 150); do ss -ltn | grep -q "127.0.0.1:$port " && break; sleep 0.2; done
max=$(( state > 60000 ? 2 * 1024 * 1024 : 65535 ))
path="/$server?max=$max${QUERY:+&$QUERY}" check=full
if [ "$server" = floor ]; then
    check=length; path="/floor?max=$max&state=$state&frame=$("$lg" -s "$state" --frame-size)"
fi
load() { "$lg" --addr "127.0.0.1:$port" --path "$path" -c "$conns" -d "$depth" -s "$state" --check "$check" --messages "$1" ${LOADGEN_ARGS:-} >/dev/null; }
load 200
callgrind_control -z "$vg" >/dev/null
load "$n"
callgrind_control -d "$vg" >/dev/null
sleep 1
python3 "$root/bench/instructions.py" "$dir"/callgrind.out.1 "$n" "${TOP:-15}" \
    "$server, state $state B, $conns connection(s), depth $depth, $n messages, library $lib_dir"
