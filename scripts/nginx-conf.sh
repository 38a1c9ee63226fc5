#!/usr/bin/env bash
# Prints an nginx.conf serving apisix_pubsub_rs on /pubsub, for the demo and the soak runs, and the
# browser page of clients/web on / (with /web/ and /pubsub.proto, the files it loads), for the
# runtime scripts/runtime.sh decides (whose nginx must then run it), and its counters on /metrics.
# Usage: nginx-conf.sh PORT WORKER_CONNECTIONS ERROR_LOG_LEVEL ERROR_LOG_TARGET
# PUBSUB_EXTRA_CONF=FILE adds `include FILE;` to the server (the client tests' own locations).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$root/scripts/runtime.sh")"
port="$1" conns="$2" level="$3" target="$4"
cat <<CONF
$("$root/scripts/runtime.sh" --main-conf)
worker_processes 1;
worker_rlimit_nofile $((conns * 2 + 64));
daemon off;
master_process on;
error_log $target $level;
pid logs/nginx.pid;
events { worker_connections $conns; }
http {
    access_log off;
    lua_socket_log_errors off;
    lua_package_path "$root/lua/?.lua;$PUBSUB_LUA_PATH;";
    lua_package_cpath "$root/target/release/lib?.so;$PUBSUB_LUA_CPATH;";
    # Every worker's counters in one exposition (README, "Metrics").
    lua_shared_dict pubsub_metrics 1m;
    init_worker_by_lua_block {
        require("apisix_pubsub_rs").configure({ metrics_dict = "pubsub_metrics" })
    }
    server {
        listen 127.0.0.1:$port backlog=4096;
        location /pubsub {
            content_by_lua_block {
                local pubsub, err = require("apisix_pubsub_rs").new()
                if not pubsub then
                    ngx.log(ngx.ERR, "failed to initialize pubsub module, err: ", err)
                    return ngx.exit(400)
                end
                -- An example handler: a fake Kafka offset lookup.
                pubsub:on("cmd_kafka_list_offset", function(params)
                    if params.partition < 0 then
                        return nil, "bad partition"
                    end
                    return { kafka_list_offset_resp = { offset = 42 } }
                end)
                pubsub:wait()
            }
        }
        location = /metrics {
            content_by_lua_block {
                ngx.header.content_type = "text/plain; version=0.0.4"
                ngx.print(assert(require("apisix_pubsub_rs").prometheus()))
            }
        }
        location = / { root $root/clients/web; try_files /index.html =404; }
        location /web/ {
            alias $root/clients/web/;
            types { text/html html; text/javascript js; text/css css; image/png png; }
        }
        location = /pubsub.proto { alias $root/proto/pubsub.proto; default_type text/plain; }
        ${PUBSUB_EXTRA_CONF:+include $PUBSUB_EXTRA_CONF;}
    }
}
CONF
