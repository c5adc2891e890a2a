"""Sigstore's trust material as its clients take it now (sigstore/protobuf-specs, JSON forms):
``trusted_root.json`` (``TrustedRoot``: the Fulcio CA chains, the Rekor logs' and the CT logs'
keys) and ``signing_config.json`` v0.2 (``SigningConfig``: the Fulcio, OIDC and Rekor URLs).

Both are read into what the rest of the project already checks with: the Fulcio certificates as
one PEM (``fulcio.FulcioRoots.from_pem``), each log's key as PEM (``rekor.entry_problem`` picks
the key an entry's log ID names), the service URLs as strings. Everything here is hostile input:
a file that is not what it claims is refused with a ValueError saying what and where."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

TRUSTED_ROOT_TYPES = ("application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                      "application/vnd.dev.sigstore.trustedroot.v0.2+json")
SIGNING_CONFIG_TYPE = "application/vnd.dev.sigstore.signingconfig.v0.2+json"
MAX_FILE = 1 << 20  # bytes of either file (the public instance's trusted root: 7 KB)
MAX_ENTRIES = 64  # logs or authorities in one trusted root
REKOR_API = 1  # the Rekor API this project speaks (signing_config's majorApiVersion)


@dataclass(frozen=True)
class Log:
    url: str  # the log's baseUrl
    pem: bytes  # its public key
    start: datetime | None = None  # its publicKey.validFor
    end: datetime | None = None

    def valid_at(self, when: datetime) -> bool:
        return (self.start is None or self.start <= when) and (self.end is None or when < self.end)


@dataclass(frozen=True)
class TrustedRoot:
    fulcio_pem: bytes  # every certificate of every authority: roots and intermediates
    tlogs: tuple[Log, ...]  # Rekor
    ctlogs: tuple[Log, ...]  # the certificate transparency logs whose SCTs Fulcio embeds

    def rekor_pem(self) -> bytes:
        """Every Rekor key (the in-process checks pick an entry's by its log ID)."""
        return b"".join(t.pem for t in self.tlogs)

    def ctlog_pem(self) -> bytes:
        """Every CT log key (the SCT check picks the SCT's by its log ID)."""
        return b"".join(c.pem for c in self.ctlogs)

    def current_rekor(self, url: str, now: datetime | None = None) -> bytes:
        """The one key of the log at ``url`` valid now (none there: of any log, the one that
        started last), for readers that take one key (cosign's SIGSTORE_REKOR_PUBLIC_KEY,
        policy.json's rekorPublicKeyPath); empty if no key is valid now."""
        now = now or datetime.now(UTC)
        valid = [t for t in self.tlogs if t.valid_at(now)]
        found = [t for t in valid if t.url.rstrip("/") == url.rstrip("/")] or valid
        return _latest(found).pem if found else b""

    def current_ctlog(self, now: datetime | None = None) -> bytes:
        """The CT log key valid now that started last (the one Fulcio's SCTs come from), for
        readers that take one key (SIGSTORE_CT_LOG_PUBLIC_KEY_FILE); empty if none is."""
        now = now or datetime.now(UTC)
        found = [c for c in self.ctlogs if c.valid_at(now)]
        return _latest(found).pem if found else b""


def _latest(logs: list[Log]) -> Log:
    return max(logs, key=lambda log: log.start or datetime.min.replace(tzinfo=UTC))


@dataclass(frozen=True)
class SigningConfig:
    fulcio_url: str | None
    oidc_url: str | None
    rekor_url: str | None  # the first valid log of REKOR_API


def _json(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_FILE:
        raise ValueError(f"{what}: larger than {MAX_FILE >> 10} KiB")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValueError(f"{what}: not JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: not a JSON object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ENTRIES:
        raise ValueError(f"{what}: not a list (of at most {MAX_ENTRIES})")
    return value


def _raw(value: Any, what: str) -> bytes:
    raw = value.get("rawBytes") if isinstance(value, dict) else None
    if not isinstance(raw, str):
        raise ValueError(f"{what}: no rawBytes")
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        raise ValueError(f"{what}: rawBytes is not base64") from None


def _url(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")) or \
            any(c.isspace() for c in value) or len(value) > 2048:
        raise ValueError(f"{what}: not an http(s) URL")
    return value


def _logs(value: Any, what: str) -> tuple[Log, ...]:
    logs = []
    for n, entry in enumerate(_list(value, what)):
        where = f"{what}[{n}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: not an object")
        der = _raw(entry.get("publicKey"), f"{where}.publicKey")
        try:
            key = serialization.load_der_public_key(der)
        except (ValueError, TypeError):
            raise ValueError(f"{where}.publicKey: not a DER public key") from None
        pem = key.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        valid = entry["publicKey"].get("validFor") or {}
        if not isinstance(valid, dict):
            raise ValueError(f"{where}.publicKey.validFor: not an object")
        logs.append(Log(_url(entry.get("baseUrl"), f"{where}.baseUrl"), pem,
                        _time(valid["start"], f"{where}.publicKey.validFor.start")
                        if valid.get("start") is not None else None,
                        _time(valid["end"], f"{where}.publicKey.validFor.end")
                        if valid.get("end") is not None else None))
    return tuple(logs)


def read_trusted_root(data: bytes, what: str = "trusted_root.json") -> TrustedRoot:
    """A ``TrustedRoot`` (v0.1 or v0.2). The logs' ``validFor`` windows are kept: the readers
    that take one key get the one valid now; the in-process checks take every key (a rotated
    one still verifies what it signed while in use). The certificate authorities' windows are
    not applied: their certificates' own validity is (see the closing note of issue 25)."""
    value = _json(data, what)
    media = value.get("mediaType")
    if media not in TRUSTED_ROOT_TYPES:
        raise ValueError(f"{what}: mediaType is not {TRUSTED_ROOT_TYPES[0]} or "
                         f"{TRUSTED_ROOT_TYPES[1]} (not a Sigstore trusted root)")
    pems = []
    for n, ca in enumerate(_list(value.get("certificateAuthorities"),
                                 f"{what}: certificateAuthorities")):
        chain = ca.get("certChain") if isinstance(ca, dict) else None
        if not isinstance(chain, dict) or not isinstance(chain.get("certificates"), list):
            raise ValueError(f"{what}: certificateAuthorities[{n}]: no certChain.certificates")
        certs = _list(chain.get("certificates"),
                      f"{what}: certificateAuthorities[{n}].certChain.certificates")
        for m, cert in enumerate(certs):
            where = f"{what}: certificateAuthorities[{n}].certChain.certificates[{m}]"
            try:
                parsed = x509.load_der_x509_certificate(_raw(cert, where))
            except ValueError as e:
                raise ValueError(f"{where}: not a DER certificate ({e})") from None
            pems.append(parsed.public_bytes(serialization.Encoding.PEM))
    root = TrustedRoot(b"".join(pems), _logs(value.get("tlogs"), f"{what}: tlogs"),
                       _logs(value.get("ctlogs"), f"{what}: ctlogs"))
    if not root.fulcio_pem and not root.tlogs:
        raise ValueError(f"{what}: names no certificate authority and no transparency log")
    return root


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what}: not a timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{what}: not an RFC 3339 timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _service(value: Any, what: str, now: datetime, api: int | None = None) -> str | None:
    """The first service of the list valid at ``now`` (and of API version ``api``)."""
    for n, entry in enumerate(_list(value, what)):
        where = f"{what}[{n}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: not an object")
        url = _url(entry.get("url"), f"{where}.url")
        valid = entry.get("validFor") or {}
        if not isinstance(valid, dict):
            raise ValueError(f"{where}.validFor: not an object")
        if "start" in valid and _time(valid["start"], f"{where}.validFor.start") > now:
            continue
        if valid.get("end") is not None and _time(valid["end"], f"{where}.validFor.end") <= now:
            continue
        if api is not None and entry.get("majorApiVersion") != api:
            continue
        return url
    return None


def read_signing_config(data: bytes, what: str = "signing_config.json",
                        now: datetime | None = None) -> SigningConfig:
    """A ``SigningConfig`` v0.2: for each service the first entry valid now (Rekor: of the v1
    API, the one this project writes to)."""
    value = _json(data, what)
    if value.get("mediaType") != SIGNING_CONFIG_TYPE:
        raise ValueError(f"{what}: mediaType is not {SIGNING_CONFIG_TYPE} (not a Sigstore "
                         "signing config v0.2)")
    now = now or datetime.now(UTC)
    return SigningConfig(
        fulcio_url=_service(value.get("caUrls"), f"{what}: caUrls", now),
        oidc_url=_service(value.get("oidcUrls"), f"{what}: oidcUrls", now),
        rekor_url=_service(value.get("rekorTlogUrls"), f"{what}: rekorTlogUrls", now,
                           REKOR_API))
