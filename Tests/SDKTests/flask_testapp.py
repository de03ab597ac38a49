"""The application behind the WSGI tests: a Flask app, plus raw WSGI callables under /wsgi/ for the corners
of PEP 3333 that Flask never exercises (exc_info, the write() callable, list bodies, close()).

``app`` is the whole thing; ``validated_app`` is the same wrapped in ``wsgiref.validate.validator``, which
asserts PEP 3333 rules on both sides (environ types, start_response use, close() being called...).
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from wsgiref.validate import validator

from flask import Flask, Response, abort, jsonify, request, stream_with_context

flask_app = Flask(__name__)

_lock = threading.Lock()
counters = {"closed": 0, "infinite_closed": 0, "slow_started": 0}


def bump(name: str) -> None:
    with _lock:
        counters[name] += 1


@flask_app.get("/")
def index():
    return "index page"


@flask_app.get("/hello/<name>")
def hello(name):
    return f"Hello, {name}!"


@flask_app.get("/query")
def query():
    return jsonify({k: request.args.getlist(k) for k in request.args})


@flask_app.post("/form")
def form():
    return jsonify({k: request.form.getlist(k) for k in request.form})


@flask_app.post("/upload")
def upload():
    files = {}
    for field, storage in request.files.items():
        data = storage.read()
        files[field] = {"filename": storage.filename, "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(), "type": storage.mimetype}
    return jsonify(files=files, fields=request.form.to_dict())


@flask_app.post("/json")
def echo_json():
    return jsonify(received=request.get_json(), type=request.content_type)


@flask_app.post("/digest")
def digest():
    data = request.get_data()
    return jsonify(size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   content_length=request.environ.get("CONTENT_LENGTH"))


@flask_app.get("/stream")
def stream():
    n = request.args.get("n", 3, type=int)
    delay = request.args.get("delay", 0.0, type=float)

    @stream_with_context
    def generate():
        for i in range(n):
            yield f"piece {i}\n"
            if delay:
                time.sleep(delay)

    return Response(generate(), mimetype="text/plain")


@flask_app.get("/crash")
def crash():
    raise RuntimeError("this view always fails")


@flask_app.get("/crash-mid-stream")
def crash_mid_stream():
    def generate():
        yield b"before the crash\n"
        raise RuntimeError("failed while streaming")

    return Response(generate(), mimetype="text/plain")


@flask_app.get("/forbidden")
def forbidden():
    abort(403)


@flask_app.get("/environ")
def environ():
    env = request.environ
    keys = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
            "SERVER_PROTOCOL", "REMOTE_ADDR", "REQUEST_URI", "wsgi.url_scheme", "wsgi.multithread",
            "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated", "HTTP_X_CUSTOM", "HTTP_HOST",
            "REMOTE_PORT", "SERVER_SOFTWARE"]
    out = {k: env.get(k) for k in keys}
    out["wsgi.version"] = list(env["wsgi.version"])
    out["has_blastbeat_request"] = "blastbeat.request" in env
    out["errors_is_stderr"] = env["wsgi.errors"] is sys.stderr
    return jsonify(out)


@flask_app.get("/path/<path:rest>")
def path(rest):
    return jsonify(path_info=request.environ["PATH_INFO"], rest=rest, raw_uri=request.environ.get("REQUEST_URI"))


@flask_app.get("/slow")
def slow():
    bump("slow_started")
    time.sleep(request.args.get("t", 1.0, type=float))
    return "slow done"


@flask_app.get("/counters")
def get_counters():
    with _lock:
        return jsonify(counters)


@flask_app.route("/head-check", methods=["GET", "HEAD"])
def head_check():
    return Response("twelve bytes", headers={"X-Method": request.method})


# -- raw WSGI ------------------------------------------------------------------------------------------------


class ClosingIterable:
    """A body whose close() is counted; ``endless`` yields until the server stops iterating."""

    def __init__(self, name: str, endless: bool = False):
        self.name = name
        self.endless = endless

    def __iter__(self):
        if not self.endless:
            yield b"closeable body"
            return
        while True:
            yield b"x" * 4096
            time.sleep(0.01)

    def close(self):
        bump(self.name)


def raw_wsgi(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/wsgi/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("failed after start_response")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("X-Replaced", "yes")],
                           sys.exc_info())
        return [b"replaced by exc_info"]
    if path == "/wsgi/exc-info-late":
        def late():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"head is out"
            try:
                raise KeyError("too late")
            except KeyError:
                start_response("500 Internal Server Error", [], sys.exc_info())  # re-raises
            yield b"never"
        return late()
    if path == "/wsgi/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"directly, ")
        return [b"then returned"]
    if path == "/wsgi/list":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"a", b"bc", b"", b"def"]
    if path == "/wsgi/generator":
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b""
            yield b"gen"
            yield b"erated"
        return gen()
    if path == "/wsgi/empty-generator":
        def empty():
            start_response("204 No Content", [])
            return
            yield b""  # pragma: no cover
        return empty()
    if path == "/wsgi/closeable":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ClosingIterable("closed")
    if path == "/wsgi/infinite":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return ClosingIterable("infinite_closed", endless=True)
    if path == "/wsgi/lines":
        lines = [line for line in environ["wsgi.input"]]
        body = b"%d lines, last %s" % (len(lines), lines[-1].strip() if lines else b"-")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/wsgi/readline":
        stream = environ["wsgi.input"]
        parts = [stream.readline(4), stream.readline(), stream.read(3), stream.read()]
        body = b"|".join(parts)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/wsgi/no-start-response":
        return [b"oops"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such raw route"]


def app(environ, start_response):
    if environ.get("PATH_INFO", "").startswith("/wsgi/"):
        return raw_wsgi(environ, start_response)
    return flask_app.wsgi_app(environ, start_response)


validated_app = validator(app)
