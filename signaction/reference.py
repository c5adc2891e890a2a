"""Docker references, parsed with the grammar of distribution/reference.

Only what a signature needs is accepted: a fully qualified name (registry host first), a tag
(the identity written into the signature) and, separately, a sha256 digest. The grammar admits no
``..``, no empty path component and no ``/`` inside a component, so a parsed reference is also safe
to turn into a path below the output folder (the artifact writer still checks, independently).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from .errors import InputError

_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_HEX64 = r"[a-f0-9]{64}"

_REFERENCE_RE = re.compile(
    rf"(?P<host>{_HOST})/(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>sha256:{_HEX64}))?"
)
_DIGEST_RE = re.compile(rf"sha256:{_HEX64}")
_NAME_MAX = 255  # distribution/reference: the whole name, host included


@dataclass(frozen=True, slots=True)
class Reference:
    """``host/path:tag`` as it goes into a signature's ``docker-reference``."""

    host: str  # "registry.example.com" or "127.0.0.1:5000"
    path: str  # "ns/app": every namespace and the repository name
    tag: str

    def __str__(self) -> str:
        return f"{self.host}/{self.path}:{self.tag}"

    @property
    def repository(self) -> str:
        """``host/path``: the repository, without tag."""
        return f"{self.host}/{self.path}"


def _looks_like_host(first: str) -> bool:
    # The docker rule: the first component names a registry when it has a dot or a port, or is
    # localhost. "library/ubuntu" or "ubuntu" are Docker Hub short names, which we refuse.
    return "." in first or ":" in first or first == "localhost"


def parse_reference(text: str, *, allow_digest: bool = False) -> tuple[Reference, str | None]:
    """Parse ``host/ns/name:tag`` (with ``@sha256:...`` when ``allow_digest``).

    Returns the reference and the digest it carried (or None). Raises InputError with a message
    that says what is wrong; the caller prefixes where the text came from.
    """
    m = _REFERENCE_RE.fullmatch(text)
    if not m:
        first = text.split("/", 1)[0]
        if "/" not in text or not _looks_like_host(first):
            raise InputError(
                f"{text!r} is not fully qualified: it must start with the registry host "
                "(e.g. registry.example.com/ns/app:1.0)"
            )
        if any(c.isupper() for c in text.split("/", 1)[1].split(":", 1)[0].split("@", 1)[0]):
            raise InputError(f"{text!r}: repository names must be lowercase")
        raise InputError(f"{text!r} is not a valid docker reference")
    host, path, tag, digest = m.group("host", "path", "tag", "digest")
    if not _looks_like_host(host):
        raise InputError(
            f"{text!r} is not fully qualified: {host!r} is not a registry host "
            "(a host has a dot or a port, or is localhost)"
        )
    if len(host) + 1 + len(path) > _NAME_MAX:
        raise InputError(f"{text!r}: the repository name is longer than {_NAME_MAX} characters")
    if tag is None:
        raise InputError(
            f"{text!r} has no tag: the tag is the identity written into the signature "
            "(e.g. :1.0); the digest is given separately"
        )
    if digest is not None and not allow_digest:
        raise InputError(f"{text!r}: give the digest separately, not inside the reference")
    # hosts and tags repeat across a plan's references: one string each (~110 B per image)
    return Reference(sys.intern(host), path, sys.intern(tag)), digest


def check_digest(text: str) -> str:
    """Return the digest if it is ``sha256:`` + 64 lowercase hex, else raise InputError."""
    if _DIGEST_RE.fullmatch(text):
        return text
    if text.lower().startswith("sha256:") and _DIGEST_RE.fullmatch(text.lower()):
        raise InputError(f"digest {text!r} must be lowercase hex")
    if ":" in text and not text.startswith("sha256:"):
        raise InputError(f"digest {text!r}: only sha256 digests are supported")
    raise InputError(f"digest {text!r} is not sha256: followed by 64 hex characters")
