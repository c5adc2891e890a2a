"""The msg session makes its requests as they go out (issue 26 item 2): at most MAX_IN_FLIGHT
unanswered at a time, the next ones as replies come, in plan order and byte for byte the
requests made all at once; given up, the ones never made fail too. Against a fake link (the
session's own logic) and end to end through the embedded broker with more requests than the
window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_entrypoint
from signaction.plan import Image, SigningKey, WorkItem
from signaction.reference import parse_reference
from signers.msg import session as msg_session
from signers.msg.session import CREDIT, MAX_IN_FLIGHT, REFILL_AT, Session, Settings
from signers.msg.wire import Fields, RequestIds, lazy_single_requests, single_requests
from test_msg_integration import SERVER_QUEUE, conf, signature_files
from testbed import launch, stop

KEY = "0123456789ABCDEF0123456789ABCDEF01234567"
FIELDS = Fields("me", "t", "prod", "svc", "topic://x", "csa", 1767225600)


@pytest.fixture
def broker():  # one per test, as in test_msg_integration
    proc, info = launch("testbed.broker", ["--listen", "127.0.0.1:0"])
    yield f"amqp://127.0.0.1:{info['port']}"
    stop(proc)


def work(n: int) -> list[WorkItem]:
    return [WorkItem(Image(parse_reference(f"r.io/ns/app{i % 7}:v{i}")[0], f"sha256:{i:064x}",
                           "test"), SigningKey(KEY, KEY)) for i in range(n)]


class Sender:
    """A sender link with plenty of credit: what the session sends, in order."""

    def __init__(self, address: str):
        self.credit = 10 ** 9
        self.target = type("Target", (), {"address": address})()
        self.sent: list = []

    def send(self, message, tag):
        self.credit -= 1
        self.sent.append(message)


class Made:
    """Counts the requests taken from a lazy source."""

    def __init__(self, source):
        self.source, self.count = source, 0

    def __iter__(self):
        for req in self.source:
            self.count += 1
            yield req


def attached_session(n: int, ids: RequestIds):
    made = Made(lazy_single_requests(work(n), FIELDS, ids))
    delivered, failed = [], []
    settings = Settings(["amqp://127.0.0.1:1"], "topic://x", "queue://r", "prod", "svc", 60.0,
                        3, 2, "request_id", "pub_task_id")
    session = Session(settings, made, lambda req, *a: delivered.append(req),
                      lambda req, why: failed.append((req, why)), float("inf"), 60.0, ids)
    stopped = []
    session.container = type("Container", (), {"stop": lambda self: stopped.append(True)})()
    sender = Sender("topic://x")
    session.bus.listening = True
    session.bus.senders["topic://x"] = sender
    return session, sender, made, delivered, failed, stopped


def reply(session: Session, message) -> None:
    body = json.loads(message.body)
    session._reply(json.dumps({"msg": {"request_id": body["request_id"], "errors": []}}), {})


def test_requests_are_made_a_window_at_a_time_in_order_and_as_made_at_once():
    n = 2 * MAX_IN_FLIGHT + 321
    ids = RequestIds()
    session, sender, made, delivered, failed, stopped = attached_session(n, ids)
    session._refill()
    assert made.count == len(sender.sent) == len(session.progress.unanswered) == MAX_IN_FLIGHT
    for message in sender.sent[:MAX_IN_FLIGHT - REFILL_AT - 1]:
        reply(session, message)
    assert made.count == MAX_IN_FLIGHT  # not yet: only REFILL_AT + 1 are left
    reply(session, sender.sent[MAX_IN_FLIGHT - REFILL_AT - 1])
    assert made.count == len(sender.sent) == MAX_IN_FLIGHT + CREDIT  # the window full again
    answered = MAX_IN_FLIGHT - REFILL_AT
    while answered < len(sender.sent):
        reply(session, sender.sent[answered])
        answered += 1
        assert len(session.progress.unanswered) <= MAX_IN_FLIGHT
    assert answered == made.count == n and len(delivered) == n and not failed
    assert session.progress.done and stopped == [True]
    # the messages: the requests of the plan in its order, each as made all at once (ids,
    # created and the wire fields)
    again = RequestIds()
    again._base = ids._base
    expected = single_requests(work(n), FIELDS, again)
    for message, req in zip(sender.sent, expected, strict=True):
        body = json.loads(message.body)
        req.created = body["created"]
        assert message.body == req.body and message.properties == req.properties
        assert message.address == "topic://x"


def test_given_up_the_requests_never_made_fail_too_and_are_not_known():
    n = MAX_IN_FLIGHT + 500
    session, sender, made, delivered, failed, stopped = attached_session(n, RequestIds())
    session._refill()
    for message in sender.sent[:10]:
        reply(session, message)
    session._give_up("the deadline was reached")
    assert len(sender.sent) == MAX_IN_FLIGHT  # nothing more sent
    assert len(delivered) == 10 and len(failed) == n - 10
    assert all(why == "no signature: the deadline was reached" for _, why in failed)
    items = [req.items[0] for req in delivered] + [req.items[0] for req, _ in failed]
    assert sorted(i.container.digest for i in items) == [f"sha256:{i:064x}" for i in range(n)]
    assert len(session.progress.given_up) == MAX_IN_FLIGHT - 10  # those a reply may still come for
    assert session.progress.done and session.progress.source is None


def test_an_empty_source_is_no_session_and_a_mapping_still_works():
    settings = Settings(["amqp://127.0.0.1:1"], "a", "b", "prod", "svc", 1.0, 1, 1,
                        "request_id", "pub_task_id")
    assert msg_session.run_session(settings, iter(()), print, print, 0.0, 1.0) == \
        dict.fromkeys(msg_session.COUNTERS, 0)
    reqs = single_requests(work(3), FIELDS)
    session = Session(settings, {r.request_id: r for r in reqs}, print, print, 0.0, 1.0)
    assert list(session.progress.unanswered) == [r.request_id for r in reqs]
    assert session.progress.source is None and set(reqs[0].request_id) <= set(
        "0123456789abcdef-")


def test_more_images_than_the_window_through_the_broker(tmp_path: Path, broker, tls_material,
                                                        gpg_keys):
    """End to end, past the window, a reply dropped now and then: every image signed once, in
    order in results.json, and only what was dropped sent again."""
    n = MAX_IN_FLIGHT + 500
    server, _ = launch("testbed.signing_server", [
        "--broker", broker, "--listen-to", SERVER_QUEUE, "--reply-to",
        "topic://VirtualTopic.eng.pub.sign", "--instant", "--drop-every", "1000"])
    try:
        listing = tmp_path / "images.json"
        listing.write_text(json.dumps([{"reference": f"registry.example.com/ns/app{i % 9}:v{i}",
                                        "digest": f"sha256:{i:064x}"} for i in range(n)]))
        out = tmp_path / "out"
        run = run_entrypoint("--signer", "msg", "--config-file", str(conf(
            tmp_path, broker, tls_material, timeout=2, retries=1, send_retries=2)),
            "--task-id", "t1", "--output-dir", str(out), "--images-file", str(listing),
            "--signing-key", gpg_keys.a, "--log-level", "warning")
    finally:
        stop(server)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [e["status"] for e in results["images"]] == ["ok"] * n
    assert [e["digest"] for e in results["images"]] == [f"sha256:{i:064x}" for i in range(n)]
    ops = results["operation_results"]
    assert [o[0]["msg"]["manifest_digest"] for o in ops] == \
        [f"sha256:{i:064x}" for i in range(n)]
    assert results["signer_stats"]["resent"] == n // 1000  # the dropped ones only
    assert len(signature_files(out)) == n
