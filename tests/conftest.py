"""Shared fixtures: real GPG keys, a real docker-registry on loopback, images pushed with skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

# The checkout's root and tests/ are on sys.path through pytest.ini's pythonpath (the test bed,
# tests/infra); signaction, signers and entrypoint are installed in the venv (make venv).
# free_port and wait_until are imported from here by many tests
from infra.registry import free_port, start_registry, stop_registry, wait_until  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "entrypoint.py"

# tls_material, rabbitmq; trixie_tools and the sigstore helpers; fault_proxy
pytest_plugins = ["infra.fixtures", "infra.sigstore", "infra.fault_proxy"]


# -- running the entrypoint ---------------------------------------------------------------

@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def popen_entrypoint(*args: str, env: dict | None = None) -> subprocess.Popen:
    """The entrypoint started as users run it (a clean environment plus ``env``), not waited
    for: for tests that signal it mid-run."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    return subprocess.Popen([sys.executable, str(ENTRYPOINT), *args], env={**base, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_entrypoint(*args: str, env: dict | None = None, cwd: str | os.PathLike | None = None,
                   timeout: float = 300) -> Run:
    """The entrypoint as users run it: a separate process, a clean environment."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("INPUT_", "GITHUB_"))}
    proc = subprocess.run([sys.executable, str(ENTRYPOINT), *args], env={**base, **(env or {})},
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr)


# -- GPG ----------------------------------------------------------------------------------

@dataclass
class GpgKeys:
    home: str
    a: str  # fingerprints
    b: str
    protected: str  # passphrase-protected key
    passphrase: str

    def env(self) -> dict:
        return {"GNUPGHOME": self.home}

    def forget_passphrases(self) -> None:
        """gpg-agent caches passphrases; a test that needs one checked starts from a clean cache."""
        subprocess.run(["gpgconf", "--reload", "gpg-agent"],
                       env={**os.environ, **self.env()}, check=True)


def _gen_key(home: str, uid: str, passphrase: str = "") -> str:
    subprocess.run(["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase",
                    passphrase, "--quick-gen-key", uid, "ed25519", "sign", "never"],
                   env={**os.environ, "GNUPGHOME": home}, check=True, capture_output=True)
    out = subprocess.run(["gpg", "--with-colons", "--list-secret-keys", uid],
                         env={**os.environ, "GNUPGHOME": home}, check=True,
                         capture_output=True, text=True).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="session")
def gpg_keys(tmp_path_factory) -> GpgKeys:
    # A short path: gpg-agent's socket path must stay under the UNIX socket length limit.
    home = tmp_path_factory.mktemp("gnupg")
    os.chmod(home, 0o700)
    keys = GpgKeys(str(home), _gen_key(str(home), "Key A <a@test.invalid>"),
                   _gen_key(str(home), "Key B <b@test.invalid>"), "", "correct horse")
    keys.protected = _gen_key(str(home), "Key P <p@test.invalid>", keys.passphrase)
    yield keys
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(home)},
                   check=False)


def gpg_decrypt(data: bytes, home: str) -> tuple[bytes, str]:
    """The signed content and the fingerprint that signed it, checked by gpg itself."""
    proc = subprocess.run(["gpg", "--batch", "--status-fd", "2", "--decrypt"], input=data,
                          env={**os.environ, "GNUPGHOME": home}, capture_output=True, check=True)
    status = proc.stderr.decode()
    valid = [line.split()[2] for line in status.splitlines() if "[GNUPG:] VALIDSIG" in line]
    assert valid, status
    return proc.stdout, valid[0]


# -- a registry and images ----------------------------------------------------------------

@dataclass
class Registry:
    host: str

    def manifest(self, repo: str, ref: str) -> bytes:
        req = urllib.request.Request(
            f"http://{self.host}/v2/{repo}/manifests/{ref}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                               "application/vnd.oci.image.index.v1+json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def push(self, layout: Path, repo: str, tag: str) -> str:
        """Push an OCI layout; return the digest of the manifest as the registry serves it."""
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                        f"oci:{layout}:latest", f"docker://{self.host}/{repo}:{tag}"],
                       check=True, capture_output=True)
        return "sha256:" + hashlib.sha256(self.manifest(repo, tag)).hexdigest()


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Registry:
    proc, host = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield Registry(host)
    finally:
        stop_registry(proc)


def _blob(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def make_image(dest: Path, content: str) -> Path:
    """An OCI layout holding a one-file image; ``content`` makes each image distinct."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = content.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]}})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **_blob(blobs, config.encode())},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    **_blob(blobs, layer)}],
    }).encode()
    ref = _blob(blobs, manifest)
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **ref,
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return dest


def skopeo_copy_verified(out_dir: Path, image: str, tmp: Path,
                         policy: Path | None = None) -> subprocess.CompletedProcess:
    """Pull ``image`` with the policy and registries.d that the run wrote (or ``policy``)."""
    verification = out_dir / "verification"
    dest = tmp / f"pulled-{time.monotonic_ns()}"
    return subprocess.run(
        ["skopeo", "--policy", str(policy or verification / "policy.json"),
         "--registries.d", str(verification / "registries.d"), "copy", "--quiet",
         "--src-tls-verify=false", f"docker://{image}", f"dir:{dest}"],
        capture_output=True, text=True)


@pytest.fixture
def gpg_refusing(tmp_path):
    """``gpg_refusing(key)``: the env of a gpg on PATH that passes everything to the real gpg,
    except that signing an image's claim with ``key`` fails as a wrong passphrase does (the
    preflight's test signature, a detached one, still succeeds): a key that fails mid-run."""
    def make(key: str) -> dict:
        real = shutil.which("gpg")
        bindir = tmp_path / "gpg-refusing"
        bindir.mkdir(exist_ok=True)
        wrapper = bindir / "gpg"
        wrapper.write_text(
            "#!/bin/sh\n"
            f'case " $* " in *" {key} "*"--sign "*)\n'
            '  echo "gpg: signing failed: Bad passphrase" >&2; exit 2;;\nesac\n'
            f'exec {real} "$@"\n')
        wrapper.chmod(0o755)
        return {"PATH": f"{bindir}:{os.environ['PATH']}"}
    return make


# -- lanes ----------------------------------------------------------------------------------
#
# A test that uses a real service or a tool's whole stack is an integration test because of
# the fixture it asks for, not because someone remembered to mark it: `make test-fast` runs the
# rest (logic, in-process parts, the entrypoint on local files) in under a minute.
SERVICE_FIXTURES = frozenset({
    "registry", "fault_proxy", "rabbitmq", "trixie_tools", "tls_material", "small_fs",
    "bed", "broker", "server", "start_bus", "signed", "corpus", "release", "oci11"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
