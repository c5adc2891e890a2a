"""The lookaside layout of containers-signature(5) as this project writes and reads it: a tree
per registry, ``<registry folder>/<repository path>@sha256=<hex>/signature-N``, its base URL
with ``{registry}`` standing for the registry's folder."""

from __future__ import annotations


def registry_folder(host: str) -> str:
    """The folder of registry ``host`` (``host:port`` as ``host_port``: upload-safe)."""
    return host.replace(":", "_")


def lookaside_base(base_url: str, host: str) -> str:
    """``base_url`` with ``{registry}`` replaced by registry ``host``'s folder."""
    return base_url.replace("{registry}", registry_folder(host))
