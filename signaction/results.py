"""Collects each work item's outcome as it arrives, writes its signature, builds results.json.

results.json keeps pubtools-sign's keys (signer_result, operation_results, operation,
signing_keys) so its consumers keep working, and adds ``images``: one entry per (image, key).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import CREATOR
from .artifacts import Artifacts, Stream
from .inputs import Inputs
from .outside import redact, scrub
from .plan import BLOB, CLEARSIGN, FILE_SUFFIX, Plan, SignFile, WorkItem
from .signing import INVALID, MISSING, VERIFIED, Outcome, SignatureFormat, Verdict

log = logging.getLogger("signaction")

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass(slots=True)
class Entry:
    item: WorkItem
    status: str
    error: str | None = None
    # what its format wrote, by results.json key: the signature_path, the other files beside
    # it (cosign: payload_path), relative to the output folder, and facts about the signature
    # (e.g. its transparency log entry)
    fields: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None  # why it was skipped

    @property
    def signature_path(self) -> str | None:
        return self.fields.get("signature_path")

    def to_json(self) -> dict[str, Any]:
        image = self.item.image
        if isinstance(image, SignFile):
            return {"file": image.origin, "name": image.name, "kind": image.kind,
                    "signing_key": self.item.key.key, "status": self.status,
                    "error": self.error, "signature_path": self.signature_path}
        entry = {
            "reference": str(image.reference),
            "digest": image.digest,
            "signing_key": self.item.key.key,
            "status": self.status,
            "error": self.error,
            "signature_path": self.signature_path,
        }
        if image.location is not None:
            entry["location"] = str(image.location)  # where the image is; reference: as signed
        if image.platform:
            entry["platform"] = image.platform
        for key, value in self.fields.items():
            if key != "signature_path":
                entry[key] = value
        if self.reason:
            entry["reason"] = redact(self.reason)  # (a skip names where it found the signature)
        return entry


class Spool:
    """Texts (each one line of JSON) kept in a temporary file instead of memory, by key."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile("w+b")
        self._where: dict[Any, tuple[int, int]] = {}  # key -> (offset, length)

    def __contains__(self, key: Any) -> bool:
        return key in self._where

    def put(self, key: Any, text: str) -> None:
        data = text.replace("\n", " ").encode("utf-8")  # JSON text: one line
        self._where[key] = (self._file.seek(0, 2), len(data))
        self._file.write(data)

    def get(self, key: Any, default: str) -> str:
        where = self._where.get(key)
        if where is None:
            return default
        self._file.seek(where[0])
        return self._file.read(where[1]).decode("utf-8")


class Recorder:
    """Thread-safe sink for signer outcomes; ``report`` is the signer's callback."""

    def __init__(self, artifacts: Artifacts, plan: Plan, signature_format: SignatureFormat):
        self.artifacts = artifacts
        self.plan = plan
        self.format = signature_format  # how the signer's image signatures are written
        # each item's entry; None: claimed (its outcome is being written), not yet recorded
        self._entries: dict[WorkItem, Entry | None] = {}
        # plan order (image index * len(keys) + key index), made on first need
        self._position: tuple[dict[Any, int], dict[Any, int]] | None = None
        # Signer details (e.g. each msg reply) are spooled to a file as they come, each one line
        # of JSON text, with its place in operation_results: parsed replies would
        # otherwise all be held until results.json is written.
        self._details = Spool()  # slot -> its detail
        self._lock = threading.Lock()

    def report(self, outcome: Outcome) -> None:
        item = outcome.item
        with self._lock:
            if item in self._entries:  # a signer must report once; keep the first
                log.warning("ignored a second outcome for %s with key %s", label(item),
                            item.key.key)
                return
            self._entries[item] = None  # claimed before its signature is written
        entry = self._entry(outcome)  # writes the signature file, outside the lock
        with self._lock:
            self._entries[item] = entry
            if outcome.detail is not None:  # failed replies too: they keep their place
                self._spool(outcome)
        if not log.isEnabledFor(logging.INFO):
            return
        if entry.status == FAILED:
            log.info("FAILED %s key %s: %s", label(item), item.key.key, entry.error)
        else:
            log.info("%s %s key %s%s", "signed" if entry.status == OK else "skipped",
                     label(item), item.key.key,
                     f" -> {entry.signature_path}" if entry.signature_path else
                     f": {entry.reason}" if entry.reason else "")

    def _entry(self, outcome: Outcome) -> Entry:
        item = outcome.item
        if outcome.error is not None:  # it may quote a server, a registry, a URL
            return Entry(item, FAILED, error=scrub(outcome.error))
        if outcome.skipped is not None:
            return Entry(item, SKIPPED, reason=scrub(outcome.skipped))
        fields: dict[str, Any] = {}
        if outcome.signature is not None:
            try:
                written = self._write(item, outcome)
            except FileExistsError as e:
                return Entry(item, FAILED, error=f"could not write the signature: "
                             f"{self.artifacts.relative(e.filename)} exists already")
            except (OSError, ValueError) as e:
                why = e.strerror if isinstance(e, OSError) and e.strerror else e
                return Entry(item, FAILED, error=f"could not write the signature: {why}")
            fields = {key: self.artifacts.relative(value) if isinstance(value, Path) else value
                      for key, value in written.items()}
        return Entry(item, OK, fields=fields)

    def _write(self, item: WorkItem, outcome: Outcome) -> Mapping[str, Any]:
        target = item.image
        if isinstance(target, SignFile):  # NAME.asc, or NAME.<key id>.asc with several keys
            key = f".{item.key.key[-8:].upper()}" if len(self.plan.keys) > 1 else ""
            return {"signature_path": self.artifacts.write_file_signature(
                f"{target.name}{key}{FILE_SUFFIX[target.kind]}", outcome.signature)}
        return self.format.write(self.artifacts, target, outcome.signature)

    def entries(self, unfinished_reason: str) -> list[Entry]:
        """Every work item in plan order; those never reported are failed with the reason."""
        with self._lock:
            return [self._entries.get(item) or Entry(item, FAILED, error=unfinished_reason)
                    for item in self.plan.items()]

    def _spool(self, outcome: Outcome) -> None:
        slot = outcome.slot
        if slot is None:
            if self._position is None:  # by image and by key: no WorkItem kept per item
                self._position = ({t: n for n, t in enumerate(self.plan.images or
                                                              self.plan.files)},
                                  {k: n for n, k in enumerate(self.plan.keys)})
            images, keys = self._position
            slot = images[outcome.item.image] * len(keys) + keys[outcome.item.key]
        if slot in self._details:  # e.g. a batch reply reported with each of its items
            return
        self._details.put(slot, outcome.detail if isinstance(outcome.detail, str)
                          else json.dumps(outcome.detail))

    def details(self, slots: int) -> Iterator[str]:
        """operation_results' entries in request order: slot 0 .. slots-1, each the detail
        spooled for it as JSON text, or ``""`` (JSON) where none came (no reply)."""
        with self._lock:
            for slot in range(slots):
                yield self._details.get(slot, '""')


def label(item: WorkItem) -> str:
    """How a log line names what an item signs."""
    target = item.image
    if isinstance(target, SignFile):
        return target.origin
    return f"{target.reference}@{target.digest}"


def counts(entries: list[Entry]) -> dict[str, int]:
    c = {OK: 0, FAILED: 0, SKIPPED: 0}
    for e in entries:
        c[e.status] += 1
    return c


# signer_result's error_message when the only trouble is signatures that failed
_FAILED_TEXT = re.compile(r"[0-9]+ of [0-9]+ signature\(s\) failed")


def failed_text(failed: int, total: int) -> str:
    return f"{failed} of {total} signature(s) failed"


def only_failures(message: str) -> bool:
    """Whether signer_result's ``message`` says no more than failed_text does."""
    return bool(_FAILED_TEXT.fullmatch(message))


def results_json(inputs: Inputs, plan: Plan, entries: list[Entry], details: Iterable[str],
                 signer: str, stats: Mapping[str, int], error: str | None) -> dict[str, Any]:
    """results.json as a dict whose two big lists are streams of JSON texts (Artifacts.
    write_results writes them piece by piece): ``operation_results`` and ``images``."""
    c = counts(entries)
    if error is None and c[FAILED]:
        error = failed_text(c[FAILED], len(entries))
    keys = [k.given for k in plan.keys]  # as pubtools-sign: as given, before alias lookup
    return {
        "signer_result": {"status": "error" if error else "ok", "error_message": error or ""},
        "operation_results": Stream(details),
        "operation": operation(inputs, plan),
        "signing_keys": keys,
        "signer": signer,
        "signer_stats": dict(stats),
        "creator": CREATOR,
        "summary": {"signed": c[OK], "failed": c[FAILED], "skipped": c[SKIPPED],
                    "total": len(entries)},
        "files" if plan.files else "images": Stream(json.dumps(e.to_json()) for e in entries),
    }


def operation(inputs: Inputs, plan: Plan) -> dict[str, Any]:
    """What was asked, as pubtools-sign 1.0.6 reports its operation (same keys, same order)."""
    keys = [k.given for k in plan.keys]
    names = [k.name for k in plan.keys if k.name]
    task_id, requester = inputs.task_id or "", inputs.requester or ""
    if plan.kind == CLEARSIGN:
        return {"inputs": [f.data.decode("utf-8", "replace") for f in plan.files],
                "signing_keys": keys, "task_id": task_id, "repo": inputs.repo or "",
                "requester": requester}
    if plan.kind == BLOB:
        return {"blobs": [base64.b64encode(f.data).decode("ascii") for f in plan.files],
                "signing_key_names": names, "signing_keys": keys, "task_id": task_id,
                "requester": requester}
    return {"digests": [i.digest for i in plan.images],
            "references": [str(i.reference) for i in plan.images],
            "signing_key_names": names, "signing_keys": keys, "task_id": task_id,
            "requester": requester}


# -- verify mode ------------------------------------------------------------------------------

def verdict_json(item: WorkItem, verdict: Verdict) -> dict[str, Any]:
    """One results.json entry of verify mode: the image, the key, the verdict and why, and what
    was tried (each signature found, and what was wrong with it)."""
    image = item.container
    entry: dict[str, Any] = {"reference": str(image.reference), "digest": image.digest,
                             "signing_key": item.key.key, "status": verdict.status,
                             "reason": scrub(verdict.reason),
                             "tried": [scrub(t) for t in verdict.tried]}
    if verdict.findings:
        entry["findings"] = [{k: scrub(v) for k, v in p.json(where).items()}
                             for where, p in verdict.findings]
    if image.location is not None:
        entry["location"] = str(image.location)
    if image.platform:
        entry["platform"] = image.platform
    entry.update(verdict.fields)
    if "verified_signature" in entry:  # a lookaside URL: never with its credentials
        entry["verified_signature"] = redact(entry["verified_signature"])
    return entry


def verify_results_json(inputs: Inputs, plan: Plan, rows: list[dict[str, Any]],
                        signer: str) -> dict[str, Any]:
    """results.json of verify mode: pubtools-sign's signer_result and operation, a summary of
    the verdicts and one entry per (image, key)."""
    c = {VERIFIED: 0, MISSING: 0, INVALID: 0}
    for row in rows:
        c[row["status"]] += 1
    failed = c[MISSING] + c[INVALID]
    error = f"{failed} of {len(rows)} (image, key) pair(s) do not verify" if failed else ""
    return {
        "signer_result": {"status": "error" if failed else "ok", "error_message": error},
        "mode": "verify",
        "operation": operation(inputs, plan),
        "signing_keys": [k.given for k in plan.keys],
        "signer": signer,
        "creator": CREATOR,
        "summary": {**c, "failed": failed, "total": len(rows)},
        "images": Stream(json.dumps(row) for row in rows),
    }
