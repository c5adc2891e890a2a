"""Signatures over bytes made and checked with the keys sigstore uses (ECDSA, RSA PKCS#1 v1.5,
Ed25519)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

CACHED = 8 << 10  # bytes of PEM up to which a parsed key is kept (at most 256: 2 MiB)


def load_public(pem: bytes) -> Any:
    """A PEM public key, or a PEM certificate's public key; ValueError if it is neither. (Kept:
    the same few keys, Rekor's and the signers', are read for every signature.)"""
    return _load_public(pem) if len(pem) <= CACHED else _load_public.__wrapped__(pem)


@lru_cache(maxsize=256)
def _load_public(pem: bytes) -> Any:
    from cryptography import x509

    try:
        if b"CERTIFICATE" in pem:
            return x509.load_pem_x509_certificate(pem).public_key()
        return serialization.load_pem_public_key(pem)
    except UnsupportedAlgorithm:
        raise ValueError("an unsupported key") from None


PEM_KEY = re.compile(rb"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----\s*", re.S)


def pem_keys(pem: bytes) -> tuple[bytes, ...]:
    """The PEM public keys of a file holding one or several (a trusted root's logs); the file
    as it is when it holds no PEM public key block (a certificate, say)."""
    return tuple(PEM_KEY.findall(pem)) or (pem,)


def spki(key: Any) -> bytes:
    """A public key's DER SubjectPublicKeyInfo (what two encodings of one key share)."""
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_spki(pem: bytes) -> bytes:
    """``spki`` of a PEM public key or certificate (kept, as load_public)."""
    return _pem_spki(pem) if len(pem) <= CACHED else spki(load_public(pem))


@lru_cache(maxsize=256)
def _pem_spki(pem: bytes) -> bytes:
    return spki(load_public(pem))


def verifies(key: Any, data: bytes, signature: bytes, digest: hashes.HashAlgorithm | None = None
             ) -> bool:
    """Does ``signature`` over ``data`` verify with ``key`` (a public key object)? ECDSA hashes
    with ``digest`` when given, else as cosign's signer for the curve does (SHA-256, SHA-384 for
    P-384, SHA-512 for P-521); RSA is PKCS#1 v1.5 with SHA-256; Ed25519 as it is."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if digest is None:
                digest = {384: hashes.SHA384(), 521: hashes.SHA512()}.get(key.curve.key_size,
                                                                           hashes.SHA256())
            key.verify(signature, data, ec.ECDSA(digest))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), digest or hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return True


def pem_verifies(pem: bytes, data: bytes, signature: bytes,
                 digest: hashes.HashAlgorithm | None = None) -> bool:
    """``verifies`` with a PEM public key or certificate (False if it cannot be read)."""
    try:
        key = load_public(pem)
    except ValueError:
        return False
    return verifies(key, data, signature, digest)


def public_pem(key: Any) -> bytes:
    """The PEM public key of a private key, as ``cosign public-key`` prints it."""
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def sign_bytes(key: Any, data: bytes) -> bytes:
    """``data`` signed as cosign's signer for this key's type signs (raw signature bytes)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)  # Ed25519
