"""What a signer hands back to the run: one Outcome per work item, and the SignatureFormat that
stores its signatures in the output folder and describes them to their verifiers.

The core (signaction) defines these and never imports a signer: a signer (signers/) implements
them, and the run (entrypoint.py) puts the two together. So Artifacts, the Recorder and the
entrypoint know no signer by name: what differs between signature kinds is in the format.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .formats.findings import Finding, Problem
from .plan import Image, WorkItem
from .reference import Reference

if TYPE_CHECKING:
    from .inputs import Inputs
    from .registry import RegistryClient

__all__ = ["Finding", "Problem"]  # (defined with the formats' checks; the core's vocabulary)

VERIFIED, MISSING, INVALID = "verified", "missing", "invalid"


def listed(tried: tuple[str, ...] | list[str], most: int = 3) -> str:
    """What the first ``most`` signatures found, for a verdict's one-line reason (a registry
    can hold a thousand: results.json's ``tried`` has them all)."""
    more = len(tried) - most
    return "; ".join(tried[:most]) + (f"; and {more} more (results.json: tried)"
                                      if more > 0 else "")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What verify mode found for one work item: ``verified`` (a published signature a
    consumer accepts), ``missing`` (none published) or ``invalid`` (signatures there, none
    good; or they could not be read); ``reason`` in words, ``tried`` what each signature found
    said (``signature-2: signed by another key ...``), ``fields`` JSON-able facts for
    results.json (which signature verified, its Rekor entry...)."""

    status: str
    reason: str
    tried: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)
    # what each signature tried was found to be (``tried`` in words): (where, Problem)
    findings: tuple[tuple[str, Problem], ...] = ()


# A format's check of one work item; called from several threads at once.
Check = Callable[[WorkItem], Verdict]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one work item: a signature, a failure, or a skip."""

    item: WorkItem
    # the signature, in the form the signer's format writes (raw OpenPGP bytes for a lookaside
    # signature or a signed file; the format's own object otherwise, e.g. cosign's pair)
    signature: Any = None
    error: str | None = None  # why it failed, in words for the user
    skipped: str | None = None  # why it needed no signature
    detail: Any = None  # for results.json's operation_results: a JSON-able value or JSON text
    # Where ``detail`` goes in operation_results: None = the item's position in the plan
    # (pubtools-sign's request order: per image, then per key); a signer whose requests cover
    # several items (msg batch) gives its request's index, and says how many in ``slots()``.
    slot: int | None = None


Report = Callable[[Outcome], None]


@dataclass
class Verification:
    """What verification/ holds for one kind of signature: the policy.json requirement for each
    repository signed, the registries.d lines (its ``docker:`` map), the README, and extra files
    (public keys) by name."""

    requirement: list[dict[str, Any]]
    registries_d: list[str]
    readme: str
    files: dict[str, bytes] = field(default_factory=dict)
    # The same facts for the cluster files (signaction.consumers): each registry host's
    # registries.d entry ({"lookaside": URL} or {"use-sigstore-attachments": True}), the
    # keyless (identity, issuer) pairs signed (emails and URIs), and whether the signatures
    # were logged in the public Rekor (no private Rekor key known to this run).
    registries: dict[str, dict[str, Any]] = field(default_factory=dict)
    identities: list[tuple[str, str]] = field(default_factory=list)
    public_rekor: bool = False
    # the sigstore forms written ("legacy", "bundle"): policy-controller's signatureFormat
    sigstore_formats: tuple[str, ...] = ("legacy",)
    # the in-toto predicate types (URIs) attested for every image signed, in the order asked
    predicate_types: tuple[str, ...] = ()


# A follow-up written after the run (e.g. a script that attaches signatures later): its name in
# messages, and the function that writes it.
FollowUp = tuple[str, Callable[[], object]]


class Store(Protocol):
    """What a format writes through (signaction.artifacts.Artifacts): the output folder."""

    root: Path

    def write_signature(self, tree: str, reference: Reference, digest: str, data: bytes, *,
                        suffix: str = "", companions: Mapping[str, bytes] | None = None
                        ) -> Path: ...

    def write_file(self, parts: Sequence[str], data: Any, mode: int = 0o644) -> Path: ...

    def tree_uri(self, tree: str, host: str) -> str: ...

    def write_attestation(self, tree: str, reference: Reference, digest: str, name: str,
                          lines: Sequence[bytes]) -> Path: ...

    def relative(self, path: str | os.PathLike) -> str: ...


class Recorded(Protocol):
    """What a format reads back of one recorded outcome (signaction.results.Entry)."""

    item: WorkItem
    fields: dict[str, Any]


class SignatureFormat(ABC):
    """How one kind of image signature is stored below the output folder, which verification
    files describe it, and what is written once the run has ended."""

    # The format's own paths below the output folder (path components, and whether each is a
    # folder): an earlier run's, or a planted link, is checked before anything is written.
    own_paths: tuple[tuple[tuple[str, ...], bool], ...] = ()

    @abstractmethod
    def write(self, artifacts: Store, image: Image, signature: Any) -> dict[str, Any]:
        """Store one signature of ``image``; return what its results.json entry says of it, by
        key: the files written (Path values, ``signature_path`` first) and JSON-able facts (e.g.
        a transparency log index)."""

    @abstractmethod
    def verification(self, artifacts: Store, hosts: list[str],
                     public_keys: bytes | None) -> Verification:
        """The policy requirement, registries.d lines, README and key files for these
        signatures, in registries ``hosts``, by the signing keys ``public_keys`` (None: not
        known to this run)."""

    def after_run(self, artifacts: Store, entries: Iterable[Recorded]) -> list[FollowUp]:
        """What to write once every outcome is in (``entries``: plan order)."""
        return []

    def verifier(self, registry: RegistryClient, inputs: Inputs,
                 trusted: dict[str, Any]) -> Check:
        """Verify mode: a check of each work item's published signatures, found where
        consumers find them (through ``registry``, the run's one client) and accepted as they
        accept them, by the key ``trusted[item.key.key]`` (what the signer's
        ``trusted_keys`` made of it: public material only). InputError when this format
        cannot be verified, or the inputs it needs are missing."""
        from .errors import InputError

        raise InputError("--mode verify: these signatures cannot be verified by this run")
