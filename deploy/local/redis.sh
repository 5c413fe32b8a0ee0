#!/usr/bin/env bash
# Real Redis (Debian's redis-server) on loopback: start | stop | status.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DIR="$RUN/redis"; PIDFILE="$DIR/redis.pid"; LOGFILE="$DIR/redis.log"

install() {
  command -v redis-server >/dev/null && return 0
  log "installing redis-server from Debian packages"
  apt_install redis-server
}

start() {
  if port_open "$REDIS_PORT"; then log "redis already listening on 127.0.0.1:$REDIS_PORT"; return 0; fi
  install; mkdir -p "$DIR"
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR" --save "" --appendonly no \
      --daemonize yes --pidfile "$PIDFILE" --logfile "$LOGFILE"
  for _ in $(seq 50); do [ -f "$PIDFILE" ] && break; sleep 0.1; done
  wait_for_port "$REDIS_PORT" 30 redis "$PIDFILE" "$LOGFILE"
  log "redis ready"
}

case "${1:-start}" in
  start) start ;;
  stop) stop_pid "$PIDFILE" redis 10 ;;
  status) port_open "$REDIS_PORT" && echo "redis up 127.0.0.1:$REDIS_PORT" || { echo "redis down"; exit 1; } ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
