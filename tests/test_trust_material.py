"""Sigstore trust material as its clients take it now: ``trusted_root.json`` and
``signing_config.json`` as config keys and action inputs, and both fetched through TUF
(python-tuf) from a repository the test bed serves on loopback (testbed/tuf.py), including a
rotated root, an expired timestamp, a target changed on the mirror and targets signed by a
key the root does not name. The keyless signatures made from them are read by cosign 3.1 with
the trusted root the run copied into verification/."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import infra.sigstore as kit
from conftest import run_entrypoint
from signaction.formats import keys, rekor, trust
from signers.cosign import trust as cosign_trust
from test_bundles import WORKFLOW_IDENTITY, ambient, bed, cosign3_verify, oci11, results, run
from testbed.tuf import TufRepository

__all__ = ["bed", "oci11"]  # the fixtures test_bundles defines, used here too

ROOT_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"


def _key_der() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _log(url: str, der: bytes) -> dict:
    """A transparency log entry of a trusted root, complete enough for cosign 3."""
    return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": base64.b64encode(der).decode(),
                          "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                          "validFor": {"start": "2020-01-01T00:00:00Z"}},
            "logId": {"keyId": base64.b64encode(hashlib.sha256(der).digest()).decode()}}


# -- reading the files: pure logic ----------------------------------------------------------

def test_a_trusted_root_gives_every_log_key_the_named_log_first():
    one, two = _key_der(), _key_der()
    root = trust.read_trusted_root(json.dumps({
        "mediaType": ROOT_TYPE, "tlogs": [_log("https://a.example", one),
                                          _log("https://b.example", two)],
        "ctlogs": [_log("https://ct.example", one)]}).encode())
    pems = keys.pem_keys(root.rekor_pem())
    assert [keys.pem_spki(p) for p in pems] == [one, two]
    # an entry's log ID picks its key among several
    log_id = hashlib.sha256(two).hexdigest()
    assert keys.pem_spki(rekor.log_key(root.rekor_pem(), log_id)) == two
    # a reader of one key gets the log's key valid now
    assert keys.pem_spki(root.current_rekor("https://b.example/")) == two
    assert keys.pem_spki(root.current_rekor("https://c.example")) == one  # none: the first


def test_the_one_ct_key_for_cosign_is_the_latest_valid_now():
    old, retired, current, future = (_key_der() for _ in range(4))
    logs = [_log("https://ct/old", old), _log("https://ct/retired", retired),
            _log("https://ct/2022", current), _log("https://ct/next", future)]
    logs[0]["publicKey"]["validFor"] = {"start": "2019-01-01T00:00:00Z"}
    logs[1]["publicKey"]["validFor"] = {"start": "2021-01-01T00:00:00Z",
                                        "end": "2022-10-31T23:59:59.999Z"}
    logs[2]["publicKey"]["validFor"] = {"start": "2022-10-20T00:00:00Z"}
    logs[3]["publicKey"]["validFor"] = {"start": "2999-01-01T00:00:00Z"}
    root = trust.read_trusted_root(json.dumps({"mediaType": ROOT_TYPE, "ctlogs": logs,
                                               "tlogs": logs[:1]}).encode())
    assert keys.pem_spki(root.current_ctlog()) == current
    assert len(keys.pem_keys(root.ctlog_pem())) == 4  # the in-process check: every key


@pytest.mark.parametrize("document, says", [
    (b"[]", "not a JSON object"),
    (b"{", "not JSON"),
    (json.dumps({"mediaType": "application/json"}).encode(), "not a Sigstore trusted root"),
    (json.dumps({"mediaType": ROOT_TYPE + "garbage"}).encode(), "not a Sigstore trusted root"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    (json.dumps({"mediaType": ROOT_TYPE, "certificateAuthorities": [
        {"cert_chain": {"certificates": []}}]}).encode(), "no certChain.certificates"),
    (json.dumps({"mediaType": ROOT_TYPE}).encode(), "no certificate authority"),
    (json.dumps({"mediaType": ROOT_TYPE, "tlogs": [
        {"baseUrl": "https://r", "publicKey": {"rawBytes": "!!"}}]}).encode(), "not base64"),
    (json.dumps({"mediaType": ROOT_TYPE, "tlogs": [
        {"baseUrl": "https://r", "publicKey": {"rawBytes": "AAAA"}}]}).encode(),
     "not a DER public key"),
    (json.dumps({"mediaType": ROOT_TYPE, "tlogs": [_log("file:///etc", b"")]}).encode(),
     "not a DER public key"),
    (json.dumps({"mediaType": ROOT_TYPE, "certificateAuthorities": [
        {"certChain": {"certificates": [{"rawBytes": "AAAA"}]}}]}).encode(),
     "not a DER certificate"),
    (json.dumps({"mediaType": ROOT_TYPE, "tlogs": [{}] * 65}).encode(), "at most 64"),
    (b" " * (trust.MAX_FILE + 1), "larger than"),
])
def test_a_hostile_trusted_root_is_refused_saying_what(document, says):
    with pytest.raises(ValueError, match=says):
        trust.read_trusted_root(document, "trusted_root.json")


def test_the_signing_config_gives_the_services_valid_now_and_rekor_v1():
    def service(url, api=1, **valid):
        return {"url": url, "majorApiVersion": api, "validFor": valid}
    config = trust.read_signing_config(json.dumps({
        "mediaType": trust.SIGNING_CONFIG_TYPE,
        "caUrls": [service("https://old-ca", start="2020-01-01T00:00:00Z",
                           end="2021-01-01T00:00:00Z"),
                   service("https://ca", start="2020-01-01T00:00:00Z")],
        "oidcUrls": [service("https://later", start="2999-01-01T00:00:00Z")],
        "rekorTlogUrls": [service("https://rekor-v2", 2, start="2020-01-01T00:00:00Z"),
                          service("https://rekor", 1, start="2020-01-01T00:00:00Z")]}).encode())
    assert config == trust.SigningConfig("https://ca", None, "https://rekor")
    with pytest.raises(ValueError, match="not a Sigstore signing config"):
        trust.read_signing_config(json.dumps({"mediaType": "x"}).encode())
    with pytest.raises(ValueError, match="not an http"):
        trust.read_signing_config(json.dumps({"mediaType": trust.SIGNING_CONFIG_TYPE,
                                              "caUrls": [{"url": "file:///x"}]}).encode())


def test_the_public_instance_root_is_pinned_and_is_tuf_root_metadata():
    from tuf.api.metadata import Metadata, Root

    data = cosign_trust.EMBEDDED[cosign_trust.PUBLIC_TUF].read_bytes()
    assert hashlib.sha256(data).hexdigest() == \
        "73747011d0857ada15479a16c4cae0f3ed03aac698b523b97e1de314ac9d9ca8"
    root = Metadata.from_bytes(data)
    assert isinstance(root.signed, Root) and root.signed.version == 15
    root.verify_delegate("root", root)  # signed by its own threshold of root keys


def test_trusted_root_with_the_three_root_files_is_refused(tmp_path):
    der = _key_der()
    (tmp_path / "root.json").write_text(json.dumps({"mediaType": ROOT_TYPE, "tlogs": [
        _log("https://rekor.example", der)]}))
    (tmp_path / "rekor.pub").write_bytes(serialization.load_der_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "c.yaml").write_text(json.dumps({"cosign_signer": {
        "trusted_root_file": str(tmp_path / "root.json"),
        "rekor_public_key_file": str(tmp_path / "rekor.pub")}}))
    done = run_entrypoint("--signer", "cosign", "--config-file", str(tmp_path / "c.yaml"),
                          "--image", "127.0.0.1:1/a/b@sha256:" + "a" * 64, "--signing-key",
                          "keyless", "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: config: cosign_signer.trusted_root_file: not with "
                                  "cosign_signer.rekor_public_key_file"), done.stderr
    assert "Traceback" not in done.stderr


def test_verify_dry_run_keyless_on_the_public_instance_says_tuf(tmp_path):
    (tmp_path / "c.yaml").write_text(json.dumps({"cosign_signer": {}}))
    done = run_entrypoint("--signer", "cosign", "--config-file", str(tmp_path / "c.yaml"),
                          "--mode", "verify", "--image", "127.0.0.1:1/a/b:v1@sha256:" + "a" * 64,
                          "--signing-key", "keyless", "--certificate-identity", "a@b.example",
                          "--certificate-oidc-issuer", "https://issuer.example",
                          "--output-dir", str(tmp_path / "out"), "--dry-run",
                          "--no-expand-index")
    assert done.returncode == 0, done.stderr
    assert cosign_trust.PUBLIC_TUF in done.stdout + done.stderr


def test_dry_run_keyless_on_the_public_instance_says_tuf(tmp_path):
    (tmp_path / "c.yaml").write_text(json.dumps({"cosign_signer": {}}))
    done = run_entrypoint("--signer", "cosign", "--config-file", str(tmp_path / "c.yaml"),
                          "--image", "127.0.0.1:1/a/b:v1@sha256:" + "a" * 64, "--signing-key",
                          "keyless", "--output-dir", str(tmp_path / "out"), "--dry-run",
                          "--no-expand-index",
                          env={"ACTIONS_ID_TOKEN_REQUEST_URL": "http://127.0.0.1:1/t",
                               "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "x"})
    assert done.returncode == 0, done.stderr
    assert cosign_trust.PUBLIC_TUF in done.stdout + done.stderr


# -- files as config and inputs, with the test bed ------------------------------------------

def _keyless(tmp_path: Path, oci11, name: str):
    image = kit.push_index(oci11.host, f"trust/{name}", "v1", tmp_path, content=name,
                           platforms=("linux/amd64",))
    return image, ["--image", f"{image.by_tag}@{image.digest}", "--no-expand-index",
                   "--signing-key", "keyless"]


def _identity(bed) -> tuple[str, ...]:
    return ("--certificate-identity", WORKFLOW_IDENTITY, "--certificate-oidc-issuer",
            bed.env["OIDC_ISSUER"])


def test_keyless_from_a_trusted_root_and_signing_config_alone(bed, oci11, trixie_tools,
                                                              tmp_path):
    image, target = _keyless(tmp_path, oci11, "files")
    config = {"allow_http_registry": True, "signature_format": "both",
              "signing_config_file": bed.env["SIGNING_CONFIG"]}  # the URLs: only from here
    # a trusted root as the public one is: several Rekor and CT logs, the one in use not first
    root = json.loads(Path(bed.env["TRUSTED_ROOT"]).read_text())
    retired = {"start": "2019-01-01T00:00:00Z", "end": "2020-01-01T00:00:00Z"}
    for field, url in (("tlogs", "https://old-rekor.example"), ("ctlogs", "https://old-ct.example")):
        root[field].insert(0, _log(url, _key_der()))
        root[field][0]["publicKey"]["validFor"] = retired
    trusted_root = tmp_path / "trusted_root.json"
    trusted_root.write_text(json.dumps(root))
    signed = run(tmp_path, trixie_tools, config, *target, "--trusted-root", str(trusted_root),
                 out="sign", env=ambient(bed))
    assert signed.returncode == 0, signed.stderr
    assert results(tmp_path, "sign")["images"][0]["signature_format"] == "both"
    copied = tmp_path / "sign" / "verification" / "trusted_root.json"
    assert copied.read_bytes() == trusted_root.read_bytes()
    three = trixie_tools.run_cosign3_env({}, "verify", "--allow-http-registry",
                                         "--trusted-root", str(copied), *_identity(bed),
                                         image.by_digest())
    assert three.returncode == 0, three.stderr
    # verify mode needs no URLs: the trusted root alone (the log in use is not first in it,
    # so each entry's log ID has to pick the key)
    verified = run(tmp_path, trixie_tools, {"allow_http_registry": True,
                                            "signature_format": "both"},
                   "--mode", "verify", *target, *_identity(bed), "--trusted-root",
                   str(trusted_root), out="verify")
    assert verified.returncode == 0, verified.stderr
    assert set(results(tmp_path, "verify")["images"][0]["signature_formats"].values()) == \
        {"verified"}
    # the cosign binary reads one key a file: it gets the keys valid now, not the stale first
    other, target = _keyless(tmp_path, oci11, "binary")
    binary = run(tmp_path, trixie_tools, {**config, "engine": "cosign",
                                          "signature_format": "legacy"}, *target,
                 "--trusted-root", str(trusted_root), out="binary", env=ambient(bed))
    assert binary.returncode == 0, binary.stderr
    # a trusted root without what keyless checks with is refused, not used with a check left out
    del root["ctlogs"]
    trusted_root.write_text(json.dumps(root))
    partial = run(tmp_path, trixie_tools, config, *target, "--trusted-root", str(trusted_root),
                  out="partial", env=ambient(bed))
    assert partial.returncode == 2 and "no CT log key" in partial.stderr, partial.stderr


# -- TUF -------------------------------------------------------------------------------------

@pytest.fixture
def tuf(bed, tmp_path):
    targets = {"trusted_root.json": Path(bed.env["TRUSTED_ROOT"]).read_bytes(),
               "signing_config.v0.2.json": Path(bed.env["SIGNING_CONFIG"]).read_bytes()}
    with TufRepository(tmp_path / "tuf", targets) as repo:
        (tmp_path / "initial_root.json").write_bytes(repo.initial_root)
        yield repo


def _tuf_config(tuf, tmp_path: Path, cache: str = "cache") -> dict:
    return {"allow_http_registry": True, "signature_format": "both", "tuf_url": tuf.url,
            "tuf_root_file": str(tmp_path / "initial_root.json"),
            "tuf_cache_dir": str(tmp_path / cache)}


def test_keyless_with_trust_from_tuf_cached_and_rotated(bed, oci11, trixie_tools, tuf,
                                                        tmp_path):
    image, target = _keyless(tmp_path, oci11, "tuf")
    config = _tuf_config(tuf, tmp_path)
    signed = run(tmp_path, trixie_tools, config, *target, out="sign", env=ambient(bed))
    assert signed.returncode == 0, signed.stderr
    assert any(p.endswith(".trusted_root.json") for p in tuf.requests)
    three = cosign3_verify(trixie_tools, bed, image.by_digest(), *_identity(bed))
    assert three.returncode == 0, three.stderr
    # the next step: from the cache, only the timestamp (and the next root, absent) asked for
    tuf.requests.clear()
    verified = run(tmp_path, trixie_tools, config, "--mode", "verify", *target,
                   *_identity(bed), out="verify")
    assert verified.returncode == 0, verified.stderr
    assert sorted(tuf.requests) == ["/2.root.json", "/timestamp.json"]
    # the repository rotates its root key: the client follows from the root it was given
    tuf.rotate_root()
    tuf.publish()
    again = run(tmp_path, trixie_tools, _tuf_config(tuf, tmp_path, "fresh"), "--mode",
                "verify", *target, *_identity(bed), out="rotated")
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("attack, says", [
    ("expired", "ExpiredMetadataError"),
    ("tampered", "LengthOrHashMismatchError"),
    ("forged", "UnsignedMetadataError"),
])
def test_a_hostile_tuf_repository_stops_the_run_before_signing(bed, oci11, trixie_tools, tuf,
                                                               tmp_path, attack, says):
    image, target = _keyless(tmp_path, oci11, attack)
    if attack == "expired":
        tuf.expire("timestamp")
    elif attack == "tampered":
        tuf.tamper_target("trusted_root.json")
    else:
        tuf.forge("targets")
    done = run(tmp_path, trixie_tools, _tuf_config(tuf, tmp_path), *target, out="sign",
               env=ambient(bed))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "cosign_signer.tuf_url" in lines[0] and says in lines[0], \
        done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "sign" / "cosign").exists()  # nothing signed, nothing written
