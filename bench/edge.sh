#!/usr/bin/env bash
# edge.sh: the edge benchmark (bench/README.md). Starts a private Kafka broker
# (scripts/kafka.sh in a temporary folder) unless SLUICE_BENCH_BROKERS names one, creates a
# tenant and key in a temporary SQLite store, starts sluice-ingest against the broker, and
# measures, in one run on one box:
#   1. the ceiling: librdkafka producing the edge's normalized messages straight to Kafka
#   2. edge events/s, closed loop, 100-event batches (a few connection counts; best = max)
#   3. edge events/s, closed loop, single-event requests
#   4. latency p50/p99 in open loop at 25 %, 50 % and 80 % of (2)
#   5. sluice-ingest's peak RSS (VmHWM)
# then prints a summary with ratios against the ceiling and stops everything it started.
#
#   make && bench/edge.sh
#
# Settings (environment):
#   SLUICE_BENCH_BUILD                build folder holding bin/ and bench/ (REPO/build)
#   SLUICE_BENCH_DURATION_S           seconds per measurement (10)
#   SLUICE_BENCH_BATCH                events per request for 2 and 4 (100)
#   SLUICE_BENCH_EVENT_BYTES          bytes of one event's JSON (300)
#   SLUICE_BENCH_BATCH_CONNECTIONS    connection counts tried for 2 ("16 32 64")
#   SLUICE_BENCH_SINGLE_CONNECTIONS   connections for 3 (256)
#   SLUICE_BENCH_OPEN_CONNECTIONS     most connections for 4 (256; used as needed)
#   SLUICE_BENCH_BROKERS              use this broker instead of starting one
#   SLUICE_BENCH_KEEP=1               keep the work folder (logs, outputs) afterwards; it is
#                                     also kept when a measurement had errors or the run failed
# SLUICE_KAFKA_* and other SLUICE_* settings in the environment reach both sluice-ingest and
# the ceiling, so they always compare the same producer settings.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(realpath -m "${SLUICE_BENCH_BUILD:-$REPO/build}")
BIN=$BUILD/bin
BENCH=$BUILD/bench
DURATION=${SLUICE_BENCH_DURATION_S:-10}
BATCH=${SLUICE_BENCH_BATCH:-100}
EVENT_BYTES=${SLUICE_BENCH_EVENT_BYTES:-300}
BATCH_CONNS=${SLUICE_BENCH_BATCH_CONNECTIONS:-"16 32 64"}
SINGLE_CONNS=${SLUICE_BENCH_SINGLE_CONNECTIONS:-256}
OPEN_CONNS=${SLUICE_BENCH_OPEN_CONNECTIONS:-256}
LOAD_PCTS=(25 50 80)
WARMUP_S=1
CEILING_WARMUP=1000
CLK_TCK=$(getconf CLK_TCK)

WORK=""
HAD_ERRORS=0
LOADAVG=""
INGEST_PID=""
KAFKA_DIR=""
BROKER_PID=""

log() {
    echo "edge.sh: $*" >&2
}

die() {
    log "$*"
    exit 1
}

# True when pid $1 exists and is not a zombie.
alive() {
    local state
    [[ -n "$1" && -r "/proc/$1/stat" ]] || return 1
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n "$state" && "$state" != Z ]]
}

cleanup() {
    local rc=$? deadline
    trap - EXIT INT TERM
    if alive "$INGEST_PID"; then
        kill -TERM "$INGEST_PID" 2>/dev/null || true
        deadline=$((SECONDS + 20))
        while alive "$INGEST_PID" && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if alive "$INGEST_PID"; then
            log "sluice-ingest (pid $INGEST_PID) still running after 20 s: SIGKILL"
            kill -KILL "$INGEST_PID" 2>/dev/null || true
        fi
        wait "$INGEST_PID" 2>/dev/null || true
    fi
    if [[ -n "$KAFKA_DIR" ]]; then
        "$REPO/scripts/kafka.sh" stop "$KAFKA_DIR" >/dev/null 2>&1 ||
            log "stopping the broker in $KAFKA_DIR failed; run: scripts/kafka.sh stop $KAFKA_DIR"
    fi
    if [[ -n "$WORK" ]]; then
        if [[ "${SLUICE_BENCH_KEEP:-0}" == 1 || $rc -ne 0 || $HAD_ERRORS == 1 ]]; then
            log "work folder kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}

# Prints value of KEY from the RESULT line of FILE.
result() {
    sed -n "s/^RESULT.* $2=\([^ ]*\).*/\1/p" "$1" | tail -n 1
}

# CPU ticks (user+system) a process used so far; 0 when unknown.
proc_ticks() {
    if [[ -n "$1" && -r "/proc/$1/stat" ]]; then
        sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
    else
        echo 0
    fi
}

# Busy CPU ticks of the whole box (user nice system irq softirq steal).
box_ticks() {
    awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

now_s() {
    date +%s.%N
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Runs "$@" (a benchmark client whose output ends with a RESULT line) as measurement NAME:
# output to $WORK/NAME.txt (and, without the RESULT line, the terminal); CPU seconds over the
# run to $WORK/NAME.cpu as "wall ingest broker other" (other = the whole box minus
# sluice-ingest, the broker and the client's own cpu_s; "-" when a process is unknown).
measure() {
    local name=$1 t0 t1 i0 i1 b0 b1 x0 x1
    shift
    t0=$(now_s)
    i0=$(proc_ticks "$INGEST_PID")
    b0=$(proc_ticks "$BROKER_PID")
    x0=$(box_ticks)
    "$@" >"$WORK/$name.txt"
    t1=$(now_s)
    i1=$(proc_ticks "$INGEST_PID")
    b1=$(proc_ticks "$BROKER_PID")
    x1=$(box_ticks)
    grep -v '^RESULT' "$WORK/$name.txt" | sed 's/^/    /' >&2
    awk -v t0="$t0" -v t1="$t1" -v di="$((i1 - i0))" -v db="$((b1 - b0))" \
        -v dx="$((x1 - x0))" -v hz="$CLK_TCK" -v own="$(result "$WORK/$name.txt" cpu_s)" \
        -v has_ingest="${INGEST_PID:+1}" -v has_broker="${BROKER_PID:+1}" 'BEGIN {
            other = (dx - di - db) / hz - own
            if (other < 0) other = 0
            si = has_ingest ? sprintf("%.3f", di / hz) : "-"
            sb = has_broker ? sprintf("%.3f", db / hz) : "-"
            printf "%.3f %s %s %.3f\n", t1 - t0, si, sb, other
        }' >"$WORK/$name.cpu"
}

loadgen() {
    "$BENCH/sluice-loadgen" --url "http://127.0.0.1:$PORT/ingest" --key "$KEY" \
        --event-bytes "$EVENT_BYTES" --warmup "$WARMUP_S" "$@"
}

start_broker() {
    if [[ -n "${SLUICE_BENCH_BROKERS:-}" ]]; then
        BROKERS=$SLUICE_BENCH_BROKERS
        BROKER_DESC="$BROKERS (given)"
        return
    fi
    KAFKA_DIR=$WORK/kafka
    log "starting a private Kafka broker in $KAFKA_DIR"
    "$REPO/scripts/kafka.sh" start "$KAFKA_DIR" >"$WORK/kafka-start.txt" ||
        die "the broker did not start (see above)"
    BROKERS=$(sed -n 's/^SLUICE_TEST_KAFKA_BROKERS=//p' "$KAFKA_DIR/env")
    BROKER_PID=$(cat "$KAFKA_DIR/pid")
    BROKER_DESC="$BROKERS (private, pid $BROKER_PID)"
}

create_tenant() {
    export SLUICE_DB=$WORK/sluice.db
    TENANT=$("$BIN/sluice" tenant create bench --tier enterprise)
    # The rate limiter must never be what is measured.
    "$BIN/sluice" tenant set-limits bench --rate-limit 10000000 --burst 10000000 >/dev/null
    KEY=$("$BIN/sluice" key create bench 2>/dev/null)
    [[ "$TENANT" == tn_* && -n "$KEY" ]] || die "could not create the benchmark tenant and key"
}

start_ingest() {
    local deadline
    PORT=$(free_port)
    mkdir -p "$WORK/spool"
    # The edge alone: no loader (Kafka to ClickHouse) and no metrics snapshots in the
    # measured process. Older builds ignore the settings they do not know.
    SLUICE_HTTP_ADDR=127.0.0.1:$PORT SLUICE_SPOOL_DIR=$WORK/spool SLUICE_KAFKA_BROKERS=$BROKERS \
        SLUICE_INGEST_ROLES=edge SLUICE_METRICS_SNAPSHOT_S=0 \
        SLUICE_LOG_LEVEL=${SLUICE_LOG_LEVEL:-warn} \
        "$BIN/sluice-ingest" </dev/null >"$WORK/ingest.log" 2>&1 &
    INGEST_PID=$!
    deadline=$((SECONDS + 30))
    until curl -sf -o /dev/null "http://127.0.0.1:$PORT/health/ready"; do
        if ! alive "$INGEST_PID"; then
            tail -n 20 "$WORK/ingest.log" >&2
            INGEST_PID=""
            die "sluice-ingest exited during start-up"
        fi
        ((SECONDS < deadline)) || die "sluice-ingest not ready after 30 s (see $WORK/ingest.log)"
        sleep 0.1
    done
    log "sluice-ingest pid $INGEST_PID on 127.0.0.1:$PORT, Kafka $BROKERS"
}

# Prints one summary row. Arguments: label, events/s, ratio base (the ceiling's events/s),
# p50, p99, errors, then CPU: wall seconds, the measured process's and the broker's CPU
# seconds, the rest of the box's, and the events they handled (for microseconds per event);
# a "*" after the process's figures marks the ceiling's own CPU.
print_row() {
    awk -v label="$1" -v eps="$2" -v base="$3" -v p50="$4" -v p99="$5" -v err="$6" \
        -v wall="$7" -v proc="$8" -v broker="$9" -v other="${10}" -v events="${11}" \
        -v mark="${12:-}" 'BEGIN {
            ratio = base > 0 ? eps / base : 0
            cpu = sprintf("%s%s/%s/%.0f", proc == "-" ? "-" : sprintf("%.0f", proc / wall * 100),
                mark, broker == "-" ? "-" : sprintf("%.0f", broker / wall * 100),
                other / wall * 100)
            us = sprintf("%s%s/%s",
                proc == "-" || events == 0 ? "-" : sprintf("%.1f", proc / events * 1e6), mark,
                broker == "-" || events == 0 ? "-" : sprintf("%.1f", broker / events * 1e6))
            printf "%-42s %9.0f %6.2f %7s %7s %6d %15s %13s\n", label, eps, ratio, p50, p99,
                err, cpu, us
        }'
}

# A summary row for loadgen measurement NAME.
row() {
    local name=$1 label=$2 ceiling=$3 f=$WORK/$1.txt wall ci cb co
    read -r wall ci cb co <"$WORK/$name.cpu"
    if (($(result "$f" failed) + $(result "$f" late) > 0)); then
        HAD_ERRORS=1
    fi
    print_row "$label" "$(result "$f" events_per_s)" "$ceiling" \
        "$(printf '%.1f' "$(result "$f" p50_ms)")" "$(printf '%.1f' "$(result "$f" p99_ms)")" \
        "$(($(result "$f" failed) + $(result "$f" late)))" \
        "$wall" "$ci" "$cb" "$co" "$(result "$f" all_ok_events)"
}

main() {
    local best_eps=0 best_conns="" eps c pct rate peak_kb rss_kb ceiling value_bytes p99_half
    local label wall ci cb co ceiling_secs ceiling_broker

    for f in "$BIN/sluice" "$BIN/sluice-ingest" "$BENCH/sluice-loadgen" "$BENCH/sluice-ceiling"; do
        [[ -x "$f" ]] || die "$f is missing: build first (make), or set SLUICE_BENCH_BUILD"
    done
    command -v curl >/dev/null || die "curl not found (run scripts/deps.sh)"
    command -v python3 >/dev/null || die "python3 not found"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
    log "work folder $WORK; load average before: $LOADAVG"

    start_broker
    create_tenant
    "$BENCH/sluice-loadgen" --print-body --batch "$BATCH" --event-bytes "$EVENT_BYTES" \
        >"$WORK/body.json"

    log "1. ceiling: librdkafka straight to Kafka, ${DURATION} s"
    measure ceiling env SLUICE_KAFKA_BROKERS="$BROKERS" "$BENCH/sluice-ceiling" \
        --body "$WORK/body.json" --tenant "$TENANT" --duration "$DURATION" \
        --warmup "$CEILING_WARMUP"
    ceiling=$(result "$WORK/ceiling.txt" messages_per_s)
    value_bytes=$(result "$WORK/ceiling.txt" value_bytes)

    start_ingest
    log "warm-up (2 s, not measured)"
    loadgen --connections 16 --batch "$BATCH" --duration 2 --warmup 0 >/dev/null

    for c in $BATCH_CONNS; do
        log "2. edge, closed loop, $BATCH-event batches, $c connections, ${DURATION} s"
        measure "batch_c$c" loadgen --connections "$c" --batch "$BATCH" --duration "$DURATION"
        eps=$(result "$WORK/batch_c$c.txt" events_per_s)
        if awk -v a="$eps" -v b="$best_eps" 'BEGIN { exit !(a > b) }'; then
            best_eps=$eps
            best_conns=$c
        fi
    done
    awk -v e="$best_eps" 'BEGIN { exit !(e > 0) }' || die "the edge accepted no events"

    log "3. edge, closed loop, single-event requests, $SINGLE_CONNS connections, ${DURATION} s"
    measure single loadgen --connections "$SINGLE_CONNS" --batch 1 --duration "$DURATION"

    for pct in "${LOAD_PCTS[@]}"; do
        rate=$(awk -v e="$best_eps" -v p="$pct" 'BEGIN { printf "%.0f", e * p / 100 }')
        log "4. edge, open loop at $pct % of the maximum ($rate events/s), ${DURATION} s"
        measure "open_$pct" loadgen --connections "$OPEN_CONNS" --batch "$BATCH" \
            --duration "$DURATION" --rate "$rate"
    done

    peak_kb=$(awk '/^VmHWM:/{print $2}' "/proc/$INGEST_PID/status")
    rss_kb=$(awk '/^VmRSS:/{print $2}' "/proc/$INGEST_PID/status")

    echo
    echo "sluice edge benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs (load average" \
        "$LOADAVG before the run), Kafka $BROKER_DESC"
    echo "requests of $BATCH events of ~$(result "$WORK/batch_c$best_conns.txt" event_bytes)" \
        "bytes (1 for single events); ~$value_bytes bytes each on Kafka (normalized);" \
        "${DURATION} s per measurement"
    echo "producer: SLUICE_KAFKA_* as in the environment (defaults: acks=all, idempotent," \
        "lz4, linger 5 ms, key tenant)"
    echo
    printf "%-42s %9s %6s %7s %7s %6s %15s %13s\n" "measurement" "events/s" "ratio" \
        "p50 ms" "p99 ms" "errors" "cpu %" "cpu us/event"
    printf "%-42s %9s %6s %7s %7s %6s %15s %13s\n" "" "" "" "" "" "" \
        "edge/kafka/rest" "edge/kafka"
    read -r wall _ cb co <"$WORK/ceiling.cpu"
    # The ceiling's own CPU covers only its timed part; scale the broker's and the rest's,
    # which cover the whole run (warm-up, start and flush), to that part.
    ceiling_secs=$(result "$WORK/ceiling.txt" seconds)
    ceiling_broker=$(awk -v b="$cb" -v w="$wall" -v s="$ceiling_secs" \
        'BEGIN { if (b == "-") print "-"; else printf "%.3f", b * s / w }')
    print_row "ceiling: librdkafka straight to Kafka" "$ceiling" "$ceiling" - - \
        "$(result "$WORK/ceiling.txt" failed)" "$ceiling_secs" \
        "$(result "$WORK/ceiling.txt" cpu_s)" "$ceiling_broker" \
        "$(awk -v o="$co" -v w="$wall" -v s="$ceiling_secs" 'BEGIN { printf "%.3f", o * s / w }')" \
        "$(result "$WORK/ceiling.txt" delivered)" "*"
    for c in $BATCH_CONNS; do
        label="edge: batch $BATCH, closed, $c conns"
        [[ "$c" != "$best_conns" ]] || label="$label (max)"
        row "batch_c$c" "$label" "$ceiling"
    done
    row single "edge: single events, closed, $SINGLE_CONNS conns" "$ceiling"
    for pct in "${LOAD_PCTS[@]}"; do
        rate=$(awk -v e="$best_eps" -v p="$pct" 'BEGIN { printf "%.0f", e * p / 100 }')
        row "open_$pct" "edge: batch $BATCH, open, $pct% = $rate ev/s" "$ceiling"
    done
    echo
    cat <<'EOF'
ratio: events/s over the ceiling's. errors: non-2xx answers, connection failures, timeouts
  and (open loop) requests never sent.
cpu %: of one core during the measurement. edge = sluice-ingest (* = the ceiling itself),
  kafka = the broker, rest = the rest of the box but the load generator (others' work).
cpu us/event: CPU time per event answered 2xx (per message delivered for the ceiling).
EOF
    awk -v kb="$peak_kb" -v now="$rss_kb" 'BEGIN {
        printf "peak RSS of sluice-ingest (VmHWM): %.1f MB (%.1f MB at the end)\n",
            kb / 1024, now / 1024 }'
    p99_half=$(result "$WORK/open_50.txt" p99_ms)
    # On a shared box events/s follow whatever CPU others leave; CPU per event does not.
    # If both sides were CPU-bound on the same cores, their rates would stand in the inverse
    # ratio of their CPU per event (producer plus broker for each).
    read -r _ ci cb _ <"$WORK/batch_c$best_conns.cpu"
    awk -v cc="$(result "$WORK/ceiling.txt" cpu_s)" -v cb="$ceiling_broker" \
        -v cn="$(result "$WORK/ceiling.txt" delivered)" -v ei="$ci" -v eb="$cb" \
        -v en="$(result "$WORK/batch_c$best_conns.txt" all_ok_events)" 'BEGIN {
            if (cb == "-" || eb == "-" || cn == 0 || en == 0) exit
            c = (cc + cb) / cn * 1e6
            e = (ei + eb) / en * 1e6
            printf "cpu per event, producer + broker: ceiling %.1f us, edge %.1f us (batches);" \
                " if both were CPU-bound: edge/ceiling = %.2f\n", c, e, c / e
        }'
    echo
    echo "targets:"
    awk -v e="$best_eps" -v c="$ceiling" -v p99="$p99_half" -v kb="$peak_kb" 'BEGIN {
        r = c > 0 ? e / c : 0
        v1 = (r >= 0.5) ? "met" : "MISSED"
        v2 = (p99 < 50) ? "met" : "MISSED"
        v3 = (kb / 1024 < 200) ? "met" : "MISSED"
        printf "  batches >= 0.5 x ceiling      %5.2f x     %s\n", r, v1
        printf "  p99 < 50 ms at 50%% of max     %5.1f ms    %s\n", p99, v2
        printf "  peak RSS < 200 MB             %5.1f MB    %s\n", kb / 1024, v3
    }'
}

main "$@"
