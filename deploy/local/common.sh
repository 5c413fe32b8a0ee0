# Shared helpers for the deploy/local scripts. Sourced, not run.
# Downloads are cached under FLYWHEEL_CACHE (outside the clone); runtime state
# (pids, logs, data) under FLYWHEEL_LOCAL_RUN.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${FLYWHEEL_CACHE:-$HOME/.cache/flywheel}"
RUN="${FLYWHEEL_LOCAL_RUN:-/tmp/flywheel-local}"
KAFKA_PORT="${FLYWHEEL_LOCAL_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${FLYWHEEL_LOCAL_CONTROLLER_PORT:-19093}"
REDIS_PORT="${FLYWHEEL_LOCAL_REDIS_PORT:-16379}"
PROMETHEUS_PORT="${FLYWHEEL_LOCAL_PROMETHEUS_PORT:-19090}"
mkdir -p "$CACHE" "$RUN"

log() { echo "[local] $*" >&2; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive FILE: true when FILE names a live process.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for_port PORT TIMEOUT_S NAME PIDFILE LOGFILE
wait_for_port() {
  local port=$1 timeout_s=$2 name=$3 pidfile=$4 logfile=$5 i
  for ((i = 0; i < timeout_s * 10; i++)); do
    port_open "$port" && return 0
    if ! pid_alive "$pidfile"; then
      log "$name exited during start-up; last log lines:"; tail -n 30 "$logfile" >&2; return 1
    fi
    sleep 0.1
  done
  log "$name not ready on port $port after ${timeout_s}s; last log lines:"; tail -n 30 "$logfile" >&2
  return 1
}

# stop_pid FILE NAME GRACE_S: SIGTERM, wait for a clean exit, then SIGKILL that pid only.
stop_pid() {
  local pidfile=$1 name=$2 grace_s=$3 pid i
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile"); kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace_s * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "$name did not stop in ${grace_s}s; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"; log "$name stopped"
}

# apt_install PKG...: Debian packages; the .deb files stay in apt's cache for the next run.
apt_install() {
  if [ ! -f "$CACHE/.apt-updated" ] || [ -n "$(find "$CACHE/.apt-updated" -mmin +1440 2>/dev/null)" ]; then
    apt-get update -qq && touch "$CACHE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
