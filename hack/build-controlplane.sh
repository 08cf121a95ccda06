#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and etcd from the Go module proxy into
# $CACHE/bin. Both upstream modules carry relative `replace` directives that Go ignores in a dependency,
# so each gets a throw-away wrapper module that pins the sibling modules to their published versions.
# `hack/build-controlplane.sh node` builds what a local node adds instead (kubelet, kube-scheduler, kube-proxy), from
# the same release, into the same directory, with a stamp of its own.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.7.0}
CACHE=${CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache/controlplane}
BIN="$CACHE/bin"
PART=${1:-controlplane}
case "$PART" in
  controlplane)
    STAMP="$BIN/.versions" WANT="kubernetes=$K8S_VERSION etcd=$ETCD_VERSION"
    BINARIES=(kube-apiserver kube-controller-manager kubectl etcd)
    COMMANDS=(cmd/kube-apiserver cmd/kube-controller-manager cmd/kubectl)
    TOOLS=(k8s.io/kubernetes/cmd/kube-apiserver/app k8s.io/kubernetes/cmd/kube-controller-manager/app k8s.io/kubectl/pkg/cmd) ;;
  node)
    STAMP="$BIN/.node-versions" WANT="kubernetes=$K8S_VERSION (kubelet kube-scheduler kube-proxy)"
    BINARIES=(kubelet kube-scheduler kube-proxy)
    COMMANDS=(cmd/kubelet cmd/kube-scheduler cmd/kube-proxy)
    TOOLS=(k8s.io/kubernetes/cmd/kubelet/app k8s.io/kubernetes/cmd/kube-scheduler/app k8s.io/kubernetes/cmd/kube-proxy/app) ;;
  *) echo "usage: $0 [controlplane|node]" >&2; exit 2 ;;
esac

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || { rm -f "$STAMP"; break; }; done
  [[ -f "$STAMP" ]] && { echo "$PART binaries up to date in $BIN ($WANT)"; exit 0; }
fi
mkdir -p "$BIN"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

# The staging modules (k8s.io/api, client-go, ...) are published as v0.<minor>.<patch>.
build_kubernetes() {
  # One wrapper module per part: both may be built at the same time without sharing a go.mod.
  local dir="$CACHE/src/kubernetes-$K8S_VERSION${PART/controlplane/}" staging="0.${K8S_VERSION#*.}"
  mkdir -p "$dir"; cd "$dir"
  local modfile
  modfile=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  local goline
  goline=$(grep -m1 '^go ' "$modfile")
  {
    echo "module detection-operator.local/controlplane/kubernetes"
    echo "$goline"
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo "replace ("
    sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\t\1 => \1 v'"$staging"'#p' "$modfile"
    echo ")"
  } > go.mod
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "%s"\n' "${TOOLS[@]}"
    printf ')\n'
  } > tools.go
  go mod tidy -e >/dev/null 2>&1 || true
  go get "k8s.io/kubernetes@v$K8S_VERSION"
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION" \
    -o "$BIN/" "${COMMANDS[@]/#/k8s.io/kubernetes/}"
}

build_etcd() {
  local dir="$CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$dir"; cd "$dir"
  local modfile
  modfile=$(go mod download -json "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module detection-operator.local/controlplane/etcd"
    grep -m1 '^go ' "$modfile"
    echo "require go.etcd.io/etcd/server/v3 v$ETCD_VERSION"
    echo "replace ("
    sed -n 's#^\s*\(go\.etcd\.io/etcd/[a-z0-9/]*\) => \.\./.*#\t\1 => \1 v'"$ETCD_VERSION"'#p' "$modfile"
    echo ")"
  } > go.mod
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
}

[[ "$PART" == controlplane ]] && ( build_etcd )
( build_kubernetes )
echo "$WANT" > "$STAMP"
echo "$PART binaries built in $BIN ($WANT)"
