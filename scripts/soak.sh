#!/usr/bin/env bash
# `make soak`: the long reliability runs against one nginx worker on 127.0.0.1:9180.
#   1. 10,000 connect/ping/close cycles (half close properly, half drop the socket);
#   2. load: 1,000 concurrent connections exchanging pings for 30 s, every reply checked;
#   3. soak: 1,000,000 pings over 64 connections; worker RSS after a 100,000-message warm-up and
#      at the end.
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
[ "$errors" = "$((cycles / 2))" ] && [ "$dropped" = "$errors" ]
