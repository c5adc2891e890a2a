"""DSSE (Dead Simple Signing Envelope, v1): what is signed is the PAE of the payload's type and
bytes, never the payload alone, so a signature cannot be moved to another type of payload.

An envelope is ``{"payload": base64, "payloadType": TYPE, "signatures": [{"sig": base64,
"keyid": ...}]}``. No I/O here."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

IN_TOTO = "application/vnd.in-toto+json"  # the payload type of an in-toto Statement
MAX_SIGNATURES = 16  # signatures of one envelope read at most


def pae(payload_type: str, payload: bytes) -> bytes:
    """The pre-authentication encoding: ``DSSEv1 LEN(type) type LEN(payload) payload``."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]  # raw signature bytes, in the envelope's order

    def text(self) -> bytes:
        """The envelope's compact JSON text: what is logged in Rekor (whose entry hashes these
        bytes) and stored as a cosign 2 ``.att`` layer, the same bytes for both."""
        return json.dumps(self.json(), separators=(",", ":")).encode()

    def json(self) -> dict[str, Any]:
        """The envelope as its JSON object (protobuf JSON field names, as sigstore writes)."""
        return {"payload": base64.b64encode(self.payload).decode("ascii"),
                "payloadType": self.payload_type,
                "signatures": [{"sig": base64.b64encode(s).decode("ascii")}
                               for s in self.signatures]}


def parse(value: Any) -> Envelope:
    """An envelope's JSON object (parsed); ValueError naming what is wrong otherwise."""
    if not isinstance(value, dict):
        raise ValueError("the DSSE envelope is not a JSON object")
    payload_type, payload, signatures = (value.get("payloadType"), value.get("payload"),
                                         value.get("signatures"))
    if not isinstance(payload_type, str) or not isinstance(payload, str):
        raise ValueError("the DSSE envelope has no payloadType or payload")
    if not isinstance(signatures, list) or not signatures or len(signatures) > MAX_SIGNATURES:
        raise ValueError(f"the DSSE envelope has no signature, or more than {MAX_SIGNATURES}")
    try:
        raw = tuple(base64.b64decode(s["sig"], validate=True) for s in signatures)
        body = base64.b64decode(payload, validate=True)
    except (binascii.Error, KeyError, TypeError):
        raise ValueError("the DSSE envelope's payload or a signature is not base64") from None
    return Envelope(payload_type, body, raw)
