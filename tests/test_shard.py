"""Sharded runs (--shard K/N) and merge, with real parts: gpg signs 40 images as one run and as 4
shards, merge puts the shards together, and the two outputs are compared file by file; skopeo
pulls images with the merged folder's policy. Then merge refuses what does not make one plan."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from conftest import make_image, run_entrypoint, skopeo_copy_verified
from signaction.errors import InputError
from signaction.inputs import Inputs
from signaction.plan import Image, build_plan, platform_origin
from signaction.reference import parse_reference
from signaction.shard import fingerprint, manifest, owner, parse_shard, take_share

N_SHARDS = 4


# -- the share: pure logic ---------------------------------------------------------------------

def _plan(refs: list[str], keys=("k1",)):
    digests = [f"sha256:{hashlib.sha256(r.encode()).hexdigest()}" for r in refs]
    return build_plan(Inputs(references=tuple(refs), digests=tuple(digests),
                             signing_keys=tuple(keys)), {})


@pytest.mark.parametrize("text,error", [
    ("3", "is not K/N"), ("0/4", "K must be 1 to N"), ("5/4", "K must be 1 to N"),
    ("1/0", "N must be 1 to"), ("1/99999", "N must be 1 to"), ("a/b", "is not K/N"),
    ("1/4\n::set-output", "is not K/N")])
def test_a_bad_shard_is_one_line_naming_the_input(text, error):
    with pytest.raises(InputError, match=error) as e:
        parse_shard(text, "--shard")
    assert str(e.value).startswith("--shard: ") and "\n" not in str(e.value)


def test_every_image_is_in_exactly_one_share_and_reruns_pick_the_same():
    plan = _plan([f"r.io/ns/app-{n}:v1" for n in range(200)])
    shares = [take_share(plan, parse_shard(f"{k}/{N_SHARDS}", "--shard"))
              for k in range(1, N_SHARDS + 1)]
    owned = [image for share in shares for image in share.plan.images]
    assert sorted(map(str, (i.reference for i in owned))) == sorted(
        str(i.reference) for i in plan.images)
    assert all(len(s.plan.images) > 20 for s in shares)  # a hash spreads them
    again = take_share(plan, parse_shard(f"2/{N_SHARDS}", "--shard"))
    assert again.plan.images == shares[1].plan.images
    assert {s.fingerprint for s in shares} == {fingerprint(plan)}


def test_the_share_depends_on_the_image_not_its_place_in_the_list():
    refs = [f"r.io/ns/app-{n}:v1" for n in range(50)]
    a, b = _plan(refs), _plan(["r.io/ns/new:v1"] + refs[::-1])
    where = {str(i.reference): owner(i, N_SHARDS) for i in a.images}
    assert all(where[str(i.reference)] == owner(i, N_SHARDS) for i in b.images
               if str(i.reference) in where)
    assert fingerprint(a) != fingerprint(b)  # but the plan is another one
    assert fingerprint(a) != fingerprint(_plan(refs, keys=("k1", "k2")))


def test_platforms_found_in_an_index_count_as_the_image_they_came_from():
    plan = _plan([f"r.io/ns/app-{n}:v1" for n in range(10)])
    share = take_share(plan, parse_shard("1/1", "--shard"))
    index = plan.images[3]
    platform = Image(index.reference, "sha256:" + "a" * 64,
                     platform_origin(index.origin, "linux/arm64"), platform="linux/arm64")
    m = manifest(share, (plan.images[0], index, platform))
    assert m["items"] == [0, 3, 3] and m["plan_images"] == 10 and m["keys"] == 1


def test_files_are_not_sharded(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    plan = build_plan(Inputs(clear_sign_files=(str(tmp_path / "a.txt"),),
                             signing_keys=("k",)), {})
    with pytest.raises(InputError, match="files .* are signed in one run"):
        take_share(plan, parse_shard("1/2", "--shard"))


# -- 40 images, one run and four shards ---------------------------------------------------------

def _put_manifest(host: str, repo: str, tag: str, body: bytes) -> str:
    request = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{tag}", data=body, method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=10):
        return "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.fixture(scope="module")
def release(registry, gpg_keys, tmp_path_factory):
    """40 images in the registry (2 repositories, 20 tags each, each tag its own manifest),
    signed with gpg as one run and as 4 shards (each its own folder)."""
    tmp = tmp_path_factory.mktemp("release")
    real = []
    for repo in ("rel/app", "rel/tool"):
        registry.push(make_image(tmp / repo.replace("/", "-"), repo), repo, "base")
        base = json.loads(registry.manifest(repo, "base"))
        for n in range(20):  # the same blobs, a manifest of its own: its own digest
            body = json.dumps({**base, "annotations": {"release.n": str(n)}}).encode()
            digest = _put_manifest(registry.host, repo, f"1.{n}", body)
            real.append({"reference": f"{registry.host}/{repo}:1.{n}", "digest": digest})
    images = tmp / "images.json"
    images.write_text(json.dumps(real))
    common = ["--signer", "gpg", "--images-file", str(images), "--signing-key", gpg_keys.a,
              "--signing-key", gpg_keys.b, "--task-id", "rel-1"]
    whole = run_entrypoint(*common, "--output-dir", str(tmp / "whole"), env=gpg_keys.env())
    assert whole.returncode == 0, whole.stderr
    for k in range(1, N_SHARDS + 1):
        run = run_entrypoint(*common, "--shard", f"{k}/{N_SHARDS}", "--output-dir",
                             str(tmp / f"shard-{k}"), env=gpg_keys.env())
        assert run.returncode == 0, run.stderr
    return tmp, common, real


def _merge(tmp: Path, out: str, *folders: str, env=None):
    return run_entrypoint("merge", "--output-dir", str(tmp / out),
                          *[str(tmp / f) for f in folders], env=env)


def _shards():
    return [f"shard-{k}" for k in range(1, N_SHARDS + 1)]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _numbering_aside(results: dict) -> dict:
    for entry in results["images"]:
        entry["signature_path"] = entry["signature_path"].rsplit("/", 1)[0]
    return results


def test_four_shards_merged_are_one_run(release, gpg_keys):
    tmp, _, real = release
    shard_results = [json.loads((tmp / f / "results.json").read_text()) for f in _shards()]
    assert sum(len(r["images"]) for r in shard_results) == 80
    assert all(r["shard"]["plan"] == shard_results[0]["shard"]["plan"] for r in shard_results)
    merged = _merge(tmp, "merged", *_shards()[::-1])  # any order
    assert merged.returncode == 0, merged.stderr

    whole, out = tmp / "whole", tmp / "merged"
    one, many = _files(whole), _files(out)
    assert sorted(one) == sorted(many)  # the same files, signature-N numbering included
    sigs = [name for name in one if "/signature-" in name]
    assert len(sigs) == 80
    a, b = json.loads(one.pop("results.json")), json.loads(many.pop("results.json"))
    # gpg's results hold no id or time: the same, key for key, but for which of an image's
    # signatures is signature-1 (one run signs its keys at once: whichever is done first)
    assert [e["signature_path"][-12:] for e in b["images"][:4]] == [
        "/signature-1", "/signature-2"] * 2  # merged: numbered in plan order
    assert _numbering_aside(json.loads(json.dumps(a))) == _numbering_aside(json.loads(
        json.dumps(b)))
    for name in one:
        if name.startswith("verification/"):  # where the folder is aside
            assert many[name] == one[name].replace(str(whole).encode(), str(out).encode())
    for entry in b["images"]:  # each merged signature is the one its shard made
        shard = next(r for r in shard_results for e in r["images"]
                     if (e["reference"], e["signing_key"]) == (entry["reference"],
                                                               entry["signing_key"]))
        src = next(e for e in shard["images"] if (e["reference"], e["signing_key"])
                   == (entry["reference"], entry["signing_key"]))
        folder = tmp / f"shard-{shard['shard']['index']}"
        assert (out / entry["signature_path"]).read_bytes() == \
            (folder / src["signature_path"]).read_bytes()
    for image in real:  # skopeo, with the merged folder's own policy and registries.d: all 40
        pulled = skopeo_copy_verified(out, image["reference"], tmp)
        assert pulled.returncode == 0, pulled.stderr
    assert len(real) == 40


def test_the_action_merge_mode_takes_the_folders_as_an_input(release):
    tmp, _, _ = release
    run = run_entrypoint(env={"INPUT_MODE": "merge", "INPUT_OUTPUT-DIR": str(tmp / "by-input"),
                              "INPUT_SHARD-DIRS": "\n".join(str(tmp / f) for f in _shards())})
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp / "by-input" / "results.json").read_text())["summary"]["signed"] == 80


def test_a_missing_shard_is_named_and_nothing_is_written(release):
    tmp, _, _ = release
    run = _merge(tmp, "m-missing", "shard-1", "shard-2", "shard-4")
    assert run.returncode == 2
    assert "shard 3/4" in run.stderr and "missing" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp / "m-missing").exists()


def test_a_shard_of_another_plan_is_refused(release, gpg_keys):
    tmp, common, _ = release
    one_key = common[:common.index("--signing-key") + 2] + ["--task-id", "rel-1"]
    assert gpg_keys.b not in one_key  # the same images with one key: another plan
    other = run_entrypoint(*one_key, "--shard", "2/4", "--output-dir", str(tmp / "other-2"),
                           env=gpg_keys.env())
    assert other.returncode == 0, other.stderr
    run = _merge(tmp, "m-other", "shard-1", "other-2", "shard-3", "shard-4")
    assert run.returncode == 2 and "another plan" in run.stderr, run.stderr
    assert not (tmp / "m-other").exists()


def test_a_shard_given_twice_is_taken_once(release):
    tmp, _, _ = release
    shutil.copytree(tmp / "shard-2", tmp / "shard-2-copy")
    run = _merge(tmp, "m-twice", *_shards(), "shard-2-copy")
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp / "m-twice" / "results.json").read_text())["summary"]["total"] == 80
    assert "shard 2/4 is in" in run.stderr and "taken once" in run.stderr, run.stderr


@pytest.mark.parametrize("again", ["shard-2", "shard-1/../shard-2"])
def test_the_same_folder_given_twice_is_said_and_read_once(release, again):
    tmp, _, _ = release
    out = f"m-again-{len(again)}"
    run = _merge(tmp, out, *_shards(), again)
    assert run.returncode == 0, run.stderr
    assert "given again: read once" in run.stderr, run.stderr
    assert json.loads((tmp / out / "results.json").read_text())["summary"]["total"] == 80


def _tampered(tmp: Path, name: str, change) -> str:
    shutil.copytree(tmp / "shard-3", tmp / name, symlinks=True)
    results = json.loads((tmp / name / "results.json").read_text())
    change(results, tmp / name)
    (tmp / name / "results.json").write_text(json.dumps(results))
    return name


def _outside(folder: Path) -> Path:
    """A file outside the shard folder (another job's secret, say)."""
    path = folder.parent / f"{folder.name}-outside"
    path.write_bytes(b"not for the merged output")
    return path


def _signed(results):
    return next(e for e in results["images"] if e["signature_path"])


@pytest.mark.parametrize("name,change,error", [
    ("t-escape", lambda r, d: _signed(r).update(signature_path="../../../../etc/passwd"),
     "cannot be placed: unsafe path component '..'"),
    ("t-elsewhere", lambda r, d: _signed(r).update(
        signature_path=_signed(r)["signature_path"].replace("/rel/", "/other/")),
     "not where its reference and digest put it"),
    ("t-link", lambda r, d: (os.unlink(d / _signed(r)["signature_path"]), os.symlink(
        "/etc/passwd", d / _signed(r)["signature_path"])), "a link"),
    # a hard link has no "link" to see: the file has two names, one outside the folder
    ("t-hardlink", lambda r, d: (os.unlink(d / _signed(r)["signature_path"]), os.link(
        _outside(d), d / _signed(r)["signature_path"])), "a hard link"),
    ("t-hardlink-verification", lambda r, d: (
        os.unlink(d / "verification" / "policy.json"),
        os.link(_outside(d), d / "verification" / "policy.json")), "a hard link"),
    ("t-result", lambda r, d: r["images"][0].update(status="failed", error="changed"),
     "given twice"),
    ("t-items", lambda r, d: r["shard"].update(items=r["shard"]["items"][:-1]),
     "must hold"),
    ("t-nojson", lambda r, d: r.clear(), "no shard manifest"),
    ("t-root", lambda r, d: r["shard"].update(root="relative/out"),
     "root must be the absolute path"),
    ("t-slash", lambda r, d: r["shard"].update(root="/"), "root must be the absolute path"),
])
def test_merge_refuses_a_tampered_shard_in_one_line(release, name, change, error):
    tmp, _, _ = release
    folder = _tampered(tmp, name, change)  # in place of shard 3 (or beside it: t-result)
    shards = _shards() + [folder] if name == "t-result" else [*_shards()[:2], folder, "shard-4"]
    run = _merge(tmp, f"m-{name}", *shards)
    assert run.returncode == 2, run.stderr
    assert error in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not (tmp / f"m-{name}").exists()


def test_an_image_claimed_by_two_shards_with_different_results_is_refused(release):
    tmp, _, _ = release
    s1 = json.loads((tmp / "shard-1" / "results.json").read_text())

    def claim_shard_1s_first(results, folder):  # shard 3 says it signed shard 1's first image
        results["shard"]["items"][0] = s1["shard"]["items"][0]
    folder = _tampered(tmp, "t-claim", claim_shard_1s_first)
    run = _merge(tmp, "m-claim", "shard-1", "shard-2", folder, "shard-4")
    assert run.returncode == 2
    assert "claimed by shard 1/4 and shard 3/4 with different results" in run.stderr


def test_merge_never_writes_over_an_earlier_output(release):
    tmp, _, _ = release
    (tmp / "m-used").mkdir()
    (tmp / "m-used" / "results.json").write_text("{}")
    run = _merge(tmp, "m-used", *_shards())
    assert run.returncode == 2 and "results.json already" in run.stderr
    run = _merge(tmp, "shard-1", *_shards())
    assert run.returncode == 2 and "merge into a folder of its own" in run.stderr


def test_a_shard_that_owns_nothing_still_reports(registry, gpg_keys, tmp_path):
    ref = f"{registry.host}/rel/lonely:v1"
    digest = "sha256:" + "b" * 64
    image = build_plan(Inputs(references=(ref,), digests=(digest,), signing_keys=("k",)),
                       {}).images[0]
    assert image.reference == parse_reference(ref)[0]
    empty = next(k for k in range(1, 3) if owner(image, 2) != k)
    run = run_entrypoint("--signer", "gpg", "--reference", ref, "--digest", digest,
                         "--signing-key", gpg_keys.a, "--shard", f"{empty}/2", "--output-dir",
                         str(tmp_path / "out"), env=gpg_keys.env())
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["images"] == [] and results["shard"]["items"] == []
    policy = json.loads((tmp_path / "out" / "verification" / "policy.json").read_text())
    assert list(policy["transports"]["docker"]) == [f"{registry.host}/rel/lonely"]


def test_merge_command_line_is_merge_mode_with_shard_dirs():
    from signaction.inputs import merge_argv, parse_inputs

    inputs = parse_inputs(merge_argv(["--output-dir", "out", "a", "--log-level", "debug", "b",
                                      "--", "-c"]), {})
    assert (inputs.mode, inputs.output_dir, inputs.shard_dirs, inputs.log_level) == (
        "merge", "out", ("a", "b", "-c"), "debug")


@pytest.mark.parametrize("args,error", [
    (["--shard", "1/2", "--mode", "verify"], "--mode verify checks the whole plan"),
    (["--output-dir", "out/{shard}"], "{shard} stands for the shard's number"),
    (["--shard", "2/1"], "--shard: '2/1': K must be 1 to N"),
])
def test_sharding_errors_are_one_line_before_anything_happens(tmp_path, args, error):
    run = run_entrypoint("--reference", "r.io/ns/a:1", "--digest", "sha256:" + "c" * 64,
                         "--signing-key", "k", "--dry-run", *args, cwd=tmp_path)
    assert run.returncode == 2 and error in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_a_sharded_dry_run_says_its_share(gpg_keys):
    refs = [f"r.io/ns/app-{n}:1" for n in range(30)]
    args = [a for r in refs for a in ("--reference", r, "--digest",
                                       "sha256:" + hashlib.sha256(r.encode()).hexdigest())]
    run = run_entrypoint(*args, "--signing-key", gpg_keys.a, "--dry-run", "--shard", "2/3",
                         env=gpg_keys.env())
    mine = take_share(_plan(refs, keys=(gpg_keys.a,)), parse_shard("2/3", "--shard"))
    assert run.returncode == 0, run.stderr
    assert f"shard 2/3: {len(mine.plan.images)} of the plan's 30 image(s); plan " \
           f"{mine.fingerprint}" in run.stdout
    assert run.stdout.count("would sign ") == len(mine.plan.images)


def test_merge_without_folders_or_with_a_pattern_matching_none(tmp_path):
    run = run_entrypoint("merge", "--output-dir", str(tmp_path / "out"))
    assert run.returncode == 2 and "give the shards' output folders" in run.stderr
    run = run_entrypoint("merge", "--output-dir", str(tmp_path / "out"), str(tmp_path / "x*"))
    assert run.returncode == 2 and "matches no folder" in run.stderr


def test_a_platform_found_in_two_shards_indexes_is_kept_once_as_one_run_would():
    from signaction.artifacts import Artifacts
    from signaction.merge import ShardOutput, plan_order
    from signaction.results import Spool

    def row(ref, digest):  # (a shard's rows are kept as JSON text)
        return json.dumps({"reference": ref, "digest": digest, "signing_key": "k",
                           "status": "ok"})
    shared = "sha256:" + "d" * 64
    manifest = {"count": 2, "plan": "p", "plan_images": 2, "keys": 1}

    def shard(index, position, index_digest):
        rows = [row("r.io/a:1", index_digest), row("r.io/a:1", shared)]
        return ShardOutput(f"s{index}", f"/s{index}", index, 2,
                           {"shard": {**manifest, "index": index}}, rows, [position, position],
                           1, Spool(), 0, Artifacts(f"/s{index}"))
    order = plan_order([shard(1, 0, "sha256:" + "1" * 64), shard(2, 1, "sha256:" + "2" * 64)])
    assert [(x.shard.index, x.local) for x in order] == [(1, 0), (1, 1), (2, 0)]


def test_missing_shards_are_named_ten_at_most(release):
    tmp, _, _ = release
    shutil.copytree(tmp / "shard-1", tmp / "of-1000")
    results = json.loads((tmp / "of-1000" / "results.json").read_text())
    results["shard"]["count"] = 1000
    (tmp / "of-1000" / "results.json").write_text(json.dumps(results))
    run = _merge(tmp, "m-1000", "of-1000")
    assert run.returncode == 2 and "shard 2/1000, 3/1000" in run.stderr
    assert "11/1000 and 989 more: missing" in run.stderr and "12/1000" not in run.stderr


@pytest.mark.parametrize("trouble", ["full", "read-only"])
def test_merge_into_a_full_or_read_only_folder_is_one_line_and_touches_no_shard(
        release, small_fs, trouble):
    """merge's output folder on a full or read-only file system: refused in one line before
    anything is merged (exit 2), no file left there, every shard folder as it was."""
    tmp, _, _ = release
    before = {s: _files(tmp / s) for s in _shards()}
    fs = small_fs(1 << 20)
    out = fs.path / "merged"
    if trouble == "full":
        out.mkdir()
        fs.fill()
    else:
        fs.read_only()
    run = run_entrypoint("merge", "--output-dir", str(out), *[str(tmp / s) for s in _shards()])
    assert run.returncode == 2, run.stderr
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("error: ")]
    reason = "No space left on device" if trouble == "full" else "Read-only file system"
    assert len(errors) == 1 and reason in errors[0], run.stderr
    assert "Traceback" not in run.stderr
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else []) == []
    assert {s: _files(tmp / s) for s in _shards()} == before
