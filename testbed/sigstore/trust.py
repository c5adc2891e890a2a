"""The test bed's trust material as sigstore clients take it now: ``trusted_root.json`` (the
Fulcio chain, the Rekor and CT log keys) and ``signing_config.json`` (v0.2: the service URLs),
in the protobuf JSON forms sigstore's clients read (cosign 3 ``--trusted-root`` and
``--signing-config``, sigstore-python's ``TrustedRoot.from_file``)."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives import serialization

TRUSTED_ROOT_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
SIGNING_CONFIG_TYPE = "application/vnd.dev.sigstore.signingconfig.v0.2+json"
SINCE = "2020-01-01T00:00:00Z"  # every key of the bed is valid from then on


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _log(url: str, public_key) -> dict:
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": _b64(der), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                          "validFor": {"start": SINCE}},
            "logId": {"keyId": _b64(hashlib.sha256(der).digest())}}


def trusted_root(fulcio_url: str, chain: list, rekor_url: str, rekor_key, ct_key) -> bytes:
    """``chain``: the Fulcio certificates, intermediate first, the root last."""
    der = [c.public_bytes(serialization.Encoding.DER) for c in chain]
    return json.dumps({
        "mediaType": TRUSTED_ROOT_TYPE,
        "tlogs": [_log(rekor_url, rekor_key)],
        "certificateAuthorities": [{
            "subject": {"organization": "sigstore.dev", "commonName": "testbed"},
            "uri": fulcio_url, "certChain": {"certificates": [{"rawBytes": _b64(d)} for d in der]},
            "validFor": {"start": SINCE}}],
        "ctlogs": [_log(fulcio_url + "/ct", ct_key)],
        "timestampAuthorities": []}, indent=2).encode()


def signing_config(fulcio_url: str, rekor_url: str, oidc_url: str) -> bytes:
    def service(url: str) -> dict:
        return {"url": url, "majorApiVersion": 1, "validFor": {"start": SINCE},
                "operator": "testbed"}
    return json.dumps({
        "mediaType": SIGNING_CONFIG_TYPE, "caUrls": [service(fulcio_url)],
        "oidcUrls": [service(oidc_url)], "rekorTlogUrls": [service(rekor_url)], "tsaUrls": [],
        "rekorTlogConfig": {"selector": "ANY"}, "tsaConfig": {"selector": "ANY"}},
        indent=2).encode()
