"""Verify mode and skip-signed for cosign signatures (the legacy ``.sig`` tag): the layers read
through the registry client, each judged by signaction.formats.cosign (its claim, its signature
by the key or a Fulcio certificate, the certificate's chain, SCT and identity, Rekor's entry)."""

from __future__ import annotations

import logging
from typing import Any

from signaction.formats.cosign import CosignTrust, sig_tag, signature_problem
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


def cosign_verifier(registry: RegistryClient, trusted: dict[str, CosignTrust]) -> Check:
    def check(item: WorkItem) -> Verdict:
        image = item.container
        where = f"{image.source.host}/{image.source.path}:{sig_tag(image.known_digest)}"
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
    """formats.cosign.signature_problem for ``item``'s image (its digest and name)."""
    image = item.container
    return signature_problem(sig, image.known_digest, str(image.reference), trust)
