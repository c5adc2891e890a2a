"""Reading what comes from outside (config files, images files, files to sign) safely.

One reader: regular files only (opened non-blocking, so a FIFO cannot hang the open; checked
with stat before and fstat after opening, so /dev/zero or a socket is refused), at most ``limit``
bytes; every refusal is an InputError, one line, naming the file and what is wrong."""

from __future__ import annotations

import errno
import os
import stat

from .errors import InputError


# -- reading files ------------------------------------------------------------------------

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def size_text(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and not limit % (1 << 20) else f"{limit} bytes"


def _check_regular(mode: int, label: str) -> None:
    if stat.S_ISDIR(mode):
        raise InputError(f"{label}: is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise InputError(f"{label}: is {_kind(mode)}, not a regular file")


def read_regular_file(path: str, label: str, limit: int, *,
                      missing_ok: bool = False) -> bytes | None:
    """A regular file's bytes, at most ``limit`` of them: never a FIFO (which would hang), a
    device (/dev/zero never ends) or a socket. With ``missing_ok`` a missing file is None."""
    try:
        _check_regular(os.stat(path).st_mode, label)  # a device is refused without opening it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except ValueError:  # a NUL in the path
        raise InputError(f"{label}: cannot be opened (the name holds a NUL character)") from None
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            if missing_ok:
                return None
            raise InputError(f"{label}: file not found") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise InputError(f"{label}: not readable (permission denied)") from None
        raise InputError(f"{label}: cannot be opened ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)  # what was opened, if the path changed in between
        _check_regular(info.st_mode, label)
        if info.st_size > limit:
            raise InputError(f"{label}: larger than {size_text(limit)}")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise InputError(f"{label}: cannot be read ({e.strerror})") from None
    if len(data) > limit:
        raise InputError(f"{label}: larger than {size_text(limit)}")
    return data


def decode_text(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{label}: not UTF-8 text (byte {e.start + 1} is not)") from None


def read_text_file(path: str, label: str, limit: int, *,
                   missing_ok: bool = False) -> str | None:
    """read_regular_file, decoded as UTF-8."""
    data = read_regular_file(path, label, limit, missing_ok=missing_ok)
    return None if data is None else decode_text(data, label)


def check_text_size(text: str, label: str, limit: int) -> str:
    """The same cap for a text given inline (an input, a flag) as for a file."""
    if len(text) > limit or (len(text) * 4 > limit
                             and len(text.encode("utf-8", "surrogatepass")) > limit):
        raise InputError(f"{label}: larger than {size_text(limit)}")
    return text
