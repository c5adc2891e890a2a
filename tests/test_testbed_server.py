"""The reference signing server (testbed/signing_server.py) and broker as subprocesses on
loopback, driven by a proton client that sends requests built like pubtools-sign 1.0.6's."""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import time
import uuid
from collections import Counter

import pytest
from proton import Message

from conftest import free_port, gpg_decrypt
from infra.tls import make_tls
from testbed import client_ssl_domain, exchange, stop
from testbed.broker import start_broker
from testbed.signing_server import start_signing_server

DIGEST = "sha256:" + "ab" * 32
REFERENCE = "registry.example.com/ns/app:1.0"
INSTANT = base64.b64encode(b"instant-signature").decode()  # clear-sign and blob requests


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    proc, port = start_broker(log=tmp_path_factory.mktemp("broker") / "broker.log")
    yield f"amqp://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture
def serve(broker, tmp_path):
    """serve(**switches) -> (request address, reply address): a signing server on fresh
    addresses, stopped after the test."""
    procs = []

    def start(listen_to=None, reply_to=None, **switches):
        listen_to = listen_to or f"queue://sign.{uuid.uuid4().hex[:8]}"
        reply_to = reply_to or f"queue://replies.{uuid.uuid4().hex[:8]}"
        proc, _ = start_signing_server(broker, listen_to, reply_to,
                                       log=tmp_path / f"server-{len(procs)}.log", **switches)
        procs.append(proc)
        return listen_to, reply_to

    yield start
    for proc in procs:
        stop(proc)


def instant_claim(key_id: str = "F1551776") -> str:
    """What --instant answers a container request for claim_of() with (deterministic): a signed
    message of the claim naming the key, with a dummy signature number."""
    from testbed.signing_server import instant_signed_message
    return base64.b64encode(instant_signed_message(base64.b64decode(claim_of()), key_id)).decode()


def claim_of(reference: str = REFERENCE, digest: str = DIGEST) -> str:
    """pubtools-sign's create_manifest_claim_message."""
    claim = {"critical": {"type": "atomic container signature",
                          "image": {"docker-manifest-digest": digest},
                          "identity": {"docker-reference": reference}},
             "optional": {"creator": "pubtools-sign"}}
    return base64.b64encode(json.dumps(claim).encode("latin1")).decode("latin1")


def sign_request(to: str, key: str, mtype: str, field: str, data: str, repo: str, *,
                 requester: str = "signing-client", key_name: str = "",
                 extra: dict) -> Message:
    """One single (not batch) signing request exactly as pubtools-sign 1.0.6's MsgSigner builds
    it; ``field`` holds the base64 ``data``, ``extra`` goes into both body and headers."""
    body = {"sig_key_id": key[-8:], field: data, "request_id": str(uuid.uuid4()),
            "created": datetime.datetime.now(datetime.UTC).isoformat()
            .replace("+00:00", "Z"),
            "requested_by": requester, "repo": repo}
    if key_name:
        body["sig_keyname"] = key_name
    body.update(extra)
    headers = {"service": "pubtools-sign", "environment": "prod", "owner_id": requester,
               "mtype": mtype, "source": "metadata", **extra}
    return Message(address=to, properties=headers, body=json.dumps(body), ttl=60 * 3)


def request(to: str, key: str, *, reference: str = REFERENCE, digest: str = DIGEST,
            requester: str = "signing-client", task_id: str = "t1",
            key_name: str = "") -> Message:
    """One container signing request exactly as pubtools-sign 1.0.6 builds it."""
    return sign_request(to, key, "container_signature", "claim_file", claim_of(reference, digest),
                        reference.split("/", 1)[1].split(":")[0], requester=requester,
                        key_name=key_name,
                        extra={"pub_task_id": task_id, "manifest_digest": digest})


def clearsign_request(to: str, key: str, text: str, key_name: str = "") -> Message:
    """pubtools-sign's clear_sign: the text base64 encoded as latin-1, in ``data``."""
    return sign_request(to, key, "clearsign_signature", "data",
                        base64.b64encode(text.encode("latin1")).decode("latin-1"), "ns/app",
                        key_name=key_name, extra={"pub_task_id": "t1"})


def blob_request(to: str, key: str, blob: bytes) -> Message:
    """pubtools-sign's blob_sign: the file's bytes base64 encoded, in ``artifact``, no repo."""
    return sign_request(to, key, "gpg_signature", "artifact", base64.b64encode(blob).decode(),
                        "", extra={"pub_task_id": "t1"})


def batch_request(to: str, keys: list[str], digests: list[str], task_id: str = "t1") -> Message:
    """One batch request as pubtools-sign's MsgBatchSigner builds it (one repo, one chunk)."""
    claims = [{"claim_file": claim_of(REFERENCE, d), "sig_keynames": [""],
               "sig_key_ids": [k[-8:] for k in keys], "manifest_digest": d, "repo": "ns/app"}
              for d in digests]
    body = {"claims": claims, "request_id": str(uuid.uuid4()),
            "created": "2026-11-22T01:11:25.645383Z", "requested_by": "signing-client",
            "pipeline_run_id": task_id}
    headers = {"service": "pubtools-sign", "environment": "prod", "owner_id": "signing-client",
               "mtype": "batch", "source": "metadata", "pipeline_run_id": task_id}
    return Message(address=to, properties=headers, body=json.dumps(body), ttl=180)


def rid(message: Message) -> str:
    return json.loads(message.body)["request_id"]


def reply_id(body) -> str | None:
    """The request id a reply answers, or None for what is not a well-formed reply."""
    try:
        return json.loads(body)["msg"]["request_id"]
    except (ValueError, TypeError, KeyError):
        return None


def replies_to(sent: list[Message]):
    """until=: stop once the last request's reply is in. Instant mode answers in order and the
    broker keeps order, so everything due for the earlier requests has arrived by then."""
    last = rid(sent[-1])
    return lambda received: any(reply_id(r.message.body) == last for r in received)


def run(broker, listen_to, reply_to, sent, **kwargs):
    kwargs.setdefault("expect", len(sent))
    got = exchange(broker, receive_from=[reply_to], send=sent, **kwargs)
    assert got.errors == [] and not got.timed_out, got
    return got


def signed_by(signature_b64: str, home: str) -> tuple[dict, str]:
    claim, signer = gpg_decrypt(base64.b64decode(signature_b64), home)
    return json.loads(claim), signer


def replies_by_id(got) -> dict:
    return {reply_id(r.message.body): json.loads(r.message.body)["msg"] for r in got.received}


def packet_tag(data: bytes) -> int | None:
    """The tag of the first packet of binary OpenPGP data (RFC 4880 4.2), None if not binary
    (armored, say)."""
    first = data[0] if data else 0
    if not first & 0x80:
        return None
    return first & 0x3F if first & 0x40 else (first >> 2) & 0x0F


def verify_detached(signature: bytes, blob: bytes, home: str, folder) -> str | None:
    """The fingerprint that made ``signature`` over ``blob`` if ``gpg --verify NAME.sig NAME``
    accepts it (as a client that wrote both files would check), else None."""
    (folder / "blob.sig").write_bytes(signature)
    (folder / "blob").write_bytes(blob)
    proc = subprocess.run(["gpg", "--batch", "--status-fd", "1", "--verify",
                           str(folder / "blob.sig"), str(folder / "blob")],
                          env={**os.environ, "GNUPGHOME": home}, capture_output=True, text=True)
    valid = [ln.split()[2] for ln in proc.stdout.splitlines() if ln.startswith("[GNUPG:] VALIDSIG")]
    return valid[0] if proc.returncode == 0 and valid else None


# -- signing ---------------------------------------------------------------------------------

def test_a_pubtools_sign_request_is_signed_with_the_requested_key(broker, serve, gpg_keys):
    listen_to, reply_to = serve(gnupg_home=gpg_keys.home)
    other = "sha256:" + "cd" * 32
    sent = [request(listen_to, gpg_keys.a, key_name="release"),
            request(listen_to, gpg_keys.b.lower(), digest=other)]  # key ids: any case
    got = run(broker, listen_to, reply_to, sent)
    replies = {reply_id(r.message.body): r.message for r in got.received}
    for message, key, digest in zip(sent, (gpg_keys.a, gpg_keys.b), (DIGEST, other)):
        reply = replies[rid(message)]
        outer = json.loads(reply.body)
        assert isinstance(reply.body, str)
        assert set(outer) == {"msg", "msg_id", "timestamp", "topic"}
        assert outer["topic"] == reply_to
        uuid.UUID(outer["msg_id"])
        datetime.datetime.fromisoformat(outer["timestamp"].replace("Z", "+00:00"))
        msg = outer["msg"]
        signed_claim = msg.pop("signed_claim")
        assert msg == {**json.loads(message.body), "errors": [], "signing_status": "success"}
        claim, signer = signed_by(signed_claim, gpg_keys.home)
        assert signer == key
        assert claim["critical"] == {"type": "atomic container signature",
                                     "image": {"docker-manifest-digest": digest},
                                     "identity": {"docker-reference": REFERENCE}}
        assert reply.properties == message.properties  # the headers come back


def test_an_unknown_key_gets_an_error_reply_without_a_signature(broker, serve, gpg_keys):
    listen_to, reply_to = serve(gnupg_home=gpg_keys.home)
    sent = [request(listen_to, "0123456789ABCDEF0123456789ABCDEFDEADBEEF")]
    msg = json.loads(run(broker, listen_to, reply_to, sent).received[0].message.body)["msg"]
    assert msg["signing_status"] == "failure" and "signed_claim" not in msg
    assert msg["errors"] and "DEADBEEF" in msg["errors"][0]


def test_a_batch_request_gets_a_signature_per_claim_and_key(broker, serve, gpg_keys):
    listen_to, reply_to = serve(gnupg_home=gpg_keys.home)
    digests = ["sha256:" + "11" * 32, "sha256:" + "22" * 32]
    good = batch_request(listen_to, [gpg_keys.a, gpg_keys.b], digests)
    bad = batch_request(listen_to, [gpg_keys.a, "ABCDEF0123456789DEADBEEF"], digests[:1])
    got = run(broker, listen_to, reply_to, [good, bad])
    replies = {reply_id(r.message.body): json.loads(r.message.body)["msg"] for r in got.received}

    msg = replies[rid(good)]
    claims = msg.pop("claims")
    request_body = json.loads(good.body)
    assert msg == {k: v for k, v in request_body.items() if k != "claims"} | {
        "errors": [], "signing_status": "success"}
    assert len(claims) == 2
    for claim, asked, digest in zip(claims, request_body["claims"], digests):
        signatures = claim.pop("signed_claims")
        assert claim == {**asked, "errors": []}
        assert set(signatures) == {gpg_keys.a[-8:], gpg_keys.b[-8:]}
        for key in (gpg_keys.a, gpg_keys.b):
            content, signer = signed_by(signatures[key[-8:]], gpg_keys.home)
            assert signer == key
            assert content["critical"]["image"]["docker-manifest-digest"] == digest

    msg = replies[rid(bad)]
    assert msg["signing_status"] == "failure" and len(msg["errors"]) == 1
    (claim,) = msg["claims"]
    assert set(claim["signed_claims"]) == {gpg_keys.a[-8:]}
    assert len(claim["errors"]) == 1 and "DEADBEEF" in claim["errors"][0]


def test_replies_through_a_virtual_topic_reach_the_clients_consumer_queue(broker, serve):
    # pubtools-sign's production addresses: the server publishes on the topic, the client
    # reads its own Consumer.{creator}.{task_id}. queue
    send_to = "topic://VirtualTopic.eng.robosignatory.container.sign"
    listen_to, reply_to = serve(listen_to=send_to,
                                reply_to="topic://VirtualTopic.eng.pub.sign", instant=True)
    task = uuid.uuid4().hex[:8]
    mine = f"queue://Consumer.signing-client.{task}.VirtualTopic.eng.pub.sign"
    other = f"queue://Consumer.other-client.{task}.VirtualTopic.eng.pub.sign"
    sent = [request(send_to, "F1551776", task_id=task)]
    got = exchange(broker, receive_from=[mine, other], send=sent, expect=2)
    assert got.errors == [] and not got.timed_out
    for i in (0, 1):  # every consumer queue gets its copy
        (body,) = got.bodies(i)
        outer = json.loads(body)
        assert outer["topic"] == "topic://VirtualTopic.eng.pub.sign"
        assert outer["msg"]["request_id"] == rid(sent[0])
        assert outer["msg"]["signed_claim"] == instant_claim()


def test_a_clearsign_request_gets_the_clear_signed_text(broker, serve, gpg_keys):
    listen_to, reply_to = serve(gnupg_home=gpg_keys.home)
    text = "Release notes for w\xe4rld\n- a line gpg dash-escapes\n\nthe end\n"
    sent = [clearsign_request(listen_to, gpg_keys.a, text, key_name="release")]
    (reply,) = run(broker, listen_to, reply_to, sent).received
    msg = json.loads(reply.message.body)["msg"]
    signed = base64.b64decode(msg.pop("signed_data"))
    assert msg == {**json.loads(sent[0].body), "errors": [], "signing_status": "success"}
    assert reply.message.properties == sent[0].properties
    assert signed.startswith(b"-----BEGIN PGP SIGNED MESSAGE-----\n")
    assert signed.rstrip().endswith(b"-----END PGP SIGNATURE-----")
    assert gpg_decrypt(signed, gpg_keys.home) == (text.encode("latin1"), gpg_keys.a)


def test_a_blob_request_gets_a_detached_signature_of_the_bytes(broker, serve, gpg_keys,
                                                               tmp_path):
    listen_to, reply_to = serve(gnupg_home=gpg_keys.home)
    blob = bytes(range(256)) * 4
    sent = [blob_request(listen_to, gpg_keys.b, blob)]
    (reply,) = run(broker, listen_to, reply_to, sent).received
    msg = json.loads(reply.message.body)["msg"]
    signature = base64.b64decode(msg.pop("signed_payload"))
    assert msg == {**json.loads(sent[0].body), "errors": [], "signing_status": "success"}
    assert msg["artifact"] == base64.b64encode(blob).decode() and msg["repo"] == ""
    assert packet_tag(signature) == 2  # a binary signature packet first, not armored
    assert verify_detached(signature, blob, gpg_keys.home, tmp_path) == gpg_keys.b
    assert verify_detached(signature, blob[:-1] + b"X", gpg_keys.home, tmp_path) is None


@pytest.mark.parametrize("make, field, data", [(clearsign_request, "data", "text\n"),
                                               (blob_request, "artifact", b"blob")])
def test_bad_clearsign_and_blob_requests_get_errors_without_a_signature(broker, serve, gpg_keys,
                                                                        make, field, data):
    listen_to, reply_to = serve(gnupg_home=gpg_keys.home, error_for_key=gpg_keys.b)

    def with_input(value):  # a request for key A with ``value`` as its input (None: none)
        message = make(listen_to, gpg_keys.a, data)
        body = {k: v for k, v in json.loads(message.body).items() if k != field}
        message.body = json.dumps(body if value is None else {**body, field: value})
        return message

    sent = [with_input("not base64!"), with_input(None), make(listen_to, gpg_keys.b, data)]
    replies = replies_by_id(run(broker, listen_to, reply_to, sent))
    for message, why in zip(sent, (f"{field} is not base64", f"no {field}", "refused")):
        msg = replies[rid(message)]
        assert msg["signing_status"] == "failure"
        assert len(msg["errors"]) == 1 and why in msg["errors"][0]
        assert not {"signed_claim", "signed_data", "signed_payload"} & set(msg)


def test_instant_mode_answers_clearsign_and_blob_requests(broker, serve):
    listen_to, reply_to = serve(instant=True)
    sent = [clearsign_request(listen_to, "F1551776", "text\n"),
            blob_request(listen_to, "F1551776", b"\0blob")]
    replies = replies_by_id(run(broker, listen_to, reply_to, sent))
    assert replies[rid(sent[0])]["signed_data"] == INSTANT
    assert replies[rid(sent[1])]["signed_payload"] == INSTANT
    assert all(m["signing_status"] == "success" and m["errors"] == [] for m in replies.values())


# -- fault switches --------------------------------------------------------------------------

def test_delay_holds_each_reply_back_without_queueing_them(broker, serve):
    delay = 1.0
    listen_to, reply_to = serve(instant=True, delay=delay)
    sent = [request(listen_to, "F1551776") for _ in range(4)]
    got = run(broker, listen_to, reply_to, sent)
    arrivals = sorted(r.at for r in got.received)
    assert arrivals[0] - got.sent_at >= delay
    assert arrivals[-1] - arrivals[0] < delay  # one after another would take 4 x delay


def test_drop_every_nth_request_gets_no_reply(broker, serve):
    listen_to, reply_to = serve(instant=True, drop_every=3)
    sent = [request(listen_to, "F1551776") for _ in range(7)]
    got = run(broker, listen_to, reply_to, sent, until=replies_to(sent))
    answered = [reply_id(r.message.body) for r in got.received]
    assert answered == [rid(sent[i]) for i in (0, 1, 3, 4, 6)]


def test_error_for_key_refuses_only_that_key(broker, serve, gpg_keys):
    listen_to, reply_to = serve(gnupg_home=gpg_keys.home, error_for_key=gpg_keys.a[-8:].lower())
    sent = [request(listen_to, gpg_keys.a), request(listen_to, gpg_keys.b)]
    got = run(broker, listen_to, reply_to, sent)
    replies = {reply_id(r.message.body): json.loads(r.message.body)["msg"] for r in got.received}
    refused, signed = replies[rid(sent[0])], replies[rid(sent[1])]
    assert refused["signing_status"] == "failure" and len(refused["errors"]) == 1
    assert "signed_claim" not in refused
    assert signed["errors"] == [] and signed["signing_status"] == "success"
    assert signed_by(signed["signed_claim"], gpg_keys.home)[1] == gpg_keys.b


def test_duplicate_sends_every_reply_twice(broker, serve):
    listen_to, reply_to = serve(instant=True, duplicate=True)
    sent = [request(listen_to, "F1551776") for _ in range(3)]
    last = rid(sent[-1])
    got = run(broker, listen_to, reply_to, sent, until=lambda received: sum(
        reply_id(r.message.body) == last for r in received) == 2)
    bodies = got.bodies()
    assert Counter(map(reply_id, bodies)) == {rid(m): 2 for m in sent}
    assert bodies[0] == bodies[1]  # the same reply, msg_id included
    assert json.loads(bodies[0])["msg"]["signed_claim"] == instant_claim()


def test_stray_replies_carry_unknown_ids_and_come_before_the_real_one(broker, serve):
    listen_to, reply_to = serve(instant=True, stray=2)
    sent = [request(listen_to, "F1551776") for _ in range(3)]
    got = run(broker, listen_to, reply_to, sent, until=replies_to(sent))
    ids = [reply_id(body) for body in got.bodies()]
    ours = [rid(m) for m in sent]
    assert len(ids) == 9 and [i for i in ids if i in ours] == ours
    for n, real in enumerate(ours):  # each request: two strays, then its reply
        strays = ids[3 * n:3 * n + 2]
        assert ids[3 * n + 2] == real
        assert len(set(strays)) == 2 and not set(strays) & set(ours)
    stray = json.loads(got.bodies()[0])["msg"]
    assert stray["signing_status"] == "success" and stray["errors"] == []


def test_garbage_comes_before_each_real_reply(broker, serve):
    listen_to, reply_to = serve(instant=True, garbage=True)
    sent = [request(listen_to, "F1551776") for _ in range(2)]
    got = run(broker, listen_to, reply_to, sent, until=replies_to(sent))
    bodies = got.bodies()
    assert len(bodies) == 6
    for n, message in enumerate(sent):
        not_json, no_msg, real = bodies[3 * n:3 * n + 3]
        with pytest.raises(ValueError):
            json.loads(not_json)
        assert isinstance(json.loads(no_msg), dict) and "msg" not in json.loads(no_msg)
        assert reply_id(real) == rid(message)


def test_oversized_sends_a_reply_of_that_size_with_an_unknown_id(broker, serve):
    size = 300_000
    listen_to, reply_to = serve(instant=True, oversized=size)
    sent = [request(listen_to, "F1551776")]
    got = run(broker, listen_to, reply_to, sent, until=replies_to(sent))
    big, real = got.bodies()
    assert len(big) == size
    assert reply_id(big) not in (None, rid(sent[0]))
    assert reply_id(real) == rid(sent[0])


def test_wrong_key_signs_with_another_key_than_asked(broker, serve, gpg_keys):
    listen_to, reply_to = serve(gnupg_home=gpg_keys.home, wrong_key=gpg_keys.b)
    sent = [request(listen_to, gpg_keys.a)]
    msg = json.loads(run(broker, listen_to, reply_to, sent).bodies()[0])["msg"]
    assert msg["signing_status"] == "success" and msg["sig_key_id"] == gpg_keys.a[-8:]
    assert signed_by(msg["signed_claim"], gpg_keys.home)[1] == gpg_keys.b


def test_a_request_that_is_not_json_is_ignored_and_serving_goes_on(broker, serve):
    listen_to, reply_to = serve(instant=True)
    sent = [Message(address=listen_to, body="not json"), request(listen_to, "F1551776")]
    got = run(broker, listen_to, reply_to, sent, until=replies_to(sent))
    assert [reply_id(b) for b in got.bodies()] == [rid(sent[1])]


# -- connections, speed, stopping ------------------------------------------------------------

def test_it_reconnects_when_the_broker_comes_back(tmp_path):
    broker_proc, port = start_broker(log=tmp_path / "broker.log")
    url = f"amqp://127.0.0.1:{port}"
    server, ready = start_signing_server(url, "queue://requests", "queue://replies",
                                         instant=True, log=tmp_path / "server.log")
    try:
        first = [request("queue://requests", "F1551776")]
        assert len(run(url, "queue://requests", "queue://replies", first).received) == 1
        stop(broker_proc)
        broker_proc, _ = start_broker(port, log=tmp_path / "broker.log")
        # sent before or after the server is back: the queue keeps it until it is
        second = [request("queue://requests", "F1551776")]
        got = run(url, "queue://requests", "queue://replies", second, timeout=30)
        assert reply_id(got.bodies()[0]) == rid(second[0])
        with open(ready["ready_file"]) as f:
            assert json.load(f)["attached"] == 2
        assert server.poll() is None
    finally:
        stop(server)
        stop(broker_proc)


def test_it_moves_on_to_the_next_broker_url_when_one_is_down(broker, tmp_path):
    down = f"amqp://127.0.0.1:{free_port()}"
    server, _ = start_signing_server([down, broker], "queue://failover", "queue://failed-over",
                                     instant=True, log=tmp_path / "server.log")
    try:
        sent = [request("queue://failover", "F1551776")]
        got = run(broker, "queue://failover", "queue://failed-over", sent)
        assert reply_id(got.bodies()[0]) == rid(sent[0])
    finally:
        stop(server)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls(tmp_path_factory.mktemp("tls"))


def test_it_talks_tls_with_a_client_certificate_and_checks_the_broker(tls, tmp_path, gpg_keys):
    broker_proc, port = start_broker(tls_cert=tls.server_cert, tls_key=tls.server_key,
                                     tls_ca=tls.ca_cert, log=tmp_path / "broker.log")
    rogue, rogue_port = start_broker(tls_cert=tls.rogue_server_cert,
                                     tls_key=tls.rogue_server_key, log=tmp_path / "rogue.log")
    server = None
    try:
        url = f"amqps://localhost:{port}"
        server, _ = start_signing_server(url, "queue://requests", "queue://replies",
                                         gnupg_home=gpg_keys.home, cert_key=tls.client_pem,
                                         ca_cert=tls.ca_cert, log=tmp_path / "server.log")
        sent = [request("queue://requests", gpg_keys.a)]
        got = run(url, "queue://requests", "queue://replies", sent,
                  ssl_domain=client_ssl_domain(tls.client_pem, tls.ca_cert))
        msg = json.loads(got.bodies()[0])["msg"]
        assert signed_by(msg["signed_claim"], gpg_keys.home)[1] == gpg_keys.a
        with pytest.raises(RuntimeError, match="certificate verify failed"):
            start_signing_server(f"amqps://localhost:{rogue_port}", "queue://requests",
                                 "queue://replies", gnupg_home=gpg_keys.home,
                                 # (it exits at once on a failed TLS check)
                                 cert_key=tls.client_pem, ca_cert=tls.ca_cert, timeout=60,
                                 log=tmp_path / "server-rogue.log")
    finally:
        for proc in (server, rogue, broker_proc):
            if proc is not None:
                stop(proc)


def test_instant_mode_answers_thousands_of_requests(broker, serve):
    listen_to, reply_to = serve(instant=True)
    sent = [request(listen_to, "F1551776") for _ in range(1000)]
    started = time.monotonic()
    got = run(broker, listen_to, reply_to, sent, timeout=60)
    took = time.monotonic() - started
    assert sorted(map(reply_id, got.bodies())) == sorted(map(rid, sent))
    assert took < 30, f"{took:.1f} s"


def test_sigterm_ends_it_at_once(broker, tmp_path):
    server, _ = start_signing_server(broker, "queue://x", "queue://y", instant=True,
                                     log=tmp_path / "server.log")
    started = time.monotonic()
    assert stop(server, timeout=5) == 0
    assert time.monotonic() - started < 2
