"""OCI and Docker media types, descriptors, and the referrers index (OCI distribution 1.1): what
the referrers API answers and what the referrers tag schema's fallback tag ``sha256-<hex>``
holds, built and read without I/O."""

from __future__ import annotations

import hashlib
import json
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
EMPTY = "application/vnd.oci.empty.v1+json"  # the empty descriptor's type
EMPTY_JSON = b"{}"  # its blob: sha256:44136fa3...
MAX_REFERRERS = 1000  # descriptors of one referrers index read at most


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    """An OCI descriptor of ``data`` (mediaType, size, digest, in go-containerregistry's order)."""
    return {"mediaType": media_type, "size": len(data),
            "digest": "sha256:" + hashlib.sha256(data).hexdigest()}


def referrer_descriptor(raw: bytes) -> dict[str, Any]:
    """The descriptor a referrers index lists for the manifest ``raw``: its media type, size,
    digest, ``artifactType`` (the manifest's, else its config's media type: the spec's rule)
    and its annotations. ValueError if ``raw`` is not a JSON manifest."""
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON manifest")
    found = descriptor(str(doc.get("mediaType") or OCI_MANIFEST), raw)
    config = doc.get("config")
    kind = doc.get("artifactType") or (config.get("mediaType") if isinstance(config, dict)
                                       else None)
    if isinstance(kind, str) and kind:
        found["artifactType"] = kind
    if isinstance(doc.get("annotations"), dict) and doc["annotations"]:
        found["annotations"] = doc["annotations"]
    return found


def index_manifests(raw: bytes | None) -> list[dict[str, Any]]:
    """The descriptors of a referrers index (the API's answer or the fallback tag's content);
    [] for none. ValueError if it is not an OCI image index, or lists more than
    MAX_REFERRERS."""
    if raw is None:
        return []
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict) or doc.get("mediaType", OCI_INDEX) != OCI_INDEX or \
            doc.get("schemaVersion") != 2:
        raise ValueError("not an OCI image index")
    manifests = doc.get("manifests") or []
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise ValueError("its manifests are not a list of descriptors")
    if len(manifests) > MAX_REFERRERS:
        raise ValueError(f"{len(manifests)} referrers, more than the {MAX_REFERRERS} read")
    return manifests


def with_referrer(raw: bytes | None, added: dict[str, Any]) -> bytes | None:
    """The fallback tag's index with ``added`` listed (the entries already there kept as they
    are, sorted by digest as go-containerregistry sorts them); None when it is listed already.
    ValueError as index_manifests."""
    manifests = index_manifests(raw)
    if any(m.get("digest") == added["digest"] for m in manifests):
        return None
    manifests = sorted([*manifests, added], key=lambda m: str(m.get("digest")))
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests},
                      separators=(",", ":")).encode()


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag of ``digest``: ``sha256-<hex>``."""
    return digest.replace(":", "-")
