"""Collects each work item's outcome as it arrives, writes its signature, builds results.json.

results.json keeps pubtools-sign's keys (signer_result, operation_results, operation,
signing_keys) so its consumers keep working, and adds ``images``: one entry per (image, key).
"""

from __future__ import annotations

import base64
import json
import logging
import marshal
import os
import re
import tempfile
import threading
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

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


class Spill:
    """A temporary file that byte strings are appended to (through a buffer) and read back
    from with pread (no shared file position: a reader never disturbs a writer). Several
    Records may share one (merge: thousands of shards, one file). Not locked."""

    _FLUSH = 1 << 16

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile("w+b")
        self._written = 0  # bytes in the file
        self._buffer = bytearray()  # bytes after them, not yet in the file

    def add(self, data: bytes) -> int:
        """Append ``data``; its offset."""
        offset = self._written + len(self._buffer)
        self._buffer += data
        if len(self._buffer) >= self._FLUSH:
            self.flush()
        return offset

    def flush(self) -> None:
        if self._buffer:
            self._file.write(self._buffer)
            self._file.flush()
            self._written += len(self._buffer)
            self._buffer.clear()

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self._written:
            start = offset - self._written
            return bytes(self._buffer[start:start + length])
        return os.pread(self._file.fileno(), length, offset)


class Records:
    """Byte strings by number 0, 1, 2... kept in a temporary file (a Spill), not in memory: 16
    bytes of index each (an offset and a length in two arrays) instead of ~140 for a dict
    entry and its tuple. Not locked: callers that write from several threads lock."""

    def __init__(self, spill: Spill | None = None) -> None:
        self._spill = spill or Spill()
        self._offsets = array("q")  # -1: none
        self._lengths = array("I")  # 4 bytes: a record is far below 4 GiB

    def __len__(self) -> int:
        return len(self._offsets)

    def __contains__(self, n: int) -> bool:
        return 0 <= n < len(self._offsets) and self._offsets[n] >= 0

    def put(self, n: int, data: bytes) -> None:
        if n >= len(self._offsets):
            grow = n + 1 - len(self._offsets)
            self._offsets.extend(array("q", [-1]) * grow)
            self._lengths.extend(array("I", [0]) * grow)
        self._offsets[n] = self._spill.add(data)
        self._lengths[n] = len(data)

    def append(self, data: bytes) -> None:
        self.put(len(self._offsets), data)

    def flush(self) -> None:
        self._spill.flush()

    def get(self, n: int) -> bytes | None:
        if not 0 <= n < len(self._offsets) or self._offsets[n] < 0:
            return None
        return self._spill.read(self._offsets[n], self._lengths[n])


class Texts:
    """JSON texts, one per number, kept on disk (Records): what results.json streams."""

    def __init__(self, spill: Spill | None = None) -> None:
        self.records = Records(spill)

    def append(self, text: str) -> None:
        self.records.append(text.replace("\n", " ").encode("utf-8"))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, n: int | slice) -> Any:
        if isinstance(n, slice):
            return [self[i] for i in range(*n.indices(len(self)))]
        if n < 0:
            n += len(self)
        data = self.records.get(n)
        if data is None:
            raise IndexError(n)
        return data.decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return (self[n] for n in range(len(self)))


def _dumps(value: tuple) -> bytes:
    """An entry's facts as bytes: marshal (built in, exact for str, int, dict, list, tuple...),
    or pickle for what a format put there that marshal does not take."""
    try:
        return b"m" + marshal.dumps(value)
    except ValueError:
        import pickle  # (only then: not imported at start)

        return b"p" + pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def _loads(data: bytes) -> Any:
    if data[:1] == b"m":
        return marshal.loads(data[1:])
    import pickle  # our own bytes, from our own temporary file

    return pickle.loads(data[1:])


class Positions:
    """Where each of ``targets`` is in it, by hash: an open-addressing table of positions (4
    bytes a slot, at least two slots a target) instead of a dict and an int per target (~80
    bytes at 100,000 images). ``find(x)``: the positions of the targets equal to ``x``, in
    order."""

    def __init__(self, targets: Sequence[Any]) -> None:
        self._targets = targets
        size = 8
        while size < 2 * len(targets):
            size *= 2
        self._mask = size - 1
        table = self._table = array("i", [-1]) * size
        for n, target in enumerate(targets):
            slot = hash(target) & self._mask
            while table[slot] >= 0:
                slot = (slot + 1) & self._mask
            table[slot] = n

    def find(self, target: Any) -> list[int]:
        table, targets, found = self._table, self._targets, []
        slot = hash(target) & self._mask
        while (n := table[slot]) >= 0:
            if targets[n] is target or targets[n] == target:
                found.append(n)
            slot = (slot + 1) & self._mask
        return sorted(found)


# an entry's status as one byte, per plan position
_UNREPORTED, _CLAIMED = 0, 1
_CODES = {OK: 2, FAILED: 3, SKIPPED: 4}
_STATUS = {code: status for status, code in _CODES.items()}


class Recorder:
    """Thread-safe sink for signer outcomes; ``report`` is the signer's callback.

    What each work item became is kept per plan position: its status as one byte, and what
    else it has (an error, the paths its format wrote, a skip's reason) marshalled into a
    temporary file (Records), so that memory does not grow by an Entry, a dict and its paths
    per item (~500 bytes at 100,000 images). ``entries`` makes the Entry objects anew, one at
    a time, each time they are read."""

    def __init__(self, artifacts: Artifacts, plan: Plan, signature_format: SignatureFormat):
        self.artifacts = artifacts
        self.plan = plan
        self.format = signature_format  # how the signer's image signatures are written
        self._keys = len(plan.keys)
        self._state = bytearray(len(plan))  # per plan position: _UNREPORTED, _CLAIMED, a code
        self._facts = Records()  # per plan position: (error, fields, reason), marshalled
        # an image (or file) -> its indexes in the plan (more than one: equal objects, which
        # share one outcome), made on first need
        self._index: Positions | None = None
        self._key_index: dict[Any, int] = {}
        # Signer details (e.g. each msg reply) are spooled to a file as they come, each one line
        # of JSON text, with its place in operation_results: parsed replies would
        # otherwise all be held until results.json is written.
        self._details = Records()  # slot -> its detail (JSON text, UTF-8)
        self._lock = threading.Lock()

    def _positions(self, item: WorkItem) -> list[int]:
        """The plan positions of ``item`` (more than one: an image the plan holds twice);
        none for an item that is not in the plan."""
        if self._index is None:
            self._index = Positions(self.plan.images or self.plan.files)
            self._key_index = {k: n for n, k in enumerate(self.plan.keys)}
        key = self._key_index.get(item.key)
        return [] if key is None else [n * self._keys + key
                                       for n in self._index.find(item.image)]

    def report(self, outcome: Outcome) -> None:
        item = outcome.item
        with self._lock:
            positions = self._positions(item)
            if not positions:
                log.warning("ignored an outcome for %s with key %s: not in the plan",
                            label(item), item.key.key)
                return
            if self._state[positions[0]] != _UNREPORTED:  # a signer must report once
                log.warning("ignored a second outcome for %s with key %s", label(item),
                            item.key.key)
                return
            for n in positions:
                self._state[n] = _CLAIMED  # claimed before its signature is written
        entry = self._entry(outcome)  # writes the signature file, outside the lock
        facts = _dumps((entry.error, entry.fields, entry.reason))
        with self._lock:
            for n in positions:
                self._facts.put(n, facts)
                self._state[n] = _CODES[entry.status]
            if outcome.detail is not None:  # failed replies too: they keep their place
                self._spool(outcome, positions[-1])
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

    def entries(self, unfinished_reason: str) -> Entries:
        """Every work item in plan order; those never reported are failed with the reason.
        What has been recorded so far: an outcome reported later is not in them."""
        with self._lock:
            self._facts.flush()
            return Entries(self.plan, bytes(self._state), self._facts, unfinished_reason)

    def _spool(self, outcome: Outcome, position: int) -> None:
        # (slot None: the item's place in the plan, the last one of an image given twice)
        slot = position if outcome.slot is None else outcome.slot
        if slot in self._details:  # e.g. a batch reply reported with each of its items
            return
        text = outcome.detail if isinstance(outcome.detail, str) else json.dumps(outcome.detail)
        self._details.put(slot, text.replace("\n", " ").encode("utf-8"))  # JSON: one line

    def details(self, slots: int) -> Iterator[str]:
        """operation_results' entries in request order: slot 0 .. slots-1, each the detail
        spooled for it as JSON text, or ``""`` (JSON) where none came (no reply)."""
        with self._lock:
            self._details.flush()
        for slot in range(slots):
            with self._lock:
                data = self._details.get(slot)
            yield '""' if data is None else data.decode("utf-8")


class Entries(Sequence[Entry]):
    """The entries of a Recorder in plan order, each made anew from what was recorded when it
    is read (by index or in order): nothing here grows with the run but a byte per item."""

    def __init__(self, plan: Plan, state: bytes, facts: Records, unfinished_reason: str):
        self.plan = plan
        self._state = state
        self._facts = facts
        self._unfinished = unfinished_reason
        self._keys = len(plan.keys)

    def __len__(self) -> int:
        return len(self._state)

    def counts(self) -> dict[str, int]:
        c = {status: self._state.count(code) for status, code in _CODES.items()}
        c[FAILED] += self._state.count(_UNREPORTED) + self._state.count(_CLAIMED)
        return c

    def _make(self, n: int) -> Entry:
        targets = self.plan.images or self.plan.files
        item = WorkItem(targets[n // self._keys], self.plan.keys[n % self._keys])
        code = self._state[n]
        if code in (_UNREPORTED, _CLAIMED):
            return Entry(item, FAILED, error=self._unfinished)
        data = self._facts.get(n)
        error, fields, reason = _loads(data) if data is not None else (None, {}, None)
        return Entry(item, _STATUS[code], error=error, fields=fields, reason=reason)

    @overload
    def __getitem__(self, n: int) -> Entry: ...

    @overload
    def __getitem__(self, n: slice) -> list[Entry]: ...

    def __getitem__(self, n: int | slice) -> Entry | list[Entry]:
        if isinstance(n, slice):
            return [self._make(i) for i in range(*n.indices(len(self)))]
        if n < 0:
            n += len(self)
        if not 0 <= n < len(self):
            raise IndexError(n)
        return self._make(n)

    def __iter__(self) -> Iterator[Entry]:
        return (self._make(n) for n in range(len(self)))


def label(item: WorkItem) -> str:
    """How a log line names what an item signs."""
    target = item.image
    if isinstance(target, SignFile):
        return target.origin
    return f"{target.reference}@{target.digest}"


def counts(entries: Iterable[Entry]) -> dict[str, int]:
    if isinstance(entries, Entries):  # (from the status bytes: no entry made)
        return entries.counts()
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


def results_json(inputs: Inputs, plan: Plan, entries: Sequence[Entry], details: Iterable[str],
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
        "operation": operation(inputs, plan, streamed=True),
        "signing_keys": keys,
        "signer": signer,
        "signer_stats": dict(stats),
        "creator": CREATOR,
        "summary": {"signed": c[OK], "failed": c[FAILED], "skipped": c[SKIPPED],
                    "total": len(entries)},
        "files" if plan.files else "images": Stream(json.dumps(e.to_json()) for e in entries),
    }


def operation(inputs: Inputs, plan: Plan, streamed: bool = False) -> dict[str, Any]:
    """What was asked, as pubtools-sign 1.0.6 reports its operation (same keys, same order).
    ``streamed``: its lists of digests and references as Streams, made as they are written
    (100,000 references held as strings, then as one JSON text: ~25 MB at the peak)."""
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
    if streamed:
        digests: Any = Stream(json.dumps(i.digest) for i in plan.images)
        references: Any = Stream(json.dumps(str(i.reference)) for i in plan.images)
    else:
        digests = [i.digest for i in plan.images]
        references = [str(i.reference) for i in plan.images]
    return {"digests": digests, "references": references,
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

