#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every tier.
#   1. unit tests, built with AddressSanitizer + UndefinedBehaviorSanitizer;
#   2. integration and end-to-end tests (Release build) against real
#      RabbitMQ, PostgreSQL and Redis that the ctest fixture starts on free
#      ports in a temp folder and always stops (this script also stops them
#      if the run is interrupted).
# Options via environment: SB_JOBS (default 2), SB_TEST_FILTER (ctest -R regex).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs="${SB_JOBS:-2}"
filter=()
[[ -n "${SB_TEST_FILTER:-}" ]] && filter=(-R "$SB_TEST_FILTER")
started=$SECONDS
stamp() { echo "== [$((SECONDS - started)) s] $*"; }

stamp "dependencies"
scripts/deps.sh

stamp "build: asan (unit tests)"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSB_SANITIZE=ON \
  -DSB_BUILD_BENCH=OFF -DSB_TEST_TIERS=unit >/dev/null
cmake --build build/asan -j "$jobs" --target unit_tests

stamp "build: release (services, integration, e2e, benchmarks)"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release "-DSB_TEST_TIERS=integration;e2e" >/dev/null
cmake --build build/release -j "$jobs"

trap 'scripts/test-servers.sh down "$root/build/release/test-servers.path" >/dev/null 2>&1 || true' EXIT INT TERM

summary=()
run_ctest() { # dir label...
  local dir="$1"; shift
  local log; log="$(mktemp)"
  set +e
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$jobs" "${filter[@]}" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  summary+=("$(grep -E 'tests passed, [0-9]+ tests? failed out of' "$log" | tail -1)")
  rm -f "$log"
  return "$rc"
}

rc=0
stamp "unit tests (ASan+UBSan)"
run_ctest build/asan -L unit || rc=1
stamp "integration + e2e tests (real RabbitMQ, PostgreSQL, Redis)"
run_ctest build/release -L 'integration|e2e' || rc=1

passed=0; failed=0
for line in "${summary[@]}"; do
  if [[ "$line" =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
    failed=$((failed + BASH_REMATCH[1])); passed=$((passed + BASH_REMATCH[2] - BASH_REMATCH[1]))
  fi
done
stamp "done"
echo "unit: ${summary[0]:-none}"
echo "integration+e2e: ${summary[1]:-none}"
echo "tests: $passed passed, $failed failed"
exit "$rc"
