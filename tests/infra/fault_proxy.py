"""A fault-injecting reverse proxy in front of a real registry, for tests.

``FaultProxy(upstream)`` listens on 127.0.0.1:<free port> (plain http, or TLS with ``tls=(cert,
key)``) and forwards every method with its body (chunked request bodies are de-chunked), so
skopeo or cosign can push through it: ``Location`` headers pointing at the upstream are rewritten
to point at the proxy. On top of that, a programmable plan:

* ``fail_next(path_regex, status=429, headers={"Retry-After": "1"}, times=1)``: answer the next
  ``times`` matching requests with that status instead of forwarding; ``drop=True`` closes the
  connection without an answer (a connection error for the client).
* ``rewrite_next(path_regex, fn, times=1)``: forward, then pass (status, headers, body) of the
  registry's answer through ``fn`` and send what it returns (tampered bodies, missing headers).
* ``require_basic(user, password)``: 401 + ``WWW-Authenticate: Basic realm=...`` unless the right
  Basic Authorization comes.
* ``require_bearer(user, password)``: 401 + ``WWW-Authenticate: Bearer realm="<proxy>/token",
  service="test",scope="repository:<name>:pull"``; ``GET /token`` checks Basic credentials and
  answers ``{"token": ..., "expires_in": ...}`` (or ``access_token`` with ``token_field``); then
  that token is required (``revoke_tokens()`` makes the issued ones invalid).

Faults are checked before auth, so a 429 can hit the token endpoint too. Every request is recorded
(``proxy.records``: method, path, status, whether an Authorization header came and its scheme).
The ``fault_proxy`` fixture gives a fresh proxy in front of the session's ``registry``.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import re
import secrets
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailers", "transfer-encoding", "upgrade"}
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)(?:/|$)")


class QuietServer(http.server.ThreadingHTTPServer):
    """A threaded HTTP server that doesn't print a traceback when a client hangs up mid-answer
    (clients under test do that on purpose, e.g. refusing an oversized body)."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


@dataclass
class Record:
    method: str
    path: str  # with the query
    status: int | None  # None: connection dropped
    authorization: bool
    auth_scheme: str | None  # "Basic", "Bearer" or None


@dataclass
class _Rule:
    pattern: re.Pattern
    times: int
    method: str | None
    status: int = 500
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    drop: bool = False
    rewrite: Callable | None = None


class FaultProxy:
    def __init__(self, upstream: str, *, tls: tuple[str, str] | None = None):
        self.upstream = upstream  # "127.0.0.1:5000", plain http
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self.records: list[Record] = []
        self._auth_mode: str | None = None
        self._user = self._password = ""
        self.service = "test"
        self.token_field = "token"
        self.token_expires_in = 300
        self.tokens: list[str] = []  # issued, in order
        self._revoked = 0  # tokens[:_revoked] are refused
        self.token_requests: list[dict] = []  # query of each /token request
        self._server = QuietServer(("127.0.0.1", 0), _make_handler(self))
        self.scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"{self.scheme}://{self.host}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fault-proxy")

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    # -- the plan ---------------------------------------------------------------------------

    def fail_next(self, path_regex: str, status: int = 500, headers: dict | None = None,
                  times: int = 1, *, body: bytes | str = b"", method: str | None = None,
                  drop: bool = False) -> None:
        if isinstance(body, str):
            body = body.encode()
        with self._lock:
            self._rules.append(_Rule(re.compile(path_regex), times, method, status,
                                     dict(headers or {}), body, drop))

    def rewrite_next(self, path_regex: str,
                     fn: Callable[[int, dict, bytes], tuple[int, dict, bytes]], times: int = 1,
                     *, method: str | None = None) -> None:
        with self._lock:
            self._rules.append(_Rule(re.compile(path_regex), times, method, rewrite=fn))

    def require_basic(self, user: str, password: str) -> None:
        self._auth_mode, self._user, self._password = "basic", user, password

    def require_bearer(self, user: str, password: str, *, token_field: str = "token",
                       expires_in: int = 300) -> None:
        self._auth_mode, self._user, self._password = "bearer", user, password
        self.token_field, self.token_expires_in = token_field, expires_in

    def revoke_tokens(self) -> None:
        """Tokens issued so far are refused from now on (they stay in ``tokens``)."""
        with self._lock:
            self._revoked = len(self.tokens)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.records.clear()
            self.token_requests.clear()

    def requests_to(self, path_regex: str, method: str | None = None) -> list[Record]:
        pattern = re.compile(path_regex)
        with self._lock:
            return [r for r in self.records if pattern.search(r.path)
                    and (method is None or r.method == method)]

    # -- used by the handler ----------------------------------------------------------------

    def _take_rule(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.times > 0 and rule.pattern.search(path) and rule.method in (None, method):
                    rule.times -= 1
                    return rule
        return None

    def _record(self, method: str, path: str, status: int | None, authorization: str | None):
        with self._lock:
            self.records.append(Record(method, path, status, authorization is not None,
                                       authorization.split(" ", 1)[0] if authorization else None))

    def _basic_ok(self, authorization: str | None) -> bool:
        expected = "Basic " + base64.b64encode(f"{self._user}:{self._password}".encode()).decode()
        return authorization == expected

    def _auth_failure(self, method: str, path: str, authorization: str | None):
        """None if the request may pass, else (status, headers, body) of the 401."""
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED",
                                       "message": "authentication required"}]}).encode()
        if self._auth_mode == "basic":
            if self._basic_ok(authorization):
                return None
            return 401, {"WWW-Authenticate": 'Basic realm="fault-proxy"',
                         "Content-Type": "application/json"}, body
        if self._auth_mode == "bearer":
            if authorization and authorization.startswith("Bearer "):
                with self._lock:
                    if authorization[7:] in self.tokens[self._revoked:]:
                        return None
            challenge = f'Bearer realm="{self.url}/token",service="{self.service}"'
            m = _REPO_PATH.match(urllib.parse.urlsplit(path).path)
            if m:
                action = "pull" if method in ("GET", "HEAD") else "pull,push"
                challenge += f',scope="repository:{m.group("name")}:{action}"'
            return 401, {"WWW-Authenticate": challenge, "Content-Type": "application/json"}, body
        return None

    def _token(self, path: str, authorization: str | None):
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
        with self._lock:
            self.token_requests.append(query)
        if not self._basic_ok(authorization):
            return 401, {"Content-Type": "application/json"}, json.dumps(
                {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}).encode()
        token = secrets.token_hex(16)
        with self._lock:
            self.tokens.append(token)
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {self.token_field: token, "expires_in": self.token_expires_in}).encode()


def _make_handler(proxy: FaultProxy):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, headers: dict, body: bytes, method: str):
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            length = headers.get("Content-Length") if method == "HEAD" else None
            self.send_header("Content-Length", str(length if length is not None else len(body)))
            self.end_headers()
            if method != "HEAD" and body:
                self.wfile.write(body)

        def _forward(self, method: str, body: bytes):
            conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_BY_HOP and k.lower() not in ("host",
                                                                                   "content-length")}
                if body or method in ("PUT", "POST", "PATCH"):
                    headers["Content-Length"] = str(len(body))
                conn.request(method, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                out = {}
                for k, v in resp.getheaders():
                    if k.lower() == "location":
                        v = v.replace(f"http://{proxy.upstream}", proxy.url)
                    out[k] = v
                return resp.status, out, data
            finally:
                conn.close()

        def _handle(self):
            method = self.command
            body = self._body()
            authorization = self.headers.get("Authorization")
            rule = proxy._take_rule(method, self.path)
            if rule is not None and rule.rewrite is None:
                if rule.drop:
                    proxy._record(method, self.path, None, authorization)
                    self.close_connection = True
                    return
                proxy._record(method, self.path, rule.status, authorization)
                self._send(rule.status, rule.headers, rule.body, method)
                return
            path = urllib.parse.urlsplit(self.path).path
            if proxy._auth_mode == "bearer" and path == "/token":
                status, headers, data = proxy._token(self.path, authorization)
            else:
                failure = proxy._auth_failure(method, self.path, authorization)
                if failure is not None:
                    status, headers, data = failure
                else:
                    try:
                        status, headers, data = self._forward(method, body)
                    except OSError as e:
                        status, headers, data = 502, {}, str(e).encode()
                    if rule is not None:
                        status, headers, data = rule.rewrite(status, dict(headers), data)
            proxy._record(method, self.path, status, authorization)
            self._send(status, headers, data, method)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

    return Handler


@pytest.fixture
def fault_proxy(registry):
    """A fresh FaultProxy in front of the session's docker-registry (plain http)."""
    proxy = FaultProxy(registry.host).start()
    try:
        yield proxy
    finally:
        proxy.stop()
