"""The signers, each a package of this package behind the interface in base.py: gpg/, msg/,
cosign/.

A signer is a package here that defines ``SIGNER``, its Signer class, and is listed in
``SIGNERS`` (its name and what it signs with, for --help): the run imports only the signer it
uses (``signer_class``), so that a gpg run never pays for cosign's cryptography and TUF, nor
--help for any of them. Adding one means adding its package and its line in SIGNERS, nothing in
the core; tests/test_cold_start.py checks the table against every package that defines SIGNER.
No signer imports another (make lint's import contracts). The rest are what signers share:

- base: the interface (Signer, Outcome, Options, skip_signed);
- tools: running tools (child_env, run_tool, Running) and the thread pool (run_pool);
- lookaside: the lookaside output and verify mode of atomic container signatures (gpg, msg):
  LookasideSigner, LookasideFormat, signature_problem.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from typing import TYPE_CHECKING

from signaction.errors import InputError

if TYPE_CHECKING:
    from .base import Signer

log = logging.getLogger(__name__)

# name (= its package here) -> its Signer's ``summary``, in --help's order (gpg first: the
# default). Known without importing the packages (--help, the choices of --signer).
SIGNERS: dict[str, str] = {
    "gpg": "a local GnuPG key",
    "msg": "a remote signing server over an AMQP 1.0 bus",
    "cosign": "sigstore signatures, in-process or by the cosign binary, in the registry",
}


def summaries() -> dict[str, str]:
    """Every signer's name and what it signs with (--help), without importing any."""
    return dict(SIGNERS)


def signer_class(name: str) -> type[Signer]:
    """The Signer class of ``name``: only its package is imported."""
    if name not in SIGNERS:
        raise InputError(f"signer {name!r} is not available in this version "
                         f"(available: {', '.join(SIGNERS)})")
    signer: type[Signer] = importlib.import_module(f"{__name__}.{name}").SIGNER
    return signer


@cache
def available() -> dict[str, type[Signer]]:
    """Every signer's class, by name, in SIGNERS' order: each package imported (merge mode,
    which asks each what it writes after a merge)."""
    return {name: signer_class(name) for name in SIGNERS}
