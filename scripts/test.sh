#!/usr/bin/env bash
# test.sh: the whole test suite, from nothing, on a fresh Debian machine.
#
#   scripts/test.sh            install what is missing (apt, Kafka jars from Maven Central),
#                              build (normal and ASan+UBSan), start the real stack
#                              (ClickHouse, Kafka) on loopback, run every ctest test in both
#                              builds, and stop the stack again, also when a test fails.
#
# Environment: SLUICE_TEST_LABELS=unit   run only tests with that ctest label (e.g. unit);
#              SLUICE_TEST_SKIP_ASAN=1   skip the sanitizer build (quicker local runs).
# Exit status: 0 when every test passed in every build.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

log() {
    echo "test.sh: $*" >&2
}

started=$SECONDS
scripts/deps.sh
# Enrichment rule data (npm uap-core, crawler-user-agents) and the uap-core test suites;
# only the SLUICE_TEST_* paths are exported, so they cannot leak into daemon tests.
enrich_env=$(scripts/enrich-data.sh)
while IFS= read -r kv; do
    case $kv in SLUICE_TEST_*) export "${kv?}" ;; esac
done <<<"$enrich_env"

log "building (release) ..."
make build
if [ "${SLUICE_TEST_SKIP_ASAN:-0}" != 1 ]; then
    log "building (ASan+UBSan) ..."
    make asan
fi
log "built in $((SECONDS - started)) s"

# shellcheck disable=SC2317  # called through the EXIT trap
stop_stack() {
    scripts/stack.sh stop || log "stopping the stack failed; see .stack/*/ logs"
}
trap stop_stack EXIT
scripts/stack.sh start
set -a
# shellcheck disable=SC1091
. .stack/env
set +a
export SLUICE_TEST_REQUIRE_STACK=1

ctest_args=(--output-on-failure --no-tests=error)
if [ -n "${SLUICE_TEST_LABELS:-}" ]; then
    ctest_args+=(-L "$SLUICE_TEST_LABELS")
fi

status=0
builds=(build)
if [ "${SLUICE_TEST_SKIP_ASAN:-0}" != 1 ]; then
    builds+=(build-asan)
fi
for b in "${builds[@]}"; do
    log "running tests in $b ..."
    if ! (cd "$b" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest "${ctest_args[@]}"); then
        status=1
    fi
done
log "finished in $((SECONDS - started)) s, status $status"
exit $status
