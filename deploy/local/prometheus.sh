#!/usr/bin/env bash
# Real Prometheus (Debian's prometheus) on loopback: start | stop | status.
# Scrape targets come from file_sd files in $RUN/prometheus/targets/*.json, so tests and
# `flywheel` processes can register themselves without restarting the server; alert rules
# are the ones in deploy/prometheus/rules/, plus any in $RUN/prometheus/rules/ (tests put
# copies with short windows there). `reload` rewrites the config and reloads a running server.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DIR="$RUN/prometheus"; PIDFILE="$DIR/prometheus.pid"; LOGFILE="$DIR/prometheus.log"

install() {
  command -v prometheus >/dev/null && return 0
  log "installing prometheus from Debian packages"
  apt_install prometheus
}

write_config() {
  mkdir -p "$DIR/targets" "$DIR/data" "$DIR/rules"
  cat >"$DIR/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $REPO/deploy/prometheus/rules/*.yml
  - $DIR/rules/*.yml
scrape_configs:
  - job_name: flywheel
    file_sd_configs:
      - files: ['$DIR/targets/*.json']
        refresh_interval: 1s
CONF
}

start() {
  if port_open "$PROMETHEUS_PORT"; then
    log "prometheus already listening on 127.0.0.1:$PROMETHEUS_PORT"
    reload || log "prometheus kept its previous config (see $LOGFILE)"; return 0
  fi
  install; write_config
  log "starting prometheus on 127.0.0.1:$PROMETHEUS_PORT"
  nohup prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
      --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle \
      >"$LOGFILE" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  wait_for_port "$PROMETHEUS_PORT" 60 prometheus "$PIDFILE" "$LOGFILE"
  log "prometheus ready"
}

# reload: a running server picks up a rewritten config and changed rule files.
reload() {
  write_config
  curl -fsS -X POST "http://127.0.0.1:$PROMETHEUS_PORT/-/reload" >/dev/null || { log "prometheus reload failed"; return 1; }
}

case "${1:-start}" in
  start) start ;;
  reload) reload ;;
  stop) stop_pid "$PIDFILE" prometheus 20 ;;
  status) port_open "$PROMETHEUS_PORT" && echo "prometheus up 127.0.0.1:$PROMETHEUS_PORT" || { echo "prometheus down"; exit 1; } ;;
  *) echo "usage: $0 start|reload|stop|status" >&2; exit 2 ;;
esac
