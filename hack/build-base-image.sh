#!/usr/bin/env bash
# Makes the local stand-in for python:3.11-slim: Debian bookworm (debootstrap, minbase) with python3 and
# pip, as an OCI image layout in $CACHE/base-<stamp> (git-ignored). Without a registry on this machine it
# is the base the Dockerfile is built on (`--build-arg BASE_IMAGE=...`) and the base of the test images.
# Debian's mirror is the slow part (~10 min once); a second run with the same stamp does nothing.
set -euo pipefail

SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-pip,ca-certificates
CACHE=${CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache/images}
# The host's own CA certificates (a TLS-inspecting proxy's, a company's) go in too: builds on this base
# (pip in the Dockerfile) reach the same registries the host reaches.
LOCAL_CAS=(/usr/local/share/ca-certificates/*.crt)
[[ -e "${LOCAL_CAS[0]}" ]] || LOCAL_CAS=()
# The stamp names what goes in: a change of suite, packages, CAs or this script makes a new base.
STAMP=$(printf '%s\n' "$SUITE" "$PACKAGES" "$(cat "$0" ${LOCAL_CAS[@]+"${LOCAL_CAS[@]}"} | sha1sum)" | sha1sum | cut -c1-12)
LAYOUT="$CACHE/base-$STAMP"
TAG=base

if [[ -f "$LAYOUT/.complete" ]]; then
  echo "base image up to date in $LAYOUT"
  exit 0
fi
mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/.base-build.XXXXXX")
# debootstrap mounts /proc and /sys inside the target: unmount whatever is left there, then remove it.
cleanup() {
  findmnt -rno TARGET | grep -F "$work/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
echo "building the base image ($SUITE + python3) into $LAYOUT (once, ~10 min: Debian's mirror)"

umoci init --layout "$work/layout"
umoci new --image "$work/layout:$TAG"
umoci unpack --image "$work/layout:$TAG" "$work/bundle" >/dev/null
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/bundle/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
rootfs="$work/bundle/rootfs"
# What python:3.11-slim offers that Debian's python3 does not: `python`, and pip allowed to install into
# the system interpreter (PEP 668 marker removed; the image is the only user of that interpreter).
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
if ((${#LOCAL_CAS[@]})); then
  cp "${LOCAL_CAS[@]}" "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
umoci repack --image "$work/layout:$TAG" "$work/bundle"
umoci config --image "$work/layout:$TAG" \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env LANG=C.UTF-8 --config.cmd python3
umoci gc --layout "$work/layout"
rm -rf "$LAYOUT"
mv "$work/layout" "$LAYOUT"
echo "$SUITE $PACKAGES" > "$LAYOUT/.complete"
echo "base image built in $LAYOUT (oci:$LAYOUT:$TAG)"
