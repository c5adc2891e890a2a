"""The entrypoint as a process: exit codes, one-line errors, dry run, partial failure, secrets,
GitHub outputs. Signing uses real gpg keys."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

import pytest

from conftest import gpg_decrypt, popen_entrypoint, run_entrypoint
from test_github import parse_github_output

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def two_images():
    return ["--reference", "r.io/ns/a:1", "--digest", D1, "--reference", "r.io/ns/b:1",
            "--digest", D2]


@pytest.mark.parametrize("args,message", [
    (["--config", "gpg_signer: {bogus: 1}"], "error: config: gpg_signer.bogus: unknown key"),
    (["--reference", "ns/a:1", "--digest", D1],
     "error: --reference #3: 'ns/a:1' is not fully qualified"),
    (["--image", f"r.io/a:1@{D1}", "--image", "r.io/b@sha256:x"],
     "error: --image #2: 'r.io/b@sha256:x' is not a valid docker reference"),
    (["--signing-key", "0000000000000000DEADBEEF00000000DEADBEEF"],
     "error: signing key '0000000000000000DEADBEEF00000000DEADBEEF': no secret key for it"),
    (["--log-level", "loud"], "error: argument --log-level: invalid choice: 'loud'"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, gpg_keys, args, message):
    base = ["--signing-key", gpg_keys.a, *two_images()]
    run = run_entrypoint(*base, *args, "--output-dir", str(tmp_path / "out"),
                         env=gpg_keys.env())
    assert run.returncode == 2
    assert run.stderr.splitlines() == [run.stderr.strip()], run.stderr
    assert run.stderr.startswith(message), run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert not (tmp_path / "out").exists()


def test_dry_run_prints_the_plan_and_signs_nothing(tmp_path, gpg_keys):
    run = run_entrypoint("--signing-key", gpg_keys.a, "--signing-key", gpg_keys.b, *two_images(),
                         "--dry-run", "--output-dir", str(tmp_path / "out"), env=gpg_keys.env())
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:4] == [f"would sign r.io/ns/a:1@{D1} with key {gpg_keys.a}",
                         f"would sign r.io/ns/a:1@{D1} with key {gpg_keys.b}",
                         f"would sign r.io/ns/b:1@{D2} with key {gpg_keys.a}",
                         f"would sign r.io/ns/b:1@{D2} with key {gpg_keys.b}"]
    assert "4 signature(s); nothing was signed" in lines[4]
    assert not (tmp_path / "out").exists()


def test_the_issue_example_signs_and_skopeo_verifies(tmp_path, gpg_keys):
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1'
                         b'+json","config":{},"layers":[]}')
    digest = "sha256:" + subprocess.run(["sha256sum", str(manifest)], capture_output=True,
                                        text=True, check=True).stdout[:64]
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"gpg_signer: {{gnupg_home: {gpg_keys.home}}}\n")
    run = run_entrypoint("--signer", "gpg", "--config-file", str(conf), "--reference",
                         "registry.example.com/ns/app:1.0", "--digest", digest, "--signing-key",
                         gpg_keys.a, "--task-id", "t1", "--output-dir", "out", cwd=tmp_path,
                         env={"GNUPGHOME": str(tmp_path / "not-this-one")})
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["signer_result"] == {"status": "ok", "error_message": ""}
    assert results["operation"]["task_id"] == "t1"
    sig = tmp_path / "out" / results["images"][0]["signature_path"]
    verify = subprocess.run(["skopeo", "standalone-verify", str(manifest),
                             "registry.example.com/ns/app:1.0", gpg_keys.a, str(sig)],
                            capture_output=True, text=True, env={**os.environ, **gpg_keys.env()})
    assert verify.returncode == 0, verify.stderr
    assert "Signature verified" in verify.stdout


def test_some_failures_exit_1_and_keep_the_rest(tmp_path, gpg_keys, gpg_refusing):
    # (a wrong passphrase_file is refused before signing now: the key fails mid-run instead)
    passfile = tmp_path / "pass"
    passfile.write_text(gpg_keys.passphrase + "\n")
    conf = f"gpg_signer: {{passphrase_file: {passfile}}}"
    gpg_keys.forget_passphrases()
    run = run_entrypoint("--config", conf, "--signing-key", gpg_keys.a, "--signing-key",
                         gpg_keys.protected, *two_images(), "--output-dir",
                         str(tmp_path / "out"),
                         env={**gpg_keys.env(), **gpg_refusing(gpg_keys.protected)})
    assert run.returncode == 1, run.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    by_key = {}
    for entry in results["images"]:
        by_key.setdefault(entry["signing_key"], []).append(entry)
    assert [e["status"] for e in by_key[gpg_keys.a]] == ["ok", "ok"]
    assert [e["status"] for e in by_key[gpg_keys.protected]] == ["failed", "failed"]
    assert all("passphrase" in e["error"].lower() for e in by_key[gpg_keys.protected])
    assert results["signer_result"]["status"] == "error"
    assert results["signer_result"]["error_message"] == "2 of 4 signature(s) failed"
    for entry in by_key[gpg_keys.a]:
        _, fpr = gpg_decrypt((tmp_path / "out" / entry["signature_path"]).read_bytes(),
                             gpg_keys.home)
        assert fpr == gpg_keys.a
    assert "error: 2 of 4 signature(s) failed" in run.stderr


def test_all_failed_still_writes_results(tmp_path, gpg_keys, gpg_refusing):
    run = run_entrypoint("--signing-key", gpg_keys.a, *two_images(), "--output-dir",
                         str(tmp_path / "out"), env={**gpg_keys.env(), **gpg_refusing(gpg_keys.a)},
                         timeout=60)
    assert run.returncode == 1  # and it did not hang on a prompt: there is none
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [e["status"] for e in results["images"]] == ["failed", "failed"]
    assert results["summary"] == {"signed": 0, "failed": 2, "skipped": 0, "total": 2}


@pytest.fixture
def recording_gpg(tmp_path):
    """A gpg on PATH that records its argv, then runs the real one."""
    real = shutil.which("gpg")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "argv.log"
    wrapper = bindir / "gpg"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}, log


def test_passphrase_from_file_signs_and_never_reaches_argv(tmp_path, gpg_keys, recording_gpg):
    path_env, log = recording_gpg
    passfile = tmp_path / "pass"
    passfile.write_text(gpg_keys.passphrase + "\n")
    gpg_keys.forget_passphrases()
    run = run_entrypoint("--config", f"gpg_signer: {{passphrase_file: {passfile}}}",
                         "--signing-key", gpg_keys.protected, *two_images(), "--output-dir",
                         str(tmp_path / "out"), env={**gpg_keys.env(), **path_env})
    assert run.returncode == 0, run.stderr
    calls = log.read_text()
    assert "--sign" in calls and "--passphrase-fd" in calls
    assert gpg_keys.passphrase not in calls
    assert gpg_keys.passphrase not in run.stdout + run.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert gpg_keys.passphrase not in json.dumps(results)


def test_github_mode_masks_first_writes_outputs_summary_and_annotations(tmp_path, gpg_keys,
                                                                        gpg_refusing):
    passfile = tmp_path / "pass"
    passfile.write_text(f"{gpg_keys.passphrase}\nsecond line\n")
    gpg_keys.forget_passphrases()
    output, summary = tmp_path / "gh_output", tmp_path / "gh_summary"
    env = {**gpg_keys.env(), **gpg_refusing(gpg_keys.protected), "GITHUB_ACTIONS": "true",
           "GITHUB_OUTPUT": str(output),
           "GITHUB_STEP_SUMMARY": str(summary),
           "INPUT_CONFIG": f"gpg_signer: {{passphrase_file: {passfile}}}",
           "INPUT_SIGNING-KEYS": f"{gpg_keys.a}\n{gpg_keys.protected}\n",
           "INPUT_IMAGES": f"r.io/ns/a:1@{D1}\nr.io/ns/b:1@{D2}\n",
           "INPUT_OUTPUT-DIR": str(tmp_path / "out"), "INPUT_TASK-ID": "t-9"}
    run = run_entrypoint(env=env)
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"::add-mask::{gpg_keys.passphrase}"  # the passphrase file's first line
    assert not any(gpg_keys.passphrase in line for line in lines[1:] + run.stderr.splitlines())
    assert "::group::Signing 4 signature(s)" in lines and "::endgroup::" in lines
    errors = [line for line in lines if line.startswith("::error ")]
    assert len(errors) == 2 and all("title=Signing failed%3A r.io/ns/" in e for e in errors)
    outputs = parse_github_output(output.read_text())
    assert outputs == {"status": "partial", "signed-count": "2", "verified-count": "0",
                       "failed-count": "2",
                       "results-file": str(tmp_path / "out" / "results.json"),
                       "signatures-dir": str(tmp_path / "out")}
    text = summary.read_text()
    assert "**2 signed**, **2 failed**" in text and text.count("❌ failed") == 2


def test_outside_github_no_workflow_commands_appear(tmp_path, gpg_keys):
    run = run_entrypoint("--signing-key", gpg_keys.a, *two_images(), "--output-dir",
                         str(tmp_path / "out"), env=gpg_keys.env())
    assert run.returncode == 0
    assert "::" not in run.stdout + run.stderr


def test_invalid_input_in_github_mode_reports_and_sets_status(tmp_path, gpg_keys):
    output = tmp_path / "gh_output"
    run = run_entrypoint(env={**gpg_keys.env(), "GITHUB_ACTIONS": "true",
                              "GITHUB_OUTPUT": str(output), "INPUT_SIGNING-KEYS": gpg_keys.a,
                              "INPUT_REFERENCES": "r.io/a:1\nr.io/b:1", "INPUT_DIGESTS": D1})
    assert run.returncode == 2
    assert "::error title=Invalid input::input 'references' has 2 value(s)" in run.stdout
    assert parse_github_output(output.read_text())["status"] == "invalid-input"


def test_sigterm_keeps_what_was_signed_and_reports_the_rest(tmp_path, gpg_keys):
    """A gpg that signs twice, then hangs: SIGTERM must end the run promptly, keep both
    signatures, and report every other item as not signed because the run was stopped."""
    import signal

    from conftest import wait_until
    real = shutil.which("gpg")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    hung = tmp_path / "hung"
    wrapper = bindir / "gpg"
    wrapper.write_text(f"""#!/bin/sh
case " $* " in *" --sign "*)
  if mkdir {tmp_path}/slot1 2>/dev/null || mkdir {tmp_path}/slot2 2>/dev/null; then
    exec {real} "$@"
  fi
  touch {hung}; exec sleep 300;;
esac
exec {real} "$@"
""")
    wrapper.chmod(0o755)
    out = tmp_path / "out"
    refs = []
    for n in range(6):
        refs += ["--reference", f"r.io/ns/app{n}:1", "--digest", f"sha256:{n:064x}"]
    proc = popen_entrypoint("--signing-key", gpg_keys.a, *refs, "--output-dir", str(out),
                            env={**gpg_keys.env(), "PATH": f"{bindir}:{os.environ['PATH']}"})
    try:
        wait_until(lambda: hung.exists() and len(list(out.rglob("signature-*"))) == 2, 60,
                   "two signatures made and a gpg hung", proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)  # promptly, not after gpg's 120 s timeout
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    results = json.loads((out / "results.json").read_text())
    statuses = [e["status"] for e in results["images"]]
    assert statuses.count("ok") == 2 and statuses.count("failed") == 4
    stopped = [e["error"] for e in results["images"] if e["status"] == "failed"]
    assert all(e == "not signed: the run was stopped (SIGTERM)" for e in stopped), stopped
    assert results["signer_result"]["error_message"] == "the run was stopped (SIGTERM)"
    for e in results["images"]:
        if e["status"] == "ok":
            _, fpr = gpg_decrypt((out / e["signature_path"]).read_bytes(), gpg_keys.home)
            assert fpr == gpg_keys.a
    assert not list(out.rglob(".tmp-*"))


def test_a_python_without_the_requirements_gets_one_line_not_a_traceback():
    import subprocess
    import sys

    from conftest import ENTRYPOINT
    run = subprocess.run([sys.executable, "-S", str(ENTRYPOINT), "--help"], capture_output=True,
                         text=True, timeout=60)  # -S: no site-packages, as a bare system python
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: ") and ".venv/bin/python" in run.stderr


def test_failures_past_the_annotation_cap_are_one_annotation(tmp_path, gpg_keys, gpg_refusing):
    """60 failures: 50 annotations one by one (GitHub shows 10 a step), then one for the rest;
    results.json and the summary still have every one."""
    images = "".join(f"r.io/ns/app{n}:1@sha256:{n:064x}\n" for n in range(60))
    env = {**gpg_keys.env(), **gpg_refusing(gpg_keys.a), "GITHUB_ACTIONS": "true",
           "INPUT_SIGNING-KEYS": gpg_keys.a, "INPUT_IMAGES": images,
           "INPUT_OUTPUT-DIR": str(tmp_path / "out")}
    run = run_entrypoint(env=env)
    assert run.returncode == 1, run.stderr
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error ")]
    assert len(errors) == 51 and "...and 10 more: see " in errors[-1]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["summary"]["failed"] == 60
