"""Verify mode and skip-signed for cosign signatures: the legacy ``.sig`` tag's layers, each
judged by signaction.formats.cosign (its claim, its signature by the key or a Fulcio
certificate, the certificate's chain, SCT and identity, Rekor's entry), and Sigstore bundles
(cosign 3) found as OCI referrers, each judged by signaction.formats.bundle."""

from __future__ import annotations

import logging
from typing import Any

from signaction.formats import bundle
from signaction.formats.cosign import CosignTrust, sig_tag, signature_problem
from signaction.formats.oci import EMPTY, OCI_MANIFEST
from signaction.plan import WorkItem
from signaction.registry import RegistryClient, RegistryError
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


def cosign_verifier(registry: RegistryClient, trusted: dict[str, CosignTrust],
                    formats: tuple[str, ...] = ("legacy",)) -> Check:
    """Verify mode's check of one (image, key) in each of ``formats``: "legacy" (the ``.sig``
    tag), "bundle" (Sigstore bundles referring to the image); with both, verified only when
    both are. results.json's ``signature_formats`` says what each format found."""
    def check(item: WorkItem) -> Verdict:
        trust = trusted[item.key.key]
        verdicts = {name: (legacy_verdict if name == "legacy" else bundle_verdict)(
            registry, item, trust) for name in formats}
        if len(verdicts) == 1:
            (name, verdict), = verdicts.items()
            return _with_format(verdict, {name: verdict.status})
        statuses = {name: v.status for name, v in verdicts.items()}
        worst = INVALID if INVALID in statuses.values() else (
            MISSING if MISSING in statuses.values() else VERIFIED)
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


def _first_verifying(candidates: list[tuple[str, Any]], judge, where: str,
                     what: str) -> Verdict:
    """VERIFIED by the first candidate ``judge`` accepts, else INVALID listing each one's
    problem (``candidates``: (name, thing) pairs)."""
    findings: list[tuple[str, Problem]] = []
    for name, candidate in candidates:
        problem, fields = judge(candidate)
        tried = tuple(f"{w}: {p}" for w, p in findings)
        if problem is None:
            return Verdict(VERIFIED, f"{name} of {where} verifies", tried, fields,
                           tuple(findings))
        findings.append((name, problem))
    tried = tuple(f"{w}: {p}" for w, p in findings)
    return Verdict(INVALID, f"{len(candidates)} {what} in {where}, none verifies: "
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


def bundle_verdict(registry: RegistryClient, item: WorkItem, trust: CosignTrust) -> Verdict:
    """The Sigstore bundles referring to the image (referrers API, or the fallback tag), each
    judged by formats.bundle."""
    image = item.container
    try:
        found, where = bundles_of(registry, image.source, image.known_digest)
    except RegistryError as e:
        return Verdict(INVALID, f"the bundles could not be read: {e}")
    where = f"{image.source.host}/{image.source.path} ({where})"
    if not found:
        return Verdict(MISSING, f"no signature bundle: no referrer of {image.known_digest} in "
                       f"{where} is one")
    return _first_verifying([(f"bundle {d}", raw) for d, raw in found],
                            lambda raw: bundle.bundle_problem(raw, image.known_digest, trust),
                            where, "bundle(s)")


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
