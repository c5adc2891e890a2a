"""Atomic container signatures in a lookaside tree: the format of the gpg and msg signers.

A signature is the raw binary OpenPGP signed message of a containers-signature(5) claim, stored
as ``<out>/lookaside/<registry>/<ns>/<name>@sha256=<hex>/signature-N``; consumers (podman,
skopeo, CRI-O) find it through registries.d's ``lookaside`` base once the tree is published on a
web server, and accept it under a policy.json ``signedBy`` requirement.

``LookasideSigner`` is what both signers share: that format, and skip-signed, which looks for a
signature-N that verifies with the signing keys for the item's digest and identity, in this
run's own output tree (an earlier run into the same folder), then at --lookaside-url.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from signaction.artifacts import Artifacts, key_data, registry_folder
from signaction.plan import Image, Plan, WorkItem
from signaction.registry import RegistryError
from signaction.signing import SignatureFormat, Verification

from .base import Signer
from .gnupg import SignatureCheck

log = logging.getLogger(__name__)

TREE = "lookaside"  # the output folder's tree of these signatures


class LookasideFormat(SignatureFormat):
    own_paths = (((TREE,), True),)

    def write(self, artifacts: Artifacts, image: Image, signature: Any) -> dict[str, Any]:
        return {"signature_path": artifacts.write_signature(TREE, image.reference,
                                                            image.known_digest,
                                                            signature)}

    def verification(self, artifacts: Artifacts, hosts: list[str],
                     public_keys: bytes | None) -> Verification:
        files = {"signing-keys.gpg": public_keys} if public_keys else {}
        key = key_data(public_keys) if public_keys else \
            {"keyPath": "/REPLACE/WITH/THE/SIGNING/PUBLIC/KEY.gpg"}
        requirement = [{"type": "signedBy", "keyType": "GPGKeys", **key,
                        "signedIdentity": {"type": "matchRepoDigestOrExact"}}]
        lines = ["# Where podman/skopeo find the signatures written by this run.",
                 "# Once you publish each registry folder on a web server, replace the",
                 "# file:// URL by its https:// URL.", "docker:"]
        for host in hosts:
            base = artifacts.tree_uri(TREE, host)
            lines += [f"  {json.dumps(host)}:", f"    lookaside: {json.dumps(base)}"]
        readme = _README.format(
            keys="signing-keys.gpg (also inlined as keyData in policy.json)" if public_keys
            else "not known to this run: put the signing public key where policy.json's "
                 "keyPath says")
        return Verification(requirement, lines, readme, files)


class LookasideSigner(Signer):
    """A signer of atomic container signatures kept in a lookaside tree (gpg, msg)."""

    format = LookasideFormat()

    def key_fingerprints(self) -> Mapping[str, str]:
        """Each signing key (after aliases) -> the fingerprint it resolved to, where known."""
        return {}

    @contextmanager
    def signed_check(self, plan: Plan) -> Iterator[Callable[[WorkItem], str | None] | None]:
        bases = self._lookaside_bases()
        keyring = self.public_keys(plan) if bases else None
        if not bases or not keyring:
            if self.inputs.lookaside_url:
                log.warning("--lookaside-url: the %s signer does not know the signing keys' "
                            "public part (msg: set verify_keyring), so existing signatures "
                            "cannot be checked; signing everything", self.name)
            yield None
            return
        check = SignatureCheck(keyring, "the signing keys", self.key_fingerprints())
        try:
            yield lambda item: next((found for base in bases
                                     if (found := self._in_lookaside(base, check, item))), None)
        finally:
            check.close()

    def _lookaside_bases(self) -> list[str]:
        """Where existing signatures may be, ``{registry}`` standing for the registry folder:
        this run's own output tree, if an earlier run left one, and --lookaside-url."""
        own = Path(self.inputs.output_dir, TREE)
        bases = [own.resolve().as_uri() + "/{registry}"] if own.is_dir() else []
        return bases + ([self.inputs.lookaside_url] if self.inputs.lookaside_url else [])

    def _in_lookaside(self, base: str, check: SignatureCheck, item: WorkItem) -> str | None:
        image = item.container
        url = base.replace("{registry}", registry_folder(image.reference.host))
        try:
            found = self.registry.lookaside_signatures(url, image.reference,
                                                       image.known_digest)
        except RegistryError as e:  # signing again is safe; skipping wrongly is not
            log.warning("could not read existing signatures of %s@%s: %s", image.reference,
                        image.digest, e)
            return None
        for n, signature in enumerate(found, 1):
            if check.problem(signature, item) is None:
                return f"already signed by this key: signature-{n} in {url}"
        return None


_README = """\
# Verifying these signatures

- `policy.json` accepts exactly the repositories signed in this run, signed by the signing key(s),
  and rejects everything else. Signing keys: {keys}.
- `registries.d/container-sign-action.yaml` tells podman/skopeo where the signatures are (the
  `lookaside` base of each registry). It points at this folder; after you publish each registry
  folder on a web server, change the URL to the published one.

Try it:

    skopeo --policy verification/policy.json --registries.d verification/registries.d \\
        copy docker://REGISTRY/NS/NAME:TAG dir:/tmp/checked

For podman, merge the policy into /etc/containers/policy.json and copy the registries.d file to
/etc/containers/registries.d/. A multi-arch image needs a signature for every platform manifest.
"""
