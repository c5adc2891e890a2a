"""``merge``: the output folders of the N shards of one plan (``--shard K/N``), made into the one
output folder an unsharded run would have left.

Everything is read and checked before anything is written: each folder's results.json and the
shard manifest in it (signaction.shard), every shard 1..N present once, all of one plan (its
fingerprint, signer, keys, task), every plan image claimed (by one shard, or by several with the
same results), every signature file where its entry says and inside its folder (never through a
link). Then the signatures are copied into one tree, each taking the first free ``signature-N``
(numbering stays contiguous, nothing is overwritten), results.json is written in plan order
(``operation_results`` in request order) and ``verification/`` is the shards' (which must agree:
each shard writes it for the whole plan). Shard folders are downloaded artifacts: hostile input.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import stat
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import CREATOR
from .artifacts import Artifacts, Stream, StreamEnd, StreamError, read_stream
from .errors import InputError
from .reference import parse_reference
from .results import Spill, Texts, failed_text, only_failures
from .safeload import read_regular_file, size_text

log = logging.getLogger(__name__)

RESULTS_BYTES = 1 << 30  # a shard's results.json
FILE_BYTES = 4 << 20  # one signature file, a verification file
VERIFICATION_FILES = 256
_CHECKED_FOLDERS = 4096  # folders found real that a shard remembers (entries come in order)
_SIGNATURE_NAME = re.compile(r"signature-[1-9][0-9]{0,8}((?:\.[a-z]{1,16})?)")
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


def _fail(where: str, what: str) -> InputError:
    return InputError(f"merge: {where}: {what}")


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
    path = _check_inside(root, "results.json", RESULTS_BYTES, folder)
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
        if isinstance(value, (dict, list)):
            raise _fail(where, f"{key} is not a plain value")


def _check_inside(shard_root: str, relative: str, limit: int, folder: str,
                  checked: set[str] | None = None) -> str:
    """The path of the regular file ``root/relative`` (at most ``limit`` bytes), reached
    through real folders only: no link at any level, no ``..``. ``checked``: folders already
    found real (each is looked at once)."""
    parts = relative.split("/")
    label = f"{folder}/{relative}"
    if any(p in ("", ".", "..") for p in parts) or "\0" in relative:
        raise _fail(label, "not a plain path inside the shard's folder")
    current = shard_root
    for part in parts[:-1]:
        current = os.path.join(current, part)
        if checked is not None and current in checked:
            continue
        try:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                raise _fail(label, f"{part} is not a folder (a link?)")
        except OSError:
            raise _fail(label, "not found") from None
        if checked is not None:
            if len(checked) >= _CHECKED_FOLDERS:  # (one per image, a repository each: not kept)
                checked.clear()
            checked.add(current)
    path = os.path.join(shard_root, relative)
    try:
        info = os.lstat(path)
    except OSError:
        raise _fail(label, "not found") from None
    if not stat.S_ISREG(info.st_mode):
        raise _fail(label, "not a regular file (a link?)")
    if info.st_nlink > 1:
        raise _fail(label, f"a hard link (the file has {info.st_nlink} names, one of them "
                    "perhaps outside the folder): copy the shard folders instead of linking")
    if info.st_size > limit:
        raise _fail(label, f"larger than {size_text(limit)}")
    return path


def _read(path: str, limit: int, label: str) -> bytes:
    """A file _check_inside accepted, read without following a link (it may have changed)."""
    return read_regular_file(path, f"merge: {label}", limit, follow_links=False)


def _read_inside(root: str, relative: str, limit: int, folder: str) -> bytes:
    return _read(_check_inside(root, relative, limit, folder), limit, f"{folder}/{relative}")


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
    return {k: v for k, v in row.items() if not k.endswith("_path")}


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
            _sources(x.shard, row)
    if os.path.lexists(os.path.join(out, "results.json")):
        raise _fail(str(artifacts.root), "holds results.json already: merge into a new folder")
    artifacts.create()
    rows, unwritten = Rows(spill), []
    for x in order:
        for row in x.shard.image_rows(x.local):
            try:
                row.update(_copy(artifacts, row, _sources(x.shard, row)))
            except (OSError, ValueError, InputError) as e:  # (changed since checked)
                unwritten.append(f"could not write the signature of {row['reference']}: "
                                 f"{getattr(e, 'strerror', None) or e}")
                row.update(status="failed", error="merge could not write its signature",
                           signature_path=None)
            rows.append(row)
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


def _sources(shard: ShardOutput, row: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The files of one entry (results.json key -> (suffix, path)), checked: the signature
    where its reference and digest say, each other file beside it, with the same number."""
    path = row.get("signature_path")
    if not path:
        return {}
    where = f"{shard.folder}/results.json entry {row['reference']}@{row['digest']}"
    try:
        reference = parse_reference(row["reference"])[0]
        expected = shard.artifacts.signature_folder(path.split("/")[0], reference, row["digest"])
    except (InputError, ValueError) as e:
        raise _fail(where, f"cannot be placed: {e}") from None
    folder, _, name = path.rpartition("/")
    m = _SIGNATURE_NAME.fullmatch(name)
    if f"{shard.root}/{folder}" != str(expected) or not m:
        raise _fail(where, f"signature_path {path!r} is not where its reference and digest "
                    "put it")
    stem = path[:-len(m.group(1))] if m.group(1) else path
    files = {"signature_path": (m.group(1), _check_inside(shard.root, path, FILE_BYTES,
                                                          shard.folder, shard.folders))}
    for key, other in row.items():
        if key.endswith("_path") and key != "signature_path" and other:
            suffix = other[len(stem):] if other.startswith(stem + ".") else ""
            if not re.fullmatch(r"\.[a-z]{1,16}", suffix) or suffix == m.group(1):
                raise _fail(where, f"{key} {other!r} is not beside its signature")
            files[key] = (suffix, _check_inside(shard.root, other, FILE_BYTES, shard.folder,
                                                shard.folders))
    return files


def _copy(artifacts: Artifacts, row: dict[str, Any], files: dict[str, tuple[str, str]]
          ) -> dict[str, Any]:
    """Write one entry's files with the first free number; their new paths by key."""
    if not files:
        return {}
    data = {key: _read(path, FILE_BYTES, path) for key, (_, path) in files.items()}
    suffix = files["signature_path"][0]
    companions = {s: data[key] for key, (s, _) in files.items() if key != "signature_path"}
    tree = row["signature_path"].split("/")[0]
    path = artifacts.write_signature(tree, parse_reference(row["reference"])[0], row["digest"],
                                     data["signature_path"], suffix=suffix,
                                     companions=companions)
    stem = artifacts.relative(path)[:-len(suffix)] if suffix else artifacts.relative(path)
    return {key: stem + s for key, (s, _) in files.items()}


def _verification(shards: list[ShardOutput], out: str) -> dict[str, tuple[bytes, int]]:
    """verification/ as the shards wrote it (for the whole plan, so alike but for where each
    shard's folder was), with the merged folder in place of theirs; they must agree."""
    merged: dict[str, tuple[bytes, int]] | None = None
    for s in shards:
        old = s.results["shard"]["root"]
        files = {name: (_moved(data, old, out), mode)
                 for name, (data, mode) in _walk(s, "verification").items()}
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


def _walk(shard: ShardOutput, top: str) -> dict[str, tuple[bytes, int]]:
    """Every regular file below ``shard.root/top`` (path -> (bytes, mode)); links, devices
    and FIFOs refused."""
    found: dict[str, tuple[bytes, int]] = {}
    for relative in _files_below(shard, top, top):
        data = _read_inside(shard.root, relative, FILE_BYTES, shard.folder)
        mode = os.lstat(os.path.join(shard.root, relative)).st_mode
        found[relative[len(top) + 1:]] = (data, 0o755 if mode & 0o100 else 0o644)
        if len(found) > VERIFICATION_FILES:
            raise _fail(f"{shard.folder}/{top}", f"more than {VERIFICATION_FILES} files")
    return found


def _files_below(shard: ShardOutput, relative: str, top: str) -> Iterator[str]:
    path = os.path.join(shard.root, relative)
    if not os.path.lexists(path):
        return
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise _fail(f"{shard.folder}/{relative}", "not a folder (a link?)")
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.name.startswith(".tmp-"):
            continue  # a temporary file left by a killed writer
        child = f"{relative}/{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield from _files_below(shard, child, top)
        elif entry.is_file(follow_symlinks=False):
            yield child
        else:
            raise _fail(f"{shard.folder}/{child}", "not a regular file (a link?)")


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
