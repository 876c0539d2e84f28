#!/usr/bin/env bash
# stack.sh: the real local stack for integration tests: a private ClickHouse server
# (scripts/clickhouse.sh) and a Kafka broker (scripts/kafka.sh), both on 127.0.0.1.
#
#   scripts/stack.sh start   start both (idempotent); if the second fails, stop the first.
#                            Writes STACK_DIR/env combining both env files.
#   scripts/stack.sh stop    stop both; succeeds when either is already down
#   scripts/stack.sh env     print STACK_DIR/env, e.g. `set -a; . .stack/env; set +a`
#
# STACK_DIR is ${SLUICE_STACK_DIR:-REPO/.stack}; the servers live in its clickhouse/ and
# kafka/ folders. The env file holds SLUICE_TEST_CLICKHOUSE_URL, CLICKHOUSE_HTTP_PORT,
# CLICKHOUSE_TCP_PORT, SLUICE_TEST_KAFKA_BROKERS and KAFKA_CONTROLLER_PORT.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=$(realpath -m "${SLUICE_STACK_DIR:-$REPO/.stack}")
CH=$REPO/scripts/clickhouse.sh
KAFKA=$REPO/scripts/kafka.sh

usage() {
    echo "usage: $0 start|stop|env" >&2
    exit 2
}

log() {
    echo "stack: $*" >&2
}

cmd_start() {
    local started=$SECONDS
    mkdir -p "$STACK_DIR"
    rm -f "$STACK_DIR/env"
    "$CH" start "$STACK_DIR/clickhouse" >/dev/null
    if ! "$KAFKA" start "$STACK_DIR/kafka" >/dev/null; then
        log "kafka failed to start: stopping clickhouse"
        "$CH" stop "$STACK_DIR/clickhouse" || true
        exit 1
    fi
    # Plain KEY=value lines only, so `env $(cat FILE)` works as well as `set -a; . FILE`.
    cat "$STACK_DIR/clickhouse/env" "$STACK_DIR/kafka/env" >"$STACK_DIR/env.tmp"
    mv "$STACK_DIR/env.tmp" "$STACK_DIR/env"
    log "up in $((SECONDS - started)) s; env in $STACK_DIR/env"
    cat "$STACK_DIR/env"
}

cmd_stop() {
    local rc=0
    rm -f "$STACK_DIR/env"
    # Both, even when the first fails.
    "$KAFKA" stop "$STACK_DIR/kafka" || rc=1
    "$CH" stop "$STACK_DIR/clickhouse" || rc=1
    if ((rc != 0)); then
        log "stop failed; see above"
    fi
    return "$rc"
}

cmd_env() {
    if [[ ! -s "$STACK_DIR/env" ]]; then
        log "no env file: the stack is not started ($STACK_DIR)"
        exit 1
    fi
    cat "$STACK_DIR/env"
}

(($# == 1)) || usage
case "$1" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) cmd_env ;;
    *) usage ;;
esac
