#!/usr/bin/env python3
"""A WebSocket chat room as a BlastBeat node: every text message goes to every connected client.

A plain `GET /` gets an HTML page (sent with `headers` + `body`) whose script opens a WebSocket to the
same host. Behind the gateway every WebSocket connection is one sid:

* its upgrade request arrives as `uwsgi` (env `HTTP_UPGRADE: websocket`): the sid joins the room;
* each text message the client sends arrives as one `websocket` message: the node sends it as
  `websocket` to every sid in the room, the sender included;
* `end` means that client closed or went away: the sid leaves the room.

Binary messages are ignored. The gateway answers the WebSocket handshake itself (the vhost's default
`websocket-handshake = gateway`), so the node never sends a 101.

    python3 examples/ws_chat.py [--connect tcp://127.0.0.1:5000] [--node chat]

Gateway config to go with it:

    [blastbeat]
    bind = 127.0.0.1:8080
    zmq = tcp://127.0.0.1:5000

    [blastbeat:localhost]
    node = chat
    default = true

then open http://127.0.0.1:8080/ in two browser windows.
"""

import argparse

import zmq
# The uwsgi decoder of the Python SDK (pip install ./python; depends only on pyzmq). docs/PROTOCOL.md,
# "The uwsgi environment", has a 7-line decoder to port to other languages.
from blastbeat.uwsgi import decode_bytes as uwsgi_to_dict

PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>BlastBeat chat</title>
<style>
  body { font-family: sans-serif; max-width: 40em; margin: 2em auto; }
  #log { border: 1px solid #ccc; height: 20em; overflow-y: auto; padding: 0.5em; white-space: pre-wrap; }
  #say { width: 80%; }
</style>
</head>
<body>
<h1>BlastBeat chat</h1>
<div id="log"></div>
<form id="form"><input id="say" autocomplete="off" placeholder="say something"> <button>send</button></form>
<script>
  const log = document.getElementById("log");
  const say = document.getElementById("say");
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/chat");
  function show(text) {
    const line = document.createElement("div");
    line.textContent = text;
    log.appendChild(line);
    log.scrollTop = log.scrollHeight;
  }
  ws.onopen = () => show("* connected");
  ws.onclose = (e) => show("* disconnected (" + e.code + ")");
  ws.onmessage = (e) => show(e.data);
  document.getElementById("form").onsubmit = (e) => {
    e.preventDefault();
    if (say.value && ws.readyState === WebSocket.OPEN) { ws.send(say.value); say.value = ""; }
  };
</script>
</body>
</html>
"""


def http_response(socket, sid, status, content_type, body, head_only=False):
    head = (b'HTTP/1.1 ' + status + b'\r\nContent-Type: ' + content_type +
            b'\r\nContent-Length: %d\r\n\r\n' % len(body))
    socket.send_multipart([sid, b'headers', head])
    if body and not head_only:
        socket.send_multipart([sid, b'body', body])


def main():
    parser = argparse.ArgumentParser(description="BlastBeat WebSocket chat node")
    parser.add_argument("--connect", default="tcp://127.0.0.1:5000", help="the gateway's zmq endpoint")
    parser.add_argument("--node", default="chat", help="node name (ZeroMQ identity)")
    args = parser.parse_args()

    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, args.node.encode())
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(args.connect)
    print("node %s connected to %s" % (args.node, args.connect), flush=True)

    room = set()  # sids of the connected WebSocket clients
    try:
        while True:
            sid, msg_type, body = socket.recv_multipart()
            if msg_type == b'websocket':
                if sid in room:
                    for member in room:
                        socket.send_multipart([member, b'websocket', body])
            elif msg_type == b'end':
                room.discard(sid)
            elif msg_type == b'ping':
                socket.send_multipart([sid, b'pong', b''])
            elif msg_type == b'uwsgi':
                env = uwsgi_to_dict(body)
                method = env.get(b'REQUEST_METHOD', b'')
                if env.get(b'HTTP_UPGRADE', b'').lower() == b'websocket':
                    room.add(sid)  # the gateway has already sent the 101
                elif env.get(b'PATH_INFO') == b'/' and method in (b'GET', b'HEAD'):
                    http_response(socket, sid, b'200 OK', b'text/html; charset=utf-8', PAGE,
                                  head_only=method == b'HEAD')
                else:
                    http_response(socket, sid, b'404 Not Found', b'text/plain; charset=utf-8',
                                  b'not found: the chat page is at /\n', head_only=method == b'HEAD')
            # `websocket-binary` and request `body` messages are ignored.
    except KeyboardInterrupt:
        pass
    finally:
        socket.close(linger=0)
        context.term()


if __name__ == '__main__':
    main()
