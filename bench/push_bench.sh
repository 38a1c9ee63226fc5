#!/usr/bin/env bash
# `make bench-push`: push and fan-out, this module (native) against nchan on the same nginx.
# One nginx per server, one worker each (pinned to CPU 0 where taskset exists), the load generator
# (`pubsub-loadgen subscribe`, every push checked) on CPU 1; each cell starts fresh instances, and
# the servers take turns once per round, as in bench/bench.sh.
#
#   (a) push throughput on one connection: the native server's producer pushes as fast as send
#       accepts (bench/push_servers.lua flood), 16 B and 1 KiB; and, for both servers, one
#       subscriber fed by the HTTP publisher in a closed loop (4 messages in flight);
#   (b) fan-out: one message POSTed to the publisher location reaches every subscriber of the
#       worker, 1,000 and 10,000 idle subscribers; the next message is published once every
#       subscriber has the last one (BENCH_PUSH_WINDOW, default 1, messages in flight);
#   (c) idle latency: one subscriber, one message at a time: the native server's timer every 2 ms,
#       and, for both servers, a POST every 5 ms.
# Writes one JSON line per run to bench/results/push-<date>.jsonl, then tables (bench/push_report.py).
#
#   BENCH_SECONDS      seconds per run (default 5)
#   BENCH_ROUNDS       runs per cell and server (default 3); the report takes medians
#   BENCH_PUSH_SERVERS default "native nchan"
#   BENCH_PUSH_SUBSCRIBERS  fan-out sizes (default "1000 10000")
#   BENCH_PUSH_SIZES   payload sizes (default "16 1024")
#   BENCH_PUSH_WINDOW  fan-out: messages in flight (default 1)
#   BENCH_PUSH_CASES   which of "throughput fanout latency" (default all)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$root/scripts/runtime.sh")"
lg="$root/loadgen/target/release/pubsub-loadgen"
secs="${BENCH_SECONDS:-5}"
rounds="${BENCH_ROUNDS:-3}"
servers="${BENCH_PUSH_SERVERS:-native nchan}"
fanouts="${BENCH_PUSH_SUBSCRIBERS:-1000 10000}"
sizes="${BENCH_PUSH_SIZES:-16 1024}"
window="${BENCH_PUSH_WINDOW:-1}"
cases="${BENCH_PUSH_CASES:-throughput fanout latency}"
if [[ " $servers " == *" nchan "* ]] && [ ! -f /usr/share/nginx/modules/ngx_nchan_module.so ] \
   && [ ! -f /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
    echo "bench-push: nchan's module is missing (apt-get install libnginx-mod-nchan)" >&2
    exit 1
fi
mkdir -p "$root/bench/results"
out="$root/bench/results/push-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
dir="$(mktemp -d /tmp/apisix-pubsub-rs-bench-push.XXXXXX)"
pin_server="" pin_client=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server="worker_cpu_affinity 01;"; pin_client="taskset -c 1"
fi
# 10,000 subscribers and the publisher: as many descriptors as the hard limit allows, for the load
# generator and the worker alike.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile="$(ulimit -n)"
. "$root/bench/nginx-instance.sh"
masters=""
stop_servers() {
    for m in $masters; do kill -QUIT "$m" 2>/dev/null; wait "$m" 2>/dev/null || true; done
    masters=""
}
trap stop_servers EXIT
declare -A port worker fds
start_servers() {
    local p=9380 s pre
    for s in $servers; do
        pre="$dir/$s"
        mkdir -p "$pre/conf" "$pre/logs"
        "$root/bench/push-nginx-conf.sh" "$s" "$p" "$nofile" "$pin_server" > "$pre/conf/nginx.conf"
        # nchan is a module of Debian's nginx; native runs on the runtime scripts/runtime.sh decides.
        if [ "$s" = nchan ]; then start_nginx "$pre" /usr/sbin/nginx; else start_nginx "$pre"; fi
        masters="$masters $nginx_master"
        port[$s]=$p
        worker[$s]=$nginx_worker
        fds[$s]="$(ls "/proc/${worker[$s]}/fd" | wc -l)"
        p=$((p + 1))
    done
}
# run CASE SERVER ROUND SIZE SUBSCRIBERS LOADGEN-ARGS...: one loadgen run, its JSON line with the
# cell's keys added, appended to $out.
run() {
    local case=$1 s=$2 round=$3 size=$4 subs=$5 line
    shift 5
    line=$($pin_client "$lg" subscribe --addr "127.0.0.1:${port[$s]}" -s "$size" -c "$subs" -t "$secs" \
           --server-pid "${worker[$s]}" --label "$case $s c=$subs size=$size" "$@" || true)
    [ -n "$line" ] || line="{\"errors\":1,\"first_error\":\"the load generator printed nothing\"}"
    echo "${line%\}},\"case\":\"$case\",\"server\":\"$s\",\"round\":$round,\"subscribers\":$subs}" | tee -a "$out"
    # The next run starts once this one's connections are gone from the worker (10,000 closing
    # connections take a while, and would be the next run's load).
    for _ in $(seq 300); do
        [ "$(ls "/proc/${worker[$s]}/fd" | wc -l)" -le $((fds[$s] + 2)) ] && break
        sleep 0.1
    done
}
# Where a server's subscribers and publisher are, for a fresh channel (nchan keeps messages).
sub_args() { # server channel
    if [ "$1" = native ]; then echo "--path /sub --publish /pub --format native"
    else echo "--path /sub/$2 --publish /pub/$2 --format raw"; fi
}
echo "bench-push: $rounds rounds of ${secs}s per cell and server, fresh nginx per cell, results in $out"
for size in $sizes; do
    if [[ " $cases " == *" throughput "* ]]; then
        start_servers
        for round in $(seq "$rounds"); do
            [[ " $servers " == *" native "* ]] && run throughput-producer native "$round" "$size" 1 --path "/flood?size=$size" --format native
            for s in $servers; do
                # shellcheck disable=SC2046
                run throughput-publisher "$s" "$round" "$size" 1 $(sub_args "$s" "t${size}r$round") --window 4
            done
        done
        stop_servers
    fi
    if [[ " $cases " == *" fanout "* ]]; then
        for subs in $fanouts; do
            start_servers
            for round in $(seq "$rounds"); do
                for s in $servers; do
                    # shellcheck disable=SC2046
                    run fanout "$s" "$round" "$size" "$subs" $(sub_args "$s" "f${subs}s${size}r$round") --window "$window"
                done
            done
            stop_servers
        done
    fi
done
if [[ " $cases " == *" latency "* ]]; then
    start_servers
    for round in $(seq "$rounds"); do
        [[ " $servers " == *" native "* ]] && run latency-timer native "$round" 16 1 --path "/tick?size=16&interval_ms=2" --format native
        for s in $servers; do
            # shellcheck disable=SC2046
            run latency-publisher "$s" "$round" 16 1 $(sub_args "$s" "l16r$round") --rate 200
        done
    done
    stop_servers
fi
python3 "$root/bench/push_report.py" "$out"
