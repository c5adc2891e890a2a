"""Rekor entries (``hashedrekord`` 0.0.1, and ``dsse`` 0.0.1 for bundles): what a signature's log
entry must be to be accepted.

- ``body_problem``: the entry's body is exactly this signature: the payload's SHA-256, the
  signature's bytes, the same public key (or certificate's key) — Rekor re-encodes what it
  stores, so keys are compared as SubjectPublicKeyInfo;
- ``set_problem``: the signed entry timestamp (SET) is Rekor's signature, by its key, over the
  canonical JSON of body, integratedTime, logID and logIndex (what cosign and containers/image
  check offline), and logID is that key's;
- ``inclusion_problem``: when the entry carries an inclusion proof, the RFC 6962/9162 audit path
  takes the entry's leaf hash to the proof's root, and the checkpoint (a signed note) is signed
  by Rekor's key and names that root and tree size.

The same functions judge Rekor's answer while signing and a signature's bundle annotation in
verify mode and skip-signed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes

from signaction.formats.findings import Finding, Problem

from .keys import load_public, pem_keys, pem_spki, verifies

MAX_PROOF = 64  # hashes in an audit path: a tree of 2**64 entries


@dataclass(frozen=True, slots=True)
class InclusionProof:
    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One Rekor entry as the log gave it: its body (base64, as signed), integrated time,
    log ID (hex SHA-256 of the log key), index, SET (raw signature) and inclusion proof."""

    body: str
    integrated_time: int
    log_id: str
    log_index: int
    set: bytes
    proof: InclusionProof | None = None

    def bundle(self) -> dict[str, Any]:
        """cosign's ``dev.sigstore.cosign/bundle`` annotation (before Go's JSON encoding)."""
        return {"SignedEntryTimestamp": base64.b64encode(self.set).decode(), "Payload": {
            "body": self.body, "integratedTime": self.integrated_time,
            "logIndex": self.log_index, "logID": self.log_id}}


def non_negative(value: Any) -> int:
    """An int64 that is not negative (not a bool); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError("not a non-negative integer")
    return value


def base64_text(value: Any) -> bytes:
    """Standard base64 text, decoded strictly; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError("not base64 text")
    return base64.b64decode(value, validate=True)


_int, _b64 = non_negative, base64_text


def from_bundle(text: Any) -> LogEntry:
    """cosign's bundle annotation (JSON text); ValueError if it is not one."""
    if not isinstance(text, str) or not text:
        raise ValueError("no bundle")
    try:
        bundle = json.loads(text)
        payload = bundle["Payload"]
        entry = LogEntry(str(payload["body"]), _int(payload["integratedTime"]),
                         str(payload["logID"]), _int(payload["logIndex"]),
                         _b64(bundle["SignedEntryTimestamp"]))
        _b64(entry.body)
    except (KeyError, TypeError, AttributeError, RecursionError):
        raise ValueError("not a Rekor bundle") from None
    return entry


def from_answer(value: Any) -> LogEntry:
    """One entry of Rekor's API answer (``LogEntryAnon``: body, integratedTime, logID,
    logIndex, verification {signedEntryTimestamp, inclusionProof}); ValueError if not."""
    try:
        verification = value["verification"]
        proof = None
        found = verification.get("inclusionProof")
        if found is not None:
            path = found["hashes"]
            if not isinstance(path, list) or len(path) > MAX_PROOF:
                raise ValueError("a bad audit path")
            proof = InclusionProof(_int(found["logIndex"]), _int(found["treeSize"]),
                                   bytes.fromhex(found["rootHash"]),
                                   tuple(bytes.fromhex(h) for h in path),
                                   str(found["checkpoint"]))
        entry = LogEntry(str(value["body"]), _int(value["integratedTime"]),
                         str(value["logID"]), _int(value["logIndex"]),
                         _b64(verification["signedEntryTimestamp"]), proof)
        _b64(entry.body)
    except (KeyError, TypeError, AttributeError):
        raise ValueError("not a Rekor entry") from None
    return entry


def hashedrekord(payload: bytes, signature: bytes, key_pem: bytes) -> dict[str, Any]:
    """The ``hashedrekord`` 0.0.1 entry cosign proposes for ``signature`` (raw bytes) over
    ``payload`` by ``key_pem`` (a PEM public key or certificate, as given)."""
    return {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
        "signature": {"content": base64.b64encode(signature).decode("ascii"),
                      "publicKey": {"content": base64.b64encode(key_pem).decode("ascii")}}}}


def entry_uuid(payload: bytes, signature: bytes, key_pem: bytes) -> str:
    """The UUID of the entry Rekor makes of ``hashedrekord(payload, signature, key_pem)``: the
    RFC 6962 leaf hash of the body as Rekor stores it (canonical JSON, RFC 8785, with the key or
    certificate re-encoded as PEM). ValueError if the key cannot be read."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        if b"CERTIFICATE" in key_pem:
            pem = x509.load_pem_x509_certificate(key_pem).public_bytes(
                serialization.Encoding.PEM)
        else:
            pem = serialization.load_pem_public_key(key_pem).public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError) as e:
        raise ValueError(f"unreadable key ({type(e).__name__})") from None
    return leaf_hash(_canonical(hashedrekord(payload, signature, pem))).hex()


def dsse(envelope: str, key_pem: bytes) -> dict[str, Any]:
    """The ``dsse`` 0.0.1 entry sigstore's clients propose for a DSSE envelope (its JSON text,
    as it will be hashed) signed by ``key_pem`` (a PEM public key or certificate)."""
    return {"apiVersion": "0.0.1", "kind": "dsse", "spec": {"proposedContent": {
        "envelope": envelope, "verifiers": [base64.b64encode(key_pem).decode("ascii")]}}}


def body_problem(entry: LogEntry, payload: bytes, signature: bytes, key_pem: bytes,
                 kind: str = "hashedrekord") -> Problem | None:
    """The entry logs this signature (raw bytes) over ``payload`` by ``key_pem`` (a PEM public
    key or certificate), as an entry of ``kind``: ``hashedrekord`` (the payload's SHA-256, the
    signature, the key) or ``dsse`` (``payload`` is the envelope's payload: its SHA-256, and the
    signature among the envelope's with this key as its verifier; the envelope's own hash is
    not compared, its JSON text is not canonical)."""
    try:
        body = json.loads(base64.b64decode(entry.body))
        found_kind = (body.get("kind"), body.get("apiVersion"))
        spec = body["spec"]
        ours = pem_spki(key_pem)
        if found_kind == ("dsse", "0.0.1"):
            algorithm = spec["payloadHash"]["algorithm"]
            value = spec["payloadHash"]["value"]
            logged = [(_b64(s["signature"]), pem_spki(_b64(s["verifier"])))
                      for s in spec["signatures"]]
        else:
            algorithm = spec["data"]["hash"]["algorithm"]
            value = spec["data"]["hash"]["value"]
            logged = [(_b64(spec["signature"]["content"]),
                       pem_spki(_b64(spec["signature"]["publicKey"]["content"])))]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return Problem(Finding.TRANSPARENCY, f"the Rekor entry's body is not a {kind} entry "
                       "with a readable signature and key")
    if found_kind != (kind, "0.0.1"):
        return Problem(Finding.TRANSPARENCY, f"the Rekor entry is not a {kind} 0.0.1")
    if algorithm != "sha256" or value != hashlib.sha256(payload).hexdigest():
        return Problem(Finding.TRANSPARENCY, "the Rekor entry logs another payload")
    if signature not in {sig for sig, _ in logged}:
        return Problem(Finding.TRANSPARENCY, "the Rekor entry logs another signature")
    if (signature, ours) not in logged:
        return Problem(Finding.TRANSPARENCY, "the Rekor entry logs another key or certificate")
    return None


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def set_problem(entry: LogEntry, rekor_pem: bytes) -> Problem | None:
    """The SET is Rekor's (``rekor_pem``) over this entry, and the entry names that log."""
    key = load_public(rekor_pem)
    if entry.log_id.lower() != hashlib.sha256(pem_spki(rekor_pem)).hexdigest():
        return Problem(Finding.TRANSPARENCY, "the Rekor entry names another log (its logID "
                       "is not the SHA-256 of Rekor's key)")
    signed = _canonical({"body": entry.body, "integratedTime": entry.integrated_time,
                         "logID": entry.log_id, "logIndex": entry.log_index})
    if not verifies(key, signed, entry.set, hashes.SHA256()):
        return Problem(Finding.TRANSPARENCY, "the signed entry timestamp does not verify with "
                       "Rekor's key for this entry")
    return None


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962's leaf hash; of an entry's body, the entry's UUID."""
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(index: int, size: int, leaf: bytes, path: tuple[bytes, ...]) -> bytes | None:
    """RFC 9162 2.1.3.2: the root an audit path leads to from ``leaf`` at ``index`` in a tree
    of ``size`` leaves; None if the path does not fit the tree."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0 or len(p) != 32:
            return None
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def checkpoint_problem(text: str, rekor_pem: bytes, size: int, root: bytes) -> Problem | None:
    """A signed note (``origin\\nsize\\nbase64 root\\n...\\n\\n— name base64(hint+sig)``): a
    signature line by Rekor's key (hint: the first 4 bytes of its key's SHA-256) over the note,
    which names ``size`` and ``root``."""
    note, sep, signatures = text.partition("\n\n")
    lines = note.split("\n")
    if not sep or len(lines) < 3:
        return Problem(Finding.TRANSPARENCY, "the checkpoint is not a signed note")
    try:
        named_size, named_root = int(lines[1]), base64.b64decode(lines[2], validate=True)
    except ValueError:
        return Problem(Finding.TRANSPARENCY, "the checkpoint's size or root cannot be read")
    if named_size != size or named_root != root:
        return Problem(Finding.TRANSPARENCY, "the checkpoint names another tree than the "
                       "inclusion proof")
    key = load_public(rekor_pem)
    hint = hashlib.sha256(pem_spki(rekor_pem)).digest()[:4]
    body = (note + "\n").encode()
    for line in signatures.split("\n"):
        if not line.startswith("\u2014 "):
            continue
        try:
            raw = base64.b64decode(line.rsplit(" ", 1)[-1], validate=True)
        except ValueError:
            continue
        if raw[:4] == hint and verifies(key, body, raw[4:], hashes.SHA256()):
            return None
    return Problem(Finding.TRANSPARENCY, "the checkpoint is not signed by Rekor's key")


def inclusion_problem(entry: LogEntry, rekor_pem: bytes) -> Problem | None:
    """The entry's inclusion proof and checkpoint, when it has them (None: none given)."""
    proof = entry.proof
    if proof is None:
        return None
    # proof.log_index is the entry's place in its tree (a shard of the log), not the log's
    # global index that the SET signs: they differ on the public instance
    root = root_from_path(proof.log_index, proof.tree_size, leaf_hash(base64.b64decode(entry.body)),
                          proof.hashes)
    if root is None or root != proof.root_hash:
        return Problem(Finding.TRANSPARENCY, "the inclusion proof does not lead from this entry "
                       "to the log's root")
    return checkpoint_problem(proof.checkpoint, rekor_pem, proof.tree_size, proof.root_hash)


def entry_problem(entry: LogEntry, payload: bytes, signature: bytes, key_pem: bytes,
                  rekor_pem: bytes | None, kind: str = "hashedrekord") -> Problem | None:
    """Every check of one entry for one signature: its body (of ``kind``), and with Rekor's key
    its SET and inclusion proof."""
    problem = body_problem(entry, payload, signature, key_pem, kind)
    if problem is None and rekor_pem is not None:
        rekor_pem = log_key(rekor_pem, entry.log_id)
        problem = set_problem(entry, rekor_pem) or inclusion_problem(entry, rekor_pem)
    return problem


def log_key(rekor_pem: bytes, log_id: str) -> bytes:
    """Of the Rekor keys trusted (one PEM or several, as a trusted root lists them), the one
    whose SHA-256 is the entry's log ID; the first when none is (set_problem says so)."""
    keys = pem_keys(rekor_pem)
    if len(keys) < 2:
        return rekor_pem
    for key in keys:
        try:
            if hashlib.sha256(pem_spki(key)).hexdigest() == log_id.lower():
                return key
        except ValueError:
            continue
    return keys[0]
