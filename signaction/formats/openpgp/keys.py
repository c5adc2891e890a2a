"""OpenPGP keyrings and the verification of signatures with them: Sequoia (pysequoia) decides,
with containers/image's rules on top. The packets are read first by ``packets`` (bounded,
strict); see the package's docstring."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..findings import Finding, Problem
from .packets import (
    TAG_NAMES,
    OpenPGPError,
    Signature,
    _packets,
    clearsigned,
    dearmor,
    detached_signature,
    is_armored,
    signed_message,
)

# -- public keys, and verifying a signature with them -----------------------------------------
#
# The cryptographic decision is Sequoia's (pysequoia, the Python binding of the OpenPGP
# implementation containers/image can also be built with): it reads the keyring as a set of
# certificates, verifying every self-signature and binding signature against the primary key
# (a forged newer self-signature neither revives an expired key nor expires or revokes a valid
# one; a key without a valid self-signature, or a signing subkey without a valid binding and
# back signature, is unusable), and a signature under its standard policy: critical unknown
# subpackets and critical notations refused, MD5 and SHA-1 refused, a creation time required
# and not in the future, key flags that allow signing, key and signature alive when it was made.
#
# On top of that, what containers/image adds (podman, skopeo, CRI-O over gpgme): exactly one
# signature; made by a primary key of the keyring (containers/image compares the signing key's
# fingerprint with the primary keys' it imported: a signature by a subkey is refused); the key
# neither revoked nor expired *now* (gpgme reports those as errors, Sequoia judges the key at
# the signature's time). This reader's own parse (above) runs first: it bounds sizes and
# decompression before any of the data reaches Sequoia, and the content Sequoia verified must
# be the content it read.

PUBLIC_KEY, SECRET_KEY, PUBLIC_SUBKEY, SECRET_SUBKEY = 6, 5, 14, 7
MAX_KEYRING = 4 << 20  # bytes of a keyring
MAX_KEYRING_PACKETS = 20000
_WEAK_HASHES = {1: "MD5", 2: "SHA-1", 3: "RIPEMD-160"}
# hashed subpackets a signature over a document may carry critical (RFC 9580 5.2.3.7)
_KNOWN_CRITICAL = {2, 3, 4, 5, 7, 9, 11, 16, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33,
                   34, 35, 37, 39}


class VerifyError(OpenPGPError):
    """A signature that is not good, and the finding: why, as a type."""

    def __init__(self, finding: Finding, detail: str):
        super().__init__(detail)
        self.finding = finding
        self.problem = Problem(finding, detail)


@dataclass(frozen=True, slots=True)
class Verified:
    fingerprint: str  # the primary key that made the signature, upper-case hex
    content: bytes  # what it signs


def _sequoia() -> Any:
    """pysequoia, imported when first needed, without Rust backtraces in its error texts
    (RUST_BACKTRACE set by a user would make each refusal capture one: slow, and not a line)."""
    os.environ["RUST_LIB_BACKTRACE"] = "0"
    import pysequoia

    return pysequoia


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return "".join(c if c.isprintable() else "?" for c in (text[0] if text else "")[:200])


class Keyring:
    """The OpenPGP certificates of a keyring (binary or ASCII-armored, several concatenated),
    each read by Sequoia (self-signatures verified); a certificate Sequoia cannot use is
    dropped, as gpg drops it on import. Looked up by the key ids and fingerprints of their
    primary keys and subkeys."""

    def __init__(self, certs: list[tuple[Any, list[str]]]):
        self.certs = [cert for cert, _ in certs]
        self._primary = [cert.fingerprint.upper() for cert in self.certs]
        self._by: dict[str, Any] = {}
        for cert, keys in certs:
            for fpr in keys:
                self._by.setdefault(fpr, cert)
                self._by.setdefault(fpr[-16:], cert)

    @classmethod
    def parse(cls, data: bytes) -> Keyring:
        if len(data) > MAX_KEYRING:
            raise OpenPGPError(f"a keyring of more than {MAX_KEYRING} bytes")
        raw = dearmor(data) if is_armored(data) else data
        cert_class = _sequoia().Cert
        certs: list[tuple[Any, list[str]]] = []
        dropped: list[str] = []
        for chunk, keys in _transferable_keys(raw):
            try:
                cert = cert_class.from_bytes(chunk)
                cert.expiration  # noqa: B018 (Sequoia: no valid self-signature now, as gpg)
            except (RuntimeError, ValueError) as e:
                dropped.append(f"{keys[0]}: {_first_line(e)}")
                continue
            certs.append((cert, keys))
        if not certs:
            raise OpenPGPError("no usable OpenPGP public keys" +
                               (f" ({dropped[0]})" if dropped else ""))
        return cls(certs)

    def find(self, issuers: tuple[str, ...]) -> Any:
        for issuer in sorted(issuers, key=len, reverse=True):
            cert = self._by.get(issuer[-40:] if len(issuer) >= 40 else issuer[-16:])
            if cert is not None:
                return cert
        return None

    def fingerprints(self) -> list[str]:
        return list(self._primary)


def _transferable_keys(raw: bytes) -> Iterator[tuple[bytes, list[str]]]:
    """Each public key of the keyring with the packets that follow it up to the next (user ids,
    signatures, subkeys), framed again, and the v4 fingerprints of its keys (primary first).
    A secret key (what ``gpg --export-secret-keys`` writes) is not a public keyring entry."""
    chunk: list[bytes] = []
    keys: list[str] = []
    for tag, body in _packets(raw, "in the keyring", MAX_KEYRING_PACKETS):
        if tag in (SECRET_KEY, SECRET_SUBKEY):
            raise OpenPGPError("a secret key: give the public keyring (gpg --export)")
        if tag == PUBLIC_KEY:
            if chunk:
                yield b"".join(chunk), keys
            chunk, keys = [], []
        elif not chunk:
            raise OpenPGPError(f"a {TAG_NAMES.get(tag, f'tag {tag}')} packet before any public "
                               "key")
        if tag in (PUBLIC_KEY, PUBLIC_SUBKEY):
            keys.append(_v4_fingerprint(body))
        chunk.append(bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body)
    if chunk:
        yield b"".join(chunk), keys


def _v4_fingerprint(body: bytes) -> str:
    if body[:1] != b"\x04" or len(body) > 0xFFFF:
        return "V" + hashlib.sha256(body).hexdigest().upper()  # not v4: found by Sequoia only
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()


def verify_message(data: bytes, keyring: Keyring, now: float | None = None) -> Verified:
    """The primary key of ``keyring`` that made the binary signed message ``data`` and the
    content it signs, as containers/image accepts it (see above); VerifyError says why not
    (OpenPGPError: not a signed message at all)."""
    message = signed_message(data)
    verified = _verify(data, message.signature, keyring, now)
    if verified.content != message.content:
        raise VerifyError(Finding.UNREADABLE, "Sequoia and this reader see different signed "
                          "content in it")
    return verified


def verify_detached(signature: bytes, content: bytes, keyring: Keyring,
                    now: float | None = None) -> Verified:
    """``verify_message`` for a detached binary signature over ``content``."""
    found = detached_signature(signature, content)
    return _verify(content, found, keyring, now, detached=signature)


def verify_clearsigned(data: bytes, keyring: Keyring, now: float | None = None) -> Verified:
    """``verify_message`` for a clear-signed text (``content``: the text as Sequoia reads it)."""
    _, found = clearsigned(data)
    return _verify(data, found, keyring, now)


def _verify(data: bytes, signature: Signature, keyring: Keyring, now: float | None,
            detached: bytes | None = None) -> Verified:
    import time

    now = time.time() if now is None else now
    cert = keyring.find(signature.issuers)
    if cert is None:
        named = max(signature.issuers, key=len) if signature.issuers else None
        raise VerifyError(Finding.OTHER_KEY, f"signed by key {named}, which is not in the "
                          "keyring" if named else "the signature names no issuer key")
    sequoia = _sequoia()
    try:
        if detached is None:
            result = sequoia.verify(bytes=data, store=lambda ids: [cert])
        else:
            result = sequoia.verify(bytes=data, store=lambda ids: [cert],
                                    signature=sequoia.Sig.from_bytes(detached))
    except (RuntimeError, ValueError) as e:
        finding, why = _why_not(signature, cert, now)
        raise VerifyError(finding, f"{why} (Sequoia: {_first_line(e)})") from None
    valid = result.valid_sigs
    if len(valid) != 1:
        raise VerifyError(Finding.UNREADABLE, f"{len(valid)} valid signatures in it: "
                          "containers/image accepts exactly one")
    primary, signing = valid[0].certificate.upper(), valid[0].signing_key.upper()
    if signing != primary:
        raise VerifyError(Finding.OTHER_KEY, f"made by the subkey {signing} of {primary}: "
                          "containers/image accepts only the keyring's primary keys")
    if cert.is_revoked:
        raise VerifyError(Finding.POLICY, f"key {primary} is revoked")
    expires = cert.expiration
    if expires is not None and expires.timestamp() <= now:
        raise VerifyError(Finding.POLICY, f"key {primary} expired "
                          f"{expires.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    return Verified(primary, bytes(result.bytes))


def _why_not(signature: Signature, cert: Any, now: float) -> tuple[Finding, str]:
    """Why Sequoia (which says only that no signature is valid) refused ``signature`` by
    ``cert``, read from what the signature packet says of itself."""
    named = f"key {cert.fingerprint.upper()}"
    if signature.hash_algo in _WEAK_HASHES:
        return Finding.POLICY, (f"hashed with {_WEAK_HASHES[signature.hash_algo]}, which is "
                                "refused (collisions can be made)")
    unknown = [k for k in signature.critical if k not in _KNOWN_CRITICAL and k != 20]
    if unknown:
        return Finding.POLICY, (f"a critical subpacket of kind {unknown[0]} that no verifier "
                                "knows: gpg and podman refuse the signature")
    if signature.critical_notations:
        return Finding.POLICY, (f"the critical notation {signature.critical_notations[0]!r}: "
                                "gpg and podman refuse the signature")
    if signature.created is None:
        return Finding.POLICY, "the signature has no creation time"
    if signature.created > now:
        return Finding.POLICY, "the signature is dated in the future"
    if signature.expires and signature.created + signature.expires <= now:
        return Finding.POLICY, "the signature expired"
    if cert.is_revoked:
        return Finding.POLICY, f"{named} is revoked"
    expires = cert.expiration
    if expires is not None and expires.timestamp() <= signature.created:
        return Finding.POLICY, f"{named} had expired when the signature was made"
    return Finding.OTHER_KEY, (f"it does not verify with {named}: not made by it over this "
                               "content, or by a key of it that may not sign")
