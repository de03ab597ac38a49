#!/bin/sh
# Serve a directory through BlastBeat: Python's http.server as the upstream, behind the Python SDK's HTTP
# bridge node (python -m blastbeat.bridge). Any existing HTTP server can stand where http.server is.
#
#   examples/bridge.sh [DIR]          (default: the current directory)
#
# Environment: BLASTBEAT_ZMQ (the gateway's zmq endpoint, default tcp://127.0.0.1:5000), NODE (default
# hello, the node of `make run`'s vhost), UPSTREAM_PORT (default 8000), PYTHON (default python3; it needs
# the SDK: pip install ./python). Then: curl http://127.0.0.1:8080/
set -eu

dir=${1:-.}
python=${PYTHON:-python3}
port=${UPSTREAM_PORT:-8000}

"$python" -m http.server "$port" --bind 127.0.0.1 --directory "$dir" &
upstream=$!
"$python" -m blastbeat.bridge --connect "${BLASTBEAT_ZMQ:-tcp://127.0.0.1:5000}" --node "${NODE:-hello}" \
    --upstream "http://127.0.0.1:$port" &
bridge=$!

stop() {
    # The bridge finishes the requests in flight (SIGTERM is its graceful stop), then the upstream goes.
    kill -TERM "$bridge" 2>/dev/null || true
    wait "$bridge" 2>/dev/null || true
    kill -TERM "$upstream" 2>/dev/null || true
    wait "$upstream" 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM

status=0
wait "$bridge" || status=$?
kill -TERM "$upstream" 2>/dev/null || true
wait "$upstream" 2>/dev/null || true
exit "$status"
