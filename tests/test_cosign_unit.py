"""Pure logic of the cosign signer and its artifacts (the real thing: test_cosign_integration)."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from signaction.artifacts import Artifacts
from signaction.plan import Image
from signaction.reference import Reference, parse_reference
from signers.base import Options
from signers.cosign import (
    CosignFormat,
    CosignSignature,
    CosignSigner,
    _matches,
    _seconds,
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

    assert _matches(sig(payload()), DIGEST, IDENTITY, pem(key))
    assert not _matches(sig(payload()), DIGEST, IDENTITY, pem(other))  # another key
    assert not _matches(sig(payload(digest="sha256:" + "cd" * 32)), DIGEST, IDENTITY, pem(key))
    assert not _matches(sig(payload(identity="registry.example.com/ns/app")), DIGEST, IDENTITY,
                        pem(key))  # repo-only identity: podman would refuse it
    tampered = sig(payload())
    tampered["payload"] = tampered["payload"].replace(b"1.0\"}}", b"2.0\"}}")
    assert not _matches(tampered, DIGEST, IDENTITY, pem(key))
    assert not _matches({"payload": b"not json", "signature": "x"}, DIGEST, IDENTITY, pem(key))


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
