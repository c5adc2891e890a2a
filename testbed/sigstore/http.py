"""The test bed's HTTP services: one handler class per service over the shared routing."""

from __future__ import annotations

import json
import re
import secrets
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

from .common import (
    AUDIENCE,
    Refused,
    pem_public,
    unb64,
)
from .rekor import (
    Entry,
    canonical_hashedrekord,
    leaf_hash,
)

# -- HTTP -----------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    """One service's requests: ``routes`` maps (method, path pattern) to a method name that
    takes (match, query, body) and returns (status, payload, headers)."""

    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as Go's net/http (the real services): http.server sends headers and body
    # apart, and with Nagle's algorithm the body waits ~40 ms for the client's delayed ACK
    disable_nagle_algorithm = True
    server_version = "sigstore-testbed"
    routes: dict[tuple[str, str], str] = {}
    testbed: Any  # the Sigstore serving this handler (set by Sigstore.start)
    service: str | None = None  # "fulcio", "rekor": every request counted and rate-limited

    def log_message(self, format, *args):
        sys.stderr.write(f"{self.server.server_address[1]} {format % args}\n")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.service is not None:
            try:
                self.testbed.admit(self.service)
            except Refused as e:
                self._send(e.status, {"code": e.status, "message": e.message}, e.headers)
                return
        for (m, pattern), name in self.routes.items():
            match = re.fullmatch(pattern, url.path)
            if match and m == method:
                try:
                    status, payload, headers = getattr(self, name)(match, query, body)
                except Refused as e:
                    status, headers = e.status, e.headers
                    payload = {"code": e.status, "message": e.message}
                except Exception as e:  # a bug here: say so, keep serving
                    self.log_error("%s: %r", self.path, e)
                    status, payload, headers = 500, {"code": 500, "message": repr(e)}, {}
                self._send(status, payload, headers)
                return
        self._send(404, {"code": 404, "message": f"no {method} {url.path} here"}, {})

    def _send(self, status: int, payload, headers: dict):
        if isinstance(payload, (dict, list)):
            data, ctype = json.dumps(payload).encode(), "application/json"
        else:
            data = payload.encode() if isinstance(payload, str) else payload
            ctype = headers.pop("Content-Type", "text/plain")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def json_body(self, body: bytes):
        try:
            return json.loads(body or b"{}")
        except ValueError:
            raise Refused(400, "the request body is not JSON") from None

    def bearer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None


class OidcHandler(Handler):
    routes = {("GET", r"/\.well-known/openid-configuration"): "discovery",
              ("GET", r"/jwks"): "jwks", ("GET", r"/token"): "token",
              ("GET", r"/testbed/state"): "state", ("POST", r"/testbed/faults"): "faults",
              ("POST", r"/testbed/token"): "mint"}

    def discovery(self, match, query, body):
        return 200, self.testbed.issuer.discovery(), {}

    def jwks(self, match, query, body):
        return 200, self.testbed.issuer.jwks(), {}

    def token(self, match, query, body):
        if not secrets.compare_digest(self.bearer() or "", self.testbed.request_token):
            raise Refused(401, "Bad credentials: ACTIONS_ID_TOKEN_REQUEST_TOKEN expected")
        lifetime = int(query["lifetime"]) if "lifetime" in query else None
        token = self.testbed.token(audience=query.get("audience", AUDIENCE), lifetime=lifetime,
                                   email=query.get("email"),
                                   email_verified=query.get("email_verified") != "false")
        return 200, {"count": 1, "value": token}, {}

    def state(self, match, query, body):
        return 200, self.testbed.state(), {}

    def faults(self, match, query, body):
        self.testbed.set_faults(**self.json_body(body))
        return 200, self.testbed.state(), {}

    def mint(self, match, query, body):
        req = self.json_body(body)
        return 200, {"value": self.testbed.token(lifetime=req.get("lifetime"),
                                                 email=req.get("email"),
                                                 extra=req.get("claims") or {})}, {}


class FulcioHandler(Handler):
    service = "fulcio"
    routes = {("POST", r"/api/v1/signingCert"): "signing_cert_v1",
              ("POST", r"/api/v2/signingCert"): "signing_cert_v2",
              ("GET", r"/api/v1/rootCert"): "root_cert",
              ("GET", r"/api/v2/trustBundle"): "trust_bundle"}

    def signing_cert_v1(self, match, query, body):
        self.testbed.fault("fulcio")
        req = self.json_body(body)
        key_field = (req.get("publicKey") or {}).get("content")
        if not key_field:
            raise Refused(400, "There was an error processing the public key: none given")
        chain = self.testbed.sign_certificate(
            self.bearer() or "", unb64(key_field, "publicKey.content"),
            unb64(req.get("signedEmailAddress") or "", "signedEmailAddress"), csr=None)
        return 201, "".join(chain), {"Content-Type": "application/pem-certificate-chain"}

    def signing_cert_v2(self, match, query, body):
        self.testbed.fault("fulcio")
        req = self.json_body(body)
        token = (req.get("credentials") or {}).get("oidcIdentityToken") or self.bearer() or ""
        if req.get("certificateSigningRequest"):
            chain = self.testbed.sign_certificate(token, None, None, csr=unb64(
                req["certificateSigningRequest"], "certificateSigningRequest"))
        else:
            pkr = req.get("publicKeyRequest") or {}
            content = (pkr.get("publicKey") or {}).get("content")
            if not content:
                raise Refused(400, "There was an error processing the public key: none given")
            chain = self.testbed.sign_certificate(
                token, content.encode(), unb64(pkr.get("proofOfPossession") or "",
                                               "proofOfPossession"), csr=None)
        return 200, {"signedCertificateEmbeddedSct": {"chain": {"certificates": chain}}}, {}

    def root_cert(self, match, query, body):
        return 200, "".join(self.testbed.fulcio.chain_pem()), {
            "Content-Type": "application/pem-certificate-chain"}

    def trust_bundle(self, match, query, body):
        return 200, {"chains": [{"certificates": self.testbed.fulcio.chain_pem()}]}, {}


class RekorHandler(Handler):
    service = "rekor"
    routes = {("POST", r"/api/v1/log/entries"): "create",
              ("GET", r"/api/v1/log/entries"): "by_index",
              ("GET", r"/api/v1/log/entries/([0-9a-fA-F]{64}|[0-9a-fA-F]{80})"): "by_uuid",
              ("POST", r"/api/v1/log/entries/retrieve"): "retrieve",
              ("GET", r"/api/v1/log"): "log_info",
              ("GET", r"/api/v1/log/publicKey"): "public_key"}

    def create(self, match, query, body):
        rekor = self.testbed.rekor
        lose = self.testbed.fault("rekor")
        entry, new = rekor.add(self.json_body(body))
        location = f"/api/v1/log/entries/{entry.entry_id}"
        if lose:
            raise Refused(self.testbed.faults.fail_status, "the answer was lost (testbed fault)",
                          {"Retry-After": "0"})
        if not new:
            raise Refused(409, "an equivalent entry already exists in the transparency log "
                               f"with UUID {entry.uuid}", {"Location": location})
        with self.testbed.lock:
            forge = self.testbed.faults.rekor_forge
        return 201, rekor.forged(entry, forge) if forge else rekor.render(entry), {
            "Location": location, "ETag": entry.entry_id}  # the key of the answer, as Rekor

    def by_uuid(self, match, query, body):
        entry = self.testbed.rekor.find(match.group(1))
        if entry is None:
            raise Refused(404, f"entry {match.group(1)} not found")
        return 200, self.testbed.rekor.render(entry), {}

    def by_index(self, match, query, body):
        rekor = self.testbed.rekor
        try:
            entry = rekor.entries[int(query["logIndex"])]
        except (KeyError, ValueError, IndexError):
            raise Refused(404, f"no entry at logIndex {query.get('logIndex')!r}") from None
        return 200, rekor.render(entry), {}

    def retrieve(self, match, query, body):
        rekor, req = self.testbed.rekor, self.json_body(body)
        found: list[Entry | None] = [rekor.find(u) for u in req.get("entryUUIDs") or []]
        for i in req.get("logIndexes") or []:
            found.append(rekor.entries[i] if isinstance(i, int) and 0 <= i < len(rekor.entries)
                         else None)
        for proposed in req.get("entries") or []:
            try:
                found.append(rekor.find(leaf_hash(canonical_hashedrekord(proposed)[0]).hex()))
            except Refused:
                found.append(None)
        return 200, [rekor.render(e) for e in found if e is not None], {}

    def log_info(self, match, query, body):
        return 200, self.testbed.rekor.log_info(), {}

    def public_key(self, match, query, body):
        return 200, pem_public(self.testbed.rekor.key.public_key()), {
            "Content-Type": "application/x-pem-file"}
