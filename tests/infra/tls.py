"""Throwaway TLS material for tests: a CA, a broker certificate for localhost and 127.0.0.1, client
certificates (pubtools-sign's single PEM with key + certificate, and separate files), and a second,
unknown CA whose broker certificate clients must refuse."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Tls:
    ca_cert: Path  # CA bundle clients trust
    server_cert: Path
    server_key: Path
    client_pem: Path  # key + certificate in one file (pubtools-sign's messaging_cert_key)
    client_cert: Path
    client_key: Path
    client_cn: str
    rogue_ca_cert: Path  # a CA nobody trusts
    rogue_server_cert: Path  # localhost certificate signed by the rogue CA
    rogue_server_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject_cn: str, key, issuer_cert, issuer_key, *, ca: bool = False,
          server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert is not None else name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256())


def make_tls(folder: Path, client_cn: str = "signing-client") -> Tls:
    folder.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM

    def write(name: str, data: bytes) -> Path:
        path = folder / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    ca_key = _key()
    ca = _cert("Test CA", ca_key, None, None, ca=True)
    server_key = _key()
    server = _cert("localhost", server_key, ca, ca_key, server=True)
    client_key = _key()
    client = _cert(client_cn, client_key, ca, ca_key)
    rogue_key = _key()
    rogue = _cert("Rogue CA", rogue_key, None, None, ca=True)
    rogue_server_key = _key()
    rogue_server = _cert("localhost", rogue_server_key, rogue, rogue_key, server=True)
    return Tls(
        ca_cert=write("ca.crt", ca.public_bytes(pem)),
        server_cert=write("server.crt", server.public_bytes(pem)),
        server_key=write("server.key", _pem_key(server_key)),
        client_pem=write("client.pem", _pem_key(client_key) + client.public_bytes(pem)),
        client_cert=write("client.crt", client.public_bytes(pem)),
        client_key=write("client.key", _pem_key(client_key)),
        client_cn=client_cn,
        rogue_ca_cert=write("rogue-ca.crt", rogue.public_bytes(pem)),
        rogue_server_cert=write("rogue-server.crt", rogue_server.public_bytes(pem)),
        rogue_server_key=write("rogue-server.key", _pem_key(rogue_server_key)),
    )
