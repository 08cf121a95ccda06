#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy into $BIN (default .cache/tools/bin, git-ignored): the chart
# tests lint, render and dry-run the chart with it. A second run with the same version does nothing.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-3.19.5}
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/.cache/tools/bin}

if [[ -x "$BIN/helm" && "$("$BIN/helm" version --template '{{.Version}}' 2>/dev/null)" == "v$HELM_VERSION" ]]; then
  echo "helm v$HELM_VERSION up to date in $BIN"
  exit 0
fi
mkdir -p "$BIN"
echo "building helm v$HELM_VERSION into $BIN (once)"
# helm's Makefile stamps its version and the Kubernetes version `helm template` assumes (one above its
# client-go's v0.<minor>); without them it reports v3.x-unknown and renders for Kubernetes 1.20.
gomod=$(GOTOOLCHAIN=local go mod download -json "helm.sh/helm/v3@v$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
k8s_minor=$(sed -n 's#^\s*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod")
[[ -n "$k8s_minor" ]] || { echo "cannot find helm's client-go version in $gomod" >&2; exit 1; }
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
for pkg in lint/rules chartutil; do
  ldflags+=" -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMinor=$k8s_minor"
done
GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$BIN" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
"$BIN/helm" version --template '{{.Version}}' | grep -qx "v$HELM_VERSION"
