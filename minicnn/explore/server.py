"""The explorer's HTTP side: a token in every address, three assets, a few JSON endpoints.

Every request's path starts with the session's token (``/<token>/...``), a random string
the command prints; a request without it, or with another, gets 403 and nothing else. The page
is ``/<token>/`` and all its addresses are relative, so they carry the token by themselves.
What is served:

    GET  /<token>/                  index.html     (package data: static/, read at start)
    GET  /<token>/app.js, style.css
    GET  /<token>/api/info          networks, images, methods and their options, colormaps
    GET  /<token>/api/classify      ?network&image          the input, top-5, warning
    GET  /<token>/api/explain       ?network&image&method&target&layer&opt.NAME=VALUE
    GET  /<token>/api/trace         ?network&image&target&method&rule
                                    the gradient (or LRP's relevance) at every layer
    POST /<token>/api/upload        the file as the body, its name in X-File-Name

Nothing else: the three assets are a fixed table read once from the package, so no part of
an address is ever a path on disk (no traversal); images are chosen by id, never by path.
Each answer is JSON; an array is {"shape", "dtype", "data": base64 of its little-endian
bytes}. A bad request (an unreadable upload, an unknown class...) is status 400 and
{"error": "minicnn: error: ..."}, the command line's line; anything unexpected is 500 with
the same kind of line, its traceback on the server's stderr, and the server goes on.

Every response forbids the browser to fetch anything from elsewhere (Content-Security-Policy
``default-src 'none'`` plus 'self' for scripts, styles, images and requests), sends no
referrer, and is not cached.
"""
from __future__ import annotations

import base64
import errno
import hmac
import ipaddress
import json
import secrets
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from minicnn.explain import ExplainError
from minicnn.explore.explorer import MAX_UPLOAD_BYTES, Explorer, ExploreError
from minicnn.io.images import ImageReadError
from minicnn.io.weights import WeightsFileError

__all__ = ["ExploreServer", "make_server", "is_loopback", "ASSETS", "DEFAULT_PORT"]

DEFAULT_PORT = 8765
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data: blob:; connect-src 'self'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
# What the page is told as one line, and the server keeps running: bad input and bad requests.
# (ValueError: a method's own check of its options, e.g. an occlusion window larger than the
# image.)
_USER_ERRORS = (ExploreError, ImageReadError, ExplainError, WeightsFileError, ValueError)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, "localhost")."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read_assets() -> dict:
    folder = resources.files("minicnn.explore") / "static"
    return {route: ((folder / name).read_bytes(), kind) for route, (name, kind) in ASSETS.items()}


def _encode(value):
    """JSON for what ``json`` does not know: arrays (base64 of their bytes), numpy numbers."""
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        return {"shape": list(a.shape), "dtype": a.dtype.name,
                "data": base64.b64encode(a.tobytes()).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__}")


class ExploreServer(ThreadingHTTPServer):
    """The HTTP server of one explorer: ``url`` is the page's address, token included.
    One thread per request; the passes run one after another (``serve``)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, explorer: Explorer, host: str, port: int, token: str | None = None):
        self.explorer = explorer
        self.token = token or secrets.token_urlsafe(24)
        self.assets = _read_assets()
        if ":" in host.strip("[]"):
            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/{self.token}/"

    def serve(self) -> None:
        """Serve until Ctrl-C (or another exception a signal handler raises): the HTTP
        requests on a thread of their own, every pass in this thread, which should be the
        main one (``explorer.py`` says why). Then stop listening and remove the uploads."""
        http = threading.Thread(target=self.serve_forever, name="minicnn-explore-http",
                                daemon=True)
        http.start()
        try:
            self.explorer.run_forever()
        finally:
            self.shutdown()
            self.close()

    def close(self) -> None:
        """Stop listening and remove the uploads."""
        self.server_close()
        self.explorer.close()


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                token: str | None = None) -> ExploreServer:
    """The server, listening; ExploreError (one line) when the port is taken or the address
    cannot be used. port 0: any free port (``server.url`` says which)."""
    if not 0 <= port <= 65535:
        raise ExploreError(f"--port must be 0..65535, got {port}")
    try:
        return ExploreServer(explorer, host, port, token)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ExploreError(f"port {port} on {host} is in use: choose another with "
                               f"--port N (--port 0 picks a free one)") from None
        if e.errno == errno.EACCES:
            raise ExploreError(f"port {port} on {host}: permission denied (ports below "
                               f"1024 need privileges): choose another with --port N") from None
        raise ExploreError(f"cannot listen on {host} port {port}: "
                           f"{e.strerror or e}") from None


class _Handler(BaseHTTPRequestHandler):
    server: ExploreServer
    server_version = "minicnn-explore"
    sys_version = ""

    def log_message(self, format, *args):      # quiet: the terminal shows errors only
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, verb: str):
        parts = urlsplit(self.path)
        head, _, rest = parts.path.lstrip("/").partition("/")
        if not hmac.compare_digest(head.encode(), self.server.token.encode()):
            return self._error(403, "this address needs the token that `minicnn explore` "
                                    "printed")
        if parts.path == f"/{head}":                       # /<token> -> /<token>/
            return self._send(301, b"", "text/plain", {"Location": f"/{head}/"})
        route = "/" + rest
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            if verb == "GET" and route in self.server.assets:
                return self._send(200, *self.server.assets[route])
            answer = self._answer(verb, route, query)
            if answer is None:
                return self._error(404, f"no such page: {route}")
            body = json.dumps(answer, default=_encode, allow_nan=False).encode()
            return self._send(200, body, "application/json")
        except _USER_ERRORS as e:
            return self._error(400, str(e))
        except Exception as e:               # noqa: BLE001 - the server must keep running
            traceback.print_exc(file=sys.stderr)
            return self._error(500, f"internal error ({type(e).__name__}: {e}); the "
                                    f"traceback is on the server's terminal")

    def _answer(self, verb, route, q):
        ex = self.server.explorer
        if verb == "GET" and route == "/api/info":
            return ex.info()
        if verb == "GET" and route == "/api/classify":
            return ex.classify(q.get("network"), q.get("image"))
        if verb == "GET" and route == "/api/explain":
            options = {k[4:]: v for k, v in q.items() if k.startswith("opt.")}
            return ex.explain(q.get("network"), q.get("image"), q.get("method"),
                              q.get("target"), q.get("layer"), options)
        if verb == "GET" and route == "/api/trace":
            return ex.trace(q.get("network"), q.get("image"), q.get("target"),
                            q.get("method"), q.get("rule"))
        if verb == "POST" and route == "/api/upload":
            return ex.upload(unquote(self.headers.get("X-File-Name", "upload")),
                             self._body())
        return None

    def _body(self) -> bytes:
        """The request's body, at most MAX_UPLOAD_BYTES (refused before reading more)."""
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ExploreError("an upload needs its length (Content-Length)")
        if int(length) > MAX_UPLOAD_BYTES:
            name = unquote(self.headers.get("X-File-Name", "upload"))
            self.close_connection = True
            raise ImageReadError(f"{name}: {int(length):,} bytes, more than the upload limit "
                                 f"of {MAX_UPLOAD_BYTES:,}")
        return self.rfile.read(int(length))

    def _error(self, status: int, message: str):
        body = json.dumps({"error": f"minicnn: error: {message}"}).encode()
        self._send(status, body, "application/json")

    def _send(self, status: int, body: bytes, kind: str, extra=None):
        self.send_response(status)
        for name, value in {**_HEADERS, **(extra or {}), "Content-Type": kind,
                            "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
