"""What a signature a signing server returned must be before it is written (``refusal``): taken
apart in-process (signers/openpgp.py), without a key, it must be exactly what was asked for,
naming the key asked for. ``verify_keyring`` adds gpg's cryptographic check (SignatureCheck)."""

from __future__ import annotations

import json
from typing import Any

from signaction.plan import BLOB, SignFile, WorkItem

from .. import openpgp

CLAIM_TYPE = "atomic container signature"


def refusal(item: WorkItem, signature: bytes) -> str | None:
    """Why the signature a signing server returned for ``item`` must not be written (None: it
    may be). No key is needed: the data is taken apart in-process (signers/openpgp.py, tens of
    microseconds, so it runs in the event loop) and must be what was asked for:

    - an image: a binary OpenPGP signed message (what ``gpg --sign`` makes, what podman and
      skopeo read) whose literal data is an atomic container signature claim for exactly the
      item's digest and identity, as containers-signature(5) readers parse it;
    - a clear-sign file: a clear-signed text of exactly the text sent;
    - a blob: one detached binary signature over exactly the bytes sent;

    and the signature must name the requested key as its issuer. That last check is a sanity
    check, not a proof: the issuer subpackets are written by whoever made the data, and without
    the key nothing here is verified cryptographically. ``verify_keyring`` adds that proof
    (SignatureCheck, one gpg process per signature, outside the event loop)."""
    target = item.image
    if isinstance(target, SignFile):
        if target.kind == BLOB:
            try:
                found = openpgp.detached_signature(signature, target.data)
            except openpgp.OpenPGPError as e:
                return f"not a detached binary signature of the file: {e}"
        else:
            try:
                text, found = openpgp.clearsigned(signature)
            except openpgp.OpenPGPError as e:
                return f"not a clear-signed text: {e}"
            if text != signed_text(target.data):
                return "the clear-signed text is not the text that was sent"
    else:
        if openpgp.is_armored(signature):
            return ("ASCII-armored OpenPGP data: podman and skopeo read only binary signatures "
                    "(\"unrecognized signature format\"); the signing server must return the "
                    "binary signed message")
        try:
            message = openpgp.signed_message(signature)
        except openpgp.OpenPGPError as e:
            return f"not a binary OpenPGP signed message: {e}"
        problem = claim_problem(message.content, target.known_digest, str(target.reference))
        if problem:
            return problem
        found = message.signature
    return openpgp.issuer_problem(found, item.key.key)


def signed_text(data: bytes) -> bytes:
    """The text a clear-signature of ``data`` signs: its final line ending dropped, trailing
    white space off each line, lines joined by CRLF (RFC 9580, 7.1)."""
    if data.endswith(b"\n"):
        data = data[:-1]
    return b"\r\n".join(line.rstrip(b" \t\r") for line in data.split(b"\n"))


def _quoted(value: Any, limit: int = 120) -> str:
    """A value from the signing server, fit for a message: JSON-quoted (no raw line breaks or
    control characters), cut at ``limit`` characters."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _BadClaim(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):  # readers refuse a key twice; json.loads keeps the last
        keys = [k for k, _ in pairs]
        twice = next(k for k in keys if keys.count(k) > 1)
        raise _BadClaim(f"the claim has the key {_quoted(twice)} twice")
    return value


def _constant(name: str) -> Any:
    raise _BadClaim(f"the claim holds {name}, which is not JSON")


def _exact(value: Any, keys: set[str], where: str) -> dict:
    if not isinstance(value, dict):
        raise _BadClaim(f"{where} is not a JSON object")
    if set(value) != keys:
        extra, missing = sorted(set(value) - keys), sorted(keys - set(value))
        raise _BadClaim(f"{where} " + ("has unknown key(s) " + ", ".join(map(_quoted, extra))
                                       if extra else "lacks " + ", ".join(missing))
                        + " (readers refuse it)")
    return value


def claim_problem(content: bytes, digest: str, identity: str) -> str | None:
    """Why ``content`` is not the atomic container signature claim for ``digest`` and
    ``identity`` as containers-signature(5) readers (containers/image) parse it: exactly
    ``critical`` and ``optional``; ``critical`` exactly type, image, identity, each exactly its
    one key; no key twice; ``optional.creator`` a string, ``optional.timestamp`` an integer."""
    try:
        claim = json.loads(content.decode("utf-8"), object_pairs_hook=_object,
                           parse_constant=_constant)
    except _BadClaim as e:
        return str(e)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "the signed content is not a JSON claim"
    try:
        _exact(claim, {"critical", "optional"}, "the claim")
        critical = _exact(claim["critical"], {"type", "image", "identity"}, "critical")
        image = _exact(critical["image"], {"docker-manifest-digest"}, "critical.image")
        named = _exact(critical["identity"], {"docker-reference"}, "critical.identity")
        optional = claim["optional"]
        if not isinstance(optional, dict):
            raise _BadClaim("optional is not a JSON object")
    except _BadClaim as e:
        return str(e)
    if critical["type"] != CLAIM_TYPE:
        return f"critical.type is {_quoted(critical['type'])}, not {_quoted(CLAIM_TYPE)}"
    if image["docker-manifest-digest"] != digest:
        return f"it signs digest {_quoted(image['docker-manifest-digest'])}, not {digest}"
    if named["docker-reference"] != identity:
        return f"it signs identity {_quoted(named['docker-reference'])}, not {identity}"
    if "creator" in optional and not isinstance(optional["creator"], str):
        return "optional.creator is not a string"
    if "timestamp" in optional and not _int64(optional["timestamp"]):
        return "optional.timestamp is not an integer"
    return None


def _int64(value: Any) -> bool:
    """An integral JSON number that fits in an int64 (containers/image reads it as one)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63
