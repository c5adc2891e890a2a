"""What a run leaves in the output folder, for a later job to upload.

    <out>/lookaside/<registry>/<namespaces>/<name>@sha256=<hex>/signature-<N>   raw signatures
    <out>/cosign/<registry>/...@sha256=<hex>/signature-<N>.sig, .payload     cosign signatures
    <out>/results.json                                  per-image outcome
    <out>/verification/policy.json, registries.d/*.yaml, README.md, keys   how to verify them
    <out>/cosign-attach.sh, <out>/NAME.asc, NAME.sig    (cosign upload false; signed files)

The trees of signatures and the run's own files are apart, so that no registry name can collide
with results.json or verification/ (``results.json`` is a valid registry host).

``<registry>`` is the registry host with ``:`` replaced by ``_`` (``127.0.0.1_5000``) because
actions/upload-artifact refuses ``:`` in paths; host names cannot hold ``_``, so the name stays
unambiguous. Each signature takes the first free N (readers stop at the first gap) and appears
atomically: written to a temporary file, then hard-linked to its final name, which fails instead of
overwriting when another writer took that N first. Every file, the run's own included, is
written below the resolved output folder through real folders only: a link where a folder should
be is refused, never followed, so nothing can be written outside the output folder.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import itertools
import json
import os
import re
import stat
import threading
from pathlib import Path
from typing import Callable, Iterable, Mapping

from .errors import InputError
from .reference import Reference

_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HEX64 = re.compile(r"[a-f0-9]{64}")


class Stream:
    """A JSON array given as an iterable of its elements' JSON texts, written as it is read."""

    def __init__(self, texts: Iterable[str]):
        self.texts = texts


LOOKASIDE = "lookaside"  # the folder of the lookaside tree (GPG signatures)
# The run's own paths below the output folder, and whether each is a folder.
_OWN = ((["verification"], True), (["verification", "registries.d"], True), ([LOOKASIDE], True),
        (["cosign"], True), (["results.json"], False), (["verification", "policy.json"], False),
        (["cosign-attach.sh"], False))


def registry_folder(host: str) -> str:
    return host.replace(":", "_")


class Artifacts:
    def __init__(self, output_dir: str | os.PathLike):
        self.root = Path(output_dir)
        self._resolved_root: str | None = None
        self._made: set[str] = set()  # folders created and checked to be inside the root

    def create(self) -> None:
        """Make the output folder (only once the run is known to be valid) and prove it takes
        files: a signature made and then lost to an unwritable folder would be wasted."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            os.unlink(_write_temp(self._make_folder([], self.root), b"", mode=0o600))
        except OSError as e:
            raise InputError(f"output folder {str(self.root)!r}: {e.strerror}") from None
        for parts, folder in _OWN:  # left by an earlier run, or planted: never followed
            path = os.path.join(self._root(), *parts)
            if os.path.lexists(path) and stat.S_ISDIR(os.lstat(path).st_mode) != folder:
                raise InputError(f"output folder {str(self.root)!r}: {os.path.join(*parts)} "
                                 f"is {'not a folder' if folder else 'a folder'} (a link?): "
                                 "remove it")

    # -- lookaside signatures -------------------------------------------------------------

    def signature_folder(self, reference: Reference, digest: str) -> Path:
        """``<out>/<registry>/<ns>/<name>@sha256=<hex>`` (its components checked; whether
        symlinks lead elsewhere is checked when it is created)."""
        return Path(os.path.join(self._root(), *self._parts(reference, digest)))

    def _parts(self, reference: Reference, digest: str) -> list[str]:
        """The folder's components below the root, each checked."""
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or not _HEX64.fullmatch(hexpart):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        parts = [LOOKASIDE, registry_folder(reference.host), *reference.path.split("/")]
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
        links are not followed). Each level is checked once per run. Returns its path."""
        current = self._root()
        folder = os.path.join(current, *parts)
        if folder in self._made:
            return folder
        if current not in self._made:
            os.makedirs(current, exist_ok=True)
            self._made.add(current)
        for part in parts:
            current = os.path.join(current, part)
            if current in self._made:
                continue
            try:
                os.mkdir(current)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(current).st_mode):  # a symlink, or a file
                    raise ValueError(f"{what} would write outside {self.root}: {current} "
                                     "is not a folder") from None
            self._made.add(current)
        return folder

    def write_signature(self, reference: Reference, digest: str, data: bytes, *,
                        payload: bytes | None = None) -> Path:
        """Store one signature as the first free number N; return its path. A raw GPG signature
        goes to the lookaside tree as ``signature-N``; a cosign one (``data`` base64, with its
        ``payload``) to ``cosign/<same tree>/signature-N.sig`` and ``signature-N.payload``."""
        parts = self._parts(reference, digest)
        if payload is None:
            return Path(self._place(self._make_folder(parts, reference), data, ""))
        folder = self._make_folder(["cosign", *parts[1:]], reference)
        sig = self._place(folder, data, ".sig")  # takes the number...
        pending = _write_temp(folder, payload, mode=0o644)  # ...which the payload shares
        try:
            _rename_noreplace(pending, sig.removesuffix(".sig") + ".payload")
        except BaseException:
            os.unlink(pending)
            raise
        return Path(sig)

    def write_file_signature(self, name: str, data: bytes) -> Path:
        """``<out>/<name>`` (a clear-signed or detached signature of a file), atomically, never
        over an existing file (FileExistsError) nor through a link."""
        if name in (".", "..") or not _SAFE_COMPONENT.fullmatch(name):
            raise ValueError(f"unsafe file name {name!r}")
        root = self._make_folder([], name)
        tmp = _write_temp(root, data, mode=0o644)
        try:
            _rename_noreplace(tmp, os.path.join(root, name))
        except BaseException:
            os.unlink(tmp)
            raise
        return Path(root, name)

    @staticmethod
    def _place(folder: str, data: bytes, suffix: str) -> str:
        """Write ``data`` as ``folder/signature-N<suffix>`` for the first free N, atomically and
        never over an existing file."""
        tmp = _write_temp(folder, data, mode=0o644)
        try:
            n = 1
            while True:
                final = os.path.join(folder, f"signature-{n}{suffix}")
                try:
                    _rename_noreplace(tmp, final)  # atomic, never replaces a signature
                    tmp = None
                    return final
                except FileExistsError:
                    n += 1
        finally:
            if tmp is not None:
                os.unlink(tmp)

    # -- results and verification ---------------------------------------------------------

    def write_results(self, results: Mapping) -> Path:
        """results.json, atomically. A Stream value is a JSON array given element by element, written as it is read: a 10,000-image result is
        never one big string in memory. No indent: that takes the pure-Python encoder."""
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

        self._write_file(["results.json"], write)
        return self.root / "results.json"

    def _write_file(self, parts: list[str], data: bytes | str | Callable,
                    mode: int = 0o644) -> Path:
        """One of the run's own files (results.json, verification/..., the attach script),
        replaced atomically, in real folders below the output folder (never through a link)."""
        folder = self._make_folder(parts[:-1], "/".join(parts))
        path = os.path.join(folder, parts[-1])
        if os.path.isdir(path) and not os.path.islink(path):
            raise ValueError(f"{self.relative(path)} is a folder")
        _replace(Path(path), data, mode)
        return Path(path)

    def write_verification(self, images: Iterable[tuple[Reference, str]],
                           public_keys: bytes | None, kind: str = "gpg") -> Path:
        """A policy.json and registries.d that accept exactly the images signed here: GPG
        signatures in this lookaside tree (``kind`` "gpg"), or cosign signatures attached in the
        registry ("sigstore")."""
        self._make_folder(["verification", "registries.d"], "verification")
        folder = Path(self._root(), "verification")
        refs = [ref for ref, _ in images]
        repositories = sorted({ref.repository for ref in refs})
        hosts = sorted({ref.host for ref in refs})
        if kind == "sigstore":
            requirement, regd, readme = self._sigstore_parts(folder, hosts, public_keys)
        else:
            requirement, regd, readme = self._gpg_parts(folder, hosts, public_keys)
        policy = {"default": [{"type": "reject"}],
                  "transports": {"docker": {repo: requirement for repo in repositories}}}
        self._write_file(["verification", "policy.json"],
                         (json.dumps(policy, indent=2) + "\n").encode())
        self._write_file(["verification", "registries.d", "container-sign-action.yaml"],
                         ("\n".join(regd) + "\n").encode())
        self._write_file(["verification", "README.md"], readme.encode())
        return folder

    def _gpg_parts(self, folder: Path, hosts: list[str],
                   public_keys: bytes | None) -> tuple[list, list[str], str]:
        """policy requirement, registries.d lines and README for GPG lookaside signatures."""
        if public_keys:
            self._write_file(["verification", "signing-keys.gpg"], public_keys)
            key = {"keyData": base64.b64encode(public_keys).decode("ascii")}
        else:
            key = {"keyPath": "/REPLACE/WITH/THE/SIGNING/PUBLIC/KEY.gpg"}
        requirement = [{"type": "signedBy", "keyType": "GPGKeys", **key,
                        "signedIdentity": {"type": "matchRepoDigestOrExact"}}]
        root = self.root.resolve()
        lines = ["# Where podman/skopeo find the signatures written by this run.",
                 "# Once you publish each registry folder on a web server, replace the",
                 "# file:// URL by its https:// URL.", "docker:"]
        for host in hosts:
            base = (root / LOOKASIDE / registry_folder(host)).as_uri()
            lines += [f"  {json.dumps(host)}:", f"    lookaside: {json.dumps(base)}"]
        readme = _VERIFY_README.format(
            keys="signing-keys.gpg (also inlined as keyData in policy.json)" if public_keys
            else "not known to this run: put the signing public key where policy.json's "
                 "keyPath says")
        return requirement, lines, readme

    def _sigstore_parts(self, folder: Path, hosts: list[str],
                        public_keys: bytes | None) -> tuple[list, list[str], str]:
        """policy requirement, registries.d lines and README for cosign attachments."""
        pems = re.findall(rb"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----\s*",
                          public_keys or b"", re.S)
        if pems:
            self._write_file(["verification", "signing-keys.pub"], b"".join(pems))
            keys = [{"keyData": base64.b64encode(pem).decode("ascii")} for pem in pems]
        else:
            keys = [{"keyPath": "/REPLACE/WITH/THE/COSIGN/PUBLIC/KEY.pub"}]
        # One requirement per key: every image was signed with every key, and podman requires
        # each requirement of a scope to be met.
        requirement = [{"type": "sigstoreSigned", **key,
                        "signedIdentity": {"type": "matchRepoDigestOrExact"}} for key in keys]
        lines = ["# podman/skopeo read cosign signatures attached in these registries.", "docker:"]
        for host in hosts:
            lines += [f"  {json.dumps(host)}:", "    use-sigstore-attachments: true"]
        return requirement, lines, _SIGSTORE_README

    def write_attach_script(self, signatures: Iterable[tuple[Reference, str, str, str]]) -> Path:
        """``cosign-attach.sh``: attaches the cosign signatures written here (made with upload
        false) to their images, for a later job that may write to the registry. ``signatures``:
        (where the image is, its digest, payload path, signature path), paths relative to the
        output folder."""
        lines = ["#!/bin/sh",
                 "# Attaches the cosign signatures of this run (signed with upload: false) to",
                 "# their images. Run it where cosign can write to the registry (docker login,",
                 "# or DOCKER_CONFIG); extra arguments go to every `cosign attach signature`,",
                 "# e.g.  sh cosign-attach.sh --allow-http-registry=true",
                 "set -eu", 'cd "$(dirname "$0")"']
        for location, digest, payload, signature in signatures:
            target = f"{location.host}/{location.path}@{digest}"
            lines.append(f'cosign attach signature "$@" --payload {_sh(payload)} '
                         f'--signature {_sh(signature)} {_sh(target)}')
        return self._write_file(["cosign-attach.sh"], ("\n".join(lines) + "\n").encode(),
                                mode=0o755)


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


_SIGSTORE_README = """\
# Verifying these cosign signatures

- `policy.json` accepts exactly the repositories signed in this run, with a cosign signature by
  each signing key (`signing-keys.pub`, also inlined as keyData), for the identity signed (the
  reference with its tag), and rejects everything else.
- `registries.d/container-sign-action.yaml` turns on `use-sigstore-attachments`, so podman and
  skopeo look for the `sha256-<hex>.sig` tag next to each image.

Try it (skopeo 1.13 or later, built with sigstore support):

    skopeo --policy verification/policy.json --registries.d verification/registries.d \\
        copy --all docker://REGISTRY/NS/NAME:TAG oci:/tmp/checked

or, per digest, `cosign verify --key verification/signing-keys.pub REGISTRY/NS/NAME@sha256:...`.
A multi-arch image has a signature for its index and for every platform manifest: `copy --all`
checks each. After copying the image to another registry, copy its signatures with it (e.g.
`cosign copy`), and sign for the name users pull (the identity), not the internal location.
"""


_VERIFY_README = """\
# Verifying these signatures

- `policy.json` accepts exactly the repositories signed in this run, signed by the signing key(s),
  and rejects everything else. Signing keys: {keys}.
- `registries.d/container-sign-action.yaml` tells podman/skopeo where the signatures are (the
  `lookaside` base of each registry). It points at this folder; after you publish each registry
  folder on a web server, change the URL to the published one.

Try it:

    skopeo --policy verification/policy.json --registries.d verification/registries.d \\
        copy docker://REGISTRY/NS/NAME:TAG dir:/tmp/checked

For podman, merge the policy into /etc/containers/policy.json and copy the registries.d file to
/etc/containers/registries.d/. A multi-arch image needs a signature for every platform manifest.
"""


_temp_names = itertools.count()
_UMASK = os.umask(0o022)  # read once, at import (single-threaded), and put back
os.umask(_UMASK)


def _write_temp(folder: str | Path, data: bytes | str | Callable, mode: int) -> str:
    """A new hidden file in ``folder`` holding ``data``; its name is unique to this process and
    thread. No fsync: readers need atomic visibility (the rename gives it), not durability across
    a power loss, after which a CI job is lost anyway (fsync cost 4 ms a signature)."""
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{threading.get_ident()}-{next(_temp_names)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        if isinstance(data, bytes):  # a signature: no file object needed
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                data(f) if callable(data) else f.write(data)
        if mode & _UMASK:  # a strict umask took bits away
            os.chmod(tmp, mode)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
except (AttributeError, OSError):  # not Linux/glibc 2.28+: link + unlink does the same
    _renameat2 = None


def _rename_noreplace(src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` atomically, failing with FileExistsError if ``dst`` exists."""
    global _renameat2
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst),
                      _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), str(dst))
        if err not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: the file system can't; fall back
            raise OSError(err, os.strerror(err), str(dst))
        _renameat2 = None
    os.link(src, dst)  # also atomic and never replaces; then drop the temporary name
    os.unlink(src)


def _replace(path: Path, data: bytes | str | Callable, mode: int = 0o644) -> None:
    """Write a whole file atomically (readers see the old or the new content, never half); an
    existing link at ``path`` is replaced, not followed."""
    tmp = _write_temp(path.parent, data, mode=mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
