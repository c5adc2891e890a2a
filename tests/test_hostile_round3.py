"""Hostile input, round 3 (issue 23): the numbered cases that did not hold, each with generated
hostile values, judged by the real tools where one decides (cosign for key curves).

- a passphrase/password file that is not UTF-8, not a regular file, or huge: one line, exit 2;
- a cosign key on a curve cosign cannot verify: refused before signing, exactly where cosign
  itself fails to verify a signature made by that key (the differential).
"""

from __future__ import annotations

import base64
import os
import random

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from conftest import run_entrypoint
from signaction.errors import InputError
from signers.cosign import native as cosign_native

DIGEST = "sha256:" + "ab" * 32


def _refused(run, out, *words: str) -> None:
    assert run.returncode == 2, run.stdout + run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert "Traceback" not in run.stdout + run.stderr
    assert not out.exists()  # nothing written


def _not_utf8(rng: random.Random) -> bytes:
    """Bytes that are not UTF-8: a stray continuation byte, a lone lead byte, an overlong form
    or a surrogate, at a random place in otherwise plain text."""
    bad = rng.choice([b"\x80", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xff", b"\xfe\xfe"])
    text = "".join(rng.choice("abcdef0123456789") for _ in range(rng.randrange(0, 30))).encode()
    at = rng.randrange(0, len(text) + 1)
    return text[:at] + bad + text[at:] + rng.choice([b"", b"\n", b"\nsecond line\n"])


def _passphrase_file(kind: str, tmp_path, rng: random.Random) -> str:
    path = tmp_path / "passphrase"
    if kind == "not-utf8":
        path.write_bytes(_not_utf8(rng))
    elif kind == "fifo":
        os.mkfifo(path)  # opened to read, it would wait for a writer forever
    elif kind == "folder":
        path.mkdir()
    elif kind == "huge":
        path.write_bytes(b"x" * ((64 << 10) + 1))
    elif kind == "device":
        return "/dev/zero"  # never ends
    elif kind == "missing":
        pass
    return str(path)


@pytest.mark.parametrize("kind", ["not-utf8"] * 6 + ["fifo", "folder", "huge", "device",
                                                      "missing"])
def test_a_bad_passphrase_file_is_one_line_and_exit_2(tmp_path, gpg_keys, kind, request):
    rng = random.Random(request.node.name)
    path = _passphrase_file(kind, tmp_path, rng)
    out = tmp_path / "out"
    run = run_entrypoint("--signer", "gpg", "--config", f"gpg_signer: {{passphrase_file: {path}}}",
                         "--signing-key", gpg_keys.protected, "--image",
                         f"r.io/ns/app:1@{DIGEST}", "--output-dir", str(out),
                         env=gpg_keys.env(), timeout=60)
    _refused(run, out, "gpg_signer.passphrase_file")


def test_cosigns_password_file_is_read_the_same_way(tmp_path):
    path = tmp_path / "password"
    path.write_bytes(b"\xff\xfe not text\n")
    key = tmp_path / "k.pem"
    key.write_bytes(_pkcs8(ec.generate_private_key(ec.SECP256R1())))
    out = tmp_path / "out"
    run = run_entrypoint("--signer", "cosign", "--config",
                         f"cosign_signer: {{password_file: {path}, upload_tlog: false}}",
                         "--no-upload", "--no-expand-index", "--signing-key", str(key), "--image",
                         f"r.io/ns/app:1@{DIGEST}", "--output-dir", str(out), timeout=60)
    _refused(run, out, "cosign_signer.password_file", "not UTF-8")
    assert "not text" not in run.stderr  # the secret's bytes are never quoted


# -- cosign key curves --------------------------------------------------------------------------

def _pkcs8(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


CURVES = {"secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1, "secp521r1": ec.SECP521R1,
          "secp256k1": ec.SECP256K1, "secp224r1": ec.SECP224R1,
          "brainpoolP256r1": ec.BrainpoolP256R1, "brainpoolP384r1": ec.BrainpoolP384R1,
          "brainpoolP512r1": ec.BrainpoolP512R1}


def _key(kind: str):
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(CURVES[kind]())


def _sign(key, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


KINDS = ["secp256r1", "secp384r1", "secp521r1", "rsa2048", "rsa3072", "ed25519",
         "secp256k1", "brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1", "secp224r1",
         "rsa1024"]
# Where this project refuses a key whose signatures cosign 2.5 still verifies: what cosign's own
# key tools and sigstore's key policy allow (P-256/384/521, RSA of 2048 bits or more, Ed25519)
STRICTER = {"secp224r1": "stricter: cosign verify-blob takes a P-224 signature; sigstore's key "
                         "policy and cosign's key import allow P-256, P-384 and P-521 only",
            "rsa1024": "stricter: cosign verify-blob takes an RSA-1024 signature; sigstore "
                       "refuses RSA keys under 2048 bits"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_is_taken_exactly_when_cosign_can_verify_its_signatures(tmp_path, kind,
                                                                      trixie_tools):
    """The differential: cosign 2.5 verify-blob judges a signature by the key (its public half
    as cosign.pub); the in-process signer takes the key file exactly when cosign accepts."""
    key = _key(kind)
    (tmp_path / "k.pem").write_bytes(_pkcs8(key))
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "k.pub").write_bytes(public)
    (tmp_path / "blob").write_bytes(b"a payload")
    (tmp_path / "blob.sig").write_bytes(base64.b64encode(_sign(key, b"a payload")))
    verdict = trixie_tools.run_cosign("verify-blob", "--key", str(tmp_path / "k.pub"),
                                      "--signature", str(tmp_path / "blob.sig"),
                                      "--insecure-ignore-tlog=true", str(tmp_path / "blob"))
    cosign_accepts = verdict.returncode == 0
    try:
        cosign_native.load_private_key(str(tmp_path / "k.pem"), None, "signing key 'k.pem'")
        ours = True
    except InputError as e:
        ours, why = False, str(e)
        assert "cannot verify" in why or "at least" in why, why
    if kind in STRICTER:
        assert cosign_accepts and not ours, (kind, STRICTER[kind], verdict.stderr[-500:])
    else:
        assert ours == cosign_accepts, (kind, verdict.stderr[-500:])


@pytest.mark.parametrize("kind", ["secp256k1", "brainpoolP256r1", "rsa1024"])
def test_a_run_with_such_a_key_signs_nothing(tmp_path, kind):
    (tmp_path / "k.pem").write_bytes(_pkcs8(_key(kind)))
    out = tmp_path / "out"
    run = run_entrypoint("--signer", "cosign", "--config", "cosign_signer: {upload_tlog: false}",
                         "--no-upload", "--no-expand-index", "--signing-key",
                         str(tmp_path / "k.pem"), "--image",
                         f"r.io/ns/app:1@{DIGEST}", "--output-dir", str(out), timeout=60)
    _refused(run, out, "k.pem")
