"""merge carries attestations: two images (and one of them again under another tag) signed with
two cosign keys, --provenance and an SPDX predicate, as 2 shards against the
sigstore test bed; merged, every results.json entry names its attestations files in the merged
folder, each what its shard wrote (a digest attested in both shards: both shards' envelopes).
Then hostile shards: an attestation path outside the folder, in another image's folder, a link,
a hard link, a folder that is a link, too big, of another name or shape: refused in one line
naming the shard and the entry, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import infra.sigstore as kit
from conftest import run_entrypoint
from signaction.artifacts import Artifacts
from signaction.errors import InputError
from signaction.formats.lookaside import registry_folder
from signaction.inputs import Inputs
from signaction.merge import merge
from signaction.plan import build_plan
from signaction.shard import owner
from signaction.shard_files import ATTESTATION_BYTES
from test_attestations import GITHUB, PROVENANCE, SBOM, SPDX, statements
from test_bundles import PASSWORD, conf, run
from testbed.sigstore import Sigstore

SHARDS = ("shard-1", "shard-2")


@pytest.fixture(scope="module")
def signed(registry, trixie_tools, tmp_path_factory):
    """The two shards' folders (tmp/shard-1, tmp/shard-2) and the plan's images."""
    tmp = tmp_path_factory.mktemp("merge-attest")
    keys = [kit.cosign_keypair(tmp, PASSWORD, name=name, tools=trixie_tools)[0]
            for name in ("a", "b")]
    (tmp / "sbom.json").write_text(json.dumps(SBOM))
    app, tool = (kit.push_index(registry.host, f"merge/{name}", "v1", tmp, content=name,
                                platforms=("linux/amd64",)) for name in ("app", "tool"))
    images = [(app.by_tag, app.digest), (tool.by_tag, tool.digest)]
    # app's digest again under a tag that the other shard owns: one attestations file, two shards
    alias = next(ref for n in range(64) if _owner(ref := f"{app.host}/{app.repo}:alias-{n}",
                                                  app.digest) != _owner(app.by_tag, app.digest))
    images.append((alias, app.digest))
    args = [a for ref, digest in images for a in ("--image", f"{ref}@{digest}")]
    args += ["--no-expand-index", *[a for key in keys for a in ("--signing-key", str(key))]]
    args += ["--provenance", "--predicate", str(tmp / "sbom.json"), "--predicate-type",
             "spdxjson"]
    with Sigstore(tmp / "bed") as bed, ThreadPoolExecutor(2) as pool:  # (as a CI matrix runs)
        for done in pool.map(lambda k: run(tmp, trixie_tools, conf(bed), *args, "--shard",
                                           f"{k}/2", out=f"shard-{k}", env=GITHUB), (1, 2)):
            assert done.returncode == 0, done.stderr
    return tmp, images


def _owner(ref: str, digest: str) -> int:
    image = build_plan(Inputs(references=(ref,), digests=(digest,), signing_keys=("k",)),
                       {}).images[0]
    return owner(image, 2)


def _merge(tmp: Path, out: str, *folders: str):
    return run_entrypoint("merge", "--output-dir", str(tmp / out),
                          *[str(tmp / f) for f in folders or SHARDS])


def _rows(folder: Path) -> list[dict]:
    return json.loads((folder / "results.json").read_text())["images"]


def _tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in (folder / "attestations").rglob("*")
            if p.is_file()}


def test_merged_attestations_are_the_shards_files_where_their_entries_say(signed, registry):
    tmp, images = signed
    merged = _merge(tmp, "merged")
    assert merged.returncode == 0, merged.stderr
    out = tmp / "merged"
    rows = _rows(out)
    assert len(rows) == 6  # 3 images, 2 keys
    assert {r["status"] for r in rows} == {"ok"}
    sources: dict[str, list[bytes]] = {}  # a merged path -> the shards' files it comes from
    for folder in SHARDS:
        shard_rows = _rows(tmp / folder)
        assert shard_rows, f"{folder} signed nothing: the alias tag was meant for it"
        for path in {a["path"] for r in shard_rows for a in r["attestations"]}:
            sources.setdefault(path, []).append((tmp / folder / path).read_bytes())
    named = set()
    for row in rows:
        made = {a["predicate_type"]: a for a in row["attestations"]}
        assert set(made) == {PROVENANCE, SPDX}, row
        repo = row["reference"].rpartition(":")[0].split("/", 1)[1]
        for uri, entry in made.items():
            name = "slsaprovenance1" if uri == PROVENANCE else "spdxjson"
            assert entry["path"] == (f"attestations/{registry_folder(registry.host)}/{repo}"
                                     f"@sha256={row['digest'][7:]}/{name}.intoto.jsonl")
            path = out / entry["path"]
            assert path.is_file() and not path.is_symlink()
            assert {s.subjects[0][1] for s in statements(path)} == {row["digest"]}
            named.add(entry["path"])
    assert named == set(sources) == _tree(out)  # every file named, none other copied
    shared = 0
    for path, parts in sources.items():
        data = (out / path).read_bytes()
        if len(parts) == 1:
            assert data == parts[0]  # as the shard wrote it, byte for byte
        else:  # app's digest, attested under two tags in two shards: both shards' envelopes
            shared += 1
            assert sorted(data.splitlines()) == sorted(b"".join(parts).splitlines())
            assert len(data.splitlines()) == 8  # 2 keys x 2 formats, in each shard
    assert shared == 2  # app's, of each of the two types


def test_a_reused_output_folder_keeps_its_files_and_no_link_is_followed(signed, tmp_path):
    """An attestations file an earlier run left in the merged folder is kept (the shard's lines
    added after its own), as a signing run does; a link planted there is not followed: that
    entry fails (exit 1), the file it points to is as it was."""
    tmp, _ = signed
    named = {f: [a["path"] for r in _rows(tmp / f) for a in r["attestations"]] for f in SHARDS}
    shard, kept = next((f, path) for f in SHARDS for path in named[f]  # (tool's: one shard's)
                       if all(path not in named[other] for other in SHARDS if other != f))
    linked = next(path for path in named[shard] if path != kept)
    out = tmp_path / "reused"
    (out / kept).parent.mkdir(parents=True)
    (out / kept).write_bytes(b'{"earlier": "run"}\n')
    target = tmp_path / "not-ours"
    target.write_bytes(b"someone else's file\n")
    (out / linked).parent.mkdir(parents=True, exist_ok=True)
    (out / linked).symlink_to(target)
    done = run_entrypoint("merge", "--output-dir", str(out), *[str(tmp / f) for f in SHARDS])
    assert done.returncode == 1, done.stderr
    assert "could not write the attestations of" in done.stderr, done.stderr
    assert target.read_bytes() == b"someone else's file\n"
    assert (out / kept).read_bytes() == b'{"earlier": "run"}\n' + (tmp / shard / kept
                                                                   ).read_bytes()
    failed = [r for r in _rows(out) if r["status"] == "failed"]
    assert failed and all(r["error"] == "merge could not write its attestations" and
                          None in [a["path"] for a in r["attestations"]] for r in failed)


def _first(rows: list[dict]) -> dict:
    return next(r for r in rows if r["attestations"])


def _other_image(rows: list[dict], row: dict) -> str:
    """An attestations file of another image (another digest) in the same shard."""
    return next(r["attestations"][0]["path"] for r in rows if r["digest"] != row["digest"])


def _replace_file(folder: Path, rows: list[dict], how) -> None:
    path = folder / _first(rows)["attestations"][0]["path"]
    path.unlink()
    how(path)


def _outside(folder: Path) -> Path:
    path = folder.parent / f"{folder.name}-secret"
    path.write_bytes(b"another job's secret\n")
    return path


def _linked_folder(folder: Path, rows: list[dict]) -> None:
    """The image's attestations folder made a link to a copy of it outside the shard."""
    image = (folder / _first(rows)["attestations"][0]["path"]).parent
    elsewhere = folder.parent / f"{folder.name}-elsewhere"
    shutil.move(image, elsewhere)
    image.symlink_to(elsewhere, target_is_directory=True)


def _set(key, value):
    return lambda folder, rows: _first(rows)["attestations"][0].update({key: value})


HOSTILE = {
    "outside": (_set("path", "attestations/../../../shard-2-secret.intoto.jsonl"),
                "is not where its reference and digest put it"),
    "absolute": (_set("path", "/etc/passwd"), "is not where its reference and digest put it"),
    "another image's": (lambda folder, rows: _first(rows)["attestations"][0].update(
        path=_other_image(rows, _first(rows))), "is not where its reference and digest put it"),
    "other name": (lambda folder, rows: _first(rows)["attestations"][0].update(
        path=_first(rows)["attestations"][0]["path"].replace(".intoto.jsonl", ".sh")),
        "is not where its reference and digest put it"),
    "symlink": (lambda folder, rows: _replace_file(folder, rows, lambda p: p.symlink_to(
        _outside(folder))), "not a regular file (a link?)"),
    "hard link": (lambda folder, rows: _replace_file(folder, rows, lambda p: os.link(
        _outside(folder), p)), "a hard link"),
    "linked folder": (_linked_folder, "is not a folder (a link?)"),
    "fifo": (lambda folder, rows: _replace_file(folder, rows, os.mkfifo),
             "not a regular file"),
    "missing": (lambda folder, rows: _replace_file(folder, rows, lambda p: None), "not found"),
    "too big": (lambda folder, rows: os.truncate(
        folder / _first(rows)["attestations"][0]["path"], ATTESTATION_BYTES + 1), "larger than"),
    "not a list": (lambda folder, rows: _first(rows).update(attestations={"path": "x"}),
                   "attestations must be a list"),
    "no path": (_set("path", None), "must be an object with a predicate_type and a path"),
    "nested": (_set("rekor_log_index", {"a": 1}), "holds more than plain values"),
}


def _hostile(signed, tmp_path: Path, case: str) -> tuple[Path, dict]:
    """Copies of the shards, one of them changed as HOSTILE[case] says: (that shard's folder,
    the entry changed, as it was)."""
    tmp, _ = signed
    for folder in SHARDS:
        shutil.copytree(tmp / folder, tmp_path / folder, symlinks=True)
    # the shard with tool's image, and app's under one of its tags: two images' files
    shard = tmp_path / next(f for f in SHARDS if len({r["digest"] for r in _rows(tmp / f)}) > 1)
    results = json.loads((shard / "results.json").read_text())
    row = json.loads(json.dumps(_first(results["images"])))
    HOSTILE[case][0](shard, results["images"])
    (shard / "results.json").write_text(json.dumps(results))
    return shard, row


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_attestation_entry_is_refused_naming_the_shard_and_entry(signed, tmp_path,
                                                                           case):
    shard, row = _hostile(signed, tmp_path, case)
    with pytest.raises(InputError) as refused:  # (in-process: the entrypoint's is below)
        merge([str(tmp_path / f) for f in SHARDS], Artifacts(tmp_path / "out"),
              {"cosign": lambda *_: []})
    said = str(refused.value)
    assert HOSTILE[case][1] in said and "\n" not in said, said
    assert said.startswith(f"merge: {shard}/results.json "), said
    if case not in ("not a list", "no path", "nested"):  # (those: "images entry N")
        assert f"entry {row['reference']}@{row['digest']}: " in said, said
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize("case", ["another image's", "symlink"])
def test_the_merge_command_refuses_a_hostile_shard_in_one_line_exit_2(signed, tmp_path, case):
    shard, row = _hostile(signed, tmp_path, case)
    done = _merge(tmp_path, "out")
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and HOSTILE[case][1] in errors[0], done.stderr
    assert f"{shard}/results.json entry {row['reference']}@{row['digest']}" in errors[0]
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
