"""What a run leaves in the output folder, for a later job to upload.

    <out>/<tree>/<registry>/<namespaces>/<name>@sha256=<hex>/signature-<N>...   signatures
    <out>/results.json                                  per-image outcome
    <out>/verification/policy.json, registries.d/*.yaml, README.md, keys   how to verify them
    <out>/NAME.asc, NAME.sig                            signed files

Each signer's format (signaction.signing.SignatureFormat) says which tree its signatures go to
(GPG signatures: ``lookaside/``; cosign's: ``cosign/``) and what else it writes (cosign with upload
false: ``cosign-attach.sh``); this module only knows how to write safely. The trees of signatures
and the run's own files are apart, so that no registry name can collide with results.json or
verification/ (``results.json`` is a valid registry host).

``<registry>`` is the registry host with ``:`` replaced by ``_`` (``127.0.0.1_5000``) because
actions/upload-artifact refuses ``:`` in paths; host names cannot hold ``_``, so the name stays
unambiguous. Each signature takes the first free N (readers stop at the first gap) and appears
atomically, never over an existing file (signaction.atomic), when another writer took that N
first. Every file, the run's own included, is written below the resolved output folder through
real folders only: a link where a folder should be is refused, never followed, so nothing can be
written outside the output folder.
"""

from __future__ import annotations

import base64
import codecs
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import atomic
from .consumers import indented_json, write_consumers
from .errors import InputError
from .formats.lookaside import registry_folder
from .reference import Reference
from .safeload import read_regular_file
from .signing import Verification

_MADE_FOLDERS = 4096  # parent folders remembered as made and checked (signatures come in order)
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_ATTESTATIONS_FILE = 64 << 20  # bytes of an attestations file found (added to), at most
ATTESTATIONS = "attestations"  # the output folder's tree of in-toto attestations (cosign's)
INTOTO_SUFFIX = ".intoto.jsonl"  # DSSE envelopes, one a line (as SLSA's generators name them)
_HEX64 = re.compile(r"[a-f0-9]{64}")


class Stream:
    """A JSON array given as an iterable of its elements' JSON texts, written as it is read."""

    def __init__(self, texts: Iterable[str]):
        self.texts = texts


# The run's own paths below the output folder, and whether each is a folder (a format adds its
# own: SignatureFormat.own_paths).
_OWN = ((("verification",), True), (("verification", "registries.d"), True),
        (("results.json",), False), (("verification", "policy.json"), False))


class Artifacts:
    def __init__(self, output_dir: str | os.PathLike):
        self.root = Path(output_dir)
        self._resolved_root: str | None = None
        self._made: set[str] = set()  # parent folders created and checked to be inside the root

    def create(self, own_paths: Sequence[tuple[tuple[str, ...], bool]] = ()) -> None:
        """Make the output folder (only once the run is known to be valid) and prove it takes
        files: a signature made and then lost to an unwritable folder would be wasted. The
        run's own paths (and the format's, ``own_paths``) left by an earlier run, or planted,
        must be what they should: a folder, or a file."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # a page's worth: an empty file is still made on a full disk
            os.unlink(atomic.write_temp(self._make_folder([], self.root), b"\0" * 4096,
                                        mode=0o600))
        except OSError as e:
            raise InputError(f"output folder {str(self.root)!r}: {e.strerror}") from None
        # left by an earlier run, or planted: never followed
        for parts, folder in (*_OWN, *own_paths):
            path = os.path.join(self._root(), *parts)
            if os.path.lexists(path) and stat.S_ISDIR(os.lstat(path).st_mode) != folder:
                raise InputError(f"output folder {str(self.root)!r}: {os.path.join(*parts)} "
                                 f"is {'not a folder' if folder else 'a folder'} (a link?): "
                                 "remove it")

    # -- signatures -------------------------------------------------------------------------

    def signature_folder(self, tree: str, reference: Reference, digest: str) -> Path:
        """``<out>/<tree>/<registry>/<ns>/<name>@sha256=<hex>`` (its components checked;
        whether symlinks lead elsewhere is checked when it is created)."""
        return Path(os.path.join(self._root(), *self._parts(tree, reference, digest)))

    def tree_uri(self, tree: str, host: str) -> str:
        """The file:// URL of registry ``host``'s folder in ``tree``, as a lookaside base."""
        return (Path(self._root()) / tree / registry_folder(host)).as_uri()

    def _parts(self, tree: str, reference: Reference, digest: str) -> list[str]:
        """The folder's components below the root, each checked."""
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or not _HEX64.fullmatch(hexpart):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        parts = [tree, registry_folder(reference.host), *reference.path.split("/")]
        for part in parts:
            if part in (".", "..") or not _SAFE_COMPONENT.fullmatch(part):
                raise ValueError(f"unsafe path component {part!r} in {reference}")
        parts[-1] = f"{parts[-1]}@sha256={hexpart}"
        return parts

    def _root(self) -> str:
        if self._resolved_root is None:
            self._resolved_root = str(self.root.resolve())
        return self._resolved_root

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to the output folder, as results.json gives it."""
        path, root = os.fspath(path), self._root()
        if path.startswith(root + os.sep):  # what this class wrote: no need for relpath's work
            return path[len(root) + 1:]
        return os.path.relpath(path, root)

    def _make_folder(self, parts: list[str], what: object) -> str:
        """Create the folder ``parts`` below the resolved root one level at a time, never
        through a link: each level is created, or else must already be a real folder (lstat:
        links are not followed). Each parent level is checked once per run; the last level
        (one per image for signatures: remembering them all would cost ~210 B each) every
        time. Returns its path."""
        current = self._root()
        if current not in self._made:
            os.makedirs(current, exist_ok=True)
            self._made.add(current)
        for n, part in enumerate(parts, 1):
            current = os.path.join(current, part)
            if current in self._made:
                continue
            try:
                os.mkdir(current)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(current).st_mode):  # a symlink, or a file
                    raise ValueError(f"{what} would write outside {self.root}: {current} "
                                     "is not a folder") from None
            if n < len(parts):
                if len(self._made) >= _MADE_FOLDERS:  # (a repository per image: not all kept)
                    self._made.clear()
                self._made.add(current)
        return current

    def write_signature(self, tree: str, reference: Reference, digest: str, data: bytes, *,
                        suffix: str = "", companions: Mapping[str, bytes] | None = None) -> Path:
        """Store one signature in ``tree`` as ``signature-N<suffix>`` for the first free number
        N; return its path. Each of ``companions`` (suffix -> bytes, e.g. cosign's payload) is
        written beside it with the same N."""
        folder = self._make_folder(self._parts(tree, reference, digest), reference)
        path = self._place(folder, data, suffix)  # takes the number...
        for other, content in (companions or {}).items():  # ...which its companions share
            atomic.write_new(path.removesuffix(suffix) + other, content)
        return Path(path)

    def write_attestation(self, tree: str, reference: Reference, digest: str, name: str,
                          lines: Sequence[bytes]) -> Path:
        """``<out>/<tree>/<registry>/<repo>@sha256=<hex>/<name>``: JSON Lines, ``lines`` added
        after those an earlier write (another key of the same image) left, replaced atomically;
        an existing file is read without following a link."""
        if name in (".", "..") or not _SAFE_COMPONENT.fullmatch(name):
            raise ValueError(f"unsafe file name {name!r}")
        folder = self._make_folder(self._parts(tree, reference, digest), reference)
        path = os.path.join(folder, name)
        before = b""
        if os.path.lexists(path):
            try:
                before = read_regular_file(path, self.relative(path), MAX_ATTESTATIONS_FILE,
                                           follow_links=False)
            except InputError as e:  # a link or a FIFO planted there: not followed
                raise ValueError(str(e)) from None
            before += b"" if before.endswith(b"\n") or not before else b"\n"
        atomic.replace(path, before + b"".join(line + b"\n" for line in lines), 0o644)
        return Path(path)

    def write_file_signature(self, name: str, data: bytes) -> Path:
        """``<out>/<name>`` (a clear-signed or detached signature of a file), atomically, never
        over an existing file (FileExistsError) nor through a link."""
        if name in (".", "..") or not _SAFE_COMPONENT.fullmatch(name):
            raise ValueError(f"unsafe file name {name!r}")
        root = self._make_folder([], name)
        atomic.write_new(os.path.join(root, name), data)
        return Path(root, name)

    @staticmethod
    def _place(folder: str, data: bytes, suffix: str) -> str:
        """Write ``data`` as ``folder/signature-N<suffix>`` for the first free N, atomically and
        never over an existing file."""
        tmp = atomic.write_temp(folder, data, mode=0o644)
        linked = False
        try:
            n = 1
            while True:
                final = os.path.join(folder, f"signature-{n}{suffix}")
                try:
                    atomic.link_new(tmp, final)  # atomic, never replaces a signature
                    linked = True
                    return final
                except FileExistsError:
                    n += 1
        finally:
            if not linked:
                os.unlink(tmp)

    # -- results and verification ---------------------------------------------------------

    def write_results(self, results: Mapping) -> Path:
        """results.json, atomically. A Stream value (at any depth of mappings) is a JSON array
        given element by element, written as it is read: a big result is never one big string
        in memory. The text is json.dumps's (no indent: that takes the pure-Python encoder),
        byte for byte."""
        def write(f) -> None:
            _write_json(f, results)
            f.write("\n")

        self.write_file(["results.json"], write)
        return self.root / "results.json"

    def write_file(self, parts: Sequence[str], data: atomic.Data, mode: int = 0o644) -> Path:
        """One of the run's own files (results.json, verification/..., the attach script),
        replaced atomically, in real folders below the output folder (never through a link)."""
        folder = self._make_folder(list(parts[:-1]), "/".join(parts))
        path = os.path.join(folder, parts[-1])
        if os.path.isdir(path) and not os.path.islink(path):
            raise ValueError(f"{self.relative(path)} is a folder")
        atomic.replace(path, data, mode)
        return Path(path)

    def write_verification(self, repositories: Iterable[str], verification: Verification,
                           lookaside_url: str | None = None) -> Path:
        """A policy.json that accepts exactly ``repositories`` with the format's requirement,
        its registries.d file, README and key files; and the same for OpenShift, Kubernetes
        admission and Confidential Containers (signaction.consumers), with the lookaside at
        ``lookaside_url`` (``{registry}``: the registry folder) where the signatures will be
        published."""
        self._make_folder(["verification", "registries.d"], "verification")
        repositories = sorted(set(repositories))
        policy = {"default": [{"type": "reject"}],
                  "transports": {"docker": {repo: verification.requirement
                                            for repo in repositories}}}
        for name, data in verification.files.items():
            self.write_file(["verification", name], data)
        # written as it is encoded: at 100,000 repositories its text is ~20 MB
        self.write_file(["verification", "policy.json"],
                        indented_json(policy))
        self.write_file(["verification", "registries.d", "container-sign-action.yaml"],
                        ("\n".join(verification.registries_d) + "\n").encode())
        self.write_file(["verification", "README.md"], verification.readme.encode())
        # then the cluster files (a failure there leaves podman's files whole), and the README
        # section that names them
        clusters = write_consumers(self, repositories, verification, lookaside_url)
        self.write_file(["verification", "README.md"], (verification.readme + clusters).encode())
        return Path(self._root(), "verification")


def _streams_in(value: object) -> bool:
    return isinstance(value, Stream) or isinstance(value, Mapping) and any(
        _streams_in(v) for v in value.values())


def _write_json(f, value: object) -> None:
    """``value`` as json.dumps writes it (", " and ": "), its Streams element by element; a
    mapping without a Stream in it is written by json.dumps itself."""
    if isinstance(value, Stream):
        f.write("[")
        for i, text in enumerate(value.texts):
            f.write(", " + text if i else text)
        f.write("]")
    elif isinstance(value, Mapping) and _streams_in(value):
        f.write("{")
        for n, (key, item) in enumerate(value.items()):
            f.write(f"{', ' if n else ''}{json.dumps(key)}: ")
            _write_json(f, item)
        f.write("}")
    else:
        f.write(json.dumps(value))


def key_data(data: bytes) -> dict[str, str]:
    """A policy.json key given inline (``keyData``: the key file's bytes, base64)."""
    return {"keyData": base64.b64encode(data).decode("ascii")}


# -- JSON read back a piece at a time (merge: the shards' results.json) ---------------------

class StreamError(ValueError):
    """results.json is not the JSON it should be; the message says where."""


class _Source:
    """Text of an open file descriptor, decoded as UTF-8 as it is read, at most ``limit``
    bytes of it; ``buf[pos:]`` is what is not consumed yet."""

    CHUNK = 1 << 20

    def __init__(self, fd: int, limit: int):
        self.fd, self.left = fd, limit
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.pos, self.eof = "", 0, False
        self.base = 0  # characters let go of before buf

    def at(self, pos: int | None = None) -> int:
        """A place in the whole text (a character's number from 0)."""
        return self.base + (self.pos if pos is None else pos)

    def more(self, at_least: int = 1) -> bool:
        """Read on; False at the end of the file."""
        if self.eof:
            return False
        if self.pos > len(self.buf) // 2:  # (what was consumed is let go)
            self.base += self.pos
            self.buf, self.pos = self.buf[self.pos:], 0
        want = max(self.CHUNK, at_least)
        data = os.read(self.fd, min(want, self.left + 1))
        if len(data) > self.left:
            raise StreamError("larger than its limit")
        self.left -= len(data)
        try:
            self.buf += self.decoder.decode(data, final=not data)
        except UnicodeDecodeError:
            raise StreamError("not UTF-8 text") from None
        self.eof = not data
        return True

    def peek(self) -> str:
        """The next character that is not white space ("" at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\n\r":
                self.pos += 1
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos:self.pos + 1]

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise StreamError(f"expected {char!r} at character {self.at()}")
        self.pos += 1

    def value(self) -> Any:
        """One JSON value, decoded by json's own decoder (as json.loads would): read on until
        it is whole."""
        self.peek()
        grow = self.CHUNK
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
                # (a number cut by the end of what was read may go on: "1.5" of "1.5e+18")
                if self.eof or end < len(self.buf) and not (
                        type(value) in (int, float) and not self.buf[end:].strip(_NUMBER)):
                    self.pos = end
                    return value
            except json.JSONDecodeError as e:
                if self.eof:
                    raise StreamError(f"{e.msg} at character {self.at(e.pos)}") from None
            except RecursionError:
                raise StreamError("nested too deep") from None
            if not self.more(grow):
                continue  # (the end: decode once more, finally)
            grow *= 2


_DECODER = json.JSONDecoder()
_NUMBER = "0123456789+-.eE"


def read_stream(fd: int, limit: int, streamed: Mapping[tuple[str, ...], Callable[[Any], Any]]
                ) -> dict[str, Any]:
    """The JSON object in the file ``fd`` (at most ``limit`` bytes), read a piece at a time:
    each array at a path of ``streamed`` (("images",), ("operation", "digests")) is not kept
    but given element by element to its function, and stands in the result as what that
    function returned after its last element (it is called with StreamEnd then). Objects on
    the way to a streamed path are read key by key, and must not repeat a key. Any other
    value is json's, as json.loads gives it. StreamError when it is not such JSON."""
    src = _Source(fd, limit)
    walked = {path[:n] for path in streamed for n in range(len(path))}

    def read(path: tuple[str, ...]) -> Any:
        char = src.peek()
        if char == "{" and path in walked:
            src.pos += 1
            out: dict[str, Any] = {}
            if src.peek() == "}":
                src.pos += 1
                return out
            while True:
                key = src.value()
                if not isinstance(key, str):
                    raise StreamError(f"a key is not a string at character {src.at()}")
                if key in out:
                    raise StreamError(f"{'.'.join((*path, key))} is given twice")
                src.take(":")
                out[key] = read((*path, key))
                if src.peek() == "}":
                    src.pos += 1
                    return out
                src.take(",")
        if char == "[" and path in streamed:
            sink = streamed[path]
            src.pos += 1
            if src.peek() != "]":
                while True:
                    sink(src.value())
                    if src.peek() == "]":
                        break
                    src.take(",")
            src.pos += 1
            return sink(StreamEnd)
        if not char:
            raise StreamError("the text ends before its end")
        return src.value()

    if src.peek() != "{":
        raise StreamError("not a JSON object")
    result = read(())
    if src.peek():
        raise StreamError(f"extra data at character {src.at()}")
    return result


class StreamEnd:
    """What a read_stream sink is given after the last element of its array."""
