#!/usr/bin/env bash
# Runs a benchmark against throwaway servers (started in a temp folder, always
# stopped):  scripts/bench.sh store|broker|projections|registry [benchmark arguments...]
# Build is Release (build/release). Figures print beside their baselines.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
name="${1:?usage: scripts/bench.sh store|broker|projections|registry [args...]}"; shift
scripts/deps.sh >/dev/null
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "${SB_JOBS:-2}" --target "bench_$name"
dir="$(mktemp -d "${TMPDIR:-/tmp}/sb-bench.XXXXXX")"
trap 'scripts/servers.sh down "$dir" --kill >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT INT TERM
scripts/servers.sh up "$dir"
set -a; source "$dir/env"; set +a
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
case "$name" in
  store) build/release/bench/store/bench_store "$SB_POSTGRES_URL" "$SB_RABBITMQ_URL" "$@" ;;
  broker) build/release/bench/broker/bench_broker "$SB_RABBITMQ_URL" "$@" ;;
  projections) build/release/bench/projections/bench_projections "$SB_POSTGRES_URL" "$@" ;;
  registry) build/release/bench/registry/bench_registry "$SB_POSTGRES_URL" "$SB_RABBITMQ_URL" "$@" ;;
  *) echo "unknown benchmark '$name' (store, broker, projections, registry)" >&2; exit 2 ;;
esac
