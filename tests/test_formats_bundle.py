"""The bundle's wire formats without I/O: DSSE's PAE, in-toto Statements, Sigstore bundles,
referrers indexes. Hostile documents get a Problem (never an exception); each check that
decides is broken in turn by one forged field. The bundles here are signed with a local key
and logged in the test bed's Rekor object (in this process), so SET, inclusion proof and
checkpoint are real."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from signaction.formats import bundle, dsse, intoto, oci, rekor
from signaction.formats.cosign import CosignTrust
from signaction.formats.findings import Finding
from signaction.formats.keys import public_pem, sign_bytes
from testbed.sigstore.rekor import Rekor

DIGEST = "sha256:" + "1" * 64
OTHER = "sha256:" + "2" * 64


def test_pae_is_dsse_v1():
    assert dsse.pae("t", b"ab") == b"DSSEv1 1 t 2 ab"
    assert dsse.pae("application/vnd.in-toto+json", b"") == \
        b"DSSEv1 28 application/vnd.in-toto+json 0 "


def test_the_statement_is_cosign_3s_with_an_optional_name():
    assert bundle.statement(DIGEST, {}) == (
        b'{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"'
        + b"1" * 64 + b'"},"annotations":{}}],"predicateType":'
        b'"https://sigstore.dev/cosign/sign/v1","predicate":{}}')
    found = intoto.parse(bundle.statement(DIGEST, {"tag": "v1"}, name="r.example/ns/app"))
    assert found.subjects == (("r.example/ns/app", DIGEST),)
    assert intoto.subject_problem(found, DIGEST, intoto.COSIGN_SIGN) is None
    assert intoto.subject_problem(found, OTHER, intoto.COSIGN_SIGN).finding is \
        Finding.OTHER_DIGEST
    assert intoto.subject_problem(found, DIGEST, "https://slsa.dev/provenance/v1").finding is \
        Finding.UNREADABLE


@pytest.fixture(scope="module")
def signed():
    """A key-based bundle of DIGEST, its dsse entry in a Rekor of the test bed (this process)."""
    key = ec.generate_private_key(ec.SECP256R1())
    log = Rekor()
    statement = bundle.statement(DIGEST, {})
    envelope = dsse.Envelope(dsse.IN_TOTO, statement,
                             (sign_bytes(key, dsse.pae(dsse.IN_TOTO, statement)),))
    text = json.dumps(envelope.json(), separators=(",", ":"))
    entry, _ = log.add(rekor.dsse(text, public_pem(key)))
    (_, answer), = log.render(entry).items()
    made = bundle.bundle(envelope, [rekor.from_answer(answer)],
                         hint=bundle.key_hint(key.public_key()))
    trust = CosignTrust(public_pem=public_pem(key),
                        rekor_pem=public_pem_of(log.key.public_key()))
    return made, trust


def public_pem_of(public) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def test_a_good_bundle_verifies_and_names_its_entry(signed):
    made, trust = signed
    problem, fields = bundle.bundle_problem(made, DIGEST, trust)
    assert problem is None and fields["rekor_log_index"] == 0
    doc = json.loads(made)  # sigstore-python's strict reader: int64 as strings, fields present
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    assert entry["logIndex"] == "0" and isinstance(entry["integratedTime"], str)
    assert entry["inclusionProof"]["hashes"] == [] and entry["inclusionProof"]["logIndex"] == "0"


def _forged(made: bytes, change) -> bytes:
    doc = json.loads(made)
    change(doc)
    return json.dumps(doc).encode()


def _set(path: list, value):
    def change(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


def _body(change):
    def forge(doc):
        entry = doc["verificationMaterial"]["tlogEntries"][0]
        body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
        change(body)
        entry["canonicalizedBody"] = base64.b64encode(json.dumps(body).encode()).decode()
    return forge


TLE = ["verificationMaterial", "tlogEntries", 0]
FORGERIES = {
    "not json": (lambda doc: doc.clear(), Finding.UNREADABLE),
    "other media type": (_set(["mediaType"], "application/json"), Finding.UNREADABLE),
    "payload not base64": (_set(["dsseEnvelope", "payload"], "%%%"), Finding.UNREADABLE),
    "other payload type": (_set(["dsseEnvelope", "payloadType"], "text/plain"),
                           Finding.UNREADABLE),
    "two signatures": (lambda d: d["dsseEnvelope"]["signatures"].append(
        d["dsseEnvelope"]["signatures"][0]), Finding.UNREADABLE),
    "other signature": (_set(["dsseEnvelope", "signatures", 0, "sig"],
                             base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()),
                        Finding.OTHER_KEY),
    "other statement": (_set(["dsseEnvelope", "payload"], base64.b64encode(
        bundle.statement(OTHER, {})).decode()), Finding.OTHER_KEY),
    "no log entry": (_set(["verificationMaterial", "tlogEntries"], []), Finding.TRANSPARENCY),
    "hashedrekord entry": (_set([*TLE, "kindVersion", "kind"], "hashedrekord"),
                           Finding.TRANSPARENCY),
    "forged SET": (_set([*TLE, "inclusionPromise", "signedEntryTimestamp"],
                        base64.b64encode(b"x" * 70).decode()), Finding.TRANSPARENCY),
    "no SET": (lambda d: d["verificationMaterial"]["tlogEntries"][0].pop("inclusionPromise"),
               Finding.TRANSPARENCY),
    "body of another payload": (_body(lambda b: b["spec"]["payloadHash"].update(
        value="0" * 64)), Finding.TRANSPARENCY),
    "other time": (_set([*TLE, "integratedTime"], "1"), Finding.TRANSPARENCY),
    "bad proof root": (_set([*TLE, "inclusionProof", "rootHash"],
                            base64.b64encode(b"r" * 32).decode()), Finding.TRANSPARENCY),
    "negative index": (_set([*TLE, "logIndex"], "-1"), Finding.UNREADABLE),
    "index as a float": (_set([*TLE, "logIndex"], 1.5), Finding.UNREADABLE),
    "huge": (_set(["pad"], "x" * (bundle.MAX_BUNDLE + 1)), Finding.UNREADABLE),
    "deep": (None, Finding.UNREADABLE),  # nested past the parser's stack: written by hand
}


@pytest.mark.parametrize("name", FORGERIES)
def test_each_forgery_is_refused_for_its_reason(signed, name):
    made, trust = signed
    change, finding = FORGERIES[name]
    raw = made[:-1] + b',"pad":' + b"[" * 100000 + b"]" * 100000 + b"}" if change is None \
        else _forged(made, change)
    problem, _ = bundle.bundle_problem(raw, DIGEST, trust)
    assert problem is not None and problem.finding is finding, (name, problem)


def test_another_digest_another_key_and_no_rekor_key(signed):
    made, trust = signed
    assert bundle.bundle_problem(made, OTHER, trust)[0].finding is Finding.OTHER_DIGEST
    stranger = public_pem(ec.generate_private_key(ec.SECP256R1()))
    assert bundle.bundle_problem(made, DIGEST, dataclasses.replace(
        trust, public_pem=stranger))[0].finding is Finding.OTHER_KEY
    other_log = public_pem(ec.generate_private_key(ec.SECP256R1()))
    assert bundle.bundle_problem(made, DIGEST, dataclasses.replace(
        trust, rekor_pem=other_log))[0].finding is Finding.TRANSPARENCY
    # without Rekor's key the log entry is not asked for: the key alone decides
    assert bundle.bundle_problem(made, DIGEST, dataclasses.replace(
        trust, rekor_pem=None))[0] is None


def test_the_referrer_manifest_and_its_index_entry():
    made = b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}'
    subject = {"mediaType": oci.OCI_MANIFEST, "size": 10, "digest": DIGEST}
    raw = bundle.referrer_manifest(made, subject, "2026-01-01T00:00:00Z")
    doc = json.loads(raw)
    assert doc["artifactType"] == bundle.BUNDLE_V03 and doc["subject"] == subject
    assert doc["config"]["digest"] == \
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    assert bundle.bundle_layer(raw)["digest"] == oci.descriptor(bundle.BUNDLE_V03,
                                                                made)["digest"]
    entry = oci.referrer_descriptor(raw)
    assert entry["artifactType"] == bundle.BUNDLE_V03
    assert entry["annotations"]["dev.sigstore.bundle.content"] == "dsse-envelope"
    index = oci.with_referrer(None, entry)
    assert oci.index_manifests(index) == [entry]
    assert oci.with_referrer(index, entry) is None  # listed once
    other = {**entry, "digest": "sha256:" + "0" * 64}
    assert [m["digest"] for m in oci.index_manifests(oci.with_referrer(index, other))] == \
        sorted([entry["digest"], other["digest"]])


@pytest.mark.parametrize("raw", [b"[]", b'{"schemaVersion": 2, "mediaType": "x"}',
                                 b'{"schemaVersion": 2, "manifests": [1]}', b"{" * 5000,
                                 json.dumps({"schemaVersion": 2, "manifests": [{}] * 1001}
                                            ).encode()])
def test_a_hostile_referrers_index_is_a_value_error(raw):
    with pytest.raises(ValueError):
        oci.index_manifests(raw)
