#!/usr/bin/env bash
# Throwaway certificates and kubeconfigs for the lab cluster (openssl, ECDSA P-256, one day):
#   ca.{crt,key}              the cluster CA (client and serving certificates)
#   apiserver.{crt,key}       kube-apiserver's serving cert: 192.168.1.1, 10.96.0.1, 127.0.0.1,
#                             localhost and the kubernetes.default.svc names
#   sa.{key,pub}              the service-account signing key pair
#   admin.kubeconfig          user admin, group system:masters (kubectl, the lab scripts,
#                             podswitch-controller and flanneld)
#   kube-controller-manager.kubeconfig   user system:kube-controller-manager
#   NODE.kubeconfig           user system:node:NODE, group system:nodes, for each NODE
#                             argument (the lab node agents: Node authorization)
# Usage: lab/cluster/certs.sh DIR NODE...
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lab/topology.sh
source "$here/../topology.sh"
dir=${1:?usage: certs.sh DIR NODE...}
shift
mkdir -p "$dir"
cd "$dir"
server="https://$TOPO_FABRIC_IP:$TOPO_APISERVER_PORT"

key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }

openssl_quiet() { "$@" >/dev/null 2>&1 || { echo "certs: failed: $*" >&2; "$@"; exit 1; }; }

key ca.key
openssl_quiet openssl req -x509 -new -key ca.key -sha256 -days 1 -subj "/CN=podswitch-lab-ca" -out ca.crt

# sign NAME SUBJECT EXTFILE-CONTENT
sign() {
  local name=$1 subj=$2 ext=$3
  key "$name.key"
  openssl_quiet openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
  printf '%s\n' "$ext" >"$name.ext"
  openssl_quiet openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -days 1 -sha256 -extfile "$name.ext" -out "$name.crt"
  rm -f "$name.csr" "$name.ext"
}

client_ext="keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
sign apiserver "/CN=kube-apiserver" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$TOPO_FABRIC_IP,IP:$TOPO_SERVICE_FIRST_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"

openssl_quiet openssl genrsa -out sa.key 2048
openssl_quiet openssl rsa -in sa.key -pubout -out sa.pub

# kubeconfig NAME: NAME.kubeconfig with the client cert NAME.{crt,key} embedded.
kubeconfig() {
  local name=$1 user=$2
  cat >"$name.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: podswitch-lab
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 ca.crt)
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$name.crt")
    client-key-data: $(base64 -w0 "$name.key")
contexts:
- name: podswitch-lab
  context: {cluster: podswitch-lab, user: $user}
current-context: podswitch-lab
KC
}

sign admin "/O=system:masters/CN=admin" "$client_ext"
kubeconfig admin admin
sign kube-controller-manager "/CN=system:kube-controller-manager" "$client_ext"
kubeconfig kube-controller-manager system:kube-controller-manager
for node in "$@"; do
  sign "$node" "/O=system:nodes/CN=system:node:$node" "$client_ext"
  kubeconfig "$node" "system:node:$node"
done
chmod 600 ./*.key ./*.kubeconfig
echo "certs: wrote $dir (CA, apiserver, service-account keys, admin, kube-controller-manager${*:+, nodes: $*})" >&2
