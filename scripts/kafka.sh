#!/usr/bin/env bash
# kafka.sh: a real Apache Kafka 3.9.1 broker for tests (KRaft, one combined broker+controller
# node on 127.0.0.1 with free ports), run from its Maven Central jars with the machine's Java.
# Its config, data and logs live in one state folder; the jars are cached outside the tree.
#
#   scripts/kafka.sh fetch          gather the broker's jars into the cache (reused when complete)
#   scripts/kafka.sh start [DIR]    fetch if needed, start (idempotent), wait until it answers
#                                   metadata requests, create the project's topics, print env
#   scripts/kafka.sh stop [DIR]     SIGTERM, SIGKILL after 30 s; check no process or port is left
#   scripts/kafka.sh status [DIR]   exit 0 when it answers a metadata request
#   scripts/kafka.sh env [DIR]      print DIR/env (KEY=value lines, for `set -a; . FILE`)
#
# DIR defaults to ${SLUICE_STACK_DIR:-REPO/.stack}/kafka; the jar cache to
# ${SLUICE_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/kafka-3.9.1}. The env file
# holds SLUICE_TEST_KAFKA_BROKERS (host:port) and KAFKA_CONTROLLER_PORT.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/proc.sh
. "$REPO/scripts/lib/proc.sh"
KAFKA_VERSION=3.9.1
POM="$REPO/scripts/kafka/pom.xml"
CACHE=${SLUICE_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/kafka-$KAFKA_VERSION}
DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
START_DEADLINE_S=90
STOP_DEADLINE_S=30
# Topics the project uses, as name:partitions.
TOPICS=(sluice.events:3 sluice.dlq:1 sluice.otel.logs:3 sluice.otel.traces:3
    sluice.otel.metrics:3)

usage() {
    echo "usage: $0 fetch | start|stop|status|env [DIR]" >&2
    exit 2
}

log() {
    echo "kafka: $*" >&2
}

need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        log "$1 not found (run scripts/deps.sh)"
        exit 1
    fi
}

ms_since() {
    echo $((($(date +%s%N) - $1) / 1000000))
}

# --- fetch -------------------------------------------------------------------------------

# The marker holds the pom's hash, so editing the pom fetches again.
pom_hash() {
    sha256sum "$POM" | cut -d' ' -f1
}

cache_complete() {
    [[ -f "$CACHE/.complete" && "$(cat "$CACHE/.complete")" == "$(pom_hash)" &&
        -f "$CACHE/kafka_2.13-$KAFKA_VERSION.jar" ]]
}

cmd_fetch() {
    local tmp started count
    if cache_complete; then
        log "jars already in $CACHE"
        return 0
    fi
    need mvn
    mkdir -p "$(dirname "$CACHE")"
    tmp=$(mktemp -d "$CACHE.part.XXXXXX")
    started=$(date +%s%N)
    log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $CACHE"
    # Maven 3.8 prints colour resets even in quiet batch mode: strip them.
    if ! mvn -B -q -Dstyle.color=never -f "$POM" "$DEP_PLUGIN:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 |
        sed -e 's/\x1b\[[0-9;]*m//g' -e '/^$/d' >&2; then
        rm -rf "$tmp"
        log "maven failed"
        exit 1
    fi
    count=$(find "$tmp" -maxdepth 1 -name '*.jar' | wc -l)
    if [[ ! -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" || ! -f "$tmp/reload4j-1.2.25.jar" ]]; then
        rm -rf "$tmp"
        log "maven finished but the broker or reload4j jar is missing"
        exit 1
    fi
    pom_hash >"$tmp/.complete"
    rm -rf "$CACHE"
    mv "$tmp" "$CACHE"
    log "fetched $count jars in $(ms_since "$started") ms"
}

# --- broker ------------------------------------------------------------------------------

read_state() {
    PID=$(cat "$DIR/pid" 2>/dev/null || true)
    PORT=$(sed -n 's/^KAFKA_PORT=//p' "$DIR/ports" 2>/dev/null || true)
    CPORT=$(sed -n 's/^KAFKA_CONTROLLER_PORT=//p' "$DIR/ports" 2>/dev/null || true)
}

# True when pid $1 is our broker (alive, and its command line names our config).
is_ours() {
    pid_has "$1" "$DIR/server.properties"
}

# True when the broker answers a metadata request (all topics: asking for one topic could
# auto-create it).
metadata_ok() {
    [[ -n "$PORT" ]] &&
        kcat -b "127.0.0.1:$PORT" -L -m 3 -X socket.timeout.ms=3000 2>/dev/null |
        grep -q '^ *1 brokers:'
}

write_config() {
    cat >"$DIR/server.properties" <<EOF
# Written by scripts/kafka.sh; rewritten at every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data
auto.create.topics.enable=true
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
# A small single-node test broker.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=67108864
EOF
    cat >"$DIR/log4j.properties" <<EOF
# Written by scripts/kafka.sh: the broker logs to files in the state folder.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$DIR/logs/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
    cat >"$DIR/tools-log4j.properties" <<'EOF'
# Written by scripts/kafka.sh: storage and admin tools print warnings only, to stderr.
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

# Creates topics name:partitions through kafka-clients' Admin API. Kafka 3.9 moved
# TopicCommand out of the broker jar into org.apache.kafka:kafka-tools, which would add
# Kafka Connect, Jetty and Jersey (~50 jars) to the classpath; a few lines of Java run by the
# JDK's source launcher do the same with the jars the broker already has.
write_create_topics() {
    cat >"$DIR/CreateTopics.java" <<'EOF'
// Written by scripts/kafka.sh: creates topics (args: bootstrap name:partitions...), exit 0
// when each one was created or already exists.
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.errors.TopicExistsException;

public class CreateTopics {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        List<NewTopic> topics = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            String[] spec = args[i].split(":");
            topics.add(new NewTopic(spec[0], Integer.parseInt(spec[1]), (short) 1));
        }
        int failed = 0;
        try (Admin admin = Admin.create(props)) {
            Map<String, KafkaFuture<Void>> results = admin.createTopics(topics).values();
            for (Map.Entry<String, KafkaFuture<Void>> r : results.entrySet()) {
                try {
                    r.getValue().get(30, TimeUnit.SECONDS);
                    System.out.println("created " + r.getKey());
                } catch (ExecutionException e) {
                    if (e.getCause() instanceof TopicExistsException) {
                        System.out.println("exists " + r.getKey());
                    } else {
                        System.err.println("failed " + r.getKey() + ": " + e.getCause());
                        failed++;
                    }
                }
            }
        }
        System.exit(failed == 0 ? 0 : 1);
    }
}
EOF
}

java_tool() {
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$DIR/tools-log4j.properties" -cp "$CACHE/*" "$@"
}

write_env() {
    printf 'KAFKA_PORT=%s\nKAFKA_CONTROLLER_PORT=%s\n' "$PORT" "$CPORT" >"$DIR/ports"
    {
        echo "SLUICE_TEST_KAFKA_BROKERS=127.0.0.1:$PORT"
        echo "KAFKA_CONTROLLER_PORT=$CPORT"
    } >"$DIR/env.tmp"
    mv "$DIR/env.tmp" "$DIR/env"
}

# Reports a failed start with the new part of the broker's logs, stops what it started.
fail_start() {
    local f
    log "$1"
    for f in server.log stdout.log; do
        if [[ -s "$DIR/logs/$f" ]]; then
            echo "--- $DIR/logs/$f (this start)" >&2
            tail -c +"$((${LOG_OFFSET[$f]:-0} + 1))" "$DIR/logs/$f" | tail -n 40 >&2
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
    until metadata_ok; do
        if ! is_ours "$PID"; then
            fail_start "broker (pid $PID) exited during start-up"
        fi
        if ((SECONDS >= deadline)); then
            fail_start "no metadata answer from 127.0.0.1:$PORT after ${START_DEADLINE_S}s"
        fi
        sleep 0.2
    done
}

cmd_start() {
    local started t cluster_id stray f
    read_state
    if is_ours "$PID"; then
        wait_ready
        cat "$DIR/env"
        return 0
    fi
    stray=$(pids_with "$DIR/server.properties" | tr '\n' ' ')
    if [[ -n "$stray" ]]; then
        log "a broker with $DIR/server.properties runs without our pid file (pid $stray):" \
            "run stop first"
        exit 1
    fi
    need java
    need kcat
    if ! cache_complete; then
        cmd_fetch
    fi
    started=$(date +%s%N)
    mkdir -p "$DIR/data" "$DIR/logs"
    rm -f "$DIR/pid" "$DIR/env"
    declare -gA LOG_OFFSET=()
    for f in server.log stdout.log; do
        LOG_OFFSET[$f]=$(stat -c %s "$DIR/logs/$f" 2>/dev/null || echo 0)
    done
    # Keep the previous ports when they are still free, so a restart keeps its address.
    PORT=$(pick_port "$PORT")
    CPORT=$(pick_port "$CPORT")
    if [[ "$CPORT" == "$PORT" ]]; then
        CPORT=$(pick_port 0)
    fi
    write_config

    # The cluster id is made once per state folder; formatting an already formatted log
    # folder is skipped (--ignore-formatted), so data survives a restart.
    if [[ ! -s "$DIR/cluster.id" ]]; then
        if ! java_tool kafka.tools.StorageTool random-uuid >"$DIR/cluster.id.tmp"; then
            rm -f "$DIR/cluster.id.tmp"
            log "StorageTool random-uuid failed (remove $CACHE and run: $0 fetch)"
            exit 1
        fi
        mv "$DIR/cluster.id.tmp" "$DIR/cluster.id"
    fi
    cluster_id=$(cat "$DIR/cluster.id")
    if ! java_tool kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$DIR/server.properties" --ignore-formatted >>"$DIR/logs/format.log" 2>&1; then
        tail -n 20 "$DIR/logs/format.log" >&2
        log "formatting $DIR/data failed"
        exit 1
    fi
    t=$(date +%s%N)
    # Own session, so a terminal's Ctrl-C or a test runner's process group does not reach it;
    # $! is the JVM's pid.
    setsid java -Xmx512m -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true -Dkafka.logs.dir="$DIR/logs" \
        -Dlog4j.configuration="file:$DIR/log4j.properties" \
        -cp "$CACHE/*" kafka.Kafka "$DIR/server.properties" \
        </dev/null >>"$DIR/logs/stdout.log" 2>&1 &
    PID=$!
    echo "$PID" >"$DIR/pid"
    printf 'KAFKA_PORT=%s\nKAFKA_CONTROLLER_PORT=%s\n' "$PORT" "$CPORT" >"$DIR/ports"
    wait_ready
    log "broker pid $PID answers on 127.0.0.1:$PORT after $(ms_since "$t") ms"

    t=$(date +%s%N)
    write_create_topics
    if ! java_tool "$DIR/CreateTopics.java" "127.0.0.1:$PORT" "${TOPICS[@]}" >&2; then
        fail_start "creating topics failed"
    fi
    log "topics ready after $(ms_since "$t") ms; started in $(ms_since "$started") ms"
    write_env
    cat "$DIR/env"
}

cmd_stop() {
    local rc=0
    read_state
    stop_marked "$DIR/server.properties" "$PID" "$PORT" "$CPORT" || rc=$?
    rm -f "$DIR/pid" "$DIR/env"
    case $rc in
        0) log "stopped ($DIR)" ;;
        2) log "not running ($DIR)" ;;
        *) exit 1 ;;
    esac
}

cmd_status() {
    read_state
    if is_ours "$PID" && metadata_ok; then
        echo "kafka: running, pid $PID, 127.0.0.1:$PORT"
        return 0
    fi
    echo "kafka: not running ($DIR)"
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
DIR=${2:-${SLUICE_STACK_DIR:-$REPO/.stack}/kafka}
DIR=$(realpath -m "$DIR")

case "$1" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) usage ;;
esac
