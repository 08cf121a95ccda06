#!/usr/bin/env bash
# Builds hack/kstatus (a wrapper around sigs.k8s.io/cli-utils' kstatus, the status library behind Flux's
# health checks) from the Go module proxy into $BIN (default .cache/tools/bin, git-ignored). The
# integration tests run it on objects the operator wrote. A second run with unchanged sources does nothing.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/kstatus" && pwd)
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/.cache/tools/bin}
STAMP="$BIN/.kstatus-$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha1sum | cut -c1-12)"

if [[ -x "$BIN/kstatus" && -f "$STAMP" ]]; then
  echo "kstatus up to date in $BIN"
  exit 0
fi
mkdir -p "$BIN"
echo "building kstatus into $BIN (once)"
(cd "$SRC" && GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/kstatus" .)
rm -f "$BIN"/.kstatus-*
touch "$STAMP"
