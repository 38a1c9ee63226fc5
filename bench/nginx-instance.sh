# Sourced by bench/push_bench.sh and scripts/soak.sh: start_nginx PREFIX [NGINX] starts NGINX
# (default: the runtime's, $PUBSUB_NGINX from scripts/runtime.sh) with PREFIX/conf/nginx.conf in
# the background and sets nginx_master and nginx_worker (its one worker).
start_nginx() {
    "${2:-${PUBSUB_NGINX:-nginx}}" -p "$1/" -c conf/nginx.conf &
    nginx_master=$!
    for _ in $(seq 50); do [ -f "$1/logs/nginx.pid" ] && pgrep -P "$nginx_master" >/dev/null && break; sleep 0.1; done
    sleep 0.3
    nginx_worker="$(pgrep -P "$nginx_master" | head -1)"
}
