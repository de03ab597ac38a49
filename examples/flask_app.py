#!/usr/bin/env python3
"""A small Flask application served by BlastBeat through the Python SDK's WSGI server.

    pip install ./python flask
    python -m blastbeat.wsgi flask_app:app --chdir examples --connect tcp://127.0.0.1:5000 --node hello

(or `python3 examples/flask_app.py [--connect ...] [--node ...]`, which does the same). With the gateway of
`make run` (vhost `localhost`, node `hello`):

    curl http://127.0.0.1:8080/                      # an HTML page
    curl http://127.0.0.1:8080/hello/world           # route parameters
    curl -d name=Ada http://127.0.0.1:8080/form      # form fields
    curl -F file=@README.md http://127.0.0.1:8080/upload
    curl -H 'Content-Type: application/json' -d '{"a": 1}' http://127.0.0.1:8080/json
    curl -N http://127.0.0.1:8080/stream             # a streamed (chunked) response
"""

import hashlib
import time

from flask import Flask, Response, jsonify, request, stream_with_context

app = Flask(__name__)


@app.get("/")
def index():
    return ("<!doctype html><title>BlastBeat + Flask</title>"
            "<h1>Hello from Flask behind BlastBeat</h1>"
            "<p>Try <a href='/hello/world'>/hello/world</a> or <a href='/stream'>/stream</a>.</p>")


@app.get("/hello/<name>")
def hello(name):
    return f"Hello, {name}!\n", 200, {"Content-Type": "text/plain; charset=utf-8"}


@app.post("/form")
def form():
    return jsonify({key: request.form.getlist(key) for key in request.form})


@app.post("/upload")
def upload():
    files = {}
    for field, storage in request.files.items():
        data = storage.read()
        files[field] = {"filename": storage.filename, "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()}
    return jsonify(files=files, fields=request.form.to_dict())


@app.post("/json")
def echo_json():
    payload = request.get_json(force=True)
    return jsonify(received=payload, client=request.remote_addr)


@app.get("/stream")
def stream():
    count = request.args.get("n", 5, type=int)

    @stream_with_context
    def generate():
        for i in range(count):
            yield f"line {i}\n"
            time.sleep(0.2)

    return Response(generate(), mimetype="text/plain")


if __name__ == "__main__":
    import argparse

    from blastbeat.wsgi import WSGIServer

    parser = argparse.ArgumentParser(description="the Flask example behind BlastBeat")
    parser.add_argument("--connect", default="tcp://127.0.0.1:5000", help="the gateway's zmq endpoint")
    parser.add_argument("--node", default="hello", help="node name (ZeroMQ identity)")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    WSGIServer(app, args.connect, args.node, threads=args.threads).run()
