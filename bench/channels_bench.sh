#!/usr/bin/env bash
# `make bench-channels`: channels over Redis, this module (native) against nchan using Redis
# (nchan_use_redis), side by side in the same run on one redis-server (appendonly yes,
# appendfsync BENCH_CHANNELS_FSYNC, default everysec: with "always", as the suites run, every
# publish waits for this machine's fsync, which then is what both sides measure). One publisher POSTs to /pub/<channel>
# (channels.publish: XADD; nchan's HTTP publisher), 1,000 and 10,000 WebSocket subscribers of that
# channel (`pubsub-loadgen subscribe`, every message checked: order, loss, duplicates), over 1
# and 2 workers; the next message is published once every subscriber has the last one. Reported:
# publish-to-delivery p50/p99, deliveries/s, the workers' CPU and Redis's CPU. Each cell starts
# fresh nginx instances and a fresh channel; the servers take turns once per round.
# Writes one JSON line per run to bench/results/channels-<date>.jsonl, then tables
# (bench/push_report.py reads them too).
#
#   BENCH_SECONDS      seconds per run (default 5)
#   BENCH_ROUNDS       runs per cell and server (default 3)
#   BENCH_CHANNELS_SERVERS      default "native nchan"
#   BENCH_CHANNELS_SUBSCRIBERS  default "1000 10000"
#   BENCH_CHANNELS_WORKERS      default "1 2"
#   BENCH_CHANNELS_SIZE         payload bytes (default 64)
#   BENCH_CHANNELS_FSYNC        Redis appendfsync: everysec (default), always, no
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$root/scripts/runtime.sh")"
lg="$root/loadgen/target/release/pubsub-loadgen"
secs="${BENCH_SECONDS:-5}"
rounds="${BENCH_ROUNDS:-3}"
servers="${BENCH_CHANNELS_SERVERS:-native nchan}"
fanouts="${BENCH_CHANNELS_SUBSCRIBERS:-1000 10000}"
workers_list="${BENCH_CHANNELS_WORKERS:-1 2}"
size="${BENCH_CHANNELS_SIZE:-64}"
redis_bin="$(command -v redis-server || true)"
[ -n "$redis_bin" ] || { echo "bench-channels: redis-server is missing (make deps)" >&2; exit 1; }
mkdir -p "$root/bench/results"
out="$root/bench/results/channels-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
dir="$(mktemp -d /tmp/apisix-pubsub-rs-bench-channels.XXXXXX)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile="$(ulimit -n)"
. "$root/bench/nginx-instance.sh"

redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/redis.conf" <<CONF
port $redis_port
bind 127.0.0.1
dir $dir
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
appendonly yes
appendfsync ${BENCH_CHANNELS_FSYNC:-everysec}
save ""
maxclients 20000
CONF
"$redis_bin" "$dir/redis.conf"
for _ in $(seq 100); do [ -s "$dir/redis.pid" ] && redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis_pid="$(cat "$dir/redis.pid")"

masters=""
stop_servers() {
    for m in $masters; do kill -QUIT "$m" 2>/dev/null; wait "$m" 2>/dev/null || true; done
    masters=""
}
cleanup() { stop_servers; kill "$redis_pid" 2>/dev/null || true; }
trap cleanup EXIT
declare -A port pids
start_servers() { # workers
    local p=9480 s pre
    for s in $servers; do
        pre="$dir/$s"
        rm -rf "$pre"; mkdir -p "$pre/conf" "$pre/logs"
        "$root/bench/channels-nginx-conf.sh" "$s" "$p" "$nofile" "$1" "$redis_port" > "$pre/conf/nginx.conf"
        if [ "$s" = nchan ]; then start_nginx "$pre" /usr/sbin/nginx; else start_nginx "$pre"; fi
        masters="$masters $nginx_master"
        port[$s]=$p
        pids[$s]="$(pgrep -P "$nginx_master" | paste -sd,)"
        p=$((p + 1))
    done
}
run() { # server round subscribers workers channel
    local s=$1 round=$2 subs=$3 workers=$4 ch=$5 line args
    if [ "$s" = native ]; then args="--path /sub --format channel --channel $ch"
    else args="--path /sub/$ch --format raw"; fi
    # shellcheck disable=SC2086
    line=$("$lg" subscribe --addr "127.0.0.1:${port[$s]}" -s "$size" -c "$subs" -t "$secs" $args \
           --publish "/pub/$ch" --window 1 --server-pid "${pids[$s]}" --watch-pid "redis=$redis_pid" \
           --label "channels $s c=$subs workers=$workers" || true)
    [ -n "$line" ] || line="{\"errors\":1,\"first_error\":\"the load generator printed nothing\"}"
    echo "${line%\}},\"case\":\"channels-w$workers\",\"server\":\"$s\",\"round\":$round,\"subscribers\":$subs,\"workers\":$workers}" | tee -a "$out"
    sleep 2
}
echo "bench-channels: $rounds rounds of ${secs}s per cell and server, redis-server on $redis_port, results in $out"
for workers in $workers_list; do
    for subs in $fanouts; do
        start_servers "$workers"
        for round in $(seq "$rounds"); do
            for s in $servers; do
                run "$s" "$round" "$subs" "$workers" "c${subs}w${workers}r${round}"
            done
        done
        stop_servers
    done
done
python3 "$root/bench/push_report.py" "$out" || true
