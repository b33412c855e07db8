#!/bin/sh
set -e
pct set 205 --dev0 /dev/net/tun
sh -c 'if pct status 205 | grep -q running; then pct reboot 205; else pct start 205; fi'
