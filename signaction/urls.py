"""URLs from outside that the run uses and writes: checked once where inputs are read, and their
credentials (``user:password@``) kept out of everything a run writes (verification/, cluster
files, results.json), which are made to be copied to other machines. The request itself still
carries them (signaction.registry)."""

from __future__ import annotations

import re

from .errors import InputError

LOOKASIDE_SCHEMES = ("https", "http", "file")
MAX_URL = 2048
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")


def check_lookaside_url(url: str, where: str) -> str:
    """``url`` if it is a lookaside base a consumer can use (``https://``, ``http://`` or
    ``file://``, a host for http(s), no white space or control characters, ``{registry}``
    allowed); InputError naming ``where`` otherwise. The URL is never quoted: it may hold a
    password."""
    if len(url) > MAX_URL:
        raise InputError(f"{where}: longer than {MAX_URL} characters")
    if any(c.isspace() or not c.isprintable() for c in url):  # C0, DEL, C1, U+2028...
        raise InputError(f"{where}: holds white space or control characters (a newline?)")
    m = _SCHEME.match(url)
    scheme = m[1].lower() if m else ""
    if scheme not in LOOKASIDE_SCHEMES:
        raise InputError(f"{where}: not an https://, http:// or file:// URL"
                         + (f" (its scheme is {scheme[:20]!r})" if scheme else ""))
    authority = re.split(r"[/?#]", url[len(scheme) + 3:], maxsplit=1)[0]
    if authority.count("@") > 1:  # readers split it apart differently: a password would leak
        raise InputError(f"{where}: more than one '@' before the host (write an '@' in a user "
                         "name or password as %40)")
    rest = without_userinfo(url)[len(scheme) + 3:]
    if scheme != "file" and not re.match(r"[^/?#]+", rest):
        raise InputError(f"{where}: names no host")
    return url


def has_userinfo(url: str) -> bool:
    return bool(_USERINFO.match(url))


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` after its scheme."""
    return _USERINFO.sub(r"\1", url, count=1)
