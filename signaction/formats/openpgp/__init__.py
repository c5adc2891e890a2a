"""OpenPGP signatures as containers-signature(5) readers (podman, skopeo, CRI-O) read them:
read by a small, strict parser of this project, verified by Sequoia (pysequoia).

The parser takes apart three shapes and nothing else:

- a binary *signed message*, what ``gpg --sign`` makes and what podman reads: an optional
  compressed-data packet (ZIP, ZLIB, BZip2) around one-pass signature, literal data, signature;
- a detached binary signature (``gpg --detach-sign``): one signature packet;
- a clear-signed text (``gpg --clearsign``): the cleartext signature framework, ASCII armor.

Every length is checked against the bytes that are there and decompression is capped, so
truncated, reordered or hostile data ends in an ``OpenPGPError`` saying why, never in another
exception, and never in unbounded memory or time. Without a key it tells only which key a
signature says it was made by and checks its hash prefix (the msg signer's check of every reply,
tens of microseconds: a signature packet taken from another message is caught, a forger is not).

With a keyring, ``verify_message`` (and ``verify_detached``, ``verify_clearsigned``) decide
whether a signature is good: Sequoia verifies it and the keyring's self-signatures, and the
rules containers/image adds are applied on top (see "public keys" below). Sequoia says only
*that* no signature is valid; why, as a ``Finding``, is read from what the parsed signature
packet says of itself.

``packets`` holds the parser, ``keys`` the keyring and the verification.
"""

from __future__ import annotations

from .keys import (
    MAX_KEYRING,
    Keyring,
    Verified,
    VerifyError,
    verify_clearsigned,
    verify_detached,
    verify_message,
)
from .packets import (
    OpenPGPError,
    Signature,
    SignedMessage,
    clearsigned,
    dearmor,
    detached_signature,
    is_armored,
    issuer_problem,
    signed_message,
)

__all__ = ["MAX_KEYRING", "Keyring", "OpenPGPError", "Signature", "SignedMessage", "Verified",
           "VerifyError", "clearsigned", "dearmor", "detached_signature", "is_armored",
           "issuer_problem", "signed_message", "verify_clearsigned", "verify_detached",
           "verify_message"]
