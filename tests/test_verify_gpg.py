"""Verify mode with GPG lookaside signatures, for real: images in a docker-registry, signatures
made by real gpg through the entrypoint, served by a web server, and every verdict compared
with skopeo's (``copy --all`` with the signing run's ``verification/policy.json``): skopeo is the
independent verifier, podman's own code."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import make_image, run_entrypoint
from infra.lookaside_server import LookasideServer
from infra.sigstore import push_index
from signaction.formats.claim import atomic_claim
from signaction.formats.lookaside import registry_folder
from signers.gpg import gpg_sign

CASES = {  # case -> (what is published, what podman does)
    "valid": "signature-1 by the key",
    "other-key": "signature-1 by another key",
    "other-digest": "signature-1 for another digest",
    "other-identity": "signature-1 for another identity",
    "second-valid": "signature-1 by another key, signature-2 good",
    "first-missing": "no signature-1, a good signature-2 (readers stop at the 404)",
    "armored": "signature-1 ASCII-armored",
    "truncated": "signature-1 cut in half",
    "garbage": "signature-1 random bytes",
    "garbage-then-valid": "signature-1 random bytes, signature-2 good",
    "truncated-then-valid": "signature-1 cut in half, signature-2 good",
    "server-500": "the lookaside answers 500",
    "index-partial": "the index and one platform signed, the other platform not",
}


def conf(home: str) -> str:
    return f"gpg_signer: {{gnupg_home: {home}}}\nregistry: {{allow_http: true}}\n"


def sig_folder(out: Path, ref: str, digest: str) -> Path:
    host, path = ref.split("/", 1)
    name = path.rsplit(":", 1)[0] if "@" not in path else path.split("@")[0]
    return out / "lookaside" / registry_folder(host) / f"{name}@{digest.replace(':', '=')}"


def skopeo_accepts(out: Path, server: LookasideServer, host: str, ref: str,
                   tmp: Path) -> tuple[bool, str]:
    """skopeo 1.9 (gpgme) with the signing run's policy and a registries.d naming the web
    server: does it pull every platform of ``ref``?"""
    regd = tmp / "registries.d"
    regd.mkdir(exist_ok=True)
    (regd / "lookaside.yaml").write_text(json.dumps(
        {"docker": {host: {"lookaside": f"{server.url}/{registry_folder(host)}"}}}))
    dest = tmp / f"pulled-{ref.rsplit('/', 1)[1].replace(':', '-')}"
    proc = subprocess.run(["skopeo", "--policy", str(out / "verification" / "policy.json"),
                           "--registries.d", str(regd), "copy", "--quiet", "--all",
                           "--remove-signatures", "--src-tls-verify=false", f"docker://{ref}",
                           f"oci:{dest}:x"], capture_output=True, text=True, timeout=120)
    return proc.returncode == 0, proc.stderr.strip()


@pytest.fixture(scope="module")
def corpus(registry, gpg_keys, tmp_path_factory):
    """Every case pushed and signed by key A, then the published tree changed per case, served,
    verified once by this project (one run) and once per case by skopeo."""
    tmp = tmp_path_factory.mktemp("verify-corpus")
    refs: dict[str, str] = {}
    digests: dict[str, str] = {}
    for case in CASES:
        if case == "index-partial":
            image = push_index(registry.host, f"verify/{case}", "v1", tmp)
            refs[case], digests[case] = image.by_tag, image.digest
            platforms = image.platforms
        else:
            digests[case] = registry.push(make_image(tmp / case, case), f"verify/{case}", "v1")
            refs[case] = f"{registry.host}/verify/{case}:v1"
    out = tmp / "out"
    (tmp / "conf.yaml").write_text(conf(gpg_keys.home))
    images = [a for case in CASES for a in ("--image", f"{refs[case]}@{digests[case]}")]
    signed = run_entrypoint("--config-file", str(tmp / "conf.yaml"), "--signing-key", gpg_keys.a,
                            "--expand-index", "--output-dir", str(out), *images,
                            env=gpg_keys.env())
    assert signed.returncode == 0, signed.stderr

    def sig(case: str) -> Path:
        return sig_folder(out, refs[case], digests[case]) / "signature-1"

    def made(claim_ref: str, digest: str, key: str, armor: bool = False) -> bytes:
        claim = atomic_claim(claim_ref, digest, "test", 1700000000)
        if armor:
            return subprocess.run(["gpg", "--batch", "--armor", "-u", key, "--sign"], input=claim,
                                  env={**os.environ, **gpg_keys.env()}, capture_output=True,
                                  check=True).stdout
        return gpg_sign(claim, key, gnupg_home=gpg_keys.home)

    good = sig("valid").read_bytes()
    assert good
    sig("other-key").write_bytes(made(refs["other-key"], digests["other-key"], gpg_keys.b))
    sig("other-digest").write_bytes(made(refs["other-digest"], digests["valid"], gpg_keys.a))
    sig("other-identity").write_bytes(made(f"{registry.host}/verify/elsewhere:v1",
                                           digests["other-identity"], gpg_keys.a))
    second = sig("second-valid")
    second.with_name("signature-2").write_bytes(second.read_bytes())
    second.write_bytes(made(refs["second-valid"], digests["second-valid"], gpg_keys.b))
    sig("first-missing").rename(sig("first-missing").with_name("signature-2"))
    sig("armored").write_bytes(made(refs["armored"], digests["armored"], gpg_keys.a, armor=True))
    data = sig("truncated").read_bytes()
    sig("truncated").write_bytes(data[:len(data) // 2])
    sig("garbage").write_bytes(b"this is no signature at all" + os.urandom(200))
    for case, bad in (("garbage-then-valid", b"no signature" + os.urandom(100)),
                      ("truncated-then-valid", data[:len(data) // 2])):
        sig(case).with_name("signature-2").write_bytes(sig(case).read_bytes())
        sig(case).write_bytes(bad)
    arm = platforms["linux/arm64"]
    (sig_folder(out, refs["index-partial"], arm) / "signature-1").unlink()

    with LookasideServer(out / "lookaside") as server:
        folder = sig_folder(out, refs["server-500"], digests["server-500"])
        server.status["/" + str(folder.relative_to(out / "lookaside"))] = 500
        verify = run_entrypoint(
            "--mode", "verify", "--config-file", str(tmp / "conf.yaml"), "--signing-key",
            gpg_keys.a, "--lookaside-url", server.url + "/{registry}",
            "--output-dir", str(tmp / "verified"),
            *[a for case in CASES for a in ("--image", refs[case])], env=gpg_keys.env())
        skopeo = {case: skopeo_accepts(out, server, registry.host, refs[case], tmp)
                  for case in CASES}
    results = json.loads((tmp / "verified" / "results.json").read_text())
    return {"run": verify, "results": results, "skopeo": skopeo, "refs": refs,
            "digests": digests, "platforms": platforms}


EXPECTED = {"valid": "verified", "other-key": "invalid", "other-digest": "invalid",
            "other-identity": "invalid", "second-valid": "verified", "first-missing": "missing",
            "armored": "invalid", "truncated": "invalid", "garbage": "invalid",
            "server-500": "invalid", "index-partial": "missing",
            "garbage-then-valid": "invalid", "truncated-then-valid": "verified"}


@pytest.mark.parametrize("case", list(CASES))
def test_each_verdict_is_skopeos(corpus, case):
    entries = [e for e in corpus["results"]["images"] if e["reference"] == corpus["refs"][case]]
    assert entries
    ours = all(e["status"] == "verified" for e in entries)
    accepted, why = corpus["skopeo"][case]
    assert ours == accepted, (case, entries, why)
    worst = next((e for e in entries if e["status"] != "verified"), entries[0])
    assert worst["status"] == EXPECTED[case], worst


def test_the_verdicts_say_why(corpus):
    by = {(e["reference"], e["digest"]): e for e in corpus["results"]["images"]}
    refs, digests = corpus["refs"], corpus["digests"]

    def entry(case):
        return by[(refs[case], digests[case])]
    assert "other key" in entry("other-key")["reason"]
    assert "other digest" in entry("other-digest")["reason"]
    assert "other identity" in entry("other-identity")["reason"]
    assert entry("second-valid")["tried"] == [entry("second-valid")["tried"][0]]
    assert entry("second-valid")["tried"][0].startswith("signature-1: other key")
    assert entry("second-valid")["verified_signature"].endswith("/signature-2")
    assert "signature-1 is not there (404)" in entry("first-missing")["reason"]
    assert "unrecognized signature format" in entry("armored")["reason"]
    assert "unreadable" in entry("truncated")["reason"]
    assert "500" in entry("server-500")["reason"]
    arm = by[(refs["index-partial"], corpus["platforms"]["linux/arm64"])]
    assert arm["platform"] == "linux/arm64" and arm["status"] == "missing"
    assert by[(refs["index-partial"], digests["index-partial"])]["status"] == "verified"


def test_the_run_exits_1_and_counts(corpus):
    run, summary = corpus["run"], corpus["results"]["summary"]
    assert run.returncode == 1, run.stderr
    assert summary["total"] == len(CASES) + 2  # the index's two platforms
    # valid, second-valid, truncated-then-valid, the index and its amd64 manifest
    assert summary["verified"] == 5
    assert summary["failed"] == summary["total"] - 5
    assert f"{corpus['refs']['other-key']}@" in run.stderr


def test_done_when_twenty_images_then_a_flipped_byte_and_a_deleted_signature(
        registry, gpg_keys, tmp_path):
    """The issue's 'done when', as a user would: sign 20 images into out/, serve out/, verify;
    flip a byte of one signature (exit 1 naming it), delete another ('missing')."""
    layout = tmp_path / "layouts"
    refs = []
    for n in range(20):
        digest = registry.push(make_image(layout / str(n), f"twenty {n}"), f"twenty/app{n}", "1.0")
        refs.append((f"{registry.host}/twenty/app{n}:1.0", digest))
    (tmp_path / "conf.yaml").write_text(conf(gpg_keys.home))
    out = tmp_path / "out"
    common = ["--config-file", str(tmp_path / "conf.yaml"), "--signing-key", gpg_keys.a,
              *[a for ref, _ in refs for a in ("--image", ref)]]
    assert run_entrypoint(*common, "--output-dir", str(out), env=gpg_keys.env()).returncode == 0
    with LookasideServer(out / "lookaside") as server:
        def verify():
            return run_entrypoint("--mode", "verify", *common, "--lookaside-url",
                                  server.url + "/{registry}", "--output-dir",
                                  str(tmp_path / "v"), env=gpg_keys.env())
        first = verify()
        assert first.returncode == 0, first.stderr
        flipped = sig_folder(out, *refs[3]) / "signature-1"
        data = bytearray(flipped.read_bytes())
        data[len(data) // 2] ^= 0x01
        flipped.write_bytes(bytes(data))
        (sig_folder(out, *refs[7]) / "signature-1").unlink()
        second = verify()
    assert second.returncode == 1
    errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2, second.stderr  # one line for each image that does not verify
    assert f"{refs[3][0]}@{refs[3][1]} key {gpg_keys.a}: invalid" in errors[0] + errors[1]
    assert f"{refs[7][0]}@{refs[7][1]} key {gpg_keys.a}: missing" in errors[0] + errors[1]
    summary = json.loads((tmp_path / "v" / "results.json").read_text())["summary"]
    assert summary == {"verified": 18, "missing": 1, "invalid": 1, "failed": 2, "total": 20}
