#!/bin/sh
ethtool -K eth0 rx-udp-gro-forwarding on rx-gro-list off || true  # UDP GRO forwarding on eth0 for subnet-router throughput
sh -c 'sshd -t && systemctl reload ssh' || true  # reload sshd after its drop-in changed
