#!/usr/bin/env bash
# Stops exactly what scripts/run.sh started (by its pid files in .run/):
# platform processes first (SIGTERM = drain, then exit), then the servers.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run="$root/.run"
[[ -d "$run" ]] || { echo "stop: nothing was started here"; exit 0; }

for pidf in "$run"/pids/*.pid; do
  [[ -f "$pidf" ]] || continue
  name="$(basename "$pidf" .pid)"; pid="$(cat "$pidf")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "stop: $name did not drain in 20 s; killing"; kill -KILL "$pid" || true
    else
      echo "stop: $name stopped"
    fi
  fi
  rm -f "$pidf"
done
"$root/scripts/servers.sh" down "$run/servers"
echo "stop: servers stopped (data kept in $run/servers; delete it for a clean slate)"
