#!/bin/sh
set -e
sh -c '[ -c /dev/net/tun ] || modprobe tun 2>/dev/null || true; [ -c /dev/net/tun ] || { echo "meshfleet: lxc-tailscale: the Proxmox node has no /dev/net/tun and modprobe tun failed: its kernel $(uname -r) lacks the tun module (tailscale#16932), so CT 205 cannot get TUN. Load it (modprobe tun; echo tun > /etc/modules-load.d/tun.conf) or boot a kernel that has it, then deploy again" >&2; exit 1; }'
pct set 205 --dev0 /dev/net/tun
