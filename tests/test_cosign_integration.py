"""The cosign signer for real: cosign 2.5 from trixie, a docker-registry on loopback, multi-arch
images; signatures checked by cosign verify and by skopeo 1.18's sigstoreSigned policy."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_entrypoint
from infra.sigstore import (
    cosign_keypair,
    cosign_verify,
    push_index,
    registries_d,
    skopeo_copy_all,
    skopeo_sigstore_policy,
)

PASSWORD = "correct horse battery staple"
CONF = "cosign_signer: {allow_http_registry: true, upload_tlog: false}\n"


@pytest.fixture(scope="module")
def keys(tmp_path_factory, trixie_tools):
    folder = tmp_path_factory.mktemp("cosign-keys")
    key, pub = cosign_keypair(folder, PASSWORD, tools=trixie_tools)
    other_key, other_pub = cosign_keypair(folder, "other", name="other", tools=trixie_tools)
    return {"key": key, "pub": pub, "other_key": other_key, "other_pub": other_pub}


def sign(tmp_path, trixie_tools, *args, conf=CONF, password=PASSWORD, out="out"):
    (tmp_path / "conf.yaml").write_text(conf)
    env = {**trixie_tools.cosign_env(password),
           "PATH": f"{trixie_tools.cosign.parent}:{os.environ['PATH']}"}
    if password is None:
        env.pop("COSIGN_PASSWORD", None)
    return run_entrypoint("--signer", "cosign", "--config-file", str(tmp_path / "conf.yaml"),
                          "--task-id", "t", "--output-dir", str(tmp_path / out), *args, env=env)


def results(tmp_path, out="out"):
    return json.loads((tmp_path / out / "results.json").read_text())


def sig_layers(registry, repo, digest) -> int:
    from infra.sigstore import registry_manifest
    try:
        raw = registry_manifest(registry.host, repo, f"sha256-{digest.split(':')[1]}.sig")
    except OSError:
        return 0
    return len(json.loads(raw)["layers"])


def test_the_issue_example_signs_the_index_and_every_platform(registry, trixie_tools, keys,
                                                               tmp_path):
    image = push_index(registry.host, "ns/app", "v1", tmp_path)
    run = sign(tmp_path, trixie_tools, "--reference", image.by_tag, "--digest", image.digest,
               "--signing-key", str(keys["key"]))
    assert run.returncode == 0, run.stderr
    res = results(tmp_path)
    signed = {(e["digest"], e.get("platform")) for e in res["images"] if e["status"] == "ok"}
    assert signed == {(image.digest, None), *((d, p) for p, d in image.platforms.items())}
    assert res["summary"] == {"signed": 3, "failed": 0, "skipped": 0, "total": 3}

    # cosign verify: every digest, and the payload names the tagged identity and the tag
    for digest in [image.digest, *image.platforms.values()]:
        check = cosign_verify(trixie_tools, keys["pub"], image.by_digest(digest))
        assert check.returncode == 0, check.stderr
        payload = json.loads(check.stdout)[0]
        assert payload["critical"]["identity"]["docker-reference"] == image.by_tag
        assert payload["critical"]["image"]["docker-manifest-digest"] == digest
        assert payload["optional"]["tag"] == "v1"
        assert cosign_verify(trixie_tools, keys["other_pub"],
                             image.by_digest(digest)).returncode != 0

    # skopeo 1.18, the policy podman uses: copy --all by tag, with our own verification files...
    out = tmp_path / "out" / "verification"
    pulled = skopeo_copy_all(trixie_tools, out / "policy.json", out / "registries.d",
                             image.by_tag, tmp_path / "pulled")
    assert pulled.returncode == 0, pulled.stderr
    # ...and with a policy written by hand; another key is refused
    regd = registries_d(tmp_path / "regd", registry.host)
    policy = skopeo_sigstore_policy(tmp_path / "p.json", keys["pub"], scope=registry.host)
    assert skopeo_copy_all(trixie_tools, policy, regd, image.by_tag,
                           tmp_path / "p2").returncode == 0
    other = skopeo_sigstore_policy(tmp_path / "o.json", keys["other_pub"], scope=registry.host)
    refused = skopeo_copy_all(trixie_tools, other, regd, image.by_tag, tmp_path / "p3")
    assert refused.returncode != 0 and "signature" in refused.stderr.lower()

    # what cosign signed is kept in the output folder too
    entry = next(e for e in res["images"] if e["digest"] == image.digest)
    sig = tmp_path / "out" / entry["signature_path"]
    payload = tmp_path / "out" / entry["payload_path"]
    assert json.loads(payload.read_bytes())["critical"]["image"]["docker-manifest-digest"] == \
        image.digest and sig.read_text().strip()

    # the same command again: everything is already signed, nothing new is pushed
    layers = sig_layers(registry, "ns/app", image.digest)
    again = sign(tmp_path, trixie_tools, "--reference", image.by_tag, "--digest", image.digest,
                 "--signing-key", str(keys["key"]), out="again")
    assert again.returncode == 0, again.stderr
    res2 = results(tmp_path, "again")
    assert res2["summary"] == {"signed": 0, "failed": 0, "skipped": 3, "total": 3}
    assert all("already signed" in e["reason"] for e in res2["images"])
    assert "already signed" in again.stderr
    assert sig_layers(registry, "ns/app", image.digest) == layers

    # another key is not "already signed"
    third = sign(tmp_path, trixie_tools, "--image", f"{image.by_tag}@{image.digest}",
                 "--signing-key", str(keys["other_key"]), "--no-expand-index", password="other",
                 out="third")
    assert third.returncode == 0, third.stderr
    assert results(tmp_path, "third")["summary"]["signed"] == 1
    assert sig_layers(registry, "ns/app", image.digest) == layers + 1


def test_a_tag_without_digest_is_resolved_and_signed_by_digest(registry, trixie_tools, keys,
                                                               tmp_path):
    image = push_index(registry.host, "ns/bytag", "v2", tmp_path, content="bytag")
    run = sign(tmp_path, trixie_tools, "--image", image.by_tag, "--no-expand-index",
               "--signing-key", str(keys["key"]))
    assert run.returncode == 0, run.stderr
    (entry,) = results(tmp_path)["images"]
    assert entry["digest"] == image.digest and entry["status"] == "ok"
    assert cosign_verify(trixie_tools, keys["pub"], image.by_digest()).returncode == 0


def test_an_identity_other_than_the_location(registry, trixie_tools, keys, tmp_path):
    image = push_index(registry.host, "staging/app", "rc1", tmp_path, content="staged")
    public = "registry.example.com/prod/app:1.0"
    run = sign(tmp_path, trixie_tools, "--image", f"{image.by_tag}@{image.digest} as {public}",
               "--no-expand-index", "--signing-key", str(keys["key"]))
    assert run.returncode == 0, run.stderr
    (entry,) = results(tmp_path)["images"]
    assert entry["reference"] == public and entry["location"] == image.by_tag
    check = cosign_verify(trixie_tools, keys["pub"], image.by_digest())
    assert check.returncode == 0, check.stderr
    payload = json.loads(check.stdout)[0]
    assert payload["critical"]["identity"]["docker-reference"] == public
    assert payload["optional"]["tag"] == "1.0"


def test_upload_false_writes_files_and_a_script_that_attaches_them(registry, trixie_tools, keys,
                                                                   tmp_path):
    image = push_index(registry.host, "ns/later", "v1", tmp_path, content="later")
    run = sign(tmp_path, trixie_tools, "--image", f"{image.by_tag}@{image.digest}",
               "--signing-key", str(keys["key"]), "--no-upload")
    assert run.returncode == 0, run.stderr
    assert results(tmp_path)["summary"]["signed"] == 3
    assert cosign_verify(trixie_tools, keys["pub"], image.by_digest()).returncode == 10  # none yet
    script = tmp_path / "out" / "cosign-attach.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    env = {**trixie_tools.cosign_env(),
           "PATH": f"{trixie_tools.cosign.parent}:{os.environ['PATH']}"}
    attach = subprocess.run(["sh", str(script), "--allow-http-registry=true"], env=env, cwd="/",
                            capture_output=True, text=True, timeout=300)
    assert attach.returncode == 0, attach.stderr
    for digest in [image.digest, *image.platforms.values()]:
        assert cosign_verify(trixie_tools, keys["pub"], image.by_digest(digest)).returncode == 0
    out = tmp_path / "out" / "verification"
    assert skopeo_copy_all(trixie_tools, out / "policy.json", out / "registries.d",
                           image.by_tag, tmp_path / "pulled").returncode == 0


def test_bad_keys_and_passwords_are_one_line_errors(registry, trixie_tools, keys, tmp_path):
    image = push_index(registry.host, "ns/bad", "v1", tmp_path, content="bad")
    ref = f"{image.by_tag}@{image.digest}"
    missing = sign(tmp_path, trixie_tools, "--image", ref, "--signing-key", "/nope/cosign.key")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    wrong = sign(tmp_path, trixie_tools, "--image", ref, "--signing-key", str(keys["key"]),
                 password="wrong")
    assert wrong.returncode == 2 and "cannot use it" in wrong.stderr
    assert "Traceback" not in wrong.stderr + missing.stderr
    assert "wrong" not in wrong.stderr.replace("wrong password", "")  # the password is not echoed
    assert not (tmp_path / "out").exists()  # nothing half-written
    assert cosign_verify(trixie_tools, keys["pub"], image.by_digest()).returncode == 10


def test_secrets_never_reach_cosign_argv(registry, trixie_tools, keys, tmp_path):
    """A wrapper records cosign's argv and environment: the key password and the registry
    password are in the environment (COSIGN_PASSWORD, DOCKER_CONFIG's file), never in argv."""
    image = push_index(registry.host, "ns/argv", "v1", tmp_path, content="argv")
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "bin" / "cosign"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\n"
                       f"exec {trixie_tools.cosign} \"$@\"\n")
    wrapper.chmod(0o755)
    conf = ("cosign_signer: {allow_http_registry: true, upload_tlog: false, engine: cosign, "
            f"cosign_bin: {wrapper}, registry_user: bob, registry_password: s3cr3t-pw}}\n")
    run = sign(tmp_path, trixie_tools, "--image", f"{image.by_tag}@{image.digest}",
               "--no-expand-index", "--signing-key", str(keys["key"]), conf=conf)
    assert run.returncode == 0, run.stderr
    argv = log.read_text()
    assert " sign " in argv and PASSWORD not in argv and "s3cr3t-pw" not in argv
    assert "s3cr3t-pw" not in (tmp_path / "out" / "results.json").read_text()
    assert "s3cr3t-pw" not in run.stdout + run.stderr


def test_one_digest_is_never_signed_by_two_cosigns_at_once(registry, trixie_tools, keys,
                                                            tmp_path):
    """Two keys for each of three images, four threads: the images are signed in parallel, but
    the two signatures of one digest one after the other (cosign rewrites the one .sig manifest:
    two writers at once lose a signature). A wrapper logs when each cosign sign starts and ends."""
    images = [push_index(registry.host, f"ns/par{i}", "v1", tmp_path, content=f"par{i}")
              for i in range(3)]
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "bin" / "cosign"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/sh\n"
        '[ "$3" = sign ] || exec ' + f'{trixie_tools.cosign} "$@"\n'
        'for last; do :; done\n'
        f'echo "start $last $(date +%s.%N)" >> {log}\n'
        f'{trixie_tools.cosign} "$@"; rc=$?\n'
        f'echo "end $last $(date +%s.%N)" >> {log}\n'
        "exit $rc\n")
    wrapper.chmod(0o755)
    # the other key has another password: a password file would serve one key only, so both
    # keys get the same one here
    key2, pub2 = cosign_keypair(tmp_path, PASSWORD, name="second", tools=trixie_tools)
    conf = ("cosign_signer: {allow_http_registry: true, upload_tlog: false, num_threads: 4, "
            f"engine: cosign, cosign_bin: {wrapper}}}\n")
    args = [a for i in images for a in ("--image", f"{i.by_tag}@{i.digest}")]
    run = sign(tmp_path, trixie_tools, *args, "--no-expand-index", "--signing-key",
               str(keys["key"]), "--signing-key", str(key2), conf=conf)
    assert run.returncode == 0, run.stderr
    assert results(tmp_path)["summary"]["signed"] == 6
    spans: dict[str, list[list[float]]] = {}
    for line in log.read_text().splitlines():
        what, target, at = line.split()
        if what == "start":
            spans.setdefault(target, []).append([float(at), float("inf")])
        else:
            next(s for s in spans[target] if s[1] == float("inf"))[1] = float(at)
    assert len(spans) == 3 and all(len(s) == 2 for s in spans.values())
    for (a0, a1), (b0, b1) in spans.values():
        assert a1 <= b0 or b1 <= a0, "one digest signed by two cosign processes at once"
    events = sorted((t, d) for s in spans.values() for a, b in s for t, d in ((a, 1), (b, -1)))
    running = peak = 0
    for _, d in events:
        running += d
        peak = max(peak, running)
    assert peak >= 2, "the images were not signed in parallel"
    for i in images:  # both signatures kept
        assert sig_layers(registry, i.repo, i.digest) == 2
        assert cosign_verify(trixie_tools, pub2, i.by_digest()).returncode == 0


def test_through_an_authenticating_flaky_registry(registry, fault_proxy, trixie_tools, keys,
                                                  tmp_path):
    """The registry (behind the proxy) wants a Bearer token, answers 429 with Retry-After to the
    first tag lookup and 500 to the first signature read. The configured credentials reach both
    the registry client (lookups, skip check) and cosign (its pushes), never argv."""
    image = push_index(registry.host, "ns/flaky", "v1", tmp_path, content="flaky")
    fault_proxy.require_bearer("ci-bot", "pa55-w0rd")
    fault_proxy.fail_next(r"/v2/ns/flaky/manifests/v1$", 429, {"Retry-After": "1"}, method="HEAD")
    fault_proxy.fail_next(r"/v2/ns/flaky/manifests/sha256-.*\.sig$", 500, method="GET")
    conf = ("cosign_signer: {allow_http_registry: true, upload_tlog: false, "
            "registry_user: ci-bot, registry_password: pa55-w0rd}\n")
    run = sign(tmp_path, trixie_tools, "--image", f"{fault_proxy.host}/ns/flaky:v1",
               "--signing-key", str(keys["key"]), conf=conf)
    assert run.returncode == 0, run.stderr
    assert results(tmp_path)["summary"]["signed"] == 3
    # the tag lookup: 429, retried after Retry-After; then the token dance; then the answer
    assert [r.status for r in fault_proxy.requests_to(r"/manifests/v1$", "HEAD")] == \
        [429, 401, 200]
    assert any(r.status == 500 for r in fault_proxy.requests_to(r"\.sig$", "GET"))
    pushes = fault_proxy.requests_to(r"/manifests/sha256-.*\.sig$", "PUT")
    assert len(pushes) == 3 and all(r.status == 201 for r in pushes)
    assert fault_proxy.token_requests  # cosign and the client got tokens with the credentials
    for digest in [image.digest, *image.platforms.values()]:  # straight from the registry
        assert cosign_verify(trixie_tools, keys["pub"], image.by_digest(digest)).returncode == 0
    assert "pa55-w0rd" not in run.stdout + run.stderr


def test_the_deadline_ends_a_hung_cosign_and_keeps_what_was_signed(registry, trixie_tools, keys,
                                                                   tmp_path):
    fast = push_index(registry.host, "ns/fast", "v1", tmp_path, content="fast")
    hung = push_index(registry.host, "ns/hung", "v1", tmp_path, content="hung")
    wrapper = tmp_path / "bin" / "cosign"
    wrapper.parent.mkdir()
    wrapper.write_text("#!/bin/sh\n"
                       f'case "$*" in *{hung.digest}*) exec sleep 60;; esac\n'
                       f'exec {trixie_tools.cosign} "$@"\n')
    wrapper.chmod(0o755)
    conf = ("cosign_signer: {allow_http_registry: true, upload_tlog: false, num_threads: 2, "
            f"engine: cosign, cosign_bin: {wrapper}}}\n")
    import time
    start = time.monotonic()
    run = sign(tmp_path, trixie_tools, "--image", f"{fast.by_tag}@{fast.digest}", "--image",
               f"{hung.by_tag}@{hung.digest}", "--no-expand-index", "--deadline", "6",
               "--signing-key", str(keys["key"]), conf=conf)
    took = time.monotonic() - start
    assert run.returncode == 1, run.stderr
    by_digest = {e["digest"]: e for e in results(tmp_path)["images"]}
    assert by_digest[fast.digest]["status"] == "ok"
    assert by_digest[hung.digest]["status"] == "failed"
    assert "deadline" in by_digest[hung.digest]["error"]
    assert took < 6 + 4, f"the run took {took:.1f} s with a 6 s deadline"
    assert cosign_verify(trixie_tools, keys["pub"], fast.by_digest()).returncode == 0


def test_pubtools_sign_cosign_container_sign_command(registry, trixie_tools, keys, tmp_path):
    """pubtools-sign's cosign command (the venv's console script): its flags, its JSON on stdout;
    the signature is cosign's own, for the tagged identity, and only the digest given is signed
    (no expansion)."""
    command = str(Path(sys.executable).parent / "pubtools-sign-cosign-container-sign")
    image = push_index(registry.host, "ns/tool", "v2", tmp_path)
    (tmp_path / "conf.yaml").write_text(CONF)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))},
           **trixie_tools.cosign_env(PASSWORD),
           "PATH": f"{trixie_tools.cosign.parent}:{os.environ['PATH']}"}
    run = subprocess.run([command, "--config-file", str(tmp_path / "conf.yaml"), "--signing-key",
                          str(keys["key"]), "--digest", image.digest, "--reference", image.by_tag],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    response = json.loads(run.stdout)
    assert response["signer_result"] == {"status": "ok", "error_message": ""}
    assert list(response) == ["signer_result", "operation_results", "operation", "signing_keys"]
    assert response["operation"]["references"] == [image.by_tag]
    assert len(response["operation_results"]) == 1 and response["signing_keys"] == \
        [str(keys["key"])]
    check = cosign_verify(trixie_tools, keys["pub"], image.by_digest(image.digest))
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)[0]["critical"]["identity"]["docker-reference"] == \
        image.by_tag
    platform = next(iter(image.platforms.values()))
    assert cosign_verify(trixie_tools, keys["pub"], image.by_digest(platform)).returncode != 0

    no_tag = subprocess.run([command, "--signing-key", str(keys["key"]), "--digest",
                             f"{registry.host}/ns/tool@{image.digest}"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert no_tag.returncode == 2 and "--reference is required" in no_tag.stderr


def test_sharded_upload_false_runs_merge_into_one_attach_script(registry, trixie_tools, keys,
                                                                 tmp_path):
    """Two multi-arch images signed with upload false as 2 shards (whichever shard owns what),
    merged: one cosign-attach.sh for all six signatures, which attaches them for cosign verify;
    the merged verification/ is the shards' (for the whole plan) and lets skopeo pull both."""
    images = [push_index(registry.host, f"ns/shard{n}", "v1", tmp_path / f"i{n}",
                         content=f"shard {n}") for n in range(2)]
    args = [a for image in images for a in ("--image", f"{image.by_tag}@{image.digest}")]
    for k in (1, 2):
        run = sign(tmp_path, trixie_tools, *args, "--signing-key", str(keys["key"]),
                   "--no-upload", "--shard", f"{k}/2", out=f"shard-{k}")
        assert run.returncode == 0, run.stderr
    merged = run_entrypoint("merge", "--output-dir", str(tmp_path / "merged"),
                            str(tmp_path / "shard-1"), str(tmp_path / "shard-2"))
    assert merged.returncode == 0, merged.stderr
    assert results(tmp_path, "merged")["summary"]["signed"] == 6
    script = tmp_path / "merged" / "cosign-attach.sh"
    lines = script.read_text().splitlines()
    assert len([line for line in lines if line.startswith("cosign attach signature")]) == 6
    env = {**trixie_tools.cosign_env(),
           "PATH": f"{trixie_tools.cosign.parent}:{os.environ['PATH']}"}
    attach = subprocess.run(["sh", str(script), "--allow-http-registry=true"], env=env, cwd="/",
                            capture_output=True, text=True, timeout=300)
    assert attach.returncode == 0, attach.stderr
    out = tmp_path / "merged" / "verification"
    for image in images:
        for digest in [image.digest, *image.platforms.values()]:
            assert cosign_verify(trixie_tools, keys["pub"],
                                 image.by_digest(digest)).returncode == 0
        assert skopeo_copy_all(trixie_tools, out / "policy.json", out / "registries.d",
                               image.by_tag, tmp_path / f"pulled-{image.digest[7:15]}"
                               ).returncode == 0
