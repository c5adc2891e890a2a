"""Cosign signer: sigstore signatures made by the real cosign binary, attached in the registry.

One ``cosign sign`` per (image, key), with everything that decides what the signature says given
explicitly rather than left to cosign's defaults:
- the identity: ``--sign-container-identity`` with the reference AND its tag. Signing by digest
  alone makes cosign write a repository-only identity, which podman's default policy rejects;
- the format: the legacy ``sha256-<hex>.sig`` tag (``signature_format: legacy``, the default), which
  podman, skopeo, CRI-O and bootc read; on a cosign that defaults to bundles (3.x) the flags that
  keep the legacy format are added. ``signature_format: bundle`` asks for the new bundle format
  (needs a cosign that has ``--new-bundle-format``);
- annotations: ``tag=<tag>`` as pubtools-sign adds, plus the config's ``annotations``.

Secrets never reach argv: the key's passphrase goes to cosign as COSIGN_PASSWORD in its environment,
registry credentials as a private docker config (DOCKER_CONFIG). cosign's environment is an
allowlist (COSIGN_ENV, built by signers.child_env): never the action's INPUT_* (INPUT_CONFIG holds
registry passwords) nor GitHub's tokens. Images are signed ``num_threads`` at once, but one
digest is never signed by two cosign processes at once: cosign rewrites the one ``.sig``
manifest, and two concurrent writers lose a signature. What cosign signed (payload and signature)
is also written to the output folder; with ``upload: false`` only there, with a script that
attaches them later.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signaction.artifacts import Artifacts, key_data
from signaction.errors import InputError
from signaction.plan import Image, Plan, SigningKey, WorkItem
from signaction.registry import RegistryError
from signaction.results import Entry
from signaction.signing import FollowUp, SignatureFormat, Verification

from .base import Options, Outcome, Report, Signer
from .tools import Running, child_env, run_pool, run_tool

log = logging.getLogger(__name__)

KEY_URI = re.compile(r"^(awskms|gcpkms|azurekms|hashivault|k8s|env|pkcs11|gitlab)://")
FORMATS = ("legacy", "bundle")
PUBLIC_KEY_TIMEOUT = 120  # seconds for `cosign public-key` (a KMS may be slow)

# What cosign gets from the environment besides signers.BASE_ENV: what it reads for a key-based
# signature and nothing else. Registry credentials where its keychain (go-containerregistry's)
# looks for them, as this project's registry client does; cosign's own settings (COSIGN_*: set
# in the step's environment for cosign, e.g. COSIGN_REPOSITORY, COSIGN_PKCS11_PIN; COSIGN_PASSWORD
# is set by the signer itself, see _env) and sigstore's (SIGSTORE_*, TUF_ROOT: trust roots, Rekor
# and TSA keys); the network (proxies, CA certificates); KMS credentials (and the credential
# helpers a docker config may name): AWS, Google Cloud, Azure, Vault. Keyless signing (a later
# issue) would add GitHub's ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN here, through child_env's extra
# (signers.NEVER_ENV keeps them from every tool until then).
COSIGN_ENV = ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR",
              "COSIGN_*", "SIGSTORE_*", "TUF_ROOT",
              "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
              "SSL_CERT_FILE", "SSL_CERT_DIR",
              "AWS_*", "GOOGLE_*", "CLOUDSDK_*", "AZURE_*", "VAULT_*")
# ...and what one kind of key reads: env://NAME the variable NAME (the key itself), gitlab:// a
# GitLab token, k8s:// the cluster's address and a kubeconfig.
KEY_ENV = {"gitlab://": ("GITLAB_TOKEN", "GITLAB_HOST"),
           "k8s://": ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}


TREE = "cosign"  # the output folder's tree of cosign signatures
ATTACH_SCRIPT = "cosign-attach.sh"


@dataclass(frozen=True, slots=True)
class CosignSignature:
    """One cosign signature: the simple-signing payload it signs, and the signature (base64)."""

    payload: bytes
    signature: bytes


class CosignFormat(SignatureFormat):
    """cosign's legacy attachments: a copy of each signature in the output folder,
    ``cosign/<registry>/<ns>/<name>@sha256=<hex>/signature-N.sig`` (base64) with its
    ``signature-N.payload``; verified by podman/skopeo as ``sigstoreSigned`` from the
    ``sha256-<hex>.sig`` tag in the registry. ``attach_later`` (upload false): the signatures
    are only in the output folder, and ``cosign-attach.sh`` attaches them later."""

    own_paths = (((TREE,), True), ((ATTACH_SCRIPT,), False))

    def __init__(self, attach_later: bool = False):
        self.attach_later = attach_later

    def write(self, artifacts: Artifacts, image: Image, signature: Any) -> dict[str, Any]:
        path = artifacts.write_signature(TREE, image.reference, image.known_digest,
                                         signature.signature, suffix=".sig",
                                         companions={".payload": signature.payload})
        return {"signature_path": path, "payload_path": path.with_suffix(".payload")}

    def verification(self, artifacts: Artifacts, hosts: list[str],
                     public_keys: bytes | None) -> Verification:
        pems = re.findall(rb"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----\s*",
                          public_keys or b"", re.S)
        files = {"signing-keys.pub": b"".join(pems)} if pems else {}
        keys = [key_data(pem) for pem in pems] or \
            [{"keyPath": "/REPLACE/WITH/THE/COSIGN/PUBLIC/KEY.pub"}]
        # One requirement per key: every image was signed with every key, and podman requires
        # each requirement of a scope to be met.
        requirement = [{"type": "sigstoreSigned", **key,
                        "signedIdentity": {"type": "matchRepoDigestOrExact"}} for key in keys]
        lines = ["# podman/skopeo read cosign signatures attached in these registries.", "docker:"]
        for host in hosts:
            lines += [f"  {json.dumps(host)}:", "    use-sigstore-attachments: true"]
        return Verification(requirement, lines, _README, files)

    def after_run(self, artifacts: Artifacts, entries: Iterable[Entry]) -> list[FollowUp]:
        if not self.attach_later:
            return []
        signed = [(e.item.container.source, e.item.container.known_digest,
                   e.fields["payload_path"], e.fields["signature_path"])
                  for e in entries if "payload_path" in e.fields]
        return [(ATTACH_SCRIPT, lambda: write_attach_script(artifacts, signed))]


def write_attach_script(artifacts: Artifacts, signatures: Iterable[tuple[Any, str, str, str]]
                        ) -> Path:
    """``cosign-attach.sh``: attaches the cosign signatures written here (made with upload
    false) to their images, for a later job that may write to the registry. ``signatures``:
    (where the image is, its digest, payload path, signature path), paths relative to the
    output folder."""
    lines = ["#!/bin/sh",
             "# Attaches the cosign signatures of this run (signed with upload: false) to",
             "# their images. Run it where cosign can write to the registry (docker login,",
             "# or DOCKER_CONFIG); extra arguments go to every `cosign attach signature`,",
             "# e.g.  sh cosign-attach.sh --allow-http-registry=true",
             "set -eu", 'cd "$(dirname "$0")"']
    for location, digest, payload, signature in signatures:
        target = f"{location.host}/{location.path}@{digest}"
        lines.append(f'cosign attach signature "$@" --payload {_sh(payload)} '
                     f'--signature {_sh(signature)} {_sh(target)}')
    return artifacts.write_file([ATTACH_SCRIPT], ("\n".join(lines) + "\n").encode(), mode=0o755)


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


class CosignSigner(Signer):
    name = "cosign"
    section = "cosign_signer"
    summary = "sigstore signatures made by cosign, attached in the registry"
    expands_index = True

    def __init__(self, config, options: Options):
        super().__init__(config, options)
        inputs, environ = self.inputs, self.environ
        c = self.config
        self.cosign = c.get("cosign_bin") or "cosign"
        self.timeout = str(c.get("timeout") or "3m0s")
        retries = c.get("retries")
        self.attempts = max(1, int(retries if retries is not None else 5))
        self.threads = max(1, int(c.get("num_threads") or 10))
        self.upload = inputs.upload if inputs.upload is not None else bool(c.get("upload", True))
        self.format = CosignFormat(attach_later=not self.upload)
        self.signature_format = c.get("signature_format") or "legacy"
        if self.signature_format not in FORMATS:
            raise InputError(f"config: cosign_signer.signature_format: "
                             f"{self.signature_format!r} is not "
                             f"one of {', '.join(FORMATS)}")
        self.annotations = {str(k): str(v) for k, v in (c.get("annotations") or {}).items()}
        self.password = self.read_secret_file("password_file") or \
            environ.get("COSIGN_PASSWORD")
        self.deadline = inputs.deadline
        self.started = time.monotonic()
        self.flags: set[str] = set()  # the flags this cosign's `sign` knows
        self.public: dict[str, bytes] = {}  # key -> PEM public key

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []

    # -- before anything is signed ------------------------------------------------------

    def _env(self, docker_config: str | None = None,
             key: SigningKey | None = None) -> dict[str, str]:
        """cosign's environment, for ``key`` (None: a call that uses no key): COSIGN_ENV and
        what the key reads, the config's env_variables, the private docker config, and
        COSIGN_PASSWORD: the key's passphrase for a key that is encrypted with one (a key file,
        env://), else empty."""
        keep = list(COSIGN_ENV)
        uri = key.key if key is not None else ""
        if uri.startswith("env://"):
            keep.append(uri[len("env://"):])
        for scheme, names in KEY_ENV.items():
            if uri.startswith(scheme):
                keep += names
        extra = {str(k): str(v) for k, v in (self.config.get("env_variables") or {}).items()}
        # Set even when empty: an unset COSIGN_PASSWORD makes cosign prompt, and CI has no tty.
        needs_password = key is not None and (uri.startswith("env://") or
                                              not KEY_URI.match(uri))
        extra["COSIGN_PASSWORD"] = (self.password or "") if needs_password else ""
        if docker_config:
            extra["DOCKER_CONFIG"] = docker_config
        return child_env(self.environ, keep=keep, extra=extra)

    def _run(self, args: list[str], env: dict[str, str], timeout: float,
             running: Running | None = None) -> subprocess.CompletedProcess:
        proc, timed_out = run_tool([self.cosign, *args], env=env, timeout=timeout,
                                   running=running)
        err = proc.stderr.decode("utf-8", "replace")
        if timed_out:
            err += f"\ncosign did not finish within {timeout:.0f} s"
        return subprocess.CompletedProcess(proc.args, proc.returncode,
                                           proc.stdout.decode("utf-8", "replace"), err)

    def preflight(self, plan: Plan) -> None:
        found = shutil.which(self.cosign)
        if found is None:
            raise InputError(f"cosign signer: {self.cosign!r} not found (install cosign, or set "
                             "cosign_signer.cosign_bin)")
        self.cosign = found
        env = self._env()
        help_text = self._run(["sign", "--help"], env, 30).stdout
        self.flags = set(re.findall(r"--([a-z][a-z0-9-]+)", help_text))
        if self.signature_format == "bundle" and "new-bundle-format" not in self.flags:
            raise InputError(f"config: cosign_signer.signature_format: bundle needs a cosign "
                             f"with --new-bundle-format (3.x); {self.cosign} has not")
        for key in plan.keys:
            self.public[key.key] = self._public_key(key, self._env(key=key))

    def _public_key(self, key: SigningKey, env: dict[str, str]) -> bytes:
        named = f"signing key {key.key!r}" + (f" (alias {key.given!r})"
                                               if key.given != key.key else "")
        if not KEY_URI.match(key.key) and not os.path.isfile(key.key):
            raise InputError(f"{named}: no such file (a cosign key file, or a KMS URI such as "
                             "awskms://, gcpkms://, azurekms://, hashivault://, k8s://, env://)")
        result = self._run(["public-key", "--key", key.key], env, PUBLIC_KEY_TIMEOUT)
        if result.returncode != 0 or b"PUBLIC KEY" not in result.stdout.encode():
            why = _last_line(result.stderr) or f"exit {result.returncode}"
            hint = "" if self.password else " (COSIGN_PASSWORD is not set)"
            raise InputError(f"{named}: cosign cannot use it: {why}{hint}")
        return result.stdout.encode()

    # -- signing ------------------------------------------------------------------------

    def sign(self, items: Sequence[WorkItem], report: Report) -> None:
        running = Running()
        deadline_at = self.started + self.deadline if self.deadline else float("inf")
        # One digest, one cosign at a time: its items run in order in one task.
        groups: dict[tuple, list[WorkItem]] = defaultdict(list)
        for item in items:
            image = item.container
            groups[(image.source.host, image.source.path, image.digest)].append(item)
        with tempfile.TemporaryDirectory(prefix="cosign-") as tmp:
            docker_config = self._docker_config(tmp, items)
            envs: dict[str, dict[str, str]] = {}  # per key: its password or none, its names
            for item in items:
                if item.key.key not in envs:
                    envs[item.key.key] = self._env(docker_config, item.key)
            counter = iter(range(len(items)))
            lock = threading.Lock()

            def one_digest(group: list[WorkItem]) -> None:
                for item in group:
                    if running.ended:
                        return
                    with lock:
                        n = next(counter)
                    report(self._sign_one(item, envs[item.key.key], os.path.join(tmp, str(n)),
                                          running, deadline_at))

            run_pool(one_digest, groups.values(), workers=self.threads, name="cosign",
                     running=running, deadline_at=deadline_at)

    def _sign_one(self, item: WorkItem, env: dict[str, str], work: str, running: Running,
                  deadline_at: float) -> Outcome:
        image = item.container
        target = f"{image.source.host}/{image.source.path}@{image.digest}"
        os.mkdir(work)
        payload_file, sig_file = os.path.join(work, "payload"), os.path.join(work, "sig")
        args = ["--timeout", self.timeout, "sign", "--yes", "--key", item.key.key,
                f"--allow-http-registry={_bool(self.registry_settings.allow_http)}",
                f"--allow-insecure-registry={_bool(self.registry_settings.allow_insecure)}",
                f"--tlog-upload={_bool(self.config.get('upload_tlog', True))}",
                f"--upload={_bool(self.upload)}",
                "--sign-container-identity", str(image.reference),
                "--output-payload", payload_file, "--output-signature", sig_file,
                "-a", f"tag={image.reference.tag}"]
        if self.config.get("rekor_url"):
            args += ["--rekor-url", self.config["rekor_url"]]
        for k, v in self.annotations.items():
            args += ["-a", f"{k}={v}"]
        args += self._format_flags()
        args.append(target)
        error = ""
        for attempt in range(1, self.attempts + 1):
            left = deadline_at - time.monotonic()
            if left <= 0:
                return Outcome(item, error=f"cosign: the deadline was reached ({error})"
                               if error else "cosign: the deadline was reached")
            result = self._run(args, env, min(left, _seconds(self.timeout) + 30), running)
            if running.ended:
                return Outcome(item, error="the run was stopped")
            if result.returncode == 0:
                try:
                    with open(payload_file, "rb") as f:
                        payload = f.read()
                    with open(sig_file, "rb") as f:
                        signature = f.read().strip()
                except OSError as e:
                    return Outcome(item, error=f"cosign wrote no signature file: {e.strerror}")
                return Outcome(item, signature=CosignSignature(payload, signature),
                               detail=json.dumps(result.stderr.strip()))  # JSON text
            error = _last_line(result.stderr) or f"cosign exited with {result.returncode}"
            if attempt < self.attempts:
                pause = min(2.0 ** (attempt - 1), 30.0, max(deadline_at - time.monotonic(), 0))
                log.warning("cosign sign %s failed (attempt %d of %d): %s; again in %.0f s",
                            target, attempt, self.attempts, error, pause)
                time.sleep(pause)  # backoff between attempts of a failing external command
        return Outcome(item, error=f"cosign: {error}", detail=json.dumps(error))

    def slots(self, plan: Plan) -> int:
        return len(plan)  # cosign's output for each (image, key), as pubtools-sign keeps it

    def _format_flags(self) -> list[str]:
        if self.signature_format == "bundle":
            return ["--new-bundle-format=true"]
        flags = []
        if "new-bundle-format" in self.flags:  # cosign 3.x defaults to bundles via referrers
            flags.append("--new-bundle-format=false")
        if "use-signing-config" in self.flags:
            flags.append("--use-signing-config=false")
        return flags

    @contextmanager
    def signed_check(self, plan: Plan):
        yield self._existing

    def _existing(self, item: WorkItem) -> str | None:
        """Why ``item`` needs no new signature (a signature in the registry by this key, for this
        digest and identity, that verifies), or None. A registry problem means None: signing
        again is safe, skipping wrongly is not."""
        image = item.container
        try:
            found = self.registry.cosign_signatures(image.source, image.known_digest)
        except RegistryError as e:
            log.warning("could not check existing signatures of %s@%s: %s", image.source,
                        image.digest, e)
            return None
        for sig in found:
            if _matches(sig, image.known_digest, str(image.reference), self.public[item.key.key]):
                return f"already signed in the registry by this key for {image.reference}"
        return None

    def _docker_config(self, tmp: str, items: Sequence[WorkItem]) -> str | None:
        """A private docker config holding the configured registry credentials (cosign reads
        DOCKER_CONFIG), merged over the user's own: the same credentials the registry client
        uses (registry_settings); None when none are configured."""
        hosts = sorted({i.container.source.host for i in items})
        configured = self.registry_settings.docker_auths(hosts, self.environ)
        if configured is None:
            return None
        home = self.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
        try:
            with open(os.path.join(home, "config.json"), encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError):
            config = {}
        if not isinstance(config, dict) or not isinstance(config.get("auths", {}), dict):
            config = {}
        config.setdefault("auths", {}).update(configured)
        folder = os.path.join(tmp, "docker")
        os.mkdir(folder, 0o700)
        fd = os.open(os.path.join(folder, "config.json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                     0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(config, f)
        return folder

    def public_keys(self, plan: Plan) -> bytes | None:
        return b"".join(self.public.get(k.key, b"") for k in plan.keys) or None


_README = """\
# Verifying these cosign signatures

- `policy.json` accepts exactly the repositories signed in this run, with a cosign signature by
  each signing key (`signing-keys.pub`, also inlined as keyData), for the identity signed (the
  reference with its tag), and rejects everything else.
- `registries.d/container-sign-action.yaml` turns on `use-sigstore-attachments`, so podman and
  skopeo look for the `sha256-<hex>.sig` tag next to each image.

Try it (skopeo 1.13 or later, built with sigstore support):

    skopeo --policy verification/policy.json --registries.d verification/registries.d \\
        copy --all docker://REGISTRY/NS/NAME:TAG oci:/tmp/checked

or, per digest, `cosign verify --key verification/signing-keys.pub REGISTRY/NS/NAME@sha256:...`.
A multi-arch image has a signature for its index and for every platform manifest: `copy --all`
checks each. After copying the image to another registry, copy its signatures with it (e.g.
`cosign copy`), and sign for the name users pull (the identity), not the internal location.
"""


def _matches(sig: dict, digest: str, identity: str, public_pem: bytes) -> bool:
    """A cosign signature (payload, base64 signature) for this digest and identity, made by the
    key whose public part is ``public_pem``."""
    try:
        critical = json.loads(sig["payload"])["critical"]
        if critical["image"]["docker-manifest-digest"] != digest or \
                critical["identity"]["docker-reference"] != identity:
            return False
        return verify_signature(public_pem, sig["payload"], base64.b64decode(sig["signature"]))
    except (ValueError, KeyError, TypeError):
        return False


def verify_signature(public_pem: bytes, payload: bytes, signature: bytes) -> bool:
    """Does ``signature`` over ``payload`` verify with this PEM public key (ECDSA, RSA, Ed25519,
    as cosign makes them)?"""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    try:
        key = serialization.load_pem_public_key(public_pem)
        if isinstance(key, ec.EllipticCurvePublicKey):
            digest = {384: hashes.SHA384(), 521: hashes.SHA512()}.get(key.curve.key_size,
                                                                       hashes.SHA256())
            key.verify(signature, payload, ec.ECDSA(digest))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, payload)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return True


def _bool(value) -> str:
    return "true" if value else "false"


def _seconds(duration: str) -> float:
    """A Go duration such as ``3m0s`` or ``90s`` in seconds (180 if it can't be read)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", duration)
    if not parts:
        return 180.0
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


SIGNER = CosignSigner
