#!/usr/bin/env python3
"""Retry node for BlastBeat: hands requests over to another node of the same vhost.

By default the node answers every request with `retry`: the gateway then resends the request (the same
uwsgi packet and the buffered body) to a different live node of the vhost, at most `max-hops` times;
with no other node left the client gets 502. With `--answer` the node serves requests itself, so two
processes show the whole round trip:

    python3 examples/retry.py --node busy                 # always says retry
    python3 examples/retry.py --node worker --answer      # answers

    [blastbeat:localhost]
    node = busy
    node = worker

The node waits for the end of the request body (the empty `body` message) before it sends `retry`, so the
gateway has the whole body to replay.

    python3 examples/retry.py [--connect tcp://127.0.0.1:5000] [--node retry] [--answer]
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


def main():
    parser = argparse.ArgumentParser(description="BlastBeat retry node")
    parser.add_argument("--connect", default="tcp://127.0.0.1:5000", help="the gateway's zmq endpoint")
    parser.add_argument("--node", default="retry", help="node name (ZeroMQ identity)")
    parser.add_argument("--answer", action="store_true", help="answer requests instead of sending retry")
    args = parser.parse_args()
    node = args.node.encode()

    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, node)
    socket.connect(args.connect)
    print("node %s connected to %s (%s)" % (args.node, args.connect, "answer" if args.answer else "retry"),
          flush=True)

    sessions = {}  # sid -> (env, body pieces) while a request body is arriving

    def complete(sid, env, body):
        if not args.answer:
            socket.send_multipart([sid, b'retry', b''])
            return
        text = b'answered by %s: %s %s, %d body bytes\n' % (
            node, env.get(b'REQUEST_METHOD', b''), env.get(b'PATH_INFO', b''), len(body))
        head = b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n' % len(text)
        socket.send_multipart([sid, b'headers', head + text])

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
                    complete(sid, env, b'')
            elif msg_type == b'body' and sid in sessions:
                if msg_body:
                    sessions[sid][1].append(msg_body)
                else:
                    env, pieces = sessions.pop(sid)
                    complete(sid, env, b''.join(pieces))
            elif msg_type == b'end':
                sessions.pop(sid, None)
    except KeyboardInterrupt:
        pass
    finally:
        socket.close(linger=0)
        context.term()


if __name__ == '__main__':
    main()
