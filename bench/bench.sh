#!/usr/bin/env bash
# `make bench`: one nginx per server, each with one worker (pinned to CPU 0 where taskset exists,
# and only one of them loaded at a time), the load generator on CPU 1, and the matrix
# connections x depth x state size run against each server in alternation. Each cell starts fresh
# nginx instances, a worker of its own per server, so a worker's RSS in a cell is that server's in
# that cell: not another server's, nor what an earlier cell left behind.
# Writes one JSON line per run to a new file, bench/results/<UTC time>.jsonl, then prints the
# BENCHMARKS tables and writes the plot beside it (<UTC time>.svg) with bench/report.py. It never
# overwrites a file: commit the runs BENCHMARKS.md cites (and only those) under bench/results/.
#
#   BENCH_OUT       the results file instead (refused if it or its .svg exists, unless FORCE=1)
#   BENCH_SECONDS   seconds per run (default 5)
#   BENCH_ROUNDS    runs per cell and server (default 3): the servers take turns once per round, and
#                   the report takes medians, so that a noisy moment on a shared machine skews one
#                   round, not the result
#   BENCH_SERVERS   which servers (default "native lua_framing floor"; also native_lua_handler,
#                   the module with a cmd_ping handler written in Lua; apisix_original is added
#                   when APISIX_DIR points at an APISIX checkout and PB_CPATH at a directory with
#                   lua-protobuf's built pb.so and its protoc.lua; neither is part of this repo)
#                   native_off and native_lua_handler_off are the same two served by the library in
#                   BENCH_OFF_LIB_DIR (a build without the metrics feature, to measure their cost)
#   BENCH_QUICK=1   a small matrix, for a smoke test
#   BENCH_CONNECTIONS, BENCH_DEPTHS, BENCH_STATES   override the matrix axes (space-separated)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$root/scripts/runtime.sh")"
lg="$root/loadgen/target/release/pubsub-loadgen"
secs="${BENCH_SECONDS:-5}"
rounds="${BENCH_ROUNDS:-3}"
servers="${BENCH_SERVERS:-native lua_framing floor}"
conns_list="1 64 512"; depths="1 16"; states="16 1024 60000 1048576"
if [ -n "${BENCH_QUICK:-}" ]; then conns_list="1 64"; depths="16"; states="16 60000"; fi
conns_list="${BENCH_CONNECTIONS:-$conns_list}"; depths="${BENCH_DEPTHS:-$depths}"; states="${BENCH_STATES:-$states}"
if [ -n "${APISIX_DIR:-}" ] && [ -n "${PB_CPATH:-}" ]; then
    servers="$servers apisix_original"
else
    echo "bench: apisix_original skipped (set APISIX_DIR to an APISIX checkout and PB_CPATH to the directory of a built pb.so)"
fi
mkdir -p "$root/bench/results"
out="${BENCH_OUT:-$root/bench/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
svg="${out%.jsonl}.svg"
for f in "$out" "$svg"; do
    if [ -e "$f" ] && [ -z "${FORCE:-}" ]; then
        echo "bench: $f exists; choose another BENCH_OUT, or FORCE=1 to overwrite it" >&2
        exit 2
    fi
done
: > "$out"
dir="$(mktemp -d /tmp/apisix-pubsub-rs-bench.XXXXXX)"
mkdir -p "$dir/lua/apisix/core" "$dir/lua/resty/websocket"
# bench/servers.lua learns the websocket library's name from here.
"$root/scripts/runtime.sh" --lua > "$dir/lua/pubsub_runtime.lua"
pin_server="" pin_client=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server="worker_cpu_affinity 01;"; pin_client="taskset -c 1"
fi
apisix_path=""
if [[ " $servers " == *" apisix_original "* ]]; then
    # APISIX's core.pubsub, with a stub apisix.core.log and, on Debian, resty.websocket.* aliased
    # to nginx.websocket.*.
    printf 'local l = {}\nfor _, k in ipairs({"error", "warn", "info", "debug"}) do\n  local lv = ngx[k:upper()] or ngx.ERR\n  l[k] = function(...) ngx.log(lv, ...) end\nend\nreturn l\n' > "$dir/lua/apisix/core/log.lua"
    if [ "$PUBSUB_WEBSOCKET" != resty.websocket ]; then
        for m in server client protocol; do echo "return require('$PUBSUB_WEBSOCKET.$m')" > "$dir/lua/resty/websocket/$m.lua"; done
    fi
    apisix_path="$APISIX_DIR/?.lua;$PB_CPATH/?.lua;"
fi
ulimit -n 16384 || true
masters=""
stop_servers() {
    for m in $masters; do kill -QUIT "$m" 2>/dev/null; wait "$m" 2>/dev/null || true; done
    masters=""
}
trap stop_servers EXIT
declare -A port worker
start_servers() {
  local p=9280 s pre master
  for s in $servers; do
    pre="$dir/$s"
    mkdir -p "$pre/conf" "$pre/logs"
    lib_dir="$root/target/release"
    case "$s" in *_off) lib_dir="${BENCH_OFF_LIB_DIR:?bench: $s needs BENCH_OFF_LIB_DIR}" ;; esac
    # APISIX compiles its proto from <nginx prefix>/apisix/include/apisix/model at run time.
    if [ "$s" = apisix_original ]; then
        mkdir -p "$pre/apisix" && ln -sfn "$APISIX_DIR/apisix/include" "$pre/apisix/include"
    fi
    cat > "$pre/conf/nginx.conf" <<CONF
$("$root/scripts/runtime.sh" --main-conf)
worker_processes 1;
$pin_server
worker_rlimit_nofile 8192;
daemon off;
master_process on;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    lua_socket_log_errors off;
    lua_package_path "$dir/lua/?.lua;$apisix_path$root/bench/?.lua;$PUBSUB_LUA_PATH;";
    lua_package_cpath "$lib_dir/lib?.so;${PB_CPATH:+$PB_CPATH/?.so;}$PUBSUB_LUA_CPATH;";
    server {
        listen 127.0.0.1:$p backlog=4096;
        location = /native { content_by_lua_block { require("servers").native(tonumber(ngx.var.arg_max)) } }
        location = /native_lua_handler { content_by_lua_block { require("servers").native_lua_handler(tonumber(ngx.var.arg_max)) } }
        location = /native_off { content_by_lua_block { require("servers").native(tonumber(ngx.var.arg_max)) } }
        location = /native_lua_handler_off { content_by_lua_block { require("servers").native_lua_handler(tonumber(ngx.var.arg_max)) } }
        location = /lua_framing { content_by_lua_block { require("servers").lua_framing(tonumber(ngx.var.arg_max)) } }
        location = /floor { content_by_lua_block { require("servers").floor(tonumber(ngx.var.arg_max)) } }
        location = /apisix_original {
            content_by_lua_block {
                local pubsub, err = require("apisix.core.pubsub").new()
                if not pubsub then ngx.log(ngx.ERR, err) return ngx.exit(400) end
                pubsub:wait()
            }
        }
    }
}
CONF
    "$PUBSUB_NGINX" -p "$pre/" -c conf/nginx.conf &
    master=$!
    masters="$masters $master"
    for _ in $(seq 50); do pgrep -P "$master" >/dev/null && break; sleep 0.1; done
    sleep 0.3
    port[$s]=$p
    worker[$s]="$(pgrep -P "$master" | head -1)"
    p=$((p + 1))
  done
}
echo "bench: $rounds rounds of ${secs}s per cell and server, fresh nginx per cell, results in $out"
for state in $states; do
  for c in $conns_list; do
    for d in $depths; do
      inflight=$((c * d * state))
      start_servers
      for round in $(seq "$rounds"); do
        for s in $servers; do
          label="$s c=$c d=$d state=$state"
          skip=""
          if [ "$inflight" -gt $((256 * 1024 * 1024)) ]; then
              skip="over 256 MiB in flight on a 24 GiB, 2-core machine"
          elif [ "$s" = apisix_original ] && [ "$state" -gt 60000 ]; then
              skip="over lua-resty-websocket's 65535-byte frame limit, which APISIX does not raise"
          fi
          if [ -n "$skip" ]; then
              [ "$round" = 1 ] && echo "{\"label\":\"$label\",\"server\":\"$s\",\"connections\":$c,\"depth\":$d,\"state\":$state,\"skipped\":\"$skip\"}" | tee -a "$out"
              continue
          fi
          max=$(( state > 60000 ? 2 * 1024 * 1024 : 65535 ))
          check=full; path="/$s?max=$max"
          if [ "$s" = floor ]; then
              # The loadgen makes every request of a run the same size; the floor counts frames by it.
              check=length; path="/floor?max=$max&state=$state&frame=$("$lg" -s "$state" --frame-size)"
          fi
          line=$($pin_client "$lg" --addr "127.0.0.1:${port[$s]}" --path "$path" -c "$c" -d "$d" -s "$state" \
                 -t "$secs" --server-pid "${worker[$s]}" --check "$check" --label "$label" || true)
          echo "${line%\}},\"server\":\"$s\",\"round\":$round}" | tee -a "$out"
        done
      done
      stop_servers
    done
  done
done
python3 "$root/bench/report.py" "$out" --svg "$svg"
