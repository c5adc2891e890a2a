"""Wire compatibility with pubtools-sign 1.0.6, proven: both clients sign the same images with the
same config through one broker that records every message it receives; their requests are then
compared field by field. Set aside: ids (request_id), timestamps (created), and the claim's
``optional`` section (creator names the tool; this project adds an integer timestamp). Everything
else must be equal: address, application properties, body fields and their order, the claim's
``critical`` section, ttl, durability, body type.

pubtools-sign runs from its own venv, installed from PyPI on first use (tests/infra/pubtools_sign.py).
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from conftest import run_entrypoint
from infra.pubtools_sign import run_pubtools_msg_container_sign
from reference import launch, stop

pytestmark = pytest.mark.integration

SEND_TO = "topic://VirtualTopic.eng.robosignatory.container.sign"
SERVER_QUEUE = "queue://Consumer.robosig.VirtualTopic.eng.robosignatory.container.sign"
REPLY_TOPIC = "topic://VirtualTopic.eng.pub.sign"
LISTEN_TO = "queue://Consumer.{creator}.{task_id}.VirtualTopic.eng.pub.sign"
KEYS = ["0123456789ABCDEF0123456789ABCDEF01234567", "FEDCBA9876543210FEDCBA9876543210FEDCBA98"]
NAMES = ["release-key", "beta-key"]
IMAGES = [("registry.example.com/ns/app:1.0", "sha256:" + "1" * 64),
          ("registry.example.com/ns/app:1.1", "sha256:" + "2" * 64),
          ("registry.example.com/other/tool:latest", "sha256:" + "3" * 64)]


@pytest.fixture
def recorded_broker(tmp_path):
    record = tmp_path / "wire.jsonl"
    broker, info = launch("reference.broker", ["--listen", "127.0.0.1:0", "--record", record])
    url = f"amqp://127.0.0.1:{info['port']}"
    server, _ = launch("reference.signing_server", ["--broker", url, "--listen-to", SERVER_QUEUE,
                                                    "--reply-to", REPLY_TOPIC, "--instant"])
    yield url, record
    stop(server)
    stop(broker)


def write_conf(path, url, tls, section):
    body = {"messaging_brokers": [url], "messaging_cert_key": str(tls.client_pem),
            "messaging_ca_cert": str(tls.ca_cert), "topic_send_to": SEND_TO,
            "topic_listen_to": LISTEN_TO, "environment": "prod", "service": "pubtools-sign",
            "timeout": 20, "retries": 3, "send_retries": 2, "message_id_key": "request_id",
            "log_level": "info",  # pubtools-sign 1.0.6 fails without it (KeyError)
            "task_id_attribute": "pub_task_id"}
    if section == "msg_batch_signer":
        body["chunk_size"] = 2
    path.write_text(json.dumps({section: body}))
    return path


def requests_of(record, task_id):
    """The signing requests one client sent (the broker also records the server's replies)."""
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    return [r for r in lines if r["address"] == SEND_TO and task_id in json.dumps(r["properties"])]


def claim(b64: str) -> dict:
    return json.loads(base64.b64decode(b64))


def common(record: dict) -> dict:
    return {k: record[k] for k in ("address", "body_type", "ttl", "durable", "subject",
                                   "reply_to", "correlation_id")}


def run_both(tmp_path, url, record, tls, signer_type):
    section = "msg_batch_signer" if signer_type == "batch" else "msg_signer"
    conf = write_conf(tmp_path / "conf.yaml", url, tls, section)
    theirs_task, ours_task = f"pt-{uuid.uuid4().hex[:6]}", f"us-{uuid.uuid4().hex[:6]}"
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
    return requests_of(record, theirs_task), requests_of(record, ours_task), theirs_task, ours_task


def test_single_requests_match_pubtools_sign_field_by_field(tmp_path, recorded_broker,
                                                            tls_material):
    url, record = recorded_broker
    theirs, ours, t_task, o_task = run_both(tmp_path, url, record, tls_material, "single")
    assert len(theirs) == len(ours) == len(IMAGES) * len(KEYS)

    def by_item(records):
        out = {}
        for r in records:
            body = json.loads(r["body"])
            out[(body["manifest_digest"], body["sig_key_id"])] = (r, body)
        return out

    theirs_by, ours_by = by_item(theirs), by_item(ours)
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


def test_batch_requests_match_pubtools_sign_field_by_field(tmp_path, recorded_broker,
                                                           tls_material):
    url, record = recorded_broker
    theirs, ours, t_task, o_task = run_both(tmp_path, url, record, tls_material, "batch")
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
