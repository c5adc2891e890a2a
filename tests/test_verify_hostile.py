"""Verify mode's OpenPGP check and lookaside walk against keys made by real gpg (Debian 12's
gpg 2.2: RSA, the default; NIST P-256 and P-384; Ed25519, legacy EdDSA) and against hostile
lookaside servers: a redirect loop, a huge file, a signature-N list that never ends, garbage;
and the inputs verify mode refuses (exit 2)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import run_entrypoint
from infra.lookaside_server import LookasideServer
from signaction.formats import openpgp
from signaction.formats.claim import atomic_claim
from signaction.signing import Finding
from signers.gpg import gpg_sign

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
REF = "registry.example.com/ns/app:1.0"


def gpg(home: Path, *args: str, data: bytes = b"") -> bytes:
    return subprocess.run(["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback",
                           "--passphrase", "", *args], input=data, capture_output=True,
                          check=True, env={**os.environ, "GNUPGHOME": str(home)}).stdout


def new_key(home: Path, uid: str, algo: str, *extra: str) -> str:
    gpg(home, *extra, "--quick-gen-key", uid, algo, "sign", "never" if not extra else "1d")
    out = gpg(home, "--with-colons", "--list-keys", uid).decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def skopeo_verifies(home: Path, tmp: Path, signer: str, primary: str, *faked: str) -> bool:
    """skopeo 1.9's own check (``standalone-verify``, gpgme with ``home``'s keys, the same
    mechanism as its policy) of a claim signed by ``signer`` (a key or a subkey, ``!``), the
    key expected being ``primary``."""
    manifest = tmp / "manifest.json"
    manifest.write_bytes(b'{"schemaVersion": 2}')
    digest = "sha256:" + hashlib.sha256(manifest.read_bytes()).hexdigest()
    signature = tmp / "signature"
    signature.write_bytes(gpg(home, *faked, "-u", signer + "!", "--sign",
                              data=atomic_claim(REF, digest, "t", 1)))
    proc = subprocess.run(["skopeo", "standalone-verify", str(manifest), REF, primary,
                           str(signature)], env={**os.environ, "GNUPGHOME": str(home)},
                          capture_output=True, text=True)
    return proc.returncode == 0


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    home = tmp_path_factory.mktemp("gpg-kinds")
    os.chmod(home, 0o700)
    made = {algo: new_key(home, f"{algo} <{algo}@test.invalid>", algo)
            for algo in ("rsa2048", "nistp256", "nistp384", "ed25519")}
    # a key that expired: made and used in 2020 (gpg's faked clock), valid for one day
    made["expired"] = new_key(home, "old <old@test.invalid>", "ed25519",
                              "--faked-system-time", "20200101T000000!")
    yield home, made
    subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(home)},
                   check=False)


@pytest.mark.parametrize("algo", ["rsa2048", "nistp256", "nistp384", "ed25519"])
def test_gpg_signatures_of_each_kind_verify_in_process(keys, algo):
    home, made = keys
    ring = openpgp.Keyring.parse(gpg(home, "--export", made[algo]))
    armored = openpgp.Keyring.parse(gpg(home, "--export", "--armor", made[algo]))
    assert ring.fingerprints() == armored.fingerprints() == [made[algo]]  # v4 fingerprints
    claim = atomic_claim(REF, D1, "t", 1)
    signed = gpg(home, "-u", made[algo], "--sign", "--compress-level", "0", data=claim)
    verified = openpgp.verify_message(signed, ring)
    assert (verified.fingerprint, verified.content) == (made[algo], claim)
    at = signed.index(claim)  # the literal data changed, its signature kept
    with pytest.raises(openpgp.OpenPGPError, match="not made over this content"):
        openpgp.verify_message(signed[:at] + claim.replace(b"1", b"2") +
                               signed[at + len(claim):], ring)
    other = openpgp.Keyring.parse(gpg(home, "--export", made["ed25519" if algo != "ed25519"
                                                              else "rsa2048"]))
    with pytest.raises(openpgp.VerifyError, match="not in the keyring"):
        openpgp.verify_message(signed, other)


def test_an_expired_key_is_refused_as_gpgme_reports_it(keys, tmp_path):
    home, made = keys
    ring = openpgp.Keyring.parse(gpg(home, "--export", made["expired"]))
    signed = gpg(home, "--faked-system-time", "20200101T010000!", "-u", made["expired"],
                 "--sign", data=b"x")
    with pytest.raises(openpgp.VerifyError, match="expired") as refused:
        openpgp.verify_message(signed, ring)
    assert refused.value.finding is Finding.POLICY
    # and skopeo agrees: an expired key is refused, a valid one accepted
    assert not skopeo_verifies(home, tmp_path, made["expired"], made["expired"],
                               "--faked-system-time", "20200101T010000!")
    assert skopeo_verifies(home, tmp_path, made["ed25519"], made["ed25519"])


def test_a_signing_subkey_is_not_the_keyring_key(keys, tmp_path):
    home, made = keys
    gpg(home, "--quick-add-key", made["nistp256"], "ed25519", "sign", "never")
    listing = gpg(home, "--with-colons", "--list-keys", made["nistp256"]).decode().splitlines()
    sub = [ln.split(":")[9] for ln in listing if ln.startswith("fpr:")][1]
    ring = openpgp.Keyring.parse(gpg(home, "--export", made["nistp256"]))
    with pytest.raises(openpgp.VerifyError, match="subkey"):
        openpgp.verify_message(gpg(home, "-u", sub + "!", "--sign", data=b"x"), ring)
    # skopeo (gpgme) reports the subkey's fingerprint, which is not the trusted primary's
    assert not skopeo_verifies(home, tmp_path, sub, made["nistp256"])
    assert skopeo_verifies(home, tmp_path, made["nistp256"], made["nistp256"])


def test_keyrings_that_are_not_keyrings_are_refused_in_words():
    for data, words in [(b"", "no packets"), (b"\x99\x00\x01", "says it has"),
                        (b"\x00junk", "not OpenPGP data"),
                        (b"\xc6\x02\x04\x00", "no usable OpenPGP public keys"),
                        (b"\xcd\x01x", "a user id packet before any public key"),
                        (b"\xc5\x02\x04\x00", "a secret key"),
                        (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n"
                         b"-----END PGP PUBLIC KEY BLOCK-----\n", "not base64")]:
        with pytest.raises(openpgp.OpenPGPError, match=words):
            openpgp.Keyring.parse(data)


# -- hostile lookaside servers, through the entrypoint ---------------------------------------

@pytest.fixture
def published(gpg_keys, tmp_path):
    """A lookaside tree where REF@D1 has a good signature-1 by key A; REF@D2 nothing yet."""
    root = tmp_path / "tree"
    folder = root / "registry.example.com" / "ns" / f"app@{D1.replace(':', '=')}"
    folder.mkdir(parents=True)
    (folder / "signature-1").write_bytes(gpg_sign(atomic_claim(REF, D1, "t", 1), gpg_keys.a,
                                                  gnupg_home=gpg_keys.home))
    keyring = tmp_path / "keys.gpg"
    keyring.write_bytes(subprocess.run(["gpg", "--export", gpg_keys.a], capture_output=True,
                                       env={**os.environ, **gpg_keys.env()}, check=True).stdout)
    return root, keyring


def verify(url: str, keyring: Path, tmp_path: Path, *images: str, key: str = "",
           extra=("--config", "registry: {retries: 2}")):
    """Verify mode with only a public keyring: no gpg home, no secret (and one retry of a
    5xx, not the default 4)."""
    pairs = [a for ref, digest in (i.split("@") for i in images)
             for a in ("--reference", ref, "--digest", digest)]
    return run_entrypoint("--mode", "verify", "--no-expand-index", "--verify-keyring",
                          str(keyring), "--signing-key", key, "--lookaside-url", url,
                          "--output-dir", str(tmp_path / "v"), *pairs, *extra,
                          env={"GNUPGHOME": str(tmp_path / "no-such-home")})


def entries(tmp_path: Path) -> list[dict]:
    return json.loads((tmp_path / "v" / "results.json").read_text())["images"]


@pytest.mark.parametrize("hostility,words", [
    ("loop", "TooManyRedirects"),
    ("huge", "more than the 1048576"),
    ("endless", "more than 128 signatures"),
    ("status", "503"),
    ("bomb", "more than the 1048576"),
])
def test_a_hostile_lookaside_is_one_clear_line_and_exit_1(published, gpg_keys, tmp_path,
                                                          hostility, words):
    root, keyring = published
    with LookasideServer(root) as server:
        bad = f"/registry.example.com/ns/app@{D2.replace(':', '=')}/"
        if hostility == "loop":
            server.loops.add(bad)
        elif hostility == "huge":
            server.huge[bad] = 3 << 20
        elif hostility == "endless":
            server.endless[bad] = (root / "registry.example.com" / "ns" /
                                   f"app@{D1.replace(':', '=')}" / "signature-1").read_bytes()
        elif hostility == "bomb":  # 64 MiB of zeros in 64 KiB of gzip
            server.bombs[bad] = 64 << 20
        else:
            server.status[bad] = 503
        run = verify(server.url + "/{registry}", keyring, tmp_path, f"{REF}@{D1}", f"{REF}@{D2}",
                     key=gpg_keys.a)
        requests = server.requests
    assert run.returncode == 1, run.stderr
    good, hostile = entries(tmp_path)
    assert good["status"] == "verified"
    assert hostile["status"] == "invalid" and words in hostile["reason"], hostile
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and words in errors[0] and "\n" not in errors[0]
    assert requests < 200  # bounded: capped lists, a few retries (5xx), no endless redirects


def test_a_lookaside_trickling_a_good_signature_fails_that_image_at_the_deadline(
        published, gpg_keys, tmp_path):
    """A server sending the genuine signature-1 of D1 a byte every 50 ms (its ~600 bytes take
    ~30 s) against a deadline of 2 s: that image fails with one line naming the deadline; were
    the deadline not kept the read would end and the signature verify. The image read at full
    speed beside it verifies."""
    root, keyring = published
    folder = root / "registry.example.com" / "ns"
    (folder / f"other@{D1.replace(':', '=')}").mkdir()
    (folder / f"other@{D1.replace(':', '=')}" / "signature-1").write_bytes(
        gpg_sign(atomic_claim("registry.example.com/ns/other:1.0", D1, "t", 1), gpg_keys.a,
                 gnupg_home=gpg_keys.home))
    with LookasideServer(root) as server:
        server.trickle[f"/registry.example.com/ns/app@{D1.replace(':', '=')}/"] = 0.05
        run = verify(server.url + "/{registry}", keyring, tmp_path, f"{REF}@{D1}",
                     f"registry.example.com/ns/other:1.0@{D1}", key=gpg_keys.a,
                     extra=("--config", "registry: {retries: 2, lookaside_deadline: 2}"))
    assert run.returncode == 1, run.stderr
    slow, fast = entries(tmp_path)
    assert fast["status"] == "verified", fast
    assert slow["status"] == "invalid" and "within the 2 s allowed" in slow["reason"], slow
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "lookaside_deadline" in errors[0]


def test_verify_reads_no_secret_and_writes_only_results(published, gpg_keys, tmp_path):
    root, keyring = published
    conf = tmp_path / "conf.yaml"  # a passphrase file that is not there: not read in verify
    conf.write_text("gpg_signer: {passphrase_file: /nonexistent/passphrase}\n")
    run = verify(root.resolve().as_uri() + "/{registry}", keyring, tmp_path, f"{REF}@{D1}",
                 key=gpg_keys.a, extra=["--config-file", str(conf)])
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["results.json"]


@pytest.mark.parametrize("args,words", [
    (["--lookaside-url", ""], "--lookaside-url is required"),
    (["--mode", "check"], "invalid choice"),
    (["--verify-keyring", "/nonexistent.gpg"], "cannot read"),
    (["--signing-key", "0123456789ABCDEF"], "no public key in"),
])
def test_bad_input_in_verify_mode_is_exit_2_and_nothing_written(published, gpg_keys, tmp_path,
                                                                 args, words):
    root, keyring = published
    (tmp_path / "x.txt").write_text("x")
    base = {"--lookaside-url": root.as_uri() + "/{registry}", "--verify-keyring": str(keyring),
            "--signing-key": gpg_keys.a}
    flags = dict(zip(args[::2], args[1::2], strict=True))
    merged = [a for k, v in {**base, **flags}.items() if k != "--mode" and v
              for a in (k, v)]
    run = run_entrypoint("--mode", flags.get("--mode", "verify"), "--no-expand-index",
                         "--reference", REF, "--digest", D1, "--output-dir",
                         str(tmp_path / "v"), *merged, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert words in run.stderr and run.stderr.count("error:") == 1, run.stderr
    assert not (tmp_path / "v").exists()


def test_a_fifo_as_the_keyring_is_refused_not_waited_on(tmp_path, gpg_keys):
    fifo = tmp_path / "keys.gpg"
    os.mkfifo(fifo)  # opening it to read would block until a writer comes: never
    run = run_entrypoint("--mode", "verify", "--no-expand-index", "--reference", REF,
                         "--digest", D1, "--signing-key", gpg_keys.a, "--verify-keyring",
                         str(fifo), "--lookaside-url", "http://127.0.0.1:9/{registry}",
                         "--output-dir", str(tmp_path / "v"), timeout=60)
    assert run.returncode == 2, run.stderr
    assert "not a regular file" in run.stderr and run.stderr.count("error:") == 1, run.stderr


def test_msg_verify_keyring_needs_no_broker_and_github_gets_outputs_summary_annotations(
        published, gpg_keys, tmp_path):
    """pubtools-sign's conf.yaml with verify_keyring: its brokers and certificate files do not
    exist and are never touched; as a GitHub step, the outputs, the summary and one ::error per
    image that does not verify."""
    root, keyring = published
    conf = tmp_path / "conf.yaml"
    conf.write_text(json.dumps({"msg_signer": {
        "messaging_brokers": ["amqps://broker.invalid:5671"],
        "messaging_cert_key": "/nonexistent/cert.pem", "messaging_ca_cert": "/nonexistent/ca",
        "topic_send_to": "topic://x", "topic_listen_to": "queue://y", "environment": "prod",
        "service": "pubtools-sign", "timeout": 60, "retries": 3, "send_retries": 2,
        "message_id_key": "request_id", "verify_keyring": str(keyring)}}))
    output, summary = tmp_path / "output", tmp_path / "summary.md"
    run = run_entrypoint(
        "--mode", "verify", "--signer", "msg", "--config-file", str(conf), "--no-expand-index",
        "--signing-key", gpg_keys.a[-16:], "--lookaside-url", root.as_uri() + "/{registry}",
        "--reference", REF, "--digest", D1, "--reference", REF, "--digest", D2,
        "--output-dir", str(tmp_path / "v"),
        env={"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(output),
             "GITHUB_STEP_SUMMARY": str(summary)})
    assert run.returncode == 1, run.stderr
    outputs = output.read_text()
    for name, value in (("status", "partial"), ("verified-count", "1"),
                        ("failed-count", "1"), ("signed-count", "0")):
        assert f"{name}<<" in outputs and f"\n{value}\n" in outputs.split(f"{name}<<")[1][:80]
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error ")]
    assert len(errors) == 1 and f"{D2} with key" in errors[0] and "missing" in errors[0]
    assert errors[0].startswith("::error title=Not verified%3A registry.example.com/ns/app")
    md = summary.read_text()
    assert "**1 verified**, **1 missing**, **0 invalid**" in md
    assert md.index("❌ missing") < md.index("✅ verified")  # failures first


def test_a_keyring_with_several_keys_accepts_only_the_signing_keys_signature(
        published, gpg_keys, tmp_path):
    root, _ = published
    folder = root / "registry.example.com" / "ns" / f"app@{D2.replace(':', '=')}"
    folder.mkdir()
    (folder / "signature-1").write_bytes(gpg_sign(atomic_claim(REF, D2, "t", 1), gpg_keys.b,
                                                  gnupg_home=gpg_keys.home))
    both = tmp_path / "both.asc"  # armored, both keys
    both.write_bytes(subprocess.run(["gpg", "--export", "--armor", gpg_keys.a, gpg_keys.b],
                                    capture_output=True, env={**os.environ, **gpg_keys.env()},
                                    check=True).stdout)
    run = verify(root.as_uri() + "/{registry}", both, tmp_path, f"{REF}@{D1}", f"{REF}@{D2}",
                 key=gpg_keys.a)
    assert run.returncode == 1
    good, other = entries(tmp_path)
    assert good["status"] == "verified"
    assert other["status"] == "invalid" and f"other key: signed by {gpg_keys.b}" in \
        other["reason"], other


def test_a_v4_ed25519_key_and_signature_as_rfc_9580_writes_them():
    """Algorithm 27 (Ed25519, native): gpg 2.2 cannot make it, so the packets are built here
    from RFC 9580's layout (5.5.2, 5.2.3, 5.2.4) with cryptography's Ed25519."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = ed25519.Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_body = b"\x04" + (1700000000).to_bytes(4, "big") + b"\x1b" + raw
    fpr = hashlib.sha1(b"\x99" + len(key_body).to_bytes(2, "big") + key_body).digest()
    # its self-signature: a positive certification of its user id (without one, no key)
    uid = b"ed <ed@test.invalid>"
    self_sub = bytes([22, 33, 4]) + fpr + bytes([5, 2]) + (1700000000).to_bytes(4, "big") \
        + bytes([2, 27, 3])
    self_hashed = b"\x04\x13\x1b\x08" + len(self_sub).to_bytes(2, "big") + self_sub
    self_digest = hashlib.sha256(b"\x99" + len(key_body).to_bytes(2, "big") + key_body +
                                 b"\xb4" + len(uid).to_bytes(4, "big") + uid + self_hashed +
                                 b"\x04\xff" + len(self_hashed).to_bytes(4, "big")).digest()
    self_sig = self_hashed + b"\x00\x00" + self_digest[:2] + private.sign(self_digest)
    subpackets = bytes([22, 33, 4]) + fpr + bytes([5, 2]) + (1700000001).to_bytes(4, "big")
    hashed = b"\x04\x00\x1b\x08" + len(subpackets).to_bytes(2, "big") + subpackets
    content = atomic_claim(REF, D1, "t", 1)
    digest = hashlib.sha256(content + hashed + b"\x04\xff" +
                            len(hashed).to_bytes(4, "big")).digest()
    sig_body = hashed + b"\x00\x00" + digest[:2] + private.sign(digest)
    literal = b"b\x00" + b"\x00" * 4 + content

    def packet(tag: int, body: bytes) -> bytes:
        return bytes([0xC0 | tag]) + bytes([192 + ((len(body) - 192) >> 8),
                                            (len(body) - 192) & 0xFF]) + body \
            if len(body) >= 192 else bytes([0xC0 | tag, len(body)]) + body
    with pytest.raises(openpgp.OpenPGPError, match="no usable OpenPGP public keys"):
        openpgp.Keyring.parse(packet(6, key_body))  # no user id, no self-signature: as gpg
    ring = openpgp.Keyring.parse(packet(6, key_body) + packet(13, uid) + packet(2, self_sig))
    one_pass = packet(4, b"\x03\x00\x08\x1b" + fpr[-8:] + b"\x01")
    assert openpgp.verify_message(one_pass + packet(11, literal) + packet(2, sig_body),
                                  ring).fingerprint == fpr.hex().upper()
    forged = sig_body[:-1] + bytes([sig_body[-1] ^ 1])
    with pytest.raises(openpgp.VerifyError, match="does not verify"):
        openpgp.verify_message(one_pass + packet(11, literal) + packet(2, forged), ring)


@pytest.mark.parametrize("trouble", ["full", "read-only"])
def test_verify_into_a_full_or_read_only_folder_is_one_line_and_leaves_nothing(
        published, gpg_keys, tmp_path, small_fs, trouble):
    """The output folder on a file system that is full or read-only: one line naming the file
    and the system's reason, exit 2, no results.json half-written, no temporary file left."""
    root, keyring = published
    fs = small_fs(256 << 10)
    out = fs.path / "v"
    if trouble == "full":
        out.mkdir()
        fs.fill()
    else:
        fs.read_only()
    run = run_entrypoint("--mode", "verify", "--no-expand-index", "--verify-keyring",
                         str(keyring), "--signing-key", gpg_keys.a, "--lookaside-url",
                         root.as_uri() + "/{registry}", "--output-dir", str(out),
                         "--reference", REF, "--digest", D1,
                         env={"GNUPGHOME": str(tmp_path / "no-such-home")})
    assert run.returncode == 2, run.stderr
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, run.stderr
    reason = "No space left on device" if trouble == "full" else "Read-only file system"
    assert reason in errors[0] and "Traceback" not in run.stderr, errors
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left == [], left
