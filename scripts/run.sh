#!/usr/bin/env bash
# run.sh: the main job on the embedded default (no Kafka), from nothing.
#
#   scripts/run.sh     install what is missing, build, start a private ClickHouse on
#                      loopback, prepare the tenant store (.stack/sluice.db), create a demo
#                      tenant and API key, run sluice-ingest (embedded default: the disk
#                      spool is the queue, drained by the loader) and sluice-scheduler,
#                      post a sample event, show the edge's answer and the row it became in
#                      ClickHouse, then keep running until Ctrl-C and stop everything it
#                      started.
#
# Environment: SLUICE_RUN_SECONDS=N  stop by itself after N seconds (for scripted checks);
#              any SLUICE_* setting (see README) is passed through to the daemons.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
BIN=$REPO/build/bin

log() {
    echo "run.sh: $*" >&2
}

scripts/deps.sh
make build

pids=()
started_clickhouse=0
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$started_clickhouse" = 1 ]; then
        scripts/clickhouse.sh stop || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stop on exit only what this run started; a ClickHouse already running stays up.
started_clickhouse=0
if ! scripts/clickhouse.sh status >/dev/null 2>&1; then
    started_clickhouse=1
fi
scripts/clickhouse.sh start
set -a
# shellcheck disable=SC1091
. .stack/clickhouse/env
set +a
export SLUICE_CLICKHOUSE_URL=${SLUICE_CLICKHOUSE_URL:-$SLUICE_TEST_CLICKHOUSE_URL}
export SLUICE_DB=${SLUICE_DB:-$REPO/.stack/sluice.db}
export SLUICE_SPOOL_DIR=${SLUICE_SPOOL_DIR:-$REPO/.stack/spool}
export SLUICE_HTTP_ADDR=${SLUICE_HTTP_ADDR:-127.0.0.1:8080}
export SLUICE_SCHEDULER_HTTP_ADDR=${SLUICE_SCHEDULER_HTTP_ADDR:-127.0.0.1:8081}
export SLUICE_COLD_DIR=${SLUICE_COLD_DIR:-$REPO/.stack/cold}
# Enrichment: ua-parser's rules and the crawler list from npm; GeoIP from MaxMind's test
# database when the shared test data is beside the checkout (a real GeoLite2/DB-IP file
# can be given with SLUICE_GEOIP_DB).
while IFS= read -r kv; do
    name=${kv%%=*}
    case $name in
        SLUICE_UA_REGEXES | SLUICE_CRAWLER_PATTERNS)
            if [ -z "${!name:-}" ]; then export "${kv?}"; fi ;;
    esac
done < <(scripts/enrich-data.sh)
if [ -z "${SLUICE_GEOIP_DB:-}" ] && [ -f "$REPO/../shared/testdata/geoip/GeoIP2-City-Test.mmdb" ]; then
    SLUICE_GEOIP_DB=$(realpath "$REPO/../shared/testdata/geoip/GeoIP2-City-Test.mmdb")
    export SLUICE_GEOIP_DB
fi

"$BIN/sluice" db migrate
if ! "$BIN/sluice" tenant show demo >/dev/null 2>&1; then
    "$BIN/sluice" tenant create demo --tier free >/dev/null
fi
key=$("$BIN/sluice" key create demo --name run.sh 2>/dev/null)

mkdir -p .stack/logs
"$BIN/sluice-ingest" 2>>.stack/logs/ingest.log &
pids+=($!)
"$BIN/sluice-scheduler" 2>>.stack/logs/scheduler.log &
pids+=($!)
# Start-up compiles ua-parser's rules (a few seconds on a slow box): wait up to 60 s each.
for name in ingest scheduler; do
    started=0
    for _ in $(seq 1 600); do
        if grep -q '"msg":"sluice-'"$name"' .* started' ".stack/logs/$name.log"; then
            started=1
            break
        fi
        sleep 0.1
    done
    tail -n 1 ".stack/logs/$name.log"
    if [ "$started" != 1 ]; then
        echo "run.sh: sluice-$name did not start within 60 s; see .stack/logs/$name.log" >&2
        exit 1
    fi
done

event_id=$(cat /proc/sys/kernel/random/uuid)
sample='{"id":"'$event_id'","type":"pageview","name":"home","context":{"url":"https://example.com/","path":"/","title":"Home","ip":"81.2.69.142","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"},"properties":{"plan":"free"}}'
echo
echo "POST /ingest with a sample event:"
echo "  $sample"
answer=$(curl -sS -w ' (HTTP %{http_code})' -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' -d "$sample" "http://$SLUICE_HTTP_ADDR/ingest")
echo "  -> $answer"

# The loader drains the spool into ClickHouse; wait for the row (bounded) and show it.
query="SELECT id, tenant_id, type, name, ts, path, url, ip, country_code, city, browser, os, is_bot, enrichment_version FROM sluice.events WHERE id = toUUID('$event_id') FORMAT Vertical"
row=""
for _ in $(seq 1 150); do
    row=$(curl -sS --data-binary "$query" "$SLUICE_CLICKHOUSE_URL/" 2>/dev/null || true)
    case $row in *"$event_id"*) break ;; esac
    sleep 0.2
done
case $row in
    *"$event_id"*) printf 'The event in ClickHouse (sluice.events):\n%s\n' "$row" ;;
    *) echo "The event has not reached ClickHouse yet; see .stack/logs/ingest.log" ;;
esac

cat <<TXT

sluice is running on the embedded default (no broker):
  ClickHouse      $SLUICE_CLICKHOUSE_URL
  tenant store    $SLUICE_DB
  ingest          $SLUICE_HTTP_ADDR      (logs: .stack/logs/ingest.log)
  scheduler       $SLUICE_SCHEDULER_HTTP_ADDR      (logs: .stack/logs/scheduler.log)

A demo tenant 'demo' exists; a fresh API key for it: $key

Send events yourself:
  curl -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \\
       -d '{"events":[{"type":"click","name":"signup"}]}' http://$SLUICE_HTTP_ADDR/ingest

Create your own tenant and key:
  SLUICE_DB=$SLUICE_DB build/bin/sluice tenant create acme --tier paid
  SLUICE_DB=$SLUICE_DB build/bin/sluice key create acme --name web

Ctrl-C stops everything.
TXT

if [ -n "${SLUICE_RUN_SECONDS:-}" ]; then
    sleep "$SLUICE_RUN_SECONDS"
else
    wait "${pids[@]}"
fi
