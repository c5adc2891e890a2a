"""The cosign signer's settings and small helpers: key URIs, engines, the environment cosign
may see, root files, the identity token's source, Rekor UUIDs."""

from __future__ import annotations

import base64
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from signaction.errors import InputError
from signaction.formats import keys, rekor
from signaction.plan import WorkItem
from signaction.safeload import read_regular_file

log = logging.getLogger("signers.cosign")


KEY_URI = re.compile(r"^(awskms|gcpkms|azurekms|hashivault|k8s|env|pkcs11|gitlab)://")


FORMATS = ("legacy", "bundle", "both")  # cosign_signer.signature_format


def formats_of(signature_format: str) -> tuple[str, ...]:
    """The formats a signature_format writes: legacy (the .sig tag), bundle (a referrer)."""
    return ("legacy", "bundle") if signature_format == "both" else (signature_format,)


ENGINES = ("auto", "native", "cosign")  # cosign_signer.engine


NATIVE = "native"  # path_of: signed in-process (native.py)


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
    """The UUID of the ``hashedrekord`` entry cosign logs for a signature (base64, as cosign
    prints it): formats.rekor.entry_uuid. ValueError if the signature or key cannot be read."""
    try:
        raw = base64.b64decode(signature_b64, validate=True)
    except ValueError:  # binascii.Error
        raise ValueError("unreadable signature (not base64)") from None
    return rekor.entry_uuid(payload, raw, public_pem)


def verify_signature(public_pem: bytes, payload: bytes, signature: bytes) -> bool:
    """Does ``signature`` over ``payload`` verify with this PEM public key or certificate
    (ECDSA, RSA, Ed25519, as cosign makes them)?"""
    return keys.pem_verifies(public_pem, payload, signature)


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
