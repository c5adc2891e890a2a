"""The test bed's shared pieces: its constants, encodings, and signature checks."""

from __future__ import annotations

import base64
import datetime
import json
import math

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.x509.oid import ObjectIdentifier

AUDIENCE = "sigstore"
CERT_LIFETIME = datetime.timedelta(minutes=10)
GITHUB_URL = "https://github.com"
TREE_ID = 1193050959916656506  # a Rekor shard's tree ID, as 16 hex digits in entry IDs
CHECKPOINT_ORIGIN = "rekor.testbed"
FULCIO_OID = "1.3.6.1.4.1.57264.1."
SCT_LIST_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
ENV_KEYS = ("FULCIO_URL", "REKOR_URL", "OIDC_ISSUER", "SIGSTORE_ROOT_FILE",
            "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE", "SIGSTORE_REKOR_PUBLIC_KEY", "TRUSTED_ROOT",
            "SIGNING_CONFIG", "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")


class Refused(Exception):
    """An answer other than success: the HTTP status and the message (``{"code", "message"}``
    as Fulcio and Rekor answer errors), and extra headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class RateLimiter:
    """The services' rate limit (``--rate-limit``): a token bucket per service, as nginx's
    ``limit_req`` keeps one per client before the public Fulcio and Rekor: ``per_minute``
    requests a minute, ``burst`` at once (0: one second's worth, at least 1). ``admit(service,
    now)`` takes a token or raises Refused(429) with Retry-After, the whole seconds until one is
    there again. Counts every request and every 429 per service. Not thread-safe: the test
    bed's lock guards it."""

    def __init__(self, per_minute: float = 0.0, burst: float = 0.0):
        self.per_minute = max(0.0, float(per_minute))
        self.burst = float(burst) if burst and burst > 0 else max(1.0, self.per_minute / 60)
        self.tokens: dict[str, float] = {}
        self.updated: dict[str, float] = {}
        self.requests: dict[str, int] = {"fulcio": 0, "rekor": 0}
        self.limited: dict[str, int] = {"fulcio": 0, "rekor": 0}

    def admit(self, service: str, now: float) -> None:
        self.requests[service] = self.requests.get(service, 0) + 1
        if self.per_minute <= 0:
            return
        rate = self.per_minute / 60
        tokens = min(self.burst, self.tokens.get(service, self.burst)
                     + (now - self.updated.get(service, now)) * rate)
        self.updated[service] = now
        if tokens >= 1:
            self.tokens[service] = tokens - 1
            return
        self.tokens[service] = tokens
        self.limited[service] = self.limited.get(service, 0) + 1
        after = max(1, math.ceil((1 - tokens) / rate))
        raise Refused(429, f"Too Many Requests: {service} takes {self.per_minute:g} requests a "
                           "minute (testbed rate limit)", {"Retry-After": str(after)})


# -- encodings ------------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unb64(text, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (TypeError, ValueError):
        raise Refused(400, f"{what} is not base64") from None


def canonical_json(value) -> bytes:
    """RFC 8785 for what this test bed signs and stores (strings, integers, objects, lists)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def der_utf8(text: str) -> bytes:
    """A DER UTF8String (Fulcio's encoding of extensions 1.3.6.1.4.1.57264.1.8 and later)."""
    data = text.encode()
    n = len(data)
    length = bytes([n]) if n < 0x80 else (
        bytes([0x81, n]) if n < 0x100 else bytes([0x82, n >> 8, n & 0xFF]))
    return b"\x0c" + length + data


def spki(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_public(key) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


# -- signatures -----------------------------------------------------------------------------

def verify_signature(key, signature: bytes, data: bytes | None = None,
                     digest: tuple[str, bytes] | None = None) -> None:
    """Check ``signature`` over ``data`` (or over a digest: (algorithm, value)) with a public key,
    as sigstore's verifiers do: ECDSA with the curve's hash, RSA PKCS#1 v1.5 with SHA-256,
    Ed25519 over data only. Raises Refused(400)."""
    algorithms = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                  "sha512": hashes.SHA512()}
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if digest:
                key.verify(signature, digest[1], ec.ECDSA(utils.Prehashed(algorithms[digest[0]])))
            else:
                by_size = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}
                key.verify(signature, data, ec.ECDSA(by_size.get(key.curve.key_size,
                                                                 hashes.SHA256())))
        elif isinstance(key, rsa.RSAPublicKey):
            if digest:
                key.verify(signature, digest[1], padding.PKCS1v15(),
                           utils.Prehashed(algorithms[digest[0]]))
            else:
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey) and not digest:
            key.verify(signature, data)
        else:
            raise Refused(400, f"unsupported key type {type(key).__name__}")
    except InvalidSignature:
        raise Refused(400, "signature verification failed") from None
    except ValueError as e:  # a malformed DER signature, a digest of the wrong size
        raise Refused(400, f"signature verification failed: {e}") from None


def load_public_key(data: bytes):
    """A PEM or DER public key, or the key of a PEM or DER certificate; None if neither."""
    for load in (serialization.load_pem_public_key, serialization.load_der_public_key):
        try:
            return load(data)
        except ValueError:
            pass
    for load in (x509.load_pem_x509_certificate, x509.load_der_x509_certificate):
        try:
            return load(data).public_key()
        except ValueError:
            pass
    return None
