"""A lookaside web server for verify-mode tests: serves a folder as a static web server does
(404 for what is not there), and answers chosen paths in hostile ways: a status (500), a
redirect to itself (a loop), a huge body, a signature at every signature-N (a list that
never ends), the file itself a byte at a time with a pause between (a trickle), or a gzip
bomb. Runs in a thread on loopback; ``url`` is its base."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class LookasideServer:
    def __init__(self, root: Path):
        self.root = root
        self.status: dict[str, int] = {}  # path prefix -> status to answer
        self.loops: set[str] = set()  # path prefixes redirected to themselves
        self.huge: dict[str, int] = {}  # path prefix -> body size to send
        self.endless: dict[str, bytes] = {}  # folder prefix -> body of every signature-N
        self.trickle: dict[str, float] = {}  # path prefix -> seconds between two bytes
        self.bombs: dict[str, int] = {}  # path prefix -> size of the zeros it gzips
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once (keep-alive)

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests += 1
                path = self.path.split("?", 1)[0]
                if any(path.startswith(p) for p in server.loops):
                    return self._send(302, b"", {"Location": path})
                for prefix, status in server.status.items():
                    if path.startswith(prefix):
                        return self._send(status, b"server error\n")
                for prefix, size in server.huge.items():
                    if path.startswith(prefix):
                        return self._send(200, b"\xa3" * size)
                for prefix, size in server.bombs.items():
                    if path.startswith(prefix):
                        return self._send(200, gzip.compress(b"\0" * size),
                                          {"Content-Encoding": "gzip"})
                for prefix, body in server.endless.items():
                    if path.startswith(prefix) and "/signature-" in path:
                        return self._send(200, body)
                target = (server.root / path.lstrip("/")).resolve()
                if not target.is_relative_to(server.root.resolve()) or not target.is_file():
                    return self._send(404, b"not found\n")
                pause = next((v for p, v in server.trickle.items() if path.startswith(p)), 0)
                self._send(200, target.read_bytes(), pause=pause)

            def _send(self, status: int, body: bytes, headers: dict | None = None,
                      pause: float = 0):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if not pause:
                        self.wfile.write(body)
                    for i in range(len(body) if pause else 0):  # the pace of a slow server
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(pause)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a client that stopped reading (a size cap): what the test wants

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LookasideServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
