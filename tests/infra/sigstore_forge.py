"""Forging cosign legacy signatures for the hostile corpus (tests/test_cosign_corpus.py): what an
attacker who can write to the registry (and, where said, holds more) puts in a ``sha256-<hex>.sig``
tag. Written from the formats, not from the project's code: the simplesigning payload, a layer
with the ``dev.cosignproject.cosign/signature``, ``dev.sigstore.cosign/certificate``, ``/chain``
and ``/bundle`` annotations, certificates built with ``cryptography``, Rekor entries from the
test bed's log (or a SET made with another key)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import urllib.request
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SCT_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def pem_public(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sign(key, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def payload(reference: str, digest: str) -> bytes:
    """cosign's simplesigning claim for ``digest`` under the name ``reference``."""
    return json.dumps({"critical": {"identity": {"docker-reference": reference},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": "cosign container image signature"},
                       "optional": None}, separators=(",", ":")).encode()


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


# -- Fulcio ---------------------------------------------------------------------------------

def fulcio_leaf(bed, key, email: str) -> list[x509.Certificate]:
    """A genuine Fulcio certificate for ``key`` and ``email``, asked over HTTP as a client does
    (``POST /api/v2/signingCert``); returns leaf, intermediate, root."""
    body = json.dumps({"credentials": {"oidcIdentityToken": bed.token(email=email)},
                       "publicKeyRequest": {"publicKey": {"content": pem_public(key).decode()},
                                            "proofOfPossession": b64(sign(key, email.encode()))}})
    req = urllib.request.Request(f"{bed.env['FULCIO_URL']}/api/v2/signingCert",
                                 data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        answer = json.loads(r.read())
    pems = answer["signedCertificateEmbeddedSct"]["chain"]["certificates"]
    return [x509.load_pem_x509_certificate(p.encode()) for p in pems]


def _sct_extension(scts: list[bytes]) -> x509.UnrecognizedExtension:
    items = b"".join(len(s).to_bytes(2, "big") + s for s in scts)
    listed = len(items).to_bytes(2, "big") + items
    n = len(listed)
    length = bytes([n]) if n < 0x80 else (bytes([0x81, n]) if n < 0x100 else
                                          bytes([0x82, n >> 8, n & 0xFF]))
    return x509.UnrecognizedExtension(SCT_OID, b"\x04" + length + listed)


def sct_value(cert: x509.Certificate) -> bytes:
    """The raw SCT list extension value of ``cert`` (to copy it onto another certificate)."""
    ext = cert.extensions.get_extension_for_oid(SCT_OID).value
    if isinstance(ext, x509.UnrecognizedExtension):
        return ext.value
    return ext.public_bytes()  # cryptography parses it: re-encode (an OCTET STRING's content)


@dataclass
class CertSpec:
    """A certificate to forge. ``sct``: "log" (an SCT signed by ``ct``, the CT log, over this
    certificate: only the other defects matter), "none", "copy" (``copied``: another
    certificate's SCT list), or "other-log" (signed by a key that is not the log's)."""
    public_key: object
    issuer_cert: x509.Certificate | None  # None: self-signed
    issuer_key: object
    email: str | None = None
    oidc_issuer: str = ""
    ca: bool = False
    path_length: int | None = None
    key_cert_sign: bool = False
    eku: bool = True
    not_before: datetime.datetime | None = None
    not_after: datetime.datetime | None = None
    subject: str | None = None
    sct: str = "log"
    copied: bytes = b""
    ct: object = None
    extra: list = field(default_factory=list)


def forge_cert(spec: CertSpec) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.subject)]) \
        if spec.subject else x509.Name([])
    issuer = spec.issuer_cert.subject if spec.issuer_cert is not None else subject
    issuer_public = spec.issuer_cert.public_key() if spec.issuer_cert is not None \
        else spec.public_key
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(spec.public_key).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
         .not_valid_before(spec.not_before or now - datetime.timedelta(minutes=1))
         .not_valid_after(spec.not_after or now + datetime.timedelta(minutes=10)))
    if spec.ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=spec.path_length), True)
    b = b.add_extension(x509.KeyUsage(not spec.ca, False, False, False, False,
                                      spec.key_cert_sign, spec.key_cert_sign, False, False), True)
    if spec.eku:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(spec.public_key), False)  # type: ignore[arg-type]
    b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), False)  # type: ignore[arg-type]
    if spec.email:
        b = b.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(spec.email)]), True)
    if spec.oidc_issuer:
        b = b.add_extension(x509.UnrecognizedExtension(
            ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), spec.oidc_issuer.encode()), False)
        der = spec.oidc_issuer.encode()
        b = b.add_extension(x509.UnrecognizedExtension(
            ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), b"\x0c" + bytes([len(der)]) + der), False)
    for ext in spec.extra:
        b = b.add_extension(ext, False)
    if spec.sct == "copy":
        b = b.add_extension(x509.UnrecognizedExtension(SCT_OID, spec.copied), False)
    elif spec.sct in ("log", "other-log"):
        tbs = b.sign(spec.issuer_key, hashes.SHA256()).tbs_certificate_bytes  # type: ignore[arg-type]
        issuer_spki = issuer_public.public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        ms = int(now.timestamp() * 1000)
        if spec.sct == "log":
            sct = spec.ct.sct(tbs, issuer_spki, ms)  # type: ignore[union-attr]
        else:
            sct = _sct_by(new_key(), tbs, issuer_spki, ms)
        b = b.add_extension(_sct_extension([sct]), False)
    return b.sign(spec.issuer_key, hashes.SHA256())  # type: ignore[arg-type]


def _sct_by(key, tbs: bytes, issuer_spki: bytes, ms: int) -> bytes:
    """An RFC 6962 v1 precert SCT signed by ``key`` (not the CT log's)."""
    log_id = hashlib.sha256(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
    signed = (b"\x00\x00" + ms.to_bytes(8, "big") + b"\x00\x01"
              + hashlib.sha256(issuer_spki).digest() + len(tbs).to_bytes(3, "big") + tbs
              + b"\x00\x00")
    sig = sign(key, signed)
    return (b"\x00" + log_id + ms.to_bytes(8, "big") + b"\x00\x00" + b"\x04\x03"
            + len(sig).to_bytes(2, "big") + sig)


# -- Rekor ----------------------------------------------------------------------------------

def rekor_log(bed, data: bytes, signature: bytes, public_pem: bytes) -> dict:
    """Log a hashedrekord entry for ``signature`` over ``data`` with the key or certificate
    ``public_pem`` in the bed's Rekor (HTTP); returns the entry (body, integratedTime, logID,
    logIndex, verification)."""
    proposed = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(data).hexdigest()}},
        "signature": {"content": b64(signature), "publicKey": {"content": b64(public_pem)}}}}
    req = urllib.request.Request(f"{bed.env['REKOR_URL']}/api/v1/log/entries",
                                 data=json.dumps(proposed).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        [entry] = json.loads(r.read()).values()
    return entry


def bundle(entry: dict, *, body: str | None = None, set_key=None) -> str:
    """The ``dev.sigstore.cosign/bundle`` annotation for ``entry``: its SET as the log signed
    it, or (``set_key``) one made with another key; ``body`` puts another body under it."""
    pay = {"body": body or entry["body"], "integratedTime": entry["integratedTime"],
           "logID": entry["logID"], "logIndex": entry["logIndex"]}
    setv = entry["verification"]["signedEntryTimestamp"] if set_key is None \
        else b64(sign(set_key, canonical(pay)))
    return json.dumps({"SignedEntryTimestamp": setv, "Payload": pay})


# -- the registry ---------------------------------------------------------------------------

def _put_blob(host: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/uploads/", method="POST",
                                 data=b"")
    with urllib.request.urlopen(req, timeout=10) as r:
        location = r.headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    req = urllib.request.Request(f"{location}{sep}digest={digest}", method="PUT", data=data,
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=10):
        pass
    return digest


@dataclass
class Layer:
    payload: bytes
    signature: bytes
    certificate: str | None = None
    chain: str | None = None
    bundle: str | None = None

    def annotations(self) -> dict:
        out = {"dev.cosignproject.cosign/signature": b64(self.signature)}
        for name, value in (("certificate", self.certificate), ("chain", self.chain),
                            ("bundle", self.bundle)):
            if value is not None:
                out[f"dev.sigstore.cosign/{name}"] = value
        return out


def attach(host: str, repo: str, digest: str, layers: list[Layer]) -> None:
    """Write the ``sha256-<hex>.sig`` manifest of ``digest`` holding ``layers``."""
    descs = [{"mediaType": SIMPLESIGNING, "size": len(lay.payload),
              "digest": _put_blob(host, repo, lay.payload), "annotations": lay.annotations()}
             for lay in layers]
    config = json.dumps({"architecture": "", "os": "", "config": {}, "rootfs": {
        "type": "layers", "diff_ids": [d["digest"] for d in descs]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
        "digest": _put_blob(host, repo, config)}, "layers": descs}).encode()
    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/sha256-{digest.split(':')[1]}.sig", method="PUT",
        data=manifest, headers={"Content-Type": OCI_MANIFEST})
    with urllib.request.urlopen(req, timeout=10):
        pass
