#!/usr/bin/env bash
# `make valgrind`: runs the module's .t suites once with nginx under valgrind memcheck (master off,
# daemon off, long timeouts), then reports the errors and leaks valgrind attributes to this module.
# Exits non-zero when there is one. Logs stay in $VG_DIR (default /tmp/apisix-pubsub-rs-valgrind).
# The nginx is the one scripts/runtime.sh decides (t::Pubsub asks it), as for the suites.
set -uo pipefail
cd "$(dirname "$0")/.."
dir="${VG_DIR:-/tmp/apisix-pubsub-rs-valgrind}"
rm -rf "$dir" && mkdir -p "$dir"
export TEST_NGINX_USE_VALGRIND=1 TEST_NGINX_RUNNER=bundled TEST_NGINX_NO_SHUFFLE=1
export TEST_NGINX_VALGRIND="valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite --num-callers=30 --suppressions=$PWD/t/valgrind.suppress --log-file=$dir/vg.%p.log"
prove ${VALGRIND_SUITES:-t/pubsub t/hardening}
status=$?
runs=$(ls "$dir"/vg.*.log 2>/dev/null | wc -l)
errors=$(grep -h "ERROR SUMMARY" "$dir"/vg.*.log | awk '{s += $4} END {print s + 0}')
ours=$(grep -l -E "apisix_pubsub_rs|libapisix_pubsub_rs" "$dir"/vg.*.log 2>/dev/null | wc -l)
lost=$(grep -h "definitely lost:" "$dir"/vg.*.log | awk '{gsub(",", "", $4); s += $4} END {print s + 0}')
echo "valgrind: $runs nginx runs, $errors unsuppressed errors in all, $lost bytes definitely lost in all,"
echo "          $ours logs naming this module (logs in $dir)"
if [ "$ours" -gt 0 ]; then
    grep -l -E "apisix_pubsub_rs" "$dir"/vg.*.log
    exit 1
fi
exit $status
