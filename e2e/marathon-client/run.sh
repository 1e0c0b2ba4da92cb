#!/usr/bin/env bash
# Runs the real `marathon` Python client (PyPI) against a fresh `pacer up` on free ports.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/target/marathon-venv"
if [ ! -x "$venv/bin/pytest" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
# The DC/OS CLI in a venv of its own (its pins differ from the marathon library's).
dcos_venv="$root/target/dcos-venv"
if [ ! -x "$dcos_venv/bin/dcos" ]; then
  python3 -m venv "$dcos_venv"
  "$dcos_venv/bin/pip" install -q --no-deps -r "$here/dcos-requirements.txt"
  site=$("$dcos_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  cp "$here/dcos_py311_shim.py" "$site/"
  echo 'import dcos_py311_shim' > "$site/dcos_py311_shim.pth"
fi
work=$(mktemp -d)
chmod 755 "$work"   # process tasks run as nobody: their sandboxes below must be reachable
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=$(port); etcd=$(port)
# Security stays on: the marathon library authenticates with basic credentials, the DC/OS CLI
# with the admin token `pacer up` writes to its data folder on first start.
password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
node="marathon-client-$$"
"$root/target/debug/pacer" up --data-dir "$work" --etcd-port "$etcd" --listen "127.0.0.1:$api" \
  --agent-listen 127.0.0.1:0 --node-name "$node" --hostname 127.0.0.1 --cpus 2 --mem 2048 --disk 1000 \
  --ports 32500-32599 --work-dir "$work/agent" --event-callbacks "http://127.0.0.1:*/" \
  --http-credentials "marathon:$password" 2> "$work/pacer.log" &
pid=$!
cleanup() {
  kill -INT $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  # A create the engine was finishing when pacer stopped can surface a moment later: sweep twice.
  for _ in 1 2; do
    ids=$(docker ps -aq --filter "label=pacer.io/node=$node")
    [ -z "$ids" ] || docker rm -f $ids >/dev/null
    sleep 1
  done
  rm -rf "$work"
}
trap cleanup EXIT
deadline=$((SECONDS + 60))
# HTTPS with the CA `pacer up` made in its data folder on first start.
until [ -f "$work/ca.crt" ] && curl -sf --cacert "$work/ca.crt" -u "marathon:$password" "https://127.0.0.1:$api/v2/info" >/dev/null; do
  kill -0 $pid 2>/dev/null || { cat "$work/pacer.log"; exit 1; }
  (( SECONDS < deadline )) || { echo "pacer up did not answer within 60 s" >&2; cat "$work/pacer.log"; exit 1; }
  sleep 0.2
done
token=$(cat "$work/admin.token")
REQUESTS_CA_BUNDLE="$work/ca.crt" PACER_CACERT="$work/ca.crt" MARATHON_URL="https://127.0.0.1:$api" MARATHON_USER=marathon MARATHON_PASSWORD="$password" PACER_TOKEN="$token" DCOS_BIN="$dcos_venv/bin/dcos" "$venv/bin/pytest" -q -p no:cacheprovider "$here" "$@" || { tail -30 "$work/pacer.log"; exit 1; }
