#!/bin/bash
# Fault hook for test/scsi/vm/pr-aptpl.sh: restarts the lunar serving the scenario's target.
# Environment: LUNAR_CONFIG (config file), LUNAR_DATA (data directory); lunar's pid is read from
# LUNAR_DATA/lunar.pid. Run from the repository root (uses dist/src/cli/lunar.js).
set -eu
: "${LUNAR_CONFIG:?}" "${LUNAR_DATA:?}"
pid=$(cat "$LUNAR_DATA/lunar.pid")
kill "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
node dist/src/cli/lunar.js serve --config "$LUNAR_CONFIG" --data "$LUNAR_DATA" >>"$LUNAR_DATA/serve.log" 2>&1 &
sleep 2
