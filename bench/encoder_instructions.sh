#!/usr/bin/env bash
# Instructions per message of a sender compressing one payload (the entropy check, then
# deflate::encoder under 16 KiB), counted by callgrind: examples/deflate_loop run for 200 and
# for 200 + MESSAGES messages, the difference divided by MESSAGES (start-up and the payload's
# making cancel out). Deterministic, unlike time on a shared machine.
#
#   bench/encoder_instructions.sh [json|random] [size] [level]     (default: json 1024 1)
#   MESSAGES=2000  TOP=8 (functions listed, own instructions per message in the longer run)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
payload="${1:-json}" size="${2:-1024}" level="${3:-1}" n="${MESSAGES:-2000}"
command -v valgrind >/dev/null || { echo "encoder_instructions: valgrind is needed" >&2; exit 2; }
[ -n "${BIN:-}" ] || (cd "$root" && cargo build --release --example deflate_loop -q)
bin="${BIN:-$root/target/release/examples/deflate_loop}"
dir="$(mktemp -d /tmp/apisix-pubsub-rs-enc.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
count() {
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$1" "$bin" "$payload" "$size" "$level" "$1" > "$dir/out.$1" 2> "$dir/log.$1"
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$dir/log.$1"
}
a=$(count 200)
b=$(count $((200 + n)))
echo "$(cat "$dir/out.200")"
echo "$payload $size B level $level: $(( (b - a) / n )) instructions per message ($n messages)"
callgrind_annotate --inclusive=no "$dir/cg.$((200 + n))" 2>/dev/null | sed -n '/file:function/,$p' | sed -n '3,$p' | head -"${TOP:-8}" |
    awk -v n=$((200 + n)) '{ c = $1; gsub(",", "", c); sub(/^ *[0-9,]+ *\( *[0-9.]+%\) */, ""); sub(/ \[.*/, ""); sub(/^.*\/(src|library)\//, ""); printf "  %9d  %s\n", c / n, $0 }'
