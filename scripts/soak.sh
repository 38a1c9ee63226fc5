#!/usr/bin/env bash
# `make soak`: the long reliability runs against one nginx worker on 127.0.0.1:9180.
#   1. 10,000 connect/ping/close cycles (half close properly, half drop the socket);
#   2. load: 1,000 concurrent connections exchanging pings for 30 s, every reply checked;
#   3. soak: 1,000,000 pings over 64 connections; worker RSS after a 100,000-message warm-up and
#      at the end.
#   4. push to clients that never read: 1,000 connections with max_queue_bytes 64 KiB and
#      on_full = "error", a producer (POSTs to bench/push_servers.lua's fan-out location, each push
#      encoded per connection) pushing 1 KiB to all of them 50 times a second for 60 s, on a second
#      worker (127.0.0.1:9181; kernel send buffers fixed at 16 KiB and the clients' receive
#      buffers at 4 KiB, so that the worker's queues fill within a second). Worker RSS before, with
#      the connections open, at its peak and after must stay within (limit + the measured fixed
#      cost of a connection) x 1,000 + the baseline; the fixed cost is measured by a control run
#      before it, the same in all but queues that hold one write's worth (max_queue_bytes 5120): its
#      peak per connection less those 5 KiB (both collect the Lua heap once their clients are connected,
#      so that the collector's threshold is the same in both). No error-level line; a fresh client
#      is served after each run. Then the same for 100 slow readers
#      (4 KiB every 100 ms, against 50 KiB/s of pushes: queues that never quite empty) for 30 s,
#      each refused push missed by its subscriber and nothing else.
#   5. channels through Redis: 1,000,000 messages to 100 subscribers with Redis restarted twice
#      (scripts/soak-channels.sh): zero lost, zero duplicated, flat RSS.
# Prints the JSON line of each run; exits non-zero on any error or if the worker died.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$root/scripts/runtime.sh")"
lg="$root/loadgen/target/release/pubsub-loadgen"
dir="$(mktemp -d /tmp/apisix-pubsub-rs-soak.XXXXXX)"
mkdir -p "$dir/conf" "$dir/logs"
"$root/scripts/nginx-conf.sh" 9180 4096 warn logs/error.log > "$dir/conf/nginx.conf"
ulimit -n 16384 || true
"$PUBSUB_NGINX" -p "$dir/" -c conf/nginx.conf &
master=$!
trap 'kill -QUIT $master 2>/dev/null; wait $master 2>/dev/null; echo "logs: $dir"' EXIT
for _ in $(seq 50); do [ -f "$dir/logs/nginx.pid" ] && pgrep -P "$master" >/dev/null && break; sleep 0.1; done
worker="$(pgrep -P "$master" | head -1)"
run() { "$lg" --addr 127.0.0.1:9180 --server-pid "$worker" "$@"; }
run --label cycles --cycles "${SOAK_CYCLES:-10000}"
run --label load -c "${SOAK_LOAD_CONNECTIONS:-1000}" -d 1 -t "${SOAK_LOAD_SECONDS:-30}"
run --label warm-up -c 64 -d 16 --messages 100000
run --label soak -c 64 -d 16 --messages "${SOAK_MESSAGES:-1000000}"
kill -0 "$worker"
# Every other cycle drops its socket without a closing handshake: exactly one error line each,
# and nothing else at error level or worse.
cycles="${SOAK_CYCLES:-10000}"
errors="$(grep -c -E '\[(error|crit|alert|emerg)\]' "$dir/logs/error.log" || true)"
dropped="$(grep -c 'fatal error in pubsub websocket server, err: failed to receive the first 2 bytes: closed' "$dir/logs/error.log" || true)"
echo "worker $worker alive; error-level lines: $errors, of which dropped connections: $dropped (expected $((cycles / 2)))"
ok=1
[ "$errors" = "$((cycles / 2))" ] && [ "$dropped" = "$errors" ] || ok=0

# 4. Push to connections that never read, then to slow readers, each on a fresh worker.
. "$root/bench/nginx-instance.sh"
limit="${SOAK_PUSH_QUEUE:-65536}"
# The control of each push step: the same clients, producer and seconds, and queues that hold one
# write's worth (four pushes of 1,039 bytes on the wire; the queue's writes carry up to 4,224
# bytes): what a connection costs besides its queue, measured, with nginx's send buffer of a
# connection that is written to as large as in the run (it follows the largest write: a control
# that held one push wrote 1 KiB at a time, and a slow reader of the run cost 1-2 KiB more for it).
control_limit=5120
pmaster=""
trap 'kill -QUIT $master $pmaster 2>/dev/null; wait $master $pmaster 2>/dev/null; echo "logs: $dir"' EXIT
# http_get HOST:PORT/PATH: the body of a GET (python3, which the checks below use anyway).
http_get() {
    python3 -c 'import sys, urllib.request as u
print(u.build_opener(u.ProxyHandler({})).open("http://" + sys.argv[1], timeout=2).read().decode())' "$1" 2>/dev/null
}
# push_run LABEL LIMIT CONNECTIONS SECONDS LOADGEN-ARGS...: one push run on a fresh worker and a
# fresh client after it; sets push_line (its JSON line) and push_errors (error-level lines); sets
# ok=0 when the fresh client is not served or the worker died.
push_run() {
    local label=$1 qlimit=$2 n=$3 secs=$4 pdir
    shift 4
    pdir="$dir/$label"
    mkdir -p "$pdir/conf" "$pdir/logs"
    "$root/bench/push-nginx-conf.sh" native 9181 4096 "" "sndbuf=16k" > "$pdir/conf/nginx.conf"
    start_nginx "$pdir"
    pmaster=$nginx_master pworker=$nginx_worker
    # The module loaded and one connection served first, so that the baseline is a working worker's.
    "$lg" --addr 127.0.0.1:9181 --path /sub --server-pid "$pworker" --label "$label-warm-up" --messages 1000
    "$lg" subscribe --addr 127.0.0.1:9181 --path "/sub?max_queue=$qlimit&on_full=error" --publish "/pub?shared=0" \
        --rcvbuf 4096 -c "$n" -s 1024 --rate 50 -t "$secs" --server-pid "$pworker" --label "$label" "$@" > "$pdir/line.json" &
    local lgpid=$!
    # Once every client is connected, one full collection of the worker's Lua heap: the collector's
    # next threshold (twice the heap it leaves) is then the same in the control and the run. Without
    # it, each run's threshold was set by where a cycle fell among its 1,000 connects (7.2 against
    # 9.4 MB in one pair), which alone moved the peaks 2 MB apart.
    for _ in $(seq 200); do
        http_get 127.0.0.1:9181/stats | grep -q "\"subscribers\":$n," && break
        sleep 0.05
    done
    http_get "127.0.0.1:9181/stats?gc=1" > /dev/null || true
    wait "$lgpid" || true
    push_line="$(cat "$pdir/line.json")"
    echo "$push_line"
    push_errors="$(grep -c -E '\[(error|crit|alert|emerg)\]' "$pdir/logs/error.log" || true)"
    "$lg" --addr 127.0.0.1:9181 --path /sub --server-pid "$pworker" --label "$label-fresh-client" --messages 1000 || ok=0
    kill -0 "$pworker" || ok=0
    kill -QUIT "$pmaster"; wait "$pmaster" 2>/dev/null || true
}
# push_step LABEL CONNECTIONS SECONDS LOADGEN-ARGS...: the control run, the run, and the bound
# checked; sets ok=0 on a failure.
push_step() {
    local label=$1 n=$2 secs=$3 control control_errors
    shift 3
    push_run "$label-control" "$control_limit" "$n" "$secs" "$@"
    control="$push_line" control_errors="$push_errors"
    push_run "$label" "$limit" "$n" "$secs" "$@"
    LINE="$push_line" CONTROL="$control" LIMIT="$limit" CONTROL_LIMIT="$control_limit" \
    ERRORS="$((push_errors + control_errors))" python3 - <<'PY' || ok=0
import json, os, sys
r, c = json.loads(os.environ["LINE"]), json.loads(os.environ["CONTROL"])
n, limit, errors = r["connections"], int(os.environ["LIMIT"]), int(os.environ["ERRORS"])
climit = int(os.environ["CONTROL_LIMIT"])
base, conn, peak, after = (r[f"server_rss_kib_{k}"] for k in ("before", "connected", "peak", "after"))
idle = (conn - base) / n
# A connection's fixed cost: the control's peak per connection over its baseline, less all its
# queue may hold. It counts what serving the same pushes costs besides the queue: the Lua heap's
# share (the collector's headroom over the live heap included), nginx's buffers of a stalled
# connection, the encoder's spare buffer.
fixed = (c["server_rss_kib_peak"] - c["server_rss_kib_before"]) / n - climit / 1024
bound = (limit / 1024 + fixed) * n + base
print(f"{r['label']}: {n} connections, max_queue_bytes {limit}: worker RSS baseline {base} KiB, "
      f"{conn} KiB with the connections open ({idle:.1f} KiB each, idle), peak {peak} KiB, after {after} KiB; "
      f"control (max_queue_bytes {climit}): peak {c['server_rss_kib_peak']} KiB over a baseline of "
      f"{c['server_rss_kib_before']} KiB, fixed cost {fixed:.1f} KiB a connection; "
      f"bound (limit + fixed) x {n} + baseline = {bound:.0f} KiB; {r['published']} publishes, {r['pushed']} pushes "
      f"queued, {r['refused_full']} refused with queue full, {r['refused_closed']} closed; error-level lines: {errors}")
ok = peak <= bound and r["refused_full"] > 0 and r["refused_closed"] == 0 and errors == 0 and r["errors"] == 0
ok = ok and c["refused_full"] > 0 and c["errors"] == 0
if r["lost"] is not None:
    # A reader: every push refused is one its subscriber misses, and nothing else is missing.
    print(f"  delivered {r['deliveries']}, missed {r['lost']}, duplicated {r['duplicated']}, "
          f"out of order {r['out_of_order']}, bad {r['bad']}")
    ok = ok and r["lost"] == r["refused_full"] and r["duplicated"] == r["out_of_order"] == r["bad"] == 0
print(f"{r['label']}:", "within bounds" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
}
push_step push-no-read "${SOAK_PUSH_CONNECTIONS:-1000}" "${SOAK_PUSH_SECONDS:-60}" --no-read
# Slow readers: 4 KiB every 100 ms against 50 KiB/s of pushes, so their queues never empty.
push_step push-slow-reader "${SOAK_SLOW_CONNECTIONS:-100}" "${SOAK_SLOW_SECONDS:-30}" --read-pause 100

# 5. Channels through Redis: scripts/soak-channels.sh (its head says how): SOAK_CHANNEL_MESSAGES
#    (1,000,000) acknowledged publishes, 64 in flight, to SOAK_CHANNEL_SUBSCRIBERS (100)
#    subscribers while Redis (appendonly yes, appendfsync always) is stopped and started again
#    twice; every acknowledged message to every subscriber once and in order, flat RSS. About ten
#    minutes here.
"$root/scripts/soak-channels.sh" || ok=0
[ "$ok" = 1 ]
