"""The registry client's vocabulary: media types, limits, RegistryError, a manifest as served,
and how a reference names its API host and repository path."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..formats.oci import DOCKER_LIST, DOCKER_MANIFEST, INDEX_TYPES, OCI_INDEX, OCI_MANIFEST
from ..reference import Reference
from ..safeload import parse_json

MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_SIGNATURE_BYTES = 1024 * 1024
# signature layers of one .sig manifest read at most (each is a blob to fetch and a signature
# to check); more is taken for a hostile or broken registry, as containers/image takes more than
# 128 lookaside signatures. Platform manifests of one index at most.
MAX_SIGNATURE_LAYERS = 1000
RACE_ATTEMPTS = 8  # writes of one tag (.sig, referrers) while other writers keep changing it
MAX_PLATFORMS = 1024
_MAX_ERROR_BODY = 64 * 1024  # of an error response, read for its error code/message only

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_SHA256_RE = re.compile(r"sha256:[a-f0-9]{64}")
_TOKEN_SLACK = 10.0  # seconds before a token's expiry at which it is no longer used


class RegistryError(Exception):
    """A registry (or lookaside server) operation failed. One line: the reference, what was being
    done, and what went wrong (HTTP status, the registry's error code and message). Never holds a
    credential or a token. ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class PastDeadline(RegistryError):
    """A request given up because waiting for its next attempt would pass its deadline (a
    Retry-After or the backoff): ``status`` is the last answer's (None: a connection or read
    error), ``delay`` the seconds that retry would have waited."""

    def __init__(self, message: str, status: int | None, delay: float):
        super().__init__(message, status)
        self.delay = delay


@dataclass(frozen=True)
class Deadline:
    """When a request's answer must be complete, retries included (``at``, on
    time.monotonic()), and what messages call it ("the run's deadline")."""
    at: float
    name: str


@dataclass(frozen=True)
class Manifest:
    digest: str  # sha256 of ``raw``, checked
    media_type: str
    raw: bytes

    @property
    def is_index(self) -> bool:
        """An OCI image index or a Docker manifest list."""
        return self.media_type in INDEX_TYPES

    def platforms(self) -> list[tuple[str, str]]:
        """``(digest, "os/arch[/variant]")`` of each child of an index, in index order; [] for a
        single manifest. A child without a platform (e.g. an artifact) is ``"unknown/unknown"``,
        as buildx writes for its attestation manifests: the caller decides what to sign."""
        if not self.is_index:
            return []
        where = f"the index {self.digest}"
        try:
            doc = parse_json(self.raw)
        except ValueError:
            raise RegistryError(f"{where} is not valid JSON") from None
        children = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(children, list):
            raise RegistryError(f"{where} has no list of manifests")
        if len(children) > MAX_PLATFORMS:
            raise RegistryError(f"{where} lists {len(children)} manifests, more than the "
                                f"{MAX_PLATFORMS} signed or checked per image")
        out = []
        for n, child in enumerate(children, 1):
            digest = child.get("digest") if isinstance(child, dict) else None
            if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
                raise RegistryError(f"{where}: manifest {n}'s digest is not sha256:<64 hex>")
            platform = child.get("platform")
            platform = {} if platform is None else platform
            if not isinstance(platform, dict):
                raise RegistryError(f"{where}: manifest {n}'s platform is not an object")
            fields = [platform.get(k) for k in ("os", "architecture", "variant")]
            if not all(f is None or isinstance(f, str) and _PLATFORM_FIELD.fullmatch(f)
                       for f in fields):
                raise RegistryError(f"{where}: manifest {n}'s platform has an os, architecture "
                                    "or variant that is not a short plain name")
            os_, arch, variant = fields
            os_, arch = os_ or "unknown", arch or "unknown"
            out.append((digest, f"{os_}/{arch}/{variant}" if variant else f"{os_}/{arch}"))
        return out


_PLATFORM_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")  # linux, arm64, v8, ppc64le



# -- hosts, paths, credentials ----------------------------------------------------------------

def api_host(host: str) -> str:
    """The host that serves the registry API for a reference host (Docker Hub's differs)."""
    return DOCKER_HUB_API if host in _DOCKER_HUB_ALIASES else host


def repository_path(ref: Reference) -> str:
    """The repository path the API uses: Docker Hub's single-name repositories are ``library/x``."""
    if ref.host in _DOCKER_HUB_ALIASES and "/" not in ref.path:
        return f"library/{ref.path}"
    return ref.path
