#!/usr/bin/env bash
# `npm test`: install what is missing, then run every suite (unit, golden,
# real-tool, lab). Lab suites need root; CI runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -eq 0 ]; then
  # Every file, in lanes side by side (scripts/test-lanes.mjs says how they are
  # kept apart); MESHFLEET_TEST_LANES=1 runs them all in one.
  printf '[meshfleet test] running the tests (vitest, in lanes)\n' >&2
  exec node scripts/test-lanes.mjs
fi
printf '[meshfleet test] running the tests (vitest %s)\n' "$*" >&2
exec npx vitest run "$@"
