"""OpenPGP packets as containers-signature(5) readers take them apart: signed messages,
detached and clear-signed signatures, ASCII armor. No key is needed here and nothing is
verified (see ``keys`` for that); every length is checked and decompression is capped."""

from __future__ import annotations

import base64
import binascii
import bz2
import hashlib
import zlib
from dataclasses import dataclass

MAX_CONTENT = 1 << 20  # decompressed bytes at most: a claim is a few hundred
MAX_PACKETS = 3  # [one-pass signature,] literal data, signature
MAX_CHUNKS = 1024  # partial lengths in one packet (gpg writes 8 KiB chunks)

# packet tags
SIGNATURE, ONE_PASS, COMPRESSED, LITERAL = 2, 4, 8, 11
TAG_NAMES = {1: "public-key encrypted session key", SIGNATURE: "signature",
             3: "symmetric-key encrypted session key", ONE_PASS: "one-pass signature",
             5: "secret key", 6: "public key", 7: "secret subkey", COMPRESSED: "compressed data",
             9: "symmetrically encrypted data", 10: "marker", LITERAL: "literal data", 12: "trust",
             13: "user id", 14: "public subkey", 17: "user attribute",
             18: "encrypted and integrity protected data", 20: "AEAD encrypted data",
             21: "padding"}
PARTIAL_OK = {COMPRESSED, 9, LITERAL, 18, 20}  # only data packets may have partial lengths

# signature types: a signature over a document (binary, or text with canonical line endings)
BINARY_DOCUMENT, TEXT_DOCUMENT = 0x00, 0x01

# public-key algorithms that sign: their signature material as a number of MPIs, or of octets
_MPIS = {1: 1, 3: 1, 17: 2, 19: 2, 22: 2}  # RSA, RSA sign-only, DSA, ECDSA, EdDSA (legacy)
_OCTETS = {27: 64, 28: 114}  # Ed25519, Ed448
_HASHES = {1: "md5", 2: "sha1", 3: "ripemd160", 8: "sha256", 9: "sha384", 10: "sha512",
           11: "sha224", 12: "sha3_256", 14: "sha3_512"}
_COMPRESSION = {0: "uncompressed", 1: "ZIP", 2: "ZLIB", 3: "BZip2"}

ARMOR = b"-----BEGIN PGP "
CLEARTEXT_BEGIN = b"-----BEGIN PGP SIGNED MESSAGE-----"
SIGNATURE_BEGIN = b"-----BEGIN PGP SIGNATURE-----"
SIGNATURE_END = b"-----END PGP SIGNATURE-----"


class OpenPGPError(ValueError):
    """The data is not the OpenPGP structure expected; the message says why, in words."""


@dataclass(frozen=True, slots=True)
class Signature:
    """What a signature packet says about itself (nothing here is verified)."""

    version: int
    type: int  # BINARY_DOCUMENT, TEXT_DOCUMENT, ...
    pk_algo: int
    hash_algo: int
    issuers: tuple[str, ...]  # upper-case hex key ids (16) and fingerprints (40, 64) it names
    hash_prefix: bytes  # the first two octets of the hash it signs
    hashed: bytes  # the part of the packet the hash covers (with the trailer, see _digest)
    salt: bytes = b""  # version 6
    material: bytes = b""  # the signature proper (MPIs, or octets), for verify()
    created: int | None = None  # signature creation time (hashed subpacket 2)
    expires: int | None = None  # seconds after creation it expires (hashed subpacket 3)
    key_expires: int | None = None  # a self-signature: the key's lifetime (subpacket 9)
    key_flags: int | None = None  # a self-signature: what the key may do (subpacket 27)
    critical: tuple[int, ...] = ()  # kinds of the hashed subpackets marked critical
    critical_notations: tuple[str, ...] = ()  # names of the notations marked critical


@dataclass(frozen=True, slots=True)
class SignedMessage:
    content: bytes  # the literal data: what was signed
    signature: Signature
    compression: str | None  # the compressed-data packet's algorithm, or None without one
    one_pass: bool  # a one-pass signature packet came first


def is_armored(data: bytes) -> bool:
    return data.lstrip()[:len(ARMOR)] == ARMOR


def signed_message(data: bytes) -> SignedMessage:
    """The binary signed message in ``data``; OpenPGPError says why it is not one."""
    if not data:
        raise OpenPGPError("no data")
    if is_armored(data):
        first = "".join(chr(c) if 32 <= c < 127 else "?"
                        for c in data.lstrip().split(b"\n", 1)[0].strip()[:60])
        raise OpenPGPError(f"ASCII armor ({first}), not binary OpenPGP data")
    packets = _packets(data)
    compression = None
    if packets[0][0] == COMPRESSED:
        if len(packets) > 1:
            raise OpenPGPError(f"packets after the compressed data: {_names(packets[1:])}")
        compression, inner = _decompress(packets[0][1])
        packets = _packets(inner, "in the compressed data")
    tags = [tag for tag, _ in packets]
    one_pass = tags[:1] == [ONE_PASS]
    if tags == [LITERAL, SIGNATURE]:
        raise OpenPGPError("literal data then a signature, without the one-pass signature "
                           "packet before them: not an OpenPGP message (RFC 9580 10.3); gpg, "
                           "podman and Sequoia refuse it")
    if tags[one_pass:] != [LITERAL, SIGNATURE]:
        if tags == [SIGNATURE]:
            raise OpenPGPError("a detached signature (a signature packet alone), not a signed "
                               "message")
        raise OpenPGPError(f"packets {_names(packets)}"
                           f"{' in the compressed data' if compression else ''}: a signed "
                           "message is [one-pass signature,] literal data, signature")
    content = _literal(packets[-2][1])
    signature = _signature(packets[-1][1])
    if signature.type not in (BINARY_DOCUMENT, TEXT_DOCUMENT):
        raise OpenPGPError(f"signature type 0x{signature.type:02x} is not a signature over a "
                           "document")
    if one_pass:
        _match_one_pass(packets[0][1], signature)
    _check_prefix(signature, content)
    return SignedMessage(content, signature, compression, one_pass)


def detached_signature(data: bytes, content: bytes) -> Signature:
    """The one detached binary signature in ``data``, its hash prefix checked against
    ``content`` (the signed bytes); OpenPGPError says why it is not that."""
    if not data:
        raise OpenPGPError("no data")
    if is_armored(data):
        raise OpenPGPError("ASCII armor, not a binary detached signature")
    packets = _packets(data)
    if [tag for tag, _ in packets] != [SIGNATURE]:
        raise OpenPGPError(f"packets {_names(packets)}: a detached signature is one signature "
                           "packet")
    signature = _signature(packets[0][1])
    if signature.type not in (BINARY_DOCUMENT, TEXT_DOCUMENT):
        raise OpenPGPError(f"signature type 0x{signature.type:02x} is not a signature over a "
                           "document")
    _check_prefix(signature, content)
    return signature


def clearsigned(data: bytes) -> tuple[bytes, Signature]:
    """(the signed text, as it was signed: trailing white space off each line, lines joined by
    CRLF; the signature) of a clear-signed text; OpenPGPError says why it is not one."""
    lines = data.split(b"\n")
    if lines[0].rstrip() != CLEARTEXT_BEGIN:
        raise OpenPGPError("not a clear-signed text: it does not start with "
                           "-----BEGIN PGP SIGNED MESSAGE-----")
    n = _armor_headers(lines, 1)
    text: list[bytes] = []
    while True:
        if n >= len(lines):
            raise OpenPGPError("a clear-signed text without -----BEGIN PGP SIGNATURE-----")
        line = lines[n].rstrip(b"\r")
        n += 1
        if line.rstrip() == SIGNATURE_BEGIN:
            break
        text.append(line[2:] if line.startswith(b"- ") else line)
    n = _armor_headers(lines, n)
    body: list[bytes] = []
    checksum = None
    for at in range(n, len(lines)):
        line = lines[at].strip()
        if line == SIGNATURE_END:
            break
        if not line:
            continue
        if line.startswith(b"="):
            checksum = line[1:]
        elif checksum is not None:
            raise OpenPGPError("armor: data after the checksum")
        else:
            body.append(line)
    else:
        raise OpenPGPError("armor: no -----END PGP SIGNATURE-----")
    if any(line.strip() for line in lines[at + 1:]):
        raise OpenPGPError("data after -----END PGP SIGNATURE-----")
    try:
        decoded = base64.b64decode(b"".join(body), validate=True)
        crc = base64.b64decode(checksum, validate=True) if checksum is not None else None
    except (binascii.Error, ValueError):
        raise OpenPGPError("armor: not base64") from None
    if crc is not None and crc != _crc24(decoded):
        raise OpenPGPError("armor: the checksum does not match")
    packets = _packets(decoded, "in the armored signature")
    if [tag for tag, _ in packets] != [SIGNATURE]:
        raise OpenPGPError(f"the armored signature holds {_names(packets)}, not one signature")
    signature = _signature(packets[0][1])
    if signature.type != TEXT_DOCUMENT:
        raise OpenPGPError(f"signature type 0x{signature.type:02x} is not a text signature")
    signed = b"\r\n".join(line.rstrip(b" \t\r") for line in text)
    _check_prefix(signature, signed, canonical=True)
    return signed, signature


def issuer_problem(signature: Signature, key: str) -> str | None:
    """Why ``signature`` does not say it was made by ``key`` (None: it does): every key id and
    fingerprint it names must end with the key's last 8 hex digits, the ``sig_key_id`` the
    signing server was asked for (all a server is told, so all that can be asked of it). A
    sanity check, not a proof: these subpackets are written by whoever made the data, and a
    short key id is easy to collide; only the key's own check (verify_keyring) proves it."""
    if not signature.issuers:
        return "the signature names no issuer key"
    want = key.strip().upper()[-8:]
    if len(want) < 8:
        return f"the requested key {key} is shorter than a key id: no issuer matches it"
    wrong = [issuer for issuer in signature.issuers if not issuer.endswith(want)]
    if wrong:
        return f"it says it was signed by {max(wrong, key=len)}, not by the requested key {key}"
    return None


# -- packets ------------------------------------------------------------------------------------

def _names(packets: list[tuple[int, bytes]]) -> str:
    return ", ".join(TAG_NAMES.get(tag, f"tag {tag}") for tag, _ in packets)


def _packets(data: bytes, where: str = "", limit: int = MAX_PACKETS) -> list[tuple[int, bytes]]:
    """(tag, body) of each packet in ``data``, at most ``limit`` of them."""
    where = f" {where}" if where else ""
    packets: list[tuple[int, bytes]] = []
    i, size = 0, len(data)
    if not size:
        raise OpenPGPError(f"no packets{where}")
    while i < size:
        if len(packets) == limit:
            raise OpenPGPError(f"more than {limit} packets{where}"
                               f"{': not a signed message' if limit == MAX_PACKETS else ''}")
        at = i
        ctb = data[i]
        i += 1
        if not ctb & 0x80:
            raise OpenPGPError(f"not OpenPGP data{where}: byte {at} (0x{ctb:02x}) does not "
                               "start a packet")
        if ctb & 0x40:  # new format
            tag = ctb & 0x3F
            chunks = []
            while True:
                length, i, partial = _new_length(data, i, where)
                if partial and tag not in PARTIAL_OK:
                    raise OpenPGPError(f"a {TAG_NAMES.get(tag, f'tag {tag}')} packet{where} "
                                       "with a partial length")
                chunks.append(_take(data, i, length, where))
                i += length
                if not partial:
                    break
                if len(chunks) == MAX_CHUNKS:
                    raise OpenPGPError(f"a packet{where} in more than {MAX_CHUNKS} parts")
            body = b"".join(chunks)
        else:  # old format
            tag, kind = (ctb >> 2) & 0x0F, ctb & 0x03
            if kind == 3:  # indeterminate: to the end of the data (gpg's compressed packets)
                length = size - i
            else:
                width = 1 << kind
                if i + width > size:
                    raise OpenPGPError(f"truncated packet header{where} at byte {at}")
                length = int.from_bytes(data[i:i + width], "big")
                i += width
            body = _take(data, i, length, where)
            i += length
        if tag == 0:
            raise OpenPGPError(f"packet tag 0 (reserved){where} at byte {at}")
        packets.append((tag, body))
    return packets


def _new_length(data: bytes, i: int, where: str) -> tuple[int, int, bool]:
    """(body length, index after the length octets, whether it is a partial length)."""
    if i >= len(data):
        raise OpenPGPError(f"truncated packet header{where}")
    first = data[i]
    if first < 192:
        return first, i + 1, False
    if first < 224:
        if i + 2 > len(data):
            raise OpenPGPError(f"truncated packet header{where}")
        return ((first - 192) << 8) + data[i + 1] + 192, i + 2, False
    if first < 255:
        return 1 << (first & 0x1F), i + 1, True
    if i + 5 > len(data):
        raise OpenPGPError(f"truncated packet header{where}")
    return int.from_bytes(data[i + 1:i + 5], "big"), i + 5, False


def _take(data: bytes, i: int, length: int, where: str) -> bytes:
    if i + length > len(data):
        raise OpenPGPError(f"a packet{where} says it has {length} bytes, but only "
                           f"{len(data) - i} follow")
    return data[i:i + length]


def _decompress(body: bytes) -> tuple[str, bytes]:
    if not body:
        raise OpenPGPError("an empty compressed-data packet")
    algo, payload = body[0], body[1:]
    name = _COMPRESSION.get(algo)
    if name is None:
        raise OpenPGPError(f"compression algorithm {algo} is not one OpenPGP defines")
    if algo == 0:
        return name, payload
    try:
        if algo == 3:
            d3 = bz2.BZ2Decompressor()
            out = d3.decompress(payload, MAX_CONTENT + 1)
            eof, rest = d3.eof, d3.unused_data
        else:  # ZIP is raw deflate, ZLIB has a header and a checksum
            d = zlib.decompressobj(-15 if algo == 1 else 15)
            out = d.decompress(payload, MAX_CONTENT + 1)
            eof, rest = d.eof, d.unused_data
    except (zlib.error, OSError, EOFError, ValueError) as e:
        raise OpenPGPError(f"{name} compressed data that does not decompress ({e})") from None
    if len(out) > MAX_CONTENT:
        raise OpenPGPError(f"the compressed data holds more than {MAX_CONTENT} bytes")
    if not eof:
        raise OpenPGPError(f"truncated {name} compressed data")
    if rest:
        raise OpenPGPError(f"{len(rest)} bytes after the end of the {name} compressed data")
    return name, out


def _literal(body: bytes) -> bytes:
    if len(body) < 6 or len(body) < 6 + body[1]:
        raise OpenPGPError("a truncated literal data packet")
    return body[6 + body[1]:]  # format, file name length, file name, date, data


def _signature(body: bytes) -> Signature:
    if not body:
        raise OpenPGPError("an empty signature packet")
    version = body[0]
    if version in (2, 3):
        if len(body) < 19 or body[1] != 5:
            raise OpenPGPError(f"a malformed version {version} signature packet")
        sig_type, key_id, pk_algo, hash_algo = body[2], body[7:15], body[15], body[16]
        _material(body[19:], pk_algo)
        return Signature(version, sig_type, pk_algo, hash_algo, (key_id.hex().upper(),),
                         body[17:19], body[2:7], material=body[19:],
                         created=int.from_bytes(body[3:7], "big"))
    if version not in (4, 6):
        raise OpenPGPError(f"signature packet version {version} is not supported")
    width = 2 if version == 4 else 4
    if len(body) < 4 + width:
        raise OpenPGPError("a truncated signature packet")
    sig_type, pk_algo, hash_algo = body[1], body[2], body[3]
    i = 4
    issuers: list[str] = []
    times: dict[int, int] = {}
    critical: list[int] = []
    notations: list[str] = []
    for area in ("hashed", "unhashed"):
        if i + width > len(body):
            raise OpenPGPError("a truncated signature packet")
        length = int.from_bytes(body[i:i + width], "big")
        i += width
        if i + length > len(body):
            raise OpenPGPError(f"the signature's {area} subpackets say they have {length} "
                               f"bytes, but only {len(body) - i} follow")
        if area == "hashed":
            _subpackets(body[i:i + length], issuers, times, critical, notations)
        else:
            _subpackets(body[i:i + length], issuers)
        i += length
        if area == "hashed":
            hashed_end = i
    if i + 2 > len(body):
        raise OpenPGPError("a truncated signature packet")
    prefix = body[i:i + 2]
    i += 2
    salt = b""
    if version == 6:
        if i >= len(body) or i + 1 + body[i] > len(body):
            raise OpenPGPError("a truncated signature packet")
        salt, i = body[i + 1:i + 1 + body[i]], i + 1 + body[i]
    _material(body[i:], pk_algo)
    return Signature(version, sig_type, pk_algo, hash_algo, tuple(issuers), prefix,
                     body[:hashed_end], salt, body[i:], times.get(2), times.get(3),
                     times.get(9), times.get(27), tuple(critical), tuple(notations))


def _subpackets(data: bytes, issuers: list[str], times: dict[int, int] | None = None,
                critical: list[int] | None = None, notations: list[str] | None = None) -> None:
    """Collects the issuers (both areas) and, of the hashed area (``times``), the time
    subpackets by kind: 2 signature creation, 3 signature expiration, 9 key expiration, and
    27 key flags (its first octet); the kinds marked critical, the critical notations' names
    (what explains a refusal: Sequoia's verdict does not say why)."""
    i = 0
    while i < len(data):
        first = data[i]
        if first < 192:
            length, i = first, i + 1
        elif first < 255:
            if i + 2 > len(data):
                raise OpenPGPError("a truncated signature subpacket")
            length, i = ((first - 192) << 8) + data[i + 1] + 192, i + 2
        else:
            if i + 5 > len(data):
                raise OpenPGPError("a truncated signature subpacket")
            length, i = int.from_bytes(data[i + 1:i + 5], "big"), i + 5
        if length == 0 or i + length > len(data):
            raise OpenPGPError(f"a signature subpacket says it has {length} bytes, but "
                               f"{len(data) - i} follow")
        kind, value = data[i] & 0x7F, data[i + 1:i + length]
        if critical is not None and data[i] & 0x80:
            critical.append(kind)
            if kind == 20 and notations is not None and len(value) >= 8:
                size = int.from_bytes(value[4:6], "big")
                notations.append(value[8:8 + size].decode("utf-8", "replace")[:64])
        i += length
        if kind == 16:  # issuer key id
            if len(value) != 8:
                raise OpenPGPError("an issuer key id subpacket that is not 8 bytes")
            issuers.append(value.hex().upper())
        elif kind == 33:  # issuer fingerprint: version, fingerprint
            if len(value) not in (21, 33) or value[0] not in (4, 5, 6):
                raise OpenPGPError("a malformed issuer fingerprint subpacket")
            issuers.append(value[1:].hex().upper())
        elif times is not None and kind in (2, 3, 9) and len(value) == 4:
            times[kind] = int.from_bytes(value, "big")
        elif times is not None and kind == 27 and value:
            times[kind] = value[0]


def _material(data: bytes, pk_algo: int) -> None:
    """The signature proper: well formed for its algorithm, and nothing after it."""
    if pk_algo in _OCTETS:
        if len(data) != _OCTETS[pk_algo]:
            raise OpenPGPError(f"the signature of algorithm {pk_algo} has {len(data)} bytes, "
                               f"not {_OCTETS[pk_algo]}")
        return
    if pk_algo not in _MPIS:
        raise OpenPGPError(f"public-key algorithm {pk_algo} is not one OpenPGP signs with")
    i = 0
    for _ in range(_MPIS[pk_algo]):
        if i + 2 > len(data):
            raise OpenPGPError("the signature's numbers are truncated")
        bits = int.from_bytes(data[i:i + 2], "big")
        i += 2 + (bits + 7) // 8
        if bits == 0 or i > len(data):
            raise OpenPGPError("the signature's numbers are truncated")
    if i != len(data):
        raise OpenPGPError(f"{len(data) - i} bytes after the signature's numbers")


def _match_one_pass(body: bytes, signature: Signature) -> None:
    """The one-pass signature packet announces the signature that follows."""
    if len(body) == 13 and body[0] == 3:
        sig_type, hash_algo, pk_algo, key_id = body[1], body[2], body[3], body[4:12].hex().upper()
    elif len(body) >= 5 and body[0] == 6 and len(body) == 4 + 1 + body[4] + 32 + 1:
        sig_type, hash_algo, pk_algo = body[1], body[2], body[3]
        key_id = body[5 + body[4]:5 + body[4] + 32].hex().upper()
    else:
        raise OpenPGPError("a malformed one-pass signature packet")
    if (sig_type, hash_algo, pk_algo) != (signature.type, signature.hash_algo,
                                          signature.pk_algo):
        raise OpenPGPError("the one-pass signature packet does not announce the signature "
                           "that follows")
    if signature.issuers and not any(i.endswith(key_id) or key_id.endswith(i)
                                     for i in signature.issuers):
        raise OpenPGPError(f"the one-pass signature packet names key {key_id}, the signature "
                           f"{signature.issuers[0]}")


def _hash_constructors() -> dict[int, object]:
    """Each hash algorithm's constructor, looked up once (None: one hashlib lacks)."""
    found: dict[int, object] = {}
    for algo, name in _HASHES.items():
        if name in hashlib.algorithms_available:
            found[algo] = getattr(hashlib, name, None) or (lambda n=name: hashlib.new(n))
    return found


_HASH_NEW = _hash_constructors()


def _digest(signature: Signature, content: bytes, canonical: bool = False) -> bytes | None:
    """The hash a signature signs over ``content`` (None: an algorithm hashlib lacks)."""
    new = _HASH_NEW.get(signature.hash_algo)
    if new is None:
        return None
    h = new()  # type: ignore[operator]
    if signature.salt:
        h.update(signature.salt)
    if signature.type == TEXT_DOCUMENT and not canonical:
        content = content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    h.update(content)
    h.update(signature.hashed)
    if signature.version >= 4:
        h.update(bytes((signature.version, 0xFF)) + len(signature.hashed).to_bytes(4, "big"))
    return h.digest()


def _check_prefix(signature: Signature, content: bytes, canonical: bool = False) -> None:
    digest = _digest(signature, content, canonical)
    if digest is not None and digest[:2] != signature.hash_prefix:
        raise OpenPGPError("the signature was not made over this content (its hash prefix "
                           "does not match)")


def _armor_headers(lines: list[bytes], n: int) -> int:
    """The index after the armor headers ("Key: value" lines) and the empty line ending them."""
    while n < len(lines):
        line = lines[n].rstrip(b"\r")
        n += 1
        if not line.strip():
            return n
        if b": " not in line:
            raise OpenPGPError("armor: a header line that is not 'Key: value'")
    raise OpenPGPError("armor: no empty line after the headers")


def _crc24(data: bytes) -> bytes:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return (crc & 0xFFFFFF).to_bytes(3, "big")


def dearmor(data: bytes) -> bytes:
    """The binary data of each ASCII armor block in ``data`` (any kind), concatenated, the
    checksums checked; OpenPGPError says why it is not armor."""
    out = b""
    lines = data.split(b"\n")
    n = 0
    blocks = 0
    while n < len(lines):
        line = lines[n].strip()
        n += 1
        if not line.startswith(ARMOR):
            if line and not blocks:
                raise OpenPGPError("armor: text before -----BEGIN PGP")
            continue
        kind = line[len(ARMOR):].rstrip(b"-")
        n = _armor_headers(lines, n)
        body: list[bytes] = []
        checksum = None
        while n < len(lines):
            line = lines[n].strip()
            n += 1
            if line == b"-----END PGP " + kind + b"-----":
                break
            if line.startswith(b"="):
                checksum = line[1:]
            elif line:
                body.append(line)
        else:
            raise OpenPGPError("armor: no -----END PGP line")
        try:
            decoded = base64.b64decode(b"".join(body), validate=True)
            crc = base64.b64decode(checksum, validate=True) if checksum else None
        except (binascii.Error, ValueError):
            raise OpenPGPError("armor: not base64") from None
        if crc is not None and crc != _crc24(decoded):
            raise OpenPGPError("armor: the checksum does not match")
        out += decoded
        blocks += 1
    if not blocks:
        raise OpenPGPError("armor: no -----BEGIN PGP line")
    return out
