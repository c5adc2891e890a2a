"""The signers, each a package of this package behind the interface in base.py: gpg/, msg/,
cosign/.

A signer is any package (or module) here that defines ``SIGNER``, its Signer class: the run
finds them here (``available``), so adding one means adding its package, and nothing in the
core. No signer imports another (make lint's import contracts). The rest are what signers share:

- base: the interface (Signer, Outcome, Options, skip_signed);
- tools: running tools (child_env, run_tool, Running) and the thread pool (run_pool);
- lookaside: the lookaside output and verify mode of atomic container signatures (gpg, msg):
  LookasideSigner, LookasideFormat, signature_problem.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from functools import cache

from signaction.errors import InputError

from .base import Signer

log = logging.getLogger(__name__)


@cache
def available() -> dict[str, type[Signer]]:
    """Every signer of this package, by name, in the order of their modules' names (gpg
    first: the default)."""
    found: dict[str, type[Signer]] = {}
    for module in pkgutil.iter_modules(__path__):
        signer = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SIGNER", None)
        if signer is not None:
            found[signer.name] = signer
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != "gpg", kv[0])))


def signer_class(name: str) -> type[Signer]:
    signers = available()
    if name not in signers:
        raise InputError(f"signer {name!r} is not available in this version "
                         f"(available: {', '.join(signers)})")
    return signers[name]
