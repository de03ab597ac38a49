#!/usr/bin/env python3
"""WebSocket echo node for BlastBeat: every message a client sends comes back unchanged.

The gateway speaks WebSocket to the client and whole messages to the node, on the connection's sid:

* the upgrade request arrives as a normal `uwsgi` message (its env has `HTTP_UPGRADE: websocket`);
* each complete client message arrives as `websocket` (text) or `websocket-binary` (binary), already
  reassembled from its fragments and decompressed;
* the node answers with `websocket` (sent as a text frame) or `websocket-binary` (a binary frame);
  an `end` from the node closes the WebSocket (code 1000, or 2 bytes big-endian code + UTF-8 reason);
* `end` from the gateway means the client closed (or went away): forget the sid.

This node echoes text as text and binary as binary. A plain HTTP request (no upgrade) gets a short text
page. It is also the backend behind the Autobahn conformance run (Tests/Autobahn/run.sh).

    python3 examples/ws_echo.py [--connect tcp://127.0.0.1:5000] [--node echo] [--backend-handshake]

Gateway config to go with it:

    [blastbeat]
    bind = 127.0.0.1:8080
    zmq = tcp://127.0.0.1:5000

    [blastbeat:localhost]
    node = echo
    default = true

then, e.g., `python3 -m websockets ws://127.0.0.1:8080/`. With `websocket-handshake = backend` on the
vhost, the gateway waits for the node to accept each upgrade: start this node with `--backend-handshake`
and it answers `101 Switching Protocols` (choosing the client's first subprotocol, if it offered any).
"""

import argparse

import zmq
# The uwsgi decoder of the Python SDK (pip install ./python; depends only on pyzmq). docs/PROTOCOL.md,
# "The uwsgi environment", has a 7-line decoder to port to other languages.
from blastbeat.uwsgi import decode_bytes as uwsgi_to_dict


def is_websocket(env):
    return env.get(b'HTTP_UPGRADE', b'').lower() == b'websocket'


def main():
    parser = argparse.ArgumentParser(description="BlastBeat WebSocket echo node")
    parser.add_argument("--connect", default="tcp://127.0.0.1:5000", help="the gateway's zmq endpoint")
    parser.add_argument("--node", default="echo", help="node name (ZeroMQ identity)")
    parser.add_argument("--backend-handshake", action="store_true",
                        help="accept upgrades with a 101 (for vhosts with websocket-handshake = backend)")
    args = parser.parse_args()

    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, args.node.encode())
    socket.setsockopt(zmq.LINGER, 0)
    # Autobahn sends 16 MiB messages by the hundred: do not let ZeroMQ drop replies at its default
    # high-water mark of 1000 messages.
    socket.setsockopt(zmq.SNDHWM, 0)
    socket.connect(args.connect)
    print("node %s connected to %s" % (args.node, args.connect), flush=True)

    try:
        while True:
            sid, msg_type, body = socket.recv_multipart()
            if msg_type == b'websocket' or msg_type == b'websocket-binary':
                # The echo: same type back, so text stays text and binary stays binary.
                socket.send_multipart([sid, msg_type, body])
            elif msg_type == b'ping':
                socket.send_multipart([sid, b'pong', b''])
            elif msg_type == b'uwsgi':
                env = uwsgi_to_dict(body)
                if is_websocket(env):
                    if args.backend_handshake:
                        head = b'HTTP/1.1 101 Switching Protocols\r\n'
                        offered = env.get(b'HTTP_SEC_WEBSOCKET_PROTOCOL', b'')
                        first = offered.split(b',')[0].strip()
                        if first:
                            head += b'Sec-WebSocket-Protocol: ' + first + b'\r\n'
                        socket.send_multipart([sid, b'headers', head + b'\r\n'])
                    # Otherwise the gateway has already answered the handshake: nothing to do.
                    continue
                page = (b'WebSocket echo node %s: connect with a WebSocket client to ws://HOST:PORT%s\n'
                        % (args.node.encode(), env.get(b'PATH_INFO', b'/')))
                head = (b'HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n'
                        b'Content-Length: %d\r\n\r\n' % len(page))
                if env.get(b'REQUEST_METHOD') == b'HEAD':
                    page = b''
                socket.send_multipart([sid, b'headers', head + page])
            # `body` (a request body) and `end` (session over) need nothing here: the node keeps no state.
    except KeyboardInterrupt:
        pass
    finally:
        socket.close(linger=0)
        context.term()


if __name__ == '__main__':
    main()
