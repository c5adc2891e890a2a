"""The files of a shard's output folder, for ``merge`` (signaction.merge): downloaded artifacts,
so hostile input. Each file a results.json entry names must be where the entry's reference and
digest put it, inside the shard's folder, reached through real folders only (no link at any
level, no hard link, no ``..``), a regular file of bounded size; else the merge is refused in one
line naming the shard and the entry, before anything is written. Then each is copied into the
merged folder as the signing run wrote it: a signature with the first free ``signature-N`` (and
its companions with the same N), an attestations file (``attestations/<registry>/<repo>@sha256=
<hex>/<name>.intoto.jsonl``, JSON Lines) added to one already there, each once.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from typing import Any, Protocol

from .artifacts import ATTESTATIONS, INTOTO_SUFFIX, MAX_ATTESTATIONS_FILE, Artifacts
from .errors import InputError
from .reference import parse_reference
from .safeload import read_regular_file, size_text

FILE_BYTES = 4 << 20  # one signature file, a verification file
ATTESTATION_BYTES = MAX_ATTESTATIONS_FILE  # one attestations file (what a run adds to, at most)
VERIFICATION_FILES = 256
MAX_ATTESTATIONS = 256  # attestations of one entry (one a predicate type)
_CHECKED_FOLDERS = 4096  # folders found real that a shard remembers (entries come in order)
# signature-N and its suffix: ".sig", ".payload", ".sigstore.json" (a bundle's), or none (gpg)
_SUFFIX = r"(?:\.[a-z]{1,16}){1,2}"
_SIGNATURE_NAME = re.compile(rf"signature-[1-9][0-9]{{0,8}}((?:{_SUFFIX})?)")
_ATTESTATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}" + re.escape(INTOTO_SUFFIX))


class Shard(Protocol):
    """What this module needs of a shard (merge.ShardOutput)."""

    folder: str  # as given
    root: str  # resolved
    artifacts: Artifacts  # its folder, as the one that says where each file should be
    folders: set[str]  # found real inside root (some: bounded)


def fail(where: str, what: str) -> InputError:
    return InputError(f"merge: {where}: {what}")


def entry_where(shard: Shard, row: dict[str, Any]) -> str:
    return f"{shard.folder}/results.json entry {row['reference']}@{row['digest']}"


def check_inside(shard_root: str, relative: str, limit: int, folder: str,
                 checked: set[str] | None = None) -> str:
    """The path of the regular file ``root/relative`` (at most ``limit`` bytes), reached
    through real folders only: no link at any level, no ``..``. ``checked``: folders already
    found real (each is looked at once)."""
    parts = relative.split("/")
    label = f"{folder}/{relative}"
    if any(p in ("", ".", "..") for p in parts) or "\0" in relative:
        raise fail(label, "not a plain path inside the shard's folder")
    current = shard_root
    for part in parts[:-1]:
        current = os.path.join(current, part)
        if checked is not None and current in checked:
            continue
        try:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                raise fail(label, f"{part} is not a folder (a link?)")
        except OSError:
            raise fail(label, "not found") from None
        if checked is not None:
            if len(checked) >= _CHECKED_FOLDERS:  # (one per image, a repository each: not kept)
                checked.clear()
            checked.add(current)
    path = os.path.join(shard_root, relative)
    try:
        info = os.lstat(path)
    except OSError:
        raise fail(label, "not found") from None
    if not stat.S_ISREG(info.st_mode):
        raise fail(label, "not a regular file (a link?)")
    if info.st_nlink > 1:
        raise fail(label, f"a hard link (the file has {info.st_nlink} names, one of them "
                   "perhaps outside the folder): copy the shard folders instead of linking")
    if info.st_size > limit:
        raise fail(label, f"larger than {size_text(limit)}")
    return path


def read_checked(path: str, limit: int, label: str) -> bytes:
    """A file check_inside accepted, read without following a link (it may have changed)."""
    return read_regular_file(path, f"merge: {label}", limit, follow_links=False)


def read_inside(root: str, relative: str, limit: int, folder: str) -> bytes:
    return read_checked(check_inside(root, relative, limit, folder), limit, f"{folder}/{relative}")


# -- signatures ----------------------------------------------------------------------------

def sources(shard: Shard, row: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The signature files of one entry (results.json key -> (suffix, path)), checked: the
    signature where its reference and digest say, each other file beside it, with the same
    number."""
    path = row.get("signature_path")
    if not path:
        return {}
    where = entry_where(shard, row)
    try:
        reference = parse_reference(row["reference"])[0]
        expected = shard.artifacts.signature_folder(path.split("/")[0], reference, row["digest"])
    except (InputError, ValueError) as e:
        raise fail(where, f"cannot be placed: {e}") from None
    folder, _, name = path.rpartition("/")
    m = _SIGNATURE_NAME.fullmatch(name)
    if f"{shard.root}/{folder}" != str(expected) or not m:
        raise fail(where, f"signature_path {path!r} is not where its reference and digest "
                   "put it")
    stem = path[:-len(m.group(1))] if m.group(1) else path
    files = {"signature_path": (m.group(1), check_inside(shard.root, path, FILE_BYTES,
                                                         shard.folder, shard.folders))}
    for key, other in row.items():
        if key.endswith("_path") and key != "signature_path" and other == path:
            files[key] = files["signature_path"]  # (a bundle alone: its bundle_path)
        elif key.endswith("_path") and key != "signature_path" and other:
            suffix = other[len(stem):] if other.startswith(stem + ".") else ""
            if not re.fullmatch(_SUFFIX, suffix) or suffix == m.group(1):
                raise fail(where, f"{key} {other!r} is not beside its signature")
            files[key] = (suffix, check_inside(shard.root, other, FILE_BYTES, shard.folder,
                                               shard.folders))
    return files


def copy(artifacts: Artifacts, row: dict[str, Any], files: dict[str, tuple[str, str]]
         ) -> dict[str, Any]:
    """Write one entry's signature files with the first free number; their new paths by key."""
    if not files:
        return {}
    data = {key: read_checked(path, FILE_BYTES, path) for key, (_, path) in files.items()}
    suffix = files["signature_path"][0]
    companions = {s: data[key] for key, (s, _) in files.items() if s != suffix}
    tree = row["signature_path"].split("/")[0]
    path = artifacts.write_signature(tree, parse_reference(row["reference"])[0], row["digest"],
                                     data["signature_path"], suffix=suffix,
                                     companions=companions)
    stem = artifacts.relative(path)[:-len(suffix)] if suffix else artifacts.relative(path)
    return {key: stem + s for key, (s, _) in files.items()}


# -- attestations --------------------------------------------------------------------------

def check_attestation_entries(value: Any, where: str) -> None:
    """results.json's ``attestations`` of one entry, as a signing run writes it: a list of
    objects, each with its predicate type and path, the rest plain values."""
    if not isinstance(value, list) or len(value) > MAX_ATTESTATIONS:
        raise fail(where, f"attestations must be a list of at most {MAX_ATTESTATIONS}")
    for n, entry in enumerate(value, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("predicate_type"), str) \
                or not isinstance(entry.get("path"), str):
            raise fail(where, f"attestation {n} must be an object with a predicate_type and "
                       "a path")
        if any(isinstance(v, (dict, list)) for v in entry.values()):
            raise fail(where, f"attestation {n} holds more than plain values")


def attestation_sources(shard: Shard, row: dict[str, Any]) -> dict[str, str]:
    """The attestations files of one entry (its path as given -> the file), checked: each in
    ``attestations/`` in the folder its reference and digest put it, a safe name ending in
    ``.intoto.jsonl``, a regular file of at most ATTESTATION_BYTES, inside the shard's folder."""
    found: dict[str, str] = {}
    entries = row.get("attestations") or ()
    if not entries:
        return found
    where = entry_where(shard, row)
    try:
        expected = str(shard.artifacts.signature_folder(
            ATTESTATIONS, parse_reference(row["reference"])[0], row["digest"]))
    except (InputError, ValueError) as e:
        raise fail(where, f"cannot be placed: {e}") from None
    for n, entry in enumerate(entries, 1):
        path = entry["path"]
        folder, _, name = path.rpartition("/")
        if f"{shard.root}/{folder}" != expected or not _ATTESTATION_NAME.fullmatch(name):
            raise fail(where, f"attestation {n}'s path {path[:300]!r} is not where its "
                       f"reference and digest put it ({ATTESTATIONS}/<registry>/<repository>"
                       f"@sha256=<hex>/<name>{INTOTO_SUFFIX})")
        if path not in found:
            try:
                found[path] = check_inside(shard.root, path, ATTESTATION_BYTES, shard.folder,
                                           shard.folders)
            except InputError as e:
                raise fail(where, f"attestation {n}: {str(e).removeprefix('merge: ')}") \
                    from None
    return found


class Attestations:
    """Copies attestations files into the merged folder, each once: the entries of an image's
    keys (and of two tags of one digest) name one file, which holds all their envelopes. What
    was copied is kept as a 128-bit hash of the shard's folder and the path (~80 bytes each)."""

    def __init__(self, artifacts: Artifacts):
        self.artifacts = artifacts
        self.copied: set[bytes] = set()

    def copy(self, shard: Shard, row: dict[str, Any], files: dict[str, str]) -> None:
        """Each file of ``files`` (attestation_sources) added to the merged folder's file of
        the same path (an earlier run's left there is kept: its lines first), and the entry's
        paths made the merged folder's. OSError, ValueError, InputError: not (all) written."""
        if not files:
            return
        reference = parse_reference(row["reference"])[0]
        merged: dict[str, str] = {}
        for path, source in files.items():
            key = hashlib.blake2b(f"{shard.root}\0{path}".encode(), digest_size=16).digest()
            name = path.rpartition("/")[2]
            written = self.artifacts.signature_folder(ATTESTATIONS, reference,
                                                      row["digest"]) / name
            if key not in self.copied:
                data = read_checked(source, ATTESTATION_BYTES, f"{shard.folder}/{path}")
                written = self.artifacts.write_attestation(
                    ATTESTATIONS, reference, row["digest"], name, _lines(data))
                self.copied.add(key)
            merged[path] = self.artifacts.relative(written)
        for entry in row["attestations"]:
            entry["path"] = merged[entry["path"]]


def _lines(data: bytes) -> list[bytes]:
    """A JSON Lines file's lines, as write_attestation takes them (each given its newline)."""
    if not data:
        return []
    return data.removesuffix(b"\n").split(b"\n")


# -- verification/ -------------------------------------------------------------------------

def walk(shard: Shard, top: str) -> dict[str, tuple[bytes, int]]:
    """Every regular file below ``shard.root/top`` (path -> (bytes, mode)); links, devices
    and FIFOs refused."""
    found: dict[str, tuple[bytes, int]] = {}
    for relative in _files_below(shard, top):
        data = read_inside(shard.root, relative, FILE_BYTES, shard.folder)
        mode = os.lstat(os.path.join(shard.root, relative)).st_mode
        found[relative[len(top) + 1:]] = (data, 0o755 if mode & 0o100 else 0o644)
        if len(found) > VERIFICATION_FILES:
            raise fail(f"{shard.folder}/{top}", f"more than {VERIFICATION_FILES} files")
    return found


def _files_below(shard: Shard, relative: str) -> Iterator[str]:
    path = os.path.join(shard.root, relative)
    if not os.path.lexists(path):
        return
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise fail(f"{shard.folder}/{relative}", "not a folder (a link?)")
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.name.startswith(".tmp-"):
            continue  # a temporary file left by a killed writer
        child = f"{relative}/{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield from _files_below(shard, child)
        elif entry.is_file(follow_symlinks=False):
            yield child
        else:
            raise fail(f"{shard.folder}/{child}", "not a regular file (a link?)")
