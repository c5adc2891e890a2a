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
import binascii
import contextvars
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests
import requests.adapters
import requests.auth
import urllib3

from .reference import Reference
from .safeload import parse_json

log = logging.getLogger("signaction.registry")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_SIGNATURE_BYTES = 1024 * 1024
# signature layers of one .sig manifest read at most (each is a blob to fetch and a signature
# to check); more is taken for a hostile or broken registry, as containers/image takes more than
# 128 lookaside signatures. Platform manifests of one index at most.
MAX_SIGNATURE_LAYERS = 1000
MAX_PLATFORMS = 1024
_MAX_ERROR_BODY = 64 * 1024  # of an error response, read for its error code/message only

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_SHA256_RE = re.compile(r"sha256:[a-f0-9]{64}")
_TOKEN_SLACK = 10.0  # seconds before a token's expiry at which it is no longer used


class RegistryError(Exception):
    """A registry (or lookaside server) operation failed. One line: the reference, what was being
    done, and what went wrong (HTTP status, the registry's error code and message). Never holds a
    credential or a token. ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Manifest:
    digest: str  # sha256 of ``raw``, checked
    media_type: str
    raw: bytes

    @property
    def is_index(self) -> bool:
        """An OCI image index or a Docker manifest list."""
        return self.media_type in INDEX_TYPES

    def platforms(self) -> list[tuple[str, str]]:
        """``(digest, "os/arch[/variant]")`` of each child of an index, in index order; [] for a
        single manifest. A child without a platform (e.g. an artifact) is ``"unknown/unknown"``,
        as buildx writes for its attestation manifests: the caller decides what to sign."""
        if not self.is_index:
            return []
        where = f"the index {self.digest}"
        try:
            doc = parse_json(self.raw)
        except ValueError:
            raise RegistryError(f"{where} is not valid JSON") from None
        children = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(children, list):
            raise RegistryError(f"{where} has no list of manifests")
        if len(children) > MAX_PLATFORMS:
            raise RegistryError(f"{where} lists {len(children)} manifests, more than the "
                                f"{MAX_PLATFORMS} signed or checked per image")
        out = []
        for n, child in enumerate(children, 1):
            digest = child.get("digest") if isinstance(child, dict) else None
            if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
                raise RegistryError(f"{where}: manifest {n}'s digest is not sha256:<64 hex>")
            platform = child.get("platform")
            platform = {} if platform is None else platform
            if not isinstance(platform, dict):
                raise RegistryError(f"{where}: manifest {n}'s platform is not an object")
            fields = [platform.get(k) for k in ("os", "architecture", "variant")]
            if not all(f is None or isinstance(f, str) and _PLATFORM_FIELD.fullmatch(f)
                       for f in fields):
                raise RegistryError(f"{where}: manifest {n}'s platform has an os, architecture "
                                    "or variant that is not a short plain name")
            os_, arch, variant = fields
            os_, arch = os_ or "unknown", arch or "unknown"
            out.append((digest, f"{os_}/{arch}/{variant}" if variant else f"{os_}/{arch}"))
        return out


_PLATFORM_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")  # linux, arm64, v8, ppc64le


# -- hosts, paths, credentials ----------------------------------------------------------------

def api_host(host: str) -> str:
    """The host that serves the registry API for a reference host (Docker Hub's differs)."""
    return DOCKER_HUB_API if host in _DOCKER_HUB_ALIASES else host


def repository_path(ref: Reference) -> str:
    """The repository path the API uses: Docker Hub's single-name repositories are ``library/x``."""
    if ref.host in _DOCKER_HUB_ALIASES and "/" not in ref.path:
        return f"library/{ref.path}"
    return ref.path


def _normalize_auth_key(key: str) -> str:
    """``https://index.docker.io/v1/`` -> ``docker.io``; ``quay.io/ns/`` -> ``quay.io/ns``."""
    key = key.strip()
    if "://" in key:
        key = key.split("://", 1)[1]
    key = key.rstrip("/")
    for suffix in ("/v1", "/v2"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    host, sep, rest = key.partition("/")
    if host in _DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    return host + sep + rest


def _auth_file_candidates(auth_file: str | None,
                          environ: Mapping[str, str]) -> list[tuple[str, bool]]:
    """(path, explicitly named) in lookup order."""
    out: list[tuple[str, bool]] = []
    if environ.get("REGISTRY_AUTH_FILE"):
        out.append((environ["REGISTRY_AUTH_FILE"], True))
    if auth_file:
        out.append((auth_file, True))
    if environ.get("DOCKER_CONFIG"):
        out.append((os.path.join(environ["DOCKER_CONFIG"], "config.json"), False))
    elif environ.get("HOME"):
        out.append((os.path.join(environ["HOME"], ".docker", "config.json"), False))
    if environ.get("XDG_RUNTIME_DIR"):
        out.append((os.path.join(environ["XDG_RUNTIME_DIR"], "containers", "auth.json"), False))
    return out


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


def _load_auths(path: str, explicit: bool) -> dict[str, dict] | None:
    """The ``auths`` map of an auth file, keys normalized; None if an implicit file is absent."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        if explicit:
            raise RegistryError(f"auth file {path}: no such file") from None
        return None
    except (OSError, ValueError) as e:
        # JSONDecodeError says where, not what: no file content gets into the message.
        what = e.strerror if isinstance(e, OSError) else f"not valid JSON ({e.__class__.__name__} "\
            f"at line {getattr(e, 'lineno', '?')})"
        if explicit:
            raise RegistryError(f"auth file {path}: {what}") from None
        log.warning("ignoring auth file %s: %s", path, what)
        return None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and not auths and (doc.get("credsStore") or doc.get("credHelpers")):
        log.warning("auth file %s uses docker credential helpers, which are not supported: "
                    "put the credentials in its 'auths' or use REGISTRY_AUTH_FILE", path)
    if not isinstance(auths, dict):
        return {}
    return {_normalize_auth_key(k): v for k, v in auths.items() if isinstance(v, dict)}


def _decode_entry(entry: dict, path: str, key: str) -> tuple[str, str] | None:
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(entry["auth"], validate=True).decode()
            user, sep, password = decoded.partition(":")
        except (binascii.Error, ValueError, TypeError):
            raise RegistryError(f"auth file {path}: the 'auth' of {key!r} is not base64 of "
                                "user:password") from None
        if not sep:
            raise RegistryError(f"auth file {path}: the 'auth' of {key!r} has no ':' between "
                                "user and password")
        return user, password
    if entry.get("username") and entry.get("password") is not None:
        return str(entry["username"]), str(entry["password"])
    return None


def find_credentials(host: str, path: str = "", *, username: str | None = None,
                     password: str | None = None, auth_file: str | None = None,
                     environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """(user, password) for a repository ``host/path``, or None for anonymous access.

    Explicit username/password win; then the first auth file (see ``_auth_file_candidates``) with an
    entry for the repository, its most specific ``host[/namespace...]`` key first.
    """
    if username is not None or password is not None:
        if not username or password is None:
            raise RegistryError("registry credentials: a username needs a password and vice versa")
        return username, password
    host = _normalize_auth_key(host)
    parts = [p for p in path.split("/") if p]
    keys = [host + "/" + "/".join(parts[:i]) for i in range(len(parts), 0, -1)] + [host]
    for candidate, explicit in _auth_file_candidates(auth_file, environ):
        auths = _load_auths(candidate, explicit)
        if not auths:
            continue
        for key in keys:
            if key in auths:
                creds = _decode_entry(auths[key], candidate, key)
                if creds is not None:
                    return creds
    return None


# -- HTTP plumbing ------------------------------------------------------------------------------

class _SetAuthorization(requests.auth.AuthBase):
    """Sets (or, with None, leaves out) the Authorization header. Passing an ``auth`` object on
    every request also stops requests from substituting ~/.netrc credentials for ours."""

    def __init__(self, value: str | None):
        self.value = value

    def __call__(self, r):
        if self.value is not None:
            r.headers["Authorization"] = self.value
        return r


@dataclass
class _Reply:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    url: str
    attempts: int = 1

    def reason_line(self) -> str:
        after = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"HTTP {self.status}{f' {self.reason}' if self.reason else ''}{after}"


@dataclass
class _Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str] = field(default_factory=dict)


_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def _parse_challenge(header: str | None) -> _Challenge | None:
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _CHALLENGE_PARAM.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return _Challenge(scheme.lower(), params)


def _redact(url: str) -> str:
    """A URL fit for a message: no userinfo, no query (a query may hold anything)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_detail(body: bytes) -> str:
    """The registry's ``{"errors": [{"code", "message"}]}`` as ``CODE: message``, else ''."""
    try:
        errors = parse_json(body).get("errors")
        first = errors[0]
        code, message = str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, AttributeError, TypeError, IndexError, KeyError):
        return ""
    return _one_line(": ".join(x for x in (code, message) if x))


# -- retries ----------------------------------------------------------------------------------

_RETRY_STATUSES = frozenset({429, *range(500, 600)})
# The methods the client sends. Read errors and these statuses are retried for them; urllib3
# retries a connection that could not be made for any method (nothing reached the server). PUT
# (a blob's upload, a manifest) is idempotent; a POST retried opens another upload session
# (unused, harmless) or, to Rekor, answers 409 with the entry the first attempt made.
_RETRY_METHODS = frozenset({"GET", "HEAD", "PUT", "POST"})


@dataclass
class _Attempts:
    """One client request, as its retry log lines name it, and how many retries it has taken."""
    ref: Reference | str
    shown: str  # "METHOD url", the URL redacted
    limit: int  # attempts allowed
    sleep: Callable[[float], object]  # the client's, read when the request starts
    retried: int = 0


# The request the calling thread is making through ``RegistryClient._send``: the adapter's one Retry
# is shared by every thread, so what it logs and how it sleeps come from here.
_CURRENT: contextvars.ContextVar[_Attempts] = contextvars.ContextVar("signaction_registry_request")


class _Retry(urllib3.Retry):
    """urllib3's Retry, with the delays, log lines and error bodies the client wants."""

    # Only the retried statuses: by default urllib3 also retries a 413 that has a Retry-After.
    RETRY_AFTER_STATUS_CODES = _RETRY_STATUSES
    _detail = ""  # the registry's error code/message of the response being retried

    def increment(self, method=None, url=None, response=None, error=None, _pool=None,
                  _stacktrace=None):
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is not None:  # it will be retried: read its error before urllib3 discards it
            new._detail = _retry_detail(response)
        return new

    def get_backoff_time(self) -> float:
        # Hand-written (test_backoff_is_exponential_with_jitter_and_capped): urllib3 does not wait
        # at all before the first retry and adds its jitter (a fixed number of seconds) before
        # capping, so at the cap every client would retry at the same moment. Here: half to all of
        # backoff_factor * 2**(n-1), capped at backoff_max, before retry n.
        step = min(self.backoff_max, self.backoff_factor * 2 ** (len(self.history) - 1))
        return step * (0.5 + random.random() / 2)

    def get_retry_after(self, response) -> float | None:
        try:
            after = super().get_retry_after(response)
        except urllib3.exceptions.InvalidHeader:  # neither seconds nor a date: back off as without
            return None
        # Capped like the backoff (retry_after_max would do it, but takes whole seconds only).
        return None if after is None else min(after, self.backoff_max)

    def sleep(self, response=None) -> None:
        # Replaces urllib3's sleep to log each retry and to sleep with the client's (injectable)
        # sleep; also, a "Retry-After: 0" means no wait here, where urllib3 would back off.
        after = None
        if response is not None and self.respect_retry_after_header:
            after = self.get_retry_after(response)
        delay = after if after is not None else self.get_backoff_time()
        attempts = _CURRENT.get(None)
        if attempts is None:  # not a request of RegistryClient._send
            time.sleep(delay)
            return
        attempts.retried += 1
        last = self.history[-1]
        if last.error is not None:
            why = _one_line(f"{_error_name(last.error)}: {_reason(last.error)}")
        else:
            why = f"HTTP {last.status}{f' ({self._detail})' if self._detail else ''}"
        log.warning("%s: %s: %s (attempt %d/%d); retrying in %.1f s", attempts.ref, attempts.shown,
                    why, attempts.retried, attempts.limit, delay)
        attempts.sleep(delay)


def _retry_detail(response) -> str:
    """The registry's error code/message from a response about to be retried, reading no more than
    an error body's bound; a longer body's connection is closed rather than drained."""
    try:
        body = response.read(_MAX_ERROR_BODY + 1, decode_content=True) or b""
    except (urllib3.exceptions.HTTPError, OSError):
        return ""
    if len(body) > _MAX_ERROR_BODY:
        response.close()
    return _error_detail(body[:_MAX_ERROR_BODY])


def _error_name(e: BaseException) -> str:
    """What requests calls an error, also when urllib3 retried it: requests reports every error
    wrapped in urllib3's MaxRetryError as a ConnectionError, a read timeout too."""
    if isinstance(e, requests.RequestException):
        inner = e.args[0] if e.args else None
        if not isinstance(inner, urllib3.exceptions.MaxRetryError) or inner.reason is None:
            return e.__class__.__name__
        e = inner.reason
    errors = urllib3.exceptions
    for cls, name in ((errors.ProxyError, "ProxyError"), (errors.SSLError, "SSLError"),
                      (errors.ReadTimeoutError, "ReadTimeout")):
        if isinstance(e, cls):
            return name
    if isinstance(e, errors.ConnectTimeoutError) and not isinstance(e, errors.NewConnectionError):
        return "ConnectTimeout"
    return "ConnectionError"


def _quiet_urllib3_retries(record: logging.LogRecord) -> bool:
    """Drops urllib3's own warning about a retried connection during a client request: the
    client's log line says it already (and counts the warnings the tests count)."""
    return not (hasattr(record, "__urllib3-retry-warning") and _CURRENT.get(None) is not None)


logging.getLogger("urllib3.connectionpool").addFilter(_quiet_urllib3_retries)


class RegistryClient:
    """See the module docstring. Thread-safe; reuse one instance for a whole run."""

    def __init__(self, *, auth_file: str | None = None, username: str | None = None,
                 password: str | None = None, environ: Mapping[str, str] = os.environ,
                 plain_http: Callable[[str], bool] | bool = False,
                 verify_tls: bool | str = True,
                 retries: int = 5, timeout: float = 30.0, max_backoff: float = 30.0,
                 backoff_base: float = 0.5, pool_size: int = 32,
                 lookaside_deadline: float = 60.0):
        if retries < 1:
            raise ValueError("retries counts attempts: at least 1")
        if (username is None) != (password is None) or username == "":
            raise RegistryError("registry credentials: a username needs a password and vice versa")
        self._auth_file = auth_file
        self._username = username
        self._password = password
        self._environ = dict(environ)
        self._plain_http = plain_http if callable(plain_http) else (lambda _host, v=plain_http: v)
        self._verify = verify_tls
        if verify_tls is False:
            # Chosen explicitly (allow_insecure_registry): say it once, not once per request.
            log.warning("TLS certificates of registries are not verified")
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.retries = retries
        self.timeout = timeout
        # all the signature-N of one image at a lookaside, in seconds: a server that answers
        # slowly enough (a byte a second) would otherwise hold a run for as long as it likes
        self.lookaside_deadline = lookaside_deadline
        self.max_backoff = max_backoff
        self.backoff_base = backoff_base
        self._sleep = time.sleep  # tests may replace it to observe the delays (read per request)

        self._session = requests.Session()
        # ``retries`` counts attempts; Retry counts retries. raise_on_status=False: the last answer
        # of a retried status comes back as a reply (its reason line says how many attempts).
        retry = _Retry(total=retries - 1, allowed_methods=_RETRY_METHODS,
                       status_forcelist=_RETRY_STATUSES, backoff_factor=backoff_base,
                       backoff_max=max_backoff, raise_on_status=False)
        self._retry = retry
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size,
                                                max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = "signaction-registry-client"

        self._lock = threading.Lock()
        self._credentials: dict[tuple[str, str], tuple[str, str] | None] = {}
        self._basic_hosts: set[str] = set()  # API hosts that asked for Basic: send it up front
        # (host, scope) -> token, expiry
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._token_locks: dict[tuple[str, str], threading.Lock] = {}

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
        tag = digest.replace(":", "-") + ".sig"
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

    def push_blob(self, ref: Reference, data: bytes) -> str:
        """Uploads ``data`` as a blob of ``ref``'s repository (monolithic: one POST with the
        digest, or POST then PUT where the registry opens a session); returns its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        what = f"uploading blob {digest}"
        headers = {"Content-Type": "application/octet-stream"}
        start = self._v2_url(ref, "blobs/uploads/") + "?" + urllib.parse.urlencode(
            {"digest": digest})
        reply = self._request("POST", start, ref=ref, what=what, headers=headers, data=data,
                              push=True)
        if reply.status == 201:
            return digest
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
        return digest

    def put_manifest(self, ref: Reference, tag: str, raw: bytes, media_type: str,
                     if_match: str | None = None) -> str:
        """Points ``tag`` at the manifest ``raw``; returns its digest. ``if_match``: the digest
        the tag is expected to point at now (sent as If-Match; a registry that honours it
        answers 412 when another writer came first: RegistryError with status 412)."""
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        what = f"writing tag {tag}"
        headers = {"Content-Type": media_type}
        if if_match:
            headers["If-Match"] = f'"{if_match}"'
        reply = self._request("PUT", self._v2_url(ref, f"manifests/{tag}"), ref=ref, what=what,
                              headers=headers, data=raw, push=True)
        self._expect_ok(reply, ref, what)
        served = reply.headers.get("Docker-Content-Digest", "").strip()
        if served and served != digest:
            raise RegistryError(f"{ref}: {what}: the registry stored {served[:80]!r}, not "
                                f"{digest}")
        return digest

    def service(self, method: str, url: str, *, what: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None,
                limit: int = MAX_SIGNATURE_BYTES) -> tuple[int, Mapping[str, str], bytes]:
        """A request to a service beside the registries (Fulcio, Rekor, an OIDC token
        endpoint) on the same session, with the same retries and bounds: (status, headers,
        body). No registry credential is sent; ``headers`` may carry the service's own. TLS is
        always verified (allow_insecure_registry is about registries, not Fulcio or Rekor)."""
        auth = dict(headers or {})
        authorization = auth.pop("Authorization", None)
        reply = self._send(method, url, ref=_redact(url), what=what, authorization=authorization,
                           headers=auth, limit=limit, data=body, verify=True)
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
        deadline = time.monotonic() + self.lookaside_deadline
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
    def _expect_ok(reply: _Reply, ref: Reference | str, what: str) -> None:
        if 200 <= reply.status < 300:
            return
        detail = _error_detail(reply.body)
        raise RegistryError(f"{ref}: {what}: {reply.reason_line()}"
                            f"{f' ({detail})' if detail else ''}", reply.status)

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

    def _signature_blob(self, ref: Reference, layer: dict, what: str) -> bytes:
        blob_digest, size = layer.get("digest"), layer.get("size")
        if not isinstance(blob_digest, str) or not _SHA256_RE.fullmatch(blob_digest):
            raise RegistryError(f"{ref}: {what}: a signature layer's digest is not sha256:<64 hex>")
        if isinstance(size, int) and size > MAX_SIGNATURE_BYTES:
            raise RegistryError(f"{ref}: {what}: signature payload {blob_digest} is {size} bytes, "
                                f"more than the {MAX_SIGNATURE_BYTES} allowed")
        blob_what = f"{what}: reading payload {blob_digest}"
        reply = self._request("GET", self._v2_url(ref, f"blobs/{blob_digest}"), ref=ref,
                              what=blob_what, limit=MAX_SIGNATURE_BYTES)
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

    def _read_http_lookaside(self, ref: Reference, url: str, deadline: float) -> bytes | None:
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

    # -- auth -----------------------------------------------------------------------------------

    def _creds(self, ref: Reference) -> tuple[str, str] | None:
        key = (ref.host, repository_path(ref))
        with self._lock:
            if key in self._credentials:
                return self._credentials[key]
        creds = find_credentials(ref.host, key[1], username=self._username, password=self._password,
                                 auth_file=self._auth_file, environ=self._environ)
        with self._lock:
            self._credentials[key] = creds
        return creds

    @staticmethod
    def _basic(creds: tuple[str, str]) -> str:
        return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()

    def _cached_authorization(self, ref: Reference, scope: str) -> str | None:
        host = api_host(ref.host)
        with self._lock:
            token = self._tokens.get((host, scope))
            if token and token[1] > time.monotonic():
                return "Bearer " + token[0]
            basic = host in self._basic_hosts
        if basic:
            creds = self._creds(ref)
            return self._basic(creds) if creds else None
        return None

    def _authenticate(self, ref: Reference, scope: str, challenge: _Challenge | None,
                      sent: str | None, what: str) -> str:
        """The Authorization value to retry with after a 401, or RegistryError."""
        host = api_host(ref.host)
        prefix = f"{ref}: {what}: 401 Unauthorized from {host}"
        if challenge is None:
            raise RegistryError(f"{prefix} without a WWW-Authenticate challenge", 401)
        if challenge.scheme == "basic":
            creds = self._creds(ref)
            if creds is None:
                raise RegistryError(f"{prefix}: Basic auth required and no credentials for "
                                    f"{ref.host} were found", 401)
            with self._lock:
                self._basic_hosts.add(host)
            value = self._basic(creds)
            if value == sent:
                raise RegistryError(f"{prefix}: the credentials for {ref.host} were rejected", 401)
            return value
        if challenge.scheme != "bearer":
            raise RegistryError(f"{prefix}: unsupported auth scheme {challenge.scheme!r}", 401)
        key = (host, scope)
        with self._lock:
            token_lock = self._token_locks.setdefault(key, threading.Lock())
        with token_lock:  # one token fetch per key, however many threads got this 401
            with self._lock:
                cached = self._tokens.get(key)
            if cached and cached[1] > time.monotonic() and "Bearer " + cached[0] != sent:
                return "Bearer " + cached[0]
            token, lifetime = self._fetch_token(ref, scope, challenge, what)
            with self._lock:
                slack = min(_TOKEN_SLACK, lifetime / 2)
                self._tokens[key] = (token, time.monotonic() + lifetime - slack)
            return "Bearer " + token

    def _fetch_token(self, ref: Reference, scope: str, challenge: _Challenge,
                     what: str) -> tuple[str, float]:
        realm = challenge.params.get("realm", "")
        parts = urllib.parse.urlsplit(realm)
        what = f"{what}: fetching a token from {_redact(realm)}"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RegistryError(f"{ref}: {what}: the registry's token realm is not an http(s) "
                                "URL", 401)
        realm_host = parts.netloc.rpartition("@")[2]
        if parts.scheme == "http" and not self._plain_http(realm_host):
            raise RegistryError(f"{ref}: {what}: the token realm is plain http and "
                                f"{realm_host} is not allowed plain http", 401)
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query)]
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        query.append(("scope", challenge.params.get("scope") or scope))
        url = urllib.parse.urlunsplit((parts.scheme, realm_host, parts.path,
                                       urllib.parse.urlencode(query), ""))
        creds = self._creds(ref)
        reply = self._send("GET", url, ref=ref, what=what,
                           authorization=self._basic(creds) if creds else None,
                           limit=_MAX_ERROR_BODY)
        if reply.status == 401:
            raise RegistryError(f"{ref}: {what}: 401 Unauthorized: " + (
                f"the credentials for {ref.host} were rejected" if creds
                else f"no credentials for {ref.host} were found"), 401)
        self._expect_ok(reply, ref, what)
        try:
            doc = parse_json(reply.body)
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or 60)  # the token spec's default
        except (ValueError, AttributeError, TypeError):
            token, lifetime = None, 0.0
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{ref}: {what}: the answer holds no token")
        return token, lifetime

    # -- requests with auth and retries ----------------------------------------------------------

    def _request(self, method: str, url: str, *, ref: Reference, what: str,
                 headers: Mapping[str, str] | None = None, limit: int = _MAX_ERROR_BODY,
                 data: bytes | None = None, push: bool = False) -> _Reply:
        """A registry API request: cached auth up front, one retry after a 401, retries on 429,
        5xx and connection errors. Returns the final reply whatever its status, except 401.
        ``push``: the token asked for may write (scope ``pull,push``)."""
        scope = f"repository:{repository_path(ref)}:{'pull,push' if push else 'pull'}"
        sent = self._cached_authorization(ref, scope)
        reply = self._send(method, url, ref=ref, what=what, headers=headers, authorization=sent,
                           limit=limit, data=data)
        if reply.status != 401:
            return reply
        challenge = _parse_challenge(reply.headers.get("WWW-Authenticate"))
        authorization = self._authenticate(ref, scope, challenge, sent, what)
        reply = self._send(method, url, ref=ref, what=what, headers=headers,
                           authorization=authorization, limit=limit, data=data)
        if reply.status == 401:
            detail = _error_detail(reply.body)
            raise RegistryError(f"{ref}: {what}: 401 Unauthorized from {api_host(ref.host)}: the "
                                f"credentials for {ref.host} were rejected"
                                f"{f' ({detail})' if detail else ''}", 401)
        return reply

    def _send(self, method: str, url: str, *, ref: Reference | str, what: str,
              authorization: str | None, headers: Mapping[str, str] | None = None,
              limit: int, data: bytes | None = None,
              verify: bool | str | None = None, deadline: float | None = None) -> _Reply:
        """One request, retried by the adapter's ``_Retry``; RegistryError if it got no answer.
        ``verify``: TLS verification other than the registries' (``verify_tls``); ``deadline``
        (time.monotonic()): the answer, body included, must be complete by then."""
        shown = f"{method} {_redact(url)}"
        attempts = _Attempts(ref, shown, self.retries, self._sleep)
        current = _CURRENT.set(attempts)
        try:
            while True:
                try:
                    reply = self._once(method, url, authorization, headers, limit, ref, what,
                                       data, verify, deadline)
                    break
                except _BodyBroken as broken:
                    # urllib3 has handed the response back by then: a body cut off while it
                    # streams is retried here, from the same budget, with the same backoff
                    if attempts.retried + 1 >= self.retries or (
                            deadline is not None and time.monotonic() >= deadline):
                        raise broken.error from None
                    self._retry_broken_body(attempts, broken.error)
        except requests.RequestException as e:
            # The exception text names the URL, not our headers; still, keep it to its class
            # and the innermost reason, without the query.
            reason = _one_line(f"{_error_name(e)}: {_reason(e)}")
            n = attempts.retried + 1
            raise RegistryError(f"{ref}: {what}: {shown} failed after {n} "
                                f"attempt{'s' if n > 1 else ''}: {reason}") from None
        finally:
            _CURRENT.reset(current)
        if reply.status in _RETRY_STATUSES:
            reply.attempts = attempts.retried + 1
        return reply

    def _retry_broken_body(self, attempts: _Attempts, error: Exception) -> None:
        retry = self._retry.new(history=(None,) * (attempts.retried + 1))
        delay = retry.get_backoff_time()
        attempts.retried += 1
        log.warning("%s: %s: %s (attempt %d/%d); retrying in %.1f s", attempts.ref,
                    attempts.shown, _one_line(f"{_error_name(error)}: {_reason(error)}"),
                    attempts.retried, attempts.limit, delay)
        attempts.sleep(delay)

    def _once(self, method: str, url: str, authorization: str | None,
              headers: Mapping[str, str] | None, limit: int, ref, what: str,
              data: bytes | None = None, verify: bool | str | None = None,
              deadline: float | None = None) -> _Reply:
        timeout = self.timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise self._late(ref, what)
        with self._session.request(method, url, headers=dict(headers or {}), data=data,
                                   auth=_SetAuthorization(authorization), timeout=timeout,
                                   verify=self._verify if verify is None else verify, stream=True,
                                   allow_redirects=True) as resp:
            ok = 200 <= resp.status_code < 300
            cap = limit if ok else min(limit, _MAX_ERROR_BODY)
            body = b""
            if method == "HEAD":
                _ = resp.content  # nothing to read: marks it read, so the connection is reused
            else:
                length = resp.headers.get("Content-Length", "")
                if ok and length.isdigit() and int(length) > cap:
                    raise RegistryError(f"{ref}: {what}: the response is {length} bytes, more than "
                                        f"the {cap} allowed")
                chunks = resp.iter_content(65536) if deadline is None else \
                    _until(resp, deadline, lambda: self._late(ref, what))
                try:
                    body = b"".join(_read_capped(chunks, cap + 1))
                except requests.RequestException as e:  # the connection broke mid-body
                    raise _BodyBroken(e) from None
                if len(body) > cap:
                    if ok:
                        raise RegistryError(f"{ref}: {what}: the response is more than the {cap} "
                                            "bytes allowed")
                    body = body[:cap]
            return _Reply(resp.status_code, resp.reason or "", resp.headers, body, resp.url)


    def _late(self, ref, what: str) -> RegistryError:
        return RegistryError(f"{ref}: {what}: no complete answer within the "
                             f"{self.lookaside_deadline:g} s allowed for one image's signatures "
                             "(registry.lookaside_deadline)")


def _until(resp: requests.Response, deadline: float,
           late: Callable[[], Exception]) -> Iterator[bytes]:
    """The body of ``resp``, decoded, as each read from the socket returns it (not as 64 KiB
    fill up: a server trickling bytes is seen between two of them); ``late()`` is raised once
    ``deadline`` (time.monotonic()) has passed. Each read also waits at most the request's
    timeout, which ``_once`` cut to what was left of the deadline."""
    raw = resp.raw
    while True:
        if time.monotonic() >= deadline:
            raise late()
        try:
            chunk = raw.read1(65536, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if time.monotonic() >= deadline:
                raise late() from None
            raise requests.exceptions.ChunkedEncodingError(e) from None
        if not chunk:
            return
        yield chunk


class _BodyBroken(Exception):
    """The connection broke while a response's body streamed (``error``: requests')."""

    def __init__(self, error: requests.RequestException):
        super().__init__(str(error))
        self.error = error


def _read_capped(chunks: Iterator[bytes], cap: int) -> Iterator[bytes]:
    got = 0
    for chunk in chunks:
        yield chunk
        got += len(chunk)
        if got >= cap:
            return


def _reason(e: BaseException) -> str:
    """The innermost cause of a requests exception, without URLs (which may carry a query) and
    without urllib3's object reprs."""
    seen: set[int] = set()
    while id(e) not in seen:
        seen.add(id(e))
        inner = getattr(e, "reason", None)
        if isinstance(inner, BaseException):
            e = inner
        elif e.args and isinstance(e.args[0], BaseException):
            e = e.args[0]
    text = re.sub(r"https?://\S+", "<url>", str(e))
    text = re.sub(r"<[^<>]* object at 0x[0-9a-f]+>:?\s*", "", text)
    return text or e.__class__.__name__
