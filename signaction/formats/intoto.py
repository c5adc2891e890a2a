"""in-toto Statements (v1): what a DSSE envelope of type ``application/vnd.in-toto+json``
says, about which artifacts (``subject``: names and digests) and of which kind
(``predicateType``). cosign 3 signs an image as a Statement of predicate type
``https://sigstore.dev/cosign/sign/v1`` whose one subject is the image. No I/O here."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .findings import Finding, Problem

STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"  # what older clients wrote; read too
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"  # cosign 3's image signature
MAX_SUBJECTS = 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


def statement(digest: str, predicate_type: str, predicate: Any, *, name: str = "",
              annotations: dict[str, str] | None = None) -> bytes:
    """The Statement about one artifact with ``digest`` (``sha256:<hex>``), its ``name`` and
    ``annotations`` when given; compact JSON, fields in the order cosign's clients write them."""
    algorithm, _, value = digest.partition(":")
    subject: dict[str, Any] = {"name": name} if name else {}
    subject["digest"] = {algorithm: value}
    if annotations is not None:
        subject["annotations"] = dict(sorted(annotations.items()))
    return json.dumps({"_type": STATEMENT_V1, "subject": [subject],
                       "predicateType": predicate_type, "predicate": predicate},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Statement:
    predicate_type: str
    subjects: tuple[tuple[str, str], ...]  # (name, "sha256:<hex>"), the sha256 ones only
    predicate: Any


def parse(payload: bytes) -> Statement:
    """A Statement's payload; ValueError naming what is wrong otherwise."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        raise ValueError("the payload is not JSON") from None
    if not isinstance(doc, dict) or doc.get("_type") not in (STATEMENT_V1, STATEMENT_V01):
        raise ValueError("the payload is not an in-toto Statement")
    if _case_twice(doc) or any(_case_twice(x) for x in doc.get("subject") or ()
                               if isinstance(doc.get("subject"), list)):
        raise ValueError("the Statement names a field twice (its case aside)")
    subjects, kind = doc.get("subject"), doc.get("predicateType")
    if not isinstance(kind, str) or not isinstance(subjects, list) or \
            not 0 < len(subjects) <= MAX_SUBJECTS:
        raise ValueError("the Statement has no predicateType or subject")
    found = []
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(digests, dict):
            raise ValueError("a subject of the Statement has no digest")
        value = digests.get("sha256")
        if isinstance(value, str) and _SHA256.fullmatch(value):
            found.append((str(subject.get("name", "")), f"sha256:{value}"))
    return Statement(kind, tuple(found), doc.get("predicate"))


def _case_twice(value: Any) -> bool:
    """An object naming a key twice when case is ignored (``predicateType`` and
    ``PredicateType``): Go's decoder (cosign's, in-toto-golang's) matches a struct field to a
    key without case, the last one winning, so such a Statement would say one thing to cosign
    and another here."""
    return isinstance(value, dict) and len({str(k).casefold() for k in value}) != len(value)


def subject_problem(found: Statement, digest: str, predicate_type: str) -> Problem | None:
    """The Statement is of ``predicate_type`` and names ``digest`` among its subjects (by
    digest: the name is the signer's words for it, as cosign and policy-controller read it)."""
    if found.predicate_type != predicate_type:
        return Problem(Finding.UNREADABLE,
                       f"the Statement's predicateType is {found.predicate_type[:100]!r}, not "
                       f"{predicate_type!r}")
    if digest not in {d for _, d in found.subjects}:
        named = ", ".join(d for _, d in found.subjects[:3]) or "no sha256 digest"
        return Problem(Finding.OTHER_DIGEST, f"it signs {named}, not {digest}")
    return None
