"""Real sigstore tools for the cosign signer's tests: cosign 2.5 and skopeo 1.18 from Debian trixie
(``scripts/fetch-trixie-tools.sh`` puts them in ``.cache/trixie``; bookworm has no cosign and its
skopeo is built without sigstore), cosign 3 from sid (``scripts/fetch-sid-cosign.sh``,
``.cache/sid``: the reader of Sigstore bundles), multi-arch images in a real registry, and
verifier settings.

Register with ``pytest_plugins = [..., "infra.sigstore"]`` for the ``trixie_tools`` fixture.

Every cosign call here stays on loopback: ``--tlog-upload=false`` when signing and
``--insecure-ignore-tlog=true`` when verifying (without it cosign 2.5 fetches the public Sigstore
TUF root over the internet, even with ``--key``). cosign runs with a private HOME, so neither the
user's ``~/.sigstore`` nor their ``~/.docker/config.json`` takes part.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FETCH = ROOT / "scripts" / "fetch-trixie-tools.sh"
CACHE = ROOT / ".cache" / "trixie"
FETCH_SID = ROOT / "scripts" / "fetch-sid-cosign.sh"  # cosign 3 from sid: bundles' reader
SID = ROOT / ".cache" / "sid"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


# -- the tools ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrixieTools:
    cosign: Path
    skopeo: Path
    versions: dict[str, str]  # Debian package versions: {"cosign": "2.5.0-2+b4", "skopeo": ...}
    home: Path  # cosign's private HOME
    cosign3: Path | None = None  # cosign 3.x from sid (None: the mirror has no sid)

    def cosign_env(self, password: str | None = None) -> dict:
        """The environment for cosign: a private HOME, and the key password (never in argv)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("COSIGN_", "SIGSTORE_", "TUF_"))}
        env.update(HOME=str(self.home), DOCKER_CONFIG=str(self.home / ".docker"))
        if password is not None:
            env["COSIGN_PASSWORD"] = password
        return env

    def run_cosign(self, *args: str, password: str | None = None,
                   cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.cosign), *args], env=self.cosign_env(password), cwd=cwd,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120)

    def run_cosign_env(self, env: dict, *args: str, password: str | None = None,
                       cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
        """``run_cosign`` with ``env`` added to cosign's environment: a sigstore test bed's
        ``SIGSTORE_*`` roots (``testbed.sigstore``), the GitHub token request variables."""
        return self._run(self.cosign, env, args, password, cwd)

    def run_cosign3_env(self, env: dict, *args: str, password: str | None = None,
                        cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
        """``run_cosign_env`` with cosign 3 (skips the test when there is none)."""
        if self.cosign3 is None:
            pytest.skip("no cosign 3 here: the machine's Debian mirror has no sid")
        return self._run(self.cosign3, env, args, password, cwd)

    def _run(self, binary: Path, env: dict, args: tuple[str, ...], password: str | None,
             cwd: str | os.PathLike | None) -> subprocess.CompletedProcess:
        return subprocess.run([str(binary), *args], env={**self.cosign_env(password), **env},
                              cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120)


@functools.cache
def ensure_trixie_tools() -> TrixieTools:
    """Run the fetch script (instant when the tools are already there) once per process."""
    subprocess.run([str(FETCH)], check=True)
    subprocess.run([str(FETCH_SID)], check=True)
    versions = dict(line.split(" ", 1) for line in
                    (CACHE / "versions").read_text().splitlines() if line)
    cosign3 = None
    if (SID / "versions").exists():
        versions["cosign3"] = (SID / "versions").read_text().split(" ", 1)[1].strip()
        cosign3 = SID / "bin" / "cosign"
    home = CACHE / "home"
    home.mkdir(exist_ok=True)
    return TrixieTools(CACHE / "bin" / "cosign", CACHE / "bin" / "skopeo", versions, home,
                       cosign3)


@pytest.fixture(scope="session")
def trixie_tools() -> TrixieTools:
    """cosign 2.5 and skopeo 1.18 from trixie, fetched into .cache/trixie on first use."""
    return ensure_trixie_tools()


def cosign_keypair(tmp_path: Path, password: str, name: str = "cosign",
                   tools: TrixieTools | None = None) -> tuple[Path, Path]:
    """``cosign generate-key-pair`` into ``tmp_path``: (NAME.key, NAME.pub). An existing pair of
    that name is an error: cosign would ask before overwriting it."""
    tools = tools or ensure_trixie_tools()
    key, pub = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
    if key.exists() or pub.exists():
        raise FileExistsError(key)
    proc = tools.run_cosign("generate-key-pair", "--output-key-prefix", name,
                            password=password, cwd=tmp_path)
    if proc.returncode or not key.exists() or not pub.exists():
        raise RuntimeError(f"cosign generate-key-pair failed: {proc.stderr}")
    return key, pub


# -- multi-arch images in a registry --------------------------------------------------------

@dataclass
class PushedIndex:
    """A multi-arch image as the registry serves it."""
    host: str
    repo: str
    tag: str
    digest: str  # the index's
    platforms: dict[str, str] = field(default_factory=dict)  # "linux/arm64" -> manifest digest

    @property
    def by_tag(self) -> str:
        return f"{self.host}/{self.repo}:{self.tag}"

    def by_digest(self, digest: str | None = None) -> str:
        return f"{self.host}/{self.repo}@{digest or self.digest}"


def _blob(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _platform_image(blobs: Path, os_: str, arch: str, content: str) -> dict:
    """A one-layer image (one file: ``content`` and the platform, so every platform differs);
    returns its manifest descriptor."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = f"{content} {os_}/{arch}\n".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({"architecture": arch, "os": os_, "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]}})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **_blob(blobs, config.encode())},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    **_blob(blobs, layer)}],
    }).encode()
    return {"mediaType": OCI_MANIFEST, **_blob(blobs, manifest),
            "platform": {"architecture": arch, "os": os_}}


def make_index_layout(dest: Path, platforms=("linux/amd64", "linux/arm64"),
                      content: str = "x") -> Path:
    """An OCI layout whose tag ``latest`` is an image index over one tiny image per platform."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    manifests = [_platform_image(blobs, *p.split("/", 1), content) for p in platforms]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": manifests}).encode()
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_INDEX, **_blob(blobs, index),
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return dest


def registry_manifest(host: str, repo: str, ref: str) -> bytes:
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{ref}",
                                 headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def push_index(registry_host: str, repo: str, tag: str, tmp: Path,
               platforms=("linux/amd64", "linux/arm64"), content: str = "x") -> PushedIndex:
    """Build a multi-arch image and push it with bookworm's skopeo (``copy --all`` keeps every
    manifest byte-exact); digests are computed from what the registry then serves."""
    layout = make_index_layout(tmp / f"index-{repo.replace('/', '_')}-{tag}", platforms, content)
    subprocess.run(["skopeo", "copy", "--quiet", "--all", "--dest-tls-verify=false",
                    f"oci:{layout}:latest", f"docker://{registry_host}/{repo}:{tag}"],
                   check=True, capture_output=True, timeout=120)
    raw = registry_manifest(registry_host, repo, tag)
    index = json.loads(raw)
    if index.get("mediaType") != OCI_INDEX:
        raise AssertionError(f"the registry serves {index.get('mediaType')}, not an index")
    pushed = PushedIndex(registry_host, repo, tag, "sha256:" + hashlib.sha256(raw).hexdigest())
    for m in index["manifests"]:
        served = registry_manifest(registry_host, repo, m["digest"])
        assert "sha256:" + hashlib.sha256(served).hexdigest() == m["digest"]
        pushed.platforms[f"{m['platform']['os']}/{m['platform']['architecture']}"] = m["digest"]
    return pushed


# -- verifiers ------------------------------------------------------------------------------

def cosign_verify(tools: TrixieTools, pubkey: Path, image_ref: str,
                  *extra: str) -> subprocess.CompletedProcess:
    """``cosign verify`` of the legacy ``sha256-<hex>.sig`` signatures, offline: exit 0 and the
    verified payloads as JSON on stdout; 10 when there is no signature, 12 when none matches the
    key. cosign checks the digest and key only: identity and media types are skopeo's business."""
    return tools.run_cosign("verify", "--key", str(pubkey), "--insecure-ignore-tlog=true",
                            "--allow-http-registry", *extra, image_ref)


def skopeo_sigstore_policy(path: Path, pubkey: Path, identity: dict | None = None,
                           scope: str = "") -> Path:
    """A containers-policy.json: reject everything, except docker images in ``scope`` (a registry
    host, ``host/repo``...; "" is every docker image) signed by ``pubkey``'s sigstore key.
    ``identity`` is the ``signedIdentity`` (default ``matchRepoDigestOrExact``, as podman's own
    default: pulled by tag, the signed docker-reference must carry that tag)."""
    rule = {"type": "sigstoreSigned", "keyPath": str(pubkey),
            "signedIdentity": identity or {"type": "matchRepoDigestOrExact"}}
    path.write_text(json.dumps({"default": [{"type": "reject"}],
                                "transports": {"docker": {scope: [rule]}}}, indent=2))
    return path


def skopeo_fulcio_policy(path: Path, ca_path: Path, oidc_issuer: str, subject_email: str,
                         rekor_public_key: Path, identity: dict | None = None,
                         scope: str = "") -> Path:
    """A containers-policy.json like ``skopeo_sigstore_policy`` for keyless signatures: a
    Fulcio certificate chaining to ``ca_path``, for ``subject_email`` (podman and skopeo match
    email identities only) from ``oidc_issuer``, logged in the Rekor whose key is
    ``rekor_public_key``."""
    rule = {"type": "sigstoreSigned",
            "fulcio": {"caPath": str(ca_path), "oidcIssuer": oidc_issuer,
                       "subjectEmail": subject_email},
            "rekorPublicKeyPath": str(rekor_public_key),
            "signedIdentity": identity or {"type": "matchRepoDigestOrExact"}}
    path.write_text(json.dumps({"default": [{"type": "reject"}],
                                "transports": {"docker": {scope: [rule]}}}, indent=2))
    return path


def skopeo_bed_policies(tmp: Path, host: str, pub: Path, env: dict,
                        email: str) -> tuple[Path, Path, Path]:
    """(registries.d, the key policy, the keyless policy) for images at ``host`` signed
    against a sigstore test bed (``env``: its SIGSTORE_* roots and OIDC_ISSUER): the key
    ``pub`` with the bed's Rekor, or a Fulcio certificate for ``email``."""
    regd = registries_d(tmp / "registries.d", host)
    key_policy = skopeo_sigstore_policy(tmp / "key-policy.json", pub)
    rule = json.loads(key_policy.read_text())
    rule["transports"]["docker"][""][0]["rekorPublicKeyPath"] = env["SIGSTORE_REKOR_PUBLIC_KEY"]
    key_policy.write_text(json.dumps(rule))
    fulcio_policy = skopeo_fulcio_policy(tmp / "fulcio-policy.json",
                                         Path(env["SIGSTORE_ROOT_FILE"]), env["OIDC_ISSUER"],
                                         email, Path(env["SIGSTORE_REKOR_PUBLIC_KEY"]))
    return regd, key_policy, fulcio_policy


def registries_d(directory: Path, host: str) -> Path:
    """A registries.d that tells skopeo to read sigstore signatures from the registry itself."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sigstore.yaml").write_text(json.dumps(  # JSON is YAML
        {"docker": {host: {"use-sigstore-attachments": True}}}))
    return directory


def skopeo_copy_all(tools: TrixieTools, policy: Path, regd: Path, image_by_tag: str,
                    dest: Path) -> subprocess.CompletedProcess:
    """Pull every platform of ``image_by_tag`` with skopeo 1.18, checking the sigstore policy.
    With ``--all`` skopeo checks each platform manifest's signature (not the index's).
    ``--remove-signatures``: an OCI layout cannot store the signatures ("Pushing signatures for
    OCI images is not supported"); the source's are checked all the same."""
    return subprocess.run(
        [str(tools.skopeo), "--policy", str(policy), "--registries.d", str(regd), "copy",
         "--quiet", "--all", "--remove-signatures", "--src-tls-verify=false", f"docker://{image_by_tag}",
         f"oci:{dest}:pulled"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
