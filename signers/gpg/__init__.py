"""The gpg signer (``SIGNER``, the default): atomic container signatures made with a local
GnuPG key, written to the lookaside tree (signers.lookaside, shared with msg).

signer.py (GpgSigner: a private GnuPG home per run, a test signature per key, a thread pool of
gpg processes), gnupg.py (running gpg: batch mode, the passphrase on a pipe, never on argv; also
used by the test bed's signing server). Signatures are checked by signaction.formats.openpgp,
never by gpg."""

from __future__ import annotations

from ..tools import Running
from .gnupg import GpgError, gpg_sign
from .signer import GpgSigner

SIGNER = GpgSigner

__all__ = ["SIGNER", "GpgError", "GpgSigner", "Running", "gpg_sign"]
