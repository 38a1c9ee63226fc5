#!/usr/bin/env bash
# `make run`: a demo nginx on 127.0.0.1:9080 serving /pubsub with cmd_ping (built in) and an
# example cmd_kafka_list_offset handler. Foreground, logs to the terminal, Ctrl-C stops it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(mktemp -d /tmp/apisix-pubsub-rs-demo.XXXXXX)"
mkdir -p "$dir/conf" "$dir/logs"
user=""
[ "$(id -u)" = 0 ] && user="user root;"
cat > "$dir/conf/nginx.conf" <<CONF
load_module /usr/share/nginx/modules/ndk_http_module.so;
load_module /usr/share/nginx/modules/ngx_http_lua_module.so;
$user
worker_processes 1;
daemon off;
master_process on;
error_log /dev/stderr info;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log /dev/stdout;
    lua_package_path "/usr/share/lua/5.1/?.lua;;";
    lua_package_cpath "$root/target/release/lib?.so;;";
    server {
        listen 127.0.0.1:9080;
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
    }
}
CONF
echo "demo: ws://127.0.0.1:9080/pubsub (config in $dir, Ctrl-C stops)"
trap 'rm -rf "$dir"' EXIT
nginx -p "$dir/" -c conf/nginx.conf
