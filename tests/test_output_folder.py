"""The output folder under hostile conditions: links planted where the run writes, registry names
that look like the run's own files, unwritable folders and files, a full disk."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import gpg_decrypt, run_entrypoint

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def sign(out: Path, gpg_keys, *refs: tuple[str, str], env: dict | None = None):
    args = ["--signer", "gpg", "--signing-key", gpg_keys.a, "--task-id", "t",
            "--output-dir", str(out)]
    for ref, digest in refs:
        args += ["--reference", ref, "--digest", digest]
    return run_entrypoint(*args, env={**gpg_keys.env(), **(env or {})})


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("planted", ["verification", "verification/registries.d", "lookaside"])
def test_a_link_where_a_folder_should_be_is_refused_and_never_followed(tmp_path, gpg_keys,
                                                                       planted):
    outside = tmp_path / "etc-containers"
    outside.mkdir()
    out = tmp_path / "out"
    (out / planted).parent.mkdir(parents=True, exist_ok=True)
    (out / planted).symlink_to(outside)
    run = sign(out, gpg_keys, ("r.io/ns/app:1", D1))
    assert run.returncode == 2
    assert "is not a folder" in one_error_line(run.stderr)
    assert list(outside.iterdir()) == [] and not (out / "results.json").exists()


def test_a_link_in_place_of_results_json_is_replaced_not_followed(tmp_path, gpg_keys):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").symlink_to(victim)
    assert sign(out, gpg_keys, ("r.io/ns/app:1", D1)).returncode == 0
    assert victim.read_text() == "keep me"
    assert not (out / "results.json").is_symlink()
    assert json.loads((out / "results.json").read_text())["summary"]["signed"] == 1


@pytest.mark.parametrize("host", ["results.json", "cosign-attach.sh", "verification.io"])
def test_registry_names_cannot_collide_with_the_run_s_own_files(tmp_path, gpg_keys, host):
    out = tmp_path / "out"
    run = sign(out, gpg_keys, (f"{host}/ns/app:1", D1), ("r.io/verification/app:1", D2))
    assert run.returncode == 0, run.stderr
    results = json.loads((out / "results.json").read_text())
    assert [e["status"] for e in results["images"]] == ["ok", "ok"]
    for entry in results["images"]:
        claim, _ = gpg_decrypt((out / entry["signature_path"]).read_bytes(), gpg_keys.home)
        assert json.loads(claim)["critical"]["identity"]["docker-reference"] == \
            entry["reference"]
    assert (out / "verification" / "policy.json").is_file()


def test_an_unwritable_output_folder_is_refused_before_signing(gpg_keys):
    run = sign(Path("/sys/kernel"), gpg_keys, ("r.io/ns/app:1", D1))  # read-only even for root
    assert run.returncode == 2
    assert "output folder '/sys/kernel'" in one_error_line(run.stderr)
    assert "signed" not in run.stderr


def test_an_unwritable_github_output_is_one_line_and_exit_1(tmp_path, gpg_keys):
    out = tmp_path / "out"
    run = sign(out, gpg_keys, ("r.io/ns/app:1", D1),
               env={"GITHUB_OUTPUT": str(tmp_path / "no-such-folder" / "output")})
    assert run.returncode == 1
    assert "could not write GITHUB_OUTPUT" in one_error_line(run.stderr)
    assert json.loads((out / "results.json").read_text())["summary"]["signed"] == 1


@pytest.fixture
def tiny_disk(tmp_path):
    """``tiny_disk(pages)``: a 64 KiB tmpfs filled up but for ``pages`` pages of 4 KiB."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")

    def filled(pages: int) -> Path:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:  # ENOSPC: full
            pass
        finally:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - pages * 4096))
            os.close(fd)
        return mount
    try:
        yield filled
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_refused_before_anything_is_signed(tiny_disk, gpg_keys):
    """The writability probe writes a page: a full disk (which still takes an empty file) is
    one line and exit 2 before any signature is made, and nothing is left."""
    out = tiny_disk(0) / "out"
    run = sign(out, gpg_keys, ("r.io/ns/app:1", D1), ("r.io/ns/app:2", D2))
    assert run.returncode == 2
    assert "No space left on device" in one_error_line(run.stderr)
    assert "Traceback" not in run.stderr and "signed" not in run.stderr
    assert list(out.rglob("*")) == []


def test_a_disk_that_fills_during_the_run_fails_what_it_loses_in_one_line_each(tiny_disk,
                                                                              gpg_keys):
    """One page left: the probe passes, the first signature takes the page, the rest and
    results.json do not fit: exit 1, each loss said in one line, what was written is whole and
    no temporary file is left."""
    out = tiny_disk(1) / "out"
    run = sign(out, gpg_keys, ("r.io/ns/app:1", D1), ("r.io/ns/app:2", D2))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("error: ")]
    assert any("could not write results.json: No space left on device" in e for e in errors)
    assert all("No space left" in e or "signature(s) failed" in e for e in errors), errors
    assert "could not write the signature: No space left on device" in run.stderr
    assert len(list(out.rglob("signature-*"))) <= 1 and list(out.rglob(".tmp-*")) == []
    for written in out.rglob("signature-*"):
        claim, _ = gpg_decrypt(written.read_bytes(), gpg_keys.home)
        assert json.loads(claim)["critical"]["type"] == "atomic container signature"


def test_a_rerun_into_the_same_folder_counts_what_is_there_and_files_no_duplicate(tmp_path,
                                                                               gpg_keys):
    out = tmp_path / "out"
    assert sign(out, gpg_keys, ("r.io/ns/app:1", D1)).returncode == 0
    first = sorted(p.relative_to(out) for p in out.rglob("signature-*"))
    run = sign(out, gpg_keys, ("r.io/ns/app:1", D1), ("r.io/ns/app:2", D2))
    assert run.returncode == 0, run.stderr
    results = json.loads((out / "results.json").read_text())
    assert [e["status"] for e in results["images"]] == ["skipped", "ok"]
    assert "signature-1" in results["images"][0]["reason"]
    assert results["summary"] == {"signed": 1, "failed": 0, "skipped": 1, "total": 2}
    names = sorted(p.relative_to(out) for p in out.rglob("signature-*"))
    assert len(names) == 2 and set(first) < set(names)
    assert all(p.name == "signature-1" for p in names)  # no duplicate signature-2


def test_one_registry_section_serves_every_signer(tmp_path, gpg_keys, registry):
    """registry.allow_http lets the gpg signer look a tag up on a plain-HTTP registry (before,
    only cosign_signer had the switch); without it the lookup fails with one line."""
    from conftest import make_image
    digest = registry.push(make_image(tmp_path / "img", "one registry section"), "ns/reg", "v1")
    for conf, code in (("registry: {allow_http: true}\n", 0), ("{}\n", 2)):
        (tmp_path / "conf.yaml").write_text(conf)
        out = tmp_path / f"out{code}"
        run = run_entrypoint("--signer", "gpg", "--config-file", str(tmp_path / "conf.yaml"),
                             "--signing-key", gpg_keys.a, "--task-id", "t", "--output-dir",
                             str(out), "--image", f"{registry.host}/ns/reg:v1",
                             env=gpg_keys.env())
        assert run.returncode == code, run.stderr
        if code == 0:
            results = json.loads((out / "results.json").read_text())
            assert results["images"][0]["digest"] == digest
        else:
            assert f"{registry.host}/ns/reg:v1" in one_error_line(run.stderr)


def test_registry_settings_merge_pubtools_spelling_and_refuse_disagreement():
    from signaction.registry import RegistryError, RegistrySettings
    merged = RegistrySettings.from_config({"user": "u"}, {"registry_password": "p",
                                                          "allow_http_registry": True})
    assert (merged.user, merged.password, merged.allow_http) == ("u", "p", True)
    assert merged.docker_auths(["r.io"], {}) == {"r.io": {"auth": "dTpw"}}  # base64 "u:p"
    with pytest.raises(RegistryError, match="registry.user and cosign_signer.registry_user"):
        RegistrySettings.from_config({"user": "a"}, {"registry_user": "b"})


def test_a_rerun_with_a_user_id_key_counts_its_signature_too(tmp_path, gpg_keys):
    """skip-signed matches the signature's signer with the fingerprint the key resolved to, not
    the last 8 characters of what was given (a user id has none)."""
    out = tmp_path / "out"
    args = ["--signer", "gpg", "--signing-key", "Key A <a@test.invalid>", "--task-id", "t",
            "--output-dir", str(out), "--reference", "r.io/ns/app:1", "--digest", D1]
    assert run_entrypoint(*args, env=gpg_keys.env()).returncode == 0
    run = run_entrypoint(*args, env=gpg_keys.env())
    assert run.returncode == 0, run.stderr
    assert json.loads((out / "results.json").read_text())["summary"]["skipped"] == 1
    assert [p.name for p in out.rglob("signature-*")] == ["signature-1"]
