"""The plan, completed against the registry: tags looked up, multi-arch images expanded.

An image given without a digest is signed by the digest its tag points to NOW (looked up once, here,
and written into results.json), never by the tag: the tag may move while the run signs. A multi-arch
image (an OCI index or a Docker manifest list) gets a signature for the index AND for every platform
manifest in it, each with the same identity: podman and skopeo check the signature of the platform
manifest they pull, so a signature on the index alone protects nothing.

Everything here happens before anything is signed; a lookup that fails stops the run with the image
named (exit 2), so a run never signs half of what it was asked to.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from .errors import InputError
from .plan import Image, Plan, platform_origin

if TYPE_CHECKING:  # imported when needed: requests takes time to import, most runs need none
    from .registry import RegistryClient

log = logging.getLogger(__name__)

WORKERS = 8  # registry lookups at once


def needs_registry(plan: Plan, expand: bool) -> bool:
    return expand or any(i.digest is None for i in plan.images)


def complete_plan(plan: Plan, client: RegistryClient, *, expand: bool) -> Plan:
    """``plan`` with every digest known and, if ``expand``, every index's platform manifests
    added right after their index. Raises InputError naming the image whose lookup failed."""
    if not needs_registry(plan, expand):
        return plan
    from .registry import RegistryError

    def lookup(image: Image) -> list[Image]:
        try:
            digest = image.digest
            if digest is None:
                digest = client.resolve(image.source)
                log.info("%s: %s is %s now; signing that digest", image.origin, image.source,
                         digest)
            found = [Image(image.reference, digest, image.origin, image.location)]
            if expand:
                manifest = client.manifest(image.source, digest)
                platforms = manifest.platforms()
                if platforms:
                    log.info("%s is a multi-arch image: also signing its %d platform "
                             "manifest(s) (%s)", image.source, len(platforms),
                             ", ".join(p for _, p in platforms))
                found += [Image(image.reference, d, platform_origin(image.origin, p),
                                image.location, platform=p) for d, p in platforms]
            return found
        except RegistryError as e:
            raise InputError(f"{image.origin}: {e}") from None

    with ThreadPoolExecutor(WORKERS, thread_name_prefix="registry") as pool:
        expanded = [found for group in pool.map(lookup, plan.images) for found in group]
    images: dict[tuple, Image] = {}
    for image in expanded:
        images.setdefault((image.reference, image.digest, image.source), image)
    return Plan(tuple(images.values()), plan.keys,
                plan.duplicates + len(expanded) - len(images))
