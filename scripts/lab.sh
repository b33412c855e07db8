#!/usr/bin/env bash
# `npm run lab`: meshfleet's main job on its embedded default, the local lab.
# Installs what is missing, builds or reuses the real peers, boots the lab's
# Debian hosts and deploys hosts/lab with the real Pulumi engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node bin/meshfleet.mjs lab up "$@"
