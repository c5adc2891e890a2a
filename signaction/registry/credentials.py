"""Registry credentials as podman and docker find them: the configured user and password, then
auth files (REGISTRY_AUTH_FILE, containers auth.json, docker config.json), their entries decoded."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Mapping

from .common import (
    _DOCKER_HUB_ALIASES,
    DOCKER_HUB,
    RegistryError,
)

log = logging.getLogger("signaction.registry")

def _normalize_auth_key(key: str) -> str:
    """``https://index.docker.io/v1/`` -> ``docker.io``; ``quay.io/ns/`` -> ``quay.io/ns``."""
    key = key.strip()
    if "://" in key:
        key = key.split("://", 1)[1]
    key = key.rstrip("/")
    for suffix in ("/v1", "/v2"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    host, sep, rest = key.partition("/")

    if host in _DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    return host + sep + rest


def _auth_file_candidates(auth_file: str | None,
                          environ: Mapping[str, str]) -> list[tuple[str, bool]]:
    """(path, explicitly named) in lookup order."""
    out: list[tuple[str, bool]] = []
    if environ.get("REGISTRY_AUTH_FILE"):
        out.append((environ["REGISTRY_AUTH_FILE"], True))
    if auth_file:
        out.append((auth_file, True))
    if environ.get("DOCKER_CONFIG"):
        out.append((os.path.join(environ["DOCKER_CONFIG"], "config.json"), False))
    elif environ.get("HOME"):
        out.append((os.path.join(environ["HOME"], ".docker", "config.json"), False))
    if environ.get("XDG_RUNTIME_DIR"):
        out.append((os.path.join(environ["XDG_RUNTIME_DIR"], "containers", "auth.json"), False))
    return out



def _load_auths(path: str, explicit: bool) -> dict[str, dict] | None:
    """The ``auths`` map of an auth file, keys normalized; None if an implicit file is absent."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        if explicit:
            raise RegistryError(f"auth file {path}: no such file") from None
        return None
    except (OSError, ValueError) as e:
        # JSONDecodeError says where, not what: no file content gets into the message.
        what = e.strerror if isinstance(e, OSError) else f"not valid JSON ({e.__class__.__name__} "\
            f"at line {getattr(e, 'lineno', '?')})"
        if explicit:
            raise RegistryError(f"auth file {path}: {what}") from None
        log.warning("ignoring auth file %s: %s", path, what)
        return None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and not auths and (doc.get("credsStore") or doc.get("credHelpers")):
        log.warning("auth file %s uses docker credential helpers, which are not supported: "
                    "put the credentials in its 'auths' or use REGISTRY_AUTH_FILE", path)
    if not isinstance(auths, dict):
        return {}
    return {_normalize_auth_key(k): v for k, v in auths.items() if isinstance(v, dict)}


def _decode_entry(entry: dict, path: str, key: str) -> tuple[str, str] | None:
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(entry["auth"], validate=True).decode()
            user, sep, password = decoded.partition(":")
        except (binascii.Error, ValueError, TypeError):
            raise RegistryError(f"auth file {path}: the 'auth' of {key!r} is not base64 of "
                                "user:password") from None
        if not sep:
            raise RegistryError(f"auth file {path}: the 'auth' of {key!r} has no ':' between "
                                "user and password")
        return user, password
    if entry.get("username") and entry.get("password") is not None:
        return str(entry["username"]), str(entry["password"])
    return None


def find_credentials(host: str, path: str = "", *, username: str | None = None,
                     password: str | None = None, auth_file: str | None = None,
                     environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """(user, password) for a repository ``host/path``, or None for anonymous access.

    Explicit username/password win; then the first auth file (see ``_auth_file_candidates``) with an
    entry for the repository, its most specific ``host[/namespace...]`` key first.
    """
    if username is not None or password is not None:
        if not username or password is None:
            raise RegistryError("registry credentials: a username needs a password and vice versa")
        return username, password
    host = _normalize_auth_key(host)
    parts = [p for p in path.split("/") if p]
    keys = [host + "/" + "/".join(parts[:i]) for i in range(len(parts), 0, -1)] + [host]
    for candidate, explicit in _auth_file_candidates(auth_file, environ):
        auths = _load_auths(candidate, explicit)
        if not auths:
            continue
        for key in keys:
            if key in auths:
                creds = _decode_entry(auths[key], candidate, key)
                if creds is not None:
                    return creds
    return None
