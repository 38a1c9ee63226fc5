#!/usr/bin/env bash
# `make run`: a demo nginx on 127.0.0.1:9080 serving /pubsub with cmd_ping (built in) and an
# example cmd_kafka_list_offset handler, and the browser page on /. Foreground, logs to the
# terminal, Ctrl-C stops it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
eval "$("$here/runtime.sh")"
dir="$(mktemp -d /tmp/apisix-pubsub-rs-demo.XXXXXX)"
mkdir -p "$dir/conf" "$dir/logs"
"$here/nginx-conf.sh" 9080 1024 info /dev/stderr > "$dir/conf/nginx.conf"
cat <<GREETING
apisix-pubsub-rs demo on $PUBSUB_NGINX (Ctrl-C stops it; config in $dir)
  WebSocket  ws://127.0.0.1:9080/pubsub
  page       http://127.0.0.1:9080/  (http://127.0.0.1:9080/?ping=hello pings on load)
  CLI        target/clients/venv/bin/python -m apisix_pubsub ping ws://127.0.0.1:9080/pubsub hello
GREETING
trap 'rm -rf "$dir"' EXIT
"$PUBSUB_NGINX" -p "$dir/" -c conf/nginx.conf
