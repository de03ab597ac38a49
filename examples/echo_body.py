#!/usr/bin/env python3
"""Echo node for BlastBeat: answers each request with its own body.

The gateway sends a request as `uwsgi` (the env), then, only if the request has a body (CONTENT_LENGTH > 0
or chunked upload), the body in `body` messages and finally an EMPTY `body` message that marks the end of
the body. Chunked uploads arrive de-chunked. The node keeps per-session state keyed by the sid (16 opaque
bytes, one per client connection; keep-alive requests reuse it) and drops it on `end`.

    python3 examples/echo_body.py [--connect tcp://127.0.0.1:5000] [--node echo]

    curl --data-binary @file http://localhost:8080/
"""

import argparse

import zmq
# The uwsgi decoder of the Python SDK (pip install ./python; depends only on pyzmq). docs/PROTOCOL.md,
# "The uwsgi environment", has a 7-line decoder to port to other languages.
from blastbeat.uwsgi import decode_bytes as uwsgi_to_dict


def has_body(env):
    try:
        if int(env.get(b'CONTENT_LENGTH', b'0') or b'0') > 0:
            return True
    except ValueError:
        pass
    return b'chunked' in env.get(b'HTTP_TRANSFER_ENCODING', b'').lower()


def reply(socket, sid, env, body):
    content_type = env.get(b'CONTENT_TYPE', b'application/octet-stream')
    head = b'\r\n'.join([
        b'HTTP/1.1 200 OK',
        b'Content-Type: ' + content_type,
        b'Content-Length: %d' % len(body),
    ]) + b'\r\n\r\n'
    socket.send_multipart([sid, b'headers', head])
    # big bodies go out in pieces; each `body` message is appended to the response
    for i in range(0, len(body), 1 << 20):
        socket.send_multipart([sid, b'body', body[i:i + (1 << 20)]])


def main():
    parser = argparse.ArgumentParser(description="BlastBeat echo node")
    parser.add_argument("--connect", default="tcp://127.0.0.1:5000", help="the gateway's zmq endpoint")
    parser.add_argument("--node", default="echo", help="node name (ZeroMQ identity)")
    args = parser.parse_args()

    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, args.node.encode())
    socket.connect(args.connect)
    print("node %s connected to %s" % (args.node, args.connect), flush=True)

    # sid -> (env, list of body pieces) for the request being received on that connection
    sessions = {}
    try:
        while True:
            sid, msg_type, msg_body = socket.recv_multipart()
            if msg_type == b'ping':
                socket.send_multipart([sid, b'pong', b''])
            elif msg_type == b'uwsgi':
                env = uwsgi_to_dict(msg_body)
                if has_body(env):
                    sessions[sid] = (env, [])
                else:
                    reply(socket, sid, env, b'')
            elif msg_type == b'body':
                if sid not in sessions:
                    continue
                env, pieces = sessions[sid]
                if msg_body:
                    pieces.append(msg_body)
                else:  # the empty body: end of the request body
                    del sessions[sid]
                    reply(socket, sid, env, b''.join(pieces))
            elif msg_type == b'end':
                sessions.pop(sid, None)
    except KeyboardInterrupt:
        pass
    finally:
        socket.close(linger=0)
        context.term()


if __name__ == '__main__':
    main()
