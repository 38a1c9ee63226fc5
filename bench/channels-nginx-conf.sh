#!/usr/bin/env bash
# Prints the nginx.conf of one channels server, for `make bench-channels` and the channels step of
# `make soak`. Usage: channels-nginx-conf.sh SERVER PORT CONNECTIONS WORKERS REDIS_PORT
#   SERVER native: this module's channels (bench/channels_servers.lua): WebSocket subscribers on /sub
#                  (cmd_subscribe names the channel), POST /pub/<channel> publishes; the runtime
#                  scripts/runtime.sh decides.
#          nchan:  Debian's libnginx-mod-nchan with nchan_use_redis (nchan_redis_url): WebSocket
#                  subscribers on /sub/<channel>, POST /pub/<channel>; on Debian's nginx.
# Both listen with reuseport: the kernel then spreads the subscribers over the workers by their
# addresses. Without it, one listening socket that every worker waits on gave this module's two
# workers 305 and 696 of 1,000 subscribers (nchan's 479 and 522), and a fan-out lasts as long as
# its busiest worker's share.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
server="$1" port="$2" conns="$3" workers="$4" redis_port="$5"
eval "$("$root/scripts/runtime.sh")"
case "$server" in
    native) "$root/scripts/runtime.sh" --main-conf ;;
    nchan)
        modules=/usr/share/nginx/modules
        [ -f "$modules/ngx_nchan_module.so" ] || modules=/usr/lib/nginx/modules
        echo "load_module $modules/ngx_nchan_module.so;"
        [ "$(id -u)" = 0 ] && echo "user root;" ;;
    *) echo "channels-nginx-conf.sh: SERVER is native or nchan, not $server" >&2; exit 2 ;;
esac
cat <<CONF
worker_processes $workers;
worker_rlimit_nofile $conns;
daemon off;
master_process on;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections $conns; }
http {
    access_log off;
    client_body_buffer_size 64k;
CONF
if [ "$server" = native ]; then
    cat <<CONF
    lua_package_path "$root/bench/?.lua;$PUBSUB_LUA_PATH;";
    lua_package_cpath "$root/target/release/lib?.so;$PUBSUB_LUA_CPATH;";
    lua_socket_log_errors off;
    init_by_lua_block { require("channels_servers").init("127.0.0.1:$redis_port") }
    server {
        listen 127.0.0.1:$port backlog=4096 reuseport;
        location = /sub { content_by_lua_block { require("channels_servers").subscriber() } }
        location ~ ^/pub/(\w+)$ { content_by_lua_block { require("channels_servers").publish(ngx.var[1]) } }
    }
}
CONF
else
    cat <<CONF
    server {
        listen 127.0.0.1:$port backlog=4096 reuseport;
        location ~ ^/sub/(\w+)$ {
            nchan_subscriber websocket;
            nchan_channel_id \$1;
            nchan_subscriber_first_message newest;
            nchan_redis_url "redis://127.0.0.1:$redis_port";
            nchan_use_redis on;
        }
        location ~ ^/pub/(\w+)$ {
            nchan_publisher http;
            nchan_channel_id \$1;
            nchan_redis_url "redis://127.0.0.1:$redis_port";
            nchan_use_redis on;
        }
    }
}
CONF
fi
