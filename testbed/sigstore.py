"""A sigstore test bed: an OIDC issuer with a GitHub-style token endpoint, a Fulcio CA and a Rekor
transparency log, in one process on loopback, that real cosign 2.5 and skopeo 1.18 accept without
any ``--insecure-*`` flag once pointed at its trust roots.

    python -m testbed.sigstore --dir DIR [--host 127.0.0.1] [--token-lifetime SECONDS]
        [--email ADDRESS] [--repository OWNER/NAME] [--ref REF] [--fulcio-fail K]
        [--rekor-fail K] [--rekor-lose K] [--fail-status CODE] [--fulcio-delay SECONDS]
        [--ready-file PATH]

It writes into DIR the trust roots (``fulcio_chain.pem``: root then intermediate, for
``SIGSTORE_ROOT_FILE``; ``fulcio_root.pem``: the root alone, a podman/skopeo ``caPath``;
``ctfe.pub``; ``rekor.pub``) and ``DIR/env``, ``KEY=VALUE`` lines: ``FULCIO_URL``, ``REKOR_URL``,
``OIDC_ISSUER``, ``SIGSTORE_ROOT_FILE``, ``SIGSTORE_CT_LOG_PUBLIC_KEY_FILE``,
``SIGSTORE_REKOR_PUBLIC_KEY``, ``ACTIONS_ID_TOKEN_REQUEST_URL``, ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``
(written last, atomically: once it exists everything listens). The ready file (JSON: the same
values plus ``pid`` and ``control``) follows. Keys are made afresh at each start and everything
is kept in memory. SIGTERM ends it at once. Three HTTP servers, each service at the root of its
own port as the real ones are:

OIDC issuer (``OIDC_ISSUER``, ``http://HOST:PORT``)
    ``GET /.well-known/openid-configuration`` and ``GET /jwks`` (one P-256 key, ES256 tokens).
    ``GET /token?api-version=2.0&audience=AUD`` with ``Authorization: bearer
    ACTIONS_ID_TOKEN_REQUEST_TOKEN`` answers ``{"value": JWT}`` as GitHub's token service does
    (any other bearer: 401). The token carries GitHub's claims (``sub``
    ``repo:OWNER/NAME:ref:REF``, ``repository``, ``repository_owner``, ``ref``, ``sha``,
    ``workflow``, ``workflow_ref``, ``job_workflow_ref``, ``event_name``, ``runner_environment``,
    ``run_id``, ...) or, with ``--email`` or a query parameter ``email=ADDRESS``, an email
    identity (``email``, ``email_verified``: ``email_verified=false`` in the query makes it
    unverified). It lives ``--token-lifetime`` seconds (default 300; the query parameter
    ``lifetime`` overrides it, negative gives an expired token).
    Test control, no authentication (loopback only): ``GET /testbed/state`` (the fault switches
    and counters), ``POST /testbed/faults`` (JSON, any of ``fulcio_fail``, ``rekor_fail``,
    ``rekor_lose``, ``fail_status``, ``fulcio_delay``, ``fulcio_forge``, ``rekor_forge`` (a
    hostile service: ``FULCIO_FORGERIES``, ``REKOR_FORGERIES``; "" ends it): replaces those
    switches and restarts their counts) and
    ``POST /testbed/token`` (JSON ``{"claims": {...}, "lifetime": S, "email": A}``: a token with
    those claims added or replaced, e.g. another ``aud`` or ``iss``).

Fulcio (``FULCIO_URL``)
    ``POST /api/v1/signingCert`` (the legacy API cosign 2.x uses: JSON ``publicKey.content`` a
    base64 PEM key, ``signedEmailAddress`` the base64 proof of possession; the token in
    ``Authorization: Bearer``; 201 with the PEM chain leaf, intermediate, root) and ``POST
    /api/v2/signingCert`` (``credentials.oidcIdentityToken`` or the bearer header;
    ``publicKeyRequest {publicKey {content: PEM}, proofOfPossession}`` or a base64 PEM
    ``certificateSigningRequest``; 200 with ``signedCertificateEmbeddedSct.chain.certificates``).
    The token is checked as Fulcio does: ES256 signature against the issuer's JWKS document,
    ``iss``, ``aud`` ``sigstore``, ``exp`` and ``nbf``; the proof is the subject (the ``email``,
    which must be verified, or else ``sub``) signed with the key. The certificate: 10 minutes,
    an empty subject, a critical SAN (GitHub: the URI ``https://github.com/`` +
    ``job_workflow_ref``, as Fulcio's GitHub template; email: the address), code-signing EKU, the
    OIDC issuer in 1.3.6.1.4.1.57264.1.1 (raw, deprecated) and .1.8 (DER UTF8String), for
    GitHub also .1.2-.1.6 (raw) and .1.9-.1.22 (DER UTF8String) from the claims, and an
    embedded SCT (see ``CtLog``). ``GET /api/v1/rootCert`` (intermediate and root PEM) and
    ``GET /api/v2/trustBundle``.

Rekor (``REKOR_URL``)
    ``POST /api/v1/log/entries`` takes ``hashedrekord`` 0.0.1 only: the signature must verify
    over ``data.hash`` with the key or certificate in ``signature.publicKey`` (ECDSA or RSA, as
    Rekor checks); the body is stored canonicalized (RFC 8785) and its RFC 6962 leaf hash is the
    entry's UUID; 201 ``{entryID: entry}`` with ``Location``, or 409 with the existing entry's
    ``Location`` for the same body again (always, as Rekor). An entry has ``body``,
    ``integratedTime``, ``logID`` (SHA-256 of the log key), ``logIndex`` and ``verification``:
    ``signedEntryTimestamp`` (ECDSA over the canonical JSON of body, integratedTime, logID,
    logIndex: what cosign and containers/image verify offline) and ``inclusionProof`` (RFC 6962
    audit path to the current root, with a signed checkpoint). ``GET
    /api/v1/log/entries/{uuid or entryID}``, ``GET /api/v1/log/entries?logIndex=N``, ``POST
    /api/v1/log/entries/retrieve`` (``entryUUIDs``, ``logIndexes``, ``entries``), ``GET
    /api/v1/log`` (tree size, root hash, ``signedTreeHead``: a signed note checkpoint as Rekor's)
    and ``GET /api/v1/log/publicKey`` (PEM).

Fault switches (flags, or ``POST /testbed/faults`` while it runs): ``--fulcio-fail K``: the
first K signing-certificate requests get ``--fail-status`` (default 503); ``--rekor-fail K``:
the first K entry uploads get it, nothing is logged; ``--rekor-lose K``: the first K uploads are
logged, then answered with it anyway (an answer lost on the way: the client's retry gets 409).
These answers carry ``Retry-After: 0``, so a client that honours it (rekor's, for a 503) retries
at once instead of after its own backoff. ``--fulcio-delay SECONDS``: a slow Fulcio, every
signing-certificate request is answered that much later (its token is checked after the wait):
a run that outlives its tokens without signing hundreds of images.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from testbed import cli_args, exit_on_sigterm, launch, write_ready_file

AUDIENCE = "sigstore"
CERT_LIFETIME = datetime.timedelta(minutes=10)
GITHUB_URL = "https://github.com"
TREE_ID = 1193050959916656506  # a Rekor shard's tree ID, as 16 hex digits in entry IDs
CHECKPOINT_ORIGIN = "rekor.testbed"
FULCIO_OID = "1.3.6.1.4.1.57264.1."
SCT_LIST_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
ENV_KEYS = ("FULCIO_URL", "REKOR_URL", "OIDC_ISSUER", "SIGSTORE_ROOT_FILE",
            "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE", "SIGSTORE_REKOR_PUBLIC_KEY",
            "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")


class Refused(Exception):
    """An answer other than success: the HTTP status and the message (``{"code", "message"}``
    as Fulcio and Rekor answer errors), and extra headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


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


# -- OIDC tokens ----------------------------------------------------------------------------

class Issuer:
    """The OIDC side: one ES256 key, its JWKS, and tokens signed with it."""

    def __init__(self, url: str):
        self.url = url
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = hashlib.sha256(spki(self.key.public_key())).hexdigest()[:16]

    def discovery(self) -> dict:
        return {"issuer": self.url, "jwks_uri": f"{self.url}/jwks",
                "subject_types_supported": ["public", "pairwise"],
                "response_types_supported": ["id_token"],
                "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref",
                                     "repository", "repository_owner", "workflow_ref",
                                     "job_workflow_ref", "sha", "event_name", "email",
                                     "email_verified"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "scopes_supported": ["openid"]}

    def jwks(self) -> dict:
        numbers = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                          "kid": self.kid, "x": b64url(numbers.x.to_bytes(32, "big")),
                          "y": b64url(numbers.y.to_bytes(32, "big"))}]}

    def sign(self, claims: dict) -> str:
        header = {"alg": "ES256", "kid": self.kid, "typ": "JWT"}
        signing_input = f"{b64url(canonical_json(header))}.{b64url(canonical_json(claims))}"
        r, s = utils.decode_dss_signature(
            self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def github_claims(issuer: str, repository: str, ref: str, now: int, lifetime: int) -> dict:
    """The claims of a GitHub Actions ID token for a push to ``ref`` (values as GitHub sets
    them; ids and digests fixed, made up)."""
    owner = repository.split("/", 1)[0]
    workflow_ref = f"{repository}/.github/workflows/sign.yml@{ref}"
    sha = hashlib.sha1(f"{repository}@{ref}".encode()).hexdigest()
    return {"jti": str(uuid.uuid4()), "sub": f"repo:{repository}:ref:{ref}", "aud": AUDIENCE,
            "ref": ref, "sha": sha, "repository": repository, "repository_owner": owner,
            "repository_owner_id": "190001", "repository_id": "730001",
            "repository_visibility": "public", "run_id": "9000000001", "run_number": "7",
            "run_attempt": "1", "runner_environment": "github-hosted", "actor": "octocat",
            "actor_id": "583231", "workflow": "sign", "head_ref": "", "base_ref": "",
            "event_name": "push", "ref_type": "branch", "ref_protected": "true",
            "workflow_ref": workflow_ref, "workflow_sha": sha, "job_workflow_ref": workflow_ref,
            "job_workflow_sha": sha, "iss": issuer, "nbf": now - 5, "iat": now,
            "exp": now + lifetime}


def email_claims(issuer: str, email: str, verified: bool, now: int, lifetime: int) -> dict:
    return {"iss": issuer, "sub": hashlib.sha256(email.encode()).hexdigest()[:20],
            "aud": AUDIENCE, "email": email, "email_verified": verified, "iat": now,
            "nbf": now - 5, "exp": now + lifetime, "jti": str(uuid.uuid4())}


def verify_token(token: str, jwks: dict, issuer: str, audience: str, now: float) -> dict:
    """What Fulcio checks of an ID token: its ES256 signature with a key of the issuer's JWKS
    document, ``iss``, ``aud``, ``exp`` and ``nbf``. Returns the claims; raises Refused(401)."""
    def refuse(why: str):
        return Refused(401, f"There was an error processing the identity token: {why}")

    try:
        head_b64, body_b64, sig_b64 = token.split(".")
        header, claims = json.loads(unb64url(head_b64)), json.loads(unb64url(body_b64))
        signature = unb64url(sig_b64)
    except (ValueError, AttributeError):
        raise refuse("not a JWS compact serialization") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise refuse("not a JWT")
    if header.get("alg") != "ES256" or len(signature) != 64:
        raise refuse(f"unsupported algorithm {header.get('alg')!r}")
    keys = [k for k in jwks["keys"] if header.get("kid") in (None, k["kid"])]
    der = utils.encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                     int.from_bytes(signature[32:], "big"))
    for jwk in keys:
        key = ec.EllipticCurvePublicNumbers(int.from_bytes(unb64url(jwk["x"]), "big"),
                                            int.from_bytes(unb64url(jwk["y"]), "big"),
                                            ec.SECP256R1()).public_key()
        try:
            key.verify(der, f"{head_b64}.{body_b64}".encode(), ec.ECDSA(hashes.SHA256()))
            break
        except InvalidSignature:
            continue
    else:
        raise refuse("failed to verify signature")
    if claims.get("iss") != issuer:
        raise refuse(f"oidc: id token issued by a different provider, expected {issuer!r} "
                     f"got {claims.get('iss')!r}")
    aud = claims.get("aud")
    if audience not in (aud if isinstance(aud, list) else [aud]):
        raise refuse(f"oidc: expected audience {audience!r} got {aud!r}")
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, (int, float)) or now > exp:
        raise refuse(f"oidc: token is expired (Token Expiry: {exp})")
    if isinstance(nbf, (int, float)) and now < nbf:
        raise refuse(f"oidc: current time before the nbf (not before) time: {nbf}")
    return claims


# -- the certificate authority and its CT log -----------------------------------------------

def _ca_cert(subject: x509.Name, key, issuer: x509.Name, signer, path_length: int,
             eku: bool, issuer_key=None) -> x509.Certificate:
    now = utcnow()
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                            False, False), True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              False))
    if issuer_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False)
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
    return builder.sign(signer, hashes.SHA256())


class CtLog:
    """A certificate transparency log that signs SCTs for precertificates (RFC 6962 3.2): the
    signed data is the leaf's TBSCertificate without the SCT list (what a precertificate is
    without its poison extension) and the SHA-256 of the issuer's SubjectPublicKeyInfo; the log
    ID is the SHA-256 of the log key's SubjectPublicKeyInfo. That is exactly what cosign (with
    certificate-transparency-go) rebuilds from the final certificate and its issuer to check an
    embedded SCT against ``SIGSTORE_CT_LOG_PUBLIC_KEY_FILE``."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.log_id = hashlib.sha256(spki(self.key.public_key())).digest()
        self.logged: list[bytes] = []  # the precertificate TBSs, in order

    def sct(self, tbs_without_scts: bytes, issuer_spki: bytes, timestamp_ms: int) -> bytes:
        """One serialized SignedCertificateTimestamp (v1, precert entry, no extensions)."""
        self.logged.append(tbs_without_scts)
        signed = (b"\x00\x00" + timestamp_ms.to_bytes(8, "big") + b"\x00\x01"
                  + hashlib.sha256(issuer_spki).digest()
                  + len(tbs_without_scts).to_bytes(3, "big") + tbs_without_scts
                  + b"\x00\x00")
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return (b"\x00" + self.log_id + timestamp_ms.to_bytes(8, "big") + b"\x00\x00"
                + b"\x04\x03" + len(signature).to_bytes(2, "big") + signature)


def sct_list_extension(scts: list[bytes]) -> x509.UnrecognizedExtension:
    """The X.509 extension 1.3.6.1.4.1.11129.2.4.2: an OCTET STRING holding the TLS-encoded
    SignedCertificateTimestampList."""
    items = b"".join(len(s).to_bytes(2, "big") + s for s in scts)
    listed = len(items).to_bytes(2, "big") + items
    n = len(listed)
    length = bytes([n]) if n < 0x80 else (
        bytes([0x81, n]) if n < 0x100 else bytes([0x82, n >> 8, n & 0xFF]))
    return x509.UnrecognizedExtension(SCT_LIST_OID, b"\x04" + length + listed)


def fulcio_extensions(issuer: str, claims: dict) -> list[tuple[int, bytes]]:
    """Fulcio's extensions (arc 1.3.6.1.4.1.57264.1) for a token, in Fulcio's order: the issuer
    (.1 raw, deprecated; .8 DER), and for a GitHub workflow token the deprecated raw .2-.6 and
    the DER .9-.22 (Fulcio's GitHub template; the empty ones left out)."""
    exts = [(1, issuer.encode())]
    if "job_workflow_ref" not in claims:
        return exts + [(8, der_utf8(issuer))]
    c = {k: str(v) for k, v in claims.items()}
    for n, claim in ((2, "event_name"), (3, "sha"), (4, "workflow"), (5, "repository"),
                     (6, "ref")):
        if c.get(claim):
            exts.append((n, c[claim].encode()))
    exts.append((8, der_utf8(issuer)))
    url = GITHUB_URL
    ci = {9: f"{url}/{c['job_workflow_ref']}", 10: c.get("job_workflow_sha"),
          11: c.get("runner_environment"), 12: f"{url}/{c.get('repository')}",
          13: c.get("sha"), 14: c.get("ref"), 15: c.get("repository_id"),
          16: f"{url}/{c.get('repository_owner')}", 17: c.get("repository_owner_id"),
          18: f"{url}/{c.get('workflow_ref')}", 19: c.get("workflow_sha"),
          20: c.get("event_name"),
          21: f"{url}/{c.get('repository')}/actions/runs/{c.get('run_id')}/attempts/"
              f"{c.get('run_attempt')}",
          22: c.get("repository_visibility")}
    return exts + [(n, der_utf8(v)) for n, v in ci.items() if v]


class Fulcio:
    """A root and an intermediate CA issuing 10-minute code-signing certificates, each with an
    SCT from ``ct`` embedded."""

    def __init__(self, ct: CtLog):
        self.ct = ct
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.dev"),
                               x509.NameAttribute(NameOID.COMMON_NAME, "testbed-root")])
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.dev"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "testbed-intermediate")])
        self.root = _ca_cert(root_name, self.root_key, root_name, self.root_key, 1, False)
        self.intermediate = _ca_cert(name, self.key, root_name, self.root_key, 0, True,
                                     issuer_key=self.root_key)

    def chain_pem(self) -> list[str]:
        return [pem_cert(self.intermediate), pem_cert(self.root)]

    def issue(self, public_key, issuer: str, claims: dict) -> x509.Certificate:
        """The leaf for ``public_key`` and a verified token's claims."""
        now = utcnow()
        san = x509.RFC822Name(claims["email"]) if "email" in claims else \
            x509.UniformResourceIdentifier(f"{GITHUB_URL}/{claims['job_workflow_ref']}")
        builder = (x509.CertificateBuilder().subject_name(x509.Name([]))
                   .issuer_name(self.intermediate.subject).public_key(public_key)
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + CERT_LIFETIME)
                   .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                                False, False), True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
                                  False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.key.public_key()), False)
                   .add_extension(x509.SubjectAlternativeName([san]), True))
        for n, value in fulcio_extensions(issuer, claims):
            builder = builder.add_extension(
                x509.UnrecognizedExtension(ObjectIdentifier(f"{FULCIO_OID}{n}"), value), False)
        # The precertificate's TBS is the final one without the SCT list (extensions keep their
        # order), so the log signs this one and the SCT goes in last.
        precert_tbs = builder.sign(self.key, hashes.SHA256()).tbs_certificate_bytes
        sct = self.ct.sct(precert_tbs, spki(self.intermediate.public_key()),
                          int(time.time() * 1000))
        return builder.add_extension(sct_list_extension([sct]), False).sign(
            self.key, hashes.SHA256())


def proof_subject(claims: dict) -> str:
    """What the proof of possession signs: the email (it must be verified) or the subject, as
    cosign's and Fulcio's principal code choose it."""
    if "email" in claims:
        verified = claims.get("email_verified")
        if verified not in (True, "true", "True"):
            raise Refused(401, "There was an error processing the identity token: "
                               "email_verified claim was false")
        return claims["email"]
    if not claims.get("sub"):
        raise Refused(401, "There was an error processing the identity token: no subject")
    if "job_workflow_ref" not in claims:
        raise Refused(401, "There was an error processing the identity token: neither an "
                           "email nor a GitHub workflow identity")
    return claims["sub"]


# -- the transparency log -------------------------------------------------------------------

def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH over leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]): the audit path from leaf ``index`` up to the root."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return inclusion_path(index, leaves[:k]) + [merkle_root(leaves[k:])]
    return inclusion_path(index - k, leaves[k:]) + [merkle_root(leaves[:k])]


def canonical_hashedrekord(proposed) -> tuple[bytes, dict]:
    """Check a proposed ``hashedrekord`` 0.0.1 entry as Rekor does (the signature verifies over
    the hash with the key or certificate given) and return its canonical body and spec."""
    if not isinstance(proposed, dict) or proposed.get("kind") != "hashedrekord":
        raise Refused(400, "unsupported entry kind: only hashedrekord is accepted here")
    if proposed.get("apiVersion") != "0.0.1":
        raise Refused(400, f"hashedrekord: unsupported apiVersion {proposed.get('apiVersion')!r}")
    spec = proposed.get("spec")
    try:
        algorithm = spec["data"]["hash"]["algorithm"]
        value = spec["data"]["hash"]["value"]
        sig_b64 = spec["signature"]["content"]
        key_b64 = spec["signature"]["publicKey"]["content"]
    except (KeyError, TypeError):
        raise Refused(400, "hashedrekord: spec.data.hash and spec.signature "
                           "(content, publicKey.content) are required") from None
    sizes = {"sha256": 64, "sha384": 96, "sha512": 128}
    if algorithm not in sizes or not isinstance(value, str) or \
            not re.fullmatch(f"[0-9a-f]{{{sizes.get(algorithm, 0)}}}", value):
        raise Refused(400, f"hashedrekord: bad data.hash {algorithm!r}:{value!r}")
    key = load_public_key(unb64(key_b64, "signature.publicKey.content"))
    if key is None:
        raise Refused(400, "hashedrekord: signature.publicKey.content is neither a public key "
                           "nor a certificate")
    verify_signature(key, unb64(sig_b64, "signature.content"),
                     digest=(algorithm, bytes.fromhex(value)))
    body = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": algorithm, "value": value}},
        "signature": {"content": sig_b64, "publicKey": {"content": key_b64}}}}
    return canonical_json(body), body


@dataclass
class Entry:
    body: bytes  # canonical JSON
    integrated_time: int
    index: int

    @property
    def uuid(self) -> str:
        return leaf_hash(self.body).hex()

    @property
    def entry_id(self) -> str:
        return f"{TREE_ID:016x}{self.uuid}"


class Rekor:
    """An append-only log of hashedrekord entries in one RFC 6962 tree (one shard)."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.log_id = hashlib.sha256(spki(self.key.public_key())).hexdigest()
        self.entries: list[Entry] = []
        self.leaves: list[bytes] = []
        self.by_uuid: dict[str, Entry] = {}
        self.lock = threading.Lock()

    def add(self, proposed) -> tuple[Entry, bool]:
        """(the entry, True) once logged; (the existing entry, False) for a body already in."""
        body, _ = canonical_hashedrekord(proposed)
        with self.lock:
            existing = self.by_uuid.get(leaf_hash(body).hex())
            if existing:
                return existing, False
            entry = Entry(body, int(time.time()), len(self.entries))
            self.entries.append(entry)
            self.leaves.append(leaf_hash(body))
            self.by_uuid[entry.uuid] = entry
            return entry, True

    def find(self, entry_uuid: str) -> Entry | None:
        entry_uuid = entry_uuid.lower()
        if len(entry_uuid) == 80:
            if entry_uuid[:16] != f"{TREE_ID:016x}":
                return None
            entry_uuid = entry_uuid[16:]
        with self.lock:
            return self.by_uuid.get(entry_uuid)

    def checkpoint(self, size: int, root: bytes) -> str:
        """A signed note as Rekor writes it: origin, size, base64 root, then a blank line and
        ``— NAME base64(key hint || ECDSA signature)``, the hint the first 4 bytes of the SHA-256
        of the key's SubjectPublicKeyInfo."""
        note = f"{CHECKPOINT_ORIGIN} - {TREE_ID}\n{size}\n{b64(root)}\n"
        signature = self.key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        hint = hashlib.sha256(spki(self.key.public_key())).digest()[:4]
        return f"{note}\n\u2014 {CHECKPOINT_ORIGIN} {b64(hint + signature)}\n"

    def log_info(self) -> dict:
        with self.lock:
            size, root = len(self.leaves), merkle_root(self.leaves)
        return {"rootHash": root.hex(), "treeSize": size, "treeID": str(TREE_ID),
                "signedTreeHead": self.checkpoint(size, root), "inactiveShards": []}

    def forged(self, entry: Entry, forge: str) -> dict:
        """``render(entry)`` as a hostile log answers it (``REKOR_FORGERIES``)."""
        if forge == "other-artifact":  # a genuine entry, of something else
            return self.render(self._another())
        answer = self.render(entry)
        value = answer[entry.entry_id]
        verification = value["verification"]
        if forge == "bad-set":
            payload = {k: value[k] for k in ("body", "integratedTime", "logID", "logIndex")}
            stranger = ec.generate_private_key(ec.SECP256R1())
            verification["signedEntryTimestamp"] = b64(stranger.sign(
                canonical_json(payload), ec.ECDSA(hashes.SHA256())))
        elif forge == "bad-proof":
            verification["inclusionProof"]["rootHash"] = hashlib.sha256(b"other").hexdigest()
        elif forge == "other-body":
            value["body"] = b64(self._another().body)
        return answer

    def _another(self) -> Entry:
        """A genuine entry for a random artifact signed by a fresh key, logged now."""
        key = ec.generate_private_key(ec.SECP256R1())
        data = secrets.token_bytes(32)
        entry, _ = self.add({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(data).hexdigest()}},
            "signature": {"content": b64(key.sign(data, ec.ECDSA(hashes.SHA256()))),
                          "publicKey": {"content": b64(pem_public(key.public_key()))}}}})
        return entry

    def render(self, entry: Entry) -> dict:
        """``{entryID: LogEntryAnon}`` with the SET and an inclusion proof to the current root."""
        body = b64(entry.body)
        set_payload = {"body": body, "integratedTime": entry.integrated_time,
                       "logID": self.log_id, "logIndex": entry.index}
        set_signature = self.key.sign(canonical_json(set_payload), ec.ECDSA(hashes.SHA256()))
        with self.lock:
            leaves = list(self.leaves)
        root = merkle_root(leaves)
        proof = {"logIndex": entry.index, "treeSize": len(leaves), "rootHash": root.hex(),
                 "hashes": [h.hex() for h in inclusion_path(entry.index, leaves)],
                 "checkpoint": self.checkpoint(len(leaves), root)}
        return {entry.entry_id: {**set_payload, "verification": {
            "inclusionProof": proof, "signedEntryTimestamp": b64(set_signature)}}}


# -- HTTP -----------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    """One service's requests: ``routes`` maps (method, path pattern) to a method name that
    takes (match, query, body) and returns (status, payload, headers)."""

    protocol_version = "HTTP/1.1"
    server_version = "sigstore-testbed"
    routes: dict[tuple[str, str], str] = {}
    testbed: Sigstore

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
            "Location": location, "ETag": entry.uuid}

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


# -- the test bed ---------------------------------------------------------------------------

@dataclass
class Faults:
    fulcio_fail: int = 0
    rekor_fail: int = 0
    rekor_lose: int = 0
    fail_status: int = 503
    fulcio_delay: float = 0.0
    fulcio_forge: str = ""  # one of FULCIO_FORGERIES: every answer is that forgery
    rekor_forge: str = ""  # one of REKOR_FORGERIES
    seen: dict = field(default_factory=lambda: {"fulcio": 0, "rekor": 0})


# A hostile Fulcio's answers (``fulcio_forge``): a certificate for a key it was not asked for,
# for another identity, from another OIDC issuer, one that chains to no root of the bed's, and a
# chain that is not PEM at all.
FULCIO_FORGERIES = ("other-key", "other-identity", "other-issuer", "self-signed", "garbage")
# A hostile Rekor's answers (``rekor_forge``): the entry of another artifact (genuinely logged),
# a SET by another key, an inclusion proof to another root, a body that is not this entry's.
REKOR_FORGERIES = ("other-artifact", "bad-set", "bad-proof", "other-body")


class Sigstore:
    """The three services in this process (the Python API; ``main`` runs one until SIGTERM):
    ``start()`` writes the trust roots and ``env`` into ``directory`` and serves in threads,
    ``stop()`` ends them."""

    def __init__(self, directory: str | os.PathLike, *, host: str = "127.0.0.1",
                 token_lifetime: int = 300, email: str | None = None,
                 repository: str = "octo-org/octo-repo", ref: str = "refs/heads/main",
                 fulcio_fail: int = 0, rekor_fail: int = 0, rekor_lose: int = 0,
                 fail_status: int = 503, fulcio_delay: float = 0.0):
        self.directory = Path(directory)
        self.host, self.token_lifetime, self.email = host, token_lifetime, email
        self.repository, self.ref = repository, ref
        self.faults = Faults(fulcio_fail, rekor_fail, rekor_lose, fail_status, fulcio_delay)
        self.lock = threading.Lock()
        self.request_token = secrets.token_urlsafe(24)
        self.ct = CtLog()
        self.fulcio = Fulcio(self.ct)
        self.rekor = Rekor()
        self.servers: list[ThreadingHTTPServer] = []
        self.urls: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.issuer: Issuer

    # -- lifecycle

    def start(self) -> Sigstore:
        for name, handler in (("oidc", OidcHandler), ("fulcio", FulcioHandler),
                              ("rekor", RekorHandler)):
            cls = type(handler.__name__, (handler,), {"testbed": self})
            server = ThreadingHTTPServer((self.host, 0), cls)
            server.daemon_threads = True
            self.servers.append(server)
            self.urls[name] = f"http://{self.host}:{server.server_address[1]}"
        self.issuer = Issuer(self.urls["oidc"])
        self._write_files()
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True,
                             name=f"sigstore-{server.server_address[1]}").start()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Sigstore:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _write_files(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        files = {"fulcio_chain.pem": pem_cert(self.fulcio.root) + pem_cert(
                     self.fulcio.intermediate),
                 "fulcio_root.pem": pem_cert(self.fulcio.root),
                 "ctfe.pub": pem_public(self.ct.key.public_key()).decode(),
                 "rekor.pub": pem_public(self.rekor.key.public_key()).decode()}
        for name, text in files.items():
            (d / name).write_text(text)
        self.env = {"FULCIO_URL": self.urls["fulcio"], "REKOR_URL": self.urls["rekor"],
                    "OIDC_ISSUER": self.urls["oidc"],
                    "SIGSTORE_ROOT_FILE": str(d / "fulcio_chain.pem"),
                    "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(d / "ctfe.pub"),
                    "SIGSTORE_REKOR_PUBLIC_KEY": str(d / "rekor.pub"),
                    "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.urls['oidc']}/token?api-version=2.0",
                    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token}
        tmp = d / f"env.{os.getpid()}.tmp"
        tmp.write_text("".join(f"{k}={self.env[k]}\n" for k in ENV_KEYS))
        os.replace(tmp, d / "env")

    # -- what the handlers use

    def token(self, *, audience: str = AUDIENCE, lifetime: int | None = None,
              email: str | None = None, email_verified: bool = True,
              extra: dict | None = None) -> str:
        """An ID token from this issuer: GitHub's claims, or an email identity (``email``, or
        the test bed's ``--email``); ``extra`` claims added or replaced last."""
        now = int(time.time())
        life = self.token_lifetime if lifetime is None else int(lifetime)
        email = email or self.email
        claims = email_claims(self.issuer.url, email, email_verified, now, life) if email \
            else github_claims(self.issuer.url, self.repository, self.ref, now, life)
        claims["aud"] = audience
        claims.update(extra or {})
        return self.issuer.sign(claims)

    def fault(self, service: str) -> bool:
        """Count a request to ``service``; raise the 5xx its switch asks for. For Rekor, True
        means: log it, then lose the answer. Fulcio waits ``fulcio_delay`` seconds first."""
        with self.lock:
            delay = self.faults.fulcio_delay if service == "fulcio" else 0
        if delay > 0:
            time.sleep(delay)  # a slow service, as the switch asks
        with self.lock:
            f = self.faults
            f.seen[service] += 1
            n = f.seen[service]
            fail = f.fulcio_fail if service == "fulcio" else f.rekor_fail
            if n <= fail:
                raise Refused(f.fail_status, f"{service} is unavailable (testbed fault {n} of "
                                             f"{fail})", {"Retry-After": "0"})
            return service == "rekor" and n <= fail + f.rekor_lose

    def set_faults(self, *, fulcio_fail: int | None = None, rekor_fail: int | None = None,
                   rekor_lose: int | None = None, fail_status: int | None = None,
                   fulcio_delay: float | None = None, fulcio_forge: str | None = None,
                   rekor_forge: str | None = None) -> None:
        """Replace the switches given and start counting requests again."""
        with self.lock:
            f = self.faults
            if fulcio_fail is not None:
                f.fulcio_fail = int(fulcio_fail)
            if rekor_fail is not None:
                f.rekor_fail = int(rekor_fail)
            if rekor_lose is not None:
                f.rekor_lose = int(rekor_lose)
            if fail_status is not None:
                f.fail_status = int(fail_status)
            if fulcio_delay is not None:
                f.fulcio_delay = max(0.0, float(fulcio_delay))
            if fulcio_forge is not None:
                if fulcio_forge and fulcio_forge not in FULCIO_FORGERIES:
                    raise ValueError(f"fulcio_forge: one of {FULCIO_FORGERIES}")
                f.fulcio_forge = fulcio_forge
            if rekor_forge is not None:
                if rekor_forge and rekor_forge not in REKOR_FORGERIES:
                    raise ValueError(f"rekor_forge: one of {REKOR_FORGERIES}")
                f.rekor_forge = rekor_forge
            f.seen = {"fulcio": 0, "rekor": 0}

    def state(self) -> dict:
        with self.lock:
            f = self.faults
            faults = {"fulcio_fail": f.fulcio_fail, "rekor_fail": f.rekor_fail,
                      "rekor_lose": f.rekor_lose, "fail_status": f.fail_status,
                      "fulcio_delay": f.fulcio_delay, "fulcio_forge": f.fulcio_forge,
                      "rekor_forge": f.rekor_forge, "seen": dict(f.seen)}
        return {"faults": faults, "rekor_entries": len(self.rekor.entries),
                "certificates": len(self.ct.logged), "urls": self.urls}

    def sign_certificate(self, token: str, key_bytes: bytes | None, proof: bytes | None,
                         csr: bytes | None) -> list[str]:
        """Fulcio's signingCert: check the token and the proof of possession, issue. Returns the
        PEM chain: leaf, intermediate, root."""
        claims = verify_token(token, self.issuer.jwks(), self.issuer.url, AUDIENCE,
                              time.time())
        subject = proof_subject(claims)
        if csr is not None:
            try:
                request = x509.load_pem_x509_csr(csr)
            except ValueError:
                raise Refused(400, "There was an error processing the CSR") from None
            if not request.is_signature_valid:
                raise Refused(400, "There was an error processing the CSR: bad signature")
            key = request.public_key()
        else:
            key = load_public_key(key_bytes or b"")
            if key is None:
                raise Refused(400, "There was an error processing the public key")
            try:
                verify_signature(key, proof or b"", data=subject.encode())
            except Refused:
                raise Refused(400, "There was an error processing the public key: the proof "
                                   f"of possession does not verify over {subject!r}") from None
        with self.lock:
            forge = self.faults.fulcio_forge
        if forge == "garbage":
            return ["-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                    "-----END CERTIFICATE-----\n"]
        if forge == "other-key":
            key = ec.generate_private_key(ec.SECP256R1()).public_key()
        if forge == "other-identity":
            claims = {**claims, "email": "mallory@example.com"}
        leaf = self.fulcio.issue(key, "https://issuer.example.com" if forge == "other-issuer"
                                 else self.issuer.url, claims)
        if forge == "self-signed":
            leaf = Fulcio(self.ct).issue(key, self.issuer.url, claims)  # another CA's
        return [pem_cert(leaf), *self.fulcio.chain_pem()]


# -- the program ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.sigstore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="where the trust roots and env go")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token-lifetime", type=int, default=300, metavar="SECONDS")
    parser.add_argument("--email", help="tokens carry this email identity, not GitHub's")
    parser.add_argument("--repository", default="octo-org/octo-repo", metavar="OWNER/NAME")
    parser.add_argument("--ref", default="refs/heads/main")
    parser.add_argument("--fulcio-fail", type=int, default=0, metavar="K")
    parser.add_argument("--rekor-fail", type=int, default=0, metavar="K")
    parser.add_argument("--rekor-lose", type=int, default=0, metavar="K")
    parser.add_argument("--fail-status", type=int, default=503, metavar="CODE")
    parser.add_argument("--fulcio-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[^/\s]+/[^/\s]+", args.repository):
        parser.error("--repository is OWNER/NAME")
    exit_on_sigterm()
    testbed = Sigstore(args.dir, host=args.host, token_lifetime=args.token_lifetime,
                       email=args.email, repository=args.repository, ref=args.ref,
                       fulcio_fail=args.fulcio_fail, rekor_fail=args.rekor_fail,
                       rekor_lose=args.rekor_lose, fail_status=args.fail_status,
                       fulcio_delay=args.fulcio_delay).start()
    write_ready_file(args.ready_file, {"pid": os.getpid(), "control": testbed.urls["oidc"],
                                       **testbed.env})
    print(f"sigstore testbed: {json.dumps(testbed.urls)}; env in {Path(args.dir) / 'env'}",
          file=sys.stderr, flush=True)
    while True:
        signal.pause()


def start_sigstore(directory: str | os.PathLike, *, log=None, timeout: float = 30,
                   **options):
    """Start ``python -m testbed.sigstore --dir DIRECTORY`` with ``options`` as flags
    (``token_lifetime=30`` -> ``--token-lifetime 30``) and wait until it serves: (Popen, the
    ready file's content: the env values, ``pid`` and ``control``). Stop it with
    ``testbed.stop(proc)``."""
    return launch("testbed.sigstore", cli_args(dir=directory, **options), timeout=timeout,
                  log=log)


if __name__ == "__main__":
    sys.exit(main())
