"""Sigstore bundles (v0.3), cosign 3's signature format, and the OCI referrer that holds one.

A bundle signing an image is JSON (protobuf's JSON mapping: camelCase, bytes as base64, 64-bit
integers as strings):

- ``dsseEnvelope``: a DSSE envelope (``application/vnd.in-toto+json``) over an in-toto
  Statement of predicate type ``https://sigstore.dev/cosign/sign/v1`` whose subject is the
  image's manifest digest;
- ``verificationMaterial``: the Fulcio leaf certificate (``certificate.rawBytes``, keyless) or
  a public-key hint (base64 SHA-256 of the key's DER SubjectPublicKeyInfo, as cosign writes
  it), and ``tlogEntries``: the Rekor ``dsse`` 0.0.1 entry with its signed entry timestamp
  (``inclusionPromise``) and, when the log gives them, inclusion proof and checkpoint.

It is stored as an OCI 1.1 referrer: an image manifest of ``artifactType`` the bundle type,
the empty config, one layer (the bundle), ``subject`` the signed manifest, and cosign's
annotations. Written here the way sigstore-python's strict reader wants it (every 64-bit
integer a string, ``logIndex`` and ``hashes`` always present), which cosign reads too.

Why no sigstore model library: the documents are small and fixed; sigstore-models (0.0.x,
pydantic, pinned exactly by sigstore-python) and sigstore-protobuf-specs (a beta betterproto)
would add more than the few lines they replace. The tests read what is written here with
cosign 3.1 and sigstore-python. No I/O here.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from . import attestation, dsse, intoto, keys, rekor
from .cosign import CosignTrust
from .findings import Finding, Problem
from .oci import EMPTY, EMPTY_JSON, OCI_MANIFEST, descriptor

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
READ_TYPES = frozenset({BUNDLE_V03, "application/vnd.dev.sigstore.bundle+json;version=0.3",
                        "application/vnd.dev.sigstore.bundle+json;version=0.2"})
CONTENT_ANNOTATION = "dev.sigstore.bundle.content"
PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
CREATED_ANNOTATION = "org.opencontainers.image.created"
MAX_BUNDLE = 1 << 20  # bytes of one bundle read at most
MAX_ENTRIES = 8  # tlog entries of one bundle read at most


# -- build --------------------------------------------------------------------------------------

def statement(digest: str, annotations: dict[str, str], name: str = "") -> bytes:
    """cosign 3's Statement for signing the manifest ``digest``: one subject (its name when
    given, the digest, the annotations: ``{}`` for none, as cosign writes), predicate type
    cosign/sign/v1, an empty predicate."""
    return intoto.statement(digest, intoto.COSIGN_SIGN, {}, name=name, annotations=annotations)


def key_hint(public: Any) -> str:
    """cosign's public-key hint: base64 of the SHA-256 of the key's DER SubjectPublicKeyInfo."""
    return base64.b64encode(hashlib.sha256(keys.spki(public)).digest()).decode("ascii")


def tlog_entry(entry: rekor.LogEntry, kind: str = "dsse") -> dict[str, Any]:
    """A Rekor entry as a bundle's ``tlogEntries`` item."""
    b64 = base64.b64encode
    found: dict[str, Any] = {
        "logIndex": str(entry.log_index),
        "logId": {"keyId": b64(bytes.fromhex(entry.log_id)).decode()},
        "kindVersion": {"kind": kind, "version": "0.0.1"},
        "integratedTime": str(entry.integrated_time),
        "inclusionPromise": {"signedEntryTimestamp": b64(entry.set).decode()}}
    if entry.proof is not None:
        proof = entry.proof
        found["inclusionProof"] = {
            "logIndex": str(proof.log_index), "rootHash": b64(proof.root_hash).decode(),
            "treeSize": str(proof.tree_size), "hashes": [b64(h).decode() for h in proof.hashes],
            "checkpoint": {"envelope": proof.checkpoint}}
    found["canonicalizedBody"] = entry.body
    return found


def bundle(envelope: dsse.Envelope, entries: list[rekor.LogEntry], *,
           certificate_der: bytes | None = None, hint: str | None = None) -> bytes:
    """The bundle (JSON bytes) of ``envelope``, with the certificate (keyless) or the key's
    hint, and its log entries."""
    material: dict[str, Any] = {"certificate": {"rawBytes": base64.b64encode(
        certificate_der).decode()}} if certificate_der else {"publicKey": {"hint": hint or ""}}
    material["tlogEntries"] = [tlog_entry(e) for e in entries]
    return json.dumps({"mediaType": BUNDLE_V03, "verificationMaterial": material,
                       "dsseEnvelope": envelope.json()}, separators=(",", ":")).encode()


def referrer_manifest(bundle_json: bytes, subject: dict[str, Any], created: str,
                      predicate_type: str = intoto.COSIGN_SIGN) -> bytes:
    """The OCI manifest cosign 3 pushes for a bundle: the empty config (with the artifact type,
    as go-containerregistry writes it), one layer the bundle, cosign's annotations (``created``:
    RFC 3339 UTC seconds), ``subject`` the signed manifest's descriptor."""
    config = {**descriptor(EMPTY, EMPTY_JSON), "artifactType": BUNDLE_V03}
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                       "layers": [descriptor(BUNDLE_V03, bundle_json)],
                       "annotations": {CONTENT_ANNOTATION: "dsse-envelope",
                                       PREDICATE_ANNOTATION: predicate_type,
                                       CREATED_ANNOTATION: created},
                       "subject": subject, "artifactType": BUNDLE_V03},
                      separators=(",", ":")).encode()


# -- parse --------------------------------------------------------------------------------------

def bundle_layer(raw: bytes) -> dict[str, Any] | None:
    """The bundle layer's descriptor of a referrer manifest ``raw`` (what cosign reads: one
    layer of a bundle media type); None when the manifest is some other artifact."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        return None
    layer = layers[0]
    if not str(layer.get("mediaType", "")).startswith("application/vnd.dev.sigstore.bundle"):
        return None
    return layer


@dataclass(frozen=True)
class Bundle:
    envelope: dsse.Envelope
    certificate_der: bytes | None  # keyless: the leaf
    hint: str | None  # keyed: cosign's hint (not trusted: the configured key decides)
    entries: tuple[tuple[str, rekor.LogEntry], ...]  # (kind, entry)


def _str_int(value: Any) -> int:
    """A protobuf JSON int64: a string of digits (or a number); absent is 0."""
    if value is None:
        return 0
    if isinstance(value, str) and value.isdigit() and len(value) < 20:
        value = int(value)
    return rekor.non_negative(value)


_b64 = rekor.base64_text


def _entry(found: Any) -> tuple[str, rekor.LogEntry]:
    kind = found["kindVersion"]["kind"]
    proof = None
    if found.get("inclusionProof") is not None:
        p = found["inclusionProof"]
        path = p.get("hashes") or []
        if not isinstance(path, list) or len(path) > rekor.MAX_PROOF:
            raise ValueError("a bad audit path")
        checkpoint = p["checkpoint"]["envelope"]
        if not isinstance(checkpoint, str):
            raise ValueError("a bad checkpoint")
        proof = rekor.InclusionProof(_str_int(p.get("logIndex")), _str_int(p.get("treeSize")),
                                     _b64(p["rootHash"]), tuple(_b64(h) for h in path),
                                     checkpoint)
    promise = found.get("inclusionPromise") or {}
    body = found["canonicalizedBody"]
    _b64(body)
    return str(kind), rekor.LogEntry(
        body, _str_int(found.get("integratedTime")), _b64(found["logId"]["keyId"]).hex(),
        _str_int(found.get("logIndex")), _b64(promise.get("signedEntryTimestamp", "")), proof)


def parse(raw: bytes) -> Bundle:
    """A bundle's JSON; ValueError naming what is wrong otherwise."""
    if len(raw) > MAX_BUNDLE:
        raise ValueError(f"the bundle is over {MAX_BUNDLE} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("the bundle is not JSON") from None
    if not isinstance(doc, dict) or doc.get("mediaType") not in READ_TYPES:
        raise ValueError("not a Sigstore bundle (v0.2 or v0.3)")
    try:
        material = doc["verificationMaterial"]
        envelope = dsse.parse(doc["dsseEnvelope"])
        cert = material.get("certificate")
        chain = material.get("x509CertificateChain")
        der = _b64(cert["rawBytes"]) if cert else (
            _b64(chain["certificates"][0]["rawBytes"]) if chain else None)
        public = material.get("publicKey")
        hint = str(public.get("hint", "")) if isinstance(public, dict) else None
        found = material.get("tlogEntries") or []
        if not isinstance(found, list) or len(found) > MAX_ENTRIES:
            raise ValueError("too many log entries")
        entries = tuple(_entry(e) for e in found)
    except (KeyError, TypeError, AttributeError, IndexError):
        raise ValueError("the bundle lacks its envelope, key material or a log entry's "
                         "fields") from None
    if der is None and hint is None:
        raise ValueError("the bundle has neither a certificate nor a public key")
    return Bundle(envelope, der, hint, entries)


# -- verify -------------------------------------------------------------------------------------

def bundle_problem(raw: bytes, digest: str, trust: CosignTrust,
                   predicate_type: str = intoto.COSIGN_SIGN,
                   predicate_check: attestation.PredicateCheck | None = None
                   ) -> tuple[Problem | None, dict[str, Any]]:
    """Why one bundle does not verify as a signature (or, of another ``predicate_type``, an
    attestation) of the manifest ``digest`` (None: it does), and facts about it: its envelope,
    its ``dsse`` entry and keyless its certificate judged by attestation.envelope_problem, as
    cosign verify checks a bundle."""
    try:
        found = parse(raw)
    except ValueError as e:
        return Problem(Finding.UNREADABLE, str(e)), {}
    entry = None
    if trust.rekor_pem is not None or trust.fulcio is not None:
        dsse_entries = [e for kind, e in found.entries if kind == "dsse"]
        if len(dsse_entries) != 1:
            return Problem(Finding.TRANSPARENCY, "no Rekor dsse entry, which this run's Rekor "
                           "key asks for"), {}
        entry = dsse_entries[0]
    cert_pem = None
    if trust.fulcio is not None:
        if found.certificate_der is None:
            return Problem(Finding.OTHER_KEY, "no certificate (a key-based signature, not a "
                           "keyless one)"), {}
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        try:
            cert_pem = x509.load_der_x509_certificate(found.certificate_der).public_bytes(
                serialization.Encoding.PEM)
        except ValueError:
            return Problem(Finding.UNREADABLE, "unreadable certificate"), {}
    return attestation.envelope_problem(found.envelope, entry, cert_pem, b"", digest,
                                        predicate_type, trust, predicate_check)
