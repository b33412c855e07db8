#!/usr/bin/env bash
# `npm test`: install what is missing, then run every suite (unit, golden,
# real-tool, lab). Lab suites need root; CI runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
printf '[meshfleet test] running the tests (vitest)\n' >&2
exec npx vitest run "$@"
