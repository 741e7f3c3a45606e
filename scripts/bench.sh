#!/usr/bin/env bash
# Runs a benchmark against throwaway servers (started in a temp folder, always
# stopped):  scripts/bench.sh store|broker|projections|registry|edge|events [benchmark arguments...]
# Build is Release (build/release, or $SB_BUILD_DIR). Figures print beside their baselines.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
name="${1:?usage: scripts/bench.sh store|broker|projections|registry|edge|events|identity|edge_auth [args...]}"; shift
build="${SB_BUILD_DIR:-build/release}"
scripts/deps.sh >/dev/null
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "${SB_JOBS:-2}" --target "bench_$name"
dir="$(mktemp -d "${TMPDIR:-/tmp}/sb-bench.XXXXXX")"
trap 'scripts/servers.sh down "$dir" --kill >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT INT TERM
scripts/servers.sh up "$dir"
set -a; source "$dir/env"; set +a
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
case "$name" in
  store) "$build"/bench/store/bench_store "$SB_POSTGRES_URL" "$SB_RABBITMQ_URL" "$@" ;;
  broker) "$build"/bench/broker/bench_broker "$SB_RABBITMQ_URL" "$@" ;;
  projections) "$build"/bench/projections/bench_projections "$SB_POSTGRES_URL" "$@" ;;
  registry) "$build"/bench/registry/bench_registry "$SB_POSTGRES_URL" "$SB_RABBITMQ_URL" "$@" ;;
  # Builds and runs sb-store, sb-registry, sb-edge, sb-test-plugin and nginx itself.
  edge) "$build"/bench/edge/bench_edge "$SB_RABBITMQ_URL" "$SB_POSTGRES_URL" "$SB_REDIS_URL" \
          --build "$build" "$@" ;;
  # Builds and runs sb-store and sb-edge itself.
  events) "$build"/bench/events/bench_events "$SB_RABBITMQ_URL" "$SB_POSTGRES_URL" "$SB_REDIS_URL" \
          --build "$build" "$@" ;;
  identity) "$build"/bench/identity/bench_identity "$SB_RABBITMQ_URL" "$SB_POSTGRES_URL" \
    "$SB_REDIS_URL" --build "$build" "$@" ;;
  edge_auth) "$build"/bench/edge_auth/bench_edge_auth "$@" ;;
  *) echo "unknown benchmark '$name' (store, broker, projections, registry, edge, events, identity, edge_auth)" >&2; exit 2 ;;
esac
