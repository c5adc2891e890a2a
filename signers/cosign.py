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

Keyless (the signing key ``keyless``): cosign gets a Fulcio certificate for the CI's OIDC identity
(in GitHub its ambient provider, which reads ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN: handed to
cosign for keyless signatures only; elsewhere ``identity_token``, a file re-read for each
signature or ``env://VAR``, given to cosign as a path: a token is never on argv) and logs the
signature in Rekor. What a signature's entry in results.json says about it comes from what cosign
gives and what can be computed: the log index cosign prints, the entry's UUID (the RFC 6962 leaf
hash of the body Rekor stores, computed from the payload, signature and key or certificate), and
the certificate's identity and issuer (read from the certificate cosign wrote).
"""

from __future__ import annotations

import base64
import hashlib
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
from signaction.formats import fulcio, keys, rekor
from signaction.formats.fulcio import read_certificate
from signaction.inputs import Inputs
from signaction.plan import Image, Plan, SigningKey, WorkItem
from signaction.reference import parse_reference
from signaction.registry import RegistryClient, RegistryError
from signaction.safeload import read_regular_file
from signaction.signing import (
    INVALID,
    MISSING,
    VERIFIED,
    Check,
    Finding,
    FollowUp,
    Problem,
    Recorded,
    SignatureFormat,
    Store,
    Verdict,
    Verification,
    listed,
)

from . import cosign_native, sigstore_services
from .base import Options, Outcome, Report, Signer
from .tools import Running, child_env, run_pool, run_tool

log = logging.getLogger(__name__)

KEY_URI = re.compile(r"^(awskms|gcpkms|azurekms|hashivault|k8s|env|pkcs11|gitlab)://")
FORMATS = ("legacy", "bundle")
ENGINES = ("auto", "native", "cosign")  # cosign_signer.engine
NATIVE = "native"  # path_of: signed in-process (signers.cosign_native)
PUBLIC_KEY_TIMEOUT = 120  # seconds for `cosign public-key` (a KMS may be slow)

# What cosign gets from the environment besides signers.BASE_ENV: what it reads for a key-based
# signature and nothing else. Registry credentials where its keychain (go-containerregistry's)
# looks for them, as this project's registry client does; cosign's own settings (COSIGN_*: set
# in the step's environment for cosign, e.g. COSIGN_REPOSITORY, COSIGN_PKCS11_PIN; COSIGN_PASSWORD
# is set by the signer itself, see _env) and sigstore's (SIGSTORE_*, TUF_ROOT: trust roots, Rekor
# and TSA keys); the network (proxies, CA certificates); KMS credentials (and the credential
# helpers a docker config may name): AWS, Google Cloud, Azure, Vault. Keyless signing adds
# GitHub's ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN (AMBIENT_ENV) for keyless signatures only, through
# child_env's extra (signers.NEVER_ENV keeps them from every tool otherwise).
COSIGN_ENV = ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR",
              "COSIGN_*", "SIGSTORE_*", "TUF_ROOT",
              "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
              "SSL_CERT_FILE", "SSL_CERT_DIR",
              "AWS_*", "GOOGLE_*", "CLOUDSDK_*", "AZURE_*", "VAULT_*")
# ...and what one kind of key reads: env://NAME the variable NAME (the key itself), gitlab:// a
# GitLab token, k8s:// the cluster's address and a kubeconfig.
KEY_ENV = {"gitlab://": ("GITLAB_TOKEN", "GITLAB_HOST"),
           "k8s://": ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}


KEYLESS = "keyless"  # the signing key that asks for a Fulcio certificate
AMBIENT_ENV = ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
# config key -> the variable cosign reads it from (without them: cosign's TUF roots, i.e. the
# public Sigstore's), and the name of its copy in verification/
ROOT_FILES = {"fulcio_root_file": ("SIGSTORE_ROOT_FILE", "fulcio_root.pem"),
              "ctlog_public_key_file": ("SIGSTORE_CT_LOG_PUBLIC_KEY_FILE", "ctlog.pub"),
              "rekor_public_key_file": ("SIGSTORE_REKOR_PUBLIC_KEY", "rekor.pub")}
URL_KEYS = ("rekor_url", "fulcio_url", "oidc_issuer")
TLOG_INDEX = re.compile(r"^tlog entry created with index: (\d{1,18})\s*$", re.M)
JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
MAX_TOKEN = 64 << 10  # bytes of an identity token file
MAX_PEM = 1 << 20  # bytes of a root file or a certificate cosign wrote

TREE = "cosign"  # the output folder's tree of cosign signatures
ATTACH_SCRIPT = "cosign-attach.sh"


@dataclass(frozen=True, slots=True)
class CosignSignature:
    """One cosign signature: the simple-signing payload it signs, and the signature (base64);
    keyless, the Fulcio certificate (PEM) and its identity (SAN) and OIDC issuer; with the
    transparency log, the Rekor entry's log index (as cosign printed it) and UUID."""

    payload: bytes
    signature: bytes
    certificate: bytes | None = None
    identity: str | None = None
    issuer: str | None = None
    log_index: int | None = None
    log_uuid: str | None = None


class CosignFormat(SignatureFormat):
    """cosign's legacy attachments: a copy of each signature in the output folder,
    ``cosign/<registry>/<ns>/<name>@sha256=<hex>/signature-N.sig`` (base64) with its
    ``signature-N.payload`` (and, keyless, ``signature-N.crt``: the Fulcio certificate);
    verified by podman/skopeo as ``sigstoreSigned`` from the ``sha256-<hex>.sig`` tag in the
    registry. ``attach_later`` (upload false): the signatures are only in the output folder, and
    ``cosign-attach.sh`` attaches them later. ``tlog``: signatures are logged in Rekor;
    ``roots``: the trust roots' files (ROOT_FILES' keys -> bytes) copied into verification/."""

    own_paths = (((TREE,), True), ((ATTACH_SCRIPT,), False))

    def __init__(self, attach_later: bool = False, tlog: bool = False,
                 roots: dict[str, bytes] | None = None):
        self.attach_later = attach_later
        self.tlog = tlog
        self.roots = roots or {}
        self.keyless = False  # set by the signer when the plan has the key keyless
        self._lock = threading.Lock()
        # keyless identities signed: (identity, issuer) -> the images (REF@DIGEST) signed
        self.identities: dict[tuple[str, str], list[str]] = defaultdict(list)

    def write(self, artifacts: Store, image: Image, signature: Any) -> dict[str, Any]:
        companions = {".payload": signature.payload}
        if signature.certificate:
            companions[".crt"] = signature.certificate
        path = artifacts.write_signature(TREE, image.reference, image.known_digest,
                                         signature.signature, suffix=".sig",
                                         companions=companions)
        fields: dict[str, Any] = {"signature_path": path,
                                  "payload_path": path.with_suffix(".payload")}
        if signature.certificate:
            fields["certificate_path"] = path.with_suffix(".crt")
            fields["certificate_identity"] = signature.identity
            fields["certificate_oidc_issuer"] = signature.issuer
            with self._lock:
                self.identities[(signature.identity, signature.issuer)].append(
                    f"{image.source.host}/{image.source.path}@{image.known_digest}")
        if signature.log_index is not None:
            fields["rekor_log_index"] = signature.log_index
        if signature.log_uuid is not None:
            fields["rekor_entry_uuid"] = signature.log_uuid
        return fields

    def verification(self, artifacts: Store, hosts: list[str],
                     public_keys: bytes | None) -> Verification:
        pems = re.findall(rb"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----\s*",
                          public_keys or b"", re.S)
        folder = os.path.abspath(os.path.join(artifacts.root, "verification"))
        files = {"signing-keys.pub": b"".join(pems)} if pems else {}
        files.update({ROOT_FILES[k][1]: data for k, data in self.roots.items()})
        # podman/skopeo check a signature's Rekor SET where cosign attached it (upload), for a
        # key when the run knows Rekor's key; keyless always (the policy needs it: see README)
        rekor = {"rekorPublicKeyPath": os.path.join(folder, ROOT_FILES[
            "rekor_public_key_file"][1])} if self.tlog and not self.attach_later else {}
        keys = [{**key_data(pem), **(rekor if "rekor_public_key_file" in self.roots else {})}
                for pem in pems]
        emails = [(who, issuer) for who, issuer in self.identities if "@" in who
                  and "://" not in who]
        others = [(who, issuer) for who, issuer in self.identities if (who, issuer) not in emails]
        keyless = [{"fulcio": {"caPath": os.path.join(folder, ROOT_FILES["fulcio_root_file"][1]),
                               "oidcIssuer": issuer, "subjectEmail": who}, **rekor}
                   for who, issuer in emails]
        if not keys and not keyless and not self.keyless and not others:
            keys = [{"keyPath": "/REPLACE/WITH/THE/COSIGN/PUBLIC/KEY.pub"}]
        # One requirement per key and identity: every image was signed with every key, and
        # podman requires each requirement of a scope to be met.
        requirement: list[dict[str, Any]] = [
            {"type": "sigstoreSigned", **key, "signedIdentity": {"type": "matchRepoDigestOrExact"}}
            for key in keys + keyless] or [{"type": "reject"}]
        if others:
            files["cosign-verify.sh"] = verify_script(others, self.identities)
        lines = ["# podman/skopeo read cosign signatures attached in these registries.", "docker:"]
        for host in hosts:
            lines += [f"  {json.dumps(host)}:", "    use-sigstore-attachments: true"]
        return Verification(requirement, lines, self._readme(folder, files, others), files,
                            registries={h: {"use-sigstore-attachments": True} for h in hosts},
                            identities=sorted(self.identities),
                            public_rekor=bool(rekor) and "rekor_public_key_file" not in self.roots)

    def _readme(self, folder: str, files: dict[str, bytes],
                others: list[tuple[str, str]]) -> str:
        text = _README
        if self.keyless or self.tlog:
            text += _README_SIGSTORE.format(folder=folder, have=", ".join(
                f"`{name}`" for name in sorted(files) if name.endswith((".pem", ".pub")))
                or "none (the public Sigstore's: see below)")
        if others:
            text += _README_URI.format(identities="\n".join(
                f"    --certificate-identity {_sh(who)} --certificate-oidc-issuer {_sh(issuer)}"
                for who, issuer in others))
        elif self.keyless and not self.identities:
            text += "\nNo keyless signature was made in this run: its identity is not known.\n"
        return text

    def verifier(self, registry: RegistryClient, inputs: Inputs,
                 trusted: dict[str, Any]) -> Check:
        return cosign_verifier(registry, trusted)

    def after_run(self, artifacts: Store, entries: Iterable[Recorded]) -> list[FollowUp]:
        if not self.attach_later:
            return []
        signed = [(e.item.container.source, e.item.container.known_digest,
                   e.fields["payload_path"], e.fields["signature_path"])
                  for e in entries if "payload_path" in e.fields]
        return [(ATTACH_SCRIPT, lambda: write_attach_script(artifacts, signed))]


def verify_script(identities: Iterable[tuple[str, str]],
                  images: dict[tuple[str, str], list[str]]) -> bytes:
    """``cosign-verify.sh``: one ``cosign verify`` per image signed keyless with an identity
    podman cannot match (a URI), with the identity and issuer of its certificate."""
    lines = ["#!/bin/sh",
             "# Verifies the keyless cosign signatures of this run whose identity podman cannot",
             "# match (not an email). The trust roots: cosign's own (the public Sigstore), or",
             "# SIGSTORE_ROOT_FILE, SIGSTORE_CT_LOG_PUBLIC_KEY_FILE and SIGSTORE_REKOR_PUBLIC_KEY",
             "# (the copies here, see README.md). Extra arguments go to every `cosign verify`.",
             "set -eu"]
    for who, issuer in identities:
        for ref in images[(who, issuer)]:
            lines.append(f'cosign verify "$@" --certificate-identity {_sh(who)} '
                         f"--certificate-oidc-issuer {_sh(issuer)} {_sh(ref)} >/dev/null")
    return ("\n".join(lines) + "\n").encode()


def write_attach_script(artifacts: Store, signatures: Iterable[tuple[Any, str, str, str]]
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
    summary = "sigstore signatures, in-process or by the cosign binary, in the registry"
    expands_index = True

    @classmethod
    def after_merge(cls, artifacts: Artifacts, rows: Iterable[dict[str, Any]],
                    shard_files: set[str]) -> list[FollowUp]:
        """The shards' attach script (signed with upload false), for every merged signature."""
        if ATTACH_SCRIPT not in shard_files:
            return []
        signed = [(parse_reference(r.get("location") or r["reference"])[0], r["digest"],
                   r["payload_path"], r["signature_path"]) for r in rows
                  if r.get("payload_path") and r.get("signature_path")]
        return [(ATTACH_SCRIPT, lambda: write_attach_script(artifacts, signed))]

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
        self.tlog = bool(c.get("upload_tlog", True))
        self.signature_format = c.get("signature_format") or "legacy"
        if self.signature_format not in FORMATS:
            raise InputError(f"config: cosign_signer.signature_format: "
                             f"{self.signature_format!r} is not "
                             f"one of {', '.join(FORMATS)}")
        for name in URL_KEYS:
            if c.get(name) and not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", str(c[name])):
                raise InputError(f"config: cosign_signer.{name}: not an http:// or https:// URL")
        self.roots = {name: read_root_file(name, c[name]) for name in ROOT_FILES if c.get(name)}
        self.cosign_format = CosignFormat(attach_later=not self.upload, tlog=self.tlog,
                                          roots=self._root_copies())
        self.format = self.cosign_format
        self.annotations = {str(k): str(v) for k, v in (c.get("annotations") or {}).items()}
        self.password = self.read_secret_file("password_file") or \
            environ.get("COSIGN_PASSWORD")
        self.token_source = token_source(c.get("identity_token"))
        self.deadline = inputs.deadline
        self.started = time.monotonic()
        self.flags: set[str] = set()  # the flags this cosign's `sign` knows
        self.public: dict[str, bytes] = {}  # key -> PEM public key
        self.engine = str(c.get("engine") or "auto")
        if self.engine not in ENGINES:
            raise InputError(f"config: cosign_signer.engine: {self.engine!r} is not one of "
                             f"{', '.join(ENGINES)}")
        self.paths: dict[str, str] = {}  # key -> NATIVE, or "cosign binary: <why>"
        self.native: cosign_native.Native | None = None

    def path_of(self, key: str) -> str:
        return self.paths.get(key, "")

    def _choose_path(self, key: SigningKey) -> str:
        """NATIVE where the in-process path signs as cosign would, else "cosign binary: why";
        ``engine: native`` with a key only the binary can use is an InputError."""
        why = None
        if self.engine == "cosign":
            why = "cosign_signer.engine is cosign"
        elif self.signature_format == "bundle":
            why = "signature_format is bundle"
        elif key.key == KEYLESS:
            pass
        elif KEY_URI.match(key.key):
            why = "a KMS or key URI"
        elif not os.path.lexists(key.key):
            raise InputError(f"signing key {key.key!r}: no such file (a cosign key file, or a "
                             "KMS URI such as awskms://, gcpkms://, azurekms://, hashivault://, "
                             "k8s://, env://)")
        elif cosign_native.native_key_kind(key.key) is None:
            why = "not a cosign or PKCS#8 key file"
        if why is not None and self.engine == "native":
            raise InputError(f"config: cosign_signer.engine: native, but signing key "
                             f"{key.key!r} needs the cosign binary ({why})")
        return NATIVE if why is None else f"cosign binary: {why}"

    def _prepare_native(self, keys: list[SigningKey]) -> None:
        """The in-process signer: each key file decrypted once; Rekor when logging; Fulcio
        for keyless."""
        roots = self.cosign_format.roots  # configured, or cosign's SIGSTORE_* variables
        rekor = sigstore_services.Rekor(self.registry, self.config.get("rekor_url"),
                                        roots.get("rekor_public_key_file")) \
            if self.tlog else None
        keyless = None
        if any(k.key == KEYLESS for k in keys):
            ct = roots.get("ctlog_public_key_file")
            keyless = sigstore_services.Keyless(self.registry, self.config.get("fulcio_url"),
                                                self._native_token, self._fulcio_roots(),
                                                (ct,) if ct else ())
        self.native = cosign_native.Native(self.registry, upload=self.upload,
                                           annotations=self.annotations, rekor=rekor,
                                           keyless=keyless)
        for key in keys:
            if key.key == KEYLESS:
                continue
            named = f"signing key {key.key!r}" + (f" (alias {key.given!r})"
                                                   if key.given != key.key else "")
            private = cosign_native.load_private_key(key.key, self.password, named)
            self.native.keys[key.key] = private
            self.public[key.key] = cosign_native.public_pem(private)

    def _native_token(self) -> str:
        """Keyless in-process: the identity token now (the configured one, or a fresh one from
        GitHub's token service)."""
        if self.token_source is not None:
            return self._read_token()
        return sigstore_services.github_token(self.registry,
                                              self.environ[AMBIENT_ENV[0]],
                                              self.environ[AMBIENT_ENV[1]])

    def _root_copies(self) -> dict[str, bytes]:
        """The trust roots for verification/: the configured files, else those cosign reads
        from the environment (SIGSTORE_*) when they can be read; none: the public Sigstore's."""
        copies = {}
        for name, (variable, _) in ROOT_FILES.items():
            if name in self.roots:
                copies[name] = self.roots[name][1]
            elif self.environ.get(variable):
                try:
                    copies[name] = read_root_file(name, self.environ[variable])[1]
                except InputError:
                    log.warning("%s: not a PEM file: not copied into verification/", variable)
        return copies

    def secrets(self) -> list[str]:
        found = [self.password] if self.password else []
        found += [self.environ[n] for n in AMBIENT_ENV[1:] if self.environ.get(n)]
        if self.token_source is not None:
            try:  # the token as it is now (a rotating one: cosign's output is scrubbed too)
                found.append(self._read_token())
            except InputError:
                pass  # said in preflight, when keyless is asked for
        return found

    # -- before anything is signed ------------------------------------------------------

    def _env(self, docker_config: str | None = None,
             key: SigningKey | None = None) -> dict[str, str]:
        """cosign's environment, for ``key`` (None: a call that uses no key): COSIGN_ENV and
        what the key reads, the config's env_variables, the trust roots configured, the private
        docker config, and COSIGN_PASSWORD: the key's passphrase for a key that is encrypted
        with one (a key file, env://), else empty. Keyless without identity_token: GitHub's
        token request variables (cosign's ambient provider), for this key only."""
        keep = list(COSIGN_ENV)
        uri = key.key if key is not None else ""
        keyless = uri == KEYLESS
        if uri.startswith("env://"):
            keep.append(uri[len("env://"):])
        for scheme, names in KEY_ENV.items():
            if uri.startswith(scheme):
                keep += names
        extra = {str(k): str(v) for k, v in (self.config.get("env_variables") or {}).items()}
        extra.update({ROOT_FILES[name][0]: path for name, (path, _) in self.roots.items()})
        # Set even when empty: an unset COSIGN_PASSWORD makes cosign prompt, and CI has no tty.
        needs_password = key is not None and not keyless and (uri.startswith("env://") or
                                                              not KEY_URI.match(uri))
        extra["COSIGN_PASSWORD"] = (self.password or "") if needs_password else ""
        if keyless and self.token_source is None:
            extra.update({n: self.environ[n] for n in AMBIENT_ENV if self.environ.get(n)})
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
        self.paths = {key.key: self._choose_path(key) for key in plan.keys}
        native = [key for key in plan.keys if self.paths[key.key] == NATIVE]
        if any(key.key == KEYLESS for key in plan.keys):
            self._check_keyless()
        if native:
            self._prepare_native(native)
        binary = [key for key in plan.keys if self.paths[key.key] != NATIVE]
        if binary:
            self._preflight_binary(binary)

    def _preflight_binary(self, keys: list[SigningKey]) -> None:
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
        for key in keys:
            if key.key != KEYLESS:
                self.public[key.key] = self._public_key(key, self._env(key=key))

    def _check_keyless(self) -> None:
        """Keyless can be done: the transparency log, attached signatures, a token source."""
        self.cosign_format.keyless = True
        if not self.tlog:
            raise InputError("config: cosign_signer.upload_tlog: false, but the signing key "
                             "'keyless' needs the transparency log (a Fulcio certificate is "
                             "valid for minutes: Rekor's entry proves when it signed)")
        if not self.upload:
            raise InputError("signing key 'keyless' needs upload true (the upload input or "
                             "config key): cosign writes no Rekor bundle that a later "
                             "`cosign attach` could add")
        if self.token_source is not None:
            self._read_token()
            return
        missing = [n for n in AMBIENT_ENV if not self.environ.get(n)]
        if missing:
            raise InputError(f"signing key 'keyless': no OIDC identity token ({missing[0]} is "
                             "not set): the GitHub workflow needs `permissions: id-token: "
                             "write`; elsewhere set cosign_signer.identity_token (a token "
                             "file, or env://VAR)")

    def _read_token(self) -> str:
        """The identity token as it is now (a file is read again each time: a projected token
        rotates); InputError naming the config key, never quoting the token or its place."""
        assert self.token_source is not None
        kind, where = self.token_source
        what = "config: cosign_signer.identity_token"
        if kind == "env":
            text = self.environ.get(where, "")
            if not text.strip():
                raise InputError(f"{what}: env://{where}: the variable is not set or empty")
            if len(text) > MAX_TOKEN:
                raise InputError(f"{what}: env://{where}: more than {MAX_TOKEN} bytes, which "
                                 "no identity token is")
        else:  # (a FIFO or a device is refused before it is opened: never a hang)
            data = read_regular_file(where, f"{what}: cannot read the token file", MAX_TOKEN)
            text = data.decode("utf-8", "replace")
        token = text.strip()
        if not JWT.fullmatch(token):
            raise InputError(f"{what}: not an OIDC identity token (a JWT: three base64url "
                             "parts separated by dots)")
        try:
            claims = sigstore_services.token_claims(token)
        except sigstore_services.ServiceError:
            raise InputError(f"{what}: not an OIDC identity token (its claims are not a JSON "
                             "object)") from None
        exp = claims.get("exp")
        if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp <= time.time():
            raise InputError(f"{what}: the identity token expired "
                             f"{int(time.time() - exp)} s ago: give a fresh one")
        return token

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
        native = [i for i in items if self.paths.get(i.key.key) == NATIVE]
        binary = [i for i in items if self.paths.get(i.key.key) != NATIVE]
        # one after the other: a digest signed by both never has two writers at once
        if native:
            self._sign_native(native, report)
        if binary:
            self._sign_binary(binary, report)

    def _sign_native(self, items: Sequence[WorkItem], report: Report) -> None:
        running = Running()
        deadline_at = self.started + self.deadline if self.deadline else float("inf")

        def one_digest(group: list[WorkItem]) -> None:
            for item in group:
                if running.ended:
                    return
                if time.monotonic() > deadline_at:
                    report(Outcome(item, error="the deadline was reached"))
                    continue
                report(self._native_one(item))

        run_pool(one_digest, _by_digest(items), workers=self.threads, name="sigstore",
                 running=running, deadline_at=deadline_at)
        if self.native is not None and self.native.races:
            self.stats["sig_tag_rewrites"] = self.native.races

    def _native_one(self, item: WorkItem) -> Outcome:
        assert self.native is not None
        keyless = item.key.key == KEYLESS
        already = self._already(item) if self._checked_when_attaching(item) else None
        try:
            facts = self.native.sign(item.container, None if keyless else item.key.key, already)
        except (RegistryError, sigstore_services.ServiceError, InputError) as e:
            return Outcome(item, error=f"in-process signing: {e}")
        if "skipped" in facts:
            return Outcome(item, skipped=facts["skipped"])
        return Outcome(item, signature=CosignSignature(**facts),
                       detail=json.dumps("signed in-process (no cosign process)"))

    def _sign_binary(self, items: Sequence[WorkItem], report: Report) -> None:
        running = Running()
        deadline_at = self.started + self.deadline if self.deadline else float("inf")
        # One digest, one cosign at a time: its items run in order in one task.
        groups = _by_digest(items)
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

            run_pool(one_digest, groups, workers=self.threads, name="cosign",
                     running=running, deadline_at=deadline_at)

    def _sign_one(self, item: WorkItem, env: dict[str, str], work: str, running: Running,
                  deadline_at: float) -> Outcome:
        image = item.container
        target = f"{image.source.host}/{image.source.path}@{image.digest}"
        os.mkdir(work, 0o700)
        files = {name: os.path.join(work, name) for name in ("payload", "sig", "cert", "token")}
        try:
            args = self._sign_args(item, files) + [target]
        except InputError as e:  # keyless: the token file went away, or is no token now
            return Outcome(item, error=str(e))
        error = ""
        for attempt in range(1, self.attempts + 1):
            left = deadline_at - time.monotonic()
            if left <= 0:
                return Outcome(item, error=f"cosign: the deadline was reached ({error})"
                               if error else "cosign: the deadline was reached")
            result = self._run(args, env, min(left, _seconds(self.timeout) + 30), running)
            if running.ended:
                return Outcome(item, error="the run was stopped")
            stderr = self._scrub_token(result.stderr, item)
            if result.returncode == 0:
                return self._signed(item, stderr, files)
            error = _last_line(stderr) or f"cosign exited with {result.returncode}"
            if attempt < self.attempts:
                pause = min(2.0 ** (attempt - 1), 30.0, max(deadline_at - time.monotonic(), 0))
                log.warning("cosign sign %s failed (attempt %d of %d): %s; again in %.0f s",
                            target, attempt, self.attempts, error, pause)
                time.sleep(pause)  # backoff between attempts of a failing external command
        return Outcome(item, error=f"cosign: {error}", detail=json.dumps(error))

    def _sign_args(self, item: WorkItem, files: dict[str, str]) -> list[str]:
        """``cosign sign``'s arguments but the image: the key, or keyless its token (a path:
        the configured file, or a private copy of env://VAR's token) and Fulcio's address."""
        image = item.container
        args = ["--timeout", self.timeout, "sign", "--yes",
                f"--allow-http-registry={_bool(self.registry_settings.allow_http)}",
                f"--allow-insecure-registry={_bool(self.registry_settings.allow_insecure)}",
                f"--tlog-upload={_bool(self.tlog)}", f"--upload={_bool(self.upload)}",
                "--sign-container-identity", str(image.reference),
                "--output-payload", files["payload"], "--output-signature", files["sig"],
                "-a", f"tag={image.reference.tag}"]
        if item.key.key != KEYLESS:
            args += ["--key", item.key.key]
        else:
            args += ["--output-certificate", files["cert"]]
            args += self._token_args(files["token"])
            for name in ("fulcio_url", "oidc_issuer"):
                if self.config.get(name):
                    args += [f"--{name.replace('_', '-')}", str(self.config[name])]
        if self.config.get("rekor_url"):
            args += ["--rekor-url", str(self.config["rekor_url"])]
        for k, v in self.annotations.items():
            args += ["-a", f"{k}={v}"]
        return args + self._format_flags()

    def _token_args(self, token_file: str) -> list[str]:
        """Where keyless cosign gets its identity token: GitHub's ambient provider (it asks
        for a fresh token each time), or ``--identity-token PATH``: the configured file (cosign
        reads it afresh; checked first, since cosign takes a path it cannot open for the token
        itself), or for env://VAR a private 0600 file holding its token."""
        if self.token_source is None:
            return ["--oidc-provider", "github-actions"]
        token = self._read_token()
        kind, where = self.token_source
        if kind == "file":
            return ["--identity-token", os.path.abspath(where)]
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token)
        return ["--identity-token", token_file]

    def _scrub_token(self, text: str, item: WorkItem) -> str:
        """cosign's output without the identity token, should it quote it."""
        if item.key.key != KEYLESS or self.token_source is None:
            return text
        try:
            token = self._read_token()
        except InputError:
            return text
        return text.replace(token, "***")

    def _signed(self, item: WorkItem, stderr: str, files: dict[str, str]) -> Outcome:
        """The Outcome of a ``cosign sign`` that succeeded: what it wrote, checked, and the
        facts about it (the certificate's identity and issuer, the Rekor entry)."""
        try:
            with open(files["payload"], "rb") as f:
                payload = f.read()
            with open(files["sig"], "rb") as f:
                signature = f.read().strip()
        except OSError as e:
            return Outcome(item, error=f"cosign wrote no signature file: {e.strerror}")
        try:
            os.unlink(files["token"])  # a private copy of the token, needed no more
        except FileNotFoundError:
            pass
        facts: dict[str, Any] = {}
        key_pem = self.public.get(item.key.key)
        if item.key.key == KEYLESS:
            try:
                with open(files["cert"], "rb") as f:
                    pem, facts["identity"], facts["issuer"] = read_certificate(f.read(MAX_PEM))
            except (OSError, ValueError) as e:
                why = e.strerror if isinstance(e, OSError) else str(e)
                return Outcome(item, error=f"cosign's certificate (--output-certificate): {why}")
            facts["certificate"] = key_pem = pem
        if self.tlog:
            facts.update(self._tlog_facts(item, stderr, payload, signature, key_pem))
        return Outcome(item, signature=CosignSignature(payload, signature, **facts),
                       detail=json.dumps(stderr.strip()))  # JSON text

    def _tlog_facts(self, item: WorkItem, stderr: str, payload: bytes, signature: bytes,
                    key_pem: bytes | None) -> dict[str, Any]:
        """The Rekor entry's index (cosign prints it) and UUID (computed); what cannot be known
        is left out, with a warning: the signature itself is made."""
        facts: dict[str, Any] = {}
        found = set(TLOG_INDEX.findall(stderr))
        if len(found) == 1:
            facts["log_index"] = int(found.pop())
        else:
            log.warning("%s: cosign printed %s transparency log index: not recorded",
                        item.container.reference, "no" if not found else "more than one")
        try:
            facts["log_uuid"] = rekor_uuid(payload, signature, key_pem or b"")
        except ValueError as e:
            log.warning("%s: the Rekor entry's UUID cannot be computed: %s",
                        item.container.reference, e)
        return facts

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
        again is safe, skipping wrongly is not. Keyless is never skipped: the identity a new
        certificate would name is not known before signing."""
        image = item.container
        if item.key.key == KEYLESS or self._checked_when_attaching(item):
            return None
        try:
            found = self.registry.cosign_signatures(image.source, image.known_digest)
        except RegistryError as e:
            log.warning("could not check existing signatures of %s@%s: %s", image.source,
                        image.digest, e)
            return None
        return self._signed_in(item, found)

    def _signed_in(self, item: WorkItem, found: list[dict]) -> str | None:
        """The first signature in ``found`` that verify mode would accept for ``item`` (with
        the transparency log, its Rekor entry checked by Rekor's key when the run knows it)."""
        trust = CosignTrust(public_pem=self.public[item.key.key],
                            rekor_pem=self.cosign_format.roots.get("rekor_public_key_file")
                            if self.tlog else None)
        for sig in found:
            if cosign_problem(sig, item, trust)[0] is None:
                return f"already signed in the registry by this key for {item.container.reference}"
        return None

    def _checked_when_attaching(self, item: WorkItem) -> bool:
        """In-process, attached, not logged: skip-signed is decided from the attach's own read
        of the ``.sig`` tag (one registry request less per image), not beforehand."""
        return self.paths.get(item.key.key) == NATIVE and self.upload and not self.tlog and \
            self.inputs.skip_signed

    def _already(self, item: WorkItem):
        """skip-signed for ``_checked_when_attaching``: the ``.sig`` manifest found -> why
        ``item`` needs no new signature, or None (a registry problem too: signing again is
        safe, skipping wrongly is not)."""
        image = item.container

        def check(manifest: bytes) -> str | None:
            try:
                found = self.registry.signatures_in(image.source, manifest,
                                                    "reading cosign signatures")
            except RegistryError as e:
                log.warning("could not check existing signatures of %s@%s: %s", image.source,
                            image.digest, e)
                return None
            return self._signed_in(item, found)
        return check

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
        return b"".join(self.public.get(k.key, b"") for k in plan.keys
                        if k.key != KEYLESS) or None

    def trusted_keys(self, plan: Plan) -> dict[str, Any]:
        """Verify mode: a public key file as it is (``cosign.pub``); a private key or a KMS URI
        through ``cosign public-key`` (its public half); keyless, the Fulcio root and the
        expected identity and issuer (--certificate-identity, --certificate-oidc-issuer).
        Rekor's key, when configured, makes each signature's SET required."""
        rekor = self.cosign_format.roots.get("rekor_public_key_file")
        trusted: dict[str, Any] = {}
        for key in plan.keys:
            if key.key == KEYLESS:
                trusted[key.key] = self._keyless_trust(rekor)
                continue
            data = b""  # a KMS URI, or no such file: cosign public-key says what it is
            if not KEY_URI.match(key.key) and os.path.lexists(key.key):
                # (a FIFO or a device is refused, not opened and waited on)
                data = read_regular_file(key.key, f"signing key {key.key!r}", MAX_PEM)
            if b"-----BEGIN PUBLIC KEY-----" not in data:
                if shutil.which(self.cosign) is None:
                    raise InputError(f"signing key {key.key!r}: not a public key file, and "
                                     f"{self.cosign!r} is not there to read its public half")
                self.cosign = shutil.which(self.cosign) or self.cosign
                data = self._public_key(key, self._env(key=key))
            trusted[key.key] = CosignTrust(public_pem=data, rekor_pem=rekor)
        return trusted

    def _keyless_trust(self, rekor: bytes | None) -> CosignTrust:
        identity = self.inputs.certificate_identity
        issuer = self.inputs.certificate_oidc_issuer
        if not identity or not issuer:
            raise InputError("--mode verify with the key 'keyless' needs --certificate-identity "
                             "and --certificate-oidc-issuer: whose certificates to accept")
        roots = self.cosign_format.roots
        if "fulcio_root_file" not in roots or rekor is None or \
                "ctlog_public_key_file" not in roots:
            raise InputError("--mode verify with the key 'keyless' needs cosign_signer."
                             "fulcio_root_file, ctlog_public_key_file and rekor_public_key_file "
                             "(or SIGSTORE_ROOT_FILE, SIGSTORE_CT_LOG_PUBLIC_KEY_FILE and "
                             "SIGSTORE_REKOR_PUBLIC_KEY): the roots to check certificates, "
                             "their SCTs and Rekor's timestamps against, as cosign verify does")
        return CosignTrust(fulcio=self._fulcio_roots(), identity=identity, issuer=issuer,
                           rekor_pem=rekor, ctlog_pem=roots["ctlog_public_key_file"])

    def _fulcio_roots(self) -> fulcio.FulcioRoots | None:
        """The Fulcio trust anchors (the self-signed certificates of fulcio_root_file or
        SIGSTORE_ROOT_FILE) and the intermediates beside them; None when none is configured."""
        pem = self.cosign_format.roots.get("fulcio_root_file")
        if pem is None:
            return None
        try:
            return fulcio.FulcioRoots.from_pem(pem)
        except ValueError as e:
            raise InputError(f"config: cosign_signer.fulcio_root_file (or SIGSTORE_ROOT_FILE): "
                             f"not usable as Fulcio roots: {e}") from None


_README = """\
# Verifying these cosign signatures

- `policy.json` accepts exactly the repositories signed in this run, with a cosign signature by
  each signing key (`signing-keys.pub`, also inlined as keyData) and each keyless identity with
  an email address (see below), for the image identity signed (the reference with its tag), and
  rejects everything else.
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


_README_SIGSTORE = """
## Sigstore: Fulcio certificates and the Rekor transparency log

The trust roots this run used are copied here: {have} (`fulcio_root.pem`: the Fulcio CA
chain; `ctlog.pub`: the certificate transparency log's key; `rekor.pub`: Rekor's key).
`policy.json` names them by the absolute path of this folder where it was written:

    {folder}

Where you install the policy (e.g. `/etc/containers/policy.json`), put the files in a folder of
their own, e.g. `/etc/containers/sigstore/`, and point the policy there:

    sudo install -d /etc/containers/sigstore
    sudo install -m 0644 fulcio_root.pem ctlog.pub rekor.pub /etc/containers/sigstore/
    sed 's#{folder}/#/etc/containers/sigstore/#g' policy.json | sudo tee /etc/containers/policy.json

A run that used the public Sigstore (no root files configured) copied none: take Fulcio's
root from `https://fulcio.sigstore.dev/api/v1/rootCert` (the last certificate) and Rekor's key
from `https://rekor.sigstore.dev/api/v1/log/publicKey`, or use `cosign verify`, which has them.

- A key-based signature logged in Rekor is required to carry Rekor's signed entry timestamp
  (`rekorPublicKeyPath`) when cosign attached it (upload true) and the run knew Rekor's key
  (`rekor.pub` here); with the public Sigstore's add it yourself if you want the log checked.
- A keyless signature (`fulcio`) is accepted when its certificate chains to `fulcio_root.pem`,
  was issued for the OIDC issuer and the email address signed with (results.json's
  `certificate_oidc_issuer` and `certificate_identity`), and Rekor logged it. podman and skopeo
  match only email identities (`subjectEmail`).

With cosign, any identity (the roots: the copies here, or cosign's own for the public Sigstore):

    SIGSTORE_ROOT_FILE=fulcio_root.pem SIGSTORE_CT_LOG_PUBLIC_KEY_FILE=ctlog.pub \\
    SIGSTORE_REKOR_PUBLIC_KEY=rekor.pub cosign verify \\
        --certificate-identity IDENTITY --certificate-oidc-issuer ISSUER REGISTRY/NS/NAME@sha256:...
"""

_README_URI = """
## Keyless signatures podman cannot check

These identities are not email addresses (a CI workflow's URI): podman and skopeo cannot match
them, so `policy.json` does not ask for them (with no other key it rejects the repositories:
nothing it could check). Verify them with cosign: `sh cosign-verify.sh` runs, for each image,

    cosign verify \\
{identities} \\
        REGISTRY/NS/NAME@sha256:...
"""


def token_source(value: Any) -> tuple[str, str] | None:
    """cosign_signer.identity_token: None (GitHub's ambient provider), ("env", VAR) or
    ("file", PATH)."""
    if not value:
        return None
    value = str(value)
    if value.startswith("env://"):
        name = value[len("env://"):]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise InputError("config: cosign_signer.identity_token: env:// needs a variable "
                             "name (env://VAR)")
        return ("env", name)
    return ("file", os.path.expanduser(value))


def read_root_file(name: str, path: str) -> tuple[str, bytes]:
    """A trust root file of the config (``name``, a ROOT_FILES key) or of the environment: its
    absolute path and its bytes, which must be PEM; InputError otherwise."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    data = read_regular_file(path, f"config: cosign_signer.{name}: {path!r}", MAX_PEM)
    if b"-----BEGIN " not in data:
        raise InputError(f"config: cosign_signer.{name}: {path!r} is not a PEM file")
    return path, data


def rekor_uuid(payload: bytes, signature_b64: bytes, public_pem: bytes) -> str:
    """The UUID of the ``hashedrekord`` entry cosign logs for a signature: the RFC 6962 leaf
    hash (SHA-256 of 0x00 and the body) of the body as Rekor stores it, canonical JSON (RFC
    8785) of the payload's SHA-256, the signature and the key or certificate, which Rekor
    re-encodes as PEM. ValueError if the signature or key cannot be read."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        raw = base64.b64decode(signature_b64, validate=True)
        if b"CERTIFICATE" in public_pem:
            pem = x509.load_pem_x509_certificate(public_pem).public_bytes(
                serialization.Encoding.PEM)
        else:
            pem = serialization.load_pem_public_key(public_pem).public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError) as e:  # binascii.Error is a ValueError
        raise ValueError(f"unreadable signature or key ({type(e).__name__})") from None
    body = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
        "signature": {"content": base64.b64encode(raw).decode("ascii"),
                      "publicKey": {"content": base64.b64encode(pem).decode("ascii")}}}}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")
    return hashlib.sha256(b"\x00" + canonical).hexdigest()


def verify_signature(public_pem: bytes, payload: bytes, signature: bytes) -> bool:
    """Does ``signature`` over ``payload`` verify with this PEM public key or certificate
    (ECDSA, RSA, Ed25519, as cosign makes them)?"""
    return keys.pem_verifies(public_pem, payload, signature)


# -- verify mode ------------------------------------------------------------------------------
#
# In-process, as podman/skopeo's sigstoreSigned check does it (containers/image): the `.sig`
# tag's simplesigning layers, each payload's claim for exactly the digest and identity, its
# signature by the key (or, keyless, by a Fulcio certificate that chains to the configured root,
# names the expected identity and issuer, and was valid when Rekor logged the signature), and
# Rekor's signed entry timestamp (the bundle annotation) when Rekor's key is known: the SET
# signs the entry, whose body must be this payload's hash, this signature and this key.

BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"


@dataclass(frozen=True)
class CosignTrust:
    """What one signing key's cosign signatures are checked with (verify mode, skip-signed):
    its PEM public key, or keyless the Fulcio roots, the CT log's key and the certificate
    identity and issuer expected; Rekor's PEM public key when the run knows it (then each
    signature's SET is required)."""

    public_pem: bytes | None = None
    fulcio: fulcio.FulcioRoots | None = None
    identity: str | None = None
    issuer: str | None = None
    rekor_pem: bytes | None = None
    ctlog_pem: bytes | None = None


def cosign_verifier(registry: RegistryClient, trusted: dict[str, CosignTrust]) -> Check:
    def check(item: WorkItem) -> Verdict:
        image = item.container
        tag = image.known_digest.replace(":", "-")
        where = f"{image.source.host}/{image.source.path}:{tag}.sig"
        try:
            found = registry.cosign_signatures(image.source, image.known_digest)
        except RegistryError as e:
            return Verdict(INVALID, f"the signatures could not be read: {e}")
        if not found:
            return Verdict(MISSING, f"no signature: {where} does not exist or holds none")
        findings: list[tuple[str, Problem]] = []
        for n, sig in enumerate(found, 1):
            problem, fields = cosign_problem(sig, item, trusted[item.key.key])
            tried = tuple(f"{w}: {p}" for w, p in findings)
            if problem is None:
                return Verdict(VERIFIED, f"signature {n} of {where} verifies", tried, fields,
                               tuple(findings))
            findings.append((f"signature {n}", problem))
        tried = tuple(f"{w}: {p}" for w, p in findings)
        return Verdict(INVALID, f"{len(found)} signature(s) in {where}, none verifies: "
                       + listed(tried), tried, findings=tuple(findings))
    return check


def cosign_problem(sig: dict, item: WorkItem, trust: CosignTrust
                   ) -> tuple[Problem | None, dict[str, Any]]:
    """Why one cosign signature does not verify for ``item`` (None: it does), and facts about
    it (its Rekor entry, its certificate's identity). Checked as cosign verify checks it: the
    payload's claim; keyless, the certificate (signaction.formats.fulcio: its chain to the
    configured roots when Rekor integrated the entry, its SCT, identity and issuer); the
    signature by the key or certificate; the Rekor entry (signaction.formats.rekor: this
    signature's, its SET by Rekor's key) when Rekor's key is known or the signature is
    keyless."""
    image = item.container
    try:
        critical = json.loads(sig["payload"])["critical"]
        digest = critical["image"]["docker-manifest-digest"]
        identity = critical["identity"]["docker-reference"]
        raw = base64.b64decode(sig["signature"], validate=True)
    except (ValueError, KeyError, TypeError, RecursionError):
        return Problem(Finding.UNREADABLE, "not a simple signing payload with a base64 "
                       "signature"), {}
    fields: dict[str, Any] = {}
    annotations = sig.get("annotations") or {}
    entry = None
    if trust.rekor_pem is not None or trust.fulcio is not None:
        try:
            entry = rekor.from_bundle(annotations.get(BUNDLE_ANNOTATION))
        except ValueError as e:
            return Problem(Finding.TRANSPARENCY, "no readable Rekor bundle (signed entry "
                           f"timestamp), which this run's Rekor key asks for ({e})"), {}
    key_pem = trust.public_pem or b""
    if trust.fulcio is not None:
        assert entry is not None
        cert_pem = str(annotations.get(CERTIFICATE_ANNOTATION, "")).encode()
        problem = _certificate_problem(cert_pem, str(annotations.get(CHAIN_ANNOTATION, ""))
                                       .encode(), trust, entry.integrated_time)
        if problem:
            return problem, {}
        key_pem = cert_pem
        fields.update(certificate_identity=trust.identity, certificate_oidc_issuer=trust.issuer)
    if not keys.pem_verifies(key_pem, sig["payload"], raw):
        return Problem(Finding.OTHER_KEY, "the signature does not verify with " + (
            "the certificate's key" if trust.fulcio else "this key")), {}
    if digest != image.known_digest:
        return Problem(Finding.OTHER_DIGEST,
                       f"it signs {str(digest)[:80]!r}, not {image.known_digest}"), {}
    if identity != str(image.reference):
        return Problem(Finding.OTHER_IDENTITY,
                       f"it signs {str(identity)[:200]!r}, not {image.reference}"), {}
    if entry is not None:
        problem = rekor.entry_problem(entry, sig["payload"], raw, key_pem, trust.rekor_pem)
        if problem:
            return problem, {}
        fields.update(rekor_log_index=entry.log_index,
                      rekor_integrated_time=entry.integrated_time)
    return None, fields


def _certificate_problem(cert_pem: bytes, chain_pem: bytes, trust: CosignTrust,
                         integrated: int) -> Problem | None:
    """A keyless signature's certificate: it chains to the Fulcio roots when Rekor integrated
    the signature (the image's chain annotation only as untrusted intermediates), carries an
    SCT by the CT log, and names the identity and issuer expected."""
    import datetime

    from cryptography import x509

    assert trust.fulcio is not None
    if not cert_pem:
        return Problem(Finding.OTHER_KEY, "no certificate (a key-based signature, not a "
                       "keyless one)")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        _, identity, issuer = fulcio.read_certificate(cert_pem)
        untrusted = fulcio.load_certificates(chain_pem, "the chain annotation")
    except ValueError as e:
        return Problem(Finding.UNREADABLE, f"unreadable certificate: {e}")
    at = datetime.datetime.fromtimestamp(integrated, datetime.UTC)
    problem, chain = fulcio.chain_problem(cert, trust.fulcio, untrusted, at)
    if problem is None and trust.ctlog_pem is not None:
        problem = fulcio.sct_problem(cert, chain[1], (trust.ctlog_pem,))
    if problem is not None:
        return problem
    if identity != trust.identity:
        return Problem(Finding.OTHER_IDENTITY,
                       f"the certificate names {identity!r}, not {trust.identity!r}")
    if issuer != trust.issuer:
        return Problem(Finding.OTHER_ISSUER,
                       f"the certificate's OIDC issuer is {issuer!r}, not {trust.issuer!r}")
    return None


def _by_digest(items: Iterable[WorkItem]) -> list[list[WorkItem]]:
    """The items grouped by the digest they attach to (its repository and digest), in order:
    one group is signed by one thread, so one ``.sig`` tag never has two writers here."""
    groups: dict[tuple, list[WorkItem]] = defaultdict(list)
    for item in items:
        image = item.container
        groups[(image.source.host, image.source.path, image.digest)].append(item)
    return list(groups.values())


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
