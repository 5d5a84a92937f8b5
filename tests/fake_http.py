"""Local HTTP servers that stand in for gateways and branches in tests (the HTTP boundary is the only
place anything is faked)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    """A fake's request handler: ``_answer`` writes a JSON body; requests are not logged."""

    def _answer(self, status: int, answer: dict) -> None:
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def local_server(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str, threading.Thread]:
    """A server on a free port of 127.0.0.1, its base URL, and the (not yet started) thread serving it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    return (
        server,
        f"http://127.0.0.1:{server.server_address[1]}",
        threading.Thread(target=server.serve_forever, daemon=True),
    )
