"""The artifact writer: lookaside layout, first free N, atomic no-clobber writes, no escape."""

from __future__ import annotations

import json
import threading

import pytest

from signaction.artifacts import Artifacts
from signaction.reference import Reference, parse_reference
from signers.lookaside import TREE, LookasideFormat

HEX = "ab" * 32
DIGEST = f"sha256:{HEX}"


def ref(text: str) -> Reference:
    return parse_reference(text)[0]


def write_verification(art: Artifacts, images, public_keys):
    """verification/ for lookaside signatures of ``images`` ((reference, digest) pairs)."""
    hosts = sorted({r.host for r, _ in images})
    return art.write_verification((r.repository for r, _ in images),
                                  LookasideFormat().verification(art, hosts, public_keys))


def test_layout_uses_an_upload_safe_registry_folder(tmp_path):
    art = Artifacts(tmp_path)
    path = art.write_signature(TREE, ref("127.0.0.1:5000/ns/sub/app:v1"), DIGEST, b"sig")
    assert path.relative_to(tmp_path.resolve()).as_posix() == \
        f"lookaside/127.0.0.1_5000/ns/sub/app@sha256={HEX}/signature-1"
    assert path.read_bytes() == b"sig"
    forbidden = set('":<>|*?\r\n')
    assert not forbidden & set(path.relative_to(tmp_path.resolve()).as_posix().replace("@", ""))


def test_odd_but_valid_names(tmp_path):
    art = Artifacts(tmp_path)
    path = art.write_signature(TREE, ref("my-reg.example.com/a__b/c-d.e/f--g:Tag_1.0-rc"), DIGEST,
                               b"x")
    assert path.relative_to(tmp_path.resolve()).as_posix() == \
        f"lookaside/my-reg.example.com/a__b/c-d.e/f--g@sha256={HEX}/signature-1"


def test_numbering_takes_the_first_free_number(tmp_path):
    art = Artifacts(tmp_path)
    r = ref("r.io/ns/app:1")
    assert [art.write_signature(TREE, r, DIGEST, b"%d" % i).name for i in range(3)] == \
        ["signature-1", "signature-2", "signature-3"]
    folder = art.signature_folder(TREE, r, DIGEST)
    (folder / "signature-2").unlink()  # a gap: readers would stop there, so it is filled first
    assert art.write_signature(TREE, r, DIGEST, b"new").name == "signature-2"
    assert art.write_signature(TREE, r, DIGEST, b"next").name == "signature-4"
    assert (folder / "signature-1").read_bytes() == b"0"  # never overwritten


def test_concurrent_writers_never_share_a_number(tmp_path):
    art = Artifacts(tmp_path)
    r = ref("r.io/ns/app:1")
    barrier = threading.Barrier(16)
    names = []

    def write(i):
        barrier.wait()
        names.append(art.write_signature(TREE, r, DIGEST, b"sig %d" % i).name)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(names, key=lambda n: int(n.split("-")[1])) == \
        [f"signature-{n}" for n in range(1, 17)]
    folder = art.signature_folder(TREE, r, DIGEST)
    assert {p.read_bytes() for p in folder.iterdir()} == {b"sig %d" % i for i in range(16)}


def test_no_temporary_file_is_left_behind_even_on_failure(tmp_path, monkeypatch):
    art = Artifacts(tmp_path)
    r = ref("r.io/ns/app:1")
    art.write_signature(TREE, r, DIGEST, b"ok")

    def broken_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("signaction.atomic.link_new", broken_rename)
    with pytest.raises(OSError):
        art.write_signature(TREE, r, DIGEST, b"lost")
    folder = art.signature_folder(TREE, r, DIGEST)
    assert sorted(p.name for p in folder.iterdir()) == ["signature-1"]


@pytest.mark.parametrize("host,path", [
    ("r.io", "../../etc"), ("r.io", "ns/../../x"), ("..", "ns/app"), ("r.io", "ns/./app"),
    ("r.io", "/abs"), ("r.io", "ns//app"), ("r.io", "ns/a\x00b"), ("r.io", "ns\\..\\x"),
])
def test_crafted_references_cannot_escape(tmp_path, host, path):
    # These bypass the reference grammar on purpose: the writer checks again on its own.
    art = Artifacts(tmp_path / "out")
    with pytest.raises(ValueError):
        art.write_signature(TREE, Reference(host, path, "1"), DIGEST, b"x")
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_a_symlink_inside_the_output_cannot_lead_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "lookaside").mkdir()
    (out / "lookaside" / "r.io").symlink_to(outside)
    with pytest.raises(ValueError, match="outside"):
        Artifacts(out).write_signature(TREE, ref("r.io/ns/app:1"), DIGEST, b"x")
    assert list(outside.iterdir()) == []


def test_a_symlink_planted_as_the_signature_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    art = Artifacts(tmp_path / "out")
    art.write_signature(TREE, ref("r.io/ns/app:1"), DIGEST, b"x")  # r.io/ns exists and is checked
    other = f"sha256:{'cd' * 32}"
    (tmp_path / "out" / "lookaside" / "r.io" / "ns" / f"app@sha256={'cd' * 32}").symlink_to(outside)
    with pytest.raises(ValueError, match="outside"):
        art.write_signature(TREE, ref("r.io/ns/app:1"), other, b"x")
    assert list(outside.iterdir()) == []


def test_the_link_is_atomic_and_never_replaces(tmp_path):
    art = Artifacts(tmp_path)
    r = ref("r.io/ns/app:1")
    assert [art.write_signature(TREE, r, DIGEST, b"%d" % i).name for i in range(2)] == \
        ["signature-1", "signature-2"]
    folder = art.signature_folder(TREE, r, DIGEST)
    assert sorted(p.name for p in folder.iterdir()) == ["signature-1", "signature-2"]
    assert (folder / "signature-1").read_bytes() == b"0"


def test_signature_files_are_world_readable(tmp_path):
    path = Artifacts(tmp_path).write_signature(TREE, ref("r.io/ns/app:1"), DIGEST, b"x")
    assert path.stat().st_mode & 0o777 == 0o644


def test_bad_digests_are_refused(tmp_path):
    with pytest.raises(ValueError):
        Artifacts(tmp_path).write_signature(TREE, ref("r.io/a:1"), "sha256:../../x", b"x")


def test_results_are_replaced_atomically(tmp_path):
    art = Artifacts(tmp_path)
    art.write_results({"n": 1})
    art.write_results({"n": 2})
    assert json.loads((tmp_path / "results.json").read_text()) == {"n": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_verification_files_name_each_repository_and_registry(tmp_path):
    art = Artifacts(tmp_path)
    images = [(ref("127.0.0.1:5000/ns/a:1"), DIGEST), (ref("127.0.0.1:5000/ns/b:1"), DIGEST),
              (ref("r.io/c:2"), DIGEST)]
    folder = write_verification(art, images, b"\x99keyring")
    policy = json.loads((folder / "policy.json").read_text())
    assert policy["default"] == [{"type": "reject"}]
    assert sorted(policy["transports"]["docker"]) == ["127.0.0.1:5000/ns/a", "127.0.0.1:5000/ns/b",
                                                      "r.io/c"]
    rule = policy["transports"]["docker"]["r.io/c"][0]
    assert rule["type"] == "signedBy" and rule["keyType"] == "GPGKeys" and rule["keyData"]
    registries = (folder / "registries.d" / "container-sign-action.yaml").read_text()
    import yaml
    lookaside = yaml.safe_load(registries)["docker"]
    assert lookaside == {
        "127.0.0.1:5000": {
            "lookaside": (tmp_path.resolve() / "lookaside" / "127.0.0.1_5000").as_uri()},
        "r.io": {"lookaside": (tmp_path.resolve() / "lookaside" / "r.io").as_uri()}}
    assert (folder / "signing-keys.gpg").read_bytes() == b"\x99keyring"


def test_verification_without_a_known_key_uses_a_clear_placeholder(tmp_path):
    folder = write_verification(Artifacts(tmp_path), [(ref("r.io/c:2"), DIGEST)], None)
    rule = json.loads((folder / "policy.json").read_text())["transports"]["docker"]["r.io/c"][0]
    assert "REPLACE" in rule["keyPath"] and "keyData" not in rule
