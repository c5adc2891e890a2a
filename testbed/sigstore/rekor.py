"""The test bed's Rekor: one RFC 6962 tree of hashedrekord and dsse entries, SETs, inclusion proofs,
checkpoints (signed notes), and the answers a hostile log gives (``forged``)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from .common import (
    CHECKPOINT_ORIGIN,
    TREE_ID,
    Refused,
    b64,
    canonical_json,
    load_public_key,
    pem_public,
    spki,
    unb64,
    verify_signature,
)

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


def canonical_dsse(proposed) -> tuple[bytes, dict]:
    """Check a proposed ``dsse`` 0.0.1 entry as Rekor does (every signature of the envelope
    verifies over its PAE with one of the verifiers given) and return its canonical body: the
    SHA-256 of the envelope as sent and of its payload, and each signature (as the envelope
    has it, base64) with the key or certificate that verifies it, sorted by signature."""
    spec = proposed.get("spec")
    if proposed.get("apiVersion") != "0.0.1":
        raise Refused(400, f"dsse: unsupported apiVersion {proposed.get('apiVersion')!r}")
    try:
        content = spec["proposedContent"]
        text, verifiers = content["envelope"], content["verifiers"]
        envelope = json.loads(text)
        payload = unb64(envelope["payload"], "envelope.payload")
        kind = envelope["payloadType"].encode()
        sigs = [s["sig"] for s in envelope["signatures"]]
    except (KeyError, TypeError, ValueError):
        raise Refused(400, "dsse: spec.proposedContent.envelope (a DSSE envelope as JSON text) "
                           "and verifiers are required") from None
    if not sigs or not isinstance(verifiers, list) or not verifiers:
        raise Refused(400, "DSSE envelope must contain 1 or more signatures")
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
    keys = []
    for verifier in verifiers:
        pem = unb64(verifier, "verifiers[]")
        key = load_public_key(pem)
        if key is None:
            raise Refused(400, "could not parse public key as x509")
        keys.append((pem, key))
    signatures = []
    for sig in sigs:
        for pem, key in keys:
            try:
                verify_signature(key, unb64(sig, "signature"), pae)
            except Refused:
                continue
            signatures.append({"signature": sig, "verifier": b64(pem)})
            break
        else:
            raise Refused(400, "all signatures must have a key that verifies it")
    body = {"apiVersion": "0.0.1", "kind": "dsse", "spec": {
        "envelopeHash": {"algorithm": "sha256",
                         "value": hashlib.sha256(text.encode()).hexdigest()},
        "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
        "signatures": sorted(signatures, key=lambda s: s["signature"])}}
    return canonical_json(body), body


KINDS = {"hashedrekord": canonical_hashedrekord, "dsse": canonical_dsse}


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
        kind = proposed.get("kind") if isinstance(proposed, dict) else None
        if kind not in KINDS:
            raise Refused(400, "unsupported entry kind: only hashedrekord and dsse are accepted "
                               "here")
        body, _ = KINDS[kind](proposed)
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
