#!/usr/bin/env bash
# Builds pacer/testbed:latest from the `pacer` binary given (default target/debug/pacer), this
# machine's etcd and busybox-static: the hosts of the multi-host test bed run it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pacer=${1:-$here/../../target/debug/pacer}
[ -x "$pacer" ] || { echo "no pacer binary at $pacer (cargo build first)" >&2; exit 1; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/bin" "$root/usr/bin" "$root/usr/local/bin"
cp /bin/busybox "$root/bin/busybox"
cp "$pacer" "$root/usr/local/bin/pacer"
cp "$(command -v etcd)" "$(command -v etcdctl)" "$root/usr/bin/"
# The shared libraries the binaries load, at the paths the loader looks for them.
for bin in "$pacer" "$(command -v etcd)" "$(command -v etcdctl)"; do
  ldd "$bin" | awk '/=>/ {print $3} /^\t\// {print $1}' | while read -r lib; do
    [ -f "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
# The accounts a node has: process tasks run as `nobody` unless they name a user.
mkdir -p "$root/etc"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
cp "$here/testbed/Dockerfile" "$ctx/Dockerfile"
docker build -q -t pacer/testbed:latest "$ctx" >/dev/null
echo "built pacer/testbed:latest"
