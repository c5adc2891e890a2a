"""The registry client's transport: requests through one session, urllib3's retry policy (429
and 5xx with backoff, Retry-After honoured), a body read within a deadline and a size cap (and
no retry that would wait past that deadline: PastDeadline), and auth: bearer tokens from a
registry's challenge, Basic, and credentials from auth files."""

from __future__ import annotations

import base64
import contextvars
import logging
import os
import random
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Self

import requests
import requests.adapters
import requests.auth
import requests.cookies
import requests.hooks
import requests.structures
import urllib3

from ..reference import Reference
from ..safeload import parse_json
from .common import (
    _MAX_ERROR_BODY,
    _TOKEN_SLACK,
    Deadline,
    PastDeadline,
    RegistryError,
    api_host,
    repository_path,
)
from .credentials import (
    find_credentials,
)

log = logging.getLogger("signaction.registry")


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
    """One client request, as its retry log lines name it, and how many retries it has taken;
    ``deadline``: no retry waits past it (``retry``)."""
    ref: Reference | str
    what: str
    shown: str  # "METHOD url", the URL redacted
    limit: int  # attempts allowed
    sleep: Callable[[float], object]  # the client's, read when the request starts
    deadline: Deadline | None = None
    retried: int = 0

    def retry(self, why: str, delay: float, status: int | None) -> None:
        """The next attempt, after ``delay`` seconds, for ``why`` (the last answer's status
        or error, ``status`` its HTTP status); PastDeadline instead when that wait would end
        past the deadline."""
        if self.deadline is not None and time.monotonic() + delay > self.deadline.at:
            left = max(0.0, self.deadline.at - time.monotonic())
            n = self.retried + 1
            raise PastDeadline(f"{self.ref}: {self.what}: {self.shown}: {why} after {n} "
                               f"attempt{'s' if n > 1 else ''}; waiting {delay:.1f} s to retry "
                               f"would pass {self.deadline.name} ({left:.1f} s left): given up",
                               status, delay)
        self.retried += 1
        log.warning("%s: %s: %s (attempt %d/%d); retrying in %.1f s", self.ref, self.shown,
                    why, self.retried, self.limit, delay)
        self.sleep(delay)


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
        last = self.history[-1]
        if last.error is not None:
            why = _one_line(f"{_error_name(last.error)}: {_reason(last.error)}")
        else:
            why = f"HTTP {last.status}{f' ({self._detail})' if self._detail else ''}"
        try:
            attempts.retry(why, delay, last.status)
        except PastDeadline:
            if response is not None:  # drained by urllib3: its connection back to the pool
                response.release_conn()
            raise


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




class _Session(requests.Session):
    """requests' Session, reading what it takes from the environment for a request (the proxy
    for the URL from ``*_PROXY`` and ``NO_PROXY``, ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``
    for ``verify``) once per scheme, host and settings instead of for every request: requests
    walks the whole environment twice per request for it, about a third of this client's CPU
    time per request (measured with cProfile on bench/bundle_bench.py). The environment is not
    expected to change during a run; the answers are requests' own."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple, dict] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert)
        found = self._environment.get(key)
        if found is None:  # two threads may both compute it: the same answer
            found = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._environment[key] = found
        return {**found, "proxies": dict(found["proxies"])}

    def prepared(self, method: str, url: str, headers: Mapping[str, str] | None,
                 data: bytes | None, auth: requests.auth.AuthBase
                 ) -> requests.PreparedRequest | None:
        """What ``prepare_request`` makes of this request, made without it, or None where it
        could differ. ``prepare_request`` costs about a third of this client's CPU time per
        request (cProfile, bench/floor_bench.py): it parses the URL with urllib3 (a Python loop
        per character) and requotes it, merges cookie jars and hooks, and looks in ~/.netrc.
        Here: only for a URL it would leave as it is (``_AS_IS``: lower-case http(s) host,
        characters it neither quotes nor unquotes, no dot segment, no empty query), no cookie
        in the session and no session hooks; the headers merged and checked, the body, its
        Content-Length and the auth in its order. tests/test_registry_prepare.py holds the
        two to the same requests."""
        if self.cookies or any(self.hooks.values()) or self.params or self.auth or \
                method not in _METHODS or not _as_is(url):
            return None
        p = requests.PreparedRequest()
        p.method, p.url = method, url
        merged = requests.structures.CaseInsensitiveDict(self.headers)
        for name, value in (headers or {}).items():
            merged[name] = value
        p.prepare_headers({name: value for name, value in merged.items() if value is not None})
        vars(p)["_cookies"] = requests.cookies.RequestsCookieJar()  # none: see above
        p.body = data or None
        p.prepare_content_length(p.body)
        p.prepare_auth(auth, url)
        p.hooks = requests.hooks.default_hooks()
        return p

    def fast_request(self, method: str, url: str, *, headers: Mapping[str, str] | None,
                     data: bytes | None, auth: requests.auth.AuthBase, timeout: float,
                     verify: bool | str) -> requests.Response:
        """``request(method, url, ..., stream=True, allow_redirects=True)``, prepared by
        ``prepared`` where that is the same; sent by ``send`` as ``request`` sends it
        (redirects, cookies, the adapter's retries and errors)."""
        p = self.prepared(method, url, headers, data, auth)
        if p is None:
            return self.request(method, url, headers=dict(headers or {}), data=data, auth=auth,
                                timeout=timeout, verify=verify, stream=True,
                                allow_redirects=True)
        settings = self.merge_environment_settings(p.url, {}, True, verify, None)
        return self.send(p, timeout=timeout, allow_redirects=True, **settings)


_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"})
# URLs requests' prepare_url gives back unchanged: urllib3's parse_url leaves them as they are
# (lower-case scheme and host, a port without a leading zero, path and query characters it
# allows, upper-case percent escapes) and requote_uri too (no escape of an unreserved character)
_AS_IS_RE = re.compile(r"https?://[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[1-9][0-9]{0,4})?"
                       r"/(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-F]{2})*")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DOT_SEGMENT = re.compile(r"/\.\.?(?:[/?]|$)")


def _as_is(url: str) -> bool:
    if not _AS_IS_RE.fullmatch(url) or url.endswith("?") or _DOT_SEGMENT.search(
            url.partition("?")[0]):
        return False
    return "%" not in url or not any(chr(int(h, 16)) in _UNRESERVED
                                     for h in re.findall(r"%([0-9A-F]{2})", url))


class Transport:
    """The HTTP side of the registry client (signaction.registry.RegistryClient): one requests
    session, the retry policy, the deadline, and auth (tokens, Basic, credential files).
    Thread-safe."""

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

        self._session = _Session()
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


    @staticmethod
    def _expect_ok(reply: _Reply, ref: Reference | str, what: str) -> None:
        if 200 <= reply.status < 300:
            return
        detail = _error_detail(reply.body)
        raise RegistryError(f"{ref}: {what}: {reply.reason_line()}"
                            f"{f' ({detail})' if detail else ''}", reply.status)

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
              verify: bool | str | None = None, deadline: Deadline | None = None) -> _Reply:
        """One request, retried by the adapter's ``_Retry``; RegistryError if it got no answer.
        ``verify``: TLS verification other than the registries' (``verify_tls``); ``deadline``:
        the answer, body included, must be complete by then, and no retry waits past it
        (PastDeadline: given up at once)."""
        shown = f"{method} {_redact(url)}"
        attempts = _Attempts(ref, what, shown, self.retries, self._sleep, deadline)
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
                            deadline is not None and time.monotonic() >= deadline.at):
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
        attempts.retry(_one_line(f"{_error_name(error)}: {_reason(error)}"),
                       retry.get_backoff_time(), None)

    def _once(self, method: str, url: str, authorization: str | None,
              headers: Mapping[str, str] | None, limit: int, ref, what: str,
              data: bytes | None = None, verify: bool | str | None = None,
              deadline: Deadline | None = None) -> _Reply:
        timeout = self.timeout
        if deadline is not None:
            timeout = min(timeout, deadline.at - time.monotonic())
            if timeout <= 0:
                raise _late(ref, what, deadline)
        with self._session.fast_request(method, url, headers=headers, data=data,
                                        auth=_SetAuthorization(authorization), timeout=timeout,
                                        verify=self._verify if verify is None else verify
                                        ) as resp:
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
                    _until(resp, deadline.at, lambda: _late(ref, what, deadline))
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


def _late(ref, what: str, deadline: Deadline) -> RegistryError:
    return RegistryError(f"{ref}: {what}: no complete answer within {deadline.name}")


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
