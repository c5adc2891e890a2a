"""The cosign signer with Fulcio and Rekor, for real, through the entrypoint: cosign 2.5 signs
keyless (GitHub's ambient token variables, a token file, env://) and with a key plus the
transparency log, against the sigstore test bed (``testbed.sigstore``, one per module, 30-s
tokens). What the run reports (Rekor index and UUID, the certificate's identity and issuer) is
checked against the bed's own log; the signatures against ``cosign verify`` with only the bed's
SIGSTORE_* roots, and skopeo 1.18 with the run's verification/ files. Fault tests: tokens that
expire mid-run, Fulcio 503, Rekor 503 then 409."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import popen_entrypoint, run_entrypoint
from infra.sigstore import cosign_keypair, push_index, registry_manifest, skopeo_copy_all
from testbed.sigstore import Sigstore

PASSWORD = "correct horse battery staple"
REPOSITORY = "octo-org/octo-repo"
WORKFLOW_IDENTITY = f"https://github.com/{REPOSITORY}/.github/workflows/sign.yml@refs/heads/main"
EMAIL = "release@example.com"
ROOTS = ("SIGSTORE_ROOT_FILE", "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE", "SIGSTORE_REKOR_PUBLIC_KEY")
TOKEN_LIFE = 30


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    with Sigstore(tmp_path_factory.mktemp("sigstore"), token_lifetime=TOKEN_LIFE) as testbed:
        yield testbed


@pytest.fixture
def faults(bed):
    yield bed.set_faults
    bed.set_faults(fulcio_fail=0, rekor_fail=0, rekor_lose=0, fail_status=503, fulcio_delay=0)


@pytest.fixture(scope="module")
def keys(tmp_path_factory, trixie_tools):
    key, pub = cosign_keypair(tmp_path_factory.mktemp("keys"), PASSWORD, tools=trixie_tools)
    return key, pub


def conf(bed, **extra) -> dict:
    """cosign_signer with the bed's services and roots (the issue's example), through the cosign
    binary (tests/test_sigstore_native.py covers the in-process path against the same bed)."""
    return {"engine": "cosign", "allow_http_registry": True, "fulcio_url": bed.env["FULCIO_URL"],
            "rekor_url": bed.env["REKOR_URL"], "oidc_issuer": bed.env["OIDC_ISSUER"],
            "fulcio_root_file": bed.env["SIGSTORE_ROOT_FILE"],
            "ctlog_public_key_file": bed.env["SIGSTORE_CT_LOG_PUBLIC_KEY_FILE"],
            "rekor_public_key_file": bed.env["SIGSTORE_REKOR_PUBLIC_KEY"], **extra}


def ambient(bed, email: str | None = None) -> dict:
    """What a GitHub job with ``id-token: write`` has (pointed at the bed)."""
    url = bed.env["ACTIONS_ID_TOKEN_REQUEST_URL"] + (f"&email={email}" if email else "")
    return {"ACTIONS_ID_TOKEN_REQUEST_URL": url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": bed.request_token}


def args_env(tmp_path: Path, tools, config: dict, *args: str, env: dict | None = None,
             out: str = "out") -> tuple[list[str], dict]:
    (tmp_path / f"{out}.yaml").write_text(json.dumps({"cosign_signer": config}))
    return (["--signer", "cosign", "--config-file", str(tmp_path / f"{out}.yaml"),
             "--task-id", "t", "--output-dir", str(tmp_path / out), *args],
            {**tools.cosign_env(PASSWORD), "PATH": f"{tools.cosign.parent}:{os.environ['PATH']}",
             **(env or {})})


def sign(tmp_path, tools, config, *args, env=None, out="out"):
    argv, environ = args_env(tmp_path, tools, config, *args, env=env, out=out)
    return run_entrypoint(*argv, env=environ)


def results(tmp_path, out="out") -> dict:
    return json.loads((tmp_path / out / "results.json").read_text())


def roots(bed) -> dict:
    return {k: bed.env[k] for k in ROOTS}


def cosign_verify(tools, bed, ref: str, *how: str):
    """``cosign verify`` with nothing but the bed's SIGSTORE_* roots."""
    return tools.run_cosign_env(roots(bed), "verify", "--allow-http-registry", *how, ref)


def sig_layers(image, digest: str) -> int:
    raw = registry_manifest(image.host, image.repo, f"sha256-{digest.split(':')[1]}.sig")
    return len(json.loads(raw)["layers"])


def check_log_facts(bed, entry: dict) -> None:
    """The entry's Rekor index and UUID are the bed's own for that entry."""
    logged = bed.rekor.entries[entry["rekor_log_index"]]
    assert logged.uuid == entry["rekor_entry_uuid"], entry


def other_key(tmp_path: Path) -> Path:
    path = tmp_path / "other-rekor.pub"
    path.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def recording_cosign(tmp_path: Path, tools) -> tuple[Path, Path]:
    """A cosign that logs each call (argv, whether GitHub's token variables are set, the mode
    of an --identity-token file) as JSON lines, then runs the real one."""
    log, wrapper = tmp_path / "calls.jsonl", tmp_path / "bin" / "cosign"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(f"""#!{sys.executable}
import json, os, sys
argv = sys.argv[1:]
token = argv[argv.index("--identity-token") + 1] if "--identity-token" in argv else None
with open({str(log)!r}, "a") as f:
    f.write(json.dumps({{"argv": argv, "ambient": "ACTIONS_ID_TOKEN_REQUEST_TOKEN" in os.environ,
                        "token_mode": oct(os.stat(token).st_mode & 0o777) if token else None}})
            + "\\n")
os.execv({str(tools.cosign)!r}, [{str(tools.cosign)!r}, *argv])
""")
    wrapper.chmod(0o755)
    return wrapper, log


# -- keyless from GitHub's identity, and a key with Rekor, in one run -----------------------

@pytest.fixture(scope="module")
def mixed(registry, trixie_tools, bed, keys, tmp_path_factory):
    """A 2-platform index signed keyless (GitHub's ambient variables) and with a key, both
    logged in Rekor, through the entrypoint as a GitHub step; cosign recorded."""
    tmp = tmp_path_factory.mktemp("mixed")
    image = push_index(registry.host, "kl/app", "v1", tmp, content="mixed")
    wrapper, calls = recording_cosign(tmp, trixie_tools)
    summary = tmp / "summary.md"
    run = sign(tmp, trixie_tools, conf(bed, cosign_bin=str(wrapper)),
               "--image", f"{image.by_tag}@{image.digest}", "--signing-key", "keyless",
               "--signing-key", str(keys[0]),
               env={**ambient(bed), "GITHUB_STEP_SUMMARY": str(summary)})
    assert run.returncode == 0, run.stderr
    return tmp, image, run, [json.loads(line) for line in calls.read_text().splitlines()]


def test_keyless_and_key_entries_record_identity_and_log_entry(bed, mixed, keys):
    tmp, image, _, _ = mixed
    res = results(tmp)
    assert res["summary"] == {"signed": 6, "failed": 0, "skipped": 0, "total": 6}
    for entry in res["images"]:
        check_log_facts(bed, entry)
        if entry["signing_key"] == "keyless":
            assert entry["certificate_identity"] == WORKFLOW_IDENTITY
            assert entry["certificate_oidc_issuer"] == bed.env["OIDC_ISSUER"]
            cert = (tmp / "out" / entry["certificate_path"]).read_bytes()
            assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
        else:
            assert "certificate_identity" not in entry and "certificate_path" not in entry
    assert len({e["rekor_log_index"] for e in res["images"]}) == 6
    md = (tmp / "summary.md").read_text()
    assert "| Signature |" in md and "octo\\-org/octo\\-repo" in md
    assert all(e["rekor_entry_uuid"] in md for e in res["images"])


def test_token_variables_reach_keyless_cosign_only_and_never_argv(bed, mixed):
    _, _, run, calls = mixed
    signs = [c for c in calls if c["argv"][2:3] == ["sign"]]
    assert len(signs) == 6
    for call in calls:
        keyless = call["argv"][2:3] == ["sign"] and "--key" not in call["argv"]
        assert call["ambient"] == keyless, call["argv"]
        assert bed.request_token not in json.dumps(call["argv"])
    assert bed.request_token not in run.stdout + run.stderr


def test_cosign_verifies_the_index_and_each_platform(trixie_tools, bed, mixed, keys):
    _, image, _, _ = mixed
    for digest in [image.digest, *image.platforms.values()]:
        ref = image.by_digest(digest)
        proc = cosign_verify(trixie_tools, bed, ref, "--certificate-identity", WORKFLOW_IDENTITY,
                             "--certificate-oidc-issuer", bed.env["OIDC_ISSUER"])
        assert proc.returncode == 0, (ref, proc.stderr)
        proc = cosign_verify(trixie_tools, bed, ref, "--key", str(keys[1]))
        assert proc.returncode == 0 and "verified offline" in proc.stderr, (ref, proc.stderr)
        proc = cosign_verify(trixie_tools, bed, ref, "--certificate-identity", WORKFLOW_IDENTITY,
                             "--certificate-oidc-issuer", "https://accounts.example.com")
        assert proc.returncode != 0


def test_the_generated_cosign_verify_commands_accept(trixie_tools, bed, mixed):
    """A URI identity: podman cannot match it; verification/cosign-verify.sh verifies."""
    tmp, image, _, _ = mixed
    folder = tmp / "out" / "verification"
    readme = (folder / "README.md").read_text()
    assert WORKFLOW_IDENTITY in readme and "cosign verify" in readme
    env = {**trixie_tools.cosign_env(), "PATH": f"{trixie_tools.cosign.parent}:/usr/bin:/bin",
           **{k: str(folder / n) for k, n in zip(ROOTS, ("fulcio_root.pem", "ctlog.pub",
                                                         "rekor.pub"), strict=True)}}
    proc = subprocess.run(["sh", str(folder / "cosign-verify.sh"), "--allow-http-registry"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("Verification for") == 3  # the index and both platforms


def test_skopeo_accepts_the_key_and_rekor_policy_and_refuses_another_rekor_key(
        trixie_tools, mixed, tmp_path):
    tmp, image, _, _ = mixed
    folder = tmp / "out" / "verification"
    policy = json.loads((folder / "policy.json").read_text())
    [rule] = policy["transports"]["docker"][f"{image.host}/{image.repo}"]
    assert rule["rekorPublicKeyPath"] == str(folder / "rekor.pub") and "keyData" in rule
    ok = skopeo_copy_all(trixie_tools, folder / "policy.json", folder / "registries.d",
                         image.by_tag, tmp_path / "pulled")
    assert ok.returncode == 0, ok.stderr
    rule["rekorPublicKeyPath"] = str(other_key(tmp_path))
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    refused = skopeo_copy_all(trixie_tools, tmp_path / "policy.json", folder / "registries.d",
                              image.by_tag, tmp_path / "refused")
    assert refused.returncode != 0 and "Rekor" in refused.stderr, refused.stderr


# -- keyless with an email identity: podman's fulcio policy ---------------------------------

@pytest.fixture(scope="module")
def email_run(registry, trixie_tools, bed, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("email")
    image = push_index(registry.host, "kl/email", "v1", tmp, content="email")
    run = sign(tmp, trixie_tools, conf(bed), "--image", f"{image.by_tag}@{image.digest}",
               "--signing-key", "keyless", env=ambient(bed, EMAIL))
    assert run.returncode == 0, run.stderr
    return tmp, image


def test_skopeo_accepts_the_generated_fulcio_policy(trixie_tools, bed, email_run, tmp_path):
    tmp, image = email_run
    folder = tmp / "out" / "verification"
    assert all(e["certificate_identity"] == EMAIL for e in results(tmp)["images"])
    [rule] = json.loads((folder / "policy.json").read_text())["transports"]["docker"][
        f"{image.host}/{image.repo}"]
    assert rule["fulcio"] == {"caPath": str(folder / "fulcio_root.pem"),
                              "oidcIssuer": bed.env["OIDC_ISSUER"], "subjectEmail": EMAIL}
    assert rule["rekorPublicKeyPath"] == str(folder / "rekor.pub")
    assert (folder / "rekor.pub").read_bytes() == Path(
        bed.env["SIGSTORE_REKOR_PUBLIC_KEY"]).read_bytes()
    ok = skopeo_copy_all(trixie_tools, folder / "policy.json", folder / "registries.d",
                         image.by_tag, tmp_path / "pulled")
    assert ok.returncode == 0, ok.stderr
    assert not (folder / "cosign-verify.sh").exists()


@pytest.mark.parametrize("change,message", [
    ({"oidcIssuer": "https://accounts.example.com"}, "Unexpected Fulcio OIDC issuer"),
    ({"subjectEmail": "someone@example.com"}, "Required email"),
    ({"rekor": True}, "Rekor SET failed")])
def test_skopeo_refuses_another_issuer_email_or_rekor_key(trixie_tools, email_run, tmp_path,
                                                          change, message):
    tmp, image = email_run
    folder = tmp / "out" / "verification"
    policy = json.loads((folder / "policy.json").read_text())
    [rule] = policy["transports"]["docker"][f"{image.host}/{image.repo}"]
    if change.pop("rekor", False):
        rule["rekorPublicKeyPath"] = str(other_key(tmp_path))
    rule["fulcio"].update(change)
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    proc = skopeo_copy_all(trixie_tools, tmp_path / "policy.json", folder / "registries.d",
                           image.by_tag, tmp_path / "pulled")
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


# -- faults ---------------------------------------------------------------------------------

def test_tokens_that_expire_mid_run(registry, trixie_tools, bed, faults, tmp_path):
    """30-s tokens, a slow Fulcio (21 s a certificate) and one cosign at a time: each run
    takes 60+ s. GitHub's ambient token (cosign asks for a fresh one per signature) and a token
    file that a kubelet-like writer replaces every few seconds (read afresh per signature) sign
    everything; a token file that is never replaced (the control) fails once it has expired."""
    faults(fulcio_delay=21)
    image = push_index(registry.host, "kl/long", "v1", tmp_path, content="long")
    target = ("--image", f"{image.by_tag}@{image.digest}", "--signing-key", "keyless")
    rotating, static = tmp_path / "rotating.jwt", tmp_path / "static.jwt"
    rotating.write_text(bed.token())
    static.write_text(bed.token())
    stop, rotations = threading.Event(), [0]

    def rotate():  # what the kubelet does to a projected token
        while not stop.wait(3):
            tmp = rotating.with_suffix(".new")
            tmp.write_text(bed.token())
            os.replace(tmp, rotating)
            rotations[0] += 1

    runs = {name: args_env(tmp_path, trixie_tools, conf(bed, num_threads=1, **extra), *target,
                           env=env, out=name)
            for name, extra, env in (("ambient", {}, ambient(bed)),
                                     ("file", {"identity_token": str(rotating)}, {}),
                                     ("control", {"identity_token": str(static), "retries": 1},
                                      {}))}
    writer = threading.Thread(target=rotate, daemon=True)
    writer.start()
    started = time.monotonic()
    procs = {name: popen_entrypoint(*argv, env=env) for name, (argv, env) in runs.items()}
    try:
        outputs = {name: proc.communicate(timeout=240) for name, proc in procs.items()}
    finally:
        stop.set()
        for proc in procs.values():
            proc.kill() if proc.poll() is None else None
    took = time.monotonic() - started
    assert took > 2 * TOKEN_LIFE
    for name in ("ambient", "file"):
        assert procs[name].returncode == 0, outputs[name][1]
        assert results(tmp_path, name)["summary"]["signed"] == 3
    assert rotations[0] >= 10
    control = results(tmp_path, "control")
    assert procs["control"].returncode == 1
    assert control["summary"]["signed"] >= 1 and control["summary"]["failed"] >= 1
    assert any("401" in (e["error"] or "") or "expired" in (e["error"] or "")
               for e in control["images"]), control["images"]


def test_fulcio_503_then_success(registry, trixie_tools, bed, faults, tmp_path):
    """cosign does not retry Fulcio: the signer runs cosign again."""
    image = push_index(registry.host, "kl/fulcio", "v1", tmp_path, content="fulcio-503")
    faults(fulcio_fail=1)
    run = sign(tmp_path, trixie_tools, conf(bed), "--image", f"{image.by_tag}@{image.digest}",
               "--signing-key", "keyless", "--no-expand-index", env=ambient(bed))
    assert run.returncode == 0, run.stderr
    assert "failed (attempt 1 of 5)" in run.stderr and "503" in run.stderr
    [entry] = results(tmp_path)["images"]
    assert entry["status"] == "ok"
    check_log_facts(bed, entry)
    assert bed.state()["faults"]["seen"]["fulcio"] == 2
    assert sig_layers(image, image.digest) == 1


def test_rekor_503_then_409_signs_once(registry, trixie_tools, bed, keys, faults, tmp_path):
    """Rekor answers 503 (nothing logged), then logs the entry but the answer is lost (503),
    then 409 for the same entry: the image is signed, once, with that entry's index and UUID."""
    image = push_index(registry.host, "kl/rekor", "v1", tmp_path, content="rekor-409")
    before = len(bed.rekor.entries)
    faults(rekor_fail=1, rekor_lose=1)
    run = sign(tmp_path, trixie_tools, conf(bed), "--image", f"{image.by_tag}@{image.digest}",
               "--signing-key", str(keys[0]), "--no-expand-index")
    assert run.returncode == 0, run.stderr
    [entry] = results(tmp_path)["images"]
    assert entry["status"] == "ok"
    assert bed.state()["faults"]["seen"]["rekor"] == 3  # 503, lost 503, 409
    assert len(bed.rekor.entries) == before + 1
    check_log_facts(bed, entry)
    assert entry["rekor_log_index"] == before
    assert sig_layers(image, image.digest) == 1
    proc = cosign_verify(trixie_tools, bed, image.by_digest(), "--key", str(keys[1]))
    assert proc.returncode == 0, proc.stderr


# -- env:// tokens, and what is refused before anything is signed --------------------------

def test_an_env_token_reaches_cosign_as_a_private_file(registry, trixie_tools, bed, tmp_path):
    image = push_index(registry.host, "kl/env", "v1", tmp_path, content="env-token")
    wrapper, calls = recording_cosign(tmp_path, trixie_tools)
    token = bed.token(email=EMAIL)
    run = sign(tmp_path, trixie_tools, conf(bed, cosign_bin=str(wrapper),
                                            identity_token="env://OIDC_TOKEN"),
               "--image", f"{image.by_tag}@{image.digest}", "--signing-key", "keyless",
               "--no-expand-index", env={"OIDC_TOKEN": token, **ambient(bed)})
    assert run.returncode == 0, run.stderr
    [entry] = results(tmp_path)["images"]
    assert entry["certificate_identity"] == EMAIL
    [call] = [c for c in (json.loads(x) for x in calls.read_text().splitlines())
              if c["argv"][2:3] == ["sign"]]
    assert call["token_mode"] == "0o600" and not call["ambient"]  # a token given: no ambient
    assert token not in calls.read_text() + run.stdout + run.stderr


@pytest.mark.parametrize("case", ["no-token", "no-tlog", "no-upload", "token-file-missing",
                                  "not-a-token", "env-unset", "root-missing"])
def test_keyless_refusals_are_one_line(registry, trixie_tools, bed, tmp_path, case):
    digest = "sha256:" + "ab" * 32
    extra: dict = {"no-tlog": {"upload_tlog": False}, "no-upload": {"upload": False},
                   "token-file-missing": {"identity_token": str(tmp_path / "secret-place")},
                   "not-a-token": {"identity_token": str(tmp_path / "junk")},
                   "env-unset": {"identity_token": "env://NOT_SET_HERE"},
                   "root-missing": {"fulcio_root_file": str(tmp_path / "none.pem")}}.get(case, {})
    (tmp_path / "junk").write_text("not a token\n")
    run = sign(tmp_path, trixie_tools, conf(bed, **extra), "--image",
               f"{registry.host}/kl/refused:v1@{digest}", "--signing-key", "keyless",
               "--no-expand-index", env={n: "" for n in ambient(bed)} if case == "no-token"
               else ambient(bed))
    assert run.returncode == 2, run.stderr
    [line] = run.stderr.strip().splitlines()
    expected = {"no-token": "permissions: id-token: write", "no-tlog": "upload_tlog",
                "no-upload": "needs upload true", "token-file-missing": "cannot read",
                "not-a-token": "not an OIDC identity token", "env-unset": "NOT_SET_HERE",
                "root-missing": "fulcio_root_file"}[case]
    assert expected in line and "Traceback" not in line
    assert "secret-place" not in line  # the token's place is a secret: never quoted
    assert not (tmp_path / "out").exists()


def test_the_bed_log_entry_uuid_is_what_results_record(bed, mixed):
    """The UUID is computed (RFC 6962 leaf hash of the canonical body): the bed's body for
    each recorded index hashes to it."""
    import hashlib
    tmp, _, _, _ = mixed
    for entry in results(tmp)["images"]:
        body = bed.rekor.entries[entry["rekor_log_index"]].body
        assert hashlib.sha256(b"\x00" + body).hexdigest() == entry["rekor_entry_uuid"]
    assert stat.S_ISREG((tmp / "out" / "verification" / "fulcio_root.pem").stat().st_mode)


# -- cosign 3.x, when there is one ----------------------------------------------------------

def cosign3(tools) -> str | None:
    """A cosign 3.x binary: COSIGN3_BIN, ``cosign3`` on PATH, or sid's (scripts/
    fetch-sid-cosign.sh; Debian's build says "devel" for its version, the package says 3.x)."""
    import shutil
    if os.environ.get("COSIGN3_BIN") is None and tools.cosign3 is not None:
        return str(tools.cosign3)
    for candidate in (os.environ.get("COSIGN3_BIN"), shutil.which("cosign3")):
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        out = subprocess.run([candidate, "version", "--json"], capture_output=True, text=True,
                             timeout=30)
        try:
            version = str(json.loads(out.stdout).get("gitVersion", ""))
        except ValueError:
            continue
        if version.lstrip("v").startswith("3."):
            return candidate
    return None


def test_cosign_3_signs_keyless_in_the_legacy_format(registry, trixie_tools, bed, tmp_path):
    """cosign 3.x defaults to bundles and signing configs: the signer's flags keep the legacy
    ``.sig`` tag, which cosign 2.5 verifies."""
    binary = cosign3(trixie_tools)
    if binary is None:
        pytest.skip("no cosign 3.x binary here (set COSIGN3_BIN to one)")
    image = push_index(registry.host, "kl/cosign3", "v1", tmp_path, content="cosign3")
    run = sign(tmp_path, trixie_tools, conf(bed, cosign_bin=binary), "--image",
               f"{image.by_tag}@{image.digest}", "--signing-key", "keyless",
               "--no-expand-index", env=ambient(bed))
    assert run.returncode == 0, run.stderr
    check_log_facts(bed, results(tmp_path)["images"][0])
    assert sig_layers(image, image.digest) == 1
    proc = cosign_verify(trixie_tools, bed, image.by_digest(), "--certificate-identity",
                         WORKFLOW_IDENTITY, "--certificate-oidc-issuer", bed.env["OIDC_ISSUER"])
    assert proc.returncode == 0, proc.stderr
