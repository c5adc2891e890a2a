"""An OCI 1.1 registry on loopback with the referrers API, which Debian's docker-registry (2.8)
lacks: the other side of the bundle format's "referrers API when the registry has it".

    python -m testbed.registry --listen 127.0.0.1:PORT [--ready-file PATH] [--no-referrers]

The distribution spec's pull and push endpoints as cosign (go-containerregistry), skopeo and this
project's registry client use them, plain HTTP, no authentication, everything in memory:

- ``GET /v2/``; blobs: ``HEAD``/``GET /v2/<name>/blobs/<digest>``, uploads ``POST
  /v2/<name>/blobs/uploads/`` (with ``?digest=`` a monolithic upload; ``?mount=`` is answered as
  a new upload), ``PATCH`` and ``PUT .../uploads/<id>[?digest=]`` (the digest is checked);
- manifests: ``HEAD``/``GET``/``PUT``/``DELETE /v2/<name>/manifests/<tag or digest>``; a PUT of a
  manifest with a ``subject`` answers ``OCI-Subject: <its digest>`` (the client then need not
  keep the referrers tag schema); ``If-Match`` and ``If-None-Match: *`` on a tag's PUT are
  honoured (412 when the tag names another manifest, or exists), as a registry with
  conditional updates does;
- ``GET /v2/<name>/tags/list``;
- ``GET /v2/<name>/referrers/<digest>[?artifactType=T]``: an OCI index of the manifests whose
  ``subject`` is that digest, each with its ``artifactType`` (the manifest's, else its config's
  media type) and annotations; ``OCI-Filters-Applied: artifactType`` when filtered.

``--no-referrers`` turns the referrers endpoint and ``OCI-Subject`` off (404), as an older
registry: the fallback path against a registry whose every other answer is the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from testbed import cli_args, exit_on_sigterm, launch, write_ready_file

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MAX_BODY = 64 << 20  # bytes of one request body
_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_DIGEST = r"sha256:[a-f0-9]{64}"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
ROUTES = [
    ("GET", re.compile(r"/v2/?"), "base"),
    ("HEAD", re.compile(rf"/v2/({_NAME})/blobs/({_DIGEST})"), "blob"),
    ("GET", re.compile(rf"/v2/({_NAME})/blobs/({_DIGEST})"), "blob"),
    ("POST", re.compile(rf"/v2/({_NAME})/blobs/uploads/?"), "start_upload"),
    ("PATCH", re.compile(rf"/v2/({_NAME})/blobs/uploads/([a-f0-9]{{32}})"), "patch_upload"),
    ("PUT", re.compile(rf"/v2/({_NAME})/blobs/uploads/([a-f0-9]{{32}})"), "finish_upload"),
    ("HEAD", re.compile(rf"/v2/({_NAME})/manifests/({_DIGEST}|{_TAG})"), "manifest"),
    ("GET", re.compile(rf"/v2/({_NAME})/manifests/({_DIGEST}|{_TAG})"), "manifest"),
    ("PUT", re.compile(rf"/v2/({_NAME})/manifests/({_DIGEST}|{_TAG})"), "put_manifest"),
    ("DELETE", re.compile(rf"/v2/({_NAME})/manifests/({_DIGEST}|{_TAG})"), "delete_manifest"),
    ("GET", re.compile(rf"/v2/({_NAME})/tags/list"), "tags"),
    ("GET", re.compile(rf"/v2/({_NAME})/referrers/({_DIGEST})"), "referrers"),
]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


@dataclass
class Repository:
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # digest -> (raw, type)
    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest
    subjects: dict[str, list[str]] = field(default_factory=dict)  # subject -> referrer digests


class Store:
    """Every repository's blobs, manifests, tags and referrers, behind one lock."""

    def __init__(self, referrers: bool = True):
        self.referrers = referrers
        self.repos: dict[str, Repository] = {}
        self.uploads: dict[str, tuple[str, bytearray]] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path), for the tests

    def repo(self, name: str) -> Repository:
        return self.repos.setdefault(name, Repository())

    def put_manifest(self, name: str, reference: str, raw: bytes, media_type: str,
                     if_match: str | None, if_none_match: str | None = None
                     ) -> tuple[str, str | None]:
        """Stores a manifest; (its digest, its subject's digest or None)."""
        try:
            doc = json.loads(raw)
        except ValueError:
            raise Refused(400, "MANIFEST_INVALID", "not JSON") from None
        if not isinstance(doc, dict):
            raise Refused(400, "MANIFEST_INVALID", "not a JSON object")
        digest = sha256(raw)
        if reference.startswith("sha256:") and reference != digest:
            raise Refused(400, "DIGEST_INVALID", f"the manifest's digest is {digest}")
        media_type = media_type or str(doc.get("mediaType", ""))
        subject = doc.get("subject")
        subject_digest = subject.get("digest") if isinstance(subject, dict) else None
        with self.lock:
            repo = self.repo(name)
            for child in (doc.get("layers") or []) + [doc.get("config") or {}]:
                if isinstance(child, dict) and child.get("digest") and \
                        child["digest"] not in repo.blobs and "data" not in child:
                    raise Refused(400, "MANIFEST_BLOB_UNKNOWN", f"blob {child['digest']} unknown")
            if not reference.startswith("sha256:"):
                current = repo.tags.get(reference)
                if if_match is not None and if_match.strip('"') != (current or ""):
                    raise Refused(412, "PRECONDITION_FAILED", "the tag names another manifest")
                if if_none_match == "*" and current is not None:
                    raise Refused(412, "PRECONDITION_FAILED", "the tag exists")
                repo.tags[reference] = digest
            repo.manifests[digest] = (raw, media_type)
            if isinstance(subject_digest, str):
                listed = repo.subjects.setdefault(subject_digest, [])
                if digest not in listed:
                    listed.append(digest)
        return digest, subject_digest if self.referrers else None

    def referrers_index(self, name: str, digest: str, artifact_type: str | None) -> bytes:
        with self.lock:
            repo = self.repo(name)
            found = [(d, *repo.manifests[d]) for d in repo.subjects.get(digest, [])
                     if d in repo.manifests]
        manifests = []
        for d, raw, media_type in found:
            doc = json.loads(raw)
            kind = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
            if artifact_type and kind != artifact_type:
                continue
            entry = {"mediaType": media_type, "digest": d, "size": len(raw)}
            if kind:
                entry["artifactType"] = kind
            if doc.get("annotations"):
                entry["annotations"] = doc["annotations"]
            manifests.append(entry)
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": manifests}).encode()


class Handler(BaseHTTPRequestHandler):
    store: Store  # set on the class made for each server
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as Go's net/http (the real services): http.server sends headers and body
    # apart, and with Nagle's algorithm the body waits ~40 ms for the client's delayed ACK
    disable_nagle_algorithm = True
    _head = False

    def log_message(self, format, *args):  # quiet: the tests read the store's request log
        pass

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        self.store.requests.append((method, url.path))
        self._head = method == "HEAD"
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._error(413, "SIZE_INVALID", "body too large")
        body = self.rfile.read(length) if length else b""
        for verb, pattern, name in ROUTES:
            match = pattern.fullmatch(url.path)
            if verb == method and match:
                try:
                    status, headers, payload = getattr(self, name)(*match.groups(), query=query,
                                                                   body=body)
                except Refused as e:
                    return self._error(e.status, e.code, str(e))
                return self._send(status, headers, payload, method == "HEAD")
        return self._error(404, "NAME_UNKNOWN" if url.path.startswith("/v2/") else "UNSUPPORTED",
                           "no such endpoint")

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _send(self, status: int, headers: dict[str, str], payload: bytes, head: bool) -> None:
        self.send_response(status)
        headers = {"Docker-Distribution-API-Version": "registry/2.0", **headers}
        headers.setdefault("Content-Length", str(len(payload)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if payload and not head:
            self.wfile.write(payload)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._send(status, {"Content-Type": "application/json"}, body, self._head)

    # -- the endpoints --------------------------------------------------------------------

    def base(self, *, query, body):
        return 200, {"Content-Type": "application/json"}, b"{}"

    def blob(self, name, digest, *, query, body):
        with self.store.lock:
            data = self.store.repo(name).blobs.get(digest)
        if data is None:
            raise Refused(404, "BLOB_UNKNOWN", f"blob {digest} unknown")
        return 200, {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest,
                     "Content-Length": str(len(data))}, data

    def start_upload(self, name, *, query, body):
        if "digest" in query:  # monolithic
            return self._store_blob(name, query["digest"], body)
        upload = secrets.token_hex(16)
        with self.store.lock:
            self.store.uploads[upload] = (name, bytearray())
        return 202, {"Location": f"/v2/{name}/blobs/uploads/{upload}", "Range": "0-0",
                     "Docker-Upload-UUID": upload}, b""

    def patch_upload(self, name, upload, *, query, body):
        with self.store.lock:
            found = self.store.uploads.get(upload)
            if found is None or found[0] != name:
                raise Refused(404, "BLOB_UPLOAD_UNKNOWN", "no such upload")
            found[1].extend(body)
            size = len(found[1])
        return 202, {"Location": f"/v2/{name}/blobs/uploads/{upload}",
                     "Range": f"0-{max(size - 1, 0)}", "Docker-Upload-UUID": upload}, b""

    def finish_upload(self, name, upload, *, query, body):
        with self.store.lock:
            found = self.store.uploads.pop(upload, None)
        if found is None or found[0] != name:
            raise Refused(404, "BLOB_UPLOAD_UNKNOWN", "no such upload")
        return self._store_blob(name, query.get("digest", ""), bytes(found[1]) + body)

    def _store_blob(self, name: str, digest: str, data: bytes):
        if digest != sha256(data):
            raise Refused(400, "DIGEST_INVALID", f"the upload's digest is {sha256(data)}")
        with self.store.lock:
            self.store.repo(name).blobs[digest] = data
        return 201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}, b""

    def _manifest_of(self, name: str, reference: str) -> tuple[str, bytes, str]:
        with self.store.lock:
            repo = self.store.repo(name)
            digest = reference if reference.startswith("sha256:") else repo.tags.get(reference)
            found = repo.manifests.get(digest) if digest else None
        if found is None or digest is None:
            raise Refused(404, "MANIFEST_UNKNOWN", f"manifest {reference} unknown")
        return digest, *found

    def manifest(self, name, reference, *, query, body):
        digest, raw, media_type = self._manifest_of(name, reference)
        return 200, {"Content-Type": media_type, "Docker-Content-Digest": digest,
                     "ETag": f'"{digest}"', "Content-Length": str(len(raw))}, raw

    def put_manifest(self, name, reference, *, query, body):
        digest, subject = self.store.put_manifest(name, reference, body,
                                                  self.headers.get("Content-Type", ""),
                                                  self.headers.get("If-Match"),
                                                  self.headers.get("If-None-Match"))
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        if subject:
            headers["OCI-Subject"] = subject
        return 201, headers, b""

    def delete_manifest(self, name, reference, *, query, body):
        digest, _, _ = self._manifest_of(name, reference)
        with self.store.lock:
            repo = self.store.repo(name)
            repo.manifests.pop(digest, None)
            for tag in [t for t, d in repo.tags.items() if d == digest]:
                del repo.tags[tag]
        return 202, {}, b""

    def tags(self, name, *, query, body):
        with self.store.lock:
            tags = sorted(self.store.repo(name).tags)
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"name": name, "tags": tags}).encode()

    def referrers(self, name, digest, *, query, body):
        if not self.store.referrers:
            raise Refused(404, "UNSUPPORTED", "no referrers API here")
        wanted = query.get("artifactType")
        headers = {"Content-Type": OCI_INDEX}
        if wanted:
            headers["OCI-Filters-Applied"] = "artifactType"
        return 200, headers, self.store.referrers_index(name, digest, wanted)


class Registry:
    """The registry in this process: ``start()`` (a free port on 127.0.0.1), ``host``,
    ``store``, ``stop()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, referrers: bool = True):
        self.store = Store(referrers)
        handler = type("BoundHandler", (Handler,), {"store": self.store})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.host = f"{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="testbed-registry")

    def start(self) -> Registry:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start(log: str | None = None, *, referrers: bool = True, timeout: float = 30):
    """The registry as a child process (``launch``): (process, ready info with ``host``)."""
    return launch("testbed.registry", cli_args(listen="127.0.0.1:0",
                                               no_referrers=not referrers),
                  timeout=timeout, log=log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.registry", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    parser.add_argument("--ready-file", metavar="PATH")
    parser.add_argument("--no-referrers", action="store_true")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    registry = Registry(host or "127.0.0.1", int(port or 0), referrers=not args.no_referrers)
    exit_on_sigterm()
    write_ready_file(args.ready_file, {"host": registry.host, "pid": os.getpid()})
    print(f"registry on http://{registry.host}", file=sys.stderr, flush=True)
    registry.server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
