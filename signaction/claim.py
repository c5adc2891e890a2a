"""The "atomic container signature" claim of containers-signature(5)."""

from __future__ import annotations

import json


def atomic_claim(reference: str, digest: str, creator: str, timestamp: int | None) -> bytes:
    """The JSON that a simple-signing signature wraps.

    ``critical`` holds exactly type, image and identity (readers reject unknown critical keys);
    ``optional.timestamp`` must be an integer (skopeo rejects a float).
    """
    optional: dict[str, object] = {"creator": creator}
    if timestamp is not None:
        optional["timestamp"] = int(timestamp)
    claim = {
        "critical": {
            "type": "atomic container signature",
            "image": {"docker-manifest-digest": digest},
            "identity": {"docker-reference": reference},
        },
        "optional": optional,
    }
    return json.dumps(claim).encode("utf-8")
