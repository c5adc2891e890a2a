"""Small clients of Rekor (hashedrekord entries) and Fulcio (signing certificates for ephemeral
keys), on the run's registry client's session, for the native cosign path.

Why not sigstore-python: its public API signs into sigstore *bundles* (the new format) with its
own TUF-fetched trust roots and its own HTTP stack; cosign's legacy ``.sig`` layer needs the
Rekor entry in cosign's older bundle annotation and a certificate per ephemeral key kept across
many signatures, which its public API does not hand out, and it would add some twenty pinned
packages for two POST requests.

What comes back is hostile until checked: a Rekor entry must be for exactly the signature sent
(hash, signature, key) and, when Rekor's key is known, its signed entry timestamp must verify; a
Fulcio certificate must be for the key sent, valid now, readable, and name the token's identity
and issuer.

Both services are asked at most a configured number of requests a minute (``RateLimit``, one
token bucket per service shared by every thread of the run): under the public instance's
limit, a run of thousands of images is slowed to that rate instead of answered 429. A 429 that
comes anyway is retried by the registry client's transport (Retry-After honoured); the answer
that is still 429 after those retries pauses the bucket for every thread for its Retry-After.
A wait that would end past the run's deadline is not slept, neither for a place in the bucket
nor for the transport's next attempt (the run's deadline is handed to it): the request fails at
once, and a 429 given up that way pauses the bucket too.

This module defines no SIGNER: signers.cosign uses it.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import math
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from signaction.formats import dsse, fulcio, rekor
from signaction.formats.cosign import go_json
from signaction.formats.keys import public_pem, sign_bytes
from signaction.registry import PastDeadline, RegistryClient
from signaction.safeload import parse_json

MAX_ANSWER = 1 << 20
RENEW_BEFORE = 120  # seconds before a certificate's end at which a new one is asked for
PUBLIC_REKOR = "https://rekor.sigstore.dev"
PUBLIC_FULCIO = "https://fulcio.sigstore.dev"
# Requests a minute to each of Fulcio and Rekor by default (cosign_signer.fulcio_ and
# rekor_requests_per_minute). Sigstore's documentation publishes no per-client limit for the
# public instance; its operators' rate-limiting prober (github.com/sigstore/sigstore-probers,
# prober/rate-limiting.go, run daily against rekor.sigstore.dev and fulcio.sigstore.dev) states
# "Currently 975 req/min is allowed, or 16/s" (nginx, per client address). 480 is about half of
# it: room for another job behind the same runner address, and for reads and verification.
DEFAULT_REQUESTS_PER_MINUTE = 480
MAX_RETRY_AFTER = 300.0  # seconds of a final 429's Retry-After the bucket pauses at most


class ServiceError(Exception):
    """Rekor or Fulcio failed or answered something unusable: one line."""


def _json(status: int, body: bytes, what: str, ok: tuple[int, ...]) -> Any:
    if status not in ok:
        try:
            message = " ".join(str(parse_json(body).get("message", "")).split())[:200]
        except (ValueError, AttributeError):
            message = ""
        raise ServiceError(f"{what}: HTTP {status}{f' ({message})' if message else ''}")
    try:
        return parse_json(body)
    except ValueError:
        raise ServiceError(f"{what}: the answer is not JSON") from None


class RateLimit:
    """A token bucket: at most ``per_minute`` requests a minute on average to one service, and
    ``burst`` at once (default: half a second's worth, at least 1), for every thread of the run.
    Thread-safe, on a monotonic ``clock``; a caller reserves its place under the lock and then
    sleeps once, outside it, until its time (no polling). ``deadline`` (on ``clock``): a wait
    that would end after it is refused with a ServiceError instead of slept. ``pause``: a
    server's Retry-After, which every later request waits for too."""

    def __init__(self, per_minute: float, what: str, *, deadline: float = math.inf,
                 burst: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep):
        if not per_minute > 0:
            raise ValueError("per_minute must be more than 0")
        self.per_minute, self.what, self.deadline = per_minute, what, deadline
        self.rate = per_minute / 60.0  # tokens a second
        self.burst = max(1.0, self.rate / 2) if burst is None else max(1.0, burst)
        self.clock, self.sleep = clock, sleep
        self.lock = threading.Lock()
        # ``tokens`` as of the time ``base`` (later than now during a pause); below 0: places
        # already promised to callers that are waiting for them
        self.tokens, self.base = self.burst, clock()
        self.requests = 0  # places given
        self.waited = 0.0  # seconds of waiting promised, in all

    def _refill(self, now: float) -> None:
        if now > self.base:
            self.tokens = min(self.burst, self.tokens + (now - self.base) * self.rate)
            self.base = now

    def reserve(self) -> float:
        """The next request's place: the seconds to wait before sending it (0: at once).
        ServiceError, and no place taken, when that wait would end past the deadline."""
        with self.lock:
            now = self.clock()
            self._refill(now)
            at = self.base + max(0.0, (1.0 - self.tokens) / self.rate)
            if at > self.deadline:
                why = "the run's deadline has passed" if now >= self.deadline else \
                    (f"waiting {at - now:.1f} s for a place under its rate limit "
                     f"({self.per_minute:g} requests a minute"
                     f"{' and a Retry-After' if self.base > now else ''}) would pass the "
                     "run's deadline")
                raise ServiceError(f"{self.what}: {why}: not sent")
            self.tokens -= 1.0
            self.requests += 1
            self.waited += at - now
            return at - now

    def acquire(self) -> None:
        """Waits for the next request's place (see ``reserve``)."""
        delay = self.reserve()
        if delay > 0:
            self.sleep(delay)

    def pause(self, seconds: float) -> None:
        """The service answered 429 with Retry-After ``seconds`` (capped at MAX_RETRY_AFTER):
        nothing more is sent before then, and then one request at once at most, the next ones
        at the rate."""
        with self.lock:
            now = self.clock()
            self._refill(now)
            self.tokens = min(self.tokens, 1.0)
            self.base = max(self.base, now + min(max(0.0, seconds), MAX_RETRY_AFTER))


def retry_after(headers: Any) -> float | None:
    """A Retry-After header's seconds (delay-seconds or an HTTP date); None without one."""
    value = str(headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    if value:
        import email.utils

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is not None:
            return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())
    return None


def limited_service(registry: RegistryClient, bucket: RateLimit | None, method: str, url: str,
                    *, deadline: float = math.inf, **kwargs: Any) -> tuple[int, Any, bytes]:
    """``registry.service(method, url, ...)`` once ``bucket`` gives it a place, within the
    run's ``deadline`` (time.monotonic(), the clock of a run's buckets; the earlier of it and
    the bucket's): the transport makes no retry that would wait past it (PastDeadline). A 429
    that is the answer still after the transport's retries, or given up for the deadline,
    pauses ``bucket`` for its Retry-After (one second without one)."""
    if bucket is not None:
        bucket.acquire()
        deadline = min(deadline, bucket.deadline)
    try:
        status, headers, body = registry.service(
            method, url, deadline=deadline if deadline < math.inf else None, **kwargs)
    except PastDeadline as e:
        if e.status == 429 and bucket is not None:
            bucket.pause(e.delay)
        raise
    if status == 429 and bucket is not None:
        after = retry_after(headers)
        bucket.pause(1.0 if after is None else after)
    return status, headers, body


@dataclass(frozen=True)
class LogEntry:
    bundle: str  # cosign's dev.sigstore.cosign/bundle annotation
    index: int
    uuid: str
    entry: rekor.LogEntry  # as the log gave it, checked (a Sigstore bundle's tlog entry)


class Rekor:
    """hashedrekord entries in one Rekor; ``public_pem``: its key (then every SET is checked);
    ``limit``: the RateLimit every request to it waits for (None: none); ``deadline``: the
    run's (time.monotonic()), which no retry waits past (besides the limit's own)."""

    def __init__(self, registry: RegistryClient, url: str | None, public: bytes | None,
                 limit: RateLimit | None = None, deadline: float = math.inf):
        self.registry, self.url, self.public = registry, (url or PUBLIC_REKOR).rstrip("/"), public
        self.limit, self.deadline = limit, deadline

    def _service(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        return limited_service(self.registry, self.limit, method, url, deadline=self.deadline,
                               **kwargs)

    def log(self, payload: bytes, signature: bytes, key_pem: bytes) -> LogEntry:
        """Logs ``signature`` over ``payload`` by ``key_pem`` (a PEM public key or
        certificate); an entry that exists already (409) is fetched."""
        return self._post(rekor.hashedrekord(payload, signature, key_pem), payload, signature,
                          key_pem, "hashedrekord")

    def _post(self, proposed: dict, payload: bytes, signature: bytes, key_pem: bytes,
              kind: str) -> LogEntry:
        """POSTs a proposed entry; an entry that exists already (409) is fetched."""
        what = f"Rekor {self.url}: logging a signature"
        status, headers, body = self._service(
            "POST", f"{self.url}/api/v1/log/entries", what=what, limit=MAX_ANSWER,
            body=json.dumps(proposed).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"})
        existing = urllib.parse.urljoin(self.url + "/", headers.get("Location", ""))
        if status == 409 and existing.startswith(f"{self.url}/api/v1/log/entries/"):
            status, headers, body = self._service("GET", existing, what=what,
                                                  limit=MAX_ANSWER)
            answer = _json(status, body, what, (200,))
        else:
            answer = _json(status, body, what, (201,))
        return self._entry(answer, payload, signature, key_pem, what, kind)

    def log_dsse(self, envelope: dsse.Envelope, key_pem: bytes) -> LogEntry:
        """Logs a DSSE envelope signed by ``key_pem`` as a ``dsse`` 0.0.1 entry (cosign 3's
        kind for bundles); the answer checked as ``log`` checks it."""
        return self._post(rekor.dsse(envelope.text().decode(), key_pem), envelope.payload,
                          envelope.signatures[0], key_pem, "dsse")

    def find(self, uuid: str, payload: bytes, signature: bytes, key_pem: bytes) -> LogEntry:
        """The entry ``uuid`` (formats.rekor.entry_uuid of this signature), fetched and checked
        as ``log`` checks its answer: for a signature another program logged (cosign 3 prints
        no log index)."""
        what = f"Rekor {self.url}: reading entry {uuid[:16]}..."
        status, _, body = self._service("GET", f"{self.url}/api/v1/log/entries/{uuid}",
                                        what=what, limit=MAX_ANSWER)
        return self._entry(_json(status, body, what, (200,)), payload, signature, key_pem, what)

    def _entry(self, answer: Any, payload: bytes, signature: bytes, key_pem: bytes,
               what: str, kind: str = "hashedrekord") -> LogEntry:
        """Rekor's answer, checked by signaction.formats.rekor as verify mode checks a bundle:
        the entry is this signature's; with Rekor's key, its SET and inclusion proof."""
        try:
            (_, found), = answer.items()
            entry = rekor.from_answer(found)
        except (ValueError, AttributeError, TypeError):
            raise ServiceError(f"{what}: the answer is not one Rekor entry") from None
        problem = rekor.entry_problem(entry, payload, signature, key_pem, self.public, kind)
        if problem is not None:
            raise ServiceError(f"{what}: {problem.detail}")
        return LogEntry(go_json(entry.bundle()).decode(), entry.log_index,
                        rekor.leaf_hash(base64.b64decode(entry.body)).hex(), entry)


# -- keyless ------------------------------------------------------------------------------------

def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, read, not verified (the token is Fulcio's to verify)."""
    try:
        part = token.split(".")[1]
        claims = parse_json(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, IndexError, TypeError, AttributeError):
        raise ServiceError("the identity token's claims cannot be read") from None
    if not isinstance(claims, dict):
        raise ServiceError("the identity token's claims cannot be read")
    return claims


def token_subject(token: str) -> str:
    """What Fulcio's proof of possession signs: the token's email, else its subject."""
    claims = token_claims(token)
    subject = claims.get("email") or claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise ServiceError("the identity token names no subject (no email or sub)")
    return subject


def identity_problem(claims: dict[str, Any], identity: str, issuer: str) -> str | None:
    """Why a certificate naming ``identity`` and ``issuer`` is not the one Fulcio issues for a
    token with ``claims`` (None: it is, as far as Fulcio's mapping is known here): the same
    issuer; an email token's email; a GitHub Actions token's workflow (its job_workflow_ref,
    under https://github.com/). Other issuers' mappings (Kubernetes, SPIFFE...) are Fulcio's."""
    if isinstance(claims.get("iss"), str) and issuer != claims["iss"]:
        return f"the certificate names the issuer {issuer!r}, the token {claims['iss']!r}"
    if isinstance(claims.get("email"), str):
        expected = claims["email"]
    elif isinstance(claims.get("job_workflow_ref"), str):
        expected = f"https://github.com/{claims['job_workflow_ref']}"
    else:
        return None
    if identity != expected:
        return f"the certificate names {identity!r}, the token {expected!r}"
    return None


def github_token(registry: RegistryClient, url: str, request_token: str) -> str:
    """A fresh OIDC token for Sigstore from GitHub's token service (the job's
    ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN)."""
    what = "GitHub's OIDC token service"
    sep = "&" if "?" in url else "?"
    status, _, body = registry.service("GET", f"{url}{sep}audience=sigstore", what=what,
                                       limit=64 << 10,
                                       headers={"Authorization": f"bearer {request_token}"})
    value = _json(status, body, what, (200,))
    token = value.get("value") if isinstance(value, dict) else None
    if not isinstance(token, str) or token.count(".") != 2:
        raise ServiceError(f"{what}: the answer holds no token")
    return token


@dataclass(frozen=True)
class Certificate:
    key: Any  # the ephemeral private key
    pem: bytes  # the leaf, as Fulcio gave it (re-encoded)
    chain: bytes  # the rest of the chain, PEM
    identity: str
    issuer: str
    not_after: datetime.datetime

    @functools.cached_property
    def der(self) -> bytes:
        """The leaf, DER (a Sigstore bundle's ``certificate.rawBytes``)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        return x509.load_pem_x509_certificate(self.pem).public_bytes(serialization.Encoding.DER)


class Keyless:
    """One ephemeral P-256 key and its Fulcio certificate at a time, shared by every signature,
    renewed (a new key, a fresh token) RENEW_BEFORE seconds before the certificate ends.
    ``token()``: the identity token now; ``roots``: the configured Fulcio roots, which the
    certificate must chain to (with ``ct_keys``, the CT log keys, its SCT verified); ``limit``:
    the RateLimit every request to Fulcio waits for (None: none); ``deadline``: as Rekor's."""

    def __init__(self, registry: RegistryClient, url: str | None, token: Callable[[], str],
                 roots: fulcio.FulcioRoots | None = None, ct_keys: tuple[bytes, ...] = (),
                 limit: RateLimit | None = None, deadline: float = math.inf):
        self.registry, self.url = registry, (url or PUBLIC_FULCIO).rstrip("/")
        self.token, self.roots, self.ct_keys, self.limit = token, roots, ct_keys, limit
        self.deadline = deadline
        self.lock = threading.Lock()
        self.current: Certificate | None = None
        self.issued = 0  # certificates asked for in this run

    def certificate(self) -> Certificate:
        with self.lock:
            now = datetime.datetime.now(datetime.UTC)
            if self.current is None or (self.current.not_after - now).total_seconds() < \
                    RENEW_BEFORE:
                self.current = self._issue()
                self.issued += 1
            return self.current

    def _issue(self) -> Certificate:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec

        token = self.token()
        claims = token_claims(token)
        key = ec.generate_private_key(ec.SECP256R1())
        proof = sign_bytes(key, token_subject(token).encode())
        what = f"Fulcio {self.url}: a signing certificate"
        request = {"credentials": {"oidcIdentityToken": token},
                   "publicKeyRequest": {"publicKey": {"algorithm": "ECDSA",
                                                      "content": public_pem(key).decode()},
                                        "proofOfPossession": base64.b64encode(proof).decode()}}
        status, _, body = limited_service(
            self.registry, self.limit, "POST", f"{self.url}/api/v2/signingCert", what=what,
            deadline=self.deadline, limit=MAX_ANSWER, body=json.dumps(request).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"})
        answer = _json(status, body, what, (200, 201))
        try:
            found = answer.get("signedCertificateEmbeddedSct") or \
                answer["signedCertificateDetachedSct"]
            pems = [str(c).encode() for c in found["chain"]["certificates"]]
            if not 1 <= len(pems) <= fulcio.MAX_CHAIN:
                raise ValueError(f"{len(pems)} certificates")
            certs = [x509.load_pem_x509_certificate(p) for p in pems]
            leaf = certs[0]
            pem, identity, issuer = fulcio.read_certificate(pems[0])
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            why = str(e) if isinstance(e, ValueError) else "not a certificate chain"
            raise ServiceError(f"{what}: the answer is unusable: {why}"[:300]) from None
        if public_pem(key) != _spki_pem(leaf):
            raise ServiceError(f"{what}: the certificate is for another key")
        mismatch = identity_problem(claims, identity, issuer)
        if mismatch is not None:
            raise ServiceError(f"{what}: {mismatch}"[:300])
        now = datetime.datetime.now(datetime.UTC)
        if not leaf.not_valid_before_utc <= now + datetime.timedelta(seconds=60) or \
                leaf.not_valid_after_utc <= now:
            raise ServiceError(f"{what}: the certificate is not valid now")
        if self.roots is not None:  # the check verify mode makes, now (no roots: none was
            # configured nor fetched through TUF, e.g. a private instance given by URL alone)
            at = max(now, leaf.not_valid_before_utc)
            problem, chain = fulcio.chain_problem(leaf, self.roots, certs[1:], at)
            if problem is None and self.ct_keys:
                problem = fulcio.sct_problem(leaf, chain[1], self.ct_keys)
            if problem is not None:
                raise ServiceError(f"{what}: {problem.detail}")
        return Certificate(key, pem, b"".join(_pem(p) for p in pems[1:]), identity, issuer,
                           leaf.not_valid_after_utc)


def _spki_pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def _pem(data: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.PEM)
