#!/usr/bin/env bash
# `make run`: the gateway on blastbeat.ini plus the bundled hello backend; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/release/blastbeat
py=.venv/bin/python
"$bin" --check blastbeat.ini
"$bin" blastbeat.ini &
gateway=$!
"$py" examples/hello.py --connect tcp://127.0.0.1:5000 --node hello &
backend=$!
stop() { kill -TERM "$gateway" "$backend" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop INT TERM EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
  sleep 0.1
done
echo
echo "BlastBeat is up: open http://127.0.0.1:8080/  (Ctrl-C stops the gateway and the backend)"
echo
wait "$gateway"
