#!/usr/bin/env bash
# Worker memory of 10,000 idle connections (IDLE_CONNS), with permessage-deflate agreed against
# without: for each location a fresh nginx with one worker, `pubsub-loadgen subscribe` opening the
# connections (offering permessage-deflate for the compressed ones) and holding them idle for
# IDLE_SECONDS (default 5), the worker's RSS before, after and at its peak. One JSON line a run
# to IDLE_OUT (default bench/results/<UTC time>-compression-idle.jsonl).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$root/scripts/runtime.sh")"
lg="$root/loadgen/target/release/pubsub-loadgen"
conns="${IDLE_CONNS:-10000}" secs="${IDLE_SECONDS:-5}"
out="${IDLE_OUT:-$root/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-compression-idle.jsonl}"
[ -e "$out" ] && { echo "compression_idle: $out exists" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
: > "$out"
. "$root/bench/nginx-instance.sh"
port=9482
for case in plain compressed compressed_takeover; do
    dir="$(mktemp -d /tmp/apisix-pubsub-rs-idle.XXXXXX)"
    mkdir -p "$dir/conf" "$dir/logs"
    opts="{}" flag=""
    case "$case" in
        compressed) opts="{ compression = true }" flag=--offer-deflate ;;
        compressed_takeover) opts="{ compression = { server_no_context_takeover = false, client_no_context_takeover = false } }" flag=--offer-deflate ;;
    esac
    cat > "$dir/conf/nginx.conf" <<CONF
$("$root/scripts/runtime.sh" --main-conf)
daemon off;
worker_processes 1;
worker_rlimit_nofile 30000;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 25000; }
http {
    access_log off;
    lua_socket_log_errors off;
    lua_package_path "$root/lua/?.lua;$PUBSUB_LUA_PATH;;";
    lua_package_cpath "$root/target/release/lib?.so;$PUBSUB_LUA_CPATH;";
    server {
        listen 127.0.0.1:$port backlog=4096;
        location = /idle { content_by_lua_block { assert(require("apisix_pubsub_rs").new($opts)):wait() } }
    }
}
CONF
    start_nginx "$dir"
    for _ in $(seq 50); do ss -ltn | grep -q "127.0.0.1:$port " && break; sleep 0.1; done
    line=$("$lg" subscribe --addr "127.0.0.1:$port" --path /idle -c "$conns" -t "$secs" $flag --server-pid "$nginx_worker" || true)
    echo "{\"case\":\"$case\",\"connections\":$conns,\"result\":$line}" | tee -a "$out"
    kill -QUIT "$nginx_master"; wait "$nginx_master" 2>/dev/null || true
    sleep 1
done
echo "compression_idle: $out"
