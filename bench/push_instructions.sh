#!/usr/bin/env bash
# User-space instructions per fan-out delivery of one nginx worker, counted by callgrind: the
# deterministic figure behind `make bench-push`'s worker CPU per delivery (which moves with the
# neighbours on a shared machine). One message POSTed to bench/push_servers.lua's publisher reaches
# every subscriber (`pubsub-loadgen subscribe`, every push checked); the count covers a window in
# the middle of the run (subscribers connected, publishing going on) and is divided by the pushes
# queued in it (calls of session_push_message), so the publisher's POSTs are shared among them.
#
#   bench/push_instructions.sh
#
#   SUBSCRIBERS=1000 SIZE=16      the load
#   SUB_PATH=/sub                 the subscribers' path (/sub?direct=0: every push through the writer thread)
#   SECONDS_BEFORE=6 SECONDS_COUNTED=6   when the window starts (after the loadgen starts), its length
#   LIB_DIR=target/release        where libapisix_pubsub_rs.so is (compare builds)
#   TOP=15                        functions listed, by their own instructions
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$root/scripts/runtime.sh")"
subs="${SUBSCRIBERS:-1000}" size="${SIZE:-16}"
before="${SECONDS_BEFORE:-6}" counted="${SECONDS_COUNTED:-6}"
lib_dir="$(cd "${LIB_DIR:-$root/target/release}" && pwd)"
lg="$root/loadgen/target/release/pubsub-loadgen"
command -v valgrind >/dev/null || { echo "push_instructions: valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
dir="$(mktemp -d /tmp/apisix-pubsub-rs-push-instr.XXXXXX)"
mkdir -p "$dir/conf" "$dir/logs"
port=9481
# The bench's own configuration, in one process (callgrind follows no fork), with the library of
# LIB_DIR.
"$root/bench/push-nginx-conf.sh" native "$port" "$((2 * subs + 64))" \
    | sed -e 's/^master_process on;/master_process off;/' \
          -e "s#$root/target/release/lib?.so#$lib_dir/lib?.so#" > "$dir/conf/nginx.conf"
valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "$PUBSUB_NGINX" -p "$dir/" -c conf/nginx.conf \
    > "$dir/valgrind.log" 2>&1 &
vg=$!
trap 'kill -QUIT $vg 2>/dev/null; wait $vg 2>/dev/null || true' EXIT
for _ in $(seq 150); do ss -ltn | grep -q "127.0.0.1:$port " && break; sleep 0.2; done
"$lg" subscribe --addr "127.0.0.1:$port" --path "${SUB_PATH:-/sub}" --publish /pub --format native -c "$subs" -s "$size" \
    -t $((before + counted + 2)) > "$dir/loadgen.json" &
lgpid=$!
sleep "$before"
callgrind_control -z "$vg" >/dev/null
sleep "$counted"
callgrind_control -d "$vg" >/dev/null
wait "$lgpid" || { echo "push_instructions: the load generator failed: $(cat "$dir/loadgen.json")" >&2; exit 1; }
sleep 1
python3 "$root/bench/instructions.py" --per-call session_push_message "$dir"/callgrind.out.1 0 "${TOP:-15}" \
    "native fan-out, $subs subscribers, $size B, library $lib_dir"
echo "load generator: $(cat "$dir/loadgen.json")"
