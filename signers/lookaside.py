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
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signaction.artifacts import key_data
from signaction.errors import InputError
from signaction.formats import openpgp
from signaction.formats.claim import claim_problem
from signaction.formats.lookaside import lookaside_base
from signaction.inputs import Inputs
from signaction.plan import BLOB, Image, Plan, SignFile, WorkItem
from signaction.safeload import read_regular_file
from signaction.signing import (
    INVALID,
    MISSING,
    VERIFIED,
    Check,
    Finding,
    Problem,
    SignatureFormat,
    Store,
    Verdict,
    Verification,
    listed,
)

from .base import Signer

if TYPE_CHECKING:  # (signaction.registry, the HTTP stack, is imported where a registry is read)
    from signaction.registry import RegistryClient

log = logging.getLogger(__name__)

TREE = "lookaside"  # the output folder's tree of these signatures
# containers/image reads at most this many signature-N of an image ("assuming that's
# unreasonable and a server error" above), and recognizes a signature by its first byte
# (signature.FromBlob): an OpenPGP compressed-data, one-pass or signature packet. Anything
# else ("Unrecognized signature format") fails the whole image, whatever the other
# signatures are.
MAX_LOOKASIDE = 128
OPENPGP_FIRST = frozenset(b"\xa0\xa1\xa2\xa3\xc8\x90\x91\x92\x3d\xc4\x88\x89\x8a\x8b\xc2")


@dataclass(frozen=True)
class TrustedKey:
    """Verify mode: what one signing key's signatures are checked with: the keyring, and the
    fingerprint of the key in it that must have signed."""

    keyring: openpgp.Keyring
    fingerprint: str


class LookasideFormat(SignatureFormat):
    own_paths = (((TREE,), True),)

    def write(self, artifacts: Store, image: Image, signature: Any) -> dict[str, Any]:
        return {"signature_path": artifacts.write_signature(TREE, image.reference,
                                                            image.known_digest,
                                                            signature)}

    def verification(self, artifacts: Store, hosts: list[str],
                     public_keys: bytes | None) -> Verification:
        files = {"signing-keys.gpg": public_keys} if public_keys else {}
        key = key_data(public_keys) if public_keys else \
            {"keyPath": "/REPLACE/WITH/THE/SIGNING/PUBLIC/KEY.gpg"}
        requirement = [{"type": "signedBy", "keyType": "GPGKeys", **key,
                        "signedIdentity": {"type": "matchRepoDigestOrExact"}}]
        lines = ["# Where podman/skopeo find the signatures written by this run.",
                 "# Once you publish each registry folder on a web server, replace the",
                 "# file:// URL by its https:// URL.", "docker:"]
        bases = {host: artifacts.tree_uri(TREE, host) for host in hosts}
        for host, base in bases.items():
            lines += [f"  {json.dumps(host)}:", f"    lookaside: {json.dumps(base)}"]
        readme = _README.format(
            keys="signing-keys.gpg (also inlined as keyData in policy.json)" if public_keys
            else "not known to this run: put the signing public key where policy.json's "
                 "keyPath says")
        return Verification(requirement, lines, readme, files,
                            registries={host: {"lookaside": base} for host, base in bases.items()})

    def verifier(self, registry: RegistryClient, inputs: Inputs,
                 trusted: dict[str, Any]) -> Check:
        if not inputs.lookaside_url:
            raise InputError("--mode verify: --lookaside-url is required for lookaside "
                             "signatures: where consumers find them (http(s):// or file://, "
                             "{registry} standing for the registry folder)")
        base = inputs.lookaside_url
        return lambda item: walk_lookaside(registry, base, item, trusted[item.key.key])


def walk_lookaside(registry: RegistryClient, base: str, item: WorkItem,
                   trusted: TrustedKey) -> Verdict:
    """What a consumer finds for ``item`` at ``base``: signature-1, -2, ... up to the first
    404, each read through the run's client (another status is an error, not a gap), and
    accepted as containers/image accepts one: the first that verifies wins."""
    from signaction.registry import RegistryError  # imported with the client: RunRegistry

    image = item.container
    url = lookaside_base(base, image.reference.host)
    where = f"{url.rstrip('/')}/{image.reference.path}@{image.known_digest.replace(':', '=')}"
    try:
        found = registry.lookaside_signatures(url, image.reference, image.known_digest,
                                              limit=MAX_LOOKASIDE)
    except RegistryError as e:
        return Verdict(INVALID, f"the lookaside could not be read: {e}")
    if not found:
        return Verdict(MISSING, f"no signature: {where}/signature-1 is not there (404)")
    findings: list[tuple[str, Problem]] = []
    for n, data in enumerate(found, 1):
        if data[:1] and data[0] not in OPENPGP_FIRST or not data:
            findings.append((f"signature-{n}", Problem(
                Finding.UNREADABLE, "not a binary OpenPGP signature (podman refuses the image: "
                "unrecognized signature format)")))
            tried = tuple(f"{w}: {p}" for w, p in findings)
            return Verdict(INVALID, tried[-1], tried, findings=tuple(findings))
        problem = signature_problem(data, item, trusted)
        if problem is None:
            return Verdict(VERIFIED, f"signature-{n} verifies",
                           tuple(f"{w}: {p}" for w, p in findings),
                           {"verified_signature": f"{where}/signature-{n}"},
                           findings=tuple(findings))
        findings.append((f"signature-{n}", problem))
    tried = tuple(f"{w}: {p}" for w, p in findings)
    return Verdict(INVALID, f"{len(found)} signature(s), none verifies: " + listed(tried),
                   tried, findings=tuple(findings))


def signature_problem(data: bytes, item: WorkItem, trusted: TrustedKey) -> Problem | None:
    """Why the signature ``data`` is not a good one for ``item`` (None: it is): the one check
    of an OpenPGP signature, wherever it is made (verify mode, skip-signed, the msg signer's
    check of each reply with verify_keyring). Sequoia decides whether it verifies
    (signaction/formats/openpgp/, with containers/image's rules on top), then it must be by
    the trusted key and, for an image, sign the claim for exactly its digest and identity."""
    target = item.image
    try:
        if isinstance(target, SignFile):
            verified = (openpgp.verify_detached(data, target.data, trusted.keyring)
                        if target.kind == BLOB else
                        openpgp.verify_clearsigned(data, trusted.keyring))
        else:
            verified = openpgp.verify_message(data, trusted.keyring)
    except openpgp.VerifyError as e:
        return e.problem
    except openpgp.OpenPGPError as e:
        return Problem(Finding.UNREADABLE, str(e))
    if verified.fingerprint != trusted.fingerprint:
        return Problem(Finding.OTHER_KEY, f"signed by {verified.fingerprint}, not "
                       f"{trusted.fingerprint}")
    if isinstance(target, SignFile):
        return None  # that the text or bytes are the ones sent: checks.refusal, made first
    return claim_problem(verified.content, target.known_digest, str(target.reference))


def trusted_for(keyring: openpgp.Keyring, keys: Iterable[str], where: str,
                fingerprints: Mapping[str, str] | None = None) -> dict[str, TrustedKey]:
    """Each signing key (as the plan names it) -> the key of ``keyring`` its signatures must
    be made by: the fingerprint the signer resolved it to, else as ``trusted_in`` finds it."""
    known = {k: v.upper() for k, v in (fingerprints or {}).items()}
    out = {}
    for key in keys:
        if known.get(key) in keyring.fingerprints():
            out[key] = TrustedKey(keyring, known[key])
        else:
            out[key] = trusted_in(keyring, key, where)
    return out


def trusted_in(keyring: openpgp.Keyring, key: str, where: str) -> TrustedKey:
    """The key of ``keyring`` that the signing key ``key`` names: a fingerprint or key id
    (its last hex digits), or any name when the keyring holds one key only."""
    primaries = keyring.fingerprints()
    want = key.strip().upper().removeprefix("0X")
    if re.fullmatch(r"[0-9A-F]{8,40}", want):
        matched = [f for f in primaries if f.endswith(want)]
    else:
        matched = primaries if len(primaries) == 1 else []
    if len(matched) != 1:
        how_many = "more than one" if matched else "no"
        raise InputError(f"--mode verify: signing key {key!r}: {how_many} public key in "
                         f"{where} matches it (give its fingerprint)")
    return TrustedKey(keyring, matched[0])


def read_keyring(path: str, where: str) -> openpgp.Keyring:
    """The public keyring in the file ``path`` (a regular file: a FIFO is refused before it is
    opened), named ``where`` in errors."""
    data = read_regular_file(os.path.expanduser(path), f"{where}: cannot read {path!r}",
                             openpgp.MAX_KEYRING)
    try:
        return openpgp.Keyring.parse(data)
    except openpgp.OpenPGPError as e:
        raise InputError(f"{where}: {path!r} is not an OpenPGP public keyring: {e}") from None


class LookasideSigner(Signer):
    """A signer of atomic container signatures kept in a lookaside tree (gpg, msg)."""

    format = LookasideFormat()

    def key_fingerprints(self) -> Mapping[str, str]:
        """Each signing key (after aliases) -> the fingerprint it resolved to, where known."""
        return {}

    def verify_keyring(self, plan: Plan) -> tuple[openpgp.Keyring, str]:
        """Verify mode without --verify-keyring: the public keyring this signer's own config
        gives (msg: verify_keyring), and how to name where it came from."""
        where = f"config: {self.section}.verify_keyring"
        path = self.config.get("verify_keyring")
        if not path:
            raise InputError(f"--mode verify: the {self.name} signer needs the signing keys' "
                             f"public part: give --verify-keyring FILE (or {where})")
        return read_keyring(path, where), path

    def trusted_keys(self, plan: Plan) -> dict[str, Any]:
        if self.inputs.verify_keyring:
            path = self.inputs.verify_keyring
            keyring = read_keyring(path, "--verify-keyring")
        else:
            keyring, path = self.verify_keyring(plan)
        return {k.key: trusted_in(keyring, k.key, path) for k in plan.keys}

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
        try:
            trusted = trusted_for(openpgp.Keyring.parse(keyring), {k.key for k in plan.keys},
                                  "the signing keys' public keyring", self.key_fingerprints())
        except (openpgp.OpenPGPError, InputError) as e:
            log.warning("existing signatures cannot be checked (%s); signing everything", e)
            yield None
            return
        yield lambda item: next((found for base in bases
                                 if (found := self._in_lookaside(base, trusted[item.key.key],
                                                                 item))), None)

    def _lookaside_bases(self) -> list[str]:
        """Where existing signatures may be, ``{registry}`` standing for the registry folder:
        this run's own output tree, if an earlier run left one, and --lookaside-url."""
        own = Path(self.inputs.output_dir, TREE)
        bases = [own.resolve().as_uri() + "/{registry}"] if own.is_dir() else []
        return bases + ([self.inputs.lookaside_url] if self.inputs.lookaside_url else [])

    def _in_lookaside(self, base: str, trusted: TrustedKey, item: WorkItem) -> str | None:
        from signaction.registry import RegistryError  # imported with the client: RunRegistry

        image = item.container
        url = lookaside_base(base, image.reference.host)
        try:
            found = self.registry.lookaside_signatures(url, image.reference,
                                                       image.known_digest)
        except RegistryError as e:  # signing again is safe; skipping wrongly is not
            log.warning("could not read existing signatures of %s@%s: %s", image.reference,
                        image.digest, e)
            return None
        for n, signature in enumerate(found, 1):
            if signature_problem(signature, item, trusted) is None:
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
