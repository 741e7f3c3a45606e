#!/usr/bin/env bash
# The test harness's server fixture. `up POINTER` starts RabbitMQ, PostgreSQL
# and Redis in a fresh temp folder on free ports and writes that folder's path
# to POINTER (tests read POINTER, then FOLDER/env). `down POINTER` stops them
# and removes the folder. A stale run left by an interrupted one is cleaned
# up first.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:?usage: test-servers.sh up|down POINTER}"
pointer="${2:?usage: test-servers.sh up|down POINTER}"

down() {
  [[ -f "$pointer" ]] || return 0
  local dir; dir="$(cat "$pointer")"
  if [[ -d "$dir" ]]; then
    "$here/servers.sh" down "$dir" --kill || true
    rm -rf "$dir"
  fi
  rm -f "$pointer"
}

case "$cmd" in
  up)
    down
    dir="$(mktemp -d "${TMPDIR:-/tmp}/sb-test.XXXXXX")"
    echo "$dir" >"$pointer"
    started=$SECONDS
    if ! "$here/servers.sh" up "$dir"; then
      echo "test-servers: servers failed to start; logs in $dir/log:" >&2
      tail -n 20 "$dir"/log/*.log >&2 || true
      exit 1
    fi
    echo "test-servers: RabbitMQ, PostgreSQL, Redis up in $((SECONDS - started)) s at $dir"
    ;;
  down) down; echo "test-servers: stopped" ;;
  *) echo "usage: test-servers.sh up|down POINTER" >&2; exit 2 ;;
esac
