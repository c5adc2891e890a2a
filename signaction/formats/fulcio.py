"""Fulcio certificates: the chain to the configured roots, the identity and issuer, the SCT.

The chain is built and checked by ``cryptography.x509.verification`` (RFC 5280 path validation
with the Web PKI profile's rules for CA certificates: basic constraints CA, path length, key
usage keyCertSign; for the leaf: not a CA, a code-signing extended key usage), at a given time:
when Rekor integrated the signature (verify mode) or now (signing). Trust anchors come only from
configured trust material (``FulcioRoots``: the self-signed certificates of the Fulcio root file);
certificates from anywhere else (the image's chain annotation, Fulcio's answer) serve only as
untrusted intermediates, under the same constraints.

The identity is read as cosign reads it: the one email address or URI of the subject alternative
name, the OIDC issuer from extension 1.3.6.1.4.1.57264.1.8 (a DER UTF8String), else from .1.1
(raw bytes). The embedded SCT (RFC 6962 3.2, a precertificate entry: the leaf's TBS without the
SCT list, and the issuer's key hash) must verify with a CT log key when one is given.
"""

from __future__ import annotations

import datetime
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from signaction.formats.findings import Finding, Problem

from .keys import load_public, pem_keys, spki, verifies

ISSUER_OIDS = ("1.3.6.1.4.1.57264.1.8", "1.3.6.1.4.1.57264.1.1")  # DER UTF8String, raw
MAX_TEXT = 1000  # characters of an identity or issuer
MAX_CHAIN = 10  # certificates in a chain annotation or a Fulcio answer
PRECERT = x509.certificate_transparency.LogEntryType.PRE_CERTIFICATE
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _printable(text: str, what: str) -> str:
    if not text or len(text) > MAX_TEXT or any(ord(c) < 0x20 or ord(c) == 0x7f for c in text):
        raise ValueError(f"its {what} is empty, too long or holds control characters")
    return text


def _der_utf8(value: bytes) -> str:
    """A DER UTF8String: its text; ValueError if it is not one."""
    if len(value) < 2 or value[0] != 0x0C:
        raise ValueError("its issuer extension is not a DER UTF8String")
    length, start = value[1], 2
    if length & 0x80:
        size = length & 0x7F
        if size not in (1, 2) or len(value) < 2 + size:
            raise ValueError("its issuer extension has a bad length")
        length, start = int.from_bytes(value[2:2 + size], "big"), 2 + size
    if len(value) != start + length:
        raise ValueError("its issuer extension has a bad length")
    return value[start:].decode("utf-8")


def identity(cert: x509.Certificate) -> tuple[str, str]:
    """(the identity: the one email or URI of the SAN, the OIDC issuer); ValueError saying
    what is wrong."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.RFC822Name),
                 *san.get_values_for_type(x509.UniformResourceIdentifier)]
    except x509.ExtensionNotFound:
        raise ValueError("it has no subject alternative name") from None
    if len(names) != 1:
        raise ValueError(f"its subject alternative name has {len(names)} email addresses "
                         "or URIs, not one")
    issuer = None
    for n, oid in enumerate(ISSUER_OIDS):
        try:
            raw = cert.extensions.get_extension_for_oid(ObjectIdentifier(oid)).value
        except x509.ExtensionNotFound:
            continue
        value = getattr(raw, "value", b"")
        try:
            issuer = _der_utf8(value) if n == 0 else value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("its OIDC issuer is not UTF-8 text") from None
        break
    if issuer is None:
        raise ValueError("it names no OIDC issuer (extension 1.3.6.1.4.1.57264.1.8 or .1.1)")
    return _printable(names[0], "identity"), _printable(issuer, "OIDC issuer")


def read_certificate(data: bytes) -> tuple[bytes, str, str]:
    """A Fulcio certificate (PEM; the first one): (its PEM, re-encoded, its identity, its OIDC
    issuer). ValueError saying what is wrong with it."""
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ValueError("not a PEM X.509 certificate") from None
    who, issuer = identity(cert)
    return cert.public_bytes(serialization.Encoding.PEM), who, issuer


def load_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    """The PEM certificates in ``pem`` (at most MAX_CHAIN); ValueError naming ``what``."""
    if not pem.strip():
        return []
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ValueError(f"{what} is not PEM certificates") from None
    if len(certs) > MAX_CHAIN:
        raise ValueError(f"{what} holds more than {MAX_CHAIN} certificates")
    return certs


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # InvalidSignature, ValueError, TypeError, unsupported algorithms
        return False
    return True


@dataclass(frozen=True)
class FulcioRoots:
    """Configured Fulcio trust material: the self-signed certificates are the trust anchors;
    the others, configured beside them (cosign's SIGSTORE_ROOT_FILE holds the root and the
    intermediate), are intermediates checked like any other."""

    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]

    @classmethod
    def from_pem(cls, pem: bytes) -> FulcioRoots:
        certs = x509.load_pem_x509_certificates(pem)  # ValueError: not PEM certificates
        anchors = tuple(c for c in certs if _self_signed(c))
        if not anchors:
            raise ValueError("it holds no self-signed root certificate")
        return cls(anchors, tuple(c for c in certs if not _self_signed(c)))


def _code_signing(policy, cert, eku) -> None:
    if eku is None or ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise ValueError("the certificate is not for code signing (no codeSigning extended "
                         "key usage)")


def _any_eku(policy, cert, eku) -> None:
    """A CA may restrict its extended key usages; if it does, code signing must be one."""
    if eku is not None and ExtendedKeyUsageOID.CODE_SIGNING not in eku and \
            ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        raise ValueError("a CA certificate whose extended key usages exclude code signing")


def _clean(text: str, limit: int = 300) -> str:
    """A library message that quotes certificate fields (outside data): one printable line."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


# Chains validated lately: (leaf, untrusted, roots) -> (the chain, when all of it is valid). Path
# validation depends on time only through the certificates' validity (no revocation here), so a
# chain found valid once is valid whenever all of its certificates are: one keyless
# certificate signs every image of a run, and verify mode then validates its chain once.
_VALID: OrderedDict[tuple, tuple[list[x509.Certificate], datetime.datetime,
                                 datetime.datetime]] = OrderedDict()
_VALID_MAX = 64
_VALID_LOCK = threading.Lock()


def chain_problem(leaf: x509.Certificate, roots: FulcioRoots,
                  untrusted: Iterable[x509.Certificate], at: datetime.datetime
                  ) -> tuple[Problem | None, list[x509.Certificate]]:
    """Does ``leaf`` chain to ``roots`` at time ``at``, through the configured intermediates
    and ``untrusted`` ones, under path validation with a code-signing leaf? (None, the chain
    leaf first) or (the Problem, [])."""
    untrusted = tuple(untrusted)
    key = (leaf, untrusted, roots)
    with _VALID_LOCK:
        known = _VALID.get(key)
        if known is not None:
            _VALID.move_to_end(key)
    if known is not None and known[1] <= at <= known[2]:
        return None, known[0]
    problem, chain = _validate(leaf, roots, untrusted, at)
    if problem is None:
        window = (max(c.not_valid_before_utc for c in chain),
                  min(c.not_valid_after_utc for c in chain))
        with _VALID_LOCK:
            _VALID[key] = (chain, *window)
            while len(_VALID) > _VALID_MAX:
                _VALID.popitem(last=False)
    return problem, chain


def _validate(leaf: x509.Certificate, roots: FulcioRoots,
              untrusted: tuple[x509.Certificate, ...], at: datetime.datetime
              ) -> tuple[Problem | None, list[x509.Certificate]]:
    ca_policy = verification.ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, verification.Criticality.AGNOSTIC, _any_eku)
    ee_policy = verification.ExtensionPolicy.webpki_defaults_ee().require_present(
        x509.ExtendedKeyUsage, verification.Criticality.AGNOSTIC, _code_signing)
    verifier = (verification.PolicyBuilder().store(verification.Store(list(roots.anchors)))
                .time(at.astimezone(datetime.UTC))
                .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
                .build_client_verifier())
    try:
        verified = verifier.verify(leaf, [*roots.intermediates, *untrusted])
    except verification.VerificationError as e:
        return Problem(Finding.UNTRUSTED_CERTIFICATE,
                       f"the certificate does not chain to the Fulcio root at "
                       f"{at.strftime('%Y-%m-%dT%H:%M:%SZ')}: {_clean(str(e))}"), []
    return None, list(verified.chain)


def sct_problem(leaf: x509.Certificate, issuer: x509.Certificate, ct_keys: Iterable[bytes]
                ) -> Problem | None:
    """The leaf's embedded SCT (precertificate entry) verifies with one of the CT log keys
    (PEM) and was made for this certificate by this issuer."""
    try:
        scts = leaf.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps).value
    except x509.ExtensionNotFound:
        return Problem(Finding.TRANSPARENCY, "the certificate carries no SCT (certificate "
                       "transparency)")
    except ValueError:
        return Problem(Finding.TRANSPARENCY, "the certificate's SCT list cannot be read")
    logs = {}
    for pem in (one for given in ct_keys for one in pem_keys(given)):  # a file may hold some
        key = load_public(pem)
        logs[hashlib.sha256(spki(key)).digest()] = key
    try:
        tbs = leaf.tbs_precertificate_bytes
    except ValueError:
        return Problem(Finding.TRANSPARENCY, "the certificate's precertificate cannot be made")
    issuer_hash = hashlib.sha256(spki(issuer.public_key())).digest()
    for sct in scts:
        key = logs.get(sct.log_id)
        if key is None or sct.entry_type != PRECERT:
            continue
        when = sct.timestamp.replace(tzinfo=datetime.UTC)
        millis = (when - _EPOCH) // datetime.timedelta(milliseconds=1)
        ext = sct.extension_bytes
        signed = (b"\x00\x00" + millis.to_bytes(8, "big") + b"\x00\x01" + issuer_hash
                  + len(tbs).to_bytes(3, "big") + tbs + len(ext).to_bytes(2, "big") + ext)
        if verifies(key, signed, sct.signature, sct.signature_hash_algorithm):
            return None
    return Problem(Finding.TRANSPARENCY, f"none of the certificate's {len(scts)} SCT(s) "
                   "verifies with the CT log key for this certificate")
