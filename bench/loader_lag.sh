#!/usr/bin/env bash
# loader_lag.sh: end-to-end lag from POST /ingest to the row being queryable in ClickHouse,
# at a steady offered load, on the embedded default (spool + in-process loader) or with
# Kafka (LOADER_LAG_KAFKA=1).
#
#   make && bench/loader_lag.sh        prints lag p50/p90/max over the probes and the load
#
# Environment: LOADER_LAG_RATE (events/s of background load, default 2000),
# LOADER_LAG_PROBES (default 20), SLUICE_BENCH_BUILD (build folder, default build/).
# It starts a private ClickHouse (and broker) in a temp folder and stops everything after.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${SLUICE_BENCH_BUILD:-$REPO/build}
RATE=${LOADER_LAG_RATE:-2000}
PROBES=${LOADER_LAG_PROBES:-20}
WORK=$(mktemp -d)
export SLUICE_STACK_DIR=$WORK/stack

log() {
    echo "loader_lag: $*" >&2
}

pids=()
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    "$REPO/scripts/clickhouse.sh" stop >/dev/null 2>&1 || true
    if [ "${LOADER_LAG_KAFKA:-0}" = 1 ]; then
        "$REPO/scripts/kafka.sh" stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$REPO/scripts/clickhouse.sh" start >/dev/null
ch_url=$(sed -n 's/^SLUICE_TEST_CLICKHOUSE_URL=//p' "$SLUICE_STACK_DIR/clickhouse/env")
brokers=""
if [ "${LOADER_LAG_KAFKA:-0}" = 1 ]; then
    "$REPO/scripts/kafka.sh" start >/dev/null
    brokers=$(sed -n 's/^SLUICE_TEST_KAFKA_BROKERS=//p' "$SLUICE_STACK_DIR/kafka/env")
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export SLUICE_DB=$WORK/tenants.db SLUICE_SPOOL_DIR=$WORK/spool SLUICE_LOG_LEVEL=warn
export SLUICE_HTTP_ADDR=127.0.0.1:$port SLUICE_CLICKHOUSE_URL=$ch_url
export SLUICE_KAFKA_BROKERS=$brokers SLUICE_KAFKA_TOPIC=lag-$$ SLUICE_METRICS_SNAPSHOT_S=0
"$BUILD/bin/sluice" tenant create bench --tier enterprise >/dev/null
"$BUILD/bin/sluice" tenant set-limits bench --rate-limit 10000000 --burst 10000000 >/dev/null
key=$("$BUILD/bin/sluice" key create bench 2>/dev/null)
"$BUILD/bin/sluice-ingest" 2>"$WORK/ingest.log" &
pids+=($!)
for _ in $(seq 1 100); do
    curl -sf "http://$SLUICE_HTTP_ADDR/health/live" >/dev/null && break
    sleep 0.1
done
# The loader creates the tables at start; wait for them.
for _ in $(seq 1 100); do
    [ "$(curl -s --data-binary "EXISTS TABLE sluice.events" "$ch_url/")" = 1 ] && break
    sleep 0.1
done

duration=$((PROBES / 2 + 10))
"$BUILD/bench/sluice-loadgen" --url "http://$SLUICE_HTTP_ADDR/ingest" --key "$key" \
    --connections 4 --batch 100 --rate "$RATE" --duration "$duration" --warmup 1 \
    >"$WORK/load.txt" 2>&1 &
pids+=($!)
sleep 2

lags=()
for i in $(seq 1 "$PROBES"); do
    id=$(cat /proc/sys/kernel/random/uuid)
    t0=$(date +%s%N)
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" \
        -H 'Content-Type: application/json' \
        -d '{"id":"'"$id"'","type":"custom","name":"lag-probe"}' "http://$SLUICE_HTTP_ADDR/ingest")
    [ "$code" = 200 ] || { log "probe $i answered $code"; continue; }
    for _ in $(seq 1 600); do
        n=$(curl -s --data-binary "SELECT count() FROM sluice.events WHERE id = toUUID('$id')" "$ch_url/")
        [ "$n" = 1 ] && break
        sleep 0.02
    done
    t1=$(date +%s%N)
    lags+=($(((t1 - t0) / 1000000)))
    sleep 0.3
done
wait "${pids[1]}" 2>/dev/null || true
sorted=$(printf '%s\n' "${lags[@]}" | sort -n)
n=${#lags[@]}
p50=$(echo "$sorted" | sed -n "$(((n + 1) / 2))p")
p90=$(echo "$sorted" | sed -n "$(((n * 9 + 9) / 10))p")
max=$(echo "$sorted" | tail -n 1)
mode=$([ -n "$brokers" ] && echo kafka || echo "embedded spool")
echo "loader lag, POST /ingest -> queryable in ClickHouse ($mode, background load $RATE events/s):"
echo "  probes $n, p50 ${p50} ms, p90 ${p90} ms, max ${max} ms"
echo "  background load: $(grep -m1 -E 'events/s' "$WORK/load.txt" || echo '?')"
