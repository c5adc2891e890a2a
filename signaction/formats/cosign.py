"""cosign's legacy attachment: the simple-signing payload, its layer and the ``sha256-<hex>.sig``
image that holds the layers (build, byte for byte as cosign 2.5 writes them; parse), and the one
trust decision on such a signature (``signature_problem``), as ``cosign verify`` makes it.

The ``.sig`` image of a manifest ``sha256:<hex>`` is the tag ``sha256-<hex>.sig`` in the same
repository: an OCI image manifest whose layers are simple-signing payloads
(``application/vnd.dev.cosign.simplesigning.v1+json``), one a signature, each annotated with
the base64 signature and, keyless or logged, the Fulcio certificate and chain and the Rekor
bundle (``dev.sigstore.cosign/...``); its config is go-containerregistry's for an empty image
with those layers. No I/O here: the registry client reads and writes the tag.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes

from . import fulcio, keys, rekor
from .findings import Finding, Problem
from .oci import OCI_CONFIG, OCI_MANIFEST

COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"  # the Rekor entry: SET, body, time, index
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"  # keyless: the Fulcio leaf (PEM)
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"  # keyless: its intermediates and root (PEM)
CLAIM_TYPE = "cosign container image signature"
# attestations (cosign attest, legacy): each layer of the ``.att`` image a DSSE envelope
DSSE_LAYER = "application/vnd.dsse.envelope.v1+json"
PREDICATE_TYPE_ANNOTATION = "predicateType"  # the layer's (and bundle referrer's) type URI
ZERO_TIME = "0001-01-01T00:00:00Z"


def sig_tag(digest: str) -> str:
    """The tag of ``digest``'s signatures: ``sha256-<hex>.sig``."""
    return digest.replace(":", "-") + ".sig"


def att_tag(digest: str) -> str:
    """The tag of ``digest``'s attestations (cosign attest): ``sha256-<hex>.att``."""
    return digest.replace(":", "-") + ".att"


# -- build --------------------------------------------------------------------------------------

def go_json(value: Any) -> bytes:
    """``value`` as Go's encoding/json marshals it (compact; ``<``, ``>``, ``&``, U+2028 and
    U+2029 escaped; other text as UTF-8). Objects keep the order they are given in (a Go
    struct's field order); a Go map's order is sorted: pass maps through ``sorted_map``."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def sorted_map(mapping: dict[str, Any]) -> dict[str, Any]:
    """A Go map's marshalling order: keys sorted by their UTF-8 bytes."""
    return {k: mapping[k] for k in sorted(mapping, key=lambda k: k.encode("utf-8"))}


def simple_signing_payload(identity: str, digest: str, annotations: dict[str, str]) -> bytes:
    """cosign 2.5's payload for ``cosign sign --sign-container-identity IDENTITY -a K=V ...``
    of ``digest``: the same bytes."""
    return go_json({"critical": {"identity": {"docker-reference": identity},
                                 "image": {"docker-manifest-digest": digest},
                                 "type": CLAIM_TYPE},
                    "optional": sorted_map(annotations) if annotations else None})


def signature_layer(payload: bytes, annotations: dict[str, str]) -> dict[str, Any]:
    """The manifest's descriptor of a signature layer (``annotations``: the base64 signature
    and, keyless or logged, the certificate, chain and Rekor bundle)."""
    return {"mediaType": COSIGN_SIMPLESIGNING, "size": len(payload),
            "digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
            "annotations": sorted_map(annotations)}


def signature_config(layers: list[dict[str, Any]]) -> bytes:
    """The ``.sig`` image's config as cosign (go-containerregistry on an empty image) makes it:
    one diff ID and one history entry per layer."""
    return go_json({"architecture": "", "created": ZERO_TIME,
                    "history": [{"created": ZERO_TIME} for _ in layers], "os": "",
                    "rootfs": {"type": "layers", "diff_ids": [lay["digest"] for lay in layers]},
                    "config": {}})


def signature_manifest(config: bytes, layers: list[dict[str, Any]]) -> bytes:
    """The ``.sig`` image's manifest over ``config`` (signature_config) and ``layers``."""
    return go_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "size": len(config),
                               "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
                    "layers": layers})


# -- parse --------------------------------------------------------------------------------------

def manifest_layers(doc: Any) -> list[dict[str, Any]]:
    """The layers of a parsed ``.sig`` manifest, as they are; ValueError if it is not an image
    manifest's JSON object with a list of layer objects."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON image manifest")
    layers = doc.get("layers") or []
    if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
        raise ValueError("not a JSON image manifest")
    return layers


def same_layer(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """``old`` (a layer found) is ``new``: the same payload with the same signature."""
    return old.get("digest") == new["digest"] and (old.get("annotations") or {}).get(
        COSIGN_SIGNATURE_ANNOTATION) == new["annotations"][COSIGN_SIGNATURE_ANNOTATION]


def signed_by(public: Any, payload: bytes, layer: dict[str, Any]) -> bool:
    """cosign's duplicate check: ``layer`` holds a signature of ``payload`` that verifies with
    ``public`` (a public key object), so no new one is needed beside it."""
    try:
        raw = base64.b64decode((layer.get("annotations") or {})[COSIGN_SIGNATURE_ANNOTATION],
                               validate=True)
    except (ValueError, KeyError, TypeError):
        return False
    return keys.verifies(public, payload, raw, hashes.SHA256())  # cosign's, on every curve


# -- verify -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CosignTrust:
    """What one signing key's cosign signatures are checked with (verify mode, skip-signed):
    its PEM public key, or keyless the Fulcio roots, the CT log's key and the certificate
    identity and issuer expected; Rekor's PEM public key when the run knows it (then each
    signature's SET is required)."""

    public_pem: bytes | None = None
    fulcio: fulcio.FulcioRoots | None = None
    identity: str | None = None
    issuer: str | None = None
    rekor_pem: bytes | None = None
    ctlog_pem: bytes | None = None


def signature_problem(sig: dict, digest: str, reference: str, trust: CosignTrust
                      ) -> tuple[Problem | None, dict[str, Any]]:
    """Why one cosign signature (``{"payload": bytes, "signature": base64, "annotations":
    dict}``, a layer as the registry client reads it) does not verify for the manifest
    ``digest`` named ``reference`` (None: it does), and facts about it (its Rekor entry, its
    certificate's identity). Checked as cosign verify checks it: the payload's claim; keyless,
    the certificate (fulcio: its chain to the configured roots when Rekor integrated the entry,
    its SCT, identity and issuer); the signature by the key or certificate; the Rekor entry
    (rekor: this signature's, its SET by Rekor's key) when Rekor's key is known or the
    signature is keyless."""
    try:
        critical = json.loads(sig["payload"])["critical"]
        signed_digest = critical["image"]["docker-manifest-digest"]
        identity = critical["identity"]["docker-reference"]
        raw = base64.b64decode(sig["signature"], validate=True)
    except (ValueError, KeyError, TypeError, RecursionError):
        return Problem(Finding.UNREADABLE, "not a simple signing payload with a base64 "
                       "signature"), {}
    fields: dict[str, Any] = {}
    annotations = sig.get("annotations") or {}
    entry, problem = logged_entry(annotations, trust)
    if problem:
        return problem, {}
    key_pem = trust.public_pem or b""
    if trust.fulcio is not None:
        assert entry is not None
        cert_pem = str(annotations.get(CERTIFICATE_ANNOTATION, "")).encode()
        problem = certificate_problem(cert_pem, str(annotations.get(CHAIN_ANNOTATION, ""))
                                      .encode(), trust, entry.integrated_time)
        if problem:
            return problem, {}
        key_pem = cert_pem
        fields.update(certificate_identity=trust.identity, certificate_oidc_issuer=trust.issuer)
    if not keys.pem_verifies(key_pem, sig["payload"], raw):
        return Problem(Finding.OTHER_KEY, "the signature does not verify with " + (
            "the certificate's key" if trust.fulcio else "this key")), {}
    if signed_digest != digest:
        return Problem(Finding.OTHER_DIGEST,
                       f"it signs {str(signed_digest)[:80]!r}, not {digest}"), {}
    if identity != reference:
        return Problem(Finding.OTHER_IDENTITY,
                       f"it signs {str(identity)[:200]!r}, not {reference}"), {}
    if entry is not None:
        problem = rekor.entry_problem(entry, sig["payload"], raw, key_pem, trust.rekor_pem)
        if problem:
            return problem, {}
        fields.update(rekor_log_index=entry.log_index,
                      rekor_integrated_time=entry.integrated_time)
    return None, fields


def logged_entry(annotations: dict[str, Any], trust: CosignTrust
                 ) -> tuple[rekor.LogEntry | None, Problem | None]:
    """A layer's Rekor entry (its bundle annotation) when ``trust`` asks for one: (the entry,
    None), or (None, why it cannot be read); (None, None) when no entry is asked for."""
    if trust.rekor_pem is None and trust.fulcio is None:
        return None, None
    try:
        return rekor.from_bundle(annotations.get(BUNDLE_ANNOTATION)), None
    except ValueError as e:
        return None, Problem(Finding.TRANSPARENCY, "no readable Rekor bundle (signed entry "
                             f"timestamp), which this run's Rekor key asks for ({e})")


def certificate_problem(cert_pem: bytes, chain_pem: bytes, trust: CosignTrust,
                        integrated: int) -> Problem | None:
    """A keyless signature's certificate: it chains to the Fulcio roots when Rekor integrated
    the signature (the image's chain annotation only as untrusted intermediates), carries an
    SCT by the CT log, and names the identity and issuer expected."""
    from cryptography import x509

    assert trust.fulcio is not None
    if not cert_pem:
        return Problem(Finding.OTHER_KEY, "no certificate (a key-based signature, not a "
                       "keyless one)")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        _, identity, issuer = fulcio.read_certificate(cert_pem)
        untrusted = fulcio.load_certificates(chain_pem, "the chain annotation")
    except ValueError as e:
        return Problem(Finding.UNREADABLE, f"unreadable certificate: {e}")
    at = datetime.datetime.fromtimestamp(integrated, datetime.UTC)
    problem, chain = fulcio.chain_problem(cert, trust.fulcio, untrusted, at)
    if problem is None and trust.ctlog_pem is not None:
        problem = fulcio.sct_problem(cert, chain[1], keys.pem_keys(trust.ctlog_pem))
    if problem is not None:
        return problem
    if identity != trust.identity:
        return Problem(Finding.OTHER_IDENTITY,
                       f"the certificate names {identity!r}, not {trust.identity!r}")
    if issuer != trust.issuer:
        return Problem(Finding.OTHER_ISSUER,
                       f"the certificate's OIDC issuer is {issuer!r}, not {trust.issuer!r}")
    return None
