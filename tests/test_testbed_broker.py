"""The reference broker (testbed/broker.py) as a subprocess on loopback, driven by a real proton
client: ActiveMQ addressing, anonymous relay, the --record file, TLS, and speed."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from proton import Message

from infra.tls import make_tls
from testbed import client_ssl_domain, exchange, stop
from testbed.broker import start_broker


def unique(prefix: str) -> str:
    """A fresh name: the broker is shared by the module's tests and keeps its queues."""
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def messages(address: str | None, *bodies) -> list[Message]:
    return [Message(address=address, body=body) for body in bodies]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    folder = tmp_path_factory.mktemp("broker")
    record = folder / "record.jsonl"
    proc, port = start_broker(record=record, log=folder / "broker.log")
    yield f"amqp://127.0.0.1:{port}", record
    stop(proc)


@pytest.fixture(scope="module")
def url(broker):
    return broker[0]


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_broker(tls, tmp_path_factory):
    """TLS only, and clients must show a certificate from the test CA."""
    proc, port = start_broker(tls_cert=tls.server_cert, tls_key=tls.server_key,
                              tls_ca=tls.ca_cert,
                              log=tmp_path_factory.mktemp("tls-broker") / "broker.log")
    yield port
    stop(proc)


# -- queues ---------------------------------------------------------------------------------

def test_a_queue_keeps_what_was_sent_before_any_consumer(url):
    name = unique("q")
    sent = exchange(url, send=messages(f"queue://{name}", "a", "b") + messages(name, "c"))
    assert (sent.accepted, sent.errors) == (3, [])
    # "queue://NAME" and a bare NAME are the same queue; order is kept
    got = exchange(url, receive_from=[f"queue://{name}"], expect=3)
    assert got.bodies() == ["a", "b", "c"] and not got.timed_out
    again = exchange(url, receive_from=[name], send=messages(name, "d"), send_to=name, expect=1)
    assert again.bodies() == ["d"]  # the three were taken: nothing left but the new one


def test_consumers_of_one_queue_take_turns(url):
    name = f"queue://{unique('rr')}"
    bodies = [f"m{i}" for i in range(10)]
    got = exchange(url, receive_from=[name, name], send=messages(name, *bodies), expect=10)
    first, second = got.bodies(0), got.bodies(1)
    assert sorted(first + second, key=lambda b: int(b[1:])) == bodies
    assert {tuple(first), tuple(second)} == {tuple(bodies[0::2]), tuple(bodies[1::2])}


def test_a_message_that_was_not_accepted_is_delivered_again(url):
    name = f"queue://{unique('redeliver')}"
    exchange(url, send=messages(name, "x", "y"))
    unsettled = exchange(url, receive_from=[name], expect=2, settle=False)
    assert unsettled.bodies() == ["x", "y"]
    again = exchange(url, receive_from=[name], expect=2)
    assert again.bodies() == ["x", "y"]


# -- topics and virtual topics --------------------------------------------------------------

def test_a_topic_copies_to_each_subscriber_present_and_keeps_nothing(url):
    topic = f"topic://{unique('t')}"
    nobody = exchange(url, send=messages(topic, "early"))
    assert nobody.accepted == 1
    got = exchange(url, receive_from=[topic, topic], send=messages(topic, "one", "two"),
                   expect=4)
    assert got.bodies(0) == ["one", "two"] and got.bodies(1) == ["one", "two"]


def test_a_virtual_topic_is_copied_into_each_consumer_queue(url):
    x = unique("VirtualTopic.eng")
    a, b, c = (f"queue://Consumer.{who}.{x}" for who in ("A", "B", "svc.task-1"))
    # consumers attach once (the queues now exist), then go away
    assert exchange(url, receive_from=[a, b]).errors == []
    exchange(url, send=messages(f"topic://{x}", "m1", "m2"))
    assert exchange(url, receive_from=[a], expect=2).bodies() == ["m1", "m2"]
    assert exchange(url, receive_from=[b], expect=2).bodies() == ["m1", "m2"]
    # a queue that did not exist got no copies; from now on it does, as do topic subscribers;
    # a consumer name may itself hold dots (pubtools-sign's Consumer.{creator}.{task_id}.)
    got = exchange(url, receive_from=[c, f"topic://{x}"], send=messages(f"topic://{x}", "m3"),
                   expect=2)
    assert got.bodies(0) == ["m3"] and got.bodies(1) == ["m3"]
    assert exchange(url, receive_from=[a], expect=1).bodies() == ["m3"]


def test_an_ordinary_queue_named_like_a_virtual_topic_gets_no_copies(url):
    x = unique("VirtualTopic.other")
    plain = f"queue://{x}"  # no "Consumer.<name>." prefix
    exchange(url, receive_from=[plain])
    exchange(url, send=messages(f"topic://{x}", "copied?"))
    got = exchange(url, receive_from=[plain], send=messages(plain, "direct"), send_to=plain,
                   expect=1)
    assert got.bodies() == ["direct"]


# -- anonymous relay and link targets -------------------------------------------------------

def test_an_anonymous_relay_link_routes_each_message_by_its_to(url):
    q, t, bare = unique("relay-q"), unique("relay-t"), unique("relay-bare")
    sent = [Message(address=f"queue://{q}", body="to q"),
            Message(address=f"topic://{t}", body="to t"),
            Message(address=bare, body="to bare"),
            Message(body="nowhere")]  # no "to" on an anonymous link: rejected
    got = exchange(url, receive_from=[f"queue://{q}", f"topic://{t}", bare], send=sent,
                   send_to=None, expect=3)
    assert [got.bodies(i) for i in range(3)] == [["to q"], ["to t"], ["to bare"]]
    assert (got.accepted, got.rejected) == (3, 1)


def test_a_link_target_wins_over_the_messages_to(url):
    target, elsewhere = f"queue://{unique('target')}", f"queue://{unique('elsewhere')}"
    got = exchange(url, receive_from=[target, elsewhere], send=messages(elsewhere, "hi"),
                   send_to=target, expect=1)
    assert got.bodies(0) == ["hi"] and got.bodies(1) == []


def test_sasl_anonymous_clients_are_accepted_as_well(url):
    name = unique("sasl")
    got = exchange(url, receive_from=[name], send=messages(name, "hi"), send_to=name, expect=1,
                   sasl="ANONYMOUS")
    assert got.bodies() == ["hi"] and got.errors == []


# -- the record file ------------------------------------------------------------------------

def test_record_has_a_line_per_received_message_with_what_was_on_the_wire(broker):
    url, record = broker
    q = unique("rec")
    marker = uuid.uuid4().hex
    request = Message(address=f"queue://{q}", body=json.dumps({"marker": marker}),
                      properties={"mtype": "container_signature", "source": "metadata", "n": 3},
                      ttl=180, durable=False, subject="subj", reply_to="queue://back",
                      correlation_id="corr-1", id="id-1")
    exchange(url, send=[request])
    exchange(url, send=[Message(body=marker.encode(), durable=True)], send_to=f"queue://{q}")
    lines = [line for line in map(json.loads, record.read_text().splitlines())
             if line["address"] == f"queue://{q}"]
    assert lines == [
        {"address": f"queue://{q}", "link_target": None,
         "properties": {"mtype": "container_signature", "source": "metadata", "n": 3},
         "body": json.dumps({"marker": marker}), "body_type": "str", "ttl": 180.0,
         "durable": False, "subject": "subj", "reply_to": "queue://back",
         "correlation_id": "corr-1", "message_id": "id-1"},
        {"address": f"queue://{q}", "link_target": f"queue://{q}", "properties": None,
         "body": base64.b64encode(marker.encode()).decode(), "body_type": "bytes",
         "ttl": 0.0, "durable": True, "subject": None, "reply_to": None, "correlation_id": None,
         "message_id": None},
    ]


# -- TLS ------------------------------------------------------------------------------------

def test_tls_client_with_a_certificate_from_the_ca_exchanges_messages(tls, tls_broker):
    # "localhost", not 127.0.0.1: proton checks host names against DNS names only
    got = exchange(f"amqps://localhost:{tls_broker}", receive_from=["tls"],
                   send=messages("tls", "secret"), send_to="tls", expect=1,
                   ssl_domain=client_ssl_domain(tls.client_pem, tls.ca_cert))
    assert got.bodies() == ["secret"] and got.errors == []


def test_tls_client_without_a_certificate_is_refused(tls, tls_broker):
    got = exchange(f"amqps://localhost:{tls_broker}", receive_from=["tls-nocert"],
                   send=messages("tls-nocert", "secret"), send_to="tls-nocert", expect=1,
                   ssl_domain=client_ssl_domain(None, tls.ca_cert))
    assert got.received == [] and got.accepted == 0
    assert any("certificate required" in e for e in got.errors), got.errors


def test_a_plain_client_is_refused_by_a_tls_broker(tls_broker):
    got = exchange(f"amqp://127.0.0.1:{tls_broker}", send=messages("plain", "x"),
                   send_to="plain")
    assert got.accepted == 0 and got.errors


def test_a_client_that_verifies_the_broker_refuses_a_rogue_certificate(tls, tmp_path):
    rogue, port = start_broker(tls_cert=tls.rogue_server_cert, tls_key=tls.rogue_server_key,
                               tls_ca=tls.ca_cert, log=tmp_path / "rogue.log")
    try:
        url = f"amqps://localhost:{port}"
        verifying = exchange(url, receive_from=["r"], send=messages("r", "x"), send_to="r",
                             expect=1, ssl_domain=client_ssl_domain(tls.client_pem, tls.ca_cert))
        assert verifying.received == [] and verifying.accepted == 0
        assert any("certificate verify failed" in e for e in verifying.errors), verifying.errors
        # pubtools-sign's ANONYMOUS_PEER client does not notice
        trusting = exchange(url, receive_from=["r"], send=messages("r", "x"), send_to="r",
                            expect=1, ssl_domain=client_ssl_domain(tls.client_pem, None))
        assert trusting.bodies() == ["x"]
    finally:
        stop(rogue)


# -- speed and stopping ---------------------------------------------------------------------

def test_5000_messages_round_trip(url):
    name = f"queue://{unique('bulk')}"
    bodies = [f"message {i} " + "x" * 200 for i in range(5000)]
    started = time.monotonic()
    got = exchange(url, receive_from=[name], send=messages(name, *bodies), expect=5000,
                   timeout=60)
    took = time.monotonic() - started
    assert got.bodies() == bodies and got.accepted == 5000
    assert took < 20, f"{took:.1f} s"


def test_sigterm_ends_it_at_once(tmp_path):
    proc, port = start_broker(log=tmp_path / "broker.log")
    assert exchange(f"amqp://127.0.0.1:{port}", send=messages("q", "x")).accepted == 1
    started = time.monotonic()
    assert stop(proc, timeout=5) == 0
    assert time.monotonic() - started < 2
