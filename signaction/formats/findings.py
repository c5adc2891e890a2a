"""Why one signature is not accepted, as a type: decided where the check is made (the formats'
trust decisions), carried to results.json (``findings``), never read back out of words."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Finding(enum.Enum):
    """Why one signature is not accepted: decided where the check is made, carried as this
    type to results.json (``findings``), never read back out of a message's words."""

    UNREADABLE = "unreadable"  # not the format at all (not OpenPGP, not a claim, bad base64)
    OTHER_KEY = "other key"  # not made by the trusted key (or certificate's key)
    UNTRUSTED_CERTIFICATE = "untrusted certificate"  # chain, constraints, EKU, validity
    OTHER_IDENTITY = "other identity"  # signs another image name, or a certificate for another
    OTHER_ISSUER = "other issuer"  # a certificate from another OIDC issuer
    OTHER_DIGEST = "other digest"  # signs another manifest
    POLICY = "refused by policy"  # a weak hash, a critical unknown, expired, revoked, future
    TRANSPARENCY = "transparency"  # SET, SCT, inclusion proof or checkpoint missing or bad


@dataclass(frozen=True, slots=True)
class Problem:
    """One signature's finding and what exactly is wrong, in words for the user."""

    finding: Finding
    detail: str

    def __str__(self) -> str:
        return f"{self.finding.value}: {self.detail}"

    def json(self, where: str) -> dict[str, str]:
        return {"signature": where, "finding": self.finding.name.lower(),
                "detail": self.detail}
