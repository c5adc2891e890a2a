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
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from . import atomic
from .consumers import indented_json, write_consumers
from .errors import InputError
from .formats.lookaside import registry_folder
from .reference import Reference
from .signing import Verification

_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
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
        """results.json, atomically. A Stream value is a JSON array given element by element,
        written as it is read: a big result is never one big string in memory. No indent: that
        takes the pure-Python encoder."""
        def write(f) -> None:
            f.write("{")
            for n, (key, value) in enumerate(results.items()):
                f.write(f"{', ' if n else ''}{json.dumps(key)}: ")
                if isinstance(value, Stream):
                    f.write("[")
                    for i, text in enumerate(value.texts):
                        f.write(", " + text if i else text)
                    f.write("]")
                else:
                    f.write(json.dumps(value))
            f.write("}\n")

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


def key_data(data: bytes) -> dict[str, str]:
    """A policy.json key given inline (``keyData``: the key file's bytes, base64)."""
    return {"keyData": base64.b64encode(data).decode("ascii")}
