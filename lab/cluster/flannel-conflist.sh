#!/usr/bin/env bash
# Prints the CNI configuration list of a flannel node, made from the subnet file flanneld
# wrote, the way flannel's own CNI plugin delegates: the reference bridge plugin (cni0,
# gateway and default route, hairpin, MTU FLANNEL_MTU, no masquerade when flanneld does it) with host-local
# IPAM over FLANNEL_SUBNET and a route to FLANNEL_NETWORK. host-local keeps its leases in
# IPAM_DIR (one per lab node: the nodes share the host's file system). The bridge declares
# the "ips" capability so a pod can ask for its address (the lab's demo pods do).
# Usage: flannel-conflist.sh SUBNET_FILE IPAM_DIR
set -euo pipefail
subnet_file=${1:?usage: flannel-conflist.sh SUBNET_FILE IPAM_DIR}
ipam_dir=${2:?usage: flannel-conflist.sh SUBNET_FILE IPAM_DIR}
# shellcheck disable=SC1090 # flanneld's output: FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ
source "$subnet_file"
# host-local wants the network address (flannel's plugin parses FLANNEL_SUBNET as a CIDR).
subnet=$(python3 -c 'import ipaddress, sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$FLANNEL_SUBNET")
masq=true
[ "${FLANNEL_IPMASQ:-false}" = true ] && masq=false
cat <<EOF2
{
  "cniVersion": "1.0.0",
  "name": "cbr0",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "isDefaultGateway": true,
      "hairpinMode": true,
      "ipMasq": $masq,
      "mtu": $FLANNEL_MTU,
      "capabilities": {"ips": true},
      "ipam": {
        "type": "host-local",
        "dataDir": "$ipam_dir",
        "ranges": [[{"subnet": "$subnet"}]],
        "routes": [{"dst": "$FLANNEL_NETWORK"}]
      }
    }
  ]
}
EOF2
