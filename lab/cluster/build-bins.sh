#!/usr/bin/env bash
# Builds the real cluster components the lab and the e2e tests run, once, into a cache
# folder, and reuses them after that:
#   etcd, kube-apiserver, kube-controller-manager, kubectl  (pinned wrapper modules in gomod/)
#   flanneld (its module source, see build_flanneld), cnitool (go install, pinned)
# Prints the folder holding the binaries on its last line of stdout.
# PODSWITCH_CACHE overrides the cache root (default: $XDG_CACHE_HOME or ~/.cache, /podswitch).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
FLANNEL_VERSION=v0.28.10
CNI_VERSION=v1.3.1

cache="${PODSWITCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podswitch}"
bin="$cache/cluster-bins/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-flannel-$FLANNEL_VERSION-cni-$CNI_VERSION"
mkdir -p "$bin"

if ! command -v go >/dev/null 2>&1; then
  echo "build-bins: missing command go (Debian package golang-go, or the machine's Go): needed to build the cluster components" >&2
  exit 1
fi
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"

# build NAME WHAT... : runs WHAT unless $bin/NAME exists; says what it builds and how long it took.
build() {
  local name="$1"; shift
  if [ -x "$bin/$name" ]; then return 0; fi
  local t0=$SECONDS
  echo "build-bins: building $name ($*) ..." >&2
  # Progress: a line per minute, so a multi-minute first build is visibly alive.
  ( while sleep 60; do echo "build-bins:   ... $name still building, $((SECONDS - t0)) s" >&2; done ) &
  local ticker=$!
  if ! "$@" >&2; then
    kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
    echo "build-bins: building $name failed" >&2
    return 1
  fi
  kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
  echo "build-bins: built $name in $((SECONDS - t0)) s" >&2
}

in_mod() { local dir="$1"; shift; (cd "$here/gomod/$dir" && "$@"); }

build etcd in_mod etcd go build -trimpath -ldflags=-s -o "$bin/etcd" go.etcd.io/etcd/server/v3
build kube-apiserver in_mod kubernetes go build -trimpath -ldflags=-s -o "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager in_mod kubernetes go build -trimpath -ldflags=-s -o "$bin/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
build kubectl in_mod kubernetes go build -trimpath -ldflags=-s -o "$bin/kubectl" k8s.io/kubernetes/cmd/kubectl
# flanneld from its module source, minus the Tencent Cloud VPC backend: main.go imports it
# unconditionally and the module proxy does not serve its SDK (403). cgo is on for the udp
# backend, as in flannel's own build.
build_flanneld() {
  local src work
  src=$(go mod download -json "github.com/flannel-io/flannel@$FLANNEL_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  work=$(mktemp -d)
  cp -r "$src/." "$work/" && chmod -R u+w "$work"
  sed -i '/pkg\/backend\/tencentvpc"/d' "$work/main.go"
  rm -rf "$work/pkg/backend/tencentvpc"
  (cd "$work" && go mod edit -droprequire github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc \
    -droprequire github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common &&
    CGO_ENABLED=1 go build -trimpath -ldflags=-s -mod=mod -o "$bin/flanneld" .)
  local rc=$?
  rm -rf "$work"
  return $rc
}
build flanneld build_flanneld
build cnitool env GOBIN="$bin" go install -trimpath -ldflags=-s "github.com/containernetworking/cni/cnitool@$CNI_VERSION"
echo "$bin"
