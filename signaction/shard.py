"""A run's share of the plan (``--shard K/N``), for CI engines that fan one release out over N
jobs (a GitHub matrix, a Tekton matrix), and the manifest that lets ``merge`` put them together.

Every shard validates the whole plan first (a bad line fails every shard the same way), then keeps
the images whose hash falls in its share. The hash is of what identifies an image as given (its
identity, its digest, where it is), not of its place in the list: all keys and all platforms of
one image land in the same shard (platforms are found after the share is taken), reruns pick the
same share, and an image added to the list does not move the others. Each shard's results.json
carries its manifest: K, N, the fingerprint of the whole ordered plan, and the plan position of
each image it signed, so that merge can refuse a missing shard or a shard of another plan and
put every result back in plan order.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .plan import Image, Plan, platform_origin

_SHARD = re.compile(r"\s*([0-9]{1,6})\s*/\s*([0-9]{1,6})\s*")
MAX_SHARDS = 10_000


@dataclass(frozen=True)
class Shard:
    index: int  # K, from 1
    count: int  # N

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, where: str) -> Shard:
    """``K/N`` with 1 <= K <= N <= MAX_SHARDS."""
    m = _SHARD.fullmatch(text)
    if not m:
        raise InputError(f"{where}: {text.strip()[:40]!r} is not K/N (e.g. 3/8: the third of "
                         "eight shards)")
    index, count = int(m.group(1)), int(m.group(2))
    if not 1 <= count <= MAX_SHARDS:
        raise InputError(f"{where}: {text.strip()!r}: N must be 1 to {MAX_SHARDS}")
    if not 1 <= index <= count:
        raise InputError(f"{where}: {text.strip()!r}: K must be 1 to N ({count})")
    return Shard(index, count)


def _identity(image: Image) -> bytes:
    return "\0".join((str(image.reference), image.digest or "",
                      str(image.location or ""))).encode()


def owner(image: Image, count: int) -> int:
    """The shard (1..count) that signs ``image``."""
    return int.from_bytes(hashlib.sha256(_identity(image)).digest()[:8], "big") % count + 1


def fingerprint(plan: Plan) -> str:
    """sha256 of the whole plan as given, in order: each image (identity, digest, location),
    each key (as resolved, with its name), what is signed."""
    h = hashlib.sha256(json.dumps({"kind": plan.kind, "keys": [[k.key, k.name] for k in
                                                               plan.keys]}).encode())
    for image in plan.images:
        h.update(b"\n" + _identity(image))
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True)
class Share:
    shard: Shard
    plan: Plan  # the images this shard signs, in plan order
    fingerprint: str  # of the whole plan
    total: int  # images in the whole plan
    positions: dict[str, int]  # an image's origin -> its position in the whole plan


def take_share(plan: Plan, shard: Shard) -> Share:
    """The images of ``plan`` that ``shard`` owns (images only: files are signed in one run)."""
    if plan.files:
        raise InputError("--shard splits images between runs; files (clear-sign-files, "
                         "blob-files) are signed in one run")
    mine = [(n, image) for n, image in enumerate(plan.images)
            if owner(image, shard.count) == shard.index]
    return Share(shard, Plan(tuple(image for _, image in mine), plan.keys, plan.duplicates),
                 fingerprint(plan), len(plan.images), {image.origin: n for n, image in mine})


def manifest(share: Share, images: tuple[Image, ...]) -> dict[str, Any]:
    """results.json's ``shard``: K, N, the whole plan's fingerprint and size, and for each image
    this shard signed (``images``: its completed plan, platforms included) the position in the
    whole plan of the image it came from."""
    return {"index": share.shard.index, "count": share.shard.count,
            "plan": share.fingerprint, "plan_images": share.total,
            "keys": len(share.plan.keys), "items": [share.positions[_given(i)] for i in images]}


def _given(image: Image) -> str:
    """The origin of the image as given, for a platform manifest found in its index."""
    suffix = platform_origin("", image.platform or "")
    if image.platform and image.origin.endswith(suffix):
        return image.origin[:-len(suffix)]
    return image.origin
