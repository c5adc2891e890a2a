"""results.json and merge at 100,000 images without holding them (issue 26): what is kept on
disk instead of in memory gives the same bytes as the whole-in-memory path did.

- the Recorder keeps a status byte per item and the rest on disk (results.Records); its
  entries, made anew when read, and results.json are those of plain Entry objects;
- results.json's Streams (operation's digests and references included) are json.dumps's text;
- read_stream (artifacts) gives what json.loads gives, and refuses what it refuses (and a key
  given twice where it streams);
- merge reads each shard's results.json element by element: its output is json.dumps's of the
  merged document, and hostile shard folders are refused as before;
- verification/'s big data: URLs and base64 values are written in pieces, byte for byte what
  the YAML emitter and json.dump write.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from conftest import run_entrypoint
from signaction import artifacts as artifacts_module
from signaction import consumers
from signaction.artifacts import Artifacts, Stream, StreamEnd, StreamError, read_stream
from signaction.inputs import Inputs
from signaction.plan import Image, Plan, SigningKey, WorkItem
from signaction.reference import parse_reference
from signaction.results import (
    FAILED,
    OK,
    SKIPPED,
    Entries,
    Entry,
    Recorder,
    Records,
    Texts,
    counts,
    results_json,
)
from signaction.signing import Outcome
from signers.lookaside import LookasideFormat

# -- the Recorder and results.json -------------------------------------------------------------


def plan_of(images: int, keys: int, twice: int | None = None) -> Plan:
    made = [Image(parse_reference(f"r.io/ns/app{n % 3}:v{n}")[0], f"sha256:{n:064x}",
                  f"entry {n}") for n in range(images)]
    if twice is not None:  # an image the plan holds twice (equal objects)
        made.append(made[twice])
    return Plan(tuple(made), tuple(SigningKey(f"k{n}", f"key{n}", f"name{n}")
                                   for n in range(keys)), 0)


def record(recorder: Recorder, plan: Plan) -> None:
    """Each kind of outcome, in an order that is not the plan's, from equal (not identical)
    items; one item never reported."""
    items = list(plan.items())
    for n in reversed(range(len(items) - 1)):
        item = WorkItem(items[n].image, items[n].key)
        if n % 5 == 0:
            recorder.report(Outcome(item, error=f"refused {n}\nwith a second line",
                                    detail={"n": n, "text": "a\nb"}))
        elif n % 5 == 1:
            recorder.report(Outcome(item, skipped=f"signed already {n}"))
        else:
            recorder.report(Outcome(item, signature=b"sig%d" % n, detail=f'["reply", {n}]'))


def plain_entries(recorder: Recorder, plan: Plan, reason: str) -> list[Entry]:
    """The entries as the Recorder kept them before: an Entry object per item."""
    return [Entry(e.item, e.status, e.error, dict(e.fields), e.reason)
            for e in recorder.entries(reason)]


def test_entries_are_made_anew_from_what_was_recorded(tmp_path):
    plan = plan_of(7, 2)
    recorder = Recorder(Artifacts(tmp_path / "out"), plan, LookasideFormat())
    record(recorder, plan)
    entries = recorder.entries("never reported")
    assert isinstance(entries, Entries) and len(entries) == len(plan) == 14
    assert [e.item for e in entries] == list(plan.items())
    assert entries[-1].status == FAILED and entries[-1].error == "never reported"
    assert entries[0].status == FAILED and entries[0].error.startswith("refused 0")
    assert entries[1].status == SKIPPED and entries[1].reason == "signed already 1"
    assert entries[2].status == OK and entries[2].signature_path.startswith("lookaside/")
    assert entries[2].fields == {"signature_path": entries[2].signature_path}
    assert [e.status for e in entries[3:6]] == [e.status for e in list(entries)[3:6]]
    assert counts(entries) == counts(list(entries)) == {OK: 7, FAILED: 4, SKIPPED: 3}
    with pytest.raises(IndexError):
        entries[14]
    # what is recorded later is not in entries already taken (results.json agrees with itself)
    recorder.report(Outcome(list(plan.items())[-1], skipped="late"))
    assert entries[-1].status == FAILED and recorder.entries("x")[-1].status == SKIPPED


def test_what_a_format_writes_comes_back_as_it_was(tmp_path):
    """The facts of an entry go to disk and back: marshal, or pickle where marshal cannot."""
    import datetime

    class Format(LookasideFormat):
        def write(self, artifacts, image, signature):
            return {**super().write(artifacts, image, b"sig"), "facts": signature}
    plan = plan_of(3, 1)
    recorder = Recorder(Artifacts(tmp_path / "out"), plan, Format())
    odd = {"when": datetime.datetime(2026, 12, 8), "pair": (1, "a"), "set": frozenset({1})}
    for item, facts in zip(plan.items(), (odd, [1, {"a": None}], "text"), strict=True):
        recorder.report(Outcome(item, signature=facts))
    assert [e.fields["facts"] for e in recorder.entries("x")] == [odd, [1, {"a": None}], "text"]
    assert type(recorder.entries("x")[0].fields["facts"]["pair"]) is tuple


def test_an_image_the_plan_holds_twice_shares_its_outcome_as_before(tmp_path):
    plan = plan_of(3, 1, twice=1)
    recorder = Recorder(Artifacts(tmp_path / "out"), plan, LookasideFormat())
    recorder.report(Outcome(list(plan.items())[1], error="e", detail="1"))
    entries = recorder.entries("x")
    assert [e.status for e in entries] == [FAILED] * 4
    assert entries[1].error == entries[3].error == "e" and entries[0].error == "x"
    assert list(recorder.details(4)) == ['""', '""', '""', "1"]  # the later place, as before


def test_results_json_is_json_dumps_of_the_whole_document(tmp_path):
    """The bytes the whole-in-memory path wrote (json.dumps of one dict, and a newline)."""
    plan = plan_of(6, 2)
    art = Artifacts(tmp_path / "out")
    art.create()
    recorder = Recorder(art, plan, LookasideFormat())
    record(recorder, plan)
    inputs = Inputs(task_id="t1", requester="me")
    entries = recorder.entries("not signed")
    results = results_json(inputs, plan, entries, recorder.details(len(plan)), "msg",
                           {"retried": 2}, None)
    results["shard"] = {"index": 1, "items": [0, 1]}
    art.write_results(results)
    written = (tmp_path / "out" / "results.json").read_text()
    old = plain_entries(recorder, plan, "not signed")
    details = [json.loads(t) for t in recorder.details(len(plan))]
    expected = {
        "signer_result": {"status": "error", "error_message": "4 of 12 signature(s) failed"},
        "operation_results": details,
        "operation": {"digests": [i.digest for i in plan.images],
                      "references": [str(i.reference) for i in plan.images],
                      "signing_key_names": ["name0", "name1"], "signing_keys": ["k0", "k1"],
                      "task_id": "t1", "requester": "me"},
        "signing_keys": ["k0", "k1"], "signer": "msg", "signer_stats": {"retried": 2},
        "creator": results["creator"],
        "summary": {"signed": 6, "failed": 4, "skipped": 2, "total": 12},
        "images": [e.to_json() for e in old],
        "shard": {"index": 1, "items": [0, 1]}}
    assert written == json.dumps(expected) + "\n"
    assert details[0] == {"n": 0, "text": "a\nb"} and "\n" not in written[:-1]


def test_streams_at_any_depth_are_written_as_json_dumps_writes_lists(tmp_path):
    art = Artifacts(tmp_path)
    art.create()
    value = {"a": Stream(iter([])), "b": {"c": Stream(json.dumps(x) for x in (1, "x", None)),
                                          "d": {"e": [1, 2]}}, "f": "\u00e9\n"}
    art.write_results(value)
    assert (tmp_path / "results.json").read_text() == json.dumps(
        {"a": [], "b": {"c": [1, "x", None], "d": {"e": [1, 2]}}, "f": "\u00e9\n"}) + "\n"


def test_records_and_texts_keep_what_was_put_by_number():
    records = Records()
    records.put(3, b"three")
    for n in range(5000):  # past the write buffer: read back from the file
        records.put(10 + n, b"x%d" % n)
    records.put(0, b"")
    assert records.get(3) == b"three" and records.get(1) is None and records.get(0) == b""
    assert records.get(10 + 4999) == b"x4999" and records.get(10 + 17) == b"x17"
    assert 3 in records and 2 not in records and 10**9 not in records and len(records) == 5010
    texts = Texts()
    for n in range(300):
        texts.append(json.dumps({"n": n, "t": "a\nb"}))
    assert len(texts) == 300 and json.loads(texts[-1])["n"] == 299
    assert [json.loads(t)["n"] for t in texts[10:13]] == [10, 11, 12]
    assert list(texts)[5] == texts[5] == json.dumps({"n": 5, "t": "a\nb"})


# -- read_stream -------------------------------------------------------------------------------

PATHS = (("images",), ("operation_results",), ("operation", "digests"))


def streamed(text: str | bytes, tmp_path: Path, limit: int = 1 << 20) -> dict:
    path = tmp_path / "r.json"
    path.write_bytes(text.encode() if isinstance(text, str) else text)

    def sink():
        got: list = []
        return lambda v: ("streamed", got) if v is StreamEnd else got.append(v)

    fd = os.open(path, os.O_RDONLY)
    try:
        result = read_stream(fd, limit, {p: sink() for p in PATHS})
    finally:
        os.close(fd)

    def plain(v):
        if isinstance(v, tuple) and v[0] == "streamed":
            return v[1]
        return {k: plain(x) for k, x in v.items()} if isinstance(v, dict) else v
    return plain(result)


def random_value(rnd: random.Random, depth: int = 0):
    kind = rnd.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rnd.choice([None, True, False])
    if kind == 1:
        return rnd.randrange(-10**12, 10**12)
    if kind == 2:
        return rnd.random() * 10 ** rnd.randrange(-5, 20)
    if kind in (3, 4):
        chars = 'ab"\\\n\u00e9\u20ac\U0001f600 '
        return "".join(rnd.choice(chars) for _ in range(rnd.randrange(9)))
    if kind in (5, 6):
        return [random_value(rnd, depth + 1) for _ in range(rnd.randrange(5))]
    return {f"k{rnd.randrange(4)}": random_value(rnd, depth + 1) for _ in range(rnd.randrange(4))}


def test_read_stream_gives_what_json_loads_gives(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts_module._Source, "CHUNK", 7)  # elements across reads
    rnd = random.Random(26)
    for n in range(60):
        doc = {"a": random_value(rnd), "images": [random_value(rnd) for _ in range(n % 7)],
               "operation": {"digests": [random_value(rnd) for _ in range(3)],
                             "x": random_value(rnd)},
               "operation_results": random_value(rnd) if n % 4 == 0 else [1, 22, 333],
               "z": rnd.randrange(10**9)}
        for text in (json.dumps(doc), json.dumps(doc, indent=n % 3, ensure_ascii=n % 2 == 0),
                     " \n" + json.dumps(doc, separators=(",", ":")) + "\n\n"):
            assert streamed(text, tmp_path) == json.loads(text), text


@pytest.mark.parametrize("text,why", [
    ("[1]", "not a JSON object"), ("", "not a JSON object"), ('{"a": 1} x', "extra data"),
    ('{"a": 1} {}', "extra data"), ('{"images": [1, 2', "expected ','"),
    ('{"images": [1,, 2]}', "Expecting value"), ('{"a": tru}', "Expecting value"),
    ('{"a": 1,}', "Expecting"), ('{"images": [1 2]}', "expected ','"), ('{"a": 1', "expected ','"),
    ('{"images": [], "images": []}', "images is given twice"),
    ('{"operation": {"digests": [], "digests": [1]}}', "operation.digests is given twice"),
    ('{"a": 1, "a": 1}', "a is given twice"), ('{"images": ' + "[" * 100_000, "too deep"),
    (b'{"a": "\xff"}', "not UTF-8"), ('{"a": "' + "x" * 2000 + '"}', "larger than its limit"),
    ('\ufeff{"a": 1}', "not a JSON object"), ('{1: 2}', "a key is not a string")],
    ids=lambda v: str(v)[:30])
def test_read_stream_refuses_what_is_not_one_json_object(tmp_path, monkeypatch, text, why):
    monkeypatch.setattr(artifacts_module._Source, "CHUNK", 64)
    with pytest.raises(StreamError, match=why):
        streamed(text, tmp_path, limit=1000 if "x" * 2000 in str(text) else 1 << 20)


def test_json_loads_refuses_what_read_stream_refuses_but_repeated_keys(tmp_path):
    """(json.loads keeps the last of a repeated key; where merge streams, that is refused.)"""
    for text in ('{"a": 1} x', '{"images": [1,, 2]}', '{"a": 1,}', "[1]"):
        with pytest.raises(StreamError):
            streamed(text, tmp_path)
        try:
            assert not isinstance(json.loads(text), dict)
        except ValueError:
            pass


# -- merge: streamed, hostile folders still refused -------------------------------------------

@pytest.fixture(scope="module")
def shards(gpg_keys, tmp_path_factory):
    """12 images (digests given: no registry), 2 keys, signed as 3 shards and as one run."""
    tmp = tmp_path_factory.mktemp("stream-shards")
    images = [{"reference": f"r.io/ns/app{n % 4}:v{n}", "digest": f"sha256:{n + 1:064x}"}
              for n in range(12)]
    (tmp / "images.json").write_text(json.dumps(images))
    common = ["--signer", "gpg", "--images-file", str(tmp / "images.json"), "--signing-key",
              gpg_keys.a, "--signing-key", gpg_keys.b, "--task-id", "stream-1"]
    for k in (1, 2, 3):
        run = run_entrypoint(*common, "--shard", f"{k}/3", "--output-dir",
                             str(tmp / f"shard-{k}"), env=gpg_keys.env())
        assert run.returncode == 0, run.stderr
    return tmp


def merged(tmp: Path, name: str, folders=("shard-1", "shard-2", "shard-3")):
    shutil.rmtree(tmp / name, ignore_errors=True)
    return run_entrypoint("merge", "--output-dir", str(tmp / name),
                          *[str(tmp / f) for f in folders])


def copies(shards: Path, tmp_path: Path) -> Path:
    for k in (1, 2, 3):
        shutil.copytree(shards / f"shard-{k}", tmp_path / f"shard-{k}")
    return tmp_path


def test_merge_writes_json_dumps_of_the_merged_document(shards):
    run = merged(shards, "merged")
    assert run.returncode == 0, run.stderr
    text = (shards / "merged" / "results.json").read_text()
    results = json.loads(text)
    assert text == json.dumps(results) + "\n"
    assert results["summary"] == {"signed": 24, "failed": 0, "skipped": 0, "total": 24}
    assert results["operation"]["references"] == [f"r.io/ns/app{n % 4}:v{n}" for n in range(12)]
    assert results["operation"]["digests"] == [f"sha256:{n + 1:064x}" for n in range(12)]
    assert [r["reference"] for r in results["images"]] == [
        f"r.io/ns/app{n % 4}:v{n}" for n in range(12) for _ in (1, 2)]
    parts = [json.loads((shards / f"shard-{k}" / "results.json").read_text()) for k in (1, 2, 3)]
    assert list(results) == [k for k in parts[0] if k != "shard"]
    assert list(results["operation"]) == list(parts[0]["operation"])


def edit(folder: Path, change) -> None:
    path = folder / "results.json"
    path.write_text(change(path.read_text()))


@pytest.mark.parametrize("change,why", [
    (lambda t: t[:-20], "not JSON"),
    (lambda t: t.replace('"images": [', '"images": [1, ', 1), "images must hold"),
    (lambda t: t.rstrip()[:-1] + ', "images": []}', "not JSON .images is given twice"),
    (lambda t: t.replace('"signer_result"', '"operation_results": [], "signer_result"', 1),
     "not JSON .operation_results is given twice"),
    (lambda t: t + " []", "not JSON .extra data"),
    (lambda t: t.replace('"digests": [', '"digests": [1, ', 1),
     "operation must list a digest and a reference per image"),
    (lambda t: t.replace('"status": "ok", "error"', '"status": "fine", "error"', 1),
     "status must be one of"),
    (lambda t: t.replace('"operation_results": [', '"operation_results": {"a": [', 1)
     .replace('], "operation":', ']}, "operation":', 1), "operation_results is not a list"),
])
def test_hostile_results_json_is_refused_in_one_line(shards, tmp_path, change, why):
    tmp = copies(shards, tmp_path)
    edit(tmp / "shard-2", change)
    run = merged(tmp, "out")
    assert run.returncode == 2, run.stderr
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "shard-2/results.json" in errors[0], run.stderr
    import re
    assert re.search(why, errors[0]), errors[0]
    assert not (tmp / "out" / "results.json").exists() and "Traceback" not in run.stderr


def test_a_bad_entry_is_named_after_what_the_manifest_says(shards, tmp_path):
    """The manifest is checked first (as a whole parse did), then each entry."""
    tmp = copies(shards, tmp_path)
    edit(tmp / "shard-1", lambda t: t.replace('"status": "ok", "error"', '"status": 1, "error"', 1)
         .replace('"plan_images": 12', '"plan_images": "12"'))
    run = merged(tmp, "out")
    assert run.returncode == 2 and "plan_images must be a whole number" in run.stderr
    edit(tmp / "shard-1", lambda t: t.replace('"plan_images": "12"', '"plan_images": 12'))
    run = merged(tmp, "out")
    assert run.returncode == 2 and "images entry 1: status must be one of" in run.stderr


@pytest.mark.parametrize("trouble", ["symlink", "hardlink", "fifo", "folder", "big"])
def test_a_results_json_that_is_not_a_plain_file_is_refused(shards, tmp_path, trouble,
                                                             monkeypatch):
    tmp = copies(shards, tmp_path)
    path = tmp / "shard-3" / "results.json"
    if trouble == "symlink":
        os.rename(path, tmp / "elsewhere.json")
        path.symlink_to(tmp / "elsewhere.json")
    elif trouble == "hardlink":
        os.link(path, tmp / "other-name.json")
    elif trouble == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif trouble == "folder":
        path.unlink()
        path.mkdir()
    env = None
    if trouble == "big":  # (1 GiB is the limit: a smaller copy of the same check)
        from signaction import merge
        monkeypatch.setattr(merge, "RESULTS_BYTES", 100)
        with pytest.raises(Exception, match="larger than"):
            merge.read_shard(str(tmp / "shard-3"))
        return
    run = merged(tmp, "out", env) if env else merged(tmp, "out")
    assert run.returncode == 2, run.stderr
    assert "shard-3/results.json" in run.stderr and "Traceback" not in run.stderr


def test_a_shard_given_twice_with_other_results_is_still_refused(shards, tmp_path):
    tmp = copies(shards, tmp_path)
    shutil.copytree(tmp / "shard-2", tmp / "shard-2-again")
    edit(tmp / "shard-2-again", lambda t: t.replace('"status": "ok", "error": null',
                                                    '"status": "failed", "error": "x"', 1))
    run = merged(tmp, "out", ("shard-1", "shard-2", "shard-2-again", "shard-3"))
    assert run.returncode == 2 and "given twice" in run.stderr and "different results" in \
        run.stderr, run.stderr
    shutil.rmtree(tmp / "shard-2-again")
    shutil.copytree(tmp / "shard-2", tmp / "shard-2-again")
    run = merged(tmp, "out", ("shard-1", "shard-2", "shard-2-again", "shard-3"))
    assert run.returncode == 0 and "taken once" in run.stdout + run.stderr


# -- verification/: big data written in pieces ------------------------------------------------

def verification_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_big_data_urls_and_base64_are_written_as_the_emitter_and_json_dump_write(
        tmp_path, monkeypatch):
    repos = [f"r{n % 3}.io/ns/app-{n}" for n in range(300)] + ['r.io/a"b: [c]', "r.io/x\n- y"]

    def written() -> dict[str, bytes]:
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        art = Artifacts(tmp_path / "out")
        hosts = sorted({r.split("/")[0] for r in repos})
        return verification_files(art.write_verification(
            repos, LookasideFormat().verification(art, hosts, b"\x99\x01\x0dkeyring" * 40)))

    monkeypatch.setattr(consumers, "BIG_DATA", 1 << 40)  # every data: URL through the emitter
    emitted = written()
    monkeypatch.setattr(consumers, "BIG_DATA", 0)  # every policy's, in pieces
    monkeypatch.setattr(consumers.Blob, "CHUNK", 3 * 7)
    pieces = written()
    assert pieces == emitted
    assert len(emitted["openshift/51-worker-container-sign-action.yaml"]) > 3 * 21
    assert "coco/aa-offline_fs_kbc-resources-legacy.json" in emitted


def test_json_of_blobs_is_json_dump_with_an_indent(tmp_path):
    art = Artifacts(tmp_path)
    art.create()
    blob = consumers.Blob(lambda f: f.write("x" * 1000))
    consumers._json(art, ["a.json"], {"b": blob, "c": "d\u00e9"})
    consumers._json(art, ["b.json"], {})
    text = (tmp_path / "verification" / "a.json").read_text()
    import base64
    assert text == json.dumps({"b": base64.b64encode(b"x" * 1000).decode(), "c": "d\u00e9"},
                              indent=2) + "\n"
    assert (tmp_path / "verification" / "b.json").read_text() == "{}\n"
