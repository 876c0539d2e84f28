#!/usr/bin/env bash
# test_kafka_script.sh: checks scripts/kafka.sh and scripts/clickhouse.sh end to end. Each
# starts a second, private server in a fresh temp state folder (next to any running stack),
# which must answer (kcat -L, GET /ping), start again idempotently, then stop leaving no
# process with that folder in its command line and no listening port; stop runs twice.
#
#   tests/integration/test_kafka_script.sh     (ctest sets SLUICE_SOURCE_DIR to the repo)
#
# Exits 0 on success, 1 on a failed check, 77 (skip) when the Kafka jar cache is absent and
# SLUICE_TEST_REQUIRE_STACK is not 1 (with it set, kafka.sh start fetches the jars).
set -euo pipefail

REPO=${SLUICE_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
CACHE=${SLUICE_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/kafka-3.9.1}
KAFKA_DIR=
CH_DIR=

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

skip() {
    echo "skipped: $*" >&2
    exit 77
}

# Prints the pids of live processes whose command line contains $1 (never this shell's).
pids_with() {
    local p cmdline state
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [[ "$p" != "$$" && "$p" != "$BASHPID" ]] || continue
        cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
        state=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1) || continue
        if [[ "$cmdline" == *"$1"* && -n "$state" && "$state" != Z ]]; then
            echo "$p"
        fi
    done
}

listening() {
    [[ -n "$(ss -Hltn "sport = :$1")" ]]
}

# Value of KEY in KEY=value lines on stdin.
env_value() {
    sed -n "s/^$1=//p"
}

# Stops what a failed check left running (SIGKILL as a last resort) and removes the temp
# folders; keeps them, with their logs, when the test failed.
cleanup() {
    local rc=$? dir p
    for dir in "$KAFKA_DIR" "$CH_DIR"; do
        [[ -n "$dir" ]] || continue
        "$REPO/scripts/kafka.sh" stop "$dir/kafka" >/dev/null 2>&1 || true
        "$REPO/scripts/clickhouse.sh" stop "$dir/clickhouse" >/dev/null 2>&1 || true
        for p in $(pids_with "$dir"); do
            kill -KILL "$p" 2>/dev/null || true
        done
        if ((rc == 0)); then
            rm -rf "$dir"
        else
            echo "kept $dir for its logs" >&2
        fi
    done
    exit "$rc"
}
trap cleanup EXIT

# After stop: nothing runs from dir, no port listens, a second stop succeeds.
check_stopped() {
    local name=$1 script=$2 dir=$3
    shift 3
    local port left
    left=$(pids_with "$dir" | tr '\n' ' ')
    [[ -z "$left" ]] || fail "$name: processes still running from $dir: $left"
    for port in "$@"; do
        if listening "$port"; then
            fail "$name: port $port still listens after stop"
        fi
    done
    SLUICE_STACK_DIR=$dir "$script" stop || fail "$name: second stop failed"
    if SLUICE_STACK_DIR=$dir "$script" status >/dev/null; then
        fail "$name: status says running after stop"
    fi
}

test_kafka() {
    local script=$REPO/scripts/kafka.sh env brokers port cport pid again
    KAFKA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sluice-kafka-test-XXXXXX")
    env=$(SLUICE_STACK_DIR=$KAFKA_DIR "$script" start) || fail "kafka.sh start failed"
    brokers=$(env_value SLUICE_TEST_KAFKA_BROKERS <<<"$env")
    cport=$(env_value KAFKA_CONTROLLER_PORT <<<"$env")
    port=${brokers##*:}
    [[ "$brokers" == 127.0.0.1:* && -n "$port" && -n "$cport" ]] ||
        fail "kafka.sh start printed no broker address: $env"
    [[ -f "$KAFKA_DIR/kafka/env" ]] || fail "kafka.sh wrote no $KAFKA_DIR/kafka/env"
    pid=$(cat "$KAFKA_DIR/kafka/pid")
    [[ -n "$(pids_with "$KAFKA_DIR")" ]] || fail "no broker process runs from $KAFKA_DIR"

    kcat -b "$brokers" -L -m 10 | grep -q '^ *1 brokers:' || fail "kcat -L got no metadata"
    kcat -b "$brokers" -L -m 10 | grep -q 'topic "sluice.dlq" with 1 partitions' ||
        fail "kafka.sh did not create sluice.dlq with 1 partition"
    SLUICE_STACK_DIR=$KAFKA_DIR "$script" status >/dev/null || fail "kafka.sh status failed"

    again=$(SLUICE_STACK_DIR=$KAFKA_DIR "$script" start) || fail "second kafka.sh start failed"
    [[ "$again" == "$env" ]] || fail "second start changed the env: $again"
    [[ "$(cat "$KAFKA_DIR/kafka/pid")" == "$pid" ]] || fail "second start started another broker"

    SLUICE_STACK_DIR=$KAFKA_DIR "$script" stop || fail "kafka.sh stop failed"
    check_stopped kafka "$script" "$KAFKA_DIR" "$port" "$cport"
    [[ ! -e "$KAFKA_DIR/kafka/env" ]] || fail "kafka.sh stop left its env file"
    echo "ok kafka.sh start/stop ($brokers)"
}

test_clickhouse() {
    local script=$REPO/scripts/clickhouse.sh env url port tport
    CH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sluice-ch-test-XXXXXX")
    env=$(SLUICE_STACK_DIR=$CH_DIR "$script" start) || fail "clickhouse.sh start failed"
    url=$(env_value SLUICE_TEST_CLICKHOUSE_URL <<<"$env")
    port=$(env_value CLICKHOUSE_HTTP_PORT <<<"$env")
    tport=$(env_value CLICKHOUSE_TCP_PORT <<<"$env")
    [[ "$url" == "http://127.0.0.1:$port" && -n "$tport" ]] ||
        fail "clickhouse.sh start printed no URL: $env"
    [[ "$(curl -s --max-time 5 "$url/ping")" == "Ok." ]] || fail "no Ok. from $url/ping"
    [[ "$(curl -s --max-time 5 "$url/" --data-binary 'SELECT 1 + 1')" == "2" ]] ||
        fail "SELECT 1 + 1 failed on $url"
    SLUICE_STACK_DIR=$CH_DIR "$script" status >/dev/null || fail "clickhouse.sh status failed"
    [[ -d "$CH_DIR/clickhouse/data" ]] || fail "no data folder in $CH_DIR/clickhouse"

    SLUICE_STACK_DIR=$CH_DIR "$script" stop || fail "clickhouse.sh stop failed"
    check_stopped clickhouse "$script" "$CH_DIR" "$port" "$tport"
    echo "ok clickhouse.sh start/stop ($url)"
}

if [[ ! -f "$CACHE/.complete" && "${SLUICE_TEST_REQUIRE_STACK:-}" != 1 ]]; then
    skip "no Kafka jars in $CACHE (run scripts/kafka.sh fetch)"
fi
for tool in java kcat curl ss python3; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool not found (run scripts/deps.sh)"
done

test_kafka
test_clickhouse
