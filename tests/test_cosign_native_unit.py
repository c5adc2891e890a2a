"""Pure logic of the in-process cosign path: Go's JSON, PEM blocks, the Fulcio certificate's
renewal, Rekor answers that are not for the signature sent. (Everything that talks to a
registry, cosign, skopeo or the sigstore test bed is in tests/test_sigstore_native.py.)"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signaction.formats import cosign as cosign_format
from signaction.formats import keys
from signers.cosign import native as cosign_native
from signers.cosign import services as sigstore_services


def test_go_json_escapes_as_go_and_keeps_utf8():
    assert cosign_format.go_json({"b": "<a&b>\u2028é", "a": None}) == \
        '{"b":"\\u003ca\\u0026b\\u003e\\u2028é","a":null}'.encode()
    payload = cosign_format.simple_signing_payload("r.io/a:v1", "sha256:" + "0" * 64,
                                                   {"z": "1", "tag": "v1"})
    assert payload.startswith(b'{"critical":{"identity":{"docker-reference":"r.io/a:v1"},')
    assert payload.endswith(b'"type":"cosign container image signature"},'
                            b'"optional":{"tag":"v1","z":"1"}}')


@pytest.mark.parametrize("text", [b"", b"no pem", b"-----BEGIN X-----\nAAAA\n",
                                  b"-----BEGIN X-----\n!!!\n-----END X-----\n"])
def test_pem_block_refuses_what_is_not_one(text):
    assert cosign_native.pem_block(text) is None


def _certificate(minutes: float) -> sigstore_services.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return sigstore_services.Certificate(None, b"", b"", "i", "o",
                                         now + datetime.timedelta(minutes=minutes))


def test_the_certificate_is_kept_until_two_minutes_before_its_end(monkeypatch):
    keyless = sigstore_services.Keyless(None, "https://fulcio.invalid", lambda: "t")
    issued = iter([_certificate(10), _certificate(1.5), _certificate(10)])
    monkeypatch.setattr(keyless, "_issue", lambda: next(issued))
    first = keyless.certificate()
    assert keyless.certificate() is first and keyless.issued == 1
    keyless.current = _certificate(1.9)  # within RENEW_BEFORE of its end: a new one
    renewed = keyless.certificate()
    assert renewed is not first and keyless.issued == 2


def _entry(spec: dict, log_id: str = "00", **changes) -> dict:
    body = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": spec, **changes}
    return {"ab" * 32: {"body": base64.b64encode(json.dumps(body).encode()).decode(),
                        "integratedTime": 1, "logIndex": 0, "logID": log_id,
                        "verification": {"signedEntryTimestamp": "AAAA"}}}


def test_a_rekor_entry_for_another_signature_or_key_is_refused():
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    key_pem = keys.public_pem(key)
    payload, signature = b"payload", b"\0\0\0"
    spec = {"data": {"hash": {"algorithm": "sha256",
                              "value": hashlib.sha256(payload).hexdigest()}},
            "signature": {"content": "AAAA",
                          "publicKey": {"content": base64.b64encode(key_pem).decode()}}}
    rekor = sigstore_services.Rekor(None, None, None)
    answer = _entry(spec)
    body = base64.b64decode(answer["ab" * 32]["body"])
    # the UUID is the entry's leaf hash, computed: not the answer's key, which is outside text
    assert rekor._entry(answer, payload, signature, key_pem, "w").uuid == \
        hashlib.sha256(b"\0" + body).hexdigest()
    swapped = json.loads(json.dumps(spec))
    swapped["signature"]["publicKey"]["content"] = base64.b64encode(
        keys.public_pem(other)).decode()
    for answer, why in ((_entry(swapped), "another key"),
                        (_entry({**spec, "data": {"hash": {"value": "11"}}}), "not a hashed"),
                        (_entry({**spec, "data": {"hash": {"algorithm": "sha256",
                                                           "value": "11"}}}), "another payload"),
                        (_entry(spec, kind="rekord"), "not a hashedrekord"),
                        ({"x": 1}, "not one Rekor entry"), ([], "not one Rekor entry")):
        with pytest.raises(sigstore_services.ServiceError, match=why):
            rekor._entry(answer, payload, signature, key_pem, "w")
    with pytest.raises(sigstore_services.ServiceError, match="another signature"):
        rekor._entry(_entry(spec), payload, b"\1", key_pem, "w")
    signed = sigstore_services.Rekor(None, None, key_pem)
    with pytest.raises(sigstore_services.ServiceError, match="another log"):
        signed._entry(_entry(spec), payload, signature, key_pem, "w")
    log_id = hashlib.sha256(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    with pytest.raises(sigstore_services.ServiceError, match="does not verify"):
        signed._entry(_entry(spec, log_id), payload, signature, key_pem, "w")


def test_services_verify_tls_even_where_registries_may_not(monkeypatch):
    """allow_insecure_registry is about registries: Fulcio, Rekor and the token service are
    always checked."""
    from signaction.registry import RegistryClient, _Reply

    client = RegistryClient(verify_tls=False)
    seen = []

    def once(method, url, authorization, headers, limit, ref, what, data=None, verify=None,
             deadline=None):
        seen.append(client._verify if verify is None else verify)
        return _Reply(200, "OK", {}, b"{}", url)
    monkeypatch.setattr(client, "_once", once)
    client.service("POST", "https://rekor.invalid/api/v1/log/entries", what="w", body=b"{}")
    assert seen == [True]
