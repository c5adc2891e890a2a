"""The hostile cosign / sigstore corpus (issue 22, deliverable 6): forged legacy ``.sig``
signatures, one per case, each on a fresh image in a real registry, judged by the reference (cosign
2.5 ``cosign verify`` with only the test bed's roots; skopeo 1.18 with a sigstoreSigned policy,
recorded beside it) and by the project in its paths: verify mode, and skip-signed (a signing run:
"skipped, already signed" is an acceptance). The project's verdict must equal cosign's on every
case; where the project is deliberately stricter, ``STRICTER`` names the case and says why.

Keyless cases start from what an attacker can really hold: a genuine Fulcio leaf (CA:false) for
their own key and identity (``ATTACKER``), asked from the bed's Fulcio over HTTP. Where a case is
about one defect only, the other parts are made good with the bed's own keys, in-process (its CA
keys, its CT log's key): then the verifier has exactly that defect to find. The forging code is
tests/infra/sigstore_forge.py."""

from __future__ import annotations

import datetime
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509

from conftest import make_image, run_entrypoint
from infra import sigstore_forge as f
from infra.sigstore import (
    cosign_keypair,
    skopeo_bed_policies,
    skopeo_copy_all,
)
from signers.cosign.native import load_private_key
from testbed.sigstore import Sigstore

PASSWORD = "corpus password"
EMAIL = "release@example.com"  # the identity verified
ATTACKER = "mallory@example.com"  # the identity the attacker genuinely holds
ROOTS = ("SIGSTORE_ROOT_FILE", "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE", "SIGSTORE_REKOR_PUBLIC_KEY")
NOW = datetime.datetime.now(datetime.UTC)
HOUR = datetime.timedelta(hours=1)


class Ctx:
    """What the cases forge with: the bed (its URLs, and in-process its CA and CT log keys), a
    genuine Fulcio leaf for EMAIL (``good``) and one for ATTACKER (``mallory``), the key that
    key-based cases verify with (``key``), the registry host."""

    def __init__(self, bed: Sigstore, host: str):
        self.bed, self.host = bed, host
        self.good_key, self.mallory_key, self.key = f.new_key(), f.new_key(), f.new_key()
        self.good = f.fulcio_leaf(bed, self.good_key, EMAIL)
        self.mallory = f.fulcio_leaf(bed, self.mallory_key, ATTACKER)
        self.chain = f.pem_cert(bed.fulcio.intermediate) + f.pem_cert(bed.fulcio.root)

    def issued(self, key, **spec) -> x509.Certificate:
        """A leaf for ``key`` from the bed's real intermediate (its key, in-process), EMAIL and
        the bed's issuer unless ``spec`` says otherwise."""
        return f.forge_cert(f.CertSpec(**{
            "public_key": key.public_key(), "issuer_cert": self.bed.fulcio.intermediate,
            "issuer_key": self.bed.fulcio.key, "email": EMAIL,
            "oidc_issuer": self.bed.env["OIDC_ISSUER"], "ct": self.bed.ct, **spec}))


def keyless(ctx: Ctx, ref: str, digest: str, key, cert: x509.Certificate, chain: str, *,
            pay: bytes | None = None) -> f.Layer:
    """A keyless layer: ``key`` signs the claim, the entry is logged in the bed's Rekor with
    ``cert`` (Rekor checks the signature, not the chain), the bundle is that entry's."""
    data = pay or f.payload(ref, digest)
    sig = f.sign(key, data)
    pem = f.pem_cert(cert)
    entry = f.rekor_log(ctx.bed, data, sig, pem.encode())
    return f.Layer(data, sig, pem, chain, f.bundle(entry))


def with_key(ctx: Ctx, ref: str, digest: str, key=None, *, pay: bytes | None = None) -> f.Layer:
    data = pay or f.payload(ref, digest)
    sig = f.sign(key or ctx.key, data)
    entry = f.rekor_log(ctx.bed, data, sig, f.pem_public(key or ctx.key))
    return f.Layer(data, sig, bundle=f.bundle(entry))


def other_entry(ctx: Ctx, key, cert_pem: bytes) -> dict:
    """A genuine entry of the bed's Rekor for some other payload."""
    data = f.payload(f"{ctx.host}/elsewhere:v1", "sha256:" + "0" * 64)
    return f.rekor_log(ctx.bed, data, f.sign(key, data), cert_pem)


# -- keyless cases --------------------------------------------------------------------------

def kl_good_forged(ctx, ref, digest):
    """Control of the forging code: the genuine EMAIL leaf, the genuine chain, a genuine entry."""
    return keyless(ctx, ref, digest, ctx.good_key, ctx.good[0], ctx.chain)


def kl_leaf_issued(ctx, ref, digest):
    """A certificate for EMAIL issued by the attacker's genuine Fulcio leaf (CA:false) with its
    key; the chain annotation carries that leaf, then Fulcio's intermediate and root. Its SCT is
    signed by the bed's CT log key (in-process): only the chain is wrong."""
    key = f.new_key()
    cert = f.forge_cert(f.CertSpec(key.public_key(), ctx.mallory[0], ctx.mallory_key,
                                   email=EMAIL, oidc_issuer=ctx.bed.env["OIDC_ISSUER"],
                                   ct=ctx.bed.ct))
    return keyless(ctx, ref, digest, key, cert, f.pem_cert(ctx.mallory[0]) + ctx.chain)


def kl_intermediate_no_keycertsign(ctx, ref, digest):
    """An intermediate CA:true but without keyCertSign in its key usage, signed by the bed's
    root key (in-process: a mis-issued intermediate); the EMAIL leaf under it, in the chain
    annotation with the root."""
    bed = ctx.bed
    ikey = f.new_key()
    inter = f.forge_cert(f.CertSpec(ikey.public_key(), bed.fulcio.root, bed.fulcio.root_key,
                                    ca=True, path_length=0, key_cert_sign=False,
                                    subject="no-keycertsign", sct="none"))
    key = f.new_key()
    cert = f.forge_cert(f.CertSpec(key.public_key(), inter, ikey, email=EMAIL,
                                   oidc_issuer=bed.env["OIDC_ISSUER"], ct=bed.ct))
    return keyless(ctx, ref, digest, key, cert, f.pem_cert(inter) + f.pem_cert(bed.fulcio.root))


def kl_leaf_no_eku(ctx, ref, digest):
    """An EMAIL leaf from the real intermediate without the code-signing EKU (no EKU at all)."""
    key = f.new_key()
    return keyless(ctx, ref, digest, key, ctx.issued(key, eku=False), ctx.chain)


def kl_expired(ctx, ref, digest):
    """An EMAIL leaf from the real intermediate that expired an hour before Rekor integrated
    the entry."""
    key = f.new_key()
    return keyless(ctx, ref, digest, key,
                   ctx.issued(key, not_before=NOW - 2 * HOUR, not_after=NOW - HOUR), ctx.chain)


def kl_not_yet_valid(ctx, ref, digest):
    """An EMAIL leaf from the real intermediate valid from an hour after integration."""
    key = f.new_key()
    return keyless(ctx, ref, digest, key,
                   ctx.issued(key, not_before=NOW + HOUR, not_after=NOW + 2 * HOUR), ctx.chain)


def kl_self_signed(ctx, ref, digest):
    """A self-signed EMAIL leaf (CA:false), itself the chain annotation."""
    key = f.new_key()
    cert = f.forge_cert(f.CertSpec(key.public_key(), None, key, email=EMAIL,
                                   oidc_issuer=ctx.bed.env["OIDC_ISSUER"], sct="none"))
    return keyless(ctx, ref, digest, key, cert, f.pem_cert(cert))


def kl_attacker_root(ctx, ref, digest):
    """An attacker root and intermediate (named as the bed's are) in the chain annotation, the
    EMAIL leaf under them, an SCT by the bed's CT log key."""
    rkey, ikey, key = f.new_key(), f.new_key(), f.new_key()
    root = f.forge_cert(f.CertSpec(rkey.public_key(), None, rkey, ca=True, path_length=1,
                                   key_cert_sign=True, eku=False, subject="testbed-root",
                                   sct="none"))
    inter = f.forge_cert(f.CertSpec(ikey.public_key(), root, rkey, ca=True, path_length=0,
                                    key_cert_sign=True, subject="testbed-intermediate",
                                    sct="none"))
    cert = f.forge_cert(f.CertSpec(key.public_key(), inter, ikey, email=EMAIL,
                                   oidc_issuer=ctx.bed.env["OIDC_ISSUER"], ct=ctx.bed.ct))
    return keyless(ctx, ref, digest, key, cert, f.pem_cert(inter) + f.pem_cert(root))


def set_by_another_key(layer: f.Layer) -> f.Layer:
    """``layer`` with its bundle's SET re-made by another key over the same payload."""
    entry = json.loads(layer.bundle or "")["Payload"]
    layer.bundle = f.bundle({**entry, "verification": {}}, set_key=f.new_key())
    return layer


def kl_set_other_key(ctx, ref, digest):
    """Genuine leaf and entry; the SET re-made with another key over the same bundle payload."""
    return set_by_another_key(kl_good_forged(ctx, ref, digest))


def kl_set_other_body(ctx, ref, digest):
    """Genuine leaf and entry; the bundle's body swapped for another genuine entry's body (by
    the same certificate), its SET kept: the SET no longer covers the body."""
    layer = kl_good_forged(ctx, ref, digest)
    other = other_entry(ctx, ctx.good_key, f.pem_cert(ctx.good[0]).encode())
    b = json.loads(layer.bundle or "")
    b["Payload"]["body"] = other["body"]
    layer.bundle = json.dumps(b)
    return layer


def kl_entry_other_hash(ctx, ref, digest):
    """Genuine leaf and signature; the bundle is a genuine entry (valid SET) of the same
    certificate for another payload hash."""
    layer = kl_good_forged(ctx, ref, digest)
    layer.bundle = f.bundle(other_entry(ctx, ctx.good_key, f.pem_cert(ctx.good[0]).encode()))
    return layer


def with_entry_by(ctx, ref, digest, key, cert) -> f.Layer:
    """The genuine leaf's layer, its bundle a genuine entry of the same payload signed by
    ``key`` with ``cert``."""
    data = f.payload(ref, digest)
    layer = kl_good_forged(ctx, ref, digest)
    layer.bundle = f.bundle(f.rekor_log(ctx.bed, data, f.sign(key, data),
                                        f.pem_cert(cert).encode()))
    return layer


def kl_entry_other_signature(ctx, ref, digest):
    """Genuine leaf and signature; the bundle is a genuine entry for the same payload and
    certificate with another (valid, ECDSA is randomized) signature."""
    return with_entry_by(ctx, ref, digest, ctx.good_key, ctx.good[0])


def kl_entry_other_key(ctx, ref, digest):
    """Genuine leaf and signature; the bundle is a genuine entry of the same payload signed by
    the attacker's key and certificate."""
    return with_entry_by(ctx, ref, digest, ctx.mallory_key, ctx.mallory[0])


def kl_sct_missing(ctx, ref, digest):
    """An EMAIL leaf from the real intermediate without an SCT list."""
    key = f.new_key()
    return keyless(ctx, ref, digest, key, ctx.issued(key, sct="none"), ctx.chain)


def kl_sct_copied(ctx, ref, digest):
    """An EMAIL leaf from the real intermediate carrying the SCT list copied from the attacker's
    genuine certificate (valid, for another certificate)."""
    key = f.new_key()
    return keyless(ctx, ref, digest, key,
                   ctx.issued(key, sct="copy", copied=f.sct_value(ctx.mallory[0])), ctx.chain)


def kl_sct_other_log(ctx, ref, digest):
    """An EMAIL leaf from the real intermediate with an SCT signed by a key not the CT log's."""
    key = f.new_key()
    return keyless(ctx, ref, digest, key, ctx.issued(key, sct="other-log"), ctx.chain)


def kl_payload_other_digest(ctx, ref, digest):
    """Genuine leaf and entry; the claim names another image's digest."""
    return keyless(ctx, ref, digest, ctx.good_key, ctx.good[0], ctx.chain,
                   pay=f.payload(ref, "sha256:" + "1" * 64))


def kl_payload_other_identity(ctx, ref, digest):
    """Genuine leaf and entry; the claim's docker-reference is another repository."""
    return keyless(ctx, ref, digest, ctx.good_key, ctx.good[0], ctx.chain,
                   pay=f.payload(f"{ctx.host}/elsewhere/app:v1", digest))


def kl_other_identity(ctx, ref, digest):
    """The attacker's own genuine certificate (ATTACKER, not EMAIL), all else genuine."""
    return keyless(ctx, ref, digest, ctx.mallory_key, ctx.mallory[0], ctx.chain)


# -- key cases ------------------------------------------------------------------------------

def key_good_forged(ctx, ref, digest):
    """Control of the forging code: the key signs, a genuine Rekor entry."""
    return with_key(ctx, ref, digest)


def key_other_key(ctx, ref, digest):
    """Another key signs, with its genuine entry."""
    return with_key(ctx, ref, digest, f.new_key())


def key_set_other_key(ctx, ref, digest):
    """The key's signature and genuine entry; the SET re-made by another key."""
    return set_by_another_key(with_key(ctx, ref, digest))


def key_set_other_body(ctx, ref, digest):
    """The key's signature; the bundle's body swapped for another entry's by the same key."""
    layer = with_key(ctx, ref, digest)
    other = other_entry(ctx, ctx.key, f.pem_public(ctx.key))
    b = json.loads(layer.bundle or "")
    b["Payload"]["body"] = other["body"]
    layer.bundle = json.dumps(b)
    return layer


def key_entry_other_hash(ctx, ref, digest):
    """The key's signature; a genuine entry of the same key for another payload hash."""
    layer = with_key(ctx, ref, digest)
    layer.bundle = f.bundle(other_entry(ctx, ctx.key, f.pem_public(ctx.key)))
    return layer


def key_entry_other_key(ctx, ref, digest):
    """The key's signature; a genuine entry of the same payload signed by another key."""
    data = f.payload(ref, digest)
    layer = with_key(ctx, ref, digest)
    other = f.new_key()
    layer.bundle = f.bundle(f.rekor_log(ctx.bed, data, f.sign(other, data), f.pem_public(other)))
    return layer


def key_payload_other_digest(ctx, ref, digest):
    """The key signs a claim for another image's digest (genuine entry)."""
    return with_key(ctx, ref, digest, pay=f.payload(ref, "sha256:" + "1" * 64))


KEYLESS_CASES = {name[3:].replace("_", "-"): fn for name, fn in dict(globals()).items()
                 if name.startswith("kl_")}
KEY_CASES = {name[4:].replace("_", "-"): fn for name, fn in dict(globals()).items()
             if name.startswith("key_")}
CONTROLS = ("keyless:good-project", "key:good-project")  # signed by the project itself
CASES = [f"keyless:{c}" for c in KEYLESS_CASES] + [f"key:{c}" for c in KEY_CASES] + \
    list(CONTROLS)

# The project deliberately refuses where cosign accepts: case -> why. Nothing silent.
STRICTER = {
    "keyless:leaf-no-eku": "stricter: Fulcio's leaves carry the code-signing EKU; cosign (Go's "
    "x509) takes a leaf without any EKU for one valid for all, skopeo 1.18 refuses it",
    "keyless:payload-other-identity": "stricter: the claim's docker-reference must name the "
    "image (as podman and skopeo require); cosign verify checks only the digest",
}
# skopeo 1.18 (containers/image's sigstoreSigned with fulcio and rekorPublicKeyPath) accepts
# these, where cosign and the project refuse: case -> why. Recorded and asserted, not hidden.
SKOPEO_LAXER = {
    "keyless:intermediate-no-keycertsign": "containers/image leaves the chain to Go's x509, "
    "which does not check key usage",
    "keyless:leaf-no-eku": "Go's x509 takes a leaf without any EKU for one valid for all (the "
    "project is stricter than both: STRICTER)",
    "keyless:sct-missing": "containers/image does not check SCTs",
    "keyless:sct-copied": "containers/image does not check SCTs",
    "keyless:sct-other-log": "containers/image does not check SCTs",
}
# skip-signed: what is never skipped, by design (case -> why); the verdict is then "refused".
SKIP_STRICTER = {
    "keyless:leaf-no-eku": "stricter: Fulcio's leaves carry the code-signing EKU; cosign (Go's "
    "x509) takes a leaf without any EKU for one valid for all, skopeo 1.18 refuses it",
    "keyless:good-project": "stricter: keyless is never skipped (the identity a new "
    "certificate would name is not known before signing)",
    "keyless:good-forged": "stricter: keyless is never skipped (as above)",
    "keyless:payload-other-identity": "stricter: keyless is never skipped (as above)",
}


def conf(bed) -> dict:
    return {"registry": {"allow_http": True}, "cosign_signer": {
        "fulcio_url": bed.env["FULCIO_URL"], "rekor_url": bed.env["REKOR_URL"],
        "oidc_issuer": bed.env["OIDC_ISSUER"], "fulcio_root_file": bed.env["SIGSTORE_ROOT_FILE"],
        "ctlog_public_key_file": bed.env["SIGSTORE_CT_LOG_PUBLIC_KEY_FILE"],
        "rekor_public_key_file": bed.env["SIGSTORE_REKOR_PUBLIC_KEY"]}}


@pytest.fixture(scope="module")
def corpus(registry, trixie_tools, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cosign-corpus")
    with Sigstore(tmp / "bed", token_lifetime=300) as bed:
        ctx = Ctx(bed, registry.host)
        # the key cases' key: cosign's own key pair, read back for the forging code
        key, pub = cosign_keypair(tmp, PASSWORD, tools=trixie_tools)
        ctx.key = load_private_key(str(key), PASSWORD, "the corpus key")
        refs: dict[str, tuple[str, str]] = {}
        for case in CASES:
            repo = "corpus/" + case.replace(":", "-")
            refs[case] = (f"{registry.host}/{repo}:v1",
                          registry.push(make_image(tmp / "img" / case.replace(":", "-"), case),
                                        repo, "v1"))
        for case in CASES:
            if case in CONTROLS:
                continue
            kind, name = case.split(":")
            fn = (KEYLESS_CASES if kind == "keyless" else KEY_CASES)[name]
            ref, digest = refs[case]
            host, repo = ref.split("/", 1)
            f.attach(host, repo.rsplit(":", 1)[0], digest, [fn(ctx, ref, digest)])
        (tmp / "conf.json").write_text(json.dumps(conf(bed)))
        env = {**trixie_tools.cosign_env(PASSWORD),
               "PATH": f"{trixie_tools.cosign.parent}:{os.environ['PATH']}",
               "ACTIONS_ID_TOKEN_REQUEST_URL": bed.env["ACTIONS_ID_TOKEN_REQUEST_URL"]
               + f"&email={EMAIL}", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": bed.request_token}
        base = ["--signer", "cosign", "--config-file", str(tmp / "conf.json"),
                "--no-expand-index"]

        def images(cases) -> list[str]:
            return [a for c in cases for a in ("--image", f"{refs[c][0]}@{refs[c][1]}")]
        ctl = run_entrypoint(*base, "--output-dir", str(tmp / "controls"), "--signing-key",
                             str(key), "--signing-key", "keyless", *images(CONTROLS), env=env)
        assert ctl.returncode == 0, ctl.stderr
        keyless_cases = [c for c in CASES if c.startswith("keyless:")]
        key_cases = [c for c in CASES if c.startswith("key:")]
        verify_env = {"PATH": env["PATH"], "HOME": env["HOME"]}

        def verify(out: str, cases, *how: str):
            return run_entrypoint("--mode", "verify", *base, "--output-dir", str(tmp / out),
                                  *how, *[a for c in cases for a in ("--image", refs[c][0])],
                                  env=verify_env)
        roots = {k: bed.env[k] for k in ROOTS}

        def cosign(case: str):
            how = ["--certificate-identity", EMAIL, "--certificate-oidc-issuer",
                   bed.env["OIDC_ISSUER"]] if case.startswith("keyless:") else ["--key", str(pub)]
            return trixie_tools.run_cosign_env(roots, "verify", "--allow-http-registry",
                                               "--rekor-url", bed.env["REKOR_URL"], *how,
                                               refs[case][0])
        regd, key_policy, fulcio_policy = skopeo_bed_policies(tmp, registry.host, pub,
                                                              bed.env, EMAIL)

        def skopeo(case: str):
            policy = fulcio_policy if case.startswith("keyless:") else key_policy
            return skopeo_copy_all(trixie_tools, policy, regd, refs[case][0],
                                   tmp / "pulled" / case.replace(":", "-"))
        (tmp / "pulled").mkdir()
        with ThreadPoolExecutor(8) as pool:
            v_keyless = pool.submit(verify, "v-keyless", keyless_cases, "--signing-key",
                                    "keyless", "--certificate-identity", EMAIL,
                                    "--certificate-oidc-issuer", bed.env["OIDC_ISSUER"])
            v_key = pool.submit(verify, "v-key", key_cases, "--signing-key", str(pub))
            cos = dict(zip(CASES, pool.map(cosign, CASES), strict=True))
            sko = dict(zip(CASES, pool.map(skopeo, CASES), strict=True))
            runs = {"keyless": v_keyless.result(), "key": v_key.result()}
        # skip-signed, last (it signs again what it does not skip): the key cases
        skip = run_entrypoint(*base, "--output-dir", str(tmp / "skip"), "--skip-signed",
                              "--signing-key", str(key), *images(key_cases), env=env)
    return {"tmp": tmp, "refs": refs, "cosign": cos, "skopeo": sko, "runs": runs, "skip": skip}


def _entries(corpus, out: str) -> dict[str, dict]:
    path = corpus["tmp"] / out / "results.json"
    assert path.exists(), (out, corpus["runs"].get(out.removeprefix("v-")))
    return {e["reference"].split("@")[0]: e for e in json.loads(path.read_text())["images"]}


def verdicts(corpus, case: str) -> dict:
    """Accepted (True) or refused (False), by each judge."""
    ref = corpus["refs"][case][0]
    kind = case.split(":")[0]
    mine = _entries(corpus, f"v-{kind}")[ref]
    out = {"cosign": corpus["cosign"][case].returncode == 0,
           "skopeo": corpus["skopeo"][case].returncode == 0,
           "verify": mine["status"] == "verified", "verify_entry": mine}
    if kind == "key":
        skipped = _entries(corpus, "skip")[ref]
        out["skip"] = skipped["status"] == "skipped"
    else:
        out["skip"] = False  # keyless is never skipped (SKIP_STRICTER)
    return out


@pytest.mark.parametrize("case", CASES)
def test_verify_mode_agrees_with_cosign(corpus, case):
    v = verdicts(corpus, case)
    expected = v["cosign"] and case not in STRICTER
    assert v["verify"] == expected, (case, STRICTER.get(case), v,
                                     corpus["cosign"][case].stderr[-600:])


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("key:")] +
                         list(SKIP_STRICTER))
def test_skip_signed_agrees_with_cosign(corpus, case):
    v = verdicts(corpus, case)
    expected = v["cosign"] and case not in STRICTER and case not in SKIP_STRICTER
    assert v["skip"] == expected, (case, v, corpus["cosign"][case].stderr[-600:])


@pytest.mark.parametrize("case", CASES)
def test_verify_mode_agrees_with_skopeo(corpus, case):
    v = verdicts(corpus, case)
    if case in SKOPEO_LAXER:
        assert v["skopeo"] and not v["verify"], (case, v)
    else:
        assert v["verify"] == v["skopeo"], (case, v, corpus["skopeo"][case].stderr[-600:])


def test_the_controls_and_the_forging_code_are_accepted_by_cosign(corpus):
    for case in (*CONTROLS, "keyless:good-forged", "key:good-forged"):
        assert corpus["cosign"][case].returncode == 0, (case, corpus["cosign"][case].stderr)


def test_verdict_table(corpus, capsys):
    """The table of every verdict (printed with -s; also written to verdicts.json)."""
    rows = {}
    for case in CASES:
        v = verdicts(corpus, case)
        rows[case] = {k: v[k] for k in ("verify", "skip", "cosign", "skopeo")}
        rows[case]["reason"] = v["verify_entry"].get("reason", "")
        rows[case]["cosign_says"] = corpus["cosign"][case].stderr.strip().splitlines()[-1:]
    (corpus["tmp"] / "verdicts.json").write_text(json.dumps(rows, indent=1))
    with capsys.disabled():
        print(f"\n{'case':40} verify skip cosign skopeo")
        for case, r in rows.items():
            print(f"{case:40} {r['verify']!s:6} {r['skip']!s:5} {r['cosign']!s:6} "
                  f"{r['skopeo']!s:6}  {r['cosign_says']}")
    assert set(rows) == set(CASES)



