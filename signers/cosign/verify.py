"""Verify mode and skip-signed for cosign signatures (the legacy ``.sig`` tag): each layer's
claim, its signature by the key or a Fulcio certificate, the certificate's chain, SCT and
identity, and Rekor's entry, through signaction.formats."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

from signaction.formats import fulcio, keys, rekor
from signaction.plan import WorkItem
from signaction.registry import RegistryClient, RegistryError
from signaction.signing import (
    INVALID,
    MISSING,
    VERIFIED,
    Check,
    Finding,
    Problem,
    Verdict,
    listed,
)

log = logging.getLogger("signers.cosign")


BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"


CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"


CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"


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


def cosign_verifier(registry: RegistryClient, trusted: dict[str, CosignTrust]) -> Check:
    def check(item: WorkItem) -> Verdict:
        image = item.container
        tag = image.known_digest.replace(":", "-")
        where = f"{image.source.host}/{image.source.path}:{tag}.sig"
        try:
            found = registry.cosign_signatures(image.source, image.known_digest)
        except RegistryError as e:
            return Verdict(INVALID, f"the signatures could not be read: {e}")
        if not found:
            return Verdict(MISSING, f"no signature: {where} does not exist or holds none")
        findings: list[tuple[str, Problem]] = []
        for n, sig in enumerate(found, 1):
            problem, fields = cosign_problem(sig, item, trusted[item.key.key])
            tried = tuple(f"{w}: {p}" for w, p in findings)
            if problem is None:
                return Verdict(VERIFIED, f"signature {n} of {where} verifies", tried, fields,
                               tuple(findings))
            findings.append((f"signature {n}", problem))
        tried = tuple(f"{w}: {p}" for w, p in findings)
        return Verdict(INVALID, f"{len(found)} signature(s) in {where}, none verifies: "
                       + listed(tried), tried, findings=tuple(findings))
    return check


def cosign_problem(sig: dict, item: WorkItem, trust: CosignTrust
                   ) -> tuple[Problem | None, dict[str, Any]]:
    """Why one cosign signature does not verify for ``item`` (None: it does), and facts about
    it (its Rekor entry, its certificate's identity). Checked as cosign verify checks it: the
    payload's claim; keyless, the certificate (signaction.formats.fulcio: its chain to the
    configured roots when Rekor integrated the entry, its SCT, identity and issuer); the
    signature by the key or certificate; the Rekor entry (signaction.formats.rekor: this
    signature's, its SET by Rekor's key) when Rekor's key is known or the signature is
    keyless."""
    image = item.container
    try:
        critical = json.loads(sig["payload"])["critical"]
        digest = critical["image"]["docker-manifest-digest"]
        identity = critical["identity"]["docker-reference"]
        raw = base64.b64decode(sig["signature"], validate=True)
    except (ValueError, KeyError, TypeError, RecursionError):
        return Problem(Finding.UNREADABLE, "not a simple signing payload with a base64 "
                       "signature"), {}
    fields: dict[str, Any] = {}
    annotations = sig.get("annotations") or {}
    entry = None
    if trust.rekor_pem is not None or trust.fulcio is not None:
        try:
            entry = rekor.from_bundle(annotations.get(BUNDLE_ANNOTATION))
        except ValueError as e:
            return Problem(Finding.TRANSPARENCY, "no readable Rekor bundle (signed entry "
                           f"timestamp), which this run's Rekor key asks for ({e})"), {}
    key_pem = trust.public_pem or b""
    if trust.fulcio is not None:
        assert entry is not None
        cert_pem = str(annotations.get(CERTIFICATE_ANNOTATION, "")).encode()
        problem = _certificate_problem(cert_pem, str(annotations.get(CHAIN_ANNOTATION, ""))
                                       .encode(), trust, entry.integrated_time)
        if problem:
            return problem, {}
        key_pem = cert_pem
        fields.update(certificate_identity=trust.identity, certificate_oidc_issuer=trust.issuer)
    if not keys.pem_verifies(key_pem, sig["payload"], raw):
        return Problem(Finding.OTHER_KEY, "the signature does not verify with " + (
            "the certificate's key" if trust.fulcio else "this key")), {}
    if digest != image.known_digest:
        return Problem(Finding.OTHER_DIGEST,
                       f"it signs {str(digest)[:80]!r}, not {image.known_digest}"), {}
    if identity != str(image.reference):
        return Problem(Finding.OTHER_IDENTITY,
                       f"it signs {str(identity)[:200]!r}, not {image.reference}"), {}
    if entry is not None:
        problem = rekor.entry_problem(entry, sig["payload"], raw, key_pem, trust.rekor_pem)
        if problem:
            return problem, {}
        fields.update(rekor_log_index=entry.log_index,
                      rekor_integrated_time=entry.integrated_time)
    return None, fields


def _certificate_problem(cert_pem: bytes, chain_pem: bytes, trust: CosignTrust,
                         integrated: int) -> Problem | None:
    """A keyless signature's certificate: it chains to the Fulcio roots when Rekor integrated
    the signature (the image's chain annotation only as untrusted intermediates), carries an
    SCT by the CT log, and names the identity and issuer expected."""
    import datetime

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
        problem = fulcio.sct_problem(cert, chain[1], (trust.ctlog_pem,))
    if problem is not None:
        return problem
    if identity != trust.identity:
        return Problem(Finding.OTHER_IDENTITY,
                       f"the certificate names {identity!r}, not {trust.identity!r}")
    if issuer != trust.issuer:
        return Problem(Finding.OTHER_ISSUER,
                       f"the certificate's OIDC issuer is {issuer!r}, not {trust.issuer!r}")
    return None
