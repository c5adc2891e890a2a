"""End to end with real parts: gpg signs, docker-registry serves, skopeo verifies with the
policy.json and registries.d that the run generated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import (
    gpg_decrypt,
    make_image,
    popen_entrypoint,
    run_entrypoint,
    skopeo_copy_verified,
    wait_until,
)


@pytest.fixture(scope="module")
def images(registry, tmp_path_factory):
    """Two distinct images in the registry: ns/app:v1 and team/sub/tool:2.0."""
    tmp = tmp_path_factory.mktemp("images")
    app = registry.push(make_image(tmp / "app", "app v1"), "ns/app", "v1")
    tool = registry.push(make_image(tmp / "tool", "tool 2.0"), "team/sub/tool", "2.0")
    return {"app": (f"{registry.host}/ns/app:v1", app),
            "tool": (f"{registry.host}/team/sub/tool:2.0", tool)}


def sign(out: Path, gpg_keys, key: str, *pairs: tuple[str, str]):
    args = ["--signer", "gpg", "--signing-key", key, "--task-id", "t1", "--output-dir", str(out)]
    for ref, digest in pairs:
        args += ["--reference", ref, "--digest", digest]
    return run_entrypoint(*args, env=gpg_keys.env())


def test_signed_images_pass_skopeo_with_the_generated_policy(tmp_path, gpg_keys, images):
    out = tmp_path / "out"
    run = sign(out, gpg_keys, gpg_keys.a, images["app"], images["tool"])
    assert run.returncode == 0, run.stderr

    results = json.loads((out / "results.json").read_text())
    assert [e["status"] for e in results["images"]] == ["ok", "ok"]
    for (ref, digest), entry in zip([images["app"], images["tool"]], results["images"]):
        sig = out / entry["signature_path"]
        host = ref.split("/")[0].replace(":", "_")
        assert sig.parent.parent.parts[-1] in ("ns", "sub")
        assert str(sig.relative_to(out)).startswith(f"lookaside/{host}/")
        claim, signer = gpg_decrypt(sig.read_bytes(), gpg_keys.home)
        assert signer == gpg_keys.a
        critical = json.loads(claim)["critical"]
        assert critical == {"type": "atomic container signature",
                            "image": {"docker-manifest-digest": digest},
                            "identity": {"docker-reference": ref}}

    for ref, _ in images.values():
        pulled = skopeo_copy_verified(out, ref, tmp_path)
        assert pulled.returncode == 0, pulled.stderr


def test_an_unsigned_image_is_rejected_by_the_same_policy(tmp_path, gpg_keys, images):
    out = tmp_path / "out"
    assert sign(out, gpg_keys, gpg_keys.a, images["app"]).returncode == 0
    # Same repository policy, but this run never signed ns/app's digest for tool: use a
    # policy naming both repositories, and pull the one not signed.
    policy = json.loads((out / "verification" / "policy.json").read_text())
    requirement = policy["transports"]["docker"][images["app"][0].rsplit(":", 1)[0]]
    policy["transports"]["docker"][images["tool"][0].rsplit(":", 1)[0]] = requirement
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    pulled = skopeo_copy_verified(out, images["tool"][0], tmp_path, tmp_path / "policy.json")
    assert pulled.returncode != 0
    assert "A signature was required, but no signature exists" in pulled.stderr


def test_a_signature_by_another_key_is_rejected(tmp_path, gpg_keys, images):
    trusted, other = tmp_path / "trusted", tmp_path / "other"
    assert sign(trusted, gpg_keys, gpg_keys.a, images["app"]).returncode == 0
    assert sign(other, gpg_keys, gpg_keys.b, images["app"]).returncode == 0
    # Signatures by key B, judged by the policy that trusts key A.
    pulled = skopeo_copy_verified(other, images["app"][0], tmp_path,
                                  trusted / "verification" / "policy.json")
    assert pulled.returncode != 0
    assert "signature" in pulled.stderr.lower() and "key" in pulled.stderr.lower(), pulled.stderr
    # ...while key B's own policy accepts them: the rejection is about the key alone.
    assert skopeo_copy_verified(other, images["app"][0], tmp_path).returncode == 0


def test_a_signature_for_another_digest_is_rejected(tmp_path, gpg_keys, images):
    out = tmp_path / "out"
    ref, digest = images["app"]
    _, other_digest = images["tool"]
    assert sign(out, gpg_keys, gpg_keys.a, (ref, other_digest)).returncode == 0
    # Put the signature (a claim for the other digest) where readers look for this image's.
    made = next(out.rglob("signature-1"))
    target = made.parent.parent / f"app@sha256={digest.split(':')[1]}"
    target.mkdir()
    shutil.copy(made, target / "signature-1")
    pulled = skopeo_copy_verified(out, ref, tmp_path)
    assert pulled.returncode != 0
    assert "does not match" in pulled.stderr, pulled.stderr


def test_a_signature_for_another_identity_is_rejected(tmp_path, gpg_keys, images):
    out = tmp_path / "out"
    ref, digest = images["app"]
    other_tag = ref.rsplit(":", 1)[0] + ":v2"  # same repository and digest, other tag
    assert sign(out, gpg_keys, gpg_keys.a, (other_tag, digest)).returncode == 0
    pulled = skopeo_copy_verified(out, ref, tmp_path)
    assert pulled.returncode != 0
    assert "is not accepted" in pulled.stderr, pulled.stderr


def test_a_second_run_adds_signature_2_and_both_verify(tmp_path, gpg_keys, images):
    out = tmp_path / "out"
    assert sign(out, gpg_keys, gpg_keys.a, images["app"]).returncode == 0
    assert sign(out, gpg_keys, gpg_keys.b, images["app"]).returncode == 0
    folder = next(out.rglob("signature-1")).parent
    assert sorted(p.name for p in folder.iterdir()) == ["signature-1", "signature-2"]
    _, first = gpg_decrypt((folder / "signature-1").read_bytes(), gpg_keys.home)
    _, second = gpg_decrypt((folder / "signature-2").read_bytes(), gpg_keys.home)
    assert (first, second) == (gpg_keys.a, gpg_keys.b)
    # The second run's policy trusts key B: skopeo must walk past signature-1 (key A) to 2.
    assert skopeo_copy_verified(out, images["app"][0], tmp_path).returncode == 0


def test_skip_signed_with_a_lookaside_url(tmp_path, gpg_keys, images):
    """A second run pointed at the first run's (published) lookaside skips what verifies there:
    same key, digest and identity. Another key, or a planted signature for another digest, does
    not count."""
    first = tmp_path / "first"
    assert sign(first, gpg_keys, gpg_keys.a, images["app"]).returncode == 0
    url = (first.resolve() / "lookaside" / "{registry}").as_uri() \
        .replace("%7B", "{").replace("%7D", "}")

    def again(out, key, *pairs, extra=()):
        args = ["--signer", "gpg", "--signing-key", key, "--task-id", "t2", "--output-dir",
                str(out), "--lookaside-url", url, *extra]
        for ref, digest in pairs:
            args += ["--reference", ref, "--digest", digest]
        run = run_entrypoint(*args, env=gpg_keys.env())
        assert run.returncode == 0, run.stderr
        return json.loads((out / "results.json").read_text())

    res = again(tmp_path / "same", gpg_keys.a, images["app"], images["tool"])
    by_ref = {e["reference"]: e for e in res["images"]}
    assert by_ref[images["app"][0]]["status"] == "skipped"
    assert "signature-1" in by_ref[images["app"][0]]["reason"]
    assert by_ref[images["tool"][0]]["status"] == "ok"  # not signed before: signed now

    other_key = again(tmp_path / "other", gpg_keys.b, images["app"])
    assert other_key["summary"]["signed"] == 1

    no_skip = again(tmp_path / "forced", gpg_keys.a, images["app"], extra=["--no-skip-signed"])
    assert no_skip["summary"]["signed"] == 1

    # the app's signature planted where the tool's would be: wrong digest and identity
    ref, digest = images["tool"]
    host, path = ref.split("/", 1)
    tree = first / "lookaside" / host.replace(":", "_")
    planted = tree / f"{path.rsplit(':', 1)[0]}@sha256={digest[7:]}"
    planted.mkdir(parents=True)
    app_ref, app_digest = images["app"]
    app_sig = next(tree.glob("ns/app@*/signature-1"))
    shutil.copy(app_sig, planted / "signature-1")
    res = again(tmp_path / "planted", gpg_keys.a, images["tool"])
    assert res["summary"]["signed"] == 1


def test_key_files_from_a_read_only_folder(tmp_path, gpg_keys, images):
    """As in a Tekton Task or a Kubernetes Secret: the key is a file in a read-only mount. It is
    imported into a private GnuPG home that the run removes; the signature verifies."""
    import os
    import subprocess
    keys = tmp_path / "keys"
    keys.mkdir()
    exported = subprocess.run(
        ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", gpg_keys.passphrase,
         "--armor", "--export-secret-keys", gpg_keys.protected],
        env={**os.environ, **gpg_keys.env()}, capture_output=True, check=True).stdout
    (keys / "release.asc").write_bytes(exported)
    (keys / "passphrase").write_text(gpg_keys.passphrase + "\n")
    keys.chmod(0o555)
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"gpg_signer:\n  key_files: [{keys / 'release.asc'}]\n"
                    f"  passphrase_file: {keys / 'passphrase'}\n")
    bindir, log = tmp_path / "bin", tmp_path / "argv.log"  # which home the run used
    bindir.mkdir()
    (bindir / "gpg").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n'
                                f'exec {shutil.which("gpg")} "$@"\n')
    (bindir / "gpg").chmod(0o755)
    ref, digest = images["app"]
    out = tmp_path / "out"
    run = run_entrypoint("--signer", "gpg", "--config-file", str(conf), "--reference", ref,
                         "--digest", digest, "--signing-key", gpg_keys.protected,
                         "--output-dir", str(out), env={"GNUPGHOME": str(tmp_path / "none"),
                                                        "PATH": f"{bindir}:{os.environ['PATH']}"})
    assert run.returncode == 0, run.stderr
    sig = next(out.glob("lookaside/*/ns/app@*/signature-1"))
    claim, signer = gpg_decrypt(sig.read_bytes(), gpg_keys.home)
    assert signer == gpg_keys.protected and digest in claim.decode()
    homes = {w for w in log.read_text().split() if "/csa-gnupg-" in w}
    assert homes and not any(Path(h).exists() for h in homes)  # the private home is gone
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"gpg_signer:\n  key_files: [{keys / 'missing.asc'}]\n")
    refused = run_entrypoint("--signer", "gpg", "--config-file", str(bad), "--reference", ref,
                             "--digest", digest, "--signing-key", gpg_keys.protected,
                             "--output-dir", str(tmp_path / "out2"))
    assert refused.returncode == 2
    assert "gpg_signer.key_files[1]" in refused.stderr and "no such file" in refused.stderr


# -- keys with a passphrase, ambiguous keys, the run's own gpg-agent --------------------------

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def sign_two(tmp_path, gpg_keys, *args, env=None):
    """Two images signed with ``args`` (keys, config); the run's gpg argv recorded in
    tmp_path/argv.log."""
    bindir, log = tmp_path / "bin", tmp_path / "argv.log"
    bindir.mkdir(exist_ok=True)
    (bindir / "gpg").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n'
                                f'exec {shutil.which("gpg")} "$@"\n')
    (bindir / "gpg").chmod(0o755)
    run = run_entrypoint(*args, "--reference", "r.io/ns/a:1", "--digest", D1, "--reference",
                         "r.io/ns/b:1", "--digest", D2, "--output-dir", str(tmp_path / "out"),
                         env={**gpg_keys.env(), "PATH": f"{bindir}:{os.environ['PATH']}",
                              **(env or {})})
    return run, (log.read_text() if log.exists() else "")


def refused(run, tmp_path, message: str) -> None:
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == [f"error: {message}"], run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def passphrase_config(tmp_path, passphrase: str) -> tuple[str, str]:
    path = tmp_path / "passphrase"
    path.write_text(passphrase + "\n")
    return str(path), f"gpg_signer: {{passphrase_file: {path}}}"


def test_a_protected_key_without_a_passphrase_file_is_refused_before_signing(tmp_path, gpg_keys):
    """Not "Sorry, we are in batchmode" once per image: one line naming passphrase_file."""
    run, _ = sign_two(tmp_path, gpg_keys, "--signing-key", gpg_keys.a, "--signing-key",
                      gpg_keys.protected)
    refused(run, tmp_path, f"config: gpg_signer.passphrase_file: key {gpg_keys.protected} "
                           "needs a passphrase: give passphrase_file")


def test_a_wrong_passphrase_is_refused_before_signing(tmp_path, gpg_keys):
    path, conf = passphrase_config(tmp_path, "not the passphrase")
    run, _ = sign_two(tmp_path, gpg_keys, "--config", conf, "--signing-key", gpg_keys.protected)
    refused(run, tmp_path, f"config: gpg_signer.passphrase_file: the passphrase in {path!r} "
                           f"does not unlock key {gpg_keys.protected}")
    assert "not the passphrase" not in run.stdout + run.stderr


def test_a_passphrase_cached_by_the_users_gpg_agent_does_not_hide_a_wrong_one(tmp_path,
                                                                              gpg_keys):
    """The user's gpg-agent holds the right passphrase (a signature made just before): the run
    signs through an agent of its own, which knows nothing, so the wrong passphrase_file is
    found out. The run's home and agent are gone when it ends."""
    subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase",
                    gpg_keys.passphrase, "--local-user", gpg_keys.protected, "--sign"],
                   input=b"cache it", env={**os.environ, **gpg_keys.env()},
                   capture_output=True, check=True)
    try:
        path, conf = passphrase_config(tmp_path, "not the passphrase")
        run, argv = sign_two(tmp_path, gpg_keys, "--config", conf, "--signing-key",
                             gpg_keys.protected)
        refused(run, tmp_path, f"config: gpg_signer.passphrase_file: the passphrase in "
                               f"{path!r} does not unlock key {gpg_keys.protected}")
        uses = [ln for ln in argv.splitlines() if "sign" in ln or "--passwd" in ln]
        assert uses and all("/csa-gnupg-" in ln for ln in uses), argv  # never the user's home
    finally:
        gpg_keys.forget_passphrases()
    # the right passphrase: signed in a private home, which is gone with its agent; the
    # user's secret keys are as they were (the copy alone is re-protected for speed)
    path, conf = passphrase_config(tmp_path, gpg_keys.passphrase)
    (tmp_path / "argv.log").unlink()
    secrets = {p.name: p.read_bytes()
               for p in Path(gpg_keys.home, "private-keys-v1.d").iterdir()}
    run, argv = sign_two(tmp_path, gpg_keys, "--config", conf, "--signing-key",
                         gpg_keys.protected)
    assert run.returncode == 0, run.stderr
    assert {p.name: p.read_bytes()
            for p in Path(gpg_keys.home, "private-keys-v1.d").iterdir()} == secrets
    homes = {word for line in argv.splitlines() if " --sign" in f" {line}"
             for word in line.split() if "/csa-gnupg-" in word}
    assert len(homes) == 1, argv
    home = homes.pop()
    assert not Path(home).exists()

    def agents() -> list[str]:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if home.encode() in cmdline.read_bytes():
                    found.append(str(cmdline))
            except OSError:
                pass
        return found

    wait_until(lambda: not agents(), 10, "the run's gpg-agent ended")


def test_an_ambiguous_signing_key_is_refused_naming_the_keys(tmp_path, gpg_keys):
    run, _ = sign_two(tmp_path, gpg_keys, "--signing-key", "test.invalid")
    assert run.returncode == 2, run.stderr
    line, = run.stderr.splitlines()
    assert line.startswith("error: signing key 'test.invalid': ambiguous, 3 secret keys in ")
    assert all(fpr in line for fpr in (gpg_keys.a, gpg_keys.b, gpg_keys.protected)), line
    assert not (tmp_path / "out").exists()
    # a user id that names one key is fine: signed with that key
    run, _ = sign_two(tmp_path, gpg_keys, "--signing-key", "Key B")
    assert run.returncode == 0, run.stderr
    sig = next((tmp_path / "out").rglob("signature-1"))
    assert gpg_decrypt(sig.read_bytes(), gpg_keys.home)[1] == gpg_keys.b


def test_the_private_copy_of_a_protected_key_is_cheap_to_unlock(gpg_keys):
    """The user's protected key is protected with gpg's calibrated iteration count (~10^8 here:
    ~0.6 s of gpg-agent CPU per signature, one at a time, so 200 images took ~100 s); the run's
    private copy is re-protected with the smallest count once the passphrase is known. The
    user's own file is not touched."""
    import re
    from types import SimpleNamespace

    from signaction.plan import SigningKey
    from signers.base import Options
    from signers.gpg import GpgSigner

    def s2k_counts(home) -> set[int]:
        """The iteration counts in a home's secret key files: (sha1 SALT COUNT), the salt in
        any of the S-expression spellings (#hex#, "string", |base64|, token)."""
        salt = rb'(?:#[0-9A-Fa-f]*#|"(?:[^"\\]|\\.)*"|\|[^|]*\||[^\s()"#|]+)'
        return {int(n) for f in Path(home, "private-keys-v1.d").iterdir()
                for n in re.findall(rb'\(sha1\s*' + salt + rb'\s*"?(\d+)"?\)', f.read_bytes())}

    passfile = Path(gpg_keys.home).parent / "p-cheap"
    passfile.write_text(gpg_keys.passphrase + "\n")
    theirs = s2k_counts(gpg_keys.home)
    signer = GpgSigner({"passphrase_file": str(passfile)},
                       Options.default({**os.environ, **gpg_keys.env()}))
    signer.preflight(SimpleNamespace(keys=[SigningKey(gpg_keys.protected, gpg_keys.protected)]))
    try:
        assert s2k_counts(signer.gnupg_home) == {65536}, [
            f.read_bytes()[:400] for f in Path(signer.gnupg_home, "private-keys-v1.d").iterdir()]
        assert theirs and min(theirs) > 65536 and s2k_counts(gpg_keys.home) == theirs
    finally:
        home = signer.gnupg_home
        del signer  # its home and agent go with it
    assert not Path(home).exists()


def test_a_sigterm_that_lands_on_a_worker_thread_still_ends_the_run(tmp_path, gpg_keys):
    """The kernel hands a process's SIGTERM to any of its threads; Python runs the handler in
    the main thread only when that thread runs again. Sent here to a gpg worker thread (tgkill)
    while the main thread waits for a gpg that hangs: the run must still end promptly, keeping
    what was signed."""
    import ctypes
    import platform
    import signal

    tgkill = {"x86_64": 234, "aarch64": 131}.get(platform.machine())
    if tgkill is None:
        pytest.skip(f"tgkill's syscall number on {platform.machine()} is not known here")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    hung = tmp_path / "hung"
    (bindir / "gpg").write_text(f"""#!/bin/sh
case " $* " in *" --sign "*)
  if mkdir {tmp_path}/slot 2>/dev/null; then exec {shutil.which("gpg")} "$@"; fi
  touch {hung}; exec sleep 300;;
esac
exec {shutil.which("gpg")} "$@"
""")
    (bindir / "gpg").chmod(0o755)
    out = tmp_path / "out"
    refs = [a for n in range(4) for a in ("--reference", f"r.io/ns/app{n}:1", "--digest",
                                          f"sha256:{n:064x}")]
    proc = popen_entrypoint("--signing-key", gpg_keys.a, *refs, "--output-dir", str(out),
                            env={**gpg_keys.env(), "PATH": f"{bindir}:{os.environ['PATH']}"})
    try:
        wait_until(lambda: hung.exists() and len(list(out.rglob("signature-*"))) == 1, 60,
                   "one signature made and a gpg hung", proc)
        workers = [int(t.name) for t in Path(f"/proc/{proc.pid}/task").iterdir()
                   if int(t.name) != proc.pid]
        assert workers
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.syscall(tgkill, proc.pid, workers[0], signal.SIGTERM) == 0
        _, stderr = proc.communicate(timeout=10)  # promptly: not when the hung gpg ends
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stderr
    results = json.loads((out / "results.json").read_text())
    assert sorted(e["status"] for e in results["images"]) == ["failed"] * 3 + ["ok"]
    assert results["signer_result"]["error_message"] == "the run was stopped (SIGTERM)"
