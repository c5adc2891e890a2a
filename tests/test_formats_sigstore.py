"""signaction.formats' sigstore checks, case by case, on material the test bed's own CA, CT log
and Rekor make in-process (the same code that serves cosign in the integration tests).

These are the unit tests of each decision; the end-to-end differential against cosign verify
and skopeo (issue 22's corpus) is still to come."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signaction.formats import fulcio, rekor
from signaction.signing import Finding
from testbed.sigstore import CtLog, Fulcio, Rekor, pem_public


def now() -> datetime.datetime:
    """A minute on from the moment of the call (not of the import: the suite may run for
    minutes before these tests): the test bed's leaves, valid from their issue (to the second)
    for ten minutes, are valid then, whenever in this second they were made."""
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=60)
EMAIL = {"email": "dev@example.com", "email_verified": True}


@pytest.fixture(scope="module")
def ca():
    return Fulcio(CtLog())


def roots(ca) -> fulcio.FulcioRoots:
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (ca.root, ca.intermediate))
    return fulcio.FulcioRoots.from_pem(pem)


def leaf(ca, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    return key, ca.issue(key.public_key(), "https://issuer.example", EMAIL)


def cert(subject_key, issuer_key, issuer_name, *, ca=False, path=None, usage=True, eku=None,
         subject="forged", email="attacker@example.com", days=(-1, 1)):
    """A certificate made by hand: ``issuer_key`` signs; the knobs forge one property each."""
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name).public_key(subject_key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now() + datetime.timedelta(days=days[0]))
         .not_valid_after(now() + datetime.timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=path), True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             issuer_key.public_key()), False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()),
                        False))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, usage, usage, False,
                                          False), True)
    else:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                          False), True)
        b = b.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), False)
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), False)
    return b.sign(issuer_key, hashes.SHA256())


def test_a_fulcio_leaf_chains_to_the_configured_root(ca):
    _, good = leaf(ca)
    problem, chain = fulcio.chain_problem(good, roots(ca), [], now())
    assert problem is None and chain[0] == good and chain[-1] == ca.root
    # the intermediate may come from the image too: it is checked, not trusted
    only_root = fulcio.FulcioRoots((ca.root,), ())
    assert fulcio.chain_problem(good, only_root, [ca.intermediate], now())[0] is None
    assert fulcio.chain_problem(good, only_root, [], now())[0].finding is \
        Finding.UNTRUSTED_CERTIFICATE


def test_a_certificate_issued_by_a_leaf_is_refused(ca):
    key, genuine = leaf(ca)
    evil = ec.generate_private_key(ec.SECP256R1())
    # a well-formed issuer name, so that the refusal is the CA:false leaf, not a missing name
    forged = cert(evil, key, genuine.subject or x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]), eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    problem, _ = fulcio.chain_problem(forged, roots(ca), [genuine, ca.intermediate], now())
    assert problem is not None and problem.finding is Finding.UNTRUSTED_CERTIFICATE


def _sub_ca(ca, **knobs):
    key = ec.generate_private_key(ec.SECP256R1())
    return key, cert(key, ca.key, ca.intermediate.subject, ca=True, subject="sub-ca", **knobs)


@pytest.mark.parametrize("knobs,accepted", [
    ({}, False),  # the intermediate's path length is 0: no CA below it
    ({"usage": False}, False),
], ids=["path-length", "no-keyCertSign"])
def test_a_ca_below_the_intermediate_is_refused(ca, knobs, accepted):
    sub_key, sub = _sub_ca(ca, path=0, **knobs)
    forged = cert(ec.generate_private_key(ec.SECP256R1()), sub_key, sub.subject,
                  eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    problem, _ = fulcio.chain_problem(forged, roots(ca), [sub], now())
    assert (problem is None) == accepted


def test_key_usage_and_path_length_are_what_refuse(ca):
    """The same shape under a root that allows a second level: accepted with keyCertSign,
    refused without it (so the refusal above is not just any difference)."""
    root_key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root2")])
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(root_key.public_key()).serial_number(1)
            .not_valid_before(now() - datetime.timedelta(days=1))
            .not_valid_after(now() + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()),
                           False)
            .sign(root_key, hashes.SHA256()))
    trusted = fulcio.FulcioRoots((root,), ())
    for usage, accepted in ((True, True), (False, False)):
        sub_key = ec.generate_private_key(ec.SECP256R1())
        sub = cert(sub_key, root_key, name, ca=True, subject="sub", usage=usage)
        end = cert(ec.generate_private_key(ec.SECP256R1()), sub_key, sub.subject,
                   eku=[ExtendedKeyUsageOID.CODE_SIGNING])
        assert (fulcio.chain_problem(end, trusted, [sub], now())[0] is None) == accepted, usage


@pytest.mark.parametrize("eku,accepted", [
    ([ExtendedKeyUsageOID.CODE_SIGNING], True),
    ([ExtendedKeyUsageOID.SERVER_AUTH], False),
    (None, False),  # no EKU at all: Go's x509 would take it as "any"; this project does not
])
def test_the_leaf_must_be_for_code_signing(ca, eku, accepted):
    forged = cert(ec.generate_private_key(ec.SECP256R1()), ca.key, ca.intermediate.subject,
                  eku=eku)
    assert (fulcio.chain_problem(forged, roots(ca), [], now())[0] is None) == accepted


@pytest.mark.parametrize("shift,accepted", [(0, True), (-20, False), (20, False)],
                         ids=["during", "before", "after"])
def test_validity_is_judged_at_the_given_time(ca, shift, accepted):
    _, good = leaf(ca)
    at = good.not_valid_before_utc + datetime.timedelta(minutes=5 + shift)
    assert (fulcio.chain_problem(good, roots(ca), [], at)[0] is None) == accepted


def test_a_self_signed_leaf_or_an_attacker_root_in_the_image_is_refused(ca):
    evil = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil-root")])
    self_signed = cert(evil, evil, name, subject="evil-root",
                       eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    assert fulcio.chain_problem(self_signed, roots(ca), [self_signed], now())[0] is not None
    evil_root = cert(evil, evil, name, ca=True, subject="evil-root")
    end = cert(ec.generate_private_key(ec.SECP256R1()), evil, name,
               eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    assert fulcio.chain_problem(end, roots(ca), [evil_root], now())[0] is not None
    # ...and the same chain is accepted once that root is configured: the store decides
    assert fulcio.chain_problem(end, fulcio.FulcioRoots((evil_root,), ()), [], now())[0] is None


def test_roots_need_a_self_signed_certificate(ca):
    with pytest.raises(ValueError, match="self-signed"):
        fulcio.FulcioRoots.from_pem(ca.intermediate.public_bytes(serialization.Encoding.PEM))


def test_the_embedded_sct_verifies_with_the_ct_log_key(ca):
    _, good = leaf(ca)
    ct_pem = pem_public(ca.ct.key.public_key())
    assert fulcio.sct_problem(good, ca.intermediate, [ct_pem]) is None
    other_log = pem_public(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert fulcio.sct_problem(good, ca.intermediate, [other_log]).finding is Finding.TRANSPARENCY
    # an SCT is for one certificate by one issuer: judged against another issuer, it fails
    assert fulcio.sct_problem(good, ca.root, [ct_pem]) is not None
    no_sct = cert(ec.generate_private_key(ec.SECP256R1()), ca.key, ca.intermediate.subject,
                  eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    assert "no SCT" in fulcio.sct_problem(no_sct, ca.intermediate, [ct_pem]).detail


def test_an_sct_copied_onto_another_certificate_is_refused(ca):
    _, good = leaf(ca)
    sct_ext = good.extensions.get_extension_for_oid(
        x509.oid.ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS)
    other_key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(good.issuer)
         .public_key(other_key.public_key()).serial_number(good.serial_number)
         .not_valid_before(good.not_valid_before_utc).not_valid_after(good.not_valid_after_utc))
    for ext in good.extensions:
        if ext.oid != sct_ext.oid:
            b = b.add_extension(ext.value, ext.critical)
    b = b.add_extension(sct_ext.value, False)
    copied = b.sign(ca.key, hashes.SHA256())
    assert fulcio.sct_problem(copied, ca.intermediate,
                              [pem_public(ca.ct.key.public_key())]) is not None


def test_identity_and_issuer_are_read_as_cosign_reads_them(ca):
    _, good = leaf(ca)
    assert fulcio.identity(good) == ("dev@example.com", "https://issuer.example")


# -- Rekor ------------------------------------------------------------------------------------

def _logged(log: Rekor, payload: bytes, key):
    sig = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    key_pem = pem_public(key.public_key())
    proposed = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
        "signature": {"content": base64.b64encode(sig).decode(),
                      "publicKey": {"content": base64.b64encode(key_pem).decode()}}}}
    entry, _ = log.add(proposed)
    (answer,) = log.render(entry).values()
    return rekor.from_answer(answer), sig, key_pem


@pytest.fixture(scope="module")
def log():
    log = Rekor()
    for n in range(6):  # a tree with some shape: paths of several hashes, left and right
        _logged(log, f"filler {n}".encode(), ec.generate_private_key(ec.SECP256R1()))
    return log


def test_a_genuine_entry_passes_every_check(log):
    entry, sig, key_pem = _logged(log, b"payload", ec.generate_private_key(ec.SECP256R1()))
    rekor_pem = pem_public(log.key.public_key())
    assert entry.proof is not None and len(entry.proof.hashes) >= 2
    assert rekor.entry_problem(entry, b"payload", sig, key_pem, rekor_pem) is None
    # the annotation cosign stores keeps what the SET signs, and reads back the same
    again = rekor.from_bundle(json.dumps(entry.bundle()))
    assert rekor.set_problem(again, rekor_pem) is None


def test_every_index_of_a_tree_has_a_path_to_its_root():
    log = Rekor()
    entries = [_logged(log, f"p{n}".encode(), ec.generate_private_key(ec.SECP256R1()))[0]
               for n in range(11)]
    rekor_pem = pem_public(log.key.public_key())
    for entry in entries:  # each rendered when the tree had index + 1 leaves
        assert rekor.inclusion_problem(entry, rekor_pem) is None, entry.log_index


def _replace(entry, **changes):
    import dataclasses

    return dataclasses.replace(entry, **changes)


def test_forged_entries_are_refused(log):
    key = ec.generate_private_key(ec.SECP256R1())
    entry, sig, key_pem = _logged(log, b"payload", key)
    rekor_pem = pem_public(log.key.public_key())
    other = ec.generate_private_key(ec.SECP256R1())
    other_entry, other_sig, other_pem = _logged(log, b"other payload", other)
    cases = {
        "SET by another key": rekor.set_problem(entry, pem_public(other.public_key())),
        "SET over another body": rekor.set_problem(_replace(entry, body=other_entry.body),
                                                   rekor_pem),
        "another integrated time": rekor.set_problem(
            _replace(entry, integrated_time=entry.integrated_time + 1), rekor_pem),
        "entry for another payload": rekor.body_problem(entry, b"payloaD", sig, key_pem),
        "entry for another signature": rekor.body_problem(entry, b"payload", other_sig, key_pem),
        "entry for another key": rekor.body_problem(entry, b"payload", sig, other_pem),
        "proof for another entry": rekor.inclusion_problem(
            _replace(entry, proof=other_entry.proof), rekor_pem),
        "proof with a hash changed": rekor.inclusion_problem(_replace(entry, proof=_replace(
            entry.proof, hashes=(b"\0" * 32, *entry.proof.hashes[1:]))), rekor_pem),
        "checkpoint by another key": rekor.inclusion_problem(entry, pem_public(other.public_key())),
        "checkpoint for another root": rekor.checkpoint_problem(
            entry.proof.checkpoint, rekor_pem, entry.proof.tree_size, b"\1" * 32),
    }
    assert all(p is not None and p.finding is Finding.TRANSPARENCY for p in cases.values()), \
        {k: v for k, v in cases.items() if v is None}


@pytest.mark.parametrize("text", ["", "{}", "[]", '{"Payload": 1}', "x" * 100,
                                  '{"Payload": {"body": "!", "integratedTime": 1, "logID": "a",'
                                  ' "logIndex": 0}, "SignedEntryTimestamp": "AAAA"}',
                                  '{"Payload": {"body": "AA==", "integratedTime": true,'
                                  ' "logID": "a", "logIndex": 0}, "SignedEntryTimestamp": ""}'])
def test_unreadable_bundles_are_value_errors(text):
    with pytest.raises(ValueError):
        rekor.from_bundle(text)


def test_a_chain_validated_once_is_still_judged_at_each_time(ca):
    """The chain of one certificate is kept once validated: a later time outside its validity
    must still be refused, and inside it accepted."""
    _, good = leaf(ca)
    start = good.not_valid_before_utc
    for minutes, accepted in ((5, True), (11, False), (-1, False), (9, True)):
        at = start + datetime.timedelta(minutes=minutes)
        assert (fulcio.chain_problem(good, roots(ca), [], at)[0] is None) == accepted, minutes
