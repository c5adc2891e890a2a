"""The test infrastructure works: a private RabbitMQ node (plain and client-certificate TLS), the
RabbitMQ address facts the messaging signer depends on, and pubtools-sign in a venv of its own."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from proton import ConnectionException, Message, Terminus
from proton.handlers import MessagingHandler
from proton.reactor import Container, LinkOption
from proton.utils import BlockingConnection

from infra.pubtools_sign import (
    MSG_CONTAINER_SIGN,
    ensure_pubtools_sign,
    run_pubtools_msg_container_sign,
)
from infra.rabbitmq import client_ssl_domain


def connect(url: str, ssl_domain=None) -> BlockingConnection:
    # The settings that work with RabbitMQ 3.10: no SASL (the broker falls back to guest).
    return BlockingConnection(url, timeout=10, sasl_enabled=False, ssl_domain=ssl_domain)


def queue() -> str:
    return f"/queue/test-{uuid.uuid4().hex[:12]}"


def receive(receiver) -> str:
    msg = receiver.receive(timeout=10)
    receiver.accept()
    return msg.body


def roundtrip(url: str, ssl_domain=None) -> str:
    address = queue()
    conn = connect(url, ssl_domain)
    try:
        conn.create_sender(address).send(Message(body="hello"))
        return receive(conn.create_receiver(address))
    finally:
        conn.close()


class Durable(LinkOption):
    """A durable terminus: ``/queue/NAME`` is then declared durable and survives a restart
    (with the default, non-durable terminus the queue and its messages are gone). Every link to
    that queue must say the same, or the broker ends the session with precondition-failed."""

    def apply(self, link) -> None:
        terminus = link.target if link.is_sender else link.source
        terminus.durability = Terminus.DELIVERIES


class _Attach(MessagingHandler):
    """Attach one link and report how the broker answered: None (attached) or its error."""

    def __init__(self, url: str, address: str | None, sender: bool):
        super().__init__()
        self.url, self.address, self.sender = url, address, sender
        self.outcome: str | None = "no answer within 10 s"
        self._timer = self._conn = None

    def on_start(self, event) -> None:
        self._conn = conn = event.container.connect(self.url, sasl_enabled=False)
        if self.sender:
            event.container.create_sender(conn, self.address)  # None: anonymous relay
        else:
            event.container.create_receiver(conn, self.address)
        self._timer = event.container.schedule(10, self)

    def _done(self, event, outcome: str | None) -> None:
        self.outcome = outcome
        self._timer.cancel()
        event.connection.close()

    def on_link_opened(self, event) -> None:
        self._done(event, None)

    def on_link_remote_close(self, event) -> None:
        self._done(event, str(event.link.remote_condition))

    def on_session_remote_close(self, event) -> None:  # how RabbitMQ refuses an attach
        self._done(event, str(event.session.remote_condition))

    def on_transport_error(self, event) -> None:
        self._done(event, f"transport: {event.transport.condition}")

    def on_timer_task(self, event) -> None:
        self._conn.close()


def attach(url: str, address: str | None, sender: bool = True) -> str | None:
    handler = _Attach(url, address, sender)
    Container(handler).run()
    return handler.outcome


# -- the node -----------------------------------------------------------------------------

def test_plain_amqp_roundtrip(rabbitmq):
    assert rabbitmq.amqp_url.startswith("amqp://127.0.0.1:")
    assert roundtrip(rabbitmq.amqp_url) == "hello"


@pytest.mark.parametrize("separate_files", [False, True], ids=["one-pem", "cert-and-key"])
def test_tls_with_client_certificate_and_verified_broker(rabbitmq, tls_material, separate_files):
    tls = tls_material
    cert, key = (tls.client_cert, tls.client_key) if separate_files else (tls.client_pem, None)
    assert rabbitmq.amqps_url.startswith("amqps://localhost:")
    assert roundtrip(rabbitmq.amqps_url, client_ssl_domain(tls.ca_cert, cert, key)) == "hello"


def test_tls_refuses_a_client_without_certificate(rabbitmq, tls_material):
    with pytest.raises(ConnectionException, match="certificate required"):
        roundtrip(rabbitmq.amqps_url, client_ssl_domain(tls_material.ca_cert))


def test_client_refuses_a_broker_its_ca_did_not_sign(rabbitmq, tls_material):
    domain = client_ssl_domain(tls_material.rogue_ca_cert, tls_material.client_pem)
    with pytest.raises(ConnectionException, match="certificate verify failed"):
        roundtrip(rabbitmq.amqps_url, domain)


def test_restart_and_crash_keep_urls_and_durable_messages(rabbitmq):
    address = queue()
    urls = (rabbitmq.amqp_url, rabbitmq.amqps_url)
    try:
        for stop in (rabbitmq.restart, lambda: (rabbitmq.kill(), rabbitmq.start())):
            conn = connect(rabbitmq.amqp_url)
            conn.create_sender(address, options=Durable()).send(
                Message(body="kept", durable=True))
            conn.close()
            stop()
            assert (rabbitmq.amqp_url, rabbitmq.amqps_url) == urls
            conn = connect(rabbitmq.amqp_url)
            try:
                assert receive(conn.create_receiver(address, options=Durable())) == "kept"
            finally:
                conn.close()
    finally:
        rabbitmq.start()  # the next test gets a running node even if this one failed
    assert roundtrip(rabbitmq.amqp_url) == "hello"


# -- address facts --------------------------------------------------------------------------

def test_queue_keeps_messages_sent_before_a_receiver_attaches(rabbitmq):
    address = queue()
    conn = connect(rabbitmq.amqp_url)
    conn.create_sender(address).send(Message(body="early"))
    conn.close()
    conn = connect(rabbitmq.amqp_url)
    try:
        assert receive(conn.create_receiver(address)) == "early"
    finally:
        conn.close()


def test_topic_reaches_only_receivers_attached_on_that_topic(rabbitmq):
    key = f"test.{uuid.uuid4().hex[:12]}"
    same_name_queue = f"/queue/{key}"
    conn = connect(rabbitmq.amqp_url)
    try:
        topic = conn.create_sender(f"/topic/{key}")
        topic.send(Message(body="nobody listens"))
        on_topic = conn.create_receiver(f"/topic/{key}")
        on_queue = conn.create_receiver(same_name_queue)
        topic.send(Message(body="live"))
        conn.create_sender(same_name_queue).send(Message(body="direct"))
        assert receive(on_topic) == "live"  # the message sent before it attached is gone
        assert receive(on_queue) == "direct"  # the topic's messages never got there
    finally:
        conn.close()


@pytest.mark.parametrize("address,sender,error", [
    ("topic://t", True, "unknown_destination"),
    ("queue://q", True, "unknown_destination"),
    ("queue://q", False, "unknown_destination"),
    (None, True, "address_not_utf8_string"),  # a sender without target: anonymous relay
])
def test_activemq_addresses_and_anonymous_relay_are_refused(rabbitmq, address, sender, error):
    outcome = attach(rabbitmq.amqp_url, address, sender)
    assert outcome is not None and "amqp:invalid-field" in outcome and error in outcome, outcome


def test_rabbitmq_addresses_attach(rabbitmq):
    for address in ("/queue/a", "/topic/a.b", "/exchange/amq.topic/a.b", "bare-queue-name"):
        assert attach(rabbitmq.amqp_url, address) is None, address


# -- pubtools-sign ----------------------------------------------------------------------------

def test_pubtools_sign_venv_first_run_needs_pypi():
    """Installs pubtools-sign 1.0.6 from the package index into .cache/ on the first run (about
    35 s); later runs reuse it."""
    bin_dir = ensure_pubtools_sign()
    proc = subprocess.run([str(bin_dir / MSG_CONTAINER_SIGN), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--digest" in proc.stdout and "--raw" in proc.stdout


def test_pubtools_sign_needs_log_level_and_cannot_use_rabbitmq(rabbitmq, tls_material, tmp_path):
    """Two facts about pubtools-sign 1.0.6: ``log_level`` is optional in its schema yet read
    unconditionally, and its anonymous-relay sender is refused by RabbitMQ."""
    config = {"msg_signer": {
        "messaging_brokers": [rabbitmq.amqp_url],
        "messaging_cert_key": str(tls_material.client_pem),
        "messaging_ca_cert": str(tls_material.ca_cert),
        "topic_send_to": "/queue/sign-requests",
        "topic_listen_to": "/queue/replies.{creator}.{task_id}",
        "environment": "test", "service": "test", "timeout": 1, "retries": 1,
        "send_retries": 1, "message_id_key": "request_id"}}
    conf = tmp_path / "conf.yaml"
    args = (["registry.example.com/ns/app:1"], ["sha256:" + "a" * 64], ["ABCDEF01"], "t1")

    conf.write_text(json.dumps(config))
    proc = run_pubtools_msg_container_sign(conf, *args, timeout=60)
    assert proc.returncode == 1 and "KeyError: 'log_level'" in proc.stderr

    config["msg_signer"]["log_level"] = "info"
    conf.write_text(json.dumps(config))
    proc = run_pubtools_msg_container_sign(conf, *args, timeout=60)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)  # stdout is only the JSON result
    assert result["signer_result"]["status"] == "error"
    assert "address_not_utf8_string" in result["signer_result"]["error_message"]
