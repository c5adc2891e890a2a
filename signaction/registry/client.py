"""The project's one container-registry client: every signer reads registries through it.

What it does, and why each behaviour exists:

* ``resolve`` turns a tag into the digest that gets signed (users asked to sign by digest, never by
  a tag that may move). It HEADs the manifest with an ``Accept`` naming OCI manifests and indexes
  and Docker v2 manifests and lists: a registry that is not told a client accepts an index answers
  404 for an OCI index, or rewrites a Docker list into one platform's manifest, and the digest
  would be the wrong one. Without a usable ``Docker-Content-Digest`` header it GETs the manifest and
  hashes the bytes itself.
* ``manifest`` GETs a manifest by digest and refuses it unless sha256 of the bytes is that digest:
  what we sign (and, for an index, the children we then sign) must be what the digest names, not
  what a registry, proxy or cache chose to serve.
* ``cosign_signatures`` and ``lookaside_signatures`` read the signatures already there, in the two
  places podman, skopeo, CRI-O and bootc look (see shared notes, "Signature formats"), so that a
  re-run can skip images already signed and a writer can take the first free lookaside number.
  Signature payloads are digest-checked too.
* ``update_tag`` is the one conditional read-change-write of a tag that other writers may change
  at the same time (cosign's ``.sig`` tag, the referrers tag schema's ``sha256-<hex>`` index):
  If-Match / If-None-Match for registries that refuse a stale write, then a check that the tag
  names what was written, and the change made again on top of what is there if not.
* Sizes are bounded (manifests 4 MiB, signature payloads 1 MiB; both are tiny in practice) and
  bodies are read streamed up to that bound, so a broken or hostile server can't make the CI step
  swallow gigabytes.
* Credentials come from the places podman/skopeo/docker users already keep them (explicit
  username/password, ``REGISTRY_AUTH_FILE``, the configured auth file, docker's config.json, then
  ``$XDG_RUNTIME_DIR/containers/auth.json``); the first file holding an entry for the registry
  wins, and the most specific ``host/namespace`` key inside a file wins, like
  containers-auth.json(5).
  Docker's key spellings (``https://host/v1/``) and Docker Hub's aliases are accepted.
* Auth follows the registry's ``WWW-Authenticate`` challenge: Basic, or a Bearer token fetched from
  the challenge's realm (with the Basic credentials, if any) and cached per (host, scope) until it
  expires, so N images don't cost N token round trips; after a 401 the request is retried once with
  auth, never more. Credentials are sent to a token realm only over https (or a host the caller
  allowed plain http for): a registry must not be able to route our password to plain http.
* Rate limits (429) and flaky registries (5xx, refused or dropped connections, timeouts) are
  retried with exponential backoff and jitter, capped, honouring ``Retry-After`` (capped too: a CI
  step can't wait an hour). Other 4xx are final: retrying "denied" or "unknown" only makes a failure
  slower. urllib3's ``Retry`` on the session's adapter does the retrying (``_Retry``); a connection
  that breaks once the headers are in, while the body streams, is past urllib3 (it has returned
  the response): ``_send`` retries that one itself, with the same backoff. Every retry is
  logged as a warning; no log line or error message ever holds a credential or a token (only
  methods, URLs without userinfo, statuses and the registry's error code/message).
* One ``requests.Session`` is shared, for connection pooling, by the worker threads that call the
  client concurrently; the token and credential caches are guarded by locks, and one token is
  fetched per key even when many threads hit the same 401 at once.
* TLS is verified by default; ``verify_tls`` may name a CA bundle or disable verification
  (``allow_insecure_registry``). Plain http is used only for hosts ``plain_http`` allows
  (``allow_http_registry``).
* Docker Hub: ``docker.io`` is served by ``registry-1.docker.io`` and single-name repositories live
  under ``library/``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..formats.cosign import COSIGN_SIGNATURE_ANNOTATION, COSIGN_SIMPLESIGNING, sig_tag
from ..formats.oci import (
    OCI_INDEX,
    OCI_MANIFEST,
    fallback_tag,
    index_manifests,
    with_referrer,
)
from ..reference import Reference
from ..safeload import parse_json
from .common import (
    _SHA256_RE,
    MANIFEST_ACCEPT,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    MAX_SIGNATURE_LAYERS,
    RACE_ATTEMPTS,
    Deadline,
    Manifest,
    RegistryError,
    api_host,
    repository_path,
)
from .credentials import (
    find_credentials,
)
from .transport import (
    _RETRY_STATUSES,
    Transport,
    _redact,
    _Reply,
)

log = logging.getLogger("signaction.registry")


# -- settings ---------------------------------------------------------------------------------

# The config's one ``registry`` section, and the same settings under cosign_signer in
# pubtools-sign's spelling (its conf.yaml keeps working). Every signer's client and the cosign
# binary get the same settings, so the credentials cosign sees are the ones the client uses.
REGISTRY_KEYS = {"user": "registry_user", "password": "registry_password",
                 "auth_file": "registry_auth_file", "allow_http": "allow_http_registry",
                 "allow_insecure": "allow_insecure_registry"}


@dataclass(frozen=True)
class RegistrySettings:
    user: str | None = None
    password: str | None = None
    auth_file: str | None = None
    allow_http: bool = False
    allow_insecure: bool = False
    retries: int = 5
    lookaside_deadline: float = 60.0

    @classmethod
    def from_config(cls, registry: Mapping | None, cosign: Mapping | None) -> RegistrySettings:
        """Merged from ``registry`` and ``cosign_signer``; a setting given in both with
        different values is an error (RegistryError names it)."""
        registry, cosign = registry or {}, cosign or {}
        values: dict = {}
        for name, pubtools in REGISTRY_KEYS.items():
            ours, theirs = registry.get(name), cosign.get(pubtools)
            if ours is not None and theirs is not None and ours != theirs:
                raise RegistryError(f"registry.{name} and cosign_signer.{pubtools} differ: "
                                    "give the setting once")
            value = ours if ours is not None else theirs
            if value not in (None, ""):
                values[name] = os.path.expanduser(value) if name == "auth_file" else value
        retries = registry.get("retries", cosign.get("retries"))
        deadline = registry.get("lookaside_deadline")
        return cls(**values, retries=int(retries) if retries else 5,
                   lookaside_deadline=float(deadline) if deadline else 60.0)

    def client(self, environ: Mapping[str, str]) -> RegistryClient:
        return RegistryClient(auth_file=self.auth_file, username=self.user,
                              password=self.password, environ=environ,
                              plain_http=self.allow_http, verify_tls=not self.allow_insecure,
                              retries=self.retries, lookaside_deadline=self.lookaside_deadline)

    def docker_auths(self, hosts: Iterable[str], environ: Mapping[str, str]) -> dict | None:
        """The ``auths`` of a docker config.json that gives a tool (cosign) these settings'
        credentials for ``hosts``; None when no credentials are configured here (the tool then
        reads the user's own files, as the client does)."""
        if self.user and self.password:
            auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return {host: {"auth": auth} for host in hosts}
        if self.auth_file:  # what the client finds for each host, as the client finds it
            out = {}
            for host in hosts:
                creds = find_credentials(host, auth_file=self.auth_file, environ=environ)
                if creds:
                    out[host] = {"auth": base64.b64encode(":".join(creds).encode()).decode()}
            return out or None
        return None


class RegistryClient(Transport):
    """See the module docstring. Thread-safe; reuse one instance for a whole run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # push_blob(shared=True): (API host, digest) -> the repository it was last pushed to;
        # API hosts that answered a monolithic POST with an upload session. Set and read
        # without a lock: a lost update costs one request, never a wrong answer.
        self._shared_blobs: dict[tuple[str, str], str] = {}
        self._two_step_hosts: set[str] = set()

    # -- public API ---------------------------------------------------------------------------

    def resolve(self, ref: Reference) -> str:
        """The digest the tag points at (of the index, for a multi-platform image)."""
        url = self._v2_url(ref, f"manifests/{ref.tag}")
        headers = {"Accept": MANIFEST_ACCEPT}
        what = f"resolving tag {ref.tag!r}"
        reply = self._request("HEAD", url, ref=ref, what=what, headers=headers)
        digest = reply.headers.get("Docker-Content-Digest", "").strip()
        if reply.status == 200 and _SHA256_RE.fullmatch(digest):
            return digest
        if reply.status in _RETRY_STATUSES:  # retries already spent: don't spend them twice
            self._expect_ok(reply, ref, what)
        # No usable digest header (or HEAD unsupported / failed): GET and hash, which also gives
        # the registry's error code when there is one.
        reply = self._request("GET", url, ref=ref, what=what, headers=headers,
                              limit=MAX_MANIFEST_BYTES)
        self._expect_ok(reply, ref, what)
        return "sha256:" + hashlib.sha256(reply.body).hexdigest()

    def manifest(self, ref: Reference, digest: str) -> Manifest:
        """The manifest ``digest`` names, checked: sha256 of the bytes must be ``digest``."""
        self._check_digest(ref, digest)
        what = f"reading manifest {digest}"
        reply = self._request("GET", self._v2_url(ref, f"manifests/{digest}"), ref=ref, what=what,
                              headers={"Accept": MANIFEST_ACCEPT}, limit=MAX_MANIFEST_BYTES)
        self._expect_ok(reply, ref, what)
        return self._checked_manifest(ref, digest, reply)

    def cosign_signatures(self, ref: Reference, digest: str) -> list[dict]:
        """The cosign (legacy tag scheme) signatures of ``digest`` in the same repository.

        Each is ``{"payload": bytes, "signature": base64 str, "annotations": dict}``; [] when the
        ``sha256-<hex>.sig`` tag doesn't exist. Layers of other media types are ignored; a
        simplesigning layer without its signature annotation is skipped with a warning.
        """
        self._check_digest(ref, digest)
        tag = sig_tag(digest)
        what = f"reading cosign signatures (tag {tag})"
        reply = self._request("GET", self._v2_url(ref, f"manifests/{tag}"), ref=ref, what=what,
                              headers={"Accept": MANIFEST_ACCEPT}, limit=MAX_MANIFEST_BYTES)
        if reply.status == 404:
            return []
        self._expect_ok(reply, ref, what)
        return self.signatures_in(ref, reply.body, what)

    def signatures_in(self, ref: Reference, manifest: bytes, what: str) -> list[dict]:
        """The cosign signatures of a ``.sig`` manifest already read (``cosign_signatures``),
        their payloads fetched and digest-checked."""
        try:
            layers = parse_json(manifest).get("layers") or []
            if not isinstance(layers, list):
                raise ValueError
        except (ValueError, AttributeError):
            raise RegistryError(f"{ref}: {what}: the manifest is not a JSON image "
                                "manifest") from None
        signing = [layer for layer in layers if isinstance(layer, dict)
                   and layer.get("mediaType") == COSIGN_SIMPLESIGNING]
        if len(signing) > MAX_SIGNATURE_LAYERS:
            raise RegistryError(f"{ref}: {what}: {len(signing)} signature layers, more than the "
                                f"{MAX_SIGNATURE_LAYERS} read; assuming a broken or hostile "
                                "registry")
        out = []
        blobs: dict[str, bytes] = {}  # each payload fetched once, however many layers name it
        for layer in signing:
            annotations = layer.get("annotations")
            annotations = annotations if isinstance(annotations, dict) else {}
            signature = annotations.get(COSIGN_SIGNATURE_ANNOTATION)
            blob_digest = layer.get("digest")
            if not isinstance(signature, str) or not signature:
                log.warning("%s: cosign signature layer %s has no %s annotation; skipped", ref,
                            str(blob_digest)[:80], COSIGN_SIGNATURE_ANNOTATION)
                continue
            if not isinstance(blob_digest, str) or blob_digest not in blobs:
                payload = self._signature_blob(ref, layer, what)  # refuses a digest not a string
                blobs[str(blob_digest)] = payload
            out.append({"payload": blobs[str(blob_digest)],
                        "signature": signature, "annotations": dict(annotations)})
        return out

    # -- writing (the native sigstore signer: signature layers and their manifest) ----------

    def read_tag(self, ref: Reference, tag: str) -> tuple[bytes, str] | None:
        """The manifest ``tag`` points at now and its digest (sha256 of the bytes served), or
        None when there is no such tag."""
        what = f"reading tag {tag}"
        reply = self._request("GET", self._v2_url(ref, f"manifests/{tag}"), ref=ref, what=what,
                              headers={"Accept": MANIFEST_ACCEPT}, limit=MAX_MANIFEST_BYTES)
        if reply.status == 404:
            return None
        self._expect_ok(reply, ref, what)
        return reply.body, "sha256:" + hashlib.sha256(reply.body).hexdigest()

    def tag_digest(self, ref: Reference, tag: str) -> str | None:
        """The digest ``tag`` points at now (HEAD), or None when there is no such tag; a
        registry that sends no digest header is asked with a GET."""
        what = f"checking tag {tag}"
        reply = self._request("HEAD", self._v2_url(ref, f"manifests/{tag}"), ref=ref, what=what,
                              headers={"Accept": MANIFEST_ACCEPT})
        if reply.status == 404:
            return None
        self._expect_ok(reply, ref, what)
        digest = reply.headers.get("Docker-Content-Digest", "").strip()
        if _SHA256_RE.fullmatch(digest):
            return digest
        found = self.read_tag(ref, tag)
        return found[1] if found else None

    def push_blob(self, ref: Reference, data: bytes, shared: bool = False) -> str:
        """Uploads ``data`` as a blob of ``ref``'s repository (monolithic: one POST with the
        digest, or POST then PUT where the registry opens a session); returns its digest.
        ``shared``: a blob many repositories hold alike (the empty JSON config of every
        referrer): not pushed again to a repository this client pushed it to, and mounted from
        the last one on a host that opens a session for a monolithic POST (one request, no
        upload, instead of two; a registry that cannot mount opens a session: the same two)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        what = f"uploading blob {digest}"
        headers = {"Content-Type": "application/octet-stream"}
        host, repo = api_host(ref.host), repository_path(ref)
        mount_from = self._shared_blobs.get((host, digest)) if shared else None
        if mount_from == repo:
            return digest
        start = self._v2_url(ref, "blobs/uploads/") + "?"
        if mount_from is not None and host in self._two_step_hosts:
            reply = self._request("POST", start + urllib.parse.urlencode(
                {"mount": digest, "from": mount_from}), ref=ref, what=what, push=True)
        else:
            reply = self._request("POST", start + urllib.parse.urlencode({"digest": digest}),
                                  ref=ref, what=what, headers=headers, data=data, push=True)
            if reply.status == 202:
                self._two_step_hosts.add(host)
        if reply.status != 201:
            self._finish_upload(ref, reply, digest, data, what, headers)
        if shared:
            self._shared_blobs[(host, digest)] = repo
        return digest

    def _finish_upload(self, ref: Reference, reply: _Reply, digest: str, data: bytes, what: str,
                       headers: Mapping[str, str]) -> None:
        """The PUT of ``data`` to the upload session a POST answered with (202)."""
        self._expect_ok(reply, ref, what)
        location = reply.headers.get("Location", "")
        if reply.status != 202 or not location:
            raise RegistryError(f"{ref}: {what}: HTTP {reply.status} without an upload location")
        url = urllib.parse.urljoin(reply.url, location)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or \
                parts.netloc.rpartition("@")[2] != urllib.parse.urlsplit(reply.url).netloc:
            raise RegistryError(f"{ref}: {what}: the upload location is another host")
        query = urllib.parse.parse_qsl(parts.query) + [("digest", digest)]
        url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        reply = self._request("PUT", url, ref=ref, what=what, headers=headers, data=data,
                              push=True)
        self._expect_ok(reply, ref, what)

    def put_manifest(self, ref: Reference, tag: str, raw: bytes, media_type: str,
                     if_match: str | None = None, if_absent: bool = False) -> str:
        """Points ``tag`` at the manifest ``raw``; returns its digest. ``if_match``: the digest
        the tag is expected to point at now (sent as If-Match); ``if_absent``: the tag is
        expected not to exist (If-None-Match: *). A registry that honours them answers 412 when
        another writer came first: RegistryError with status 412."""
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        what = f"writing tag {tag}"
        headers = {"Content-Type": media_type}
        if if_match:
            headers["If-Match"] = f'"{if_match}"'
        elif if_absent:
            headers["If-None-Match"] = "*"
        reply = self._request("PUT", self._v2_url(ref, f"manifests/{tag}"), ref=ref, what=what,
                              headers=headers, data=raw, push=True)
        self._expect_ok(reply, ref, what)
        served = reply.headers.get("Docker-Content-Digest", "").strip()
        if served and served != digest:
            raise RegistryError(f"{ref}: {what}: the registry stored {served[:80]!r}, not "
                                f"{digest}")
        return digest

    # -- referrers (OCI 1.1): the API where the registry has it, else the tag schema --------

    def put_referrer(self, ref: Reference, raw: bytes, subject: str) -> tuple[str, bool]:
        """Pushes the manifest ``raw`` (whose ``subject`` is ``subject``) by its digest; returns
        (its digest, whether the registry keeps the referrers list itself: its ``OCI-Subject``
        answer names ``subject``; if not, the caller keeps the fallback tag)."""
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        what = f"writing referrer {digest}"
        reply = self._request("PUT", self._v2_url(ref, f"manifests/{digest}"), ref=ref,
                              what=what, headers={"Content-Type": OCI_MANIFEST}, data=raw,
                              push=True)
        self._expect_ok(reply, ref, what)
        return digest, reply.headers.get("OCI-Subject", "").strip() == subject

    def referrers(self, ref: Reference, digest: str) -> tuple[list[dict], str]:
        """The referrers of ``digest`` and where they were found ("api" or the fallback tag):
        the referrers API's index, or where the registry has none (404, 400, 405) the referrers
        tag schema's ``sha256-<hex>`` index ([] when that tag does not exist). RegistryError
        for an answer that is not an OCI index or lists more than MAX_REFERRERS."""
        self._check_digest(ref, digest)
        what = f"reading the referrers of {digest}"
        reply = self._request("GET", self._v2_url(ref, f"referrers/{digest}"), ref=ref,
                              what=what, headers={"Accept": OCI_INDEX}, limit=MAX_MANIFEST_BYTES)
        where = "api"
        if reply.status in (400, 404, 405):
            tag = fallback_tag(digest)
            where, what = f"tag {tag}", f"reading the referrers tag {tag}"
            found = self.read_tag(ref, tag)
            body = found[0] if found else None
        else:
            self._expect_ok(reply, ref, what)
            body = reply.body
        try:
            return index_manifests(body), where
        except ValueError as e:
            raise RegistryError(f"{ref}: {what}: {e}") from None

    def add_fallback_referrer(self, ref: Reference, subject: str, added: dict) -> int:
        """Lists the referrer ``added`` (a descriptor) in ``subject``'s fallback tag, keeping
        every entry already there, also one another writer adds meanwhile (``update_tag``).
        Returns the writes it took."""
        tag = fallback_tag(subject)

        def change(found: tuple[bytes, str] | None) -> bytes | None:
            try:
                return with_referrer(found[0] if found else None, added)
            except ValueError as e:
                raise RegistryError(f"{ref.host}/{ref.path}:{tag}: the referrers tag is not an "
                                    f"index ({e}): not changed") from None
        # each lost race is another writer's gain: more of them than for one .sig tag
        return self.update_tag(ref, tag, change, OCI_INDEX, attempts=4 * RACE_ATTEMPTS,
                               what="a referrer")[1]

    def update_tag(self, ref: Reference, tag: str,
                   change: Callable[[tuple[bytes, str] | None], bytes | None], media_type: str,
                   *, attempts: int = RACE_ATTEMPTS, what: str = "a change",
                   new_tag_condition: bool = True) -> tuple[str | None, int]:
        """Changes what ``tag`` points at without losing what another writer changes meanwhile:
        read the tag, ``change(found)`` (found: its manifest and digest, or None when there is
        no such tag) gives the manifest to write, or None when what is there needs no change;
        written with If-Match (and If-None-Match: * where there was no tag, unless not
        ``new_tag_condition``): a registry that honours them refuses a stale write (412); then
        checked (HEAD) still to name what was written;
        if another writer came in between, all again on top of what is there now. ``change``
        is called once per attempt and may push what the manifest names. Returns (the digest
        the tag names: the one written, or the one found needing no change; None for no tag
        and no change), the writes it took (412s included). RegistryError after ``attempts``
        rounds lost to other writers. ``what`` names the change in warnings and errors."""
        where = f"{ref.host}/{ref.path}:{tag}"
        conditional = True
        for writes in range(attempts):
            found = self.read_tag(ref, tag)
            raw = change(found)
            if raw is None:
                return (found[1] if found else None), writes
            condition: dict[str, Any] = {}
            if conditional and found:
                condition["if_match"] = found[1]
            elif conditional and new_tag_condition:
                condition["if_absent"] = True
            try:
                written = self.put_manifest(ref, tag, raw, media_type, **condition)
            except RegistryError as e:
                if e.status != 412:
                    raise
                # another writer came first, or the registry reads the condition otherwise: then
                # (the tag is unchanged) no condition is sent from here on
                conditional = self.tag_digest(ref, tag) != (found[1] if found else None)
                continue
            if self.tag_digest(ref, tag) == written:
                return written, writes + 1
            log.warning("%s changed while %s was added (another writer): adding it again on "
                        "top of what is there now", where, what)
        raise RegistryError(f"{where}: other writers changed the tag {attempts} times while "
                            f"{what} was added; not added")

    def blob(self, ref: Reference, layer: dict, what: str, limit: int) -> bytes:
        """The blob a descriptor names, at most ``limit`` bytes, its digest checked."""
        return self._signature_blob(ref, layer, what, limit)

    def service(self, method: str, url: str, *, what: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, limit: int = MAX_SIGNATURE_BYTES,
                deadline: float | None = None) -> tuple[int, Mapping[str, str], bytes]:
        """A request to a service beside the registries (Fulcio, Rekor, an OIDC token
        endpoint) on the same session, with the same retries and bounds: (status, headers,
        body). No registry credential is sent; ``headers`` may carry the service's own. TLS is
        always verified (allow_insecure_registry is about registries, not Fulcio or Rekor).
        ``deadline``: the run's (time.monotonic()): the answer is complete by then, and a retry
        (a 429's or 503's Retry-After, the backoff) that would wait past it is not made: the
        request fails at once (PastDeadline, naming ``what`` and the deadline)."""
        auth = dict(headers or {})
        authorization = auth.pop("Authorization", None)
        reply = self._send(method, url, ref=_redact(url), what=what, authorization=authorization,
                           headers=auth, limit=limit, data=body, verify=True,
                           deadline=None if deadline is None or deadline == math.inf
                           else Deadline(deadline, "the run's deadline"))
        return reply.status, reply.headers, reply.body

    def lookaside_signatures(self, base_url: str, ref: Reference, digest: str,
                             limit: int = 100) -> list[bytes]:
        """``<base>/<path>@sha256=<hex>/signature-1..N`` up to the first missing one.

        ``base_url`` is http(s):// or file://. No registry credentials are sent to it (userinfo in
        an http(s) ``base_url`` is sent as Basic auth, and kept out of messages). More than
        ``limit`` signatures is taken as a server error, as containers/image does. Reading them
        all takes at most ``lookaside_deadline`` seconds (RegistryError after that).
        """
        self._check_digest(ref, digest)
        algo, hexdigest = digest.split(":", 1)
        base = base_url.rstrip("/") + "/" + repository_path(ref) + f"@{algo}={hexdigest}"
        scheme = urllib.parse.urlsplit(base).scheme
        if scheme not in ("http", "https", "file"):
            raise RegistryError(f"{ref}: lookaside {_redact(base_url)}: only http, https and "
                                "file URLs are supported")
        out: list[bytes] = []
        deadline = Deadline(time.monotonic() + self.lookaside_deadline,
                            f"the {self.lookaside_deadline:g} s allowed for one image's "
                            "signatures (registry.lookaside_deadline)")
        for n in range(1, limit + 2):
            url = f"{base}/signature-{n}"
            data = self._read_file_url(ref, url) if scheme == "file" else \
                self._read_http_lookaside(ref, url, deadline)
            if data is None:
                return out
            if n > limit:
                raise RegistryError(f"{ref}: lookaside {_redact(base)} holds more than {limit} "
                                    "signatures; assuming a server error")
            out.append(data)
        return out  # not reached

    # -- helpers for the API ------------------------------------------------------------------

    def _v2_url(self, ref: Reference, rest: str) -> str:
        host = api_host(ref.host)
        scheme = "http" if self._plain_http(ref.host) else "https"
        return f"{scheme}://{host}/v2/{repository_path(ref)}/{rest}"

    @staticmethod
    def _check_digest(ref: Reference, digest: str) -> None:
        if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
            raise RegistryError(f"{ref}: {str(digest)[:80]!r} is not a sha256:<64 hex> digest")

    @staticmethod
    def _checked_manifest(ref: Reference, digest: str, reply: _Reply) -> Manifest:
        actual = "sha256:" + hashlib.sha256(reply.body).hexdigest()
        if actual != digest:
            raise RegistryError(f"{ref}: manifest {digest}: the registry served content whose "
                                f"digest is {actual}; refusing it")
        media_type = ""
        try:
            doc = parse_json(reply.body)
            if isinstance(doc, dict) and isinstance(doc.get("mediaType"), str):
                media_type = doc["mediaType"]
        except ValueError:
            pass
        if not media_type:
            media_type = reply.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(digest, media_type, reply.body)

    def _signature_blob(self, ref: Reference, layer: dict, what: str,
                        limit: int = MAX_SIGNATURE_BYTES) -> bytes:
        blob_digest, size = layer.get("digest"), layer.get("size")
        if not isinstance(blob_digest, str) or not _SHA256_RE.fullmatch(blob_digest):
            raise RegistryError(f"{ref}: {what}: a signature layer's digest is not sha256:<64 hex>")
        if isinstance(size, int) and size > limit:
            raise RegistryError(f"{ref}: {what}: signature payload {blob_digest} is {size} bytes, "
                                f"more than the {limit} allowed")
        blob_what = f"{what}: reading payload {blob_digest}"
        reply = self._request("GET", self._v2_url(ref, f"blobs/{blob_digest}"), ref=ref,
                              what=blob_what, limit=limit)
        self._expect_ok(reply, ref, blob_what)
        actual = "sha256:" + hashlib.sha256(reply.body).hexdigest()
        if actual != blob_digest:
            raise RegistryError(f"{ref}: {blob_what}: the registry served content whose digest is "
                                f"{actual}; refusing it")
        return reply.body

    def _read_file_url(self, ref: Reference, url: str) -> bytes | None:
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_SIGNATURE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise RegistryError(f"{ref}: lookaside {path}: {e.strerror}") from None
        if len(data) > MAX_SIGNATURE_BYTES:
            raise RegistryError(f"{ref}: lookaside {path} is more than {MAX_SIGNATURE_BYTES} bytes")
        return data

    def _read_http_lookaside(self, ref: Reference, url: str,
                             deadline: Deadline) -> bytes | None:
        what = f"reading lookaside {_redact(url)}"
        parts = urllib.parse.urlsplit(url)
        authorization = None
        if parts.username is not None:  # http://user:password@host/...: Basic, and out of the URL
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            authorization = self._basic((user, password))
            url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        reply = self._send("GET", url, ref=ref, what=what, authorization=authorization,
                           limit=MAX_SIGNATURE_BYTES, deadline=deadline)
        if reply.status == 404:
            return None
        self._expect_ok(reply, ref, what)
        return reply.body
