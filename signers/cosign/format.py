"""How cosign signatures are kept and described: the output folder's tree (payload and
signature), verification/ files for podman and cosign, and the attach script."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signaction.artifacts import ATTESTATIONS, INTOTO_SUFFIX, key_data
from signaction.inputs import Inputs
from signaction.plan import Image
from signaction.registry import RegistryClient
from signaction.signing import (
    Check,
    FollowUp,
    Recorded,
    SignatureFormat,
    Store,
    Verification,
)

from .common import (
    ATTACH_SCRIPT,
    ROOT_FILES,
    TREE,
)
from .verify import (
    cosign_verifier,
)

log = logging.getLogger("signers.cosign")
TRUSTED_ROOT_COPY = "trusted_root.json"  # verification/: the trusted root the run used
BUNDLE_SUFFIX = ".sigstore.json"  # a Sigstore bundle's file name, as cosign 3 names them
# CosignSignature's bundle facts -> their results.json keys
BUNDLE_FIELDS = {"bundle_referrer": "bundle_referrer", "bundle_stored": "bundle_stored",
                 "bundle_log_index": "bundle_rekor_log_index",
                 "bundle_log_uuid": "bundle_rekor_entry_uuid"}


@dataclass(frozen=True, slots=True)
class CosignSignature:
    """One cosign signature: the simple-signing payload it signs, and the signature (base64);
    keyless, the Fulcio certificate (PEM) and its identity (SAN) and OIDC issuer; with the
    transparency log, the Rekor entry's log index (as cosign printed it) and UUID."""

    payload: bytes = b""  # legacy: the simple-signing payload (b"": a bundle alone)
    signature: bytes = b""
    certificate: bytes | None = None
    identity: str | None = None
    issuer: str | None = None
    log_index: int | None = None
    log_uuid: str | None = None
    bundle: bytes | None = None  # the Sigstore bundle (JSON), when bundles are written
    bundle_referrer: str | None = None  # the digest of the referrer manifest that holds it
    bundle_stored: str | None = None  # where it is listed: "referrers API" or "tag sha256-..."
    bundle_log_index: int | None = None
    bundle_log_uuid: str | None = None
    attestations: tuple[Any, ...] = ()  # native.Attested, one for each attestation made


class CosignFormat(SignatureFormat):
    """cosign's legacy attachments: a copy of each signature in the output folder,
    ``cosign/<registry>/<ns>/<name>@sha256=<hex>/signature-N.sig`` (base64) with its
    ``signature-N.payload`` (and, keyless, ``signature-N.crt``: the Fulcio certificate);
    verified by podman/skopeo as ``sigstoreSigned`` from the ``sha256-<hex>.sig`` tag in the
    registry. ``attach_later`` (upload false): the signatures are only in the output folder, and
    ``cosign-attach.sh`` attaches them later. ``tlog``: signatures are logged in Rekor;
    ``roots``: the trust roots' files (ROOT_FILES' keys -> bytes) copied into verification/;
    ``predicate_types``: the in-toto predicate types (URIs) the run attests for every image."""

    own_paths = (((TREE,), True), ((ATTACH_SCRIPT,), False))

    def __init__(self, attach_later: bool = False, tlog: bool = False,
                 roots: dict[str, bytes] | None = None, formats: tuple[str, ...] = ("legacy",),
                 predicate_types: tuple[str, ...] = ()):
        self.formats = formats  # "legacy" (the .sig tag), "bundle" (a Sigstore bundle referrer)
        self.attach_later = attach_later
        self.tlog = tlog
        self.roots = roots or {}
        self.trusted_root: bytes | None = None  # trusted_root.json, when the run used one
        self.keyless = False  # set by the signer when the plan has the key keyless
        # what verification/ requires beside the signatures (policy-controller's attestations):
        # the types asked for, not those made, so every shard of a plan writes the same files
        self.predicate_types = predicate_types
        self._lock = threading.Lock()
        # keyless identities signed: (identity, issuer) -> the images (REF@DIGEST) signed
        self.identities: dict[tuple[str, str], list[str]] = defaultdict(list)

    def write(self, artifacts: Store, image: Image, signature: Any) -> dict[str, Any]:
        companions: dict[str, bytes] = {}
        if signature.payload:
            companions[".payload"] = signature.payload
        if signature.certificate:
            companions[".crt"] = signature.certificate
        if signature.bundle and signature.payload:
            companions[BUNDLE_SUFFIX] = signature.bundle
        main, suffix = (signature.signature, ".sig") if signature.payload else (
            signature.bundle, BUNDLE_SUFFIX)
        path = artifacts.write_signature(TREE, image.reference, image.known_digest, main,
                                         suffix=suffix, companions=companions)
        fields: dict[str, Any] = {"signature_path": path,
                                  # what was written: legacy, bundle or both
                                  "signature_format": "both" if signature.payload and
                                  signature.bundle else ("legacy" if signature.payload
                                                         else "bundle")}
        if signature.payload:
            fields["payload_path"] = path.with_suffix(".payload")
        if signature.bundle:
            fields["bundle_path"] = Path(str(path).removesuffix(suffix) + BUNDLE_SUFFIX)
            for name, field in BUNDLE_FIELDS.items():
                if getattr(signature, name) is not None:
                    fields[field] = getattr(signature, name)
        if signature.certificate:
            fields["certificate_path"] = path.with_suffix(".crt")
            fields["certificate_identity"] = signature.identity
            fields["certificate_oidc_issuer"] = signature.issuer
            with self._lock:
                self.identities[(signature.identity, signature.issuer)].append(
                    f"{image.source.host}/{image.source.path}@{image.known_digest}")
        if signature.attestations:
            fields["attestations"] = [self._attestation(artifacts, image, made)
                                      for made in signature.attestations]
        if signature.log_index is not None:
            fields["rekor_log_index"] = signature.log_index
        if signature.log_uuid is not None:
            fields["rekor_entry_uuid"] = signature.log_uuid
        return fields

    def _attestation(self, artifacts: Store, image: Image, made: Any) -> dict[str, Any]:
        """One attestation's envelopes written as ``attestations/<registry>/<repo>@sha256=<hex>/
        <name>.intoto.jsonl`` (one DSSE envelope a line; a second key's are added to the same
        file), and its results.json entry."""
        with self._lock:  # (a file per image and type: two keys of one image add to one file)
            path = artifacts.write_attestation(ATTESTATIONS, image.reference,
                                               image.known_digest, made.name + INTOTO_SUFFIX,
                                               made.envelopes)
        entry: dict[str, Any] = {"predicate_type": made.predicate_type,
                                 "path": artifacts.relative(path)}
        for name, value in made.facts.items():
            entry[BUNDLE_FIELDS.get(name, name)] = value
        return entry

    def verification(self, artifacts: Store, hosts: list[str],
                     public_keys: bytes | None) -> Verification:
        pems = re.findall(rb"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----\s*",
                          public_keys or b"", re.S)
        folder = os.path.abspath(os.path.join(artifacts.root, "verification"))
        files = {"signing-keys.pub": b"".join(pems)} if pems else {}
        files.update({ROOT_FILES[k][1]: data for k, data in self.roots.items()})
        if self.trusted_root:
            files[TRUSTED_ROOT_COPY] = self.trusted_root
        # podman/skopeo check a signature's Rekor SET where cosign attached it (upload), for a
        # key when the run knows Rekor's key; keyless always (the policy needs it: see README)
        rekor = {"rekorPublicKeyPath": os.path.join(folder, ROOT_FILES[
            "rekor_public_key_file"][1])} if self.tlog and not self.attach_later else {}
        keys = [{**key_data(pem), **(rekor if "rekor_public_key_file" in self.roots else {})}
                for pem in pems]
        emails = [(who, issuer) for who, issuer in self.identities if "@" in who
                  and "://" not in who]
        others = [(who, issuer) for who, issuer in self.identities if (who, issuer) not in emails]
        keyless = [{"fulcio": {"caPath": os.path.join(folder, ROOT_FILES["fulcio_root_file"][1]),
                               "oidcIssuer": issuer, "subjectEmail": who}, **rekor}
                   for who, issuer in emails]
        if not keys and not keyless and not self.keyless and not others:
            keys = [{"keyPath": "/REPLACE/WITH/THE/COSIGN/PUBLIC/KEY.pub"}]
        # One requirement per key and identity: every image was signed with every key, and
        # podman requires each requirement of a scope to be met.
        requirement: list[dict[str, Any]] = [
            {"type": "sigstoreSigned", **key, "signedIdentity": {"type": "matchRepoDigestOrExact"}}
            for key in keys + keyless] or [{"type": "reject"}]
        if others:
            files["cosign-verify.sh"] = verify_script(others, self.identities)
        lines = ["# podman/skopeo read cosign signatures attached in these registries.", "docker:"]
        for host in hosts:
            lines += [f"  {json.dumps(host)}:", "    use-sigstore-attachments: true"]
        readme = self._readme(folder, files, others)
        if "legacy" not in self.formats:
            readme += _README_BUNDLE_ONLY
        return Verification(requirement, lines, readme, files,
                            registries={h: {"use-sigstore-attachments": True} for h in hosts},
                            identities=sorted(self.identities),
                            public_rekor=bool(rekor) and "rekor_public_key_file" not in self.roots,
                            sigstore_formats=self.formats,
                            predicate_types=tuple(self.predicate_types))

    def _readme(self, folder: str, files: dict[str, bytes],
                others: list[tuple[str, str]]) -> str:
        text = _README
        if self.keyless or self.tlog:
            text += _README_SIGSTORE.format(folder=folder, have=", ".join(
                f"`{name}`" for name in sorted(files) if name.endswith((".pem", ".pub"))
                or name == TRUSTED_ROOT_COPY)
                or "none (the public Sigstore's: see below)")
        if others:
            text += _README_URI.format(identities="\n".join(
                f"    --certificate-identity {_sh(who)} --certificate-oidc-issuer {_sh(issuer)}"
                for who, issuer in others))
        elif self.keyless and not self.identities:
            text += "\nNo keyless signature was made in this run: its identity is not known.\n"
        return text

    def verifier(self, registry: RegistryClient, inputs: Inputs,
                 trusted: dict[str, Any]) -> Check:
        from signaction.formats.attestation import provenance_check

        from .attest import required
        return cosign_verifier(registry, trusted, self.formats, required(inputs),
                               provenance_check(inputs.provenance_repository,
                                                inputs.provenance_workflow))

    def after_run(self, artifacts: Store, entries: Iterable[Recorded]) -> list[FollowUp]:
        if not self.attach_later:
            return []
        signed = [(e.item.container.source, e.item.container.known_digest,
                   e.fields["payload_path"], e.fields["signature_path"])
                  for e in entries if "payload_path" in e.fields]
        return [(ATTACH_SCRIPT, lambda: write_attach_script(artifacts, signed))]


def verify_script(identities: Iterable[tuple[str, str]],
                  images: dict[tuple[str, str], list[str]]) -> bytes:
    """``cosign-verify.sh``: one ``cosign verify`` per image signed keyless with an identity
    podman cannot match (a URI), with the identity and issuer of its certificate."""
    lines = ["#!/bin/sh",
             "# Verifies the keyless cosign signatures of this run whose identity podman cannot",
             "# match (not an email). The trust roots: cosign's own (the public Sigstore), or",
             "# SIGSTORE_ROOT_FILE, SIGSTORE_CT_LOG_PUBLIC_KEY_FILE and SIGSTORE_REKOR_PUBLIC_KEY",
             "# (the copies here, see README.md). Extra arguments go to every `cosign verify`.",
             "set -eu"]
    for who, issuer in identities:
        for ref in images[(who, issuer)]:
            lines.append(f'cosign verify "$@" --certificate-identity {_sh(who)} '
                         f"--certificate-oidc-issuer {_sh(issuer)} {_sh(ref)} >/dev/null")
    return ("\n".join(lines) + "\n").encode()


def write_attach_script(artifacts: Store, signatures: Iterable[tuple[Any, str, str, str]]
                        ) -> Path:
    """``cosign-attach.sh``: attaches the cosign signatures written here (made with upload
    false) to their images, for a later job that may write to the registry. ``signatures``:
    (where the image is, its digest, payload path, signature path), paths relative to the
    output folder."""
    lines = ["#!/bin/sh",
             "# Attaches the cosign signatures of this run (signed with upload: false) to",
             "# their images. Run it where cosign can write to the registry (docker login,",
             "# or DOCKER_CONFIG); extra arguments go to every `cosign attach signature`,",
             "# e.g.  sh cosign-attach.sh --allow-http-registry=true",
             "set -eu", 'cd "$(dirname "$0")"']
    for location, digest, payload, signature in signatures:
        target = f"{location.host}/{location.path}@{digest}"
        lines.append(f'cosign attach signature "$@" --payload {_sh(payload)} '
                     f'--signature {_sh(signature)} {_sh(target)}')
    return artifacts.write_file([ATTACH_SCRIPT], ("\n".join(lines) + "\n").encode(), mode=0o755)


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


_README = """\
# Verifying these cosign signatures

- `policy.json` accepts exactly the repositories signed in this run, with a cosign signature by
  each signing key (`signing-keys.pub`, also inlined as keyData) and each keyless identity with
  an email address (see below), for the image identity signed (the reference with its tag), and
  rejects everything else.
- `registries.d/container-sign-action.yaml` turns on `use-sigstore-attachments`, so podman and
  skopeo look for the `sha256-<hex>.sig` tag next to each image.

Try it (skopeo 1.13 or later, built with sigstore support):

    skopeo --policy verification/policy.json --registries.d verification/registries.d \\
        copy --all docker://REGISTRY/NS/NAME:TAG oci:/tmp/checked

or, per digest, `cosign verify --key verification/signing-keys.pub REGISTRY/NS/NAME@sha256:...`.
A multi-arch image has a signature for its index and for every platform manifest: `copy --all`
checks each. After copying the image to another registry, copy its signatures with it (e.g.
`cosign copy`), and sign for the name users pull (the identity), not the internal location.
"""


_README_BUNDLE_ONLY = """
These signatures were written as Sigstore bundles only (`signature_format: bundle`): cosign 3
(`cosign verify`) and policy-controller (`signatureFormat: bundle`, in
kubernetes/clusterimagepolicy.yaml) read them; podman, skopeo, CRI-O and bootc do not yet, so
the policy.json here rejects these images for them. Sign with `signature_format: both` for
those consumers.
"""

_README_SIGSTORE = """
## Sigstore: Fulcio certificates and the Rekor transparency log

The trust roots this run used are copied here: {have} (`fulcio_root.pem`: the Fulcio CA
chain; `ctlog.pub`: the certificate transparency log's key; `rekor.pub`: Rekor's key; with a
trusted root or TUF, `trusted_root.json` too: all of them in one file, the form cosign 3 takes
as `cosign verify --trusted-root trusted_root.json`).
`policy.json` names them by the absolute path of this folder where it was written:

    {folder}

Where you install the policy (e.g. `/etc/containers/policy.json`), put the files in a folder of
their own, e.g. `/etc/containers/sigstore/`, and point the policy there:

    sudo install -d /etc/containers/sigstore
    sudo install -m 0644 fulcio_root.pem ctlog.pub rekor.pub /etc/containers/sigstore/
    sed 's#{folder}/#/etc/containers/sigstore/#g' policy.json | sudo tee /etc/containers/policy.json

A run that used the public Sigstore (no root files configured) copied none: take Fulcio's
root from `https://fulcio.sigstore.dev/api/v1/rootCert` (the last certificate) and Rekor's key
from `https://rekor.sigstore.dev/api/v1/log/publicKey`, or use `cosign verify`, which has them.

- A key-based signature logged in Rekor is required to carry Rekor's signed entry timestamp
  (`rekorPublicKeyPath`) when cosign attached it (upload true) and the run knew Rekor's key
  (`rekor.pub` here); with the public Sigstore's add it yourself if you want the log checked.
- A keyless signature (`fulcio`) is accepted when its certificate chains to `fulcio_root.pem`,
  was issued for the OIDC issuer and the email address signed with (results.json's
  `certificate_oidc_issuer` and `certificate_identity`), and Rekor logged it. podman and skopeo
  match only email identities (`subjectEmail`).

With cosign, any identity (the roots: the copies here, or cosign's own for the public Sigstore):

    SIGSTORE_ROOT_FILE=fulcio_root.pem SIGSTORE_CT_LOG_PUBLIC_KEY_FILE=ctlog.pub \\
    SIGSTORE_REKOR_PUBLIC_KEY=rekor.pub cosign verify \\
        --certificate-identity IDENTITY --certificate-oidc-issuer ISSUER REGISTRY/NS/NAME@sha256:...
"""


_README_URI = """
## Keyless signatures podman cannot check

These identities are not email addresses (a CI workflow's URI): podman and skopeo cannot match
them, so `policy.json` does not ask for them (with no other key it rejects the repositories:
nothing it could check). Verify them with cosign: `sh cosign-verify.sh` runs, for each image,

    cosign verify \\
{identities} \\
        REGISTRY/NS/NAME@sha256:...
"""
