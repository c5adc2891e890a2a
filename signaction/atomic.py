"""The one way this program writes a file: complete or not at all, never through a link.

Every file is first written under a hidden temporary name in its final folder, then given its
name in one step, so a reader sees either nothing (or the old file) or the whole new one:

- ``write_new``: the name must be free. The temporary file is hard-linked to it (``link`` fails
  with FileExistsError instead of replacing anything), then its temporary name is removed. That
  is the guarantee signature numbering needs (two writers can't take one ``signature-N``). The
  Linux-only ``renameat2(RENAME_NOREPLACE)`` (through ctypes) gives the same guarantee in one
  call; the only difference is that a process killed between link and unlink leaves a hidden
  ``.tmp-*`` file, as one killed while writing does anyway: so the portable one was kept.
- ``replace``: an existing file (or link) at the name is replaced by ``rename``, never
  followed.

No fsync: readers need atomic visibility, not durability across a power loss, after which a CI
job is lost anyway (an fsync would cost more than the write itself).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from typing import TextIO

Data = bytes | str | Callable[[TextIO], object]  # bytes, text (UTF-8), or a writer of text

_temp_names = itertools.count()
_UMASK = os.umask(0o022)  # read once, at import (single-threaded), and put back
os.umask(_UMASK)


def write_temp(folder: str, data: Data, mode: int = 0o644) -> str:
    """A new hidden file in ``folder`` holding ``data``, with exactly ``mode``; its name is
    unique to this process and thread."""
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{threading.get_ident()}-{next(_temp_names)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        if isinstance(data, bytes):  # a signature: no file object needed
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
                data(f) if callable(data) else f.write(data)
        if mode & _UMASK:  # a strict umask took bits away
            os.chmod(tmp, mode)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def link_new(tmp: str, path: str) -> None:
    """Give the temporary file ``tmp`` the name ``path`` if it is free (FileExistsError if not;
    ``tmp`` is then kept for another try), and drop its temporary name."""
    os.link(tmp, path)  # atomic, and never replaces anything
    os.unlink(tmp)


def write_new(path: str, data: Data, mode: int = 0o644) -> None:
    """``path`` holding ``data``, atomically; FileExistsError if something is there already."""
    tmp = write_temp(os.path.dirname(path) or ".", data, mode)
    try:
        link_new(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def replace(path: str, data: Data, mode: int = 0o644) -> None:
    """``path`` holding ``data``, atomically: readers see the old or the new content, never
    half of it. An existing link at ``path`` is replaced, not followed."""
    tmp = write_temp(os.path.dirname(path) or ".", data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
