#!/usr/bin/env bash
# `make run`: starts `pacer up` (etcd, apiserver, controllers, one agent), applies the hello
# example, shows its tasks, then keeps the cluster in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
pacer=target/debug/pacer
# The CLI finds the server, the CA and the admin token in .pacer/config, which `pacer up`
# writes on start (`pacer config env` prints them for curl and etcdctl).

"$pacer" up "$@" &
up=$!
trap 'kill -INT $up 2>/dev/null; wait $up' INT TERM

deadline=$((SECONDS + 60))
until "$pacer" get nodes >/dev/null 2>&1; do
  kill -0 $up 2>/dev/null || { echo "pacer up exited" >&2; exit 1; }
  (( SECONDS < deadline )) || { echo "the API did not come up within 60 s" >&2; exit 1; }
  sleep 0.2
done

"$pacer" apply -f manifests/examples/hello.yaml
deadline=$((SECONDS + 60))
until [ "$("$pacer" get tasks | grep -c TASK_RUNNING || true)" -ge 3 ]; do
  (( SECONDS < deadline )) || { echo "hello did not reach 3 running tasks within 60 s" >&2; break; }
  sleep 0.5
done
"$pacer" get tasks
echo
echo "Pacer is up: try \`$pacer get apps\`, \`docker ps --filter label=pacer.io/app=hello\`,"
echo "\`eval \"\$($pacer config env)\"; etcdctl get --prefix /pacer/\`. Ctrl-C stops it (containers keep running until deleted)."
wait $up
