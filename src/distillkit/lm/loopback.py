"""Loopback JSON servers: stand-ins for an OpenAI-compatible server on 127.0.0.1, for tests and benchmarks.

A server subclasses `LoopbackServer` and hands it a `JSONHandler` subclass whose `do_POST` reads the request with
`read_json()` and answers with `send_json(code, obj)`; the server runs in a daemon thread until `stop()`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JSONHandler(BaseHTTPRequestHandler):
    """A request handler that speaks JSON and logs nothing."""

    def log_message(self, *args: Any) -> None:
        pass

    def read_json(self) -> Any:
        """The request body, parsed."""
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def send_json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        """Answer with HTTP status `code` and `obj` as the JSON body."""
        self.send_bytes(code, json.dumps(obj).encode(), headers)

    def send_bytes(self, code: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Answer with `data` as a body declared JSON (whatever it holds); a client that has gone is no error."""
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client was killed or timed out
            pass


class LoopbackServer:
    """`handler` served on 127.0.0.1 (a free port unless `port` is given) from a daemon thread.

    `url` is the server's OpenAI-style base URL (ending in /v1).
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        self.httpd.shutdown()
        self.httpd.server_close()
