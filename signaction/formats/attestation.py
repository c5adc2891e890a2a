"""The trust decision on one DSSE envelope over an in-toto Statement: a cosign 3 bundle's (the
signature's or an attestation's: signaction.formats.bundle) and a cosign 2 attestation's, a
layer of the ``sha256-<hex>.att`` tag (``cosign attest``: the layer's blob is the envelope, its
annotations the Rekor bundle, keyless the Fulcio certificate and chain). Checked as cosign's
``verify-attestation`` checks it: keyless, the certificate (chain to the Fulcio roots at the
entry's integrated time, SCT, identity, issuer); the DSSE signature over the PAE by the key or
certificate; the Statement's predicate type and that its subject names the digest; the Rekor
``dsse`` entry (this envelope's payload and signature, SET, inclusion proof and checkpoint when
given) when Rekor's key is known or the signature is keyless; then, for a provenance, what the
verifier pins of it. No I/O here."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from . import dsse, intoto, keys, rekor
from .cosign import (
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    CosignTrust,
    certificate_problem,
    logged_entry,
)
from .findings import Finding, Problem

MAX_ENVELOPE = 16 << 20  # bytes of one .att layer (a DSSE envelope: an SBOM can be large)
PredicateCheck = Callable[[Any], Problem | None]


def envelope_problem(envelope: dsse.Envelope, entry: rekor.LogEntry | None,
                     cert_pem: bytes | None, chain_pem: bytes, digest: str,
                     predicate_type: str, trust: CosignTrust,
                     predicate_check: PredicateCheck | None = None
                     ) -> tuple[Problem | None, dict[str, Any]]:
    """Why ``envelope`` (its Rekor ``entry``, keyless its certificate) is not a valid statement
    of ``predicate_type`` about ``digest`` under ``trust`` (None: it is), and facts about it.
    ``entry`` must be given when Rekor's key is known or the signature is keyless."""
    if envelope.payload_type != dsse.IN_TOTO or len(envelope.signatures) != 1:
        return Problem(Finding.UNREADABLE, "not one signature over an in-toto Statement"), {}
    signature = envelope.signatures[0]
    fields: dict[str, Any] = {}
    if (trust.rekor_pem is not None or trust.fulcio is not None) and entry is None:
        return Problem(Finding.TRANSPARENCY, "no Rekor dsse entry, which this run's Rekor "
                       "key asks for"), {}
    key_pem = trust.public_pem or b""
    if trust.fulcio is not None:
        assert entry is not None
        problem = certificate_problem(cert_pem or b"", chain_pem, trust, entry.integrated_time)
        if problem:
            return problem, {}
        key_pem = cert_pem or b""
        fields.update(certificate_identity=trust.identity, certificate_oidc_issuer=trust.issuer)
    if not keys.pem_verifies(key_pem, dsse.pae(envelope.payload_type, envelope.payload),
                             signature):
        return Problem(Finding.OTHER_KEY, "the signature does not verify with " + (
            "the certificate's key" if trust.fulcio else "this key")), {}
    try:
        claim = intoto.parse(envelope.payload)
    except ValueError as e:
        return Problem(Finding.UNREADABLE, str(e)), {}
    problem = intoto.subject_problem(claim, digest, predicate_type)
    if problem:
        return problem, {}
    if entry is not None:
        problem = rekor.entry_problem(entry, envelope.payload, signature, key_pem,
                                      trust.rekor_pem, kind="dsse")
        if problem:
            return problem, {}
        fields.update(rekor_log_index=entry.log_index,
                      rekor_integrated_time=entry.integrated_time)
    if predicate_check is not None and (problem := predicate_check(claim.predicate)):
        return problem, {}
    return None, fields


def layer_problem(blob: bytes, annotations: dict[str, Any], digest: str, predicate_type: str,
                  trust: CosignTrust, predicate_check: PredicateCheck | None = None
                  ) -> tuple[Problem | None, dict[str, Any]]:
    """One ``.att`` layer (its blob, the DSSE envelope's JSON, and its annotations) judged by
    ``envelope_problem``."""
    try:
        envelope = dsse.parse(_json(blob))
    except ValueError as e:
        return Problem(Finding.UNREADABLE, str(e)), {}
    entry, problem = logged_entry(annotations, trust)
    if problem:
        return problem, {}
    cert = str(annotations.get(CERTIFICATE_ANNOTATION, "")).encode() or None
    chain = str(annotations.get(CHAIN_ANNOTATION, "")).encode()
    problem, fields = envelope_problem(envelope, entry, cert, chain, digest, predicate_type,
                                       trust, predicate_check)
    if problem is None and entry is not None and \
            logged_envelope_hash(entry) != hashlib.sha256(blob).hexdigest():
        # the layer is the very text Rekor hashed (cosign compares them too): other bytes, even
        # with the same payload and signature, are not what was logged
        return Problem(Finding.TRANSPARENCY, "the Rekor entry logs another envelope than the "
                       "layer's (its envelopeHash)"), {}
    return problem, fields


def logged_envelope_hash(entry: rekor.LogEntry) -> str | None:
    """The SHA-256 (hex) of the envelope a ``dsse`` entry's body says was logged."""
    import base64
    import json

    try:
        spec = json.loads(base64.b64decode(entry.body))["spec"]["envelopeHash"]
        return str(spec["value"]) if spec.get("algorithm") == "sha256" else None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def statement_type(blob: bytes) -> str | None:
    """The predicate type a ``.att`` layer's Statement says it is (unverified: it only picks
    which layers are judged as attestations of a type; each picked one is then checked
    whole); None when it cannot be read."""
    try:
        return intoto.parse(dsse.parse(_json(blob)).payload).predicate_type
    except ValueError:
        return None


def _json(blob: bytes) -> Any:
    import json

    if len(blob) > MAX_ENVELOPE:
        raise ValueError(f"the envelope is over {MAX_ENVELOPE} bytes")
    try:
        return json.loads(blob)
    except (ValueError, RecursionError):
        raise ValueError("the layer is not a JSON DSSE envelope") from None


# -- what a verifier pins of a provenance -------------------------------------------------------

def provenance_check(repository: str | None, workflow: str | None) -> PredicateCheck | None:
    """A check of a SLSA provenance v1 predicate: it names the source ``repository``
    (``owner/name``: on github.com; another server's by its ``https://`` URL) and, given with
    it, the ``workflow`` file (``.github/workflows/x.yml``) in its build definition's external
    parameters (as GitHub's provenance writes them: ``workflow.repository``,
    ``workflow.path``); None if nothing is pinned. The pins' shapes are checked where they
    are read (signers.cosign.attest)."""
    if not repository and not workflow:
        return None

    def check(predicate: Any) -> Problem | None:
        try:
            named = predicate["buildDefinition"]["externalParameters"]["workflow"]
            found_repo, found_path = named.get("repository"), named.get("path")
        except (KeyError, TypeError, AttributeError):
            return Problem(Finding.POLICY, "the provenance names no workflow "
                           "(buildDefinition.externalParameters.workflow)")
        if repository and not (isinstance(found_repo, str) and
                               same_repository(found_repo, repository)):
            return Problem(Finding.POLICY, f"the provenance names the repository "
                           f"{str(found_repo)[:200]!r}, not {repository!r}")
        if workflow and found_path != workflow.removeprefix("./"):
            return Problem(Finding.POLICY, f"the provenance names the workflow "
                           f"{str(found_path)[:200]!r}, not {workflow!r}")
        return None
    return check


GITHUB = "https://github.com"  # where an ``owner/name`` pin is


def repository_url(pinned: str) -> str:
    """The repository URL a pin means: ``owner/name`` is github.com's, a URL itself."""
    pinned = pinned.removesuffix("/").removesuffix(".git")
    return pinned if "://" in pinned else f"{GITHUB}/{pinned}"


def same_repository(found: str, pinned: str) -> bool:
    """``found`` (a repository URL) is the one ``pinned`` means (repository_url), exactly but
    for a trailing ``.git`` or ``/``."""
    return found.removesuffix("/").removesuffix(".git") == repository_url(pinned)
