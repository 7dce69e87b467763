#!/usr/bin/env bash
# Prints node N's template for podswitch-controller (TOML): the node-local facts the
# cluster does not know, from lab/topology.sh. The controller adds the podCIDR, the
# cluster network and overlay (net-conf.json), peers and Services.
# Usage: node-template.sh N
set -euo pipefail
# shellcheck source=lab/topology.sh
source "$(dirname "$0")/../topology.sh"
n=${1:?usage: node-template.sh N}
cat <<EOF2
[node]
name = "$(topo_node_name "$n")"
address = "${TOPO_ADDR[$n]}"
gateway_mac = "${TOPO_GATEWAY_MAC[$n]}"
vtep_mac = "${TOPO_VTEP_MAC[$n]}"
proxy_arp = false

[uplink]
name = "eth0"
mac = "${TOPO_UPLINK_MAC[$n]}"
mtu = 1500
# The fabric host is the node's default gateway (its MAC is learned from the kernel's ARP).
gateway = "$TOPO_FABRIC_IP"

[host]
name = "psw-host"
mac = "${TOPO_HOST_MAC[$n]}"
mtu = 1500
EOF2
