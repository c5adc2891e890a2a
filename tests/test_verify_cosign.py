"""Verify mode with cosign signatures, for real: cosign 2.5 signs through the entrypoint with a
key and keyless (an email identity) against the sigstore test bed, logged in its Rekor; verify
mode checks the `.sig` attachments in-process (payload, key or Fulcio chain and identity, the
Rekor SET); each verdict is compared with skopeo 1.18's (``copy --all``) under the same key,
Fulcio and Rekor roots."""

from __future__ import annotations

import json
import os

import pytest

from conftest import make_image, run_entrypoint
from infra.sigstore import (
    cosign_keypair,
    push_index,
    skopeo_bed_policies,
    skopeo_copy_all,
)
from testbed.sigstore import Sigstore

PASSWORD = "correct horse battery staple"
EMAIL = "release@example.com"
CASES = ("valid", "index", "other-key", "other-identity", "index-partial", "unsigned")
EXPECTED = {"valid": "verified", "index": "verified", "other-key": "invalid",
            "other-identity": "invalid", "index-partial": "missing", "unsigned": "missing"}


def conf(bed, rekor: str | None = None) -> str:
    return json.dumps({"registry": {"allow_http": True}, "cosign_signer": {
        "fulcio_url": bed.env["FULCIO_URL"], "rekor_url": bed.env["REKOR_URL"],
        "oidc_issuer": bed.env["OIDC_ISSUER"], "fulcio_root_file": bed.env["SIGSTORE_ROOT_FILE"],
        "ctlog_public_key_file": bed.env["SIGSTORE_CT_LOG_PUBLIC_KEY_FILE"],
        "rekor_public_key_file": rekor or bed.env["SIGSTORE_REKOR_PUBLIC_KEY"]}})


@pytest.fixture(scope="module")
def corpus(registry, trixie_tools, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verify-cosign")
    with Sigstore(tmp / "bed", token_lifetime=300) as bed:
        key, pub = cosign_keypair(tmp, PASSWORD, tools=trixie_tools)
        other, _ = cosign_keypair(tmp, "other", name="other", tools=trixie_tools)
        refs, indexes = {}, {}
        for case in CASES:
            if case.startswith("index"):
                image = push_index(registry.host, f"vc/{case}", "v1", tmp, content=case)
                refs[case], indexes[case] = (image.by_tag, image.digest), image
            else:
                refs[case] = (f"{registry.host}/vc/{case}:v1",
                              registry.push(make_image(tmp / case, case), f"vc/{case}", "v1"))
        env = {**trixie_tools.cosign_env(PASSWORD),
               "PATH": f"{trixie_tools.cosign.parent}:{os.environ['PATH']}",
               "ACTIONS_ID_TOKEN_REQUEST_URL": bed.env["ACTIONS_ID_TOKEN_REQUEST_URL"]
               + f"&email={EMAIL}", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": bed.request_token}
        (tmp / "conf.json").write_text(conf(bed))

        def sign(*args: str, out: str, password: str = PASSWORD):
            run = run_entrypoint("--signer", "cosign", "--config-file", str(tmp / "conf.json"),
                                 "--output-dir", str(tmp / out), *args,
                                 env={**env, "COSIGN_PASSWORD": password})
            assert run.returncode == 0, run.stderr

        def image(case: str, identity: str = "") -> list[str]:
            return ["--image", f"{refs[case][0]}@{refs[case][1]}{identity}"]
        both = ["--signing-key", str(key), "--signing-key", "keyless"]
        sign(*both, *image("valid"), *image("index"),
             *image("other-identity", f" as {registry.host}/vc/elsewhere:v1"), out="s1")
        sign(*both, *image("index-partial"), "--no-expand-index", out="s2")
        sign("--signing-key", str(other), "--signing-key", "keyless", *image("other-key"),
             out="s3", password="other")
        # the other-key image's keyless signature names the identity expected, but the key
        # check is the point: drop it from the keyless comparison below
        verify_env = {"PATH": env["PATH"], "HOME": env["HOME"]}  # no password, no token

        def verify(*args: str, out: str, cases=CASES):
            return run_entrypoint(
                "--mode", "verify", "--signer", "cosign", "--config-file", str(tmp / "conf.json"),
                "--certificate-identity", EMAIL, "--certificate-oidc-issuer",
                bed.env["OIDC_ISSUER"], "--output-dir", str(tmp / out), *args,
                *[a for c in cases for a in ("--image", refs[c][0])], env=verify_env)
        ours = verify("--signing-key", str(pub), "--signing-key", "keyless", out="v")
        only_good = verify("--signing-key", str(pub), "--signing-key", "keyless", out="v-good",
                           cases=("valid", "index"))
        private = run_entrypoint(
            "--mode", "verify", "--signer", "cosign", "--config-file", str(tmp / "conf.json"),
            "--signing-key", str(key), "--output-dir", str(tmp / "v-private"),
            *image("valid"), env={**verify_env, "COSIGN_PASSWORD": PASSWORD})
        wrong = {name: run_entrypoint(
            "--mode", "verify", "--signer", "cosign", "--config-file", str(tmp / "conf.json"),
            "--signing-key", "keyless", "--certificate-identity", identity,
            "--certificate-oidc-issuer", issuer, "--output-dir", str(tmp / f"v-{name}"),
            *image("valid"), env=verify_env)
            for name, identity, issuer in (
                ("identity", "someone@example.com", bed.env["OIDC_ISSUER"]),
                ("issuer", EMAIL, "https://accounts.example.com"))}
        (tmp / "other-rekor.json").write_text(conf(bed, rekor=str(tmp / "other.pub")))
        other_rekor = run_entrypoint(
            "--mode", "verify", "--signer", "cosign", "--config-file",
            str(tmp / "other-rekor.json"), "--signing-key", str(pub), "--output-dir",
            str(tmp / "v-rekor"), *image("valid"), env=verify_env)
        regd, key_policy, fulcio_policy = skopeo_bed_policies(tmp, registry.host, pub,
                                                              bed.env, EMAIL)
        skopeo = {(case, which): skopeo_copy_all(trixie_tools, policy, regd, refs[case][0],
                                                 tmp / f"pulled-{case}-{which}")
                  for case in CASES for which, policy in (("key", key_policy),
                                                          ("keyless", fulcio_policy))}
    return {"tmp": tmp, "refs": refs, "ours": ours, "only_good": only_good, "private": private,
            "other_rekor": other_rekor, "skopeo": skopeo, "pub": str(pub), "wrong": wrong}


def entries(corpus, out="v") -> list[dict]:
    return json.loads((corpus["tmp"] / out / "results.json").read_text())["images"]


@pytest.mark.parametrize("which", ["key", "keyless"])
@pytest.mark.parametrize("case", CASES)
def test_each_verdict_is_skopeos(corpus, case, which):
    if (case, which) == ("other-key", "keyless"):
        pytest.skip("signed keyless as expected: the case is about the key")
    key = corpus["pub"] if which == "key" else "keyless"
    mine = [e for e in entries(corpus) if e["reference"] == corpus["refs"][case][0]
            and e["signing_key"] == key]
    assert mine
    ours = all(e["status"] == "verified" for e in mine)
    theirs = corpus["skopeo"][(case, which)]
    assert ours == (theirs.returncode == 0), (case, which, mine, theirs.stderr)
    worst = next((e for e in mine if e["status"] != "verified"), mine[0])
    assert worst["status"] == EXPECTED[case], worst


def test_the_reasons_and_the_log_entries(corpus):
    by = {(e["reference"], e.get("platform"), e["signing_key"]): e for e in entries(corpus)}
    refs, pub = corpus["refs"], corpus["pub"]
    valid = by[(refs["valid"][0], None, "keyless")]
    assert valid["certificate_identity"] == EMAIL and valid["rekor_log_index"] >= 0
    assert isinstance(by[(refs["valid"][0], None, pub)]["rekor_integrated_time"], int)
    assert "other key" in by[(refs["other-key"][0], None, pub)]["reason"]
    assert "other identity" in by[(refs["other-identity"][0], None, pub)]["reason"]
    assert "no signature" in by[(refs["unsigned"][0], None, pub)]["reason"]
    assert by[(refs["index-partial"][0], None, pub)]["status"] == "verified"  # the index is
    assert corpus["ours"].returncode == 1


def test_done_when_signed_images_verify_with_key_keyless_and_the_private_key(corpus):
    assert corpus["only_good"].returncode == 0, corpus["only_good"].stderr
    assert len(entries(corpus, "v-good")) == 2 * (1 + 3)  # two keys x (image, index + 2)
    assert corpus["private"].returncode == 0, corpus["private"].stderr  # cosign public-key


def test_another_rekor_key_refuses_the_set(corpus):
    run = corpus["other_rekor"]
    assert run.returncode == 1
    [entry] = entries(corpus, "v-rekor")
    # the SET names another log than the configured Rekor's key (its logID), so it is refused
    # before its signature is tried: a transparency finding, whatever the words
    assert entry["findings"][0]["finding"] == "transparency", entry
    assert "another log" in entry["findings"][0]["detail"], entry


@pytest.mark.parametrize("which,words", [("identity", "the certificate names"),
                                         ("issuer", "OIDC issuer is")])
def test_keyless_with_another_identity_or_issuer_is_invalid(corpus, which, words):
    assert corpus["wrong"][which].returncode == 1
    [entry] = entries(corpus, f"v-{which}")
    assert entry["status"] == "invalid" and words in entry["reason"], entry


def test_a_fifo_as_the_signing_key_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "cosign.pub"
    os.mkfifo(fifo)  # opening it to read would block until a writer comes: never
    run = run_entrypoint("--mode", "verify", "--no-expand-index", "--signer", "cosign",
                         "--signing-key", str(fifo), "--image",
                         f"127.0.0.1:9/ns/app:1@sha256:{'a' * 64}",
                         "--output-dir", str(tmp_path / "v"), timeout=60)
    assert run.returncode == 2, run.stderr
    assert "not a regular file" in run.stderr and run.stderr.count("error:") == 1, run.stderr
    assert not (tmp_path / "v").exists()
