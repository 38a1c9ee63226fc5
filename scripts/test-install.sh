#!/usr/bin/env bash
# `make test`'s install check: make install / make uninstall APISIX_DIR=... on a temp fake APISIX
# tree (apisix/core/pubsub.lua with a marker line), once with deps/lib and once with deps/lib64:
# after install the library is in the tree's cpath and the shim in place with the original kept;
# a second install keeps the first backup; after uninstall the original is back, byte for byte.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/apisix-pubsub-rs-install.XXXXXX)"
trap 'rm -rf "$work"' EXIT
fail() { echo "test-install: $1" >&2; exit 1; }
make_() { make -s -C "$root" --no-print-directory "$@" >/dev/null; }

for libdir in lib lib64; do
    apisix="$work/$libdir/apisix"
    mkdir -p "$apisix/apisix/core"
    [ "$libdir" = lib64 ] && mkdir -p "$apisix/deps/lib64/lua/5.1"
    printf -- '-- the original APISIX core.pubsub: marker %s\nreturn {}\n' "$libdir" > "$apisix/apisix/core/pubsub.lua"
    cp -p "$apisix/apisix/core/pubsub.lua" "$work/original.lua"
    cpath="$apisix/deps/$libdir/lua/5.1"

    make_ install APISIX_DIR="$apisix"
    make_ install APISIX_DIR="$apisix"
    cmp -s "$root/target/release/libapisix_pubsub_rs.so" "$cpath/apisix_pubsub_rs.so" ||
        fail "$libdir: the library is not at $cpath/apisix_pubsub_rs.so"
    cmp -s "$root/lua/apisix/core/pubsub.lua" "$apisix/apisix/core/pubsub.lua" ||
        fail "$libdir: apisix/core/pubsub.lua is not the shim"
    cmp -s "$work/original.lua" "$apisix/apisix/core/pubsub.lua.orig" ||
        fail "$libdir: the original is not kept as pubsub.lua.orig"

    make_ uninstall APISIX_DIR="$apisix"
    cmp -s "$work/original.lua" "$apisix/apisix/core/pubsub.lua" || fail "$libdir: uninstall did not restore the original"
    [ ! -e "$apisix/apisix/core/pubsub.lua.orig" ] || fail "$libdir: pubsub.lua.orig left behind"
    [ ! -e "$cpath/apisix_pubsub_rs.so" ] || fail "$libdir: the library left behind"
    echo "test-install: ok with deps/$libdir/lua/5.1"
done
# Not an APISIX tree: refused, nothing written.
mkdir -p "$work/empty"
if make -s -C "$root" --no-print-directory install APISIX_DIR="$work/empty" >/dev/null 2>&1; then
    fail "install into a tree without apisix/core/pubsub.lua succeeded"
fi
[ -z "$(ls -A "$work/empty")" ] || fail "a refused install wrote into the tree"
echo "test-install: ok, a directory that is not an APISIX tree is refused"
