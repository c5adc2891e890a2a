"""The sigstore test infrastructure, proved against the real tools: cosign 2.5 signs multi-arch
images in a real registry on loopback, and both cosign and skopeo 1.18 (as podman would, with a
``sigstoreSigned`` policy) accept what they should and refuse what they should."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from infra.sigstore import (
    PushedIndex,
    TrixieTools,
    cosign_keypair,
    cosign_verify,
    push_index,
    registries_d,
    registry_manifest,
    skopeo_copy_all,
    skopeo_sigstore_policy,
)

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def keys(tmp_path_factory, trixie_tools):
    """Two cosign key pairs: ``good`` signs, ``other`` is a stranger."""
    d = tmp_path_factory.mktemp("cosign-keys")
    return {"good": cosign_keypair(d, PASSWORD, tools=trixie_tools),
            "other": cosign_keypair(d, PASSWORD, "other", tools=trixie_tools)}


def sign(tools: TrixieTools, key, ref: str, identity: str | None = None) -> None:
    """What the signer will do: a legacy ``.sig`` signature, no transparency log; ``identity``
    sets the signed docker-reference (without it cosign writes the repository only)."""
    args = ["sign", "--key", str(key), "--tlog-upload=false", "--allow-http-registry", "--yes",
            "-a", "tag=v1"]
    if identity:
        args += ["--sign-container-identity", identity]
    proc = tools.run_cosign(*args, ref, password=PASSWORD)
    assert proc.returncode == 0, proc.stderr


def sign_all(tools: TrixieTools, key, image: PushedIndex, identity: str | None) -> None:
    for digest in (image.digest, *image.platforms.values()):
        sign(tools, key, image.by_digest(digest), identity)


def skopeo_pull(tools, tmp_path, host, pubkey, image: PushedIndex, identity=None):
    tmp_path.mkdir(exist_ok=True)
    policy = skopeo_sigstore_policy(tmp_path / "policy.json", pubkey, identity, scope=host)
    regd = registries_d(tmp_path / "registries.d", host)
    return skopeo_copy_all(tools, policy, regd, image.by_tag, tmp_path / "pulled")


@pytest.fixture(scope="module")
def signed(registry, trixie_tools, keys, tmp_path_factory) -> PushedIndex:
    """A two-platform image signed like the signer will: index and each platform, tag identity."""
    image = push_index(registry.host, "infra/signed", "v1", tmp_path_factory.mktemp("signed"))
    sign_all(trixie_tools, keys["good"][0], image, identity=image.by_tag)
    return image


def test_tools_are_trixie_versions(trixie_tools):
    assert trixie_tools.versions["cosign"].startswith("2.5."), trixie_tools.versions
    assert trixie_tools.versions["skopeo"].startswith("1.18."), trixie_tools.versions
    # Debian's cosign reports "GitVersion: devel": the package version is the one to trust,
    # and the binary must run.
    assert subprocess.run([trixie_tools.cosign, "version"], capture_output=True).returncode == 0
    out = subprocess.run([trixie_tools.skopeo, "--version"], capture_output=True, text=True)
    assert out.stdout.startswith("skopeo version 1.18."), (out.stdout, out.stderr)


def test_push_index_serves_two_platform_manifests(registry, tmp_path):
    image = push_index(registry.host, "infra/pushed", "v1", tmp_path)
    assert set(image.platforms) == {"linux/amd64", "linux/arm64"}
    assert len({image.digest, *image.platforms.values()}) == 3
    index = json.loads(registry_manifest(registry.host, "infra/pushed", "v1"))
    assert [m["digest"] for m in index["manifests"]] == list(image.platforms.values())
    for platform, digest in image.platforms.items():
        manifest = json.loads(registry_manifest(registry.host, "infra/pushed", digest))
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json", platform


def test_signatures_are_legacy_sig_tags(registry, signed):
    """cosign 2.5 keeps the legacy layout by default: a ``sha256-<hex>.sig`` tag per digest."""
    with urllib.request.urlopen(f"http://{registry.host}/v2/{signed.repo}/tags/list",
                                timeout=10) as r:
        tags = json.load(r)["tags"]
    for digest in (signed.digest, *signed.platforms.values()):
        assert f"{digest.replace(':', '-')}.sig" in tags, tags


def test_cosign_verify_accepts_index_and_platforms(trixie_tools, keys, signed):
    for ref in (signed.by_tag, *map(signed.by_digest, signed.platforms.values())):
        proc = cosign_verify(trixie_tools, keys["good"][1], ref)
        assert proc.returncode == 0, (ref, proc.stderr)
        [payload] = json.loads(proc.stdout)
        assert payload["critical"]["identity"]["docker-reference"] == signed.by_tag
        assert payload["critical"]["image"]["docker-manifest-digest"] in (
            signed.digest, *signed.platforms.values())
        assert payload["optional"] == {"tag": "v1"}


def test_skopeo_copy_all_accepts(trixie_tools, registry, keys, signed, tmp_path):
    proc = skopeo_pull(trixie_tools, tmp_path, registry.host, keys["good"][1], signed)
    assert proc.returncode == 0, proc.stderr
    pulled = json.loads((tmp_path / "pulled" / "index.json").read_text())
    assert pulled["manifests"][0]["digest"] == signed.digest  # copied as is, every platform


def test_other_key_is_refused(trixie_tools, registry, keys, signed, tmp_path):
    proc = cosign_verify(trixie_tools, keys["other"][1], signed.by_tag)
    assert proc.returncode == 12 and "no matching signatures" in proc.stderr, proc.stderr
    proc = skopeo_pull(trixie_tools, tmp_path, registry.host, keys["other"][1], signed)
    assert proc.returncode != 0
    assert "cryptographic signature verification failed" in proc.stderr, proc.stderr


def test_unsigned_image_is_refused(trixie_tools, registry, keys, tmp_path):
    image = push_index(registry.host, "infra/unsigned", "v1", tmp_path, content="unsigned")
    proc = cosign_verify(trixie_tools, keys["good"][1], image.by_tag)
    assert proc.returncode == 10 and "no signatures found" in proc.stderr, proc.stderr
    proc = skopeo_pull(trixie_tools, tmp_path, registry.host, keys["good"][1], image)
    assert proc.returncode != 0
    assert "A signature was required, but no signature exists" in proc.stderr, proc.stderr


def test_repo_only_identity_is_refused_by_the_default_rule(trixie_tools, registry, keys,
                                                           tmp_path):
    """cosign signing by digest signs "host/repo" only; podman's default rule wants the tag."""
    image = push_index(registry.host, "infra/repo-only", "v1", tmp_path, content="repo-only")
    sign_all(trixie_tools, keys["good"][0], image, identity=None)
    proc = cosign_verify(trixie_tools, keys["good"][1], image.by_tag)
    assert proc.returncode == 0, proc.stderr  # cosign ignores the identity...
    [payload] = json.loads(proc.stdout)
    assert payload["critical"]["identity"]["docker-reference"] == f"{image.host}/{image.repo}"
    proc = skopeo_pull(trixie_tools, tmp_path / "default", registry.host, keys["good"][1], image)
    assert proc.returncode != 0  # ...skopeo does not
    assert "is not accepted" in proc.stderr, proc.stderr
    # The same signatures pass a rule that accepts any identity in the repository: the refusal
    # above is about the identity, nothing else.
    proc = skopeo_pull(trixie_tools, tmp_path / "repo", registry.host, keys["good"][1], image,
                       identity={"type": "matchRepository"})
    assert proc.returncode == 0, proc.stderr


def test_index_signature_alone_is_not_enough_for_copy_all(trixie_tools, registry, keys,
                                                          tmp_path):
    image = push_index(registry.host, "infra/index-only", "v1", tmp_path, content="index-only")
    sign(trixie_tools, keys["good"][0], image.by_digest(), identity=image.by_tag)
    assert cosign_verify(trixie_tools, keys["good"][1], image.by_tag).returncode == 0
    proc = skopeo_pull(trixie_tools, tmp_path, registry.host, keys["good"][1], image)
    assert proc.returncode != 0
    assert "A signature was required, but no signature exists" in proc.stderr, proc.stderr
