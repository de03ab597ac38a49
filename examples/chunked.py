#!/usr/bin/env python3
"""Chunked-response node for BlastBeat (the README's `chunk` example).

The node sends a head with `Transfer-Encoding: chunked`, then 99 `chunk` messages and an empty `chunk`
that ends the response. The gateway writes the chunk framing (size line, data, CRLF) itself, so the node
only sends payloads, and the client connection stays keep-alive.

    python3 examples/chunked.py [--connect tcp://127.0.0.1:5000] [--node chunked]
"""

import argparse

import zmq


def main():
    parser = argparse.ArgumentParser(description="BlastBeat chunked response node")
    parser.add_argument("--connect", default="tcp://127.0.0.1:5000", help="the gateway's zmq endpoint")
    parser.add_argument("--node", default="chunked", help="node name (ZeroMQ identity)")
    parser.add_argument("--chunks", type=int, default=99, help="how many chunks per response")
    args = parser.parse_args()

    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, args.node.encode())
    socket.connect(args.connect)
    print("node %s connected to %s" % (args.node, args.connect), flush=True)

    try:
        while True:
            sid, msg_type, msg_body = socket.recv_multipart()
            if msg_type == b'ping':
                socket.send_multipart([sid, b'pong', b''])
            elif msg_type == b'uwsgi':
                headers = '\r\n'.join(['HTTP/1.1 200 OK', 'Content-Type: text/html',
                                       'Transfer-Encoding: chunked']) + '\r\n\r\n'
                socket.send(sid, zmq.SNDMORE)
                socket.send(b'headers', zmq.SNDMORE)
                socket.send(headers.encode())
                for i in range(1, args.chunks + 1):
                    socket.send(sid, zmq.SNDMORE)
                    socket.send(b'chunk', zmq.SNDMORE)
                    socket.send(b'i am the number %d<br/>' % i)
                # to end a chunked response just send an empty chunk
                socket.send(sid, zmq.SNDMORE)
                socket.send(b'chunk', zmq.SNDMORE)
                socket.send(b'')
    except KeyboardInterrupt:
        pass
    finally:
        socket.close(linger=0)
        context.term()


if __name__ == '__main__':
    main()
