"""OpenPGP packets built by hand (RFC 4880 / RFC 9580 version 4), with ``cryptography`` for the
RSA keys and raw RSA for the signatures, so that a test can write exactly the bytes it means to
forge: a critical subpacket nobody knows, a signature hashed with MD5, a self-signature made by
another key, a binding signature that does not verify, a signature with no creation time.

Nothing here checks anything: it is the attacker's toolbox. ``Key`` holds one RSA key and writes
its public key packet; ``sig`` makes a signature packet over whatever a signature of that type
hashes; ``cert``, ``message`` put packets together.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.hazmat.primitives.asymmetric import rsa

# signature types
BINARY, POSITIVE_CERT, SUBKEY_BINDING, PRIMARY_BINDING = 0x00, 0x13, 0x18, 0x19
DIRECT_KEY, KEY_REVOCATION = 0x1F, 0x20
# hash algorithms: id -> (hashlib name, the DER DigestInfo prefix of PKCS#1 v1.5)
HASHES = {
    1: ("md5", bytes.fromhex("3020300c06082a864886f70d020505000410")),
    2: ("sha1", bytes.fromhex("3021300906052b0e03021a05000414")),
    8: ("sha256", bytes.fromhex("3031300d060960864801650304020105000420")),
    10: ("sha512", bytes.fromhex("3051300d060960864801650304020305000440")),
}
SHA256, SHA1, MD5 = 8, 2, 1
# key flags
CERTIFY, SIGN = 0x01, 0x02
RSA = 1


def packet(tag: int, body: bytes) -> bytes:
    """A new-format packet (five-octet length: any size, no partial lengths)."""
    return bytes([0xC0 | tag, 0xFF]) + struct.pack(">I", len(body)) + body


def mpi(value: int) -> bytes:
    return struct.pack(">H", value.bit_length()) + value.to_bytes((value.bit_length() + 7) // 8,
                                                                  "big")


def subpacket(kind: int, value: bytes, critical: bool = False) -> bytes:
    body = bytes([kind | (0x80 if critical else 0)]) + value
    assert len(body) < 192
    return bytes([len(body)]) + body


def created(t: int) -> bytes:
    return subpacket(2, struct.pack(">I", t))


def sig_expires(seconds: int) -> bytes:
    return subpacket(3, struct.pack(">I", seconds))


def key_expires(seconds: int) -> bytes:
    return subpacket(9, struct.pack(">I", seconds), critical=True)


def key_flags(flags: int) -> bytes:
    return subpacket(27, bytes([flags]), critical=True)


def notation(name: str, value: str, critical: bool) -> bytes:
    n, v = name.encode(), value.encode()
    return subpacket(20, b"\x80\0\0\0" + struct.pack(">HH", len(n), len(v)) + n + v, critical)


def issuer(key: Key) -> bytes:
    return subpacket(33, b"\x04" + key.fpr_bytes) + subpacket(16, key.fpr_bytes[-8:])


def embedded(signature_packet: bytes) -> bytes:
    """An embedded signature subpacket (the primary key binding a signing subkey makes)."""
    body = signature_packet[6:]  # packet() writes 6 header octets
    value = bytes([32]) + body
    if len(value) < 192:
        return bytes([len(value)]) + value
    return b"\xff" + struct.pack(">I", len(value)) + value


@dataclass
class Key:
    """An RSA 2048 key: the secret half signs, ``body`` is its version 4 public key packet."""

    created: int
    secret: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(65537, 2048))

    @cached_property
    def body(self) -> bytes:
        pub = self.secret.public_key().public_numbers()
        return b"\x04" + struct.pack(">I", self.created) + bytes([RSA]) + mpi(pub.n) + mpi(pub.e)

    @property
    def fpr_bytes(self) -> bytes:
        return hashlib.sha1(self.framed).digest()

    @property
    def fingerprint(self) -> str:
        return self.fpr_bytes.hex().upper()

    @property
    def framed(self) -> bytes:
        """The key as a signature over it hashes it: 0x99, two-octet length, the packet body."""
        return b"\x99" + struct.pack(">H", len(self.body)) + self.body

    def public(self, tag: int = 6) -> bytes:
        return packet(tag, self.body)

    def rsa_sign(self, digest: bytes, hash_algo: int) -> int:
        """PKCS#1 v1.5 by hand: any hash, even one a library would refuse to sign with."""
        n = self.secret.private_numbers().public_numbers.n
        d = self.secret.private_numbers().d
        k = (n.bit_length() + 7) // 8
        t = HASHES[hash_algo][1] + digest
        em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
        return pow(int.from_bytes(em, "big"), d, n)


def uid_framed(uid: str) -> bytes:
    data = uid.encode()
    return b"\xb4" + struct.pack(">I", len(data)) + data


def sig(by: Key, sig_type: int, signed: bytes, hashed: bytes, *, hash_algo: int = SHA256,
        unhashed: bytes | None = None, corrupt: bool = False,
        issuer_of: Key | None = None) -> bytes:
    """A version 4 signature packet of ``sig_type`` made by ``by`` over ``signed`` (what that
    type hashes before the trailer: the data, or the framed key and user id), with the hashed
    subpackets ``hashed`` and (default) the issuer subpackets of ``issuer_of`` (default ``by``)
    unhashed. ``corrupt`` flips a bit of the signature value: it no longer verifies."""
    head = bytes([4, sig_type, RSA, hash_algo]) + struct.pack(">H", len(hashed)) + hashed
    digest = hashlib.new(HASHES[hash_algo][0],
                         signed + head + b"\x04\xff" + struct.pack(">I", len(head))).digest()
    value = by.rsa_sign(digest, hash_algo)
    if corrupt:
        value ^= 1 << 100
    if unhashed is None:
        unhashed = issuer(issuer_of or by)
    return packet(2, head + struct.pack(">H", len(unhashed)) + unhashed + digest[:2] + mpi(value))


def self_sig(key: Key, uid: str, t: int, *extra: bytes, by: Key | None = None,
             corrupt: bool = False) -> bytes:
    """A positive certification of ``uid`` on ``key`` (what gpg writes as a self-signature):
    created at ``t``, with ``extra`` hashed subpackets (default: key flags certify+sign). ``by``
    another key makes it a forgery that claims to be by ``key`` (its issuer is ``key``)."""
    hashed = created(t) + b"".join(extra or (key_flags(CERTIFY | SIGN),))
    return sig(by or key, POSITIVE_CERT, key.framed + uid_framed(uid), hashed,
               unhashed=issuer(key), corrupt=corrupt)


def user_id(uid: str) -> bytes:
    return packet(13, uid.encode())


def subkey_binding(primary: Key, sub: Key, t: int, *, corrupt: bool = False,
                   back_sig: bool = True) -> bytes:
    """The binding signature of a signing subkey, with the subkey's primary key binding
    (cross-certification) embedded, as a signing subkey needs."""
    signed = primary.framed + sub.framed
    hashed = created(t) + key_flags(SIGN)
    unhashed = issuer(primary)
    if back_sig:
        unhashed += embedded(sig(sub, PRIMARY_BINDING, signed, created(t)))
    return sig(primary, SUBKEY_BINDING, signed, hashed, unhashed=unhashed, corrupt=corrupt)


def revocation(key: Key, t: int, *, by: Key | None = None, corrupt: bool = False) -> bytes:
    return sig(by or key, KEY_REVOCATION, key.framed, created(t) + subpacket(29, b"\x02"),
               unhashed=issuer(key), corrupt=corrupt)


def cert(key: Key, uid: str | None, t: int, *after_uid: bytes, before_uid: bytes = b"",
         subkeys: bytes = b"") -> bytes:
    """A transferable public key: the key packet, ``before_uid`` (revocations, direct key
    signatures), the user id with its self-signatures (``after_uid``, default one good
    self-signature made at ``t``), then ``subkeys`` (packets)."""
    out = key.public() + before_uid
    if uid is not None:
        out += user_id(uid) + b"".join(after_uid or (self_sig(key, uid, t),))
    return out + subkeys


def literal(data: bytes, t: int) -> bytes:
    return packet(11, b"b\x00" + struct.pack(">I", t) + data)


def one_pass(by: Key, hash_algo: int = SHA256, last: bool = True) -> bytes:
    return packet(4, bytes([3, BINARY, hash_algo, RSA]) + by.fpr_bytes[-8:] +
                  bytes([1 if last else 0]))


def data_sig(by: Key, data: bytes, t: int | None, *extra: bytes, hash_algo: int = SHA256,
             corrupt: bool = False) -> bytes:
    """A binary document signature over ``data`` by ``by``, created at ``t`` (None: without a
    creation time subpacket), with ``extra`` hashed subpackets and the issuer hashed too (as
    gpg writes it)."""
    hashed = (created(t) if t is not None else b"") + subpacket(33, b"\x04" + by.fpr_bytes) \
        + b"".join(extra)
    return sig(by, BINARY, data, hashed, hash_algo=hash_algo,
               unhashed=subpacket(16, by.fpr_bytes[-8:]), corrupt=corrupt)


def message(by: Key, data: bytes, t: int | None, *extra: bytes, hash_algo: int = SHA256) -> bytes:
    """A signed message as ``gpg --sign`` writes it (uncompressed): one-pass signature,
    literal data, signature."""
    return (one_pass(by, hash_algo) + literal(data, t or 0)
            + data_sig(by, data, t, *extra, hash_algo=hash_algo))


def two_signatures(first: Key, second: Key, data: bytes, t: int) -> bytes:
    """A message signed twice, as ``gpg -u A -u B --sign`` nests it: the one-pass packets in
    order, the literal data, then the signatures in reverse."""
    return (one_pass(first, last=False) + one_pass(second) + literal(data, t)
            + data_sig(second, data, t) + data_sig(first, data, t))


def secret_key(key: Key, uid: str, t: int) -> bytes:
    """``key`` as ``gpg --export-secret-keys`` writes it unprotected (a secret key packet: the
    public part, S2K usage 0, d, p, q, u = p^-1 mod q, and their checksum), its user id and a
    self-signature: what a gpg home imports to sign with a forged key."""
    numbers = key.secret.private_numbers()
    p, q = sorted((numbers.p, numbers.q))
    secret = mpi(numbers.d) + mpi(p) + mpi(q) + mpi(pow(p, -1, q))
    body = key.body + b"\x00" + secret + struct.pack(">H", sum(secret) % 65536)
    return packet(5, body) + user_id(uid) + self_sig(key, uid, t)
