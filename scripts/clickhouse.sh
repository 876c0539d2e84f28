#!/usr/bin/env bash
# clickhouse.sh: a private ClickHouse server (Debian's clickhouse-server 18.16) for tests, on
# 127.0.0.1 with free ports, its own config, data and logs in one state folder. It runs as
# the calling user (root is fine for 18.16).
#
#   scripts/clickhouse.sh start [DIR]   start it (idempotent), wait for /ping, print its env
#   scripts/clickhouse.sh stop [DIR]    SIGTERM, SIGKILL after a deadline; check it is gone
#   scripts/clickhouse.sh status [DIR]  exit 0 when it answers /ping
#   scripts/clickhouse.sh env [DIR]     print DIR/env (KEY=value lines, for `set -a; . FILE`)
#
# DIR defaults to ${SLUICE_STACK_DIR:-REPO/.stack}/clickhouse. The env file holds
# SLUICE_TEST_CLICKHOUSE_URL, CLICKHOUSE_HTTP_PORT and CLICKHOUSE_TCP_PORT.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/proc.sh
. "$REPO/scripts/lib/proc.sh"
START_DEADLINE_S=60
STOP_DEADLINE_S=30

usage() {
    echo "usage: $0 start|stop|status|env [DIR]" >&2
    exit 2
}

log() {
    echo "clickhouse: $*" >&2
}

find_server() {
    if command -v clickhouse-server >/dev/null 2>&1; then
        SERVER=(clickhouse-server)
    elif [[ -x /usr/sbin/clickhouse-server ]]; then
        SERVER=(/usr/sbin/clickhouse-server)
    elif command -v clickhouse >/dev/null 2>&1; then
        SERVER=(clickhouse server)
    else
        log "clickhouse-server not found (run scripts/deps.sh)"
        exit 1
    fi
}

read_state() {
    PID=$(cat "$DIR/pid" 2>/dev/null || true)
    HTTP_PORT=$(sed -n 's/^CLICKHOUSE_HTTP_PORT=//p' "$DIR/ports" 2>/dev/null || true)
    TCP_PORT=$(sed -n 's/^CLICKHOUSE_TCP_PORT=//p' "$DIR/ports" 2>/dev/null || true)
}

# True when pid $1 is our server (alive, and its command line names our config).
is_ours() {
    pid_has "$1" "$DIR/config.xml"
}

ping_ok() {
    [[ -n "$HTTP_PORT" ]] &&
        [[ "$(curl -s --max-time 2 "http://127.0.0.1:$HTTP_PORT/ping" 2>/dev/null)" == "Ok." ]]
}

write_config() {
    cat >"$DIR/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by scripts/clickhouse.sh; rewritten at every start. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$DIR/log/server.log</log>
        <errorlog>$DIR/log/server.err.log</errorlog>
        <size>50M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$HTTP_PORT</http_port>
    <tcp_port>$TCP_PORT</tcp_port>
    <!-- No interserver_http_port: no replication, so no third port is opened. -->
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>64</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>$DIR/data/</path>
    <tmp_path>$DIR/tmp/</tmp_path>
    <user_files_path>$DIR/user_files/</user_files_path>
    <format_schema_path>$DIR/format_schemas/</format_schema_path>
    <users_config>$DIR/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mlock_executable>false</mlock_executable>
</yandex>
EOF
    cat >"$DIR/users.xml" <<'EOF'
<?xml version="1.0"?>
<!-- Written by scripts/clickhouse.sh: one `default` user, no password, loopback only. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

write_env() {
    printf 'CLICKHOUSE_HTTP_PORT=%s\nCLICKHOUSE_TCP_PORT=%s\n' "$HTTP_PORT" "$TCP_PORT" \
        >"$DIR/ports"
    {
        echo "SLUICE_TEST_CLICKHOUSE_URL=http://127.0.0.1:$HTTP_PORT"
        echo "CLICKHOUSE_HTTP_PORT=$HTTP_PORT"
        echo "CLICKHOUSE_TCP_PORT=$TCP_PORT"
    } >"$DIR/env.tmp"
    mv "$DIR/env.tmp" "$DIR/env"
}

# Reports a failed start with the new part of the server's logs, stops what it started.
fail_start() {
    local f
    log "$1"
    for f in server.err.log stdout.log; do
        if [[ -s "$DIR/log/$f" ]]; then
            echo "--- $DIR/log/$f (this start)" >&2
            tail -c +"$((${LOG_OFFSET[$f]:-0} + 1))" "$DIR/log/$f" | tail -n 30 >&2
        fi
    done
    if alive "$PID"; then
        kill -KILL "$PID" 2>/dev/null || true
    fi
    rm -f "$DIR/pid" "$DIR/env"
    exit 1
}

wait_ready() {
    local deadline=$((SECONDS + START_DEADLINE_S))
    until ping_ok; do
        if ! is_ours "$PID"; then
            fail_start "server (pid $PID) exited during start-up"
        fi
        if ((SECONDS >= deadline)); then
            fail_start "no answer on http://127.0.0.1:$HTTP_PORT/ping after ${START_DEADLINE_S}s"
        fi
        sleep 0.1
    done
}

cmd_start() {
    local started f stray
    read_state
    if is_ours "$PID"; then
        wait_ready
        cat "$DIR/env"
        return 0
    fi
    stray=$(pids_with "$DIR/config.xml" | tr '\n' ' ')
    if [[ -n "$stray" ]]; then
        log "a server with $DIR/config.xml runs without our pid file (pid $stray): run stop first"
        exit 1
    fi
    find_server
    mkdir -p "$DIR/data" "$DIR/tmp" "$DIR/user_files" "$DIR/format_schemas" "$DIR/log"
    declare -gA LOG_OFFSET=()
    for f in server.err.log stdout.log; do
        LOG_OFFSET[$f]=$(stat -c %s "$DIR/log/$f" 2>/dev/null || echo 0)
    done
    rm -f "$DIR/pid" "$DIR/env"
    # Keep the previous ports when they are still free, so a restart keeps its URL.
    HTTP_PORT=$(pick_port "$HTTP_PORT")
    TCP_PORT=$(pick_port "$TCP_PORT")
    if [[ "$TCP_PORT" == "$HTTP_PORT" ]]; then
        TCP_PORT=$(pick_port 0)
    fi
    write_config
    started=$(date +%s%N)
    # Not --daemon: started in its own session instead, so $! is the server's pid and an
    # early exit (bad config, port taken) is seen at once.
    setsid "${SERVER[@]}" --config-file="$DIR/config.xml" \
        </dev/null >>"$DIR/log/stdout.log" 2>&1 &
    PID=$!
    echo "$PID" >"$DIR/pid"
    write_env
    wait_ready
    log "started pid $PID on http://127.0.0.1:$HTTP_PORT in $((($(date +%s%N) - started) / 1000000)) ms"
    cat "$DIR/env"
}

cmd_stop() {
    local rc=0
    read_state
    stop_marked "$DIR/config.xml" "$PID" "$HTTP_PORT" "$TCP_PORT" || rc=$?
    rm -f "$DIR/pid" "$DIR/env"
    case $rc in
        0) log "stopped ($DIR)" ;;
        2) log "not running ($DIR)" ;;
        *) exit 1 ;;
    esac
}

cmd_status() {
    read_state
    if is_ours "$PID" && ping_ok; then
        echo "clickhouse: running, pid $PID, http://127.0.0.1:$HTTP_PORT"
        return 0
    fi
    echo "clickhouse: not running ($DIR)"
    return 1
}

cmd_env() {
    if [[ ! -s "$DIR/env" ]]; then
        log "no env file: not started ($DIR)"
        exit 1
    fi
    cat "$DIR/env"
}

(($# >= 1 && $# <= 2)) || usage
DIR=${2:-${SLUICE_STACK_DIR:-$REPO/.stack}/clickhouse}
DIR=$(realpath -m "$DIR")

case "$1" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) usage ;;
esac
