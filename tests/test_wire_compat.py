"""Wire compatibility with pubtools-sign 1.0.6, proven: both clients sign the same input with the
same config through one broker that records every message it receives; their requests are then
compared field by field. Set aside: ids (request_id), timestamps (created), and the claim's
``optional`` section (creator names the tool; this project adds an integer timestamp). Everything
else must be equal: address, application properties, body fields and their order, the claim's
``critical`` section, ttl, durability, body type.

Compared: container signing through the entrypoint (``--signer msg``, single and batch) and
through the drop-in commands in ``bin/`` that take pubtools-sign's own command lines
(``pubtools-sign-msg-container-sign``, ``-msg-clear-sign``, ``-msg-blob-sign``).

pubtools-sign runs from its own venv, installed from the package index on first use
(tests/infra/pubtools_sign.py).
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from conftest import run_entrypoint
from infra.pubtools_sign import (
    DROPIN,
    MSG_BLOB_SIGN,
    MSG_CLEAR_SIGN,
    MSG_CONTAINER_SIGN,
    PUBTOOLS,
    recording_bus,
    run_pubtools_msg_container_sign,
    run_tool,
    stdout_json,
    write_conf,
)

KEYS = ["0123456789ABCDEF0123456789ABCDEF01234567", "FEDCBA9876543210FEDCBA9876543210FEDCBA98"]
NAMES = ["release-key", "beta-key"]
IMAGES = [("registry.example.com/ns/app:1.0", "sha256:" + "1" * 64),
          ("registry.example.com/ns/app:1.1", "sha256:" + "2" * 64),
          ("registry.example.com/other/tool:latest", "sha256:" + "3" * 64)]


@pytest.fixture
def bus(tmp_path):
    """The recording broker with an instant signing server (the replies do not matter here)."""
    with recording_bus(tmp_path, instant=True) as bus:
        yield bus


@pytest.fixture
def gpg_bus(tmp_path, gpg_keys):
    """The recording broker with a signing server making real signatures with the test keys:
    clear-sign and blob-sign check what comes back (a detached signature must be OpenPGP data),
    so an instant server's fake signature would fail them."""
    with recording_bus(tmp_path, gnupg_home=gpg_keys.home) as bus:
        yield bus


def task_ids() -> tuple[str, str]:
    """A task id for pubtools-sign's run and one for ours: they tell the requests apart."""
    return f"pt-{uuid.uuid4().hex[:6]}", f"us-{uuid.uuid4().hex[:6]}"


def claim(b64: str) -> dict:
    return json.loads(base64.b64decode(b64))


def common(record: dict) -> dict:
    return {k: record[k] for k in ("address", "body_type", "ttl", "durable", "subject",
                                   "reply_to", "correlation_id")}


def run_both(tmp_path, bus, tls, signer_type):
    section = "msg_batch_signer" if signer_type == "batch" else "msg_signer"
    conf = write_conf(tmp_path / "conf.yaml", bus.url, tls, section,
                      **({"chunk_size": 2} if signer_type == "batch" else {}))
    theirs_task, ours_task = task_ids()
    theirs = run_pubtools_msg_container_sign(
        conf, [r for r, _ in IMAGES], [d for _, d in IMAGES], KEYS, theirs_task,
        extra_args=["--signer-type", signer_type, *sum((["--signing-key-name", n]
                                                        for n in NAMES), [])])
    assert theirs.returncode == 0, theirs.stderr[-2000:]
    args = ["--signer", "msg", "--signer-type", signer_type, "--config-file", str(conf),
            "--task-id", ours_task, "--output-dir", str(tmp_path / "out")]
    for (ref, digest) in IMAGES:
        args += ["--reference", ref, "--digest", digest]
    for key, name in zip(KEYS, NAMES):
        args += ["--signing-key", key, "--signing-key-name", name]
    ours = run_entrypoint(*args)
    assert ours.returncode == 0, ours.stderr[-2000:]
    return bus.requests(theirs_task), bus.requests(ours_task), theirs_task, ours_task


def run_same_command(bus, command, args, theirs_task, ours_task):
    """The same pubtools-sign command line (``args`` without --task-id) run by pubtools-sign and
    by our drop-in; their requests as the broker recorded them."""
    for tool, task in ((PUBTOOLS, theirs_task), (DROPIN, ours_task)):
        run = run_tool(tool, command, *args, "--task-id", task)
        assert run.returncode == 0, f"{tool} {command}: {run.returncode}\n{run.stderr[-2000:]}"
        assert stdout_json(run)["signer_result"]["status"] == "ok", run.stdout
    return bus.requests(theirs_task), bus.requests(ours_task)


def assert_same_single_requests(theirs, ours, t_task, o_task, payload):
    """Single (non-batch) requests: each of theirs has one of ours for the same payload and key,
    equal field by field. ``payload`` is the body field holding what is signed (``claim_file``,
    ``data``, ``artifact``): a claim is compared by its ``critical`` section, the rest as is."""
    # a claim differs in its optional part: container requests are matched by their digest
    item_field = "manifest_digest" if payload == "claim_file" else payload

    def by_item(records):
        out = {}
        for r in records:
            body = json.loads(r["body"])
            out[(body[item_field], body["sig_key_id"])] = (r, body)
        return out

    theirs_by, ours_by = by_item(theirs), by_item(ours)
    assert len(theirs_by) == len(theirs) and len(ours_by) == len(ours), "items are distinct"
    assert set(theirs_by) == set(ours_by)
    for item, (t_rec, t_body) in theirs_by.items():
        o_rec, o_body = ours_by[item]
        assert common(o_rec) == common(t_rec), item
        assert list(o_body) == list(t_body), "same fields in the same order"
        for field in t_body:
            if field in ("request_id", "created"):
                continue
            if field == "claim_file":
                assert claim(o_body[field])["critical"] == claim(t_body[field])["critical"]
                assert claim(t_body[field])["optional"] == {"creator": "pubtools-sign"}
                assert set(claim(o_body[field])["optional"]) == {"creator", "timestamp"}
                continue
            expected = o_task if t_body[field] == t_task else t_body[field]
            assert o_body[field] == expected, field
        t_props = {k: v for k, v in t_rec["properties"].items() if k != "traceparent"}
        assert o_rec["properties"] == {k: (o_task if v == t_task else v)
                                       for k, v in t_props.items()}
        # the ids and timestamps that were set aside are still well formed
        assert uuid.UUID(o_body["request_id"]) and o_body["created"].endswith("Z")
        assert len(o_body["created"]) == len(t_body["created"])


def test_single_requests_match_pubtools_sign_field_by_field(tmp_path, bus, tls_material):
    theirs, ours, t_task, o_task = run_both(tmp_path, bus, tls_material, "single")
    assert len(theirs) == len(ours) == len(IMAGES) * len(KEYS)
    assert_same_single_requests(theirs, ours, t_task, o_task, "claim_file")


def test_dropin_container_sign_requests_match_pubtools_sign(tmp_path, bus, tls_material):
    conf = write_conf(tmp_path / "conf.yaml", bus.url, tls_material)
    args = ["--config-file", conf]
    for ref, digest in IMAGES:
        args += ["--reference", ref, "--digest", digest]
    for key, name in zip(KEYS, NAMES):
        args += ["--signing-key", key, "--signing-key-name", name]
    t_task, o_task = task_ids()
    theirs, ours = run_same_command(bus, MSG_CONTAINER_SIGN, args, t_task, o_task)
    assert len(theirs) == len(ours) == len(IMAGES) * len(KEYS)
    assert_same_single_requests(theirs, ours, t_task, o_task, "claim_file")


# pubtools-sign reads an @FILE as text (the locale's encoding) and sends that text, like a text
# given on the command line, encoded as latin-1: "caf\u00e9" goes as the byte E9, not as the file's
# UTF-8 C3 A9 (and a character outside latin-1, e.g. "\u20ac", makes it fail). Ours sends the
# file's own bytes, on purpose (README, "Replacing pubtools-sign": what is signed is the file):
# the "non-ascii" case holds ours to exactly that difference and to nothing else.
@pytest.mark.parametrize("text", ["Release notes\n\n- one\n- two\n",
                                  "Release notes\n\n- caf\u00e9 cr\u00e8me\n"],
                         ids=["ascii", "non-ascii"])
def test_dropin_clear_sign_requests_match_pubtools_sign(text, tmp_path, gpg_bus, tls_material,
                                                        gpg_keys):
    notes = tmp_path / "notes.txt"
    notes.write_text(text, encoding="utf-8")
    conf = write_conf(tmp_path / "conf.yaml", gpg_bus.url, tls_material)
    args = ["--config-file", conf, "--repo", "ns/app", "--signing-key", gpg_keys.a,
            "--signing-key", gpg_keys.b, "hello", f"@{notes}"]
    t_task, o_task = task_ids()
    theirs, ours = run_same_command(gpg_bus, MSG_CLEAR_SIGN, args, t_task, o_task)
    assert len(theirs) == len(ours) == 2 * 2
    assert {json.loads(r["body"])["data"] for r in theirs} == \
        {base64.b64encode(s.encode("latin-1")).decode() for s in ("hello", text)}
    assert {json.loads(r["body"])["data"] for r in ours} == \
        {base64.b64encode(s.encode("utf-8")).decode() for s in ("hello", text)}
    for record in theirs:  # their latin-1 bytes as the UTF-8 file's bytes; all else as sent
        body = json.loads(record["body"])
        body["data"] = base64.b64encode(
            base64.b64decode(body["data"]).decode("latin-1").encode("utf-8")).decode()
        record["body"] = json.dumps(body)
    assert_same_single_requests(theirs, ours, t_task, o_task, "data")


def test_dropin_blob_sign_requests_match_pubtools_sign(tmp_path, gpg_bus, tls_material,
                                                      gpg_keys):
    blobs = [tmp_path / "a.bin", tmp_path / "b.tar"]
    blobs[0].write_bytes(bytes(range(256)))
    blobs[1].write_bytes(b"\x1f\x8b not really a tarball\n" * 50)
    conf = write_conf(tmp_path / "conf.yaml", gpg_bus.url, tls_material)
    args = ["--config-file", conf, "--blob-file", blobs[0], "--blob-file", blobs[1]]
    for key, name in zip([gpg_keys.a, gpg_keys.b], NAMES):
        args += ["--signing-key", key, "--signing-key-name", name]
    t_task, o_task = task_ids()
    theirs, ours = run_same_command(gpg_bus, MSG_BLOB_SIGN, args, t_task, o_task)
    assert len(theirs) == len(ours) == len(blobs) * 2
    assert {json.loads(r["body"])["artifact"] for r in theirs} == \
        {base64.b64encode(b.read_bytes()).decode() for b in blobs}
    assert_same_single_requests(theirs, ours, t_task, o_task, "artifact")


def test_batch_requests_match_pubtools_sign_field_by_field(tmp_path, bus, tls_material):
    theirs, ours, t_task, o_task = run_both(tmp_path, bus, tls_material, "batch")
    # 3 images in 2 repos, chunk_size 2: ns/app (2 claims) and other/tool (1 claim)
    assert len(theirs) == len(ours) == 2

    def by_repo(records):
        return {json.loads(r["body"])["claims"][0]["repo"]: (r, json.loads(r["body"]))
                for r in records}

    theirs_by, ours_by = by_repo(theirs), by_repo(ours)
    assert set(theirs_by) == set(ours_by) == {"ns/app", "other/tool"}
    for repo, (t_rec, t_body) in theirs_by.items():
        o_rec, o_body = ours_by[repo]
        assert common(o_rec) == common(t_rec)
        assert list(o_body) == list(t_body)
        assert o_body["requested_by"] == t_body["requested_by"]
        assert (o_body["pipeline_run_id"], t_body["pipeline_run_id"]) == (o_task, t_task)
        assert len(o_body["claims"]) == len(t_body["claims"])
        for o_claim, t_claim in zip(o_body["claims"], t_body["claims"]):
            assert list(o_claim) == list(t_claim)
            for field in t_claim:
                if field == "claim_file":
                    assert claim(o_claim[field])["critical"] == claim(t_claim[field])["critical"]
                else:
                    assert o_claim[field] == t_claim[field], field
        t_props = {k: v for k, v in t_rec["properties"].items() if k != "traceparent"}
        assert o_rec["properties"] == {k: (o_task if v == t_task else v)
                                       for k, v in t_props.items()}
