#!/usr/bin/env bash
# Builds an OpenResty-style runtime from source checkouts: nginx with ngx_devel_kit and
# lua-nginx-module compiled in, OpenResty's luajit2, and lua-resty-core, lua-resty-lrucache and
# lua-resty-websocket, laid out as OpenResty lays out its prefix:
#
#   PREFIX/nginx/sbin/nginx     nginx, ngx_lua built in (nothing to load_module)
#   PREFIX/bin/openresty        a link to it, as OpenResty installs it
#   PREFIX/luajit/              luajit2 (nginx runs against PREFIX/luajit/lib through its rpath)
#   PREFIX/lualib/              resty.core, ngx.*, resty.lrucache, resty.websocket.*; compiled into
#                               nginx as the default lua_package_path / lua_package_cpath
#
# Usage: scripts/build-openresty.sh PREFIX [NAME=DIR ...]
#   The checkouts are named by arguments or by environment variables of the same names:
#     NGINX_SRC            nginx (github nginx/nginx, e.g. release-1.27.1; its configure is auto/configure)
#     LUA_NGINX_MODULE_SRC openresty/lua-nginx-module (e.g. v0.10.27)
#     LUAJIT_SRC           openresty/luajit2
#     LUA_RESTY_CORE_SRC   openresty/lua-resty-core, the tag matching lua-nginx-module's version
#                          (v0.1.30 for v0.10.27: lib/resty/core/base.lua names the one it needs)
#     LUA_RESTY_LRUCACHE_SRC, LUA_RESTY_WEBSOCKET_SRC, NDK_SRC (vision5/ngx_devel_kit)
#   JOBS (default: nproc) make jobs.
#   Debian needs build-essential, libpcre2-dev, zlib1g-dev and libssl-dev.
# The script never touches this repository; PREFIX is created (and its nginx/, luajit/ and lualib/
# replaced) by it.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] && [ "$1" != -h ] && [ "$1" != --help ] || usage
prefix="$1"; shift
for arg in "$@"; do
    case "$arg" in
        NGINX_SRC=*|LUA_NGINX_MODULE_SRC=*|LUAJIT_SRC=*|LUA_RESTY_CORE_SRC=*|LUA_RESTY_LRUCACHE_SRC=*|LUA_RESTY_WEBSOCKET_SRC=*|NDK_SRC=*)
            export "${arg?}" ;;
        *) echo "build-openresty: unknown argument $arg" >&2; usage ;;
    esac
done
for var in NGINX_SRC LUA_NGINX_MODULE_SRC LUAJIT_SRC LUA_RESTY_CORE_SRC LUA_RESTY_LRUCACHE_SRC LUA_RESTY_WEBSOCKET_SRC NDK_SRC; do
    dir="${!var:-}"
    [ -n "$dir" ] && [ -d "$dir" ] || { echo "build-openresty: $var must name a checkout (got '${dir}')" >&2; exit 2; }
    printf -v "$var" '%s' "$(cd "$dir" && pwd)"
done
# lua-resty-core refuses to run on another ngx_lua version than the one it names: say so now.
want="$(grep -m1 -o 'ngx_lua_version ~= [0-9]*' "$LUA_RESTY_CORE_SRC/lib/resty/core/base.lua" | grep -o '[0-9]*$')"
have="$(grep -m1 'define ngx_http_lua_version' "$LUA_NGINX_MODULE_SRC/src/api/ngx_http_lua_api.h" | grep -o '[0-9]*$')"
if [ "$want" != "$have" ]; then
    echo "build-openresty: lua-resty-core wants ngx_lua $want, lua-nginx-module is $have; nginx would not start" >&2
    exit 2
fi

jobs="${JOBS:-$(nproc)}"
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
rm -rf "$prefix/nginx" "$prefix/luajit" "$prefix/lualib" "$prefix/bin"
build="$prefix/build"
rm -rf "$build" && mkdir -p "$build"

echo "build-openresty: luajit2 into $prefix/luajit"
# Out of tree, so the checkout stays clean.
cp -a "$LUAJIT_SRC" "$build/luajit"
make -C "$build/luajit" -j"$jobs" PREFIX="$prefix/luajit" XCFLAGS='-DLUAJIT_ENABLE_LUA52COMPAT' >"$build/luajit.log" 2>&1
make -C "$build/luajit" install PREFIX="$prefix/luajit" >>"$build/luajit.log" 2>&1
luajit_inc="$(ls -d "$prefix"/luajit/include/luajit-2.1)"

echo "build-openresty: Lua libraries into $prefix/lualib"
mkdir -p "$prefix/lualib"
for src in "$LUA_RESTY_CORE_SRC" "$LUA_RESTY_LRUCACHE_SRC" "$LUA_RESTY_WEBSOCKET_SRC"; do
    (cd "$src/lib" && find . -name '*.lua' -exec install -D -m 0644 {} "$prefix/lualib/{}" \;)
done

echo "build-openresty: nginx into $prefix/nginx"
# ngx_lua's default package path comes from LUA_DEFAULT_PATH; nginx's configure cannot carry a
# ';' inside -D, so the defines reach the compiler through an -include'd header.
cat > "$build/lua_default_path.h" <<H
#define LUA_DEFAULT_PATH "$prefix/lualib/?.lua;$prefix/lualib/?/init.lua"
#define LUA_DEFAULT_CPATH "$prefix/lualib/?.so"
H
cp -a "$NGINX_SRC" "$build/nginx"
(
    cd "$build/nginx"
    export LUAJIT_LIB="$prefix/luajit/lib" LUAJIT_INC="$luajit_inc"
    ./auto/configure --prefix="$prefix/nginx" \
        --with-cc-opt="-O2 -include $build/lua_default_path.h" \
        --with-ld-opt="-Wl,-rpath,$prefix/luajit/lib" \
        --with-pcre-jit --with-http_ssl_module --with-http_realip_module --with-stream \
        --add-module="$NDK_SRC" --add-module="$LUA_NGINX_MODULE_SRC" >"$build/nginx-configure.log" 2>&1
    make -j"$jobs" >"$build/nginx.log" 2>&1
    make install >>"$build/nginx.log" 2>&1
) || { echo "build-openresty: nginx failed; see $build/nginx-configure.log and $build/nginx.log" >&2; exit 1; }
mkdir -p "$prefix/bin"
ln -sfn ../nginx/sbin/nginx "$prefix/bin/openresty"

# A configuration test runs init: ngx_lua loads resty.core then, so this proves the two agree and
# the default paths find the libraries.
mkdir -p "$build/check/logs"
cat > "$build/check/nginx.conf" <<CONF
events {}
http { init_by_lua_block { require("resty.websocket.server") require("resty.lrucache") } }
CONF
"$prefix/nginx/sbin/nginx" -p "$build/check/" -c nginx.conf -t -q ||
    { echo "build-openresty: the built nginx fails its configuration test" >&2; exit 1; }
"$prefix/nginx/sbin/nginx" -V 2>&1 | sed -n '1p'
echo "build-openresty: done: $prefix/nginx/sbin/nginx (logs of the build in $build)"
