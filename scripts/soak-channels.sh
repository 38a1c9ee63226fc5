#!/usr/bin/env bash
# Step 5 of `make soak` (scripts/soak.sh), runnable alone: channels through Redis.
#
# SOAK_CHANNEL_MESSAGES (1,000,000) acknowledged publishes POSTed to one channel
# (channels.publish, bench/channels_servers.lua) with SOAK_CHANNEL_PUBLISHERS (64) in flight at once,
# and pushed to SOAK_CHANNEL_SUBSCRIBERS (100) subscribers of it on one nginx worker
# (127.0.0.1:9182), while Redis (appendonly yes, appendfsync always; 127.0.0.1:9183) goes away and
# comes back SOAK_CHANNEL_RESTARTS (2) times, evenly spread over the messages: the first time by
# SHUTDOWN, the second by SIGKILL (a crash: with appendfsync always, what Redis acknowledged is on
# disk), and so on in turn.
#
# Every publish waits for Redis's fsync, but Redis fsyncs once per event-loop iteration for all the
# writes of that iteration (group commit): with 64 publishes in flight each fsync serves many.
# The load generator keeps a ledger (loadgen/src/ledger.rs): a publish that fails (Redis away) is
# not sent again but counted as unacknowledged; "lost" is an acknowledged publish a subscriber did
# not get; duplicates are counted by counter and by stream id; order is checked on the ids; the
# deliveries of unacknowledged publishes that Redis stored all the same (their answer lost in the
# restart) are counted apart, as neither lost nor duplicated.
#
# Passes when every acknowledged message reached every subscriber once and in order, no delivery
# is bad, Redis restarted as many times as asked, nginx logged nothing at error level, and the
# worker's RSS stayed flat (sampled every 2 s: the second half of the run peaks within 10 % + 2 MiB
# of the first half's peak). Prints the load generator's JSON line
# (and, with SOAK_CHANNEL_RESULT=FILE, appends it there) and a summary.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$root/scripts/runtime.sh")"
. "$root/bench/nginx-instance.sh"
lg="$root/loadgen/target/release/pubsub-loadgen"
n="${SOAK_CHANNEL_MESSAGES:-1000000}"
subs="${SOAK_CHANNEL_SUBSCRIBERS:-100}"
publishers="${SOAK_CHANNEL_PUBLISHERS:-64}"
restarts="${SOAK_CHANNEL_RESTARTS:-2}"
port=9182 rport=9183
cdir="$(mktemp -d /tmp/apisix-pubsub-rs-soak-channels.XXXXXX)"
mkdir -p "$cdir/conf" "$cdir/logs"
cat > "$cdir/redis.conf" <<CONF
port $rport
bind 127.0.0.1
dir $cdir
daemonize yes
pidfile $cdir/redis.pid
logfile $cdir/redis.log
appendonly yes
appendfsync always
save ""
CONF
redis_up() {
    redis-server "$cdir/redis.conf"
    for _ in $(seq 200); do [ "$(redis-cli -p $rport ping 2>/dev/null)" = PONG ] && return 0; sleep 0.05; done
    return 1
}
nginx_master="" restarter=""
sampler=""
trap 'set +e; kill $restarter $sampler 2>/dev/null; kill -QUIT $nginx_master 2>/dev/null; wait $nginx_master 2>/dev/null;
      [ -f "$cdir/redis.pid" ] && kill "$(cat "$cdir/redis.pid")" 2>/dev/null || true; echo "channels soak logs: $cdir"' EXIT
redis_up
"$root/bench/channels-nginx-conf.sh" native $port 4096 1 $rport > "$cdir/conf/nginx.conf"
start_nginx "$cdir"
worker=$nginx_worker
# The restarts (each written to $cdir/restarts), when the stream has taken 1/(restarts+1), 2/(restarts+1)... of the messages.
(
    : > "$cdir/restarts"
    for part in $(seq "$restarts"); do
        while :; do
            added="$(redis-cli -p $rport XINFO STREAM bench:soak 2>/dev/null | awk 'f { print; exit } /^entries-added$/ { f = 1 }')"
            [ -n "$added" ] && [ "$added" -ge $((n * part / (restarts + 1))) ] && break
            sleep 0.2
        done
        if [ $((part % 2)) = 1 ]; then
            redis-cli -p $rport shutdown >/dev/null 2>&1 || true
            how=SHUTDOWN
        else
            kill -9 "$(cat "$cdir/redis.pid")"
            how=SIGKILL
        fi
        for _ in $(seq 100); do redis-cli -p $rport ping >/dev/null 2>&1 || break; sleep 0.05; done
        echo "channels soak: Redis stopped ($how) after $added entries" >&2
        sleep 1
        redis_up
        echo "channels soak: Redis back" >&2
        echo "$how" >> "$cdir/restarts"
    done
) &
restarter=$!
# The worker's RSS every 2 s (seconds since the start, KiB), for the flatness check.
(
    t0=$(date +%s)
    while kill -0 "$worker" 2>/dev/null; do
        echo "$(( $(date +%s) - t0 )) $(awk '/^VmRSS:/ { print $2 }' /proc/$worker/status)" >> "$cdir/rss"
        sleep 2
    done
) &
sampler=$!
line="$("$lg" subscribe --addr 127.0.0.1:$port --path /sub --format channel --channel soak \
        -c "$subs" -s 64 --publish /pub/soak --publishers "$publishers" --window "${SOAK_CHANNEL_WINDOW:-4096}" \
        --messages "$n" -t 100000 --drain 60 --server-pid "$worker" --label channels-soak || true)"
echo "$line"
[ -n "${SOAK_CHANNEL_RESULT:-}" ] && echo "$line" >> "$SOAK_CHANNEL_RESULT"
ok=1
kill "$sampler" 2>/dev/null || true
# A run that ended early leaves the restarter waiting for entries that never come: it gets 30 s
# to finish a restart under way, then goes (the restarts it made are counted below).
for _ in $(seq 300); do kill -0 "$restarter" 2>/dev/null || break; sleep 0.1; done
kill "$restarter" 2>/dev/null || true
wait "$restarter" 2>/dev/null || true
restarter=""
kill -0 "$worker" || ok=0
# nginx itself logs at error level each Redis connection reset (on a read or a write) or refused
# while Redis is away (the publishes in flight, the reader): those are counted apart; anything
# else fails the step.
errors="$(grep -E '\[(error|crit|alert|emerg)\]' "$cdir/logs/error.log" \
          | grep -c -v -E '(recv|send|writev|connect)\(\) failed \((104: Connection reset by peer|111: Connection refused)\)' || true)"
resets="$(grep -c -E '\[error\] .*(recv|send|writev|connect)\(\) failed \((104: Connection reset by peer|111: Connection refused)\)' "$cdir/logs/error.log" || true)"
done_restarts="$(wc -l < "$cdir/restarts" 2>/dev/null || echo 0)"
LINE="$line" N="$n" RESTARTS="$restarts" DONE="$done_restarts" ERRORS="$errors" RESETS="$resets" RSS="$cdir/rss" python3 - <<'PY' || ok=0
import json, os, sys
r = json.loads(os.environ["LINE"])
n, restarts, done, errors = (int(os.environ[k]) for k in ("N", "RESTARTS", "DONE", "ERRORS"))
conn, peak, after = r["server_rss_kib_connected"], r["server_rss_kib_peak"], r["server_rss_kib_after"]
print(f"channels-soak: {r['published']} acknowledged messages ({r['publish_failed']} publishes failed while Redis "
      f"was away, {r['publish_attempts']} sent; {r['publishers']} in flight) to {r['connections']} subscribers in "
      f"{r['seconds']:.0f} s ({r['published'] / r['seconds']:.0f} publishes/s): {r['deliveries']} deliveries, "
      f"lost {r['lost']}, duplicated {r['duplicated']}, out of order {r['out_of_order']}, bad {r['bad']}, "
      f"errors {r['errors']}; deliveries of unacknowledged publishes {r['unacked_delivered']}; Redis restarts "
      f"{done} of {restarts}; worker RSS {r['server_rss_kib_before']} KiB before, {conn} KiB connected, peak "
      f"{peak} KiB, after {after} KiB; error-level lines in nginx's log: {errors}, besides "
      f"{os.environ['RESETS']} of Redis connections reset or refused while it was away")
ok = (r["published"] == n and r["lost"] == 0 and r["duplicated"] == 0 and r["out_of_order"] == 0
      and r["bad"] == 0 and r["errors"] == 0 and done == restarts)
# Flat: the samples of the second half of the run peak no higher than 10 % + 2 MiB above those of
# the first half (the worker's heap settles early on, and must not keep growing with the messages).
samples = [int(v) for _, v in (l.split() for l in open(os.environ["RSS"]) if len(l.split()) == 2)]
half = len(samples) // 2
first, second = max(samples[:half] or [0]), max(samples[half:] or [0])
print(f"  worker RSS sampled every 2 s ({len(samples)} samples): peak {first} KiB in the first half of the run, "
      f"{second} KiB in the second")
# (A run too short for two samples a half is no soak: it fails.)
ok = ok and half > 0 and second <= first * 1.10 + 2048 and errors == 0
print("channels-soak:", "passed" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
kill -QUIT "$nginx_master"; wait "$nginx_master" 2>/dev/null || true
nginx_master=""
redis-cli -p $rport shutdown nosave >/dev/null 2>&1 || true
[ "$ok" = 1 ]
