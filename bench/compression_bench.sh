#!/usr/bin/env bash
# permessage-deflate on against off, in the same run: one nginx worker (pinned to CPU 0 where
# taskset exists) serving /native (compression off, the default) and /native_compressed
# (compression = true), the load generator on CPU 1 offering permessage-deflate (--compress) or
# not, the two taking turns in every round. With --compress the load generator compresses the
# state part of its requests once per connection (zlib-rs at COMP_CLIENT_LEVEL) and sends each
# request as a stored block with its sequence and those blocks, so that its own cost per request
# is a copy and the run measures the worker (see pubsub-loadgen --help). Cells: a 16 B ping
# (under the threshold: what compression costs a message it does not compress), JSON-like and
# random states of 1 KiB and 60 KB. Reported per cell (medians of the rounds): msgs/s, worker CPU (fraction of a core),
# worker µs per message, the load generator's µs per message (its own CPU: the run measures the
# worker only while this stays well under the worker's), and bytes on the wire per message
# (requests out, replies in).
#
#   COMP_SECONDS (default 3), COMP_ROUNDS (default 3), COMP_CONNS (default 16), COMP_DEPTH (default 16)
#   COMP_CELLS   payload:bytes cells (default "bytes:16 json:1024 json:60000 random:1024 random:60000")
#   COMP_MODES   default "off on"; also on-l1 and on-l6 (the server at zlib level 1 or 6 for every size)
#                and on-each (the server's default, the load generator compressing every request
#                whole with --compress-each, as a zlib client does: its own CPU then limits the run)
#                and on-plain (compression agreed, every request sent uncompressed, as Node's ws
#                sends messages under its threshold: with the 16 B cell, what a connection that
#                compresses costs a message under the thresholds both ways)
#   COMP_CLIENT_LEVEL  zlib level of the load generator's compressed requests (default 6, zlib's
#                default, as browsers, Python websockets and Node's ws compress)
#   COMP_LOADGEN the load generator's binary (default loadgen/target/release/pubsub-loadgen)
#   COMP_OUT     the results file (default bench/results/<UTC time>-compression.jsonl; never overwritten)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$root/scripts/runtime.sh")"
lg="${COMP_LOADGEN:-$root/loadgen/target/release/pubsub-loadgen}"
secs="${COMP_SECONDS:-3}" rounds="${COMP_ROUNDS:-3}" conns="${COMP_CONNS:-16}" depth="${COMP_DEPTH:-16}"
out="${COMP_OUT:-$root/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-compression.jsonl}"
[ -e "$out" ] && { echo "compression_bench: $out exists" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
: > "$out"
dir="$(mktemp -d /tmp/apisix-pubsub-rs-comp.XXXXXX)"
mkdir -p "$dir/conf" "$dir/logs" "$dir/lua"
"$root/scripts/runtime.sh" --lua > "$dir/lua/pubsub_runtime.lua"
pin_server="" pin_client=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server="worker_cpu_affinity 01;"; pin_client="taskset -c 1"
fi
port=9481
cat > "$dir/conf/nginx.conf" <<CONF
$("$root/scripts/runtime.sh" --main-conf)
daemon off;
worker_processes 1;
$pin_server
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    lua_socket_log_errors off;
    lua_package_path "$root/bench/?.lua;$dir/lua/?.lua;$PUBSUB_LUA_PATH;";
    lua_package_cpath "$root/target/release/lib?.so;$PUBSUB_LUA_CPATH;";
    server {
        listen 127.0.0.1:$port;
        location = /native { content_by_lua_block { require("servers").native(2097152) } }
        location = /native_compressed { content_by_lua_block { require("servers").native_compressed(2097152, tonumber(ngx.var.arg_level)) } }
    }
}
CONF
. "$root/bench/nginx-instance.sh"
start_nginx "$dir"
trap 'kill -QUIT $nginx_master 2>/dev/null; wait $nginx_master 2>/dev/null || true' EXIT
for _ in $(seq 50); do ss -ltn | grep -q "127.0.0.1:$port " && break; sleep 0.1; done
cells="${COMP_CELLS:-bytes:16 json:1024 json:60000 random:1024 random:60000}"
for round in $(seq "$rounds"); do
    for cell in $cells; do
        payload="${cell%%:*}" state="${cell##*:}"
        for mode in ${COMP_MODES:-off on}; do
            path=/native flag="" extra=""
            case "$mode" in
                on) path=/native_compressed flag=--compress ;;
                on-l1) path="/native_compressed?level=1" flag=--compress ;;
                on-l6) path="/native_compressed?level=6" flag=--compress ;;
                on-each) path=/native_compressed flag=--compress-each ;;
                on-plain) path=/native_compressed flag=--compress extra="--compress-min 1048576" ;;
            esac
            $pin_client "$lg" --addr "127.0.0.1:$port" --path "$path" -c "$conns" -d "$depth" -s "$state" \
                --payload "$payload" $flag ${flag:+--compress-level "${COMP_CLIENT_LEVEL:-6}"} $extra -t "$secs" --server-pid "$nginx_worker" \
                --label "round $round $payload $state $mode" | sed "s/\"compress\":true/\"compress\":\"$mode\"/" >> "$out"
        done
    done
done
echo "compression_bench: $out"
python3 "$root/bench/compression_report.py" "$out"
