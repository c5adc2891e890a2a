"""``merge``: the output folders of the N shards of one plan (``--shard K/N``), made into the one
output folder an unsharded run would have left.

Everything is read and checked before anything is written: each folder's results.json and the
shard manifest in it (signaction.shard), every shard 1..N present once, all of one plan (its
fingerprint, signer, keys, task), every plan image claimed (by one shard, or by several with the
same results), every signature and attestations file where its entry says and inside its
folder (never through a link: signaction.shard_files). Then the signatures are copied into one
tree, each taking the first free ``signature-N`` (numbering stays contiguous, nothing is
overwritten), each attestations file to the same path (added to one already there), results.json
is written in plan order (``operation_results`` in request order, each path the merged folder's)
and ``verification/`` is the shards' (which must agree: each shard writes it for the whole plan).
Shard folders are downloaded artifacts: hostile input.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import stat
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import CREATOR
from .artifacts import Artifacts, Stream, StreamEnd, StreamError, read_stream
from .errors import InputError
from .results import Spill, Texts, failed_text, only_failures
from .shard_files import (
    Attestations,
    attestation_sources,
    check_attestation_entries,
    check_inside,
    copy,
    sources,
    walk,
)
from .shard_files import fail as _fail

log = logging.getLogger(__name__)

RESULTS_BYTES = 1 << 30  # a shard's results.json
_STATUSES = ("ok", "failed", "skipped")


@dataclass
class ShardOutput:
    folder: str  # as given
    root: str  # resolved
    index: int
    count: int
    results: dict[str, Any]  # but its big lists: Texts (JSON text on disk), operation's too
    rows: Sequence[str]  # results.json's images (JSON text): per image of its plan, per key
    items: list[int]  # per image of its plan: its position in the whole plan
    keys: int
    spool: Texts  # its operation_results (JSON text), in order
    details: int  # how many
    artifacts: Artifacts  # its folder, as the one that says where each signature should be
    folders: set[str] = field(default_factory=set)  # found real inside root (some: bounded)

    @property
    def name(self) -> str:
        return f"shard {self.index}/{self.count} ({self.folder})"

    def image_rows(self, local: int) -> list[dict[str, Any]]:
        return [json.loads(t) for t in self.rows[local * self.keys:(local + 1) * self.keys]]


# results.json's big lists, read element by element into Texts (never parsed whole)
_STREAMED = (("images",), ("operation_results",), ("operation", "digests"),
             ("operation", "references"))


class _Collected:
    """A sink of read_stream: each element's JSON text (json.dumps of it, as a whole parse
    would give) appended to ``texts``; ``check`` is run on each and its first complaint kept
    (raised where a whole parse would have found it: after the manifest's checks)."""

    def __init__(self, spill: Spill, check: Callable[[Any, int], None] | None = None):
        self.texts = Texts(spill)
        self.check = check
        self.problem: InputError | None = None

    def __call__(self, value: Any) -> Any:
        if value is StreamEnd:
            return self
        if self.check is not None and self.problem is None:
            try:
                self.check(value, len(self.texts) + 1)
            except InputError as e:
                self.problem = e
        self.texts.append(json.dumps(value))
        return None


def read_shard(folder: str, spill: Spill | None = None) -> ShardOutput:
    """A shard's output folder, its results.json and manifest checked (types and sizes). Its
    big lists (_STREAMED) are read one element at a time into a temporary file (``spill``,
    shared by the shards of a merge), never parsed whole."""
    root = os.path.realpath(folder)
    label = f"{folder}/results.json"
    path = check_inside(root, "results.json", RESULTS_BYTES, folder)
    spill = spill or Spill()
    rows_in = _Collected(spill, lambda row, n: _check_row(row, f"{label} images entry {n}"))
    sinks: dict[tuple[str, ...], _Collected] = {p: _Collected(spill) for p in _STREAMED[1:]}
    sinks[("images",)] = rows_in
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise _fail(label, f"cannot be read ({e.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _fail(label, "not a regular file (a link?)")
        results = read_stream(fd, RESULTS_BYTES, sinks)
    except StreamError as e:
        raise _fail(label, f"not JSON ({str(e)[:80]})") from None
    except OSError as e:
        raise _fail(label, f"cannot be read ({e.strerror})") from None
    finally:
        os.close(fd)
    if results.get("mode") == "verify":
        raise _fail(folder, "holds a verify-mode run's results; merge takes signing shards")
    manifest = results.get("shard")
    if not isinstance(manifest, dict):
        raise _fail(folder, "results.json has no shard manifest: was it signed with --shard K/N?")
    where = f"{folder}/results.json shard"
    count = _int(manifest, "count", where, 1, 10_000)
    index = _int(manifest, "index", where, 1, count)
    total = _int(manifest, "plan_images", where, 0, 10 ** 9)
    keys = _int(manifest, "keys", where, 1, 10 ** 6)
    if not isinstance(manifest.get("plan"), str):
        raise _fail(where, "plan is missing")
    root_then = manifest.get("root")  # the shard's folder when it ran: verification/ names it
    if not isinstance(root_then, str) or not os.path.isabs(root_then) or root_then == "/" \
            or os.path.normpath(root_then) != root_then or "\0" in root_then:
        raise _fail(where, "root must be the absolute path of the folder the shard wrote")
    items = manifest.get("items")
    if not isinstance(items, list) or not all(type(n) is int and 0 <= n < total for n in items):
        raise _fail(where, f"items must be plan positions 0 to {total - 1}")
    rows = results.get("images")
    if rows is not rows_in or len(rows.texts) != len(items) * keys:
        raise _fail(label, f"images must hold {len(items) * keys} entries "
                    f"({len(items)} image(s) x {keys} key(s))")
    if rows_in.problem is not None:
        raise rows_in.problem
    for key in ("operation_results", "signing_keys"):
        if not isinstance(results.get(key), (list, _Collected)):
            raise _fail(label, f"{key} is not a list")
    operation = results.get("operation")
    if not isinstance(operation, dict) or not all(
            isinstance(operation.get(k), _Collected) and len(operation[k].texts) == len(items)
            for k in ("digests", "references")):
        raise _fail(label, "operation must list a digest and a reference per image")
    if not isinstance(results.get("signer"), str) or not isinstance(
            results.get("signer_stats", {}), dict):
        raise _fail(label, "signer or signer_stats is missing")
    for k in ("digests", "references"):
        operation[k] = operation[k].texts
    details = results.pop("operation_results")
    texts = details.texts if isinstance(details, _Collected) else Texts(spill)  # ([]: none)
    results.pop("images")
    return ShardOutput(folder, root, index, count, results, rows_in.texts, items, keys, texts,
                       len(texts), Artifacts(root))


def _int(data: dict, key: str, where: str, low: int, high: int) -> int:
    value = data.get(key)
    if type(value) is not int or not low <= value <= high:
        raise _fail(where, f"{key} must be a whole number from {low} to {high}")
    return value


def _check_row(row: Any, where: str) -> None:
    if not isinstance(row, dict):
        raise _fail(where, "not a JSON object")
    for key in ("reference", "digest", "signing_key"):
        if not isinstance(row.get(key), str):
            raise _fail(where, f"{key} is missing")
    if row.get("status") not in _STATUSES:
        raise _fail(where, f"status must be one of {', '.join(_STATUSES)}")
    for key, value in row.items():
        if key.endswith("_path") and value is not None and not isinstance(value, str):
            raise _fail(where, f"{key} is not a path")
        if key == "attestations":
            check_attestation_entries(value, where)
        elif isinstance(value, (dict, list)):
            raise _fail(where, f"{key} is not a plain value")


def check_shards(shards: list[ShardOutput]) -> list[ShardOutput]:
    """One output per shard 1..N, all of one plan; raises InputError naming what is wrong."""
    first = shards[0]
    same = ("count", "plan", "plan_images", "keys")
    for s in shards[1:]:
        for key in same:
            if s.results["shard"][key] != first.results["shard"][key]:
                raise _fail(s.folder, f"a shard of another plan than {first.folder} (its "
                            f"shard {key} differs)")
        for key in ("signer", "signing_keys"):
            if s.results[key] != first.results[key]:
                raise _fail(s.folder, f"{key} differs from {first.folder}'s: shards of one "
                            "plan are signed alike")
        for key in ("signing_key_names", "task_id", "requester"):
            if s.results["operation"].get(key) != first.results["operation"].get(key):
                raise _fail(s.folder, f"operation {key} differs from {first.folder}'s")
    by_index: dict[int, ShardOutput] = {}
    for s in shards:
        other = by_index.setdefault(s.index, s)
        if other is not s and (other.items != s.items or len(other.rows) != len(s.rows) or any(
                a != b for a, b in zip(_outcomes(other), _outcomes(s), strict=True))):
            raise _fail(f"shard {s.index}/{s.count}", f"given twice ({other.folder}, "
                        f"{s.folder}) with different results")
        if other is not s:
            log.warning("merge: shard %d/%d is in %s and in %s with the same results: taken "
                        "once, from %s", s.index, s.count, other.folder, s.folder, other.folder)
    missing = [f"{n}/{first.count}" for n in range(1, first.count + 1) if n not in by_index]
    if missing:
        named = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10
                                           else "")
        raise _fail(f"shard {named}", f"missing: none of the {len(shards)} folder(s) given "
                    f"holds {'it' if len(missing) == 1 else 'them'}")
    return [by_index[n] for n in sorted(by_index)]


def _outcomes(shard: ShardOutput) -> Iterator[dict[str, Any]]:
    return (_outcome(json.loads(t)) for t in shard.rows)


def _outcome(row: dict[str, Any]) -> dict[str, Any]:
    """What a result says, without where its files are."""
    said = {k: v for k, v in row.items() if not k.endswith("_path")}
    if said.get("attestations"):
        said["attestations"] = [{k: v for k, v in a.items() if k != "path"}
                                for a in said["attestations"]]
    return said


@dataclass(slots=True)
class Placed:
    shard: ShardOutput
    local: int  # the image's place in its shard's plan
    position: int  # in the whole plan


class Order:
    """The images kept, in whole-plan order, as (shard, local, position) in three arrays (a
    Placed object each would take ~150 bytes); each iteration makes its Placed anew."""

    def __init__(self, shards: list[ShardOutput]):
        self.shards = shards
        self._shard, self._local, self._position = array("l"), array("q"), array("q")

    def append(self, shard: int, local: int, position: int) -> None:
        self._shard.append(shard)
        self._local.append(local)
        self._position.append(position)

    def __iter__(self) -> Iterator[Placed]:
        for n in range(len(self._shard)):
            yield Placed(self.shards[self._shard[n]], self._local[n], self._position[n])


def plan_order(shards: list[ShardOutput]) -> Order:
    """Every image of every shard in whole-plan order (a given image's platforms after it, as
    in one run); a plan image claimed by two shards must have the same results in both (the
    later shard's are dropped), and every plan image must be claimed."""
    # sorted by (position, shard, local), each as one int: ~40 bytes an image, not a tuple's 150
    shards = sorted(shards, key=lambda s: s.index)
    wide = max([len(s.items) for s in shards] + [1])
    count = len(shards)
    keys = sorted((p * count + k) * wide + n for k, s in enumerate(shards)
                  for n, p in enumerate(s.items))
    total = shards[0].results["shard"]["plan_images"]
    order, seen = Order(shards), set()
    claimed, gap, n = 0, None, 0  # plan positions 0..claimed-1 seen; the first unclaimed
    while n < len(keys):
        position = keys[n] // wide // count
        group = []  # (shard, local) of every claim of this position, shard by shard
        while n < len(keys) and keys[n] // wide // count == position:
            group.append((keys[n] // wide % count, keys[n] % wide))
            n += 1
        if gap is None and position != claimed:
            gap = claimed  # (the first plan position no shard claims)
        claimed = position + 1
        if len({k for k, _ in group}) > 1:  # (rare: a shard folder given twice was dropped)
            _same_claims(shards, position, group)
        for k, local in group:
            if k != group[0][0]:
                continue  # (the same results as the first shard's: checked above)
            row = json.loads(shards[k].rows[local * shards[k].keys])
            # one run signs an image once: a platform manifest found in two indexes (given to
            # two shards) was signed by both; the first is kept, as one run would. (Kept as
            # a 128-bit hash of the three: ~80 bytes an image, not a tuple of strings' 300.)
            image = hashlib.blake2b(json.dumps([row["reference"], row["digest"],
                                                row.get("location")]).encode(),
                                    digest_size=16).digest()
            if image not in seen:
                seen.add(image)
                order.append(k, local, position)
    if gap is None and claimed != total:
        gap = claimed
    if gap is not None:
        raise _fail(f"plan image {gap + 1}", "in no shard's results")
    return order


def _same_claims(shards: list[ShardOutput], position: int,
                 group: list[tuple[int, int]]) -> None:
    """The shards that claim plan image ``position`` must give it the same results."""
    outcomes: dict[int, list] = {}  # shard index -> its outcomes of that image
    for k, local in group:
        outcomes.setdefault(shards[k].index, []).extend(
            _outcome(r) for r in shards[k].image_rows(local))
    (a, ours), *others = sorted(outcomes.items())
    for b, theirs in others:
        if theirs != ours:
            raise _fail(f"plan image {position + 1}", f"claimed by shard {a}/"
                        f"{shards[0].count} and shard {b}/{shards[0].count} with "
                        "different results")


# What a signer writes after a merge (Signer.after_merge), by signer name.
FollowUps = Callable[[Artifacts, Iterable[dict[str, Any]], set[str]], list]


def merge(folders: Iterable[str], artifacts: Artifacts, signers: Mapping[str, FollowUps]
          ) -> tuple[dict[str, Any], Rows, list[str]]:
    """Merge the shard output ``folders`` into ``artifacts``; returns results.json (written),
    its images rows and what could not be written. InputError (nothing written) when the
    shards do not make one plan. ``signers``: the signers this program has."""
    spill = Spill()  # every shard's big lists, and the merged entries: one temporary file
    shards = check_shards([read_shard(f, spill) for f in _once(folders)])
    signer = shards[0].results["signer"]
    if signer not in signers:
        raise _fail(shards[0].folder, f"signed by {signer[:40]!r}, a signer this program does "
                    f"not have ({', '.join(signers)})")
    order = plan_order(shards)
    out = os.path.realpath(artifacts.root)
    for s in shards:
        if out == s.root or out.startswith(s.root + os.sep):
            raise _fail(str(artifacts.root), f"is {s.name}'s folder or inside it: merge into "
                        "a folder of its own")
    verification = _verification(shards, out)
    for x in order:  # every file checked before anything is written (and again when copied)
        for row in x.shard.image_rows(x.local):
            sources(x.shard, row)
            attestation_sources(x.shard, row)
    if os.path.lexists(os.path.join(out, "results.json")):
        raise _fail(str(artifacts.root), "holds results.json already: merge into a new folder")
    artifacts.create()
    rows, unwritten = _copy_rows(order, artifacts, spill)
    results = _results(shards, order, rows)
    writes: list[tuple[str, Callable[[], object]]] = [
        ("results.json", lambda: artifacts.write_results(results))]
    writes += [(f"verification/{name}", functools.partial(
        artifacts.write_file, ["verification", *name.split("/")], data, mode))
        for name, (data, mode) in sorted(verification.items())]
    top = {name for s in shards for name in os.listdir(s.root)}
    writes += signers[signer](artifacts, rows, top)
    for name, write in writes:
        try:
            write()
        except (OSError, ValueError) as e:
            unwritten.append(f"could not write {name}: {getattr(e, 'strerror', None) or e}")
    return results, rows, unwritten


def _copy_rows(order: Order, artifacts: Artifacts, spill: Spill) -> tuple[Rows, list[str]]:
    """Every entry's files copied into ``artifacts`` (checked again: they may have changed),
    the entry made to name the merged folder's; one that could not be written is failed, and
    said in the list returned."""
    rows, unwritten, attested = Rows(spill), [], Attestations(artifacts)
    for x in order:
        for row in x.shard.image_rows(x.local):
            try:
                row.update(copy(artifacts, row, sources(x.shard, row)))
            except (OSError, ValueError, InputError) as e:  # (changed since checked)
                unwritten.append(f"could not write the signature of {row['reference']}: "
                                 f"{getattr(e, 'strerror', None) or e}")
                row.update(status="failed", error="merge could not write its signature",
                           signature_path=None)
            try:
                attested.copy(x.shard, row, attestation_sources(x.shard, row))
            except (OSError, ValueError, InputError) as e:  # (changed, or a link in the way)
                unwritten.append(f"could not write the attestations of {row['reference']}: "
                                 f"{getattr(e, 'strerror', None) or e}")
                row.update(status="failed", attestations=[{**a, "path": None}
                                                          for a in row["attestations"]],
                           error=row["error"] if row["status"] == "failed" and row.get("error")
                           else "merge could not write its attestations")
            rows.append(row)
    return rows, unwritten


def _once(folders: Iterable[str]) -> list[str]:
    """The folders, each once: one given again (by another spelling, or a pattern matching it
    twice) is said and read once."""
    seen: dict[str, str] = {}
    for folder in folders:
        real = os.path.realpath(folder)
        if real in seen:
            log.warning("merge: %s is %s given again: read once", folder, seen[real])
            continue
        seen[real] = folder
    return list(seen.values())


def _verification(shards: list[ShardOutput], out: str) -> dict[str, tuple[bytes, int]]:
    """verification/ as the shards wrote it (for the whole plan, so alike but for where each
    shard's folder was), with the merged folder in place of theirs; they must agree."""
    merged: dict[str, tuple[bytes, int]] | None = None
    for s in shards:
        old = s.results["shard"]["root"]
        files = {name: (_moved(data, old, out), mode)
                 for name, (data, mode) in walk(s, "verification").items()}
        if merged is None:
            merged, first = files, s
        elif files != merged:
            name = next(n for n in sorted(set(files) | set(merged))
                        if files.get(n) != merged.get(n))
            raise _fail(f"verification/{name}", f"differs between {first.name} and {s.name}: "
                        "were they signed with the same config?")
    return merged or {}


def _moved(data: bytes, old: str, new: str) -> bytes:
    for a, b in ((Path(old).as_uri(), Path(new).as_uri()), (old, new)):
        data = data.replace(a.encode(), b.encode())
    return data


class Rows:
    """The merged results.json entries, kept as JSON text on disk; read anew each time."""

    def __init__(self, spill: Spill | None = None) -> None:
        self.texts = Texts(spill)
        self.counts = {status: 0 for status in _STATUSES}

    def append(self, row: dict[str, Any]) -> None:
        self.texts.append(json.dumps(row))
        self.counts[row["status"]] += 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (json.loads(t) for t in self.texts)

    def __len__(self) -> int:
        return len(self.texts)


def _results(shards: list[ShardOutput], order: Order, rows: Rows) -> dict[str, Any]:
    """results.json as one run writes it (signaction.results.results_json), from the shards'."""
    first = shards[0].results
    counts = rows.counts
    errors = [f"{s.index}/{s.count}: {s.results['signer_result'].get('error_message')}"
              for s in shards if isinstance(s.results.get("signer_result"), dict)
              and s.results["signer_result"].get("error_message")
              and not only_failures(str(s.results["signer_result"]["error_message"]))]
    error = ("shard " + "; shard ".join(errors)) if errors else \
        failed_text(counts["failed"], len(rows)) if counts["failed"] else ""
    operation = dict(first["operation"])  # (its digests and references: JSON texts)
    for key in ("digests", "references"):
        operation[key] = Stream(_listed(order, key))
    stats: dict[str, int] = {}
    for s in shards:
        for key, value in s.results.get("signer_stats", {}).items():
            if type(value) is int:
                stats[str(key)] = stats.get(str(key), 0) + value
    return {
        "signer_result": {"status": "error" if error else "ok", "error_message": error},
        "operation_results": Stream(_details(shards, order)),
        "operation": operation,
        "signing_keys": first["signing_keys"],
        "signer": first["signer"],
        "signer_stats": stats,
        "creator": CREATOR,
        "summary": {"signed": counts["ok"], "failed": counts["failed"],
                    "skipped": counts["skipped"], "total": len(rows)},
        "images": Stream(rows.texts),
    }


def _listed(order: Order, key: str) -> Iterator[str]:
    """operation's ``key`` (digests, references) in plan order, as JSON texts."""
    return (x.shard.results["operation"][key][x.local] for x in order)


def _details(shards: list[ShardOutput], order: Order) -> Iterator[str]:
    """operation_results in request order: one per (image, key) when each shard has one per
    entry (a single request each), else (batches) each shard's in shard order."""
    if all(s.details == len(s.rows) for s in shards):
        for x in order:
            yield from x.shard.spool[x.local * x.shard.keys:(x.local + 1) * x.shard.keys]
        return
    for s in shards:
        yield from s.spool
