"""The hostile OpenPGP corpus (issue 22, deliverable 6): forged atomic container signatures, each
case built here from packets (tests/infra/openpgp_forge.py) and judged in the same test by the
references, gpg 2.2 (``gpg --verify``, read as gpgme reports it to containers/image) and skopeo's
``standalone-verify`` (1.9 from bookworm and 1.18 from trixie: containers/image itself), and by the
project's one OpenPGP check (``signers.lookaside.signature_problem``, Sequoia underneath). The
verdicts must be equal on every case; where the project is deliberately stricter, ``STRICTER``
names the case and says why. The same cases then go through the paths that check signatures,
end to end: verify mode, skip-signed and the msg signer's check of each reply (verify_keyring).

Each case is its own key (``Key``) so that all of them fit in one keyring for the end-to-end runs;
the forgeries about a key's certificate (revoked, expired, a forged self-signature...) are on
that key's certificate, those about the message on a genuine certificate."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_entrypoint
from infra import openpgp_forge as f
from infra.sigstore import ensure_trixie_tools
from signaction.formats import openpgp
from signaction.formats.claim import atomic_claim
from signaction.inputs import parse_inputs
from signaction.plan import build_plan
from signaction.signing import Finding
from signers.lookaside import TrustedKey, signature_problem
from test_msg_integration import (
    Server,
    broker,  # noqa: F401 (a fixture)
    conf,
    sign,
)

HOST = "registry.example.com"
NOW = int(time.time())
T = NOW - 86400  # when the keys' certificates were made and most messages signed
UID = "release <release@example.com>"


@dataclass(frozen=True)
class Case:
    name: str
    forges: str  # what it forges, how
    build: Callable[[World, Case], tuple[bytes, bytes]]  # -> (its key's certificate, the signature)
    finding: Finding | None  # the project's finding; None: accepted (a control)
    on_key: bool = False  # the forgery is in the key's certificate, not in the message

    @property
    def reference(self) -> str:
        return f"{HOST}/corpus/{self.name}:1"

    @property
    def manifest(self) -> bytes:
        return json.dumps({"schemaVersion": 2, "case": self.name}).encode()

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    def claim(self, **changes) -> bytes:
        return atomic_claim(changes.get("reference", self.reference),
                            changes.get("digest", self.digest), "corpus", T)


class World:
    """A key per case and the stranger's key; ``shared``: one key (``genuine``) for every case
    whose forgery is in the message, so that one signing key and one keyring serve them all
    (a signing run signs every image with every key)."""

    def __init__(self, shared: bool = False):
        self.keys: dict[str, f.Key] = {}
        self.stranger = f.Key(T - 100)
        self.genuine = f.Key(T - 100)
        self.shared = shared

    def key(self, case: str) -> f.Key:
        if self.shared and not CASES_BY[case].on_key:
            return self.genuine
        return self.keys.setdefault(case, f.Key(T - 100))


def cert(w: World, c: str, *self_sigs: bytes, **kw) -> bytes:
    return f.cert(w.key(c), UID, T, *self_sigs, **kw)


def signed(w: World, case: Case, data: bytes | None = None, t: int | None = T, *extra: bytes,
           **kw) -> tuple[bytes, bytes]:
    """The case's key's genuine certificate, and a message it signs (the claim by default)."""
    k = w.key(case.name)
    return cert(w, case.name), f.message(k, case.claim() if data is None else data, t, *extra,
                                         **kw)


def _claim_with(case: Case, change: Callable[[dict], None]) -> bytes:
    claim = json.loads(case.claim())
    change(claim)
    return json.dumps(claim).encode()


def _revoked(w: World, case: Case, by_stranger: bool) -> tuple[bytes, bytes]:
    k = w.key(case.name)
    revocation = f.revocation(k, T + 10, by=w.stranger if by_stranger else None)
    return f.cert(k, UID, T, before_uid=revocation), f.message(k, case.claim(), T + 20)


def _self_sigs(w: World, case: Case, *sigs: Callable[[f.Key], bytes],
               at: int = T + 20) -> tuple[bytes, bytes]:
    k = w.key(case.name)
    return f.cert(k, UID, T, *(s(k) for s in sigs)), f.message(k, case.claim(), at)


def _expiring(k: f.Key, t: int = T) -> bytes:
    """A self-signature saying ``k`` expires 200 s after it was made (long ago, now)."""
    return f.self_sig(k, UID, t, f.key_flags(f.CERTIFY | f.SIGN), f.key_expires(200))


def _subkey(w: World, case: Case, **binding) -> tuple[bytes, bytes]:
    k, sub = w.key(case.name), f.Key(T - 50)
    return (f.cert(k, UID, T, subkeys=sub.public(14) + f.subkey_binding(k, sub, T, **binding)),
            f.message(sub, case.claim(), T + 20))


def _corrupt(w: World, case: Case) -> tuple[bytes, bytes]:
    k = w.key(case.name)
    return cert(w, case.name), (f.one_pass(k) + f.literal(case.claim(), T)
                                + f.data_sig(k, case.claim(), T, corrupt=True))


POLICY, OTHER_KEY, UNREADABLE = Finding.POLICY, Finding.OTHER_KEY, Finding.UNREADABLE
CASES = [
    Case("good", "nothing: a genuine signed claim (the control)",
         lambda w, c: signed(w, c), None),
    Case("noncritical-notation", "a notation not marked critical (allowed: the control)",
         lambda w, c: signed(w, c, None, T,
                          f.notation("note@example.com", "x", critical=False)), None),
    Case("critical-unknown-subpacket", "a hashed subpacket of an unassigned kind (99), critical",
         lambda w, c: signed(w, c, None, T,
                          f.subpacket(99, b"x", critical=True)), POLICY),
    Case("critical-notation", "a notation nobody knows, marked critical",
         lambda w, c: signed(w, c, None, T,
                          f.notation("evil@example.com", "x", critical=True)), POLICY),
    Case("sha1", "the signature hashed with SHA-1 (made by hand: PKCS#1 over a SHA-1 digest)",
         lambda w, c: signed(w, c, hash_algo=f.SHA1), POLICY),
    Case("md5", "the signature hashed with MD5",
         lambda w, c: signed(w, c, hash_algo=f.MD5), POLICY),
    Case("future", "a signature dated a day from now",
         lambda w, c: signed(w, c, None, NOW + 86400), POLICY),
    Case("no-creation-time", "a signature without its creation time subpacket",
         lambda w, c: signed(w, c, None, None), POLICY),
    Case("signature-expired", "a signature that expired 10 s after it was made",
         lambda w, c: signed(w, c, None, T, f.sig_expires(10)), POLICY),
    Case("older-than-key", "a signature dated before its key was made",
         lambda w, c: signed(w, c, None, T - 1000), OTHER_KEY),
    Case("corrupt-signature", "the signature value changed (its hash prefix kept)",
         lambda w, c: _corrupt(w, c), OTHER_KEY),
    Case("stranger", "signed by a key that is not in the keyring, naming itself",
         lambda w, c: (cert(w, c.name), f.message(w.stranger, c.claim(), T)),
         OTHER_KEY),
    Case("two-signatures", "two signatures in one message (the key's and a stranger's)",
         lambda w, c: (cert(w, c.name),
                    f.two_signatures(w.key(c.name), w.key(c.name),
                                     c.claim(), T)), UNREADABLE),
    Case("no-one-pass", "literal data then the signature, no one-pass signature packet",
         lambda w, c: (cert(w, c.name),
                    f.literal(c.claim(), T)
                    + f.data_sig(w.key(c.name), c.claim(), T)),
         UNREADABLE),
    Case("literal-not-claim", "a good signature over data that is not a claim",
         lambda w, c: signed(w, c, b"not a claim"), UNREADABLE),
    Case("claim-extra-critical", "a claim with an extra key in critical",
         lambda w, c: signed(w, c, _claim_with(
             c, lambda c: c["critical"].update(extra="x"))),
         UNREADABLE),
    Case("claim-other-digest", "a good signature over the claim for another digest",
         lambda w, c: signed(w, c, c.claim(
             digest="sha256:" + "0" * 64)), Finding.OTHER_DIGEST),
    Case("claim-other-identity", "a good signature over the claim for another image name",
         lambda w, c: signed(w, c,
                          c.claim(reference=f"{HOST}/other:1")),
         Finding.OTHER_IDENTITY),
    Case("key-expired", "a key whose self-signature says it expired (after it signed)",
         lambda w, c: _self_sigs(w, c, _expiring, at=T + 50), POLICY, on_key=True),
    Case("key-revoked", "a key revoked by itself (a genuine revocation)",
         lambda w, c: _revoked(w, c, by_stranger=False), POLICY, on_key=True),
    Case("forged-revocation", "a revocation of a good key, made by a stranger's key (ignored)",
         lambda w, c: _revoked(w, c, by_stranger=True), None, on_key=True),
    Case("forged-expiry", "a newer self-signature expiring a good key, made by a stranger",
         lambda w, c: _self_sigs(w, c, lambda k: f.self_sig(k, UID, T),
                              lambda k: f.self_sig(k, UID, T + 10, f.key_flags(3),
                                                   f.key_expires(200), by=w.stranger)),
         None, on_key=True),
    Case("forged-revival", "a newer self-signature without expiry on an expired key, forged",
         lambda w, c: _self_sigs(w, c, _expiring,
                              lambda k: f.self_sig(k, UID, T + 10, by=w.stranger), at=T + 50),
         POLICY, on_key=True),
    Case("no-sign-flag", "a key whose self-signature allows certifying only",
         lambda w, c: _self_sigs(w, c,
                              lambda k: f.self_sig(k, UID, T, f.key_flags(f.CERTIFY))),
         OTHER_KEY, on_key=True),
    Case("corrupt-self-signature", "a key whose only self-signature does not verify",
         lambda w, c: _self_sigs(w, c,
                              lambda k: f.self_sig(k, UID, T, corrupt=True)), None, on_key=True),
    Case("no-user-id", "a key with neither user id nor self-signature",
         lambda w, c: (f.cert(w.key(c.name), None, T),
                    f.message(w.key(c.name), c.claim(), T)), None, on_key=True),
    Case("subkey-bad-binding", "a signing subkey whose binding signature does not verify",
         lambda w, c: _subkey(w, c, corrupt=True), OTHER_KEY, on_key=True),
    Case("subkey-no-back-signature", "a signing subkey bound without its back signature",
         lambda w, c: _subkey(w, c, back_sig=False), OTHER_KEY, on_key=True),
    Case("subkey-good-binding", "a signing subkey genuinely bound (podman trusts primaries only)",
         lambda w, c: _subkey(w, c), OTHER_KEY, on_key=True),
]
CASES_BY = {c.name: c for c in CASES}
# the keyring refuses these keys outright (no usable certificate): the run stops with exit 2
UNUSABLE = {"corrupt-self-signature", "no-user-id"}
STRICTER = {
    "sha1": "SHA-1 collisions can be made (SHAttered, 2017; chosen-prefix 2020): Sequoia refuses "
            "it for data signatures, gpg 2.2 and podman still accept it",
    "future": "a signature dated in the future was not made by a correct clock: gpg 2.2 and "
              "podman accept it, Sequoia refuses it",
}


# -- the references ---------------------------------------------------------------------------

def gpg_verdict(home: str, signature: bytes, fingerprint: str) -> bool:
    """gpg --verify, read as gpgme reports it and containers/image takes it: one signature,
    good, not expired, by a key neither expired nor revoked, and made by the primary key."""
    proc = subprocess.run(["gpg", "--batch", "--status-fd", "1", "--verify"], input=signature,
                          capture_output=True, env={**os.environ, "GNUPGHOME": home})
    status = [line.split()[1:] for line in proc.stdout.decode().splitlines()
              if line.startswith("[GNUPG:] ")]
    codes = [s[0] for s in status]
    valid = [s for s in status if s[0] == "VALIDSIG"]
    return (proc.returncode == 0 and codes.count("GOODSIG") == 1 and len(valid) == 1
            and not {"BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG"} & set(codes)
            and valid[0][1].upper() == valid[0][-1].upper() == fingerprint)


def skopeo_verdicts(home: str, case: Case, signature: bytes, fingerprint: str) -> list[bool]:
    folder = Path(home)
    (folder / "manifest.json").write_bytes(case.manifest)
    (folder / "signature").write_bytes(signature)
    verdicts = []
    for skopeo in ("skopeo", str(ensure_trixie_tools().skopeo)):
        proc = subprocess.run([skopeo, "standalone-verify", str(folder / "manifest.json"),
                               case.reference, fingerprint, str(folder / "signature")],
                              capture_output=True, env={**os.environ, "GNUPGHOME": home})
        verdicts.append(proc.returncode == 0)
    return verdicts


def references(case: Case, certificate: bytes, signature: bytes, fingerprint: str) -> dict:
    """gpg's verdict on the signature alone (claims are not its business) and each skopeo's on
    the signature and its claim, the certificate imported into a home of their own."""
    with tempfile.TemporaryDirectory(prefix="corpus-") as home:
        os.chmod(home, 0o700)
        subprocess.run(["gpg", "--batch", "--import"], input=certificate, capture_output=True,
                       env={**os.environ, "GNUPGHOME": home}, check=False)
        try:
            gpg = gpg_verdict(home, signature, fingerprint)
            skopeo = skopeo_verdicts(home, case, signature, fingerprint)
        finally:
            subprocess.run(["gpgconf", "--kill", "all"], capture_output=True,
                           env={**os.environ, "GNUPGHOME": home}, check=False)
    return {"gpg": gpg, "skopeo 1.9": skopeo[0], "skopeo 1.18": skopeo[1]}


def item_of(case: Case, fingerprint: str):
    inputs = parse_inputs(["--reference", case.reference, "--digest", case.digest,
                           "--signing-key", fingerprint], {})
    return next(build_plan(inputs, {}).items())


def ours(case: Case, certificate: bytes, signature: bytes, fingerprint: str):
    """The project's check: (accepted, finding, detail); a keyring it cannot use is a refusal."""
    try:
        keyring = openpgp.Keyring.parse(certificate)
    except openpgp.OpenPGPError as e:
        return False, None, f"keyring: {e}"
    problem = signature_problem(signature, item_of(case, fingerprint),
                                TrustedKey(keyring, fingerprint))
    return problem is None, problem and problem.finding, str(problem)


@pytest.fixture(scope="module")
def corpus():
    """Every case built and judged by the references once (in parallel: they are processes)."""
    world = World()
    built = {c.name: c.build(world, c) for c in CASES}
    fprs = {c.name: world.key(c.name).fingerprint for c in CASES}

    def judge(case: Case) -> dict:
        return references(case, *built[case.name], fprs[case.name])

    with ThreadPoolExecutor(4) as pool:
        verdicts = dict(zip(CASES_BY, pool.map(judge, CASES)))
    return world, built, fprs, verdicts


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_project_judges_each_forgery_as_gpg_and_skopeo_do(corpus, case):
    _, built, fprs, verdicts = corpus
    reference = verdicts[case.name]
    accepted, finding, detail = ours(case, *built[case.name], fprs[case.name])
    # the two skopeo versions (containers/image) agree, and with gpg where the claim is fine
    assert reference["skopeo 1.9"] == reference["skopeo 1.18"], reference
    claim_case = case.name.startswith(("claim-", "literal-"))
    if not claim_case:
        assert reference["gpg"] == reference["skopeo 1.18"], reference
    if case.name in STRICTER:
        assert reference["skopeo 1.18"] and not accepted, (reference, detail)
    else:
        assert accepted == reference["skopeo 1.18"], (case.forges, reference, detail)
    if not accepted and case.name not in UNUSABLE:
        assert finding is case.finding, detail
    assert "\n" not in detail and "backtrace" not in detail.lower()


def accepts(case: Case) -> bool:
    """What the project must do with the case: accept the controls only."""
    return case.finding is None and case.name not in UNUSABLE


def test_the_table_says_what_the_check_does(corpus):
    _, built, fprs, _ = corpus
    for case in CASES:
        assert ours(case, *built[case.name], fprs[case.name])[0] == accepts(case), case.name


# -- the paths, end to end --------------------------------------------------------------------

def publish(tree: Path, cases: list[Case], built: dict) -> str:
    """Each case's signature as signature-1 of its image in a lookaside tree; its URL."""
    for case in cases:
        folder = tree / HOST / "corpus" / f"{case.name}@{case.digest.replace(':', '=')}"
        folder.mkdir(parents=True)
        (folder / "signature-1").write_bytes(built[case.name][1])
    return tree.as_uri() + "/{registry}"


def image_args(cases: list[Case]) -> list[str]:
    return [a for c in cases for a in ("--reference", c.reference, "--digest", c.digest)]


def results(out: Path) -> dict[tuple[str, str], dict]:
    data = json.loads((out / "results.json").read_text())
    return {(e["reference"], e["signing_key"]): e for e in data["images"]}


def test_verify_mode_gives_every_case_its_verdict(corpus, tmp_path):
    """One verify run over every case (each its own key: the keyring holds them all, and every
    image is checked against every key; the case's own pair is the one that counts)."""
    _, built, fprs, _ = corpus
    cases = [c for c in CASES if c.name not in UNUSABLE]
    url = publish(tmp_path / "tree", cases, built)
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(b"".join(built[c.name][0] for c in cases))
    keys = [a for c in cases for a in ("--signing-key", fprs[c.name])]
    run = run_entrypoint("--mode", "verify", "--no-expand-index", "--verify-keyring",
                         str(keyring), "--lookaside-url", url, "--output-dir",
                         str(tmp_path / "v"), *keys, *image_args(cases),
                         env={"GNUPGHOME": str(tmp_path / "no-such-home")})
    assert run.returncode == 1, run.stderr
    found = results(tmp_path / "v")
    for case in cases:
        entry = found[(case.reference, fprs[case.name])]
        assert entry["status"] == ("verified" if accepts(case) else "invalid"), (case, entry)
        if not accepts(case):
            assert entry["findings"][0]["finding"] == case.finding.name.lower(), entry
    assert "Traceback" not in run.stderr


def test_a_keyring_without_a_usable_key_is_one_line_and_exit_2(corpus, tmp_path):
    _, built, fprs, _ = corpus
    for name in sorted(UNUSABLE):
        keyring = tmp_path / f"{name}.gpg"
        keyring.write_bytes(built[name][0])
        run = run_entrypoint("--mode", "verify", "--no-expand-index", "--verify-keyring",
                             str(keyring), "--signing-key", fprs[name], "--lookaside-url",
                             "https://lookaside.example.com/{registry}", "--output-dir",
                             str(tmp_path / name), *image_args([CASES_BY[name]]))
        assert run.returncode == 2, run.stderr
        errors = [ln for ln in run.stderr.splitlines() if "error" in ln.lower()]
        assert len(errors) == 1 and "no usable OpenPGP public keys" in errors[0], run.stderr
        assert not (tmp_path / name / "results.json").exists()


@pytest.fixture(scope="module")
def shared():
    """The cases whose forgery is in the message, all under one genuine key: one keyring and one
    signing key for a signing run (skip-signed, the msg signer's reply check)."""
    world = World(shared=True)
    cases = [c for c in CASES if not c.on_key]
    return world, cases, {c.name: c.build(world, c) for c in cases}


@pytest.fixture
def signing_home(shared):
    """A gpg home holding the genuine key's secret part (short path: gpg-agent's socket)."""
    world = shared[0]
    home = tempfile.mkdtemp(prefix="gc-")
    env = {**os.environ, "GNUPGHOME": home}
    subprocess.run(["gpg", "--batch", "--import"], input=f.secret_key(world.genuine, UID, T),
                   capture_output=True, env=env, check=True)
    yield home
    subprocess.run(["gpgconf", "--kill", "all"], capture_output=True, env=env, check=False)
    subprocess.run(["rm", "-rf", home], check=False)


def test_skip_signed_skips_exactly_the_cases_that_verify(shared, signing_home, tmp_path):
    """A gpg signing run with --lookaside-url pointing at the forgeries: an image is skipped
    ("already signed") only where its signature is one the project accepts; every other image
    is signed again."""
    world, cases, built = shared
    url = publish(tmp_path / "tree", cases, built)
    run = run_entrypoint("--signer", "gpg", "--signing-key", world.genuine.fingerprint,
                         "--lookaside-url", url, "--output-dir", str(tmp_path / "out"),
                         *image_args(cases), env={"GNUPGHOME": signing_home})
    assert run.returncode == 0, run.stderr
    found = results(tmp_path / "out")
    for case in cases:
        entry = found[(case.reference, world.genuine.fingerprint)]
        assert entry["status"] == ("skipped" if accepts(case) else "ok"), (case, entry)


def test_the_msg_signers_reply_check_refuses_exactly_what_does_not_verify(
        shared, broker, gpg_keys, tls_material, tmp_path):  # noqa: F811
    """A forger's signing server (``--replies-from``) answers each image's request with its
    case's signature; the msg signer checks every reply with verify_keyring (the genuine key's
    certificate) and writes only the signatures the project accepts."""
    world, cases, built = shared
    replies = tmp_path / "replies"
    replies.mkdir()
    for case in cases:
        (replies / case.digest.partition(":")[2]).write_bytes(built[case.name][1])
    keyring = tmp_path / "trusted.gpg"
    keyring.write_bytes(built["good"][0])
    server = Server(broker, gpg_keys, replies_from=str(replies))
    try:
        out = tmp_path / "out"
        run = sign(conf(tmp_path, broker, tls_material, verify_keyring=str(keyring)), out,
                   [world.genuine.fingerprint], image_args(cases))
    finally:
        server.stop()
    assert run.returncode == 1, run.stderr
    found = results(out)
    for case in cases:
        entry = found[(case.reference, world.genuine.fingerprint)]
        assert entry["status"] == ("ok" if accepts(case) else "failed"), (case, entry)
        if accepts(case):
            assert (out / entry["signature_path"]).read_bytes() == built[case.name][1]
