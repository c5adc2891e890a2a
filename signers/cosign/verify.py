"""Verify mode and skip-signed for cosign signatures: the legacy ``.sig`` tag's layers, each
judged by signaction.formats.cosign (its claim, its signature by the key or a Fulcio
certificate, the certificate's chain, SCT and identity, Rekor's entry), and Sigstore bundles
(cosign 3) found as OCI referrers, each judged by signaction.formats.bundle."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from signaction.attestations import SLSA_PROVENANCE_V1
from signaction.formats import attestation, bundle, intoto
from signaction.formats.cosign import (
    DSSE_LAYER,
    PREDICATE_TYPE_ANNOTATION,
    CosignTrust,
    att_tag,
    manifest_layers,
    sig_tag,
    signature_problem,
)
from signaction.formats.findings import Finding
from signaction.formats.oci import EMPTY, OCI_MANIFEST
from signaction.plan import WorkItem
from signaction.registry import RegistryClient, RegistryError
from signaction.safeload import parse_json
from signaction.signing import (
    INVALID,
    MISSING,
    VERIFIED,
    Check,
    Problem,
    Verdict,
    listed,
)

log = logging.getLogger("signers.cosign")
MAX_ATTESTATION_LAYERS = 1000  # layers of an .att tag considered at most (cosign's own cap)
MAX_ATTESTATION_BYTES = 256 << 20  # bytes of attestations read for one image and type


def cosign_verifier(registry: RegistryClient, trusted: dict[str, CosignTrust],
                    formats: tuple[str, ...] = ("legacy",),
                    attestations: tuple[tuple[str, str], ...] = (),
                    predicate_check: attestation.PredicateCheck | None = None) -> Check:
    """Verify mode's check of one (image, key) in each of ``formats``: "legacy" (the ``.sig``
    tag), "bundle" (Sigstore bundles referring to the image); with both, verified only when
    both are. results.json's ``signature_formats`` says what each format found. Each of
    ``attestations`` ((predicate type URI, the name given)) is required too, in each format,
    signed by the same key or identity (``predicate_check``: what the provenance must name);
    results.json's ``attestations`` says what each type found."""
    signatures = _signature_check(registry, trusted, formats)
    if not attestations:
        return signatures

    def check(item: WorkItem) -> Verdict:
        trust = trusted[item.key.key]
        found: list[tuple[str, str, Verdict]] = []  # (name given, format, verdict)
        for uri, given in attestations:
            pinned = predicate_check if uri == SLSA_PROVENANCE_V1 else None  # what it pins
            for name in formats:
                judge = legacy_attestations if name == "legacy" else bundle_verdict
                found.append((given, name, judge(registry, item, trust, uri, pinned)))
        return _combined(signatures(item), found)
    return check


def _worst(statuses: list[str]) -> str:
    return INVALID if INVALID in statuses else (MISSING if MISSING in statuses else VERIFIED)


def _combined(signed: Verdict, found: list[tuple[str, str, Verdict]]) -> Verdict:
    """The signature's verdict and each attestation's as one: verified when all are;
    ``attestations`` in the fields: each type's status (the worst of its formats)."""
    labelled = [(f"{given} attestation ({name})", v) for given, name, v in found]
    by_type: dict[str, list[str]] = {}
    for given, _, verdict in found:
        by_type.setdefault(given, []).append(verdict.status)
    return Verdict(_worst([signed.status, *(v.status for _, _, v in found)]),
                   "; ".join([signed.reason, *(f"{label}: {v.reason}" for label, v in labelled)]),
                   signed.tried + tuple(f"{label} {t}" for label, v in labelled for t in v.tried),
                   {**signed.fields,
                    "attestations": {given: _worst(s) for given, s in by_type.items()}},
                   signed.findings + tuple((f"{label} {w}", p) for label, v in labelled
                                           for w, p in v.findings))


def _signature_check(registry: RegistryClient, trusted: dict[str, CosignTrust],
                     formats: tuple[str, ...]) -> Check:
    def check(item: WorkItem) -> Verdict:
        trust = trusted[item.key.key]
        verdicts = {name: (legacy_verdict if name == "legacy" else bundle_verdict)(
            registry, item, trust) for name in formats}
        if len(verdicts) == 1:
            (name, verdict), = verdicts.items()
            return _with_format(verdict, {name: verdict.status})
        statuses = {name: v.status for name, v in verdicts.items()}
        worst = _worst(list(statuses.values()))
        fields: dict[str, Any] = {}
        for name, v in verdicts.items():
            fields.update({f"{name}_{k}" if k in fields else k: val
                           for k, val in v.fields.items()})
        return Verdict(worst, "; ".join(f"{name}: {v.reason}" for name, v in verdicts.items()),
                       tuple(f"{name} {t}" for name, v in verdicts.items() for t in v.tried),
                       {**fields, "signature_formats": statuses},
                       tuple((f"{name} {w}", p) for name, v in verdicts.items()
                             for w, p in v.findings))
    return check


def _with_format(verdict: Verdict, statuses: dict[str, str]) -> Verdict:
    return Verdict(verdict.status, verdict.reason, verdict.tried,
                   {**verdict.fields, "signature_formats": statuses}, verdict.findings)


def _first_verifying(candidates: Iterable[tuple[str, Any]], judge, where: str,
                     what: str, missing: str = "") -> Verdict:
    """VERIFIED by the first candidate ``judge`` accepts, else INVALID listing each one's
    problem (``candidates``: (name, thing) pairs, taken one at a time); MISSING saying
    ``missing`` when there was none."""
    findings: list[tuple[str, Problem]] = []
    for name, candidate in candidates:
        problem, fields = judge(candidate)
        tried = tuple(f"{w}: {p}" for w, p in findings)
        if problem is None:
            return Verdict(VERIFIED, f"{name} of {where} verifies", tried, fields,
                           tuple(findings))
        findings.append((name, problem))
    if not findings and missing:
        return Verdict(MISSING, missing)
    tried = tuple(f"{w}: {p}" for w, p in findings)
    return Verdict(INVALID, f"{len(findings)} {what} in {where}, none verifies: "
                   + listed(tried), tried, findings=tuple(findings))


def legacy_verdict(registry: RegistryClient, item: WorkItem, trust: CosignTrust) -> Verdict:
    """The ``.sig`` tag's layers, each judged by formats.cosign."""
    image = item.container
    where = f"{image.source.host}/{image.source.path}:{sig_tag(image.known_digest)}"
    try:
        found = registry.cosign_signatures(image.source, image.known_digest)
    except RegistryError as e:
        return Verdict(INVALID, f"the signatures could not be read: {e}")
    if not found:
        return Verdict(MISSING, f"no signature: {where} does not exist or holds none")
    return _first_verifying([(f"signature {n}", sig) for n, sig in enumerate(found, 1)],
                            lambda sig: cosign_problem(sig, item, trust), where,
                            "signature(s)")


def bundle_verdict(registry: RegistryClient, item: WorkItem, trust: CosignTrust,
                   predicate_type: str = intoto.COSIGN_SIGN,
                   predicate_check: attestation.PredicateCheck | None = None) -> Verdict:
    """The Sigstore bundles referring to the image (referrers API, or the fallback tag) whose
    Statement is of ``predicate_type`` (the signature's; or an attestation's), each judged by
    formats.bundle. A bundle whose Statement cannot be read is judged as a signature."""
    image = item.container
    try:
        found, where = bundles_of(registry, image.source, image.known_digest)
    except RegistryError as e:
        return Verdict(INVALID, f"the bundles could not be read: {e}")
    where = f"{image.source.host}/{image.source.path} ({where})"
    signature = predicate_type == intoto.COSIGN_SIGN
    found = [(d, raw) for d, raw in found
             if _statement_type(raw) in ((predicate_type, None) if signature else
                                         (predicate_type,))]
    what = "signature bundle" if signature else f"attestation bundle of type {predicate_type}"
    if not found:
        return Verdict(MISSING, f"no {what}: no referrer of {image.known_digest} in {where} "
                       "is one")
    return _first_verifying([(f"bundle {d}", raw) for d, raw in found],
                            lambda raw: bundle.bundle_problem(raw, image.known_digest, trust,
                                                              predicate_type, predicate_check),
                            where, f"{what}(s)")


def legacy_attestations(registry: RegistryClient, item: WorkItem, trust: CosignTrust,
                        predicate_type: str,
                        predicate_check: attestation.PredicateCheck | None) -> Verdict:
    """The ``.att`` tag's DSSE layers whose Statement says it is of ``predicate_type`` (its
    payload, as cosign picks them: not the layer's annotation, which need not agree), each
    judged whole by formats.attestation. Layers are read one at a time, newest first and
    those annotated with the type before the others, until one verifies: one blob in memory
    at a time, a layer that cannot be read is that layer's problem, not the tag's, and at most
    MAX_ATTESTATION_BYTES are read for one image and type."""
    image = item.container
    tag = att_tag(image.known_digest)
    where = f"{image.source.host}/{image.source.path}:{tag}"
    try:
        found = registry.read_tag(image.source, tag)
        layers = [] if found is None else [
            layer for layer in manifest_layers(parse_json(found[0]))
            if layer.get("mediaType") == DSSE_LAYER]
    except (RegistryError, ValueError) as e:
        return Verdict(INVALID, f"the attestations in {where} could not be read: {e}")
    newest = list(dict.fromkeys(str(layer.get("digest")) for layer in reversed(layers)))
    by_digest = {str(layer.get("digest")): layer for layer in layers}
    ordered = sorted(newest, key=lambda d: _annotations(by_digest[d]).get(
        PREDICATE_TYPE_ANNOTATION) != predicate_type)[:MAX_ATTESTATION_LAYERS]
    unread = object()

    def candidates():
        budget = MAX_ATTESTATION_BYTES
        for n, digest in enumerate(ordered, 1):
            layer = by_digest[digest]
            if budget <= 0:
                yield f"layer {n} on", (unread, f"more than {MAX_ATTESTATION_BYTES >> 20} MiB "
                                                "of attestations read without one verifying")
                return
            try:
                blob = registry.blob(image.source, layer, f"reading attestation layer {n}",
                                     min(attestation.MAX_ENVELOPE, budget))
            except RegistryError as e:
                yield f"layer {n}", (unread, str(e))
                continue
            budget -= len(blob)
            if attestation.statement_type(blob) == predicate_type:
                yield f"layer {n}", (layer, blob)

    def judge(found):
        if found[0] is unread:
            return Problem(Finding.UNREADABLE, found[1]), {}
        return attestation.layer_problem(found[1], _annotations(found[0]), image.known_digest,
                                         predicate_type, trust, predicate_check)

    return _first_verifying(candidates(), judge, where, "attestation layer(s)",
                            missing=f"no attestation of type {predicate_type}: {where} " + (
                                "does not exist" if found is None else "holds none"))


def _annotations(layer: dict) -> dict:
    found = layer.get("annotations")
    return found if isinstance(found, dict) else {}


def _statement_type(raw: bytes) -> str | None:
    """The predicate type a bundle's Statement says it is (unverified: it only picks which
    bundles are judged as attestations of a type; each picked one is then checked whole)."""
    try:
        return intoto.parse(bundle.parse(raw).envelope.payload).predicate_type
    except ValueError:
        return None


def bundles_of(registry: RegistryClient, location: Any, digest: str
               ) -> tuple[list[tuple[str, bytes]], str]:
    """(referrer digest, bundle JSON) of each referrer of ``digest`` that holds a Sigstore
    bundle, and where the referrers were listed. A listed artifact type other than the
    bundle's is passed over unread; the empty type (cosign's own fallback index writes it)
    and none are read and judged by their manifest, as cosign reads them."""
    listed_refs, where = registry.referrers(location, digest)
    found = []
    for entry in listed_refs:
        kind = entry.get("artifactType")
        if kind not in (bundle.BUNDLE_V03, EMPTY, None, "") or \
                entry.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST:
            continue
        try:  # one unreadable referrer (a stale fallback entry) does not hide the others
            manifest = registry.manifest(location, str(entry.get("digest")))
            layer = bundle.bundle_layer(manifest.raw)
            if layer is None:
                continue
            found.append((manifest.digest, registry.blob(
                location, layer, f"reading bundle {manifest.digest}", bundle.MAX_BUNDLE)))
        except RegistryError as e:
            log.warning("%s: a referrer of %s could not be read: %s", location, digest, e)
    return found, where


def cosign_problem(sig: dict, item: WorkItem, trust: CosignTrust
                   ) -> tuple[Problem | None, dict[str, Any]]:
    """formats.cosign.signature_problem for ``item``'s image (its digest and name)."""
    image = item.container
    return signature_problem(sig, image.known_digest, str(image.reference), trust)
