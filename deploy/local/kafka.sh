#!/usr/bin/env bash
# Real single-node Apache Kafka (KRaft) from Maven Central jars: start | stop | status.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/kafka/pom.xml")
LIB="$CACHE/kafka-$KAFKA_VERSION/lib"
DIR="$RUN/kafka"; PIDFILE="$DIR/kafka.pid"; LOGFILE="$DIR/kafka.log"
LOG4J="-Dlog4j2.configurationFile=$HERE/kafka/log4j2.xml"

fetch_jars() {
  [ -f "$LIB/.complete" ] && return 0
  log "resolving Kafka $KAFKA_VERSION jars from Maven Central into $LIB (once)"
  mkdir -p "$LIB"
  mvn -q -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIB" -DincludeScope=runtime -Dmaven.repo.local="$CACHE/m2"
  touch "$LIB/.complete"
}

start() {
  if port_open "$KAFKA_PORT"; then log "kafka already listening on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  fetch_jars
  mkdir -p "$DIR/data"
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$DIR/data|g" "$HERE/kafka/server.properties.in" >"$DIR/server.properties"
  if [ ! -f "$DIR/data/meta.properties" ]; then
    local cid
    cid=$(java -Xmx128m $LOG4J -cp "$LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java -Xmx256m $LOG4J -cp "$LIB/*" kafka.tools.StorageTool format --standalone -g \
         --cluster-id "$cid" --config "$DIR/server.properties" >"$DIR/format.log" 2>&1
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  nohup java -Xms512m -Xmx512m -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError $LOG4J -cp "$LIB/*" \
       kafka.Kafka "$DIR/server.properties" >"$LOGFILE" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  wait_for_port "$KAFKA_PORT" 120 kafka "$PIDFILE" "$LOGFILE"
  log "kafka ready"
}

case "${1:-start}" in
  start) start ;;
  stop) stop_pid "$PIDFILE" kafka 30 ;;
  status) port_open "$KAFKA_PORT" && echo "kafka up 127.0.0.1:$KAFKA_PORT" || { echo "kafka down"; exit 1; } ;;
  jars) fetch_jars ;;
  *) echo "usage: $0 start|stop|status|jars" >&2; exit 2 ;;
esac
