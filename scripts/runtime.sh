#!/usr/bin/env bash
# The one place that decides which nginx runtime this project runs on: the suites (t/Pubsub.pm),
# make run / soak / bench / instructions / valgrind and the Makefile's package lists all ask it.
#
# Usage: scripts/runtime.sh            shell assignments, for eval "$(scripts/runtime.sh)":
#          PUBSUB_RUNTIME       openresty (ngx_lua built into nginx) or debian (ngx_lua loaded)
#          PUBSUB_NGINX         the nginx binary
#          PUBSUB_LOAD_MODULES  module files to load_module, space-separated (none when built in)
#          PUBSUB_LUA_PATH      lua_package_path entries to put before ";;", each ending in ";", or
#                               nothing (never a Debian one: /usr/share/lua/5.1 ahead of ";;" would
#                               shadow OpenResty's resty.core); write "your/?.lua;$PUBSUB_LUA_PATH;"
#          PUBSUB_LUA_CPATH     the same for lua_package_cpath
#          PUBSUB_WEBSOCKET     the lua-resty-websocket modules' prefix: resty.websocket on OpenResty,
#                               nginx.websocket in Debian's lua-nginx-websocket
#        scripts/runtime.sh --main-conf   the top of an nginx.conf: the load_module lines, and
#                                         `user root;` when run as root
#        scripts/runtime.sh --lua         a Lua module returning { runtime = ..., websocket = ... }
#        scripts/runtime.sh --kind        openresty or debian
#
# The runtime, first match wins:
#   TEST_NGINX_BINARY   that nginx (Test::Nginx's own variable: alone, it suffices for the suites)
#   OPENRESTY_PREFIX    $OPENRESTY_PREFIX/nginx/sbin/nginx, with $OPENRESTY_PREFIX/lualib
#   an openresty on PATH, then an nginx on PATH, then /usr/sbin/nginx (Debian's packages)
# ngx_lua counts as built in when `nginx -V` shows it added with --add-module (lua-nginx-module,
# or ngx_lua-x.y.z in an OpenResty bundle); then nothing is loaded. Otherwise Debian's ndk and lua
# modules are. TEST_NGINX_LOAD_MODULES, when set (even empty), overrides the modules either way.
set -euo pipefail

nginx="" prefix="${OPENRESTY_PREFIX:-}"
if [ -n "${TEST_NGINX_BINARY:-}" ]; then
    nginx="$TEST_NGINX_BINARY"
elif [ -n "$prefix" ]; then
    nginx="$prefix/nginx/sbin/nginx"
    [ -x "$nginx" ] || { echo "runtime: OPENRESTY_PREFIX=$prefix has no nginx/sbin/nginx" >&2; exit 2; }
elif command -v openresty >/dev/null 2>&1; then
    nginx="$(readlink -f "$(command -v openresty)")"
elif command -v nginx >/dev/null 2>&1; then
    nginx="$(command -v nginx)"
else
    nginx=/usr/sbin/nginx
fi

# An OpenResty-style prefix holds the binary at PREFIX/nginx/sbin/nginx and the libraries in PREFIX/lualib.
if [ -z "$prefix" ]; then
    candidate="$(dirname "$(dirname "$(dirname "$(readlink -f "$nginx" 2>/dev/null || echo "$nginx")")")")"
    [ -d "$candidate/lualib" ] && prefix="$candidate"
fi

version="$("$nginx" -V 2>&1 || true)"
if grep -Eq -- '--add-module=[^ ]*(lua-nginx-module|/ngx_lua-)' <<<"$version"; then
    runtime=openresty websocket=resty.websocket modules=""
else
    runtime=debian websocket=nginx.websocket modules=""
    dir="$(grep -o -- '--modules-path=[^ ]*' <<<"$version" | cut -d= -f2 || true)"
    for d in $dir /usr/share/nginx/modules; do
        if [ -f "$d/ndk_http_module.so" ] && [ -f "$d/ngx_http_lua_module.so" ]; then
            modules="$d/ndk_http_module.so $d/ngx_http_lua_module.so"
            break
        fi
    done
fi
[ -n "${TEST_NGINX_LOAD_MODULES+set}" ] && modules="$TEST_NGINX_LOAD_MODULES"

lua_path="" lua_cpath=""
if [ -n "$prefix" ] && [ -d "$prefix/lualib" ]; then
    lua_path="$prefix/lualib/?.lua;$prefix/lualib/?/init.lua;"
    lua_cpath="$prefix/lualib/?.so;"
fi

quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
case "${1:-}" in
    "")
        for var in runtime nginx modules lua_path lua_cpath websocket; do
            name="PUBSUB_$(tr a-z A-Z <<<"$var")"
            [ "$var" = modules ] && name=PUBSUB_LOAD_MODULES
            echo "$name=$(quote "${!var}")"
        done ;;
    --main-conf)
        for m in $modules; do echo "load_module $m;"; done
        [ "$(id -u)" = 0 ] && echo "user root;"
        true ;;
    --lua)
        echo "return { runtime = \"$runtime\", websocket = \"$websocket\" }" ;;
    --kind)
        echo "$runtime" ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
