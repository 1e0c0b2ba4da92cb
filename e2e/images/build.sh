#!/usr/bin/env bash
# Builds pacer/busybox:latest (FROM scratch + Debian's busybox-static) and tags it centos:latest
# for the classic Marathon example: no registry is reachable, so nothing is pulled.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "busybox-static is not installed (apt-get install busybox-static)" >&2; exit 1; }
if ldd "$busybox" >/dev/null 2>&1; then
  echo "$busybox is dynamically linked: install busybox-static" >&2; exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$busybox" "$ctx/busybox"
cp "$here/busybox/Dockerfile" "$ctx/Dockerfile"
docker build -q -t pacer/busybox:latest "$ctx" >/dev/null
docker tag pacer/busybox:latest centos:latest
# The classic guide's webserver names python:3; its cmd is swapped for busybox httpd.
docker tag pacer/busybox:latest python:3
echo "built pacer/busybox:latest (tagged centos:latest and python:3)"
