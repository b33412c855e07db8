#!/usr/bin/env bash
# Installs what meshfleet's tests and lab need, saying what it does:
# npm packages, Debian packages, and the Go-built tools (cached outside the repo).
# Idempotent: a second run with everything present takes a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[meshfleet setup] %s\n' "$*" >&2; }

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (npm ci: exactly what package-lock.json pins, the lock file untouched)"
  # npm ci never rewrites package-lock.json, so a fresh clone stays clean
  # (git status shows nothing after setup). The committed lock file carries
  # every platform's optional packages, so npm ci accepts it anywhere.
  npm ci --no-audit --no-fund --loglevel=error
fi

need=()
for pair in caddy:caddy nginx:nginx nft:nftables ip:iproute2 debootstrap:debootstrap \
            systemd-nspawn:systemd-container ssh:openssh-client ssh-keygen:openssh-client \
            chromium:chromium openssl:openssl sqlite3:sqlite3 ps:procps \
            prometheus-node-exporter:prometheus-node-exporter flock:util-linux unshare:util-linux \
            sshd:openssh-server ansible-playbook:ansible-core ethtool:ethtool \
            pg_ctlcluster:postgresql psql:postgresql-client dpkg-scanpackages:dpkg-dev; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing Debian packages: ${need[*]} — run as root, or: sudo apt-get install ${need[*]}"
    exit 1
  fi
  say "installing Debian packages: ${need[*]}"
  # Packages like nginx and caddy start a service on install; the tests only
  # run their binaries, so keep the services from starting (policy-rc.d).
  had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ $had_policy = 1 ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
fi

# The lab's cached pieces (under ~/.cache/meshfleet/lab, or MESHFLEET_LAB_CACHE):
# the Debian root the hosts boot from, the docker layer above it, and the .debs
# lab tests install on hosts. Fetched here once, so lab tests download nothing;
# each is checked against its marker and skipped when present.
if [ "$(id -u)" = 0 ]; then
  say "preparing the lab's cached pieces (lab root, docker layer, .debs for lab tests)"
  node --import tsx lab/hosts/prepare.ts
else
  say "skipping the lab's cached pieces: they need root (debootstrap, mount, chroot), as the lab tests do"
fi

if ! command -v go >/dev/null 2>&1; then
  say "Go is missing: the real peers (headscale, tailscale, derper, pulumi) are built from Go modules; install Go >= 1.24 (apt-get install golang-go, or go.dev)"
  exit 1
fi
say "building or reusing the Go-built tools (meshfleet tools build)"
# headscale, tailscale (with derper) and the pulumi CLI: everything the deploy
# needs. Pulumi needs no plugin from here: meshfleet's program runs inline
# (Automation API) and its provider ships in provider/.
node bin/meshfleet.mjs tools build

# The prebuilt CLI: `meshfleet` then starts without compiling TypeScript
# (bin/meshfleet.mjs checks it against the sources on every run and falls back
# to tsx when it is stale or missing, so a failure here only costs start-up time).
say "building the prebuilt CLI (npm run build:cli)"
if ! node cli/build.mjs >/dev/null; then
  say "warning: the prebuilt CLI did not build; meshfleet runs through tsx (slower start)"
fi
