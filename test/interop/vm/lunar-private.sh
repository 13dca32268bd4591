#!/bin/bash
# Manage a PRIVATE lunar target for the open-iscsi VM scenarios (../shared/vm-initiator) and
# their fault hooks. Only signals the pid it recorded itself.
#   lunar-private.sh start|stop|restart|kill9-restart|status
# Env: LUNAR_PORT (3460) LUNAR_PORT2 (second portal, group 2, for multipath) LUNAR_IQN
#      (iqn.2026-11.test:lunar-vm) LUNAR_DIR (/tmp/lunar-vm-$PORT) LUNAR_SIZE (1G)
#      LUNAR_LUN (1) LUNAR_DOWN (seconds down on restart, 3) LUNAR_DIGEST (e.g. None,CRC32C)
#      LUNAR_CHAP_USER/LUNAR_CHAP_SECRET (one-way CHAP) LUNAR_MUTUAL_USER/LUNAR_MUTUAL_SECRET
#      LUNAR_DIRECT (true) LUNAR_EXTRA (YAML lines appended to the LUN entry)
#      LUNAR_ALUA (YAML flow map for the target's alua field, e.g. "{ groups: { 1: active-optimized, 2: standby }, explicit: true }")
# restart = SIGTERM (clean stop, async logout) then start; kill9-restart = SIGKILL then start on
# the same data directory (what the reconnect acceptance asks for).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PORT=${LUNAR_PORT:-3460} PORT2=${LUNAR_PORT2:-} IQN=${LUNAR_IQN:-iqn.2026-11.test:lunar-vm}
DIR=${LUNAR_DIR:-/tmp/lunar-vm-$PORT} SIZE=${LUNAR_SIZE:-1G} LUN=${LUNAR_LUN:-1} DOWN=${LUNAR_DOWN:-3}
PIDF=$DIR/hook.pid
mkdir -p "$DIR"

running() { [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; }

write_config() {
  [ -f "$DIR/lunar.yaml" ] && return 0   # keep LU ids across restarts
  {
    echo "portals:"
    echo "  - { listen: 127.0.0.1:$PORT, group: 1 }"
    if [ -n "$PORT2" ]; then echo "  - { listen: 127.0.0.1:$PORT2, group: 2 }"; fi
    echo "targets:"
    echo "  - name: $IQN"
    echo "    acl: { initiators: ALL, addresses: ALL }"
    if [ -n "${LUNAR_CHAP_USER:-}" ]; then
      echo "    chap:"
      echo "      users: [{ user: \"$LUNAR_CHAP_USER\", secret: \"$LUNAR_CHAP_SECRET\" }]"
      if [ -n "${LUNAR_MUTUAL_USER:-}" ]; then echo "      mutual: { user: \"$LUNAR_MUTUAL_USER\", secret: \"$LUNAR_MUTUAL_SECRET\" }"; fi
    fi
    if [ -n "${LUNAR_ALUA:-}" ]; then echo "    alua: $LUNAR_ALUA"; fi
    if [ -n "${LUNAR_DIGEST:-}" ]; then
      echo "    params: { HeaderDigest: \"$LUNAR_DIGEST\", DataDigest: \"$LUNAR_DIGEST\" }"
    fi
    echo "    luns:"
    echo "      - lun: $LUN"
    echo "        backstore: file"
    echo "        path: lun.img"
    echo "        size: $SIZE"
    echo "        direct: ${LUNAR_DIRECT:-true}"
    if [ -n "${LUNAR_EXTRA:-}" ]; then printf '%s\n' "$LUNAR_EXTRA"; fi
  } > "$DIR/lunar.yaml"
}

start() {
  running && { echo "lunar-private already running pid $(cat "$PIDF")"; return 0; }
  write_config
  touch "$DIR/lunar.log"; local from; from=$(( $(wc -l < "$DIR/lunar.log") + 1 ))
  setsid node "$ROOT/bin/lunar.cjs" serve --config "$DIR/lunar.yaml" --data "$DIR" >> "$DIR/lunar.log" 2>&1 < /dev/null &
  echo $! > "$PIDF"
  for _ in $(seq 1 100); do
    if tail -n "+$from" "$DIR/lunar.log" | grep -q "listening on 127.0.0.1:$PORT" && running; then
      echo "lunar-private up pid $(cat "$PIDF") port $PORT"; return 0
    fi
    running || { echo "lunar-private died:"; tail -20 "$DIR/lunar.log"; return 1; }
    sleep 0.1
  done
  echo "lunar-private did not listen on $PORT in 10 s"; tail -20 "$DIR/lunar.log"; return 1
}

stop_sig() {
  local sig=$1
  running || { rm -f "$PIDF"; return 0; }
  local pid; pid=$(cat "$PIDF")
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDF"
}

case "${1:-}" in
  start) start ;;
  stop) stop_sig TERM ;;
  restart) stop_sig TERM; sleep "$DOWN"; start ;;
  kill9-restart) stop_sig KILL; sleep "$DOWN"; start ;;
  status) running && echo "running pid $(cat "$PIDF")" || { echo "stopped"; exit 1; } ;;
  clean) stop_sig TERM; rm -rf "$DIR" ;;
  *) echo "usage: $0 start|stop|restart|kill9-restart|status|clean" >&2; exit 2 ;;
esac
