"""Pure logic of the cosign signer and its artifacts (the real thing: test_cosign_integration)."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from signaction.artifacts import Artifacts
from signaction.plan import Image, SigningKey, WorkItem
from signaction.reference import Reference, parse_reference
from signaction.signing import Finding
from signers.base import Options
from signers.cosign import (
    CosignFormat,
    CosignSignature,
    CosignSigner,
    CosignTrust,
    _seconds,
    cosign_problem,
    verify_signature,
    write_attach_script,
)

DIGEST = "sha256:" + "ab" * 32
IDENTITY = "registry.example.com/ns/app:1.0"


def pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def payload(digest=DIGEST, identity=IDENTITY) -> bytes:
    return json.dumps({"critical": {"identity": {"docker-reference": identity},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": "cosign container image signature"},
                       "optional": {"tag": "1.0"}}).encode()


def test_existing_signatures_must_match_digest_identity_and_key():
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def sig(body, signer=key):
        return {"payload": body, "signature": base64.b64encode(
            signer.sign(body, ec.ECDSA(hashes.SHA256()))).decode()}

    image = Image(parse_reference(IDENTITY)[0], DIGEST, "test")
    item = WorkItem(image, SigningKey("k", "k"))

    def finding(sig, public):
        problem, _ = cosign_problem(sig, item, CosignTrust(public_pem=pem(public)))
        return problem.finding if problem else None

    assert finding(sig(payload()), key) is None
    assert finding(sig(payload()), other) is Finding.OTHER_KEY
    assert finding(sig(payload(digest="sha256:" + "cd" * 32)), key) is Finding.OTHER_DIGEST
    # repo-only identity: podman would refuse it
    assert finding(sig(payload(identity="registry.example.com/ns/app")), key) is \
        Finding.OTHER_IDENTITY
    tampered = sig(payload())
    tampered["payload"] = tampered["payload"].replace(b"1.0\"}}", b"2.0\"}}")
    assert finding(tampered, key) is Finding.OTHER_KEY
    assert finding({"payload": b"not json", "signature": "x"}, key) is Finding.UNREADABLE


def test_ed25519_and_p384_keys_verify():
    ed = ed25519.Ed25519PrivateKey.generate()
    assert verify_signature(pem(ed), b"data", ed.sign(b"data"))
    assert not verify_signature(pem(ed), b"datA", ed.sign(b"data"))
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert verify_signature(pem(p384), b"d", p384.sign(b"d", ec.ECDSA(hashes.SHA384())))


@pytest.mark.parametrize("text,seconds", [("3m0s", 180), ("90s", 90), ("1h", 3600),
                                          ("1m30s", 90), ("500ms", 0.5), ("junk", 180)])
def test_go_durations(text, seconds):
    assert _seconds(text) == seconds


def test_legacy_format_is_kept_on_a_cosign_that_defaults_to_bundles():
    signer = CosignSigner({}, Options.default())
    signer.flags = {"new-bundle-format", "use-signing-config", "key"}  # what cosign 3 offers
    assert signer._format_flags() == ["--new-bundle-format=false", "--use-signing-config=false"]
    signer.flags = {"key"}  # cosign 2.5: legacy is its only format, nothing to add
    assert signer._format_flags() == []


def test_an_unknown_format_is_a_config_error():
    from signaction.errors import InputError
    with pytest.raises(InputError, match="signature_format: 'v3' is not one of legacy, bundle"):
        CosignSigner({"signature_format": "v3"}, Options.default())


def test_cosign_files_share_their_number_and_never_overwrite(tmp_path):
    art = Artifacts(tmp_path / "out")
    ref, _ = parse_reference(IDENTITY)
    image = Image(ref, DIGEST, "test")
    first = CosignFormat().write(art, image, CosignSignature(b"{}", b"c2ln"))["signature_path"]
    second = CosignFormat().write(art, image, CosignSignature(b"{2}", b"c2lnMg=="))[
        "signature_path"]
    assert first.name == "signature-1.sig" and second.name == "signature-2.sig"
    assert first.with_name("signature-1.payload").read_bytes() == b"{}"
    assert second.with_name("signature-2.payload").read_bytes() == b"{2}"
    assert "cosign" in first.relative_to(tmp_path / "out").parts[0]


def test_the_attach_script_quotes_what_it_is_given(tmp_path):
    art = Artifacts(tmp_path)
    art.create()
    location = Reference(host="stage.io", path="it's/a", tag="1")  # quoting is the point
    script = write_attach_script(art, [(location, DIGEST, "cosign/x/signature-1.payload",
                                       "cosign/x/signature-1.sig")])
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "cosign").write_text('#!/bin/sh\nfor a in "$@"; do printf "[%s]" "$a"; done; echo\n')
    (fake / "cosign").chmod(0o755)
    out = subprocess.run(["sh", str(script), "--allow-http-registry=true"],
                         env={"PATH": f"{fake}:/usr/bin:/bin"}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "[attach][signature][--allow-http-registry=true][--payload]"
        "[cosign/x/signature-1.payload][--signature][cosign/x/signature-1.sig]"
        f"[stage.io/it's/a@{DIGEST}]"]


def test_sigstore_verification_files(tmp_path):
    art = Artifacts(tmp_path)
    art.create()
    k1, k2 = (pem(ec.generate_private_key(ec.SECP256R1())) for _ in range(2))
    ref, _ = parse_reference(IDENTITY)
    folder = art.write_verification([ref.repository], CosignFormat().verification(
        art, [ref.host], k1 + k2))
    policy = json.loads((folder / "policy.json").read_text())
    rules = policy["transports"]["docker"]["registry.example.com/ns/app"]
    assert [base64.b64decode(r["keyData"]) for r in rules] == [k1, k2]
    assert {r["type"] for r in rules} == {"sigstoreSigned"}
    assert policy["default"] == [{"type": "reject"}]
    regd = (folder / "registries.d" / "container-sign-action.yaml").read_text()
    assert "use-sigstore-attachments: true" in regd and "registry.example.com" in regd


def test_cosign_environment_per_kind_of_key():
    """What each kind of key reads, and only for that key: env://NAME the variable NAME,
    gitlab:// a GitLab token, k8s:// the cluster; a KMS key gets no passphrase. Never the
    action's inputs or GitHub's tokens, whatever the config's env_variables leave out."""
    from signaction.plan import SigningKey
    environ = {"PATH": "/bin", "HOME": "/h", "COSIGN_PASSWORD": "pw", "RELEASE_KEY": "pem",
               "GITLAB_TOKEN": "glpat", "KUBECONFIG": "/kube", "INPUT_CONFIG": "registry pw",
               "GITHUB_TOKEN": "ghp", "VAULT_ADDR": "https://vault", "OTHER": "x"}
    signer = CosignSigner({"env_variables": {"EXTRA": "1"}}, Options.default(environ))

    def env(key):
        return signer._env(key=SigningKey(key, key) if key else None)

    common = {"PATH": "/bin", "HOME": "/h", "VAULT_ADDR": "https://vault", "EXTRA": "1"}
    assert env(None) == {**common, "COSIGN_PASSWORD": ""}
    assert env("cosign.key") == {**common, "COSIGN_PASSWORD": "pw"}
    assert env("env://RELEASE_KEY") == {**common, "COSIGN_PASSWORD": "pw", "RELEASE_KEY": "pem"}
    assert env("gitlab://project/key") == {**common, "COSIGN_PASSWORD": "",
                                           "GITLAB_TOKEN": "glpat"}
    assert env("k8s://ns/secret") == {**common, "COSIGN_PASSWORD": "", "KUBECONFIG": "/kube"}
    assert env("hashivault://release") == {**common, "COSIGN_PASSWORD": ""}


# -- keyless and the transparency log --------------------------------------------------------

def fulcio_like_cert(san, issuer_ext=None):
    """A self-signed certificate shaped as Fulcio's: ``san`` (x509 general names) and the
    issuer extensions given as {oid suffix: raw value}."""
    import datetime

    from cryptography import x509
    from cryptography.x509.oid import ObjectIdentifier
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
               .public_key(key.public_key()).serial_number(1).not_valid_before(now)
               .not_valid_after(now + datetime.timedelta(minutes=10)))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=True)
    for suffix, value in (issuer_ext or {}).items():
        builder = builder.add_extension(x509.UnrecognizedExtension(
            ObjectIdentifier(f"1.3.6.1.4.1.57264.1.{suffix}"), value), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_certificate_identity_and_issuer():
    from cryptography import x509

    from signers.cosign import read_certificate
    issuer = b"https://token.actions.githubusercontent.com"
    uri = "https://github.com/o/r/.github/workflows/x.yml@refs/heads/main"
    pem_, who, iss = read_certificate(fulcio_like_cert(
        [x509.UniformResourceIdentifier(uri)], {8: b"\x0c" + bytes([len(issuer)]) + issuer,
                                                1: b"https://ignored.example"}))
    assert (who, iss) == (uri, issuer.decode()) and pem_.startswith(b"-----BEGIN CERT")
    _, who, iss = read_certificate(fulcio_like_cert([x509.RFC822Name("a@example.com")],
                                                    {1: b"https://old.example"}))
    assert (who, iss) == ("a@example.com", "https://old.example")  # only the deprecated .1


@pytest.mark.parametrize("case,why", [
    ("garbage", "not a PEM X.509 certificate"), ("no-san", "no subject alternative name"),
    ("two-sans", "not one"), ("no-issuer", "names no OIDC issuer"),
    ("bad-der", "not a DER UTF8String"), ("control", "control characters"),
    ("long-der", "bad length")])
def test_hostile_certificates_are_refused_with_a_reason(case, why):
    from cryptography import x509

    from signers.cosign import read_certificate
    email = [x509.RFC822Name("a@example.com")]
    data = {"garbage": lambda: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "no-san": lambda: fulcio_like_cert(None, {1: b"x"}),
            "two-sans": lambda: fulcio_like_cert(email + [x509.RFC822Name("b@e.com")],
                                                 {1: b"x"}),
            "no-issuer": lambda: fulcio_like_cert(email),
            "bad-der": lambda: fulcio_like_cert(email, {8: b"\x04\x01x"}),
            "control": lambda: fulcio_like_cert(email, {1: b"https://x\n::add-mask::y"}),
            "long-der": lambda: fulcio_like_cert(email, {8: b"\x0c\x85xxxxx"})}[case]()
    with pytest.raises(ValueError, match=why):
        read_certificate(data)


def test_rekor_uuid_is_the_leaf_hash_of_the_canonical_body():
    import hashlib

    from signers.cosign import rekor_uuid
    key = ec.generate_private_key(ec.SECP256R1())
    sig = base64.b64encode(key.sign(b"payload", ec.ECDSA(hashes.SHA256())))
    body = json.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(b"payload").hexdigest()}},
        "signature": {"content": sig.decode(), "publicKey": {
            "content": base64.b64encode(pem(key)).decode()}}}}, separators=(",", ":"),
        sort_keys=True).encode()
    assert rekor_uuid(b"payload", sig, pem(key)) == hashlib.sha256(b"\0" + body).hexdigest()
    with pytest.raises(ValueError):
        rekor_uuid(b"payload", b"not base64!", pem(key))
    with pytest.raises(ValueError):
        rekor_uuid(b"payload", sig, b"-----BEGIN PUBLIC KEY-----\nAA\n-----END PUBLIC KEY-----\n")


def test_github_token_variables_go_to_keyless_cosign_only():
    from signaction.plan import SigningKey
    environ = {"PATH": "/bin", "ACTIONS_ID_TOKEN_REQUEST_URL": "http://t",
               "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "req-token"}
    signer = CosignSigner({}, Options.default(environ))
    assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN" not in signer._env()
    assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN" not in signer._env(key=SigningKey("k", "k"))
    keyless = signer._env(key=SigningKey("keyless", "keyless"))
    assert keyless["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] == "req-token"
    assert keyless["COSIGN_PASSWORD"] == ""
    assert "req-token" in signer.secrets()
    # a token of its own: GitHub's are not handed on even for keyless
    with_token = CosignSigner({"identity_token": "env://MINE"}, Options.default(environ))
    assert "ACTIONS_ID_TOKEN_REQUEST_URL" not in with_token._env(
        key=SigningKey("keyless", "keyless"))


def test_bad_sigstore_config_is_one_line():
    from signaction.errors import InputError
    with pytest.raises(InputError, match="fulcio_url: not an http"):
        CosignSigner({"fulcio_url": "ftp://x"}, Options.default())
    with pytest.raises(InputError, match="env:// needs a variable name"):
        CosignSigner({"identity_token": "env://1x"}, Options.default())


def test_the_summary_shows_sigstore_facts_escaped():
    from signaction.github import summary_markdown
    row = {"status": "ok", "reference": "r.io/a:1", "digest": DIGEST, "signing_key": "keyless",
           "error": None, "certificate_identity": "evil|`x`<b>", "certificate_oidc_issuer": "i",
           "rekor_log_index": 7, "rekor_entry_uuid": "ab" * 32}
    md = summary_markdown("t", {"signed": 1, "failed": 0, "skipped": 0}, [row], "res.json")
    assert "| Signature |" in md and "evil\\|\\`x\\`&lt;b\\>" in md
    assert "Rekor index 7" in md and "ab" * 32 in md
    plain = summary_markdown("t", {"signed": 1, "failed": 0, "skipped": 0},
                             [{**row, "certificate_identity": None, "rekor_log_index": None,
                               "rekor_entry_uuid": None, "certificate_oidc_issuer": None}], "r")
    assert "Signature" in plain  # the keys are there: the column is; its cell is empty


def test_keyless_verification_files(tmp_path):
    """An email identity: a fulcio requirement with the roots copied here; a URI identity
    (podman cannot match it): no requirement (alone: reject) and cosign verify commands."""
    ref, _ = parse_reference(IDENTITY)
    image = Image(ref, DIGEST, "test")
    roots = {"fulcio_root_file": b"-----BEGIN CERTIFICATE-----\n", "rekor_public_key_file":
             b"-----BEGIN PUBLIC KEY-----\n"}

    def files(identity):
        art = Artifacts(tmp_path / identity.replace("/", "_"))
        art.create(CosignFormat.own_paths)
        fmt = CosignFormat(tlog=True, roots=roots)
        fmt.keyless = True
        fmt.write(art, image, CosignSignature(b"{}", b"c2ln", b"-----BEGIN CERTIFICATE-----",
                                              identity, "https://issuer.example", 3, "ab" * 32))
        folder = art.write_verification([ref.repository], fmt.verification(art, [ref.host],
                                                                           None))
        rules = json.loads((folder / "policy.json").read_text())["transports"]["docker"][
            ref.repository]
        return folder, rules

    folder, [rule] = files("a@example.com")
    assert rule["fulcio"] == {"caPath": str(folder / "fulcio_root.pem"),
                              "oidcIssuer": "https://issuer.example",
                              "subjectEmail": "a@example.com"}
    assert rule["rekorPublicKeyPath"] == str(folder / "rekor.pub")
    assert (folder / "fulcio_root.pem").read_bytes() == roots["fulcio_root_file"]
    folder, rules = files("https://ci.example/o/r")
    assert rules == [{"type": "reject"}]
    script = (folder / "cosign-verify.sh").read_text()
    assert f"--certificate-identity 'https://ci.example/o/r' --certificate-oidc-issuer " \
           f"'https://issuer.example' 'registry.example.com/ns/app@{DIGEST}'" in script
    assert "podman and skopeo cannot match" in (folder / "README.md").read_text()
