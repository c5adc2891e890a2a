"""The in-process cosign path (signers/cosign/native.py, services.py) against the real
parts: cosign 2.5 and skopeo 1.18 from trixie, the docker-registry on loopback, the sigstore
test bed. For the same image and key, the native signature's payload is cosign's byte for byte
and its layer has the same annotation keys; cosign verify (key; keyless with identity and
issuer; with Rekor's key) and skopeo's sigstoreSigned policy accept native signatures on a
2-platform index that already carries cosign-made ones (both stay); skip-signed recognises
either; a concurrent writer's layer survives an append."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import infra.sigstore as kit
from conftest import run_entrypoint
from signaction.errors import InputError
from signaction.formats import cosign as cosign_format
from signaction.formats import keys as key_format
from signaction.formats import oci
from signaction.plan import SigningKey
from signaction.reference import parse_reference
from signaction.registry import RegistryClient
from signers.base import Options
from signers.cosign import CosignSigner
from signers.cosign import native as cosign_native
from testbed.sigstore import Sigstore

PASSWORD = "native correct horse"
ANNOTATIONS = {"team": "a<b>&c é"}  # Go's HTML escaping and UTF-8 in the payload
EMAIL = "release@example.com"


@pytest.fixture(scope="module")
def keys(tmp_path_factory, trixie_tools):
    folder = tmp_path_factory.mktemp("native-keys")
    one = kit.cosign_keypair(folder, PASSWORD, name="one", tools=trixie_tools)
    two = kit.cosign_keypair(folder, PASSWORD, name="two", tools=trixie_tools)
    return {"one": one, "two": two}


def sign(tmp_path: Path, tools, config: dict, *args: str, out: str, env: dict | None = None):
    conf = tmp_path / f"{out}.yaml"
    conf.write_text(json.dumps({"cosign_signer": {"allow_http_registry": True, **config}}))
    return run_entrypoint("--signer", "cosign", "--config-file", str(conf), "--task-id", "t",
                          "--output-dir", str(tmp_path / out), *args,
                          env={**tools.cosign_env(PASSWORD), **(env or {}),
                               "PATH": f"{tools.cosign.parent}:{os.environ['PATH']}"})


def results(tmp_path: Path, out: str) -> dict:
    return json.loads((tmp_path / out / "results.json").read_text())


def payloads(tmp_path: Path, out: str) -> dict[str, bytes]:
    return {e["digest"]: (tmp_path / out / e["payload_path"]).read_bytes()
            for e in results(tmp_path, out)["images"]}


def sig_manifest(image, digest: str) -> dict:
    return json.loads(kit.registry_manifest(image.host, image.repo,
                                        f"sha256-{digest.split(':')[1]}.sig"))


# -- keys: cosign's equivalence -----------------------------------------------------------------

def test_native_signatures_equal_cosigns_and_both_verify(registry, trixie_tools, keys, tmp_path):
    image = kit.push_index(registry.host, "native/eq", "v1", tmp_path, content="eq")
    target = ["--image", f"{image.by_tag}@{image.digest}"]
    config = {"upload_tlog": False, "annotations": ANNOTATIONS}
    dry = sign(tmp_path, trixie_tools, config, *target, "--signing-key", str(keys["two"][0]),
               "--dry-run", out="dry")
    assert dry.returncode == 0 and f"{keys['two'][0]} (native)" in dry.stdout, dry.stderr
    dry = sign(tmp_path, trixie_tools, {**config, "engine": "cosign"}, *target, "--dry-run",
               "--signing-key", str(keys["two"][0]), out="dry2")
    assert "(cosign binary: cosign_signer.engine is cosign)" in dry.stdout, dry.stderr

    made = sign(tmp_path, trixie_tools, {**config, "engine": "cosign"}, *target,
                "--signing-key", str(keys["one"][0]), out="cosign")
    assert made.returncode == 0, made.stderr
    native = sign(tmp_path, trixie_tools, config, *target, "--signing-key", str(keys["two"][0]),
                  out="native")
    assert native.returncode == 0, native.stderr
    assert results(tmp_path, "native")["summary"]["signed"] == 3
    # the same payload bytes for every digest (identity, digest, tag and annotations)
    assert payloads(tmp_path, "cosign") == payloads(tmp_path, "native")
    for digest in [image.digest, *image.platforms.values()]:
        cosigns, ours = sig_manifest(image, digest)["layers"]  # cosign's stays, ours appended
        assert ours["mediaType"] == cosigns["mediaType"] and ours["digest"] == cosigns["digest"]
        assert set(ours["annotations"]) == set(cosigns["annotations"])
        for _, pub in keys.values():
            check = kit.cosign_verify(trixie_tools, pub, image.by_digest(digest))
            assert check.returncode == 0, check.stderr

    regd = kit.registries_d(tmp_path / "regd", registry.host)
    for name, (_, pub) in keys.items():  # skopeo 1.18, podman's policy, each key alone
        policy = kit.skopeo_sigstore_policy(tmp_path / f"{name}.json", pub, scope=registry.host)
        pulled = kit.skopeo_copy_all(trixie_tools, policy, regd, image.by_tag, tmp_path / name)
        assert pulled.returncode == 0, pulled.stderr
    own = tmp_path / "native" / "verification"
    assert kit.skopeo_copy_all(trixie_tools, own / "policy.json", own / "registries.d",
                           image.by_tag, tmp_path / "own").returncode == 0

    # skip-signed recognises cosign's signature natively, and ours through the binary
    for out, key, engine in (("again1", "one", "auto"), ("again2", "two", "cosign")):
        again = sign(tmp_path, trixie_tools, {**config, "engine": engine}, *target,
                     "--signing-key", str(keys[key][0]), out=out)
        assert again.returncode == 0, again.stderr
        assert results(tmp_path, out)["summary"]["skipped"] == 3, out
    assert len(sig_manifest(image, image.digest)["layers"]) == 2


def test_rsa_ed25519_and_plain_pkcs8_keys_sign_as_cosign_verifies(registry, trixie_tools,
                                                                  tmp_path):
    image = kit.push_index(registry.host, "native/kinds", "v1", tmp_path, content="kinds",
                       platforms=("linux/amd64",))
    target = ["--image", f"{image.by_tag}@{image.digest}", "--no-expand-index"]
    for name, private in (("rsa", rsa.generate_private_key(65537, 2048)),
                          ("ed", ed25519.Ed25519PrivateKey.generate()),
                          ("plain", ec.generate_private_key(ec.SECP256R1()))):
        pem = tmp_path / f"{name}.pem"
        pem.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        pub = tmp_path / f"{name}.pub"
        if name != "ed":  # used as it is (cosign 2.5's import-key-pair refuses RSA keys)
            key = pem
            pub.write_bytes(key_format.public_pem(private))
        else:  # cosign's own encrypted file of that key (import-key-pair)
            made = trixie_tools.run_cosign("import-key-pair", "--key", str(pem),
                                           "--output-key-prefix", name, password=PASSWORD,
                                           cwd=tmp_path)
            assert made.returncode == 0, made.stderr
            key = tmp_path / f"{name}.key"
        run = sign(tmp_path, trixie_tools, {"upload_tlog": False, "engine": "native"}, *target,
                   "--signing-key", str(key), out=name)
        assert run.returncode == 0, run.stderr
        check = kit.cosign_verify(trixie_tools, pub, image.by_digest())
        assert check.returncode == 0, (name, check.stderr)


def test_bad_key_files_are_one_line_refusals(registry, trixie_tools, keys, tmp_path):
    image = kit.push_index(registry.host, "native/bad", "v1", tmp_path, content="bad",
                       platforms=("linux/amd64",))
    fifo = tmp_path / "fifo.key"
    os.mkfifo(fifo)
    blob = json.dumps({"kdf": {"name": "scrypt", "params": {"N": 1 << 30, "r": 8, "p": 1},
                               "salt": "AAAA"}, "cipher": {"name": "nacl/secretbox",
                                                           "nonce": "A" * 32},
                       "ciphertext": "AAAA"}).encode()
    huge = tmp_path / "huge.key"
    huge.write_text(_pem("ENCRYPTED SIGSTORE PRIVATE KEY", blob))
    garbage = tmp_path / "garbage.key"
    garbage.write_text(_pem("ENCRYPTED SIGSTORE PRIVATE KEY", b"{not json"))
    cases = {fifo: "named pipe", huge: "unsupported scrypt parameters",
             garbage: "not a cosign key file", keys["one"][0]: "cannot use it"}
    for key, why in cases.items():
        run = sign(tmp_path, trixie_tools, {"upload_tlog": False}, "--signing-key", str(key),
                   "--image", f"{image.by_tag}@{image.digest}", out=key.stem,
                   env={"COSIGN_PASSWORD": "wrong"})
        assert run.returncode == 2 and why in run.stderr, (key, run.stderr)
        assert "Traceback" not in run.stderr and "wrong" not in run.stderr
    signer = CosignSigner({"engine": "native"}, Options.default())
    with pytest.raises(InputError, match="needs the cosign binary"):
        signer._choose_path(SigningKey("k", "awskms://x/y"))
    auto = CosignSigner({}, Options.default())
    assert auto._choose_path(SigningKey("k", "awskms://x/y")) == "cosign binary: a KMS or key URI"


def _pem(kind: str, data: bytes) -> str:
    return f"-----BEGIN {kind}-----\n{base64.b64encode(data).decode()}\n-----END {kind}-----\n"


# -- another writer at the same time ------------------------------------------------------------

class Racing(RegistryClient):
    """The run's registry client, except that right after its first manifest write another
    writer (which read the tag before it) writes the tag with its own layer on top of what it
    read: the lost update an append must survive."""

    def __init__(self, other_write):
        super().__init__(plain_http=True)
        self.other_write, self.raced = other_write, False

    def read_tag(self, ref, tag):
        found = super().read_tag(ref, tag)
        if not self.raced and not hasattr(self, "stale"):
            self.stale = found  # what the other writer read too
        return found

    def put_manifest(self, ref, tag, raw, media_type, if_match=None):
        written = super().put_manifest(ref, tag, raw, media_type, if_match)
        if not self.raced:
            self.raced = True
            self.other_write(self, ref, tag, self.stale)
        return written


def test_an_append_keeps_a_concurrent_writers_layer(registry, trixie_tools, keys, tmp_path):
    image = kit.push_index(registry.host, "native/race", "v1", tmp_path, content="race",
                       platforms=("linux/amd64",))
    ref = parse_reference(image.by_tag)[0]
    one, two = (cosign_native.load_private_key(str(k), PASSWORD, "k") for k, _ in
                keys.values())

    def layer(private):
        payload = cosign_format.simple_signing_payload(image.by_tag, image.digest, {"tag": "v1"})
        signature = key_format.sign_bytes(private, payload)
        return payload, cosign_format.signature_layer(payload, {
            "dev.cosignproject.cosign/signature": base64.b64encode(signature).decode()})

    def other_write(client, ref, tag, stale):
        payload, theirs = layer(two)
        old = cosign_native.existing_layers(stale[0], "x") if stale else []
        config = cosign_format.signature_config([*old, theirs])
        RegistryClient.push_blob(client, ref, payload)
        RegistryClient.push_blob(client, ref, config)
        RegistryClient.put_manifest(client, ref, tag, cosign_format.signature_manifest(
            config, [*old, theirs]), oci.OCI_MANIFEST)

    payload, ours = layer(one)
    done = cosign_native.attach(Racing(other_write), ref, image.digest, payload, ours)
    assert done.writes == 2  # written, found overwritten, written again on top
    for _, pub in keys.values():  # both layers there
        check = kit.cosign_verify(trixie_tools, pub, image.by_digest())
        assert check.returncode == 0, check.stderr
    assert len(sig_manifest(image, image.digest)["layers"]) == 2


# -- keyless and Rekor --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    with Sigstore(tmp_path_factory.mktemp("native-bed")) as testbed:
        yield testbed


def bed_config(bed) -> tuple[dict, dict]:
    """cosign_signer's settings for the bed's services and roots, and a GitHub job's token
    variables (for EMAIL)."""
    env = bed.env
    config = {"fulcio_url": env["FULCIO_URL"], "rekor_url": env["REKOR_URL"],
              "fulcio_root_file": env["SIGSTORE_ROOT_FILE"],
              "ctlog_public_key_file": env["SIGSTORE_CT_LOG_PUBLIC_KEY_FILE"],
              "rekor_public_key_file": env["SIGSTORE_REKOR_PUBLIC_KEY"]}
    return config, {"ACTIONS_ID_TOKEN_REQUEST_URL": env["ACTIONS_ID_TOKEN_REQUEST_URL"]
                    + f"&email={EMAIL}", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": bed.request_token}


def test_native_keyless_and_rekor_verify_with_cosign_and_skopeo(registry, trixie_tools, bed,
                                                                 keys, tmp_path):
    image = kit.push_index(registry.host, "native/keyless", "v1", tmp_path, content="keyless")
    env = bed.env
    config, ambient = bed_config(bed)
    certificates = bed.state()["certificates"]
    run = sign(tmp_path, trixie_tools, config, "--image", f"{image.by_tag}@{image.digest}",
               "--signing-key", "keyless", "--signing-key", str(keys["one"][0]), out="native",
               env=ambient)
    assert run.returncode == 0, run.stderr
    assert bed.state()["certificates"] == certificates + 1  # one certificate for 3 signatures
    for entry in results(tmp_path, "native")["images"]:
        assert bed.rekor.entries[entry["rekor_log_index"]].uuid == entry["rekor_entry_uuid"]
        if entry["signing_key"] == "keyless":
            assert entry["certificate_identity"] == EMAIL
    # cosign's own keyless signature of one platform beside ours: the same annotation keys
    platform = next(iter(image.platforms.values()))
    made = sign(tmp_path, trixie_tools, {**config, "engine": "cosign"}, "--no-expand-index",
                "--image", f"{image.by_tag}@{platform}", "--signing-key", "keyless",
                out="cosign", env=ambient)
    assert made.returncode == 0, made.stderr
    ours_kl, ours_key, cosigns = sig_manifest(image, platform)["layers"]
    assert set(ours_kl["annotations"]) == set(cosigns["annotations"])
    assert "dev.sigstore.cosign/bundle" in ours_key["annotations"]

    roots = {k: env[k] for k in ("SIGSTORE_ROOT_FILE", "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE",
                                 "SIGSTORE_REKOR_PUBLIC_KEY")}
    for digest in [image.digest, *image.platforms.values()]:
        ref = image.by_digest(digest)
        for how in (("--certificate-identity", EMAIL, "--certificate-oidc-issuer",
                     env["OIDC_ISSUER"]), ("--key", str(keys["one"][1]))):
            check = trixie_tools.run_cosign_env(roots, "verify", "--allow-http-registry", *how,
                                                ref)
            assert check.returncode == 0, (how, check.stderr)
    regd = kit.registries_d(tmp_path / "regd", registry.host)
    folder = Path(env["SIGSTORE_ROOT_FILE"]).parent
    fulcio = kit.skopeo_fulcio_policy(tmp_path / "f.json", folder / "fulcio_root.pem",
                                  env["OIDC_ISSUER"], EMAIL,
                                  Path(env["SIGSTORE_REKOR_PUBLIC_KEY"]), scope=registry.host)
    assert kit.skopeo_copy_all(trixie_tools, fulcio, regd, image.by_tag,
                           tmp_path / "p1").returncode == 0
    own = tmp_path / "native" / "verification"
    pulled = kit.skopeo_copy_all(trixie_tools, own / "policy.json", own / "registries.d",
                             image.by_tag, tmp_path / "p2")
    assert pulled.returncode == 0, pulled.stderr


@pytest.fixture
def hostile(bed):
    yield bed.set_faults
    bed.set_faults(fulcio_forge="", rekor_forge="", fulcio_fail=0, rekor_fail=0,
                   fail_status=503)


@pytest.mark.parametrize("service,forge,words", [
    ("fulcio", "other-key", "the certificate is for another key"),
    ("fulcio", "other-identity", "the certificate names 'mallory@example.com', the token"),
    ("fulcio", "other-issuer", "the certificate names the issuer 'https://issuer.example.com'"),
    ("fulcio", "self-signed", "the certificate does not chain to the Fulcio root"),
    ("fulcio", "garbage", "the answer is unusable"),
    ("rekor", "other-artifact", "the Rekor entry logs another payload"),
    ("rekor", "bad-set", "signed entry timestamp"),
    ("rekor", "bad-proof", "inclusion proof"),
    ("rekor", "other-body", "the Rekor entry logs another payload"),
])
def test_a_hostile_fulcio_or_rekor_fails_the_image_and_attaches_nothing(
        registry, trixie_tools, bed, keys, hostile, tmp_path, service, forge, words):
    """Each of a hostile service's answers while signing in-process (the bed's forge switches)
    fails the image in one line naming the service, exit 1; no signature reaches the
    registry."""
    image = kit.push_index(registry.host, f"native/hostile-{forge}", "v1", tmp_path,
                           content=f"hostile-{service}-{forge}", platforms=("linux/amd64",))
    config, ambient = bed_config(bed)
    hostile(**{f"{service}_forge": forge})
    key = "keyless" if service == "fulcio" else str(keys["one"][0])
    run = sign(tmp_path, trixie_tools, config, "--image", f"{image.by_tag}@{image.digest}",
               "--no-expand-index", "--signing-key", key, out="out", env=ambient)
    assert run.returncode == 1, run.stderr
    [entry] = results(tmp_path, "out")["images"]
    assert entry["status"] == "failed"
    assert words in entry["error"] and "\n" not in entry["error"], entry["error"]
    assert ("Fulcio" if service == "fulcio" else "Rekor") in entry["error"]
    assert "Traceback" not in run.stderr
    with pytest.raises(OSError):  # nothing attached: no .sig tag at all
        sig_manifest(image, image.digest)


@pytest.mark.parametrize("case,code,words", [
    ("huge", 2, "more than 65536 bytes"),
    ("not-a-jwt", 2, "not an OIDC identity token (a JWT"),
    ("claims-not-json", 2, "its claims are not a JSON object"),
    ("claims-a-list", 2, "its claims are not a JSON object"),
    ("expired", 2, "the identity token expired"),
    ("other-audience", 1, "Fulcio"),
    ("other-issuer", 1, "Fulcio"),
])
def test_hostile_identity_tokens_are_one_line(registry, trixie_tools, bed, tmp_path, case,
                                               code, words):
    """identity_token env://OIDC_TOKEN holding what a token must not be: refused before
    anything is signed (exit 2) where the token itself shows it; else Fulcio refuses it and
    the image fails in one line (exit 1). The token never appears in the output."""
    token = {"huge": "a." + "b" * 100_000 + ".c", "not-a-jwt": "hello there",
             "claims-not-json": "e30.bm90IGpzb24.c2ln", "claims-a-list": "e30.WzEsMl0.c2ln",
             "expired": bed.token(email=EMAIL, lifetime=-60),
             "other-audience": bed.token(email=EMAIL, audience="not-sigstore"),
             "other-issuer": bed.token(email=EMAIL, extra={"iss": "https://issuer.example.com"}),
             }[case]
    config, _ = bed_config(bed)
    digest = "sha256:" + "cd" * 32 if code == 2 else None
    image = None if digest else kit.push_index(registry.host, f"native/token-{case}", "v1",
                                               tmp_path, content=f"token-{case}",
                                               platforms=("linux/amd64",))
    target = f"{registry.host}/native/refused:v1@{digest}" if digest else \
        f"{image.by_tag}@{image.digest}"
    run = sign(tmp_path, trixie_tools, {**config, "identity_token": "env://OIDC_TOKEN"},
               "--image", target, "--no-expand-index", "--signing-key", "keyless", out="out",
               env={"OIDC_TOKEN": token})
    assert run.returncode == code, run.stderr
    assert token not in run.stdout + run.stderr and "Traceback" not in run.stderr
    if code == 2:
        [line] = run.stderr.strip().splitlines()
        assert words in line, line
        assert not (tmp_path / "out").exists()
    else:
        [entry] = results(tmp_path, "out")["images"]
        assert entry["status"] == "failed" and words in entry["error"], entry
        assert "\n" not in entry["error"]
        with pytest.raises(OSError):
            sig_manifest(image, image.digest)


@pytest.mark.parametrize("service,status", [("fulcio", 429), ("fulcio", 503), ("rekor", 429),
                                            ("rekor", 502)])
def test_a_storm_of_refusals_fails_the_image_after_the_retries_in_one_line(
        registry, trixie_tools, bed, keys, hostile, tmp_path, service, status):
    """Fulcio or Rekor answering only 429 or 5xx (Retry-After: 0): each request is tried the
    configured number of times (registry.retries: 3), then the image fails in one line naming
    the service and the status; nothing is attached, and the run ends."""
    image = kit.push_index(registry.host, f"native/storm-{service}-{status}", "v1", tmp_path,
                           content=f"storm-{service}-{status}", platforms=("linux/amd64",))
    config, ambient = bed_config(bed)
    hostile(**{f"{service}_fail": 1000, "fail_status": status})
    key = "keyless" if service == "fulcio" else str(keys["one"][0])
    conf = tmp_path / "storm.yaml"
    conf.write_text(json.dumps({"registry": {"retries": 3},
                                "cosign_signer": {"allow_http_registry": True, **config}}))
    run = run_entrypoint("--signer", "cosign", "--config-file", str(conf), "--output-dir",
                         str(tmp_path / "out"), "--image", f"{image.by_tag}@{image.digest}",
                         "--no-expand-index", "--signing-key", key,
                         env={**trixie_tools.cosign_env(PASSWORD), **ambient})
    assert run.returncode == 1, run.stderr
    [entry] = results(tmp_path, "out")["images"]
    assert entry["status"] == "failed" and str(status) in entry["error"], entry["error"]
    assert ("Fulcio" if service == "fulcio" else "Rekor") in entry["error"]
    assert "\n" not in entry["error"] and "Traceback" not in run.stderr
    assert bed.state()["faults"]["seen"][service] == 3  # the retries, and no more
    with pytest.raises(OSError):
        sig_manifest(image, image.digest)
