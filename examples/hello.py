#!/usr/bin/env python3
"""Hello World node for BlastBeat (the default example behind `make run`).

A BlastBeat node is a ZeroMQ DEALER whose identity is the node name of a vhost (`node = hello` in the
gateway's config). Every message is 3 frames: session id, message type, body. This node answers every
request with a small text page framed by Content-Length, so client connections stay keep-alive, and it
answers the gateway's `ping` with `pong` so the gateway keeps routing to it.

    python3 examples/hello.py [--connect tcp://127.0.0.1:5000] [--node hello]

Gateway config to go with it:

    [blastbeat]
    bind = 127.0.0.1:8080
    zmq = tcp://127.0.0.1:5000

    [blastbeat:localhost]
    node = hello

then `curl http://localhost:8080/`.
"""

import argparse

import zmq
# The uwsgi decoder of the Python SDK (pip install ./python; depends only on pyzmq). docs/PROTOCOL.md,
# "The uwsgi environment", has a 7-line decoder to port to other languages.
from blastbeat.uwsgi import decode_bytes as uwsgi_to_dict


def main():
    parser = argparse.ArgumentParser(description="BlastBeat hello world node")
    parser.add_argument("--connect", default="tcp://127.0.0.1:5000", help="the gateway's zmq endpoint")
    parser.add_argument("--node", default="hello", help="node name (ZeroMQ identity)")
    args = parser.parse_args()

    context = zmq.Context()
    # create the dealer socket
    socket = context.socket(zmq.DEALER)
    # authorize it setting the identity
    socket.setsockopt(zmq.IDENTITY, args.node.encode())
    # connect to blastbeat
    socket.connect(args.connect)
    print("node %s connected to %s" % (args.node, args.connect), flush=True)

    try:
        while True:
            # receive a blastbeat message
            sid, msg_type, msg_body = socket.recv_multipart()
            if msg_type == b'ping':
                socket.send_multipart([sid, b'pong', b''])
            elif msg_type == b'uwsgi':
                env = uwsgi_to_dict(msg_body)
                body = b'Hello, World! (node %s, path %s)\n' % (args.node.encode(), env.get(b'PATH_INFO', b''))
                head = b'\r\n'.join([
                    b'HTTP/1.1 200 OK',
                    b'Content-Type: text/plain; charset=utf-8',
                    b'Content-Length: %d' % len(body),
                ]) + b'\r\n\r\n'
                if env.get(b'REQUEST_METHOD') == b'HEAD':
                    socket.send_multipart([sid, b'headers', head])
                else:
                    socket.send_multipart([sid, b'headers', head + body])
            # `body` (request body bytes) is ignored; `end` means the client connection is gone.
    except KeyboardInterrupt:
        pass
    finally:
        socket.close(linger=0)
        context.term()


if __name__ == '__main__':
    main()
