"""Differential tests of Sigstore bundles: one genuine bundle our signer wrote (keyless and with
a key), and hostile bundles forged from it, each judged by three independent readers in the
same test: our verify mode (``--mode verify``: results.json's ``signature_formats``), cosign
3.1 ``verify --trusted-root`` and, for keyless, sigstore-python 4.5 (``verify_dsse`` offline
from the test bed's trusted_root.json). Their verdicts must agree: the genuine bundles (and a
bundle built from scratch here, the control that the forger itself makes sound bundles) are
accepted by all, every forgery is refused by all.

Every bundle sits alone on an image of its own repository of the test's OCI 1.1 registry (the
referrers API): the same image pushed to one repository per case, so every case has the same
digest and cosign, which accepts an image when any of its bundles verifies, judges exactly the
one bundle. Signed once, forged many, each reader run once over all cases (verify mode once per
kind, sigstore-python once), cosign once a case. A bundle moved onto another image is
test_bundles.py's case."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import infra.sigstore as kit
from infra.sigstore_python import verify_dsse_bundles
from signaction.formats import bundle, dsse, oci, rekor
from signaction.formats import keys as key_format
from signaction.reference import Reference
from signaction.registry import RegistryClient
from signers.cosign.native import load_private_key
from test_bundles import (  # noqa: F401  (bed, oci11 and keys are the module's fixtures)
    PASSWORD,
    WORKFLOW_IDENTITY,
    ambient,
    bed,
    conf,
    cosign3_verify,
    keys,
    oci11,
    results,
    run,
)
from testbed.sigstore import Fulcio
from testbed.sigstore.oidc import github_claims

KEYLESS, KEY = "keyless", "key"
ACCEPT, REJECT = "accept", "reject"
OTHER_DIGEST = "sha256:" + hashlib.sha256(b"another image").hexdigest()


# -- building bundles as a signer would, with any key, certificate and log entry ---------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def logged(sigstore, envelope: dsse.Envelope, verifier_pem: bytes) -> rekor.LogEntry:
    """``envelope`` logged in the test bed's Rekor as a ``dsse`` entry: the entry with its SET,
    inclusion proof and checkpoint, as the log answers."""
    entry, _ = sigstore.rekor.add(rekor.dsse(json.dumps(envelope.json()), verifier_pem))
    answer, = sigstore.rekor.render(entry).values()
    return rekor.from_answer(answer)


def certificate(sigstore, public_key, *, fulcio=None, repository: str = "octo-org/octo-repo"
                ) -> x509.Certificate:
    """A Fulcio leaf for ``public_key``: by the bed's CA (or ``fulcio``), for a workflow of
    ``repository`` (the expected identity's by default), with the bed's OIDC issuer."""
    now = int(time.time())
    claims = github_claims(sigstore.issuer.url, repository, "refs/heads/main", now, 300)
    return (fulcio or sigstore.fulcio).issue(public_key, sigstore.issuer.url, claims)


def signed_bundle(sigstore, statement: bytes, private: Any, cert: x509.Certificate | None = None
                  ) -> bytes:
    """A complete bundle of ``statement`` signed by ``private``: keyless with ``cert`` (its
    key), else with the key's hint; logged in the bed's Rekor."""
    envelope = dsse.Envelope(dsse.IN_TOTO, statement,
                             (key_format.sign_bytes(private, dsse.pae(dsse.IN_TOTO, statement)),))
    if cert is None:
        return bundle.bundle(envelope, [logged(sigstore, envelope, key_format.public_pem(private))],
                             hint=bundle.key_hint(private.public_key()))
    entry = logged(sigstore, envelope, cert.public_bytes(serialization.Encoding.PEM))
    return bundle.bundle(envelope, [entry],
                         certificate_der=cert.public_bytes(serialization.Encoding.DER))


def fresh_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# -- the genuine bundles, and what forges them ----------------------------------------------------

@dataclass
class Signed:
    """The genuine bundles our signer wrote for ``image``, and what a forger needs."""
    bed: Any
    image: kit.PushedIndex
    work: Path
    genuine: dict[str, bytes]  # kind -> bundle JSON
    key: Any  # the signing key (KEY's private key)
    public: Path  # its public key file
    # a keyless signer of the expected identity: a key and its certificate, as a forger
    # with a stolen or re-issued certificate of that identity would have
    keyless: tuple[Any, x509.Certificate] = field(init=False)

    def __post_init__(self) -> None:
        private = fresh_key()
        self.keyless = private, certificate(self.bed, private.public_key())

    def statement(self, kind: str) -> bytes:
        return base64.b64decode(json.loads(self.genuine[kind])["dsseEnvelope"]["payload"])

    def resigned(self, kind: str, statement: bytes, **certified: Any) -> bytes:
        """A complete bundle of ``statement``, signed and logged anew: with the key (KEY), or
        keyless by a certificate of the expected identity (or ``certified``: another CA
        ``fulcio``, another ``repository``)."""
        if kind == KEY:
            return signed_bundle(self.bed, statement, self.key)
        if not certified:
            return signed_bundle(self.bed, statement, *self.keyless)
        private = fresh_key()
        return signed_bundle(self.bed, statement, private,
                             certificate(self.bed, private.public_key(), **certified))


def _payload(doc: dict, edit: Callable[[dict], None]) -> None:
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    edit(statement)
    doc["dsseEnvelope"]["payload"] = _b64(json.dumps(statement, separators=(",", ":")).encode())


def _subject_digest(statement: dict) -> None:
    statement["subject"][0]["digest"]["sha256"] = OTHER_DIGEST.split(":")[1]


def _flip(text: str) -> str:
    """Base64 ``text`` with its last byte's bits inverted."""
    raw = bytearray(base64.b64decode(text))
    raw[-1] ^= 0xFF
    return _b64(bytes(raw))


def _entry(doc: dict) -> dict:
    return doc["verificationMaterial"]["tlogEntries"][0]


def edited(edit: Callable[[dict], None]) -> Callable[[Signed, str], bytes]:
    """A forgery made by editing a copy of the genuine bundle's JSON in place."""
    def forge(signed: Signed, kind: str) -> bytes:
        doc = copy.deepcopy(json.loads(signed.genuine[kind]))
        edit(doc)
        return json.dumps(doc).encode()
    return forge


def _other_key_signature(doc: dict) -> None:
    envelope = dsse.parse(doc["dsseEnvelope"])
    pae = dsse.pae(envelope.payload_type, envelope.payload)
    signature = key_format.sign_bytes(fresh_key(), pae)
    doc["dsseEnvelope"]["signatures"] = [{"sig": _b64(signature)}]


def _bad_checkpoint(doc: dict) -> None:
    proof = _entry(doc)["inclusionProof"]
    note, _, line = proof["checkpoint"]["envelope"].rstrip("\n").rpartition(" ")
    proof["checkpoint"]["envelope"] = f"{note} {_flip(line)}\n"


def _bad_proof(doc: dict) -> None:
    hashes = _entry(doc)["inclusionProof"]["hashes"]
    assert hashes, "the audit path is empty: nothing to alter"
    hashes[0] = _flip(hashes[0])


def _bad_set(doc: dict) -> None:
    promise = _entry(doc)["inclusionPromise"]
    promise["signedEntryTimestamp"] = _flip(promise["signedEntryTimestamp"])


def _other_envelope_entry(signed: Signed, kind: str) -> bytes:
    """The genuine bundle with the log entry (genuine: SET, proof, checkpoint) of another
    envelope: the same Statement signed by another key."""
    other = json.loads(signed_bundle(signed.bed, signed.statement(kind), fresh_key()))
    doc = json.loads(signed.genuine[kind])
    doc["verificationMaterial"]["tlogEntries"] = other["verificationMaterial"]["tlogEntries"]
    return json.dumps(doc).encode()


def _genuine(signed: Signed, kind: str) -> bytes:
    return signed.genuine[kind]


def _rebuilt(signed: Signed, kind: str) -> bytes:
    return signed.resigned(kind, signed.statement(kind))


def _subject_resigned(signed: Signed, kind: str) -> bytes:
    statement = json.loads(signed.statement(kind))
    _subject_digest(statement)
    return signed.resigned(kind, json.dumps(statement, separators=(",", ":")).encode())


def _other_ca(signed: Signed, kind: str) -> bytes:
    return signed.resigned(kind, signed.statement(kind), fulcio=Fulcio(signed.bed.ct))


def _other_identity(signed: Signed, kind: str) -> bytes:
    return signed.resigned(kind, signed.statement(kind), repository="mallory/evil-repo")


@dataclass(frozen=True)
class Case:
    name: str
    forge: Callable[[Signed, str], bytes]
    expected: str = REJECT
    kinds: tuple[str, ...] = (KEYLESS, KEY)


CASES = (
    Case("genuine", _genuine, ACCEPT),
    Case("rebuilt by the forger", _rebuilt, ACCEPT),  # the control: the forger signs soundly
    Case("subject digest changed", edited(lambda d: _payload(d, _subject_digest))),
    Case("subject digest changed, signed and logged anew", _subject_resigned),
    Case("signature by another key", edited(_other_key_signature)),
    Case("payload changed after signing",
         edited(lambda d: _payload(d, lambda s: s.update(predicate={"forged": True})))),
    Case("certificate from a CA not in the trusted root", _other_ca, kinds=(KEYLESS,)),
    Case("certificate of another identity", _other_identity, kinds=(KEYLESS,)),
    Case("log entry of another envelope", _other_envelope_entry),
    Case("SET corrupted", edited(_bad_set)),
    Case("inclusion proof hash altered", edited(_bad_proof)),
    Case("checkpoint signature altered", edited(_bad_checkpoint)),
)


def _slug(case: Case, kind: str) -> str:
    return f"{kind}-" + "-".join("".join(c if c.isalnum() else " " for c in case.name).split())


def _repo(case: Case, kind: str) -> str:
    """Where the case's bundle is: a repository of its own (lower case, as registries want)."""
    return f"interop/{_slug(case, kind).lower()}"


PARAMS = [pytest.param(case, kind, id=_slug(case, kind)) for case in CASES for kind in case.kinds]


# -- fixtures: sign once, forge many, each reader once ---------------------------------------

def attach(host: str, repo: str, digest: str, made: bytes) -> None:
    """``made`` as the one bundle referring to ``digest`` in ``repo`` (cosign 3's referrer)."""
    client = RegistryClient(plain_http=True, environ={})
    where = Reference(host, repo, "")
    subject = client.manifest(where, digest)
    for blob in (oci.EMPTY_JSON, made):
        client.push_blob(where, blob)
    manifest = bundle.referrer_manifest(made, {"mediaType": subject.media_type,
                                               "size": len(subject.raw), "digest": digest},
                                        "2026-01-01T00:00:00Z")
    _, tracked = client.put_referrer(where, manifest, digest)
    assert tracked, "the test's registry has the referrers API"


@pytest.fixture(scope="module")
def signed(bed, oci11, trixie_tools, keys, tmp_path_factory):  # noqa: F811
    """Our signer's genuine bundles (keyless, key) of one image, and every case's bundle on
    the same image in a repository of its own."""
    work = tmp_path_factory.mktemp("interop")
    key, pub = keys
    # an entry before ours, so that our entries' audit paths are not empty
    signed_bundle(bed, b"{}", fresh_key())
    image = kit.push_index(oci11.host, "interop/genuine", "v1", work, content="interop",
                           platforms=("linux/amd64",))
    target = ["--image", f"{image.by_tag}@{image.digest}", "--no-expand-index"]
    genuine = {}
    for kind, signing_key, env in ((KEYLESS, "keyless", ambient(bed)), (KEY, str(key), {})):
        made = run(work, trixie_tools, conf(bed, signature_format="bundle"), *target,
                   "--signing-key", signing_key, out=f"sign-{kind}", env=env)
        assert made.returncode == 0, made.stderr
        entry, = results(work, f"sign-{kind}")["images"]
        genuine[kind] = (work / f"sign-{kind}" / entry["bundle_path"]).read_bytes()
    found = Signed(bed, image, work, genuine, load_private_key(str(key), PASSWORD, "key"), pub)
    for case, kind in ((p.values[0], p.values[1]) for p in PARAMS):
        repo = _repo(case, kind)
        pushed = kit.push_index(oci11.host, repo, "v1", work, content="interop",
                                platforms=("linux/amd64",))
        assert pushed.digest == image.digest  # the same image: one digest for every case
        made = case.forge(found, kind)
        (work / f"{repo.replace('/', '_')}.json").write_bytes(made)
        attach(oci11.host, repo, image.digest, made)
    return found


KEYLESS_HOW = ("--certificate-identity", WORKFLOW_IDENTITY)


@pytest.fixture(scope="module")
def ours(signed, trixie_tools) -> dict[tuple[str, str], tuple[str, dict]]:
    """Verify mode's verdict of every case: (kind, repo) -> (accept/reject, its entry)."""
    sigstore, image = signed.bed, signed.image
    verdicts = {}
    for kind in (KEYLESS, KEY):
        repos = [_repo(case, kind) for case in CASES if kind in case.kinds]
        how = [*KEYLESS_HOW, "--certificate-oidc-issuer", sigstore.env["OIDC_ISSUER"],
               "--signing-key", "keyless"] if kind == KEYLESS else [
            "--signing-key", str(signed.public)]
        images = [a for repo in repos
                  for a in ("--image", f"{image.host}/{repo}:v1@{image.digest}")]
        checked = run(signed.work, trixie_tools, conf(sigstore, signature_format="bundle"),
                      "--mode", "verify", "--no-expand-index", *images, *how,
                      out=f"verify-{kind}")
        assert checked.returncode in (0, 1), checked.stderr
        for entry in results(signed.work, f"verify-{kind}")["images"]:
            repo = entry["reference"].split("/", 1)[1].rsplit(":", 1)[0]
            accepted = entry["status"] == "verified" and \
                entry["signature_formats"] == {"bundle": "verified"}
            verdicts[kind, repo] = (ACCEPT if accepted else REJECT, entry)
        assert {r for k, r in verdicts if k == kind} == set(repos)
    return verdicts


@pytest.fixture(scope="module")
def by_sigstore_python(signed) -> dict[str, str | None]:
    """sigstore-python's verdict of every keyless case: repo -> None (verified) or why not."""
    made = {_repo(case, KEYLESS): (signed.work / f"{_repo(case, KEYLESS).replace('/', '_')}"
                                   ".json").read_bytes()
            for case in CASES if KEYLESS in case.kinds}
    return verify_dsse_bundles(made, signed.bed.env["TRUSTED_ROOT"], WORKFLOW_IDENTITY,
                               signed.bed.env["OIDC_ISSUER"], signed.image.digest)


# -- the cases ------------------------------------------------------------------------------

@pytest.mark.parametrize(("case", "kind"), PARAMS)
def test_every_reader_judges_the_bundle_alike(case, kind, signed, ours, by_sigstore_python,
                                              trixie_tools):
    sigstore, repo = signed.bed, _repo(case, kind)
    how = [*KEYLESS_HOW, "--certificate-oidc-issuer", sigstore.env["OIDC_ISSUER"]] \
        if kind == KEYLESS else ["--key", str(signed.public)]
    cosign = cosign3_verify(trixie_tools, sigstore, f"{signed.image.host}/{repo}@"
                            f"{signed.image.digest}", *how)
    verdicts = {"verify mode": ours[kind, repo][0],
                "cosign 3.1": ACCEPT if cosign.returncode == 0 else REJECT}
    reasons = {"verify mode": ours[kind, repo][1].get("reason") or ours[kind, repo][1],
               "cosign 3.1": cosign.stderr[-600:]}
    if kind == KEYLESS:
        refused = by_sigstore_python[repo]
        verdicts["sigstore-python"] = ACCEPT if refused is None else REJECT
        reasons["sigstore-python"] = refused
    assert verdicts == dict.fromkeys(verdicts, case.expected), reasons


def test_the_forgeries_differ_from_the_genuine_bundles(signed):
    """Each forgery is a bundle of its own (none is the genuine one by mistake), and the
    genuine bundles are what our signer stored: a log entry with a non-empty audit path."""
    made = {(kind, case.name): (signed.work / f"{_repo(case, kind).replace('/', '_')}.json"
                                ).read_bytes()
            for case in CASES for kind in case.kinds}
    assert len(set(made.values())) == len(made)
    for kind, raw in signed.genuine.items():
        assert made[kind, "genuine"] == raw
        assert _entry(json.loads(raw))["inclusionProof"]["hashes"], kind
