#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1, run from the jars
# pinned in kafka/pom.xml. See kafka/README.md.
#
#   bash scripts/kafka.sh start    fetch jars if needed, format storage once, start, wait until
#                                  ready, print KAFKA_BROKERS=127.0.0.1:PORT (the only stdout line)
#   bash scripts/kafka.sh stop     SIGTERM, wait up to KAFKA_STOP_TIMEOUT s, then SIGKILL
#   bash scripts/kafka.sh status   "running pid=N KAFKA_BROKERS=..." (exit 0) or "stopped" (exit 3)
#   bash scripts/kafka.sh reset    stop, then delete kafka/data (next start formats afresh)
#   bash scripts/kafka.sh fetch    only download the jars into kafka/libs
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_START_TIMEOUT (90),
# KAFKA_STOP_TIMEOUT (30), KAFKA_HEAP_OPTS (-Xms128m -Xmx512m), KAFKA_JVM_OPTS (extra flags),
# JAVA_HOME. Progress and errors go to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
KDIR="$ROOT/kafka"
POM="$KDIR/pom.xml"
TEMPLATE="$KDIR/server.properties.template"
LOG4J_CONF="$KDIR/log4j2.xml"
LIBS="$KDIR/libs"
DATA_DIR="$KDIR/data"
LOG_DIR="$KDIR/logs"
RUN_DIR="$KDIR/run"
CONF="$RUN_DIR/server.properties"
PID_FILE="$RUN_DIR/kafka.pid"
ADDR_FILE="$RUN_DIR/kafka.address"
LIBS_STAMP="$LIBS/.fetched-pom.sha256"
SERVER_LOG="$LOG_DIR/server.log"
CONSOLE_LOG="$LOG_DIR/kafka.out"

HOST=127.0.0.1
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
JVM_OPTS="${KAFKA_JVM_OPTS:-}"

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA=java; fi

log() { printf 'kafka: %s\n' "$*" >&2; }
die() { printf 'kafka: error: %s\n' "$*" >&2; exit 1; }

check_port_number() {
  [[ "$2" =~ ^[0-9]+$ ]] && (( $2 > 0 && $2 < 65536 )) || die "$1 must be a TCP port number, got '$2'"
}

kafka_version() {
  local v
  v="$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$POM" | head -n 1)"
  [[ -n "$v" ]] || die "cannot read <kafka.version> from $POM"
  printf '%s' "$v"
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# The broker's pid if it is running: from the PID file, else (lost PID file) by finding a
# kafka.Kafka process started with this checkout's config.
broker_pid() {
  local pid cmd p
  if [[ -f "$PID_FILE" ]]; then
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    if [[ -n "$pid" ]] && is_our_broker "$pid"; then printf '%s' "$pid"; return 0; fi
    rm -f "$PID_FILE" "$ADDR_FILE"
  fi
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" || continue
    if [[ "$cmd" == *" kafka.Kafka $CONF"* ]]; then
      printf '%s\n' "$pid" >"$PID_FILE"
      printf '%s' "$pid"
      return 0
    fi
  done
  return 1
}

is_our_broker() {
  local cmd
  kill -0 "$1" 2>/dev/null || return 1
  cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
  [[ "$cmd" == *" kafka.Kafka $CONF"* ]]
}

running_address() {
  if [[ -s "$ADDR_FILE" ]]; then cat "$ADDR_FILE"; else printf '%s:%s' "$HOST" "$PORT"; fi
}

show_logs() {
  local f
  for f in "$SERVER_LOG" "$CONSOLE_LOG"; do
    if [[ -s "$f" ]]; then
      printf -- '----- last 40 lines of %s -----\n' "$f" >&2
      tail -n 40 "$f" >&2
    fi
  done
}

# Serialize start/stop/reset between concurrent callers.
take_lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w $((START_TIMEOUT + STOP_TIMEOUT + 600)) 9 || die "timed out waiting for another kafka.sh to finish"
  fi
}

need_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (need JDK 17+; set JAVA_HOME or put java on PATH)"
  local major
  major="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -n 1)"
  major="${major#1.}"
  [[ "$major" =~ ^[0-9]+$ ]] && (( major >= 17 )) || die "Kafka 4 needs Java 17+, '$JAVA' is Java ${major:-unknown}"
}

# Download the pinned jars into kafka/libs/ unless they are already there for this pom.xml.
fetch_jars() {
  local version sum tmp mvn_log
  version="$(kafka_version)"
  sum="$(sha256sum "$POM" | cut -d' ' -f1)"
  if [[ -f "$LIBS/kafka_2.13-$version.jar" && -f "$LIBS_STAMP" && "$(cat "$LIBS_STAMP")" == "$sum" ]]; then
    return 0
  fi
  if broker_pid >/dev/null; then die "the broker is running from kafka/libs/; stop it before re-fetching the jars"; fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found: Maven is needed to fetch the Kafka jars (apt-get install maven)"
  log "fetching Apache Kafka $version jars with Maven into kafka/libs/ ..."
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  tmp="$RUN_DIR/libs.partial"
  mvn_log="$LOG_DIR/mvn-fetch.log"
  rm -rf "$tmp"
  if ! mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime </dev/null >"$mvn_log" 2>&1; then
    tail -n 40 "$mvn_log" >&2
    die "Maven could not fetch the Kafka jars (full output: $mvn_log)"
  fi
  [[ -f "$tmp/kafka_2.13-$version.jar" ]] || die "Maven finished but kafka_2.13-$version.jar is missing from $tmp"
  printf '%s\n' "$sum" >"$tmp/.fetched-pom.sha256"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars"
}

render_config() {
  local text
  [[ -f "$TEMPLATE" ]] || die "missing $TEMPLATE"
  text="$(cat "$TEMPLATE")"
  text="${text//@KAFKA_PORT@/$PORT}"
  text="${text//@KAFKA_CONTROLLER_PORT@/$CONTROLLER_PORT}"
  text="${text//@KAFKA_DATA_DIR@/$DATA_DIR}"
  printf '%s\n' "$text" >"$CONF.tmp"
  mv "$CONF.tmp" "$CONF"
}

# One-shot Kafka tool (no log4j2.xml: it would write into the broker's server.log).
java_tool() {
  "$JAVA" -Xmx256m -cp "$LIBS/*" "$@"
}

format_storage() {
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  local cluster_id
  mkdir -p "$DATA_DIR"
  : >"$LOG_DIR/format.log"
  cluster_id="$(java_tool kafka.tools.StorageTool random-uuid </dev/null 2>>"$LOG_DIR/format.log" \
    | grep -E '^[A-Za-z0-9_-]{22}$' | tail -n 1)" || true
  [[ -n "$cluster_id" ]] || die "kafka.tools.StorageTool random-uuid printed no cluster id (see $LOG_DIR/format.log)"
  log "formatting $DATA_DIR (cluster id $cluster_id)"
  java_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$CONF" --ignore-formatted \
    </dev/null >>"$LOG_DIR/format.log" 2>&1 || { cat "$LOG_DIR/format.log" >&2; die "storage format failed"; }
}

# Wait until the broker has logged that it started and the client port accepts connections.
wait_ready() {
  local pid="$1" addr_port="$2" deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE" "$ADDR_FILE"
      show_logs
      die "the broker process (pid $pid) exited during startup"
    fi
    if grep -q 'Kafka Server started' "$SERVER_LOG" 2>/dev/null && port_open "$addr_port"; then
      return 0
    fi
    if (( SECONDS >= deadline )); then
      show_logs
      log "broker not ready after ${START_TIMEOUT}s; stopping it"
      stop_pid "$pid"
      die "timed out waiting for the broker on $HOST:$addr_port (KAFKA_START_TIMEOUT=$START_TIMEOUT)"
    fi
    sleep 0.5
  done
}

stop_pid() {
  local pid="$1" deadline=$((SECONDS + STOP_TIMEOUT))
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS >= deadline )); then
      log "pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$PID_FILE" "$ADDR_FILE"
}

cmd_start() {
  local pid addr running_port
  check_port_number KAFKA_PORT "$PORT"
  check_port_number KAFKA_CONTROLLER_PORT "$CONTROLLER_PORT"
  [[ "$PORT" != "$CONTROLLER_PORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ (both $PORT)"
  take_lock

  if pid="$(broker_pid)"; then
    addr="$(running_address)"
    running_port="${addr##*:}"
    if [[ "$running_port" != "$PORT" ]]; then
      log "already running on $addr (pid $pid); ignoring KAFKA_PORT=$PORT — stop it first to change ports"
    fi
    wait_ready "$pid" "$running_port"
    printf 'KAFKA_BROKERS=%s\n' "$addr"
    return 0
  fi

  port_open "$PORT" && die "port $HOST:$PORT is already in use by another process (not this checkout's broker); set KAFKA_PORT to a free port"
  port_open "$CONTROLLER_PORT" && die "controller port $HOST:$CONTROLLER_PORT is already in use by another process; set KAFKA_CONTROLLER_PORT to a free port"

  need_java
  fetch_jars
  mkdir -p "$LOG_DIR" "$RUN_DIR" "$DATA_DIR"
  render_config
  format_storage

  # Fresh server.log per run so the readiness check only sees this run's lines.
  if [[ -f "$SERVER_LOG" ]]; then mv -f "$SERVER_LOG" "$LOG_DIR/server.previous.log"; fi
  [[ -f "$CONSOLE_LOG" ]] && mv -f "$CONSOLE_LOG" "$LOG_DIR/kafka.previous.out"

  log "starting Apache Kafka $(kafka_version) on $HOST:$PORT (controller $HOST:$CONTROLLER_PORT, logs in kafka/logs/)"
  # shellcheck disable=SC2086  # HEAP_OPTS / JVM_OPTS are word lists on purpose
  nohup "$JAVA" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true $JVM_OPTS \
    -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$LOG_DIR" \
    -cp "$LIBS/*" kafka.Kafka "$CONF" </dev/null >"$CONSOLE_LOG" 2>&1 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  printf '%s:%s' "$HOST" "$PORT" >"$ADDR_FILE"

  local t0=$SECONDS
  wait_ready "$pid" "$PORT"
  log "ready after $((SECONDS - t0))s (pid $pid)"
  printf 'KAFKA_BROKERS=%s:%s\n' "$HOST" "$PORT"
}

cmd_stop() {
  local pid
  take_lock
  if ! pid="$(broker_pid)"; then
    rm -f "$PID_FILE" "$ADDR_FILE"
    log "not running"
    return 0
  fi
  log "stopping broker (pid $pid)"
  stop_pid "$pid"
  log "stopped"
}

cmd_status() {
  local pid
  if pid="$(broker_pid)"; then
    printf 'running pid=%s KAFKA_BROKERS=%s\n' "$pid" "$(running_address)"
  else
    printf 'stopped\n'
    return 3
  fi
}

cmd_reset() {
  cmd_stop
  rm -rf "$DATA_DIR"
  log "deleted kafka/data"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  fetch) take_lock; need_java; fetch_jars ;;
  *) printf 'usage: %s start|stop|status|reset|fetch\n' "$0" >&2; exit 2 ;;
esac
