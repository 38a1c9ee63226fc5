#!/usr/bin/env bash
# Prints the nginx.conf of one push server, for `make bench-push` and the push step of `make soak`.
# Usage: push-nginx-conf.sh SERVER PORT CONNECTIONS [EXTRA_MAIN_DIRECTIVE [LISTEN_OPTIONS]]
#   SERVER native: this module (bench/push_servers.lua) on /sub (subscribers), /pub (POST: fan-out
#                  to the worker's subscribers), /flood and /tick (producers inside the server),
#                  /stats (subscribers and Lua heap);
#                  For the runtime scripts/runtime.sh decides.
#          nchan:  Debian's libnginx-mod-nchan, memory store, WebSocket subscribers on /sub/<channel>,
#                  the HTTP publisher on /pub/<channel>. For Debian's nginx, whatever the runtime.
#   CONNECTIONS    worker_connections and worker_rlimit_nofile (one worker).
#   EXTRA_MAIN_DIRECTIVE  e.g. "worker_cpu_affinity 01;"
#   LISTEN_OPTIONS  e.g. "sndbuf=16k": a fixed kernel send buffer per connection, so that a client
#                  that does not read fills the worker's queue instead of megabytes of kernel buffers.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
server="$1" port="$2" conns="$3" extra="${4:-}" listen="${5:-}"
eval "$("$root/scripts/runtime.sh")"
case "$server" in
    native) "$root/scripts/runtime.sh" --main-conf ;;
    nchan)
        modules=/usr/share/nginx/modules
        [ -f "$modules/ngx_nchan_module.so" ] || modules=/usr/lib/nginx/modules
        echo "load_module $modules/ngx_nchan_module.so;"
        [ "$(id -u)" = 0 ] && echo "user root;" ;;
    *) echo "push-nginx-conf.sh: SERVER is native or nchan, not $server" >&2; exit 2 ;;
esac
cat <<CONF
worker_processes 1;
$extra
worker_rlimit_nofile $conns;
daemon off;
master_process on;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections $conns; }
http {
    access_log off;
    client_body_buffer_size 64k;
    server {
        listen 127.0.0.1:$port backlog=4096 $listen;
CONF
if [ "$server" = native ]; then
    cat <<CONF
        lua_socket_log_errors off;
        location = /sub { content_by_lua_block { require("push_servers").subscriber() } }
        location = /pub { content_by_lua_block { require("push_servers").publish() } }
        location = /flood { content_by_lua_block { require("push_servers").flood() } }
        location = /tick { content_by_lua_block { require("push_servers").tick() } }
        location = /stats { content_by_lua_block { require("push_servers").stats() } }
    }
    lua_package_path "$root/bench/?.lua;$PUBSUB_LUA_PATH;";
    lua_package_cpath "$root/target/release/lib?.so;$PUBSUB_LUA_CPATH;";
}
CONF
else
    cat <<'CONF'
        location ~ ^/sub/(\w+)$ {
            nchan_subscriber websocket;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
        }
        location ~ ^/pub/(\w+)$ {
            nchan_publisher http;
            nchan_channel_id $1;
        }
    }
}
CONF
fi
