"""The project's one container-registry client (``RegistryClient``, client.py): every signer
reads registries through it. Its parts: common.py (media types, limits, RegistryError,
Manifest), credentials.py (where credentials come from), transport.py (the session, retries,
deadlines, size caps and auth), client.py (manifests and indexes, lookaside reads, cosign's
attachments, and RegistrySettings, the config's ``registry`` section)."""

from __future__ import annotations

from ..formats.cosign import COSIGN_SIGNATURE_ANNOTATION, COSIGN_SIMPLESIGNING
from ..formats.oci import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from .client import RegistryClient, RegistrySettings
from .common import (
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    Manifest,
    PastDeadline,
    RegistryError,
    api_host,
    repository_path,
)
from .credentials import find_credentials
from .transport import _Reply

__all__ = ["COSIGN_SIGNATURE_ANNOTATION", "COSIGN_SIMPLESIGNING", "DOCKER_LIST",
           "DOCKER_MANIFEST", "MAX_MANIFEST_BYTES", "MAX_SIGNATURE_BYTES", "OCI_INDEX",
           "OCI_MANIFEST", "Manifest", "PastDeadline", "RegistryClient", "RegistryError",
           "RegistrySettings", "_Reply", "api_host", "find_credentials", "repository_path"]
