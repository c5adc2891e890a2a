"""The test bed's Fulcio: a root and an intermediate CA issuing code-signing leaves, each with
an SCT from its CT log embedded."""

from __future__ import annotations

import datetime
import hashlib
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from .common import (
    CERT_LIFETIME,
    FULCIO_OID,
    GITHUB_URL,
    SCT_LIST_OID,
    Refused,
    der_utf8,
    pem_cert,
    spki,
    utcnow,
)

# -- the certificate authority and its CT log -----------------------------------------------

def _ca_cert(subject: x509.Name, key, issuer: x509.Name, signer, path_length: int,
             eku: bool, issuer_key=None) -> x509.Certificate:
    now = utcnow()
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                            False, False), True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              False))
    if issuer_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False)
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
    return builder.sign(signer, hashes.SHA256())


class CtLog:
    """A certificate transparency log that signs SCTs for precertificates (RFC 6962 3.2): the
    signed data is the leaf's TBSCertificate without the SCT list (what a precertificate is
    without its poison extension) and the SHA-256 of the issuer's SubjectPublicKeyInfo; the log
    ID is the SHA-256 of the log key's SubjectPublicKeyInfo. That is exactly what cosign (with
    certificate-transparency-go) rebuilds from the final certificate and its issuer to check an
    embedded SCT against ``SIGSTORE_CT_LOG_PUBLIC_KEY_FILE``."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.log_id = hashlib.sha256(spki(self.key.public_key())).digest()
        self.logged: list[bytes] = []  # the precertificate TBSs, in order

    def sct(self, tbs_without_scts: bytes, issuer_spki: bytes, timestamp_ms: int) -> bytes:
        """One serialized SignedCertificateTimestamp (v1, precert entry, no extensions)."""
        self.logged.append(tbs_without_scts)
        signed = (b"\x00\x00" + timestamp_ms.to_bytes(8, "big") + b"\x00\x01"
                  + hashlib.sha256(issuer_spki).digest()
                  + len(tbs_without_scts).to_bytes(3, "big") + tbs_without_scts
                  + b"\x00\x00")
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return (b"\x00" + self.log_id + timestamp_ms.to_bytes(8, "big") + b"\x00\x00"
                + b"\x04\x03" + len(signature).to_bytes(2, "big") + signature)


def sct_list_extension(scts: list[bytes]) -> x509.UnrecognizedExtension:
    """The X.509 extension 1.3.6.1.4.1.11129.2.4.2: an OCTET STRING holding the TLS-encoded
    SignedCertificateTimestampList."""
    items = b"".join(len(s).to_bytes(2, "big") + s for s in scts)
    listed = len(items).to_bytes(2, "big") + items
    n = len(listed)
    length = bytes([n]) if n < 0x80 else (
        bytes([0x81, n]) if n < 0x100 else bytes([0x82, n >> 8, n & 0xFF]))
    return x509.UnrecognizedExtension(SCT_LIST_OID, b"\x04" + length + listed)


def fulcio_extensions(issuer: str, claims: dict) -> list[tuple[int, bytes]]:
    """Fulcio's extensions (arc 1.3.6.1.4.1.57264.1) for a token, in Fulcio's order: the issuer
    (.1 raw, deprecated; .8 DER), and for a GitHub workflow token the deprecated raw .2-.6 and
    the DER .9-.22 (Fulcio's GitHub template; the empty ones left out)."""
    exts = [(1, issuer.encode())]
    if "job_workflow_ref" not in claims:
        return exts + [(8, der_utf8(issuer))]
    c = {k: str(v) for k, v in claims.items()}
    for n, claim in ((2, "event_name"), (3, "sha"), (4, "workflow"), (5, "repository"),
                     (6, "ref")):
        if c.get(claim):
            exts.append((n, c[claim].encode()))
    exts.append((8, der_utf8(issuer)))
    url = GITHUB_URL
    ci = {9: f"{url}/{c['job_workflow_ref']}", 10: c.get("job_workflow_sha"),
          11: c.get("runner_environment"), 12: f"{url}/{c.get('repository')}",
          13: c.get("sha"), 14: c.get("ref"), 15: c.get("repository_id"),
          16: f"{url}/{c.get('repository_owner')}", 17: c.get("repository_owner_id"),
          18: f"{url}/{c.get('workflow_ref')}", 19: c.get("workflow_sha"),
          20: c.get("event_name"),
          21: f"{url}/{c.get('repository')}/actions/runs/{c.get('run_id')}/attempts/"
              f"{c.get('run_attempt')}",
          22: c.get("repository_visibility")}
    return exts + [(n, der_utf8(v)) for n, v in ci.items() if v]


class Fulcio:
    """A root and an intermediate CA issuing 10-minute code-signing certificates, each with an
    SCT from ``ct`` embedded."""

    def __init__(self, ct: CtLog):
        self.ct = ct
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.dev"),
                               x509.NameAttribute(NameOID.COMMON_NAME, "testbed-root")])
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.dev"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "testbed-intermediate")])
        self.root = _ca_cert(root_name, self.root_key, root_name, self.root_key, 1, False)
        self.intermediate = _ca_cert(name, self.key, root_name, self.root_key, 0, True,
                                     issuer_key=self.root_key)

    def chain_pem(self) -> list[str]:
        return [pem_cert(self.intermediate), pem_cert(self.root)]

    def issue(self, public_key, issuer: str, claims: dict) -> x509.Certificate:
        """The leaf for ``public_key`` and a verified token's claims."""
        now = utcnow()
        san = x509.RFC822Name(claims["email"]) if "email" in claims else \
            x509.UniformResourceIdentifier(f"{GITHUB_URL}/{claims['job_workflow_ref']}")
        builder = (x509.CertificateBuilder().subject_name(x509.Name([]))
                   .issuer_name(self.intermediate.subject).public_key(public_key)
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + CERT_LIFETIME)
                   .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                                False, False), True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
                                  False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.key.public_key()), False)
                   .add_extension(x509.SubjectAlternativeName([san]), True))
        for n, value in fulcio_extensions(issuer, claims):
            builder = builder.add_extension(
                x509.UnrecognizedExtension(ObjectIdentifier(f"{FULCIO_OID}{n}"), value), False)
        # The precertificate's TBS is the final one without the SCT list (extensions keep their
        # order), so the log signs this one and the SCT goes in last.
        precert_tbs = builder.sign(self.key, hashes.SHA256()).tbs_certificate_bytes
        sct = self.ct.sct(precert_tbs, spki(self.intermediate.public_key()),
                          int(time.time() * 1000))
        return builder.add_extension(sct_list_extension([sct]), False).sign(
            self.key, hashes.SHA256())


def proof_subject(claims: dict) -> str:
    """What the proof of possession signs: the email (it must be verified) or the subject, as
    cosign's and Fulcio's principal code choose it."""
    if "email" in claims:
        verified = claims.get("email_verified")
        if verified not in (True, "true", "True"):
            raise Refused(401, "There was an error processing the identity token: "
                               "email_verified claim was false")
        return claims["email"]
    if not claims.get("sub"):
        raise Refused(401, "There was an error processing the identity token: no subject")
    if "job_workflow_ref" not in claims:
        raise Refused(401, "There was an error processing the identity token: neither an "
                           "email nor a GitHub workflow identity")
    return claims["sub"]
