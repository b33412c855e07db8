#!/usr/bin/env bash
# Times the end-to-end lab on this machine: a cold `lab up` (after `lab down`:
# fresh hosts, no stack state; the tools and the Debian root stay cached), a
# warm `lab up` (everything already deployed: pulumi up finds no change), and
# `lab check`. Prints one line per phase; the full output goes to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$(mktemp -d)/lab-bench.log}
mf() { node bin/meshfleet.mjs "$@" >>"$OUT" 2>&1; }
phase() {
  local name=$1; shift
  local t0=$(date +%s.%N)
  "$@"; local rc=$?
  printf '%-10s %6.1fs  exit %d\n' "$name" "$(echo "$(date +%s.%N) - $t0" | bc)" "$rc"
}
phase down  mf lab down
phase cold  mf lab up
phase warm  mf lab up
phase check mf lab check
phase report mf lab report
echo "log: $OUT"
