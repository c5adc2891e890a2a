"""The cosign signer (``SIGNER``): sigstore signatures attached in the registry as the legacy
``sha256-<hex>.sig`` tag that podman, skopeo and cosign read; signed in-process for key files
and keyless (native.py: key files, the .sig tag; services.py: Rekor, Fulcio, identity tokens),
through the cosign binary for KMS URIs. The claim, layers, manifest and the trust decision on a
signature are signaction.formats.cosign's.

common.py (settings, helpers), verify.py (verify mode and skip-signed), format.py (the output
tree, verification/ files, the attach script), binary.py (the cosign-binary path), signer.py
(CosignSigner: config, the choice of path, the in-process path, trust for verify mode)."""

from __future__ import annotations

from signaction.formats.cosign import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    CosignTrust,
)
from signaction.formats.fulcio import read_certificate

from .common import _seconds, rekor_uuid, verify_signature
from .format import CosignFormat, CosignSignature, write_attach_script
from .signer import CosignSigner
from .verify import cosign_problem, cosign_verifier

SIGNER = CosignSigner

__all__ = ["BUNDLE_ANNOTATION", "CERTIFICATE_ANNOTATION", "CHAIN_ANNOTATION", "SIGNER",
           "CosignFormat", "CosignSignature", "CosignSigner", "CosignTrust", "_seconds",
           "cosign_problem", "cosign_verifier", "read_certificate", "rekor_uuid",
           "verify_signature", "write_attach_script"]
