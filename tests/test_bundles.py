"""Sigstore bundles (cosign 3's format), signed in-process, stored as OCI referrers, read back:
``signature_format: both`` against docker-registry (no referrers API: the ``sha256-<hex>``
fallback tag) and the test bed's OCI 1.1 registry (the referrers API), key and keyless, with
the sigstore test bed's Rekor and Fulcio. Independent readers in the same test: cosign 3.1
``verify`` (bundles, ``--trusted-root``), cosign 2.5 ``verify`` (legacy) and ``verify-attestation
--new-bundle-format`` (bundles), skopeo 1.18 (legacy, with the run's policy). The other way:
bundles cosign 3.1 and cosign 2.5 (``attest --new-bundle-format``) write are read by verify
mode. Hostile cases: a bundle moved onto another image's referrers, forged entries."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

import infra.sigstore as kit
from conftest import run_entrypoint
from signaction.formats import bundle, oci
from signaction.formats.oci import fallback_tag
from signaction.reference import Reference
from signaction.registry import RegistryClient
from testbed.registry import Registry
from testbed.sigstore import Sigstore

PASSWORD = "bundle horse battery"
REPOSITORY = "octo-org/octo-repo"
WORKFLOW_IDENTITY = f"https://github.com/{REPOSITORY}/.github/workflows/sign.yml@refs/heads/main"
SIGN_TYPE = "https://sigstore.dev/cosign/sign/v1"


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    with Sigstore(tmp_path_factory.mktemp("bundle-bed")) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def oci11(tmp_path_factory):
    """The test bed's registry with the referrers API (docker-registry has none)."""
    with Registry() as registry:
        yield registry


@pytest.fixture(scope="module")
def keys(tmp_path_factory, trixie_tools):
    return kit.cosign_keypair(tmp_path_factory.mktemp("bundle-keys"), PASSWORD,
                              tools=trixie_tools)


def conf(bed, **extra) -> dict:
    return {"allow_http_registry": True, "signature_format": "both",
            "fulcio_url": bed.env["FULCIO_URL"], "rekor_url": bed.env["REKOR_URL"],
            "oidc_issuer": bed.env["OIDC_ISSUER"],
            "fulcio_root_file": bed.env["SIGSTORE_ROOT_FILE"],
            "ctlog_public_key_file": bed.env["SIGSTORE_CT_LOG_PUBLIC_KEY_FILE"],
            "rekor_public_key_file": bed.env["SIGSTORE_REKOR_PUBLIC_KEY"], **extra}


def ambient(bed) -> dict:
    return {"ACTIONS_ID_TOKEN_REQUEST_URL": bed.env["ACTIONS_ID_TOKEN_REQUEST_URL"],
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": bed.request_token}


def run(tmp_path: Path, tools, config: dict, *args: str, out: str, env: dict | None = None):
    (tmp_path / f"{out}.yaml").write_text(json.dumps({"cosign_signer": config}))
    return run_entrypoint("--signer", "cosign", "--config-file", str(tmp_path / f"{out}.yaml"),
                          "--task-id", "t", "--output-dir", str(tmp_path / out), *args,
                          env={**tools.cosign_env(PASSWORD), **(env or {}),
                               "PATH": f"{tools.cosign.parent}:{os.environ['PATH']}"})


def results(tmp_path: Path, out: str) -> dict:
    return json.loads((tmp_path / out / "results.json").read_text())


def trusted_root_for_keys(tmp_path: Path) -> Path:
    """What cosign needs as --trusted-root to check a key's signature offline: no log, no CA."""
    path = tmp_path / "empty_trusted_root.json"
    path.write_text(json.dumps({"mediaType": "application/vnd.dev.sigstore.trustedroot+json;"
                                "version=0.1", "tlogs": [], "certificateAuthorities": [],
                                "ctlogs": [], "timestampAuthorities": []}))
    return path


def cosign3_verify(tools, bed, ref: str, *how: str):
    return tools.run_cosign3_env({}, "verify", "--allow-http-registry", "--trusted-root",
                                 bed.env["TRUSTED_ROOT"], *how, ref)


def cosign25_bundle(tools, bed, ref: str, *how: str):
    """cosign 2.5 reads a cosign-3 signature bundle as an attestation of the sign predicate."""
    roots = {k: bed.env[k] for k in ("SIGSTORE_ROOT_FILE", "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE",
                                     "SIGSTORE_REKOR_PUBLIC_KEY")}  # keyless: 2.5 asks TUF else
    return tools.run_cosign_env(roots, "verify-attestation", "--new-bundle-format", "--type",
                                SIGN_TYPE, "--allow-http-registry", "--trusted-root",
                                bed.env["TRUSTED_ROOT"], *how, ref)


def referrer_bundles(host: str, repo: str, digest: str) -> tuple[list[bytes], str]:
    client = RegistryClient(plain_http=True, environ={})
    ref = Reference(host, repo, "")
    from signers.cosign.verify import bundles_of
    found, where = bundles_of(client, ref, digest)
    return [raw for _, raw in found], where


# -- key and keyless, both formats, both kinds of registry ---------------------------------

@pytest.mark.parametrize("where", ["docker-registry", "oci11"])
def test_both_formats_with_a_key_read_by_every_reader(where, registry, oci11, trixie_tools, bed,
                                                      keys, tmp_path):
    host = registry.host if where == "docker-registry" else oci11.host
    key, pub = keys
    image = kit.push_index(host, "bundle/key", "v1", tmp_path, content=f"key-{where}",
                           platforms=("linux/amd64",))
    target = ["--image", f"{image.by_tag}@{image.digest}", "--signing-key", str(key)]
    signed = run(tmp_path, trixie_tools, conf(bed), *target, out="sign")
    assert signed.returncode == 0, signed.stderr
    entry = results(tmp_path, "sign")["images"][0]
    assert entry["signature_format"] == "both", entry
    assert entry["bundle_stored"] == ("referrers API" if where == "oci11"
                                      else f"tag {fallback_tag(image.digest)}"), entry
    saved = (tmp_path / "sign" / entry["bundle_path"]).read_bytes()
    assert json.loads(saved)["mediaType"] == bundle.BUNDLE_V03
    found, listed = referrer_bundles(host, image.repo, image.digest)
    assert found == [saved] and listed == ("api" if where == "oci11"
                                           else f"tag {fallback_tag(image.digest)}")

    ref = image.by_digest()
    rekor = bed.env["SIGSTORE_REKOR_PUBLIC_KEY"]
    assert cosign3_verify(trixie_tools, bed, ref, "--key", str(pub)).returncode == 0
    legacy = trixie_tools.run_cosign_env({"SIGSTORE_REKOR_PUBLIC_KEY": rekor}, "verify",
                                         "--allow-http-registry", "--key", str(pub), ref)
    assert legacy.returncode == 0, legacy.stderr
    read = cosign25_bundle(trixie_tools, bed, ref, "--key", str(pub))
    assert read.returncode == 0, read.stderr
    own = tmp_path / "sign" / "verification"
    import yaml
    policies = list(yaml.safe_load_all((own / "kubernetes" / "clusterimagepolicy.yaml")
                                       .read_text()))
    # policy-controller reads a key's signatures in the legacy form: it refuses a key
    # authority in the bundle form ("the authority must be keyless"), and both were written
    assert [a.get("signatureFormat") for p in policies for a in p["spec"]["authorities"]] == \
        [None]
    pulled = kit.skopeo_copy_all(trixie_tools, own / "policy.json", own / "registries.d",
                                 image.by_tag, tmp_path / "pulled")
    assert pulled.returncode == 0, pulled.stderr

    verified = run(tmp_path, trixie_tools, conf(bed), "--mode", "verify", *target[:-1],
                   str(pub), out="verify")
    assert verified.returncode == 0, verified.stderr
    for entry in results(tmp_path, "verify")["images"]:  # the index and its platform
        assert entry["signature_formats"] == {"legacy": "verified", "bundle": "verified"}

    again = run(tmp_path, trixie_tools, conf(bed), *target, out="again")
    assert again.returncode == 0 and results(tmp_path, "again")["summary"]["skipped"] == 2


def test_keyless_both_formats_read_by_cosign_3_and_2(registry, oci11, trixie_tools, bed,
                                                     tmp_path):
    image = kit.push_index(oci11.host, "bundle/keyless", "v1", tmp_path, content="keyless",
                           platforms=("linux/amd64",))
    target = ["--image", f"{image.by_tag}@{image.digest}", "--no-expand-index",
              "--signing-key", "keyless"]
    signed = run(tmp_path, trixie_tools, conf(bed), *target, out="sign", env=ambient(bed))
    assert signed.returncode == 0, signed.stderr
    entry = results(tmp_path, "sign")["images"][0]
    assert entry["certificate_identity"] == WORKFLOW_IDENTITY
    how = ("--certificate-identity", WORKFLOW_IDENTITY, "--certificate-oidc-issuer",
           bed.env["OIDC_ISSUER"])
    ref = image.by_digest()
    three = cosign3_verify(trixie_tools, bed, ref, *how)
    assert three.returncode == 0, three.stderr
    two = cosign25_bundle(trixie_tools, bed, ref, *how)
    assert two.returncode == 0, two.stderr
    verified = run(tmp_path, trixie_tools, conf(bed), "--mode", "verify", *target, *how,
                   out="verify")
    assert verified.returncode == 0, verified.stderr


# -- the other way: bundles others wrote, read by verify mode -------------------------------

def test_bundles_cosign_3_and_cosign_2_write_are_verified(oci11, registry, trixie_tools, bed,
                                                          keys, tmp_path):
    key, pub = keys
    three = kit.push_index(oci11.host, "bundle/by-cosign3", "v1", tmp_path, content="c3",
                           platforms=("linux/amd64",))
    made = trixie_tools.run_cosign3_env(
        {}, "sign", "--key", str(key), "--allow-http-registry", "--signing-config",
        bed.env["SIGNING_CONFIG"], "--trusted-root", bed.env["TRUSTED_ROOT"], "-y",
        three.by_digest(), password=PASSWORD)
    assert made.returncode == 0, made.stderr
    two = kit.push_index(registry.host, "bundle/by-cosign2", "v1", tmp_path, content="c2",
                         platforms=("linux/amd64",))
    predicate = tmp_path / "empty.json"
    predicate.write_text("{}")
    attested = trixie_tools.run_cosign_env(
        {}, "attest", "--new-bundle-format", "--key", str(key), "--type", SIGN_TYPE,
        "--predicate", str(predicate), "--tlog-upload=false", "--allow-http-registry", "-y",
        two.by_digest(), password=PASSWORD)
    assert attested.returncode == 0, attested.stderr
    for image, config in ((three, conf(bed, signature_format="bundle")),
                          (two, conf(bed, signature_format="bundle", upload_tlog=False,
                                     rekor_public_key_file=None))):
        config = {k: v for k, v in config.items() if v is not None}
        verified = run(tmp_path, trixie_tools, config, "--mode", "verify", "--image",
                       f"{image.by_tag}@{image.digest}", "--no-expand-index",
                       "--signing-key", str(pub), out=f"v-{image.repo.split('/')[1]}")
        assert verified.returncode == 0, (image.repo, verified.stdout, verified.stderr)


# -- hostile: a bundle of another image, moved onto this one's referrers -------------------

def test_a_bundle_moved_onto_another_image_fails_for_us_and_for_cosign(oci11, trixie_tools,
                                                                       bed, keys, tmp_path):
    key, pub = keys
    signed_image = kit.push_index(oci11.host, "bundle/moved", "a", tmp_path, content="a",
                                  platforms=("linux/amd64",))
    victim = kit.push_index(oci11.host, "bundle/moved", "b", tmp_path, content="b",
                            platforms=("linux/amd64",))
    config = conf(bed, signature_format="bundle")
    signed = run(tmp_path, trixie_tools, config, "--image",
                 f"{signed_image.by_tag}@{signed_image.digest}", "--no-expand-index",
                 "--signing-key", str(key), out="sign")
    assert signed.returncode == 0, signed.stderr
    theirs = (tmp_path / "sign" / results(tmp_path, "sign")["images"][0]["bundle_path"])
    client = RegistryClient(plain_http=True, environ={})
    ref = Reference(oci11.host, "bundle/moved", "b")
    subject = client.manifest(ref, victim.digest)
    client.push_blob(ref, oci.EMPTY_JSON)
    client.push_blob(ref, theirs.read_bytes())
    client.put_referrer(ref, bundle.referrer_manifest(theirs.read_bytes(), {
        "mediaType": subject.media_type, "size": len(subject.raw), "digest": victim.digest},
        "2026-01-01T00:00:00Z"), victim.digest)

    verified = run(tmp_path, trixie_tools, config, "--mode", "verify", "--image",
                   f"{victim.by_tag}@{victim.digest}", "--no-expand-index",
                   "--signing-key", str(pub), out="verify")
    assert verified.returncode == 1, verified.stderr
    entry = results(tmp_path, "verify")["images"][0]
    assert entry["status"] == "invalid" and "other digest" in json.dumps(entry), entry
    assert cosign3_verify(trixie_tools, bed, victim.by_digest(), "--key",
                          str(pub)).returncode != 0


# -- the fallback tag with concurrent writers ----------------------------------------------

def test_concurrent_writers_of_one_fallback_tag_lose_nothing(tmp_path):
    """Eight writers add a referrer each to one fallback tag at once (five rounds, the tag new
    each time), on a registry without the referrers API that honours If-Match and
    If-None-Match: every one is listed at the end."""
    with Registry(referrers=False) as old:
        client = RegistryClient(plain_http=True, environ={})
        ref = Reference(old.host, "race/app", "v1")
        for round_ in range(5):
            subject = f"sha256:{round_:02x}" + "ab" * 31
            added = [{"mediaType": oci.OCI_MANIFEST, "size": n, "digest": f"sha256:{n:064x}",
                      "artifactType": bundle.BUNDLE_V03} for n in range(1, 9)]
            barrier = threading.Barrier(len(added))
            errors: list[Exception] = []

            def write(descriptor: dict, subject: str, barrier: threading.Barrier,
                      errors: list[Exception]) -> None:
                barrier.wait()
                try:
                    client.add_fallback_referrer(ref, subject, descriptor)
                except Exception as e:  # reported below
                    errors.append(e)

            threads = [threading.Thread(target=write, args=(d, subject, barrier, errors))
                       for d in added]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors
            found, where = client.referrers(ref, subject)
            assert where == f"tag {fallback_tag(subject)}"
            assert sorted(m["digest"] for m in found) == sorted(d["digest"] for d in added)
