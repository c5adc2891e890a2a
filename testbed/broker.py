"""An embedded AMQP 1.0 broker with ActiveMQ's addressing, for tests and demos.

    python -m testbed.broker --listen 127.0.0.1:PORT [--tls-cert F --tls-key F [--tls-ca F]]
                               [--ready-file PATH] [--record PATH]

- ``queue://NAME`` and bare ``NAME``: one queue, kept in memory until a consumer with credit takes
  each message; several consumers share it round-robin. A message a consumer got but did not
  settle goes back to the front of its queue when that consumer goes away.
- ``topic://NAME``: a copy for each consumer attached at that moment; nothing is kept.
- Virtual topics: a message to ``topic://VirtualTopic.X`` is also copied into every queue named
  ``Consumer.<anything>.VirtualTopic.X`` (such a queue exists from the first time a consumer
  attaches to it, or a message is sent to it, and then keeps messages while nobody listens).
- A sender link without a target is an anonymous relay: each message goes to its ``to``.
- SASL is optional: clients may skip it (pubtools-sign does) or use ANONYMOUS (proton's server
  transport detects which; no configuration needed).
- With ``--tls-cert``/``--tls-key`` it speaks TLS only; with ``--tls-ca`` as well, a client must
  present a certificate signed by that CA.
- ``--record PATH`` appends one JSON line per message received (see ``record_line``).
- The ready file (JSON ``{"port": N, "pid": P}``) appears once it listens; PORT may be 0.
- SIGTERM ends it at once.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import uuid
from collections import deque
from typing import IO

from proton import Condition, Delivery, Endpoint, Handler, Link, Message, SSLDomain, symbol
from proton.reactor import Container

from testbed import cli_args, exit_on_sigterm, launch, log_transport_error, write_ready_file

CREDIT = 1000  # what each producer link may send ahead
ANONYMOUS_RELAY = symbol("ANONYMOUS-RELAY")
TERMINAL = (Delivery.ACCEPTED, Delivery.REJECTED, Delivery.RELEASED, Delivery.MODIFIED)
VIRTUAL = ".VirtualTopic."


def parse_address(address: str) -> tuple[str, str]:
    """("queue" | "topic", name) for an ActiveMQ-style address."""
    if address.startswith("topic://"):
        return "topic", address[len("topic://"):]
    if address.startswith("queue://"):
        return "queue", address[len("queue://"):]
    return "queue", address


def virtual_topic_of(queue_name: str) -> str | None:
    """``VirtualTopic.X`` for a consumer queue ``Consumer.<anything>.VirtualTopic.X``."""
    if queue_name.startswith("Consumer."):
        at = queue_name.find(VIRTUAL, len("Consumer.") - 1)
        if at >= len("Consumer."):
            return queue_name[at + 1:]
    return None


def _jsonable(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def record_line(address: str, link_target: str | None, message) -> str:
    """What ``--record`` writes for one received message (bytes bodies in base64)."""
    return json.dumps({
        "address": address,
        "link_target": link_target,
        "properties": _jsonable(message.properties),
        "body": _jsonable(message.body),
        "body_type": "bytes" if isinstance(message.body, memoryview)  # AMQP binary
        else type(message.body).__name__,
        "ttl": message.ttl,
        "durable": message.durable,
        "subject": message.subject,
        "reply_to": message.reply_to,
        "correlation_id": _jsonable(message.correlation_id),
        "message_id": None if message.id is None else str(message.id),
    }) + "\n"


class Queue:
    """Messages waiting (encoded, as received), and the consumers that take them in turn. A
    topic subscription is a private Queue with one consumer."""

    __slots__ = ("name", "messages", "consumers")

    def __init__(self, name: str):
        self.name = name
        self.messages: deque[bytes] = deque()
        self.consumers: deque[Consumer] = deque()


class Consumer:
    """A link on which the broker sends (a client's receiver)."""

    __slots__ = ("link", "queue", "topic", "unsettled", "presettled", "tags", "gone")

    def __init__(self, link: Link, queue: Queue, topic: str | None):
        self.link = link
        self.queue = queue
        self.topic = topic  # the topic of a private subscription queue
        self.unsettled: dict[str, bytes] = {}  # delivery tag -> message, oldest first
        self.presettled = link.remote_snd_settle_mode == Link.SND_SETTLED
        self.tags = 0
        self.gone = False

    def send(self, data: bytes) -> None:
        link = self.link
        self.tags += 1
        tag = str(self.tags)
        delivery = link.delivery(tag)
        link.stream(data)
        link.advance()
        if self.presettled:
            delivery.settle()
        else:
            self.unsettled[tag] = data


def bound_port(acceptor) -> int:
    """The port an acceptor listens on, the one the system chose when it was asked for port 0
    (so that tests running at once never race for a free port). proton 0.40's Acceptor keeps
    its listening socket private and tells neither its port nor its address: this reads the
    socket itself (the acceptor's ``_selectable``, its ``_delegate``)."""
    return acceptor._selectable._delegate.getsockname()[1]


class Broker(Handler):
    """The broker's event handler. A plain Handler rather than a MessagingHandler: messages are
    forwarded as the bytes received (decoded only to route an anonymous relay's message and to
    record it), and each event goes through one handler instead of five."""

    def __init__(self, host: str, port: int, ssl_domain: SSLDomain | None,
                 ready_file: str | None, record: IO[str] | None):
        super().__init__()
        self.host, self.port, self.ssl_domain = host, port, ssl_domain
        self.ready_file, self.record = ready_file, record
        self.queues: dict[str, Queue] = {}
        self.topics: dict[str, set[Queue]] = {}
        self.virtual: dict[str, list[Queue]] = {}  # VirtualTopic.X -> its consumer queues

    # -- start and connections ----------------------------------------------------------------

    def on_reactor_init(self, event):
        acceptor = event.container.acceptor(self.host, self.port)
        if self.ssl_domain:
            acceptor.set_ssl_domain(self.ssl_domain)
        port = bound_port(acceptor)  # the real one when PORT was 0
        write_ready_file(self.ready_file, {"port": port, "pid": os.getpid()})
        print(f"listening on {self.host}:{port}", flush=True)

    def on_connection_remote_open(self, event):
        conn = event.connection
        if conn.state & Endpoint.LOCAL_UNINIT:
            conn.offered_capabilities = [ANONYMOUS_RELAY]
            conn.open()

    def on_session_remote_open(self, event):
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    def on_connection_remote_close(self, event):
        self.detach_all(event.connection)
        event.connection.close()

    def on_session_remote_close(self, event):
        event.session.close()

    def on_transport_closed(self, event):
        if event.connection is not None:
            self.detach_all(event.connection)

    def on_transport_error(self, event):  # a refused client: not the broker's error
        log_transport_error(event)

    # -- addressing ---------------------------------------------------------------------------

    def queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = Queue(name)
            topic = virtual_topic_of(name)
            if topic is not None:
                self.virtual.setdefault(topic, []).append(queue)
        return queue

    def route(self, address: str, data: bytes) -> None:
        kind, name = parse_address(address)
        if kind == "queue":
            self.put(self.queue(name), data)
            return
        for queue in self.topics.get(name, ()):
            self.put(queue, data)
        for queue in self.virtual.get(name, ()):
            self.put(queue, data)

    def put(self, queue: Queue, data: bytes) -> None:
        queue.messages.append(data)
        if queue.consumers:
            self.dispatch(queue)

    def dispatch(self, queue: Queue) -> None:
        """Hand waiting messages to consumers with credit, each in turn."""
        messages, consumers = queue.messages, queue.consumers
        while messages and consumers:
            for _ in range(len(consumers)):
                consumer = consumers[0]
                consumers.rotate(-1)
                if consumer.link.credit > 0:
                    break
            else:
                return  # nobody has credit: wait for a flow
            consumer.send(messages.popleft())

    # -- links --------------------------------------------------------------------------------

    def on_link_remote_open(self, event):
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        if link.is_receiver:  # a client's sender; no target: an anonymous relay
            link.target.address = link.remote_target.address
            link.route_to = link.remote_target.address
            link.open()
            link.flow(CREDIT)
            return
        source = link.remote_source
        address = f"queue://dynamic.{uuid.uuid4()}" if source.dynamic else source.address
        if not address:
            link.open()
            link.condition = Condition("amqp:invalid-field", "a receiver needs a source address")
            link.close()
            return
        link.source.address = address
        if link.remote_snd_settle_mode == Link.SND_SETTLED:
            link.snd_settle_mode = Link.SND_SETTLED
        kind, name = parse_address(address)
        if kind == "queue":
            consumer = Consumer(link, self.queue(name), None)
        else:
            consumer = Consumer(link, Queue(f"subscription to {name}"), name)
            self.topics.setdefault(name, set()).add(consumer.queue)
        consumer.queue.consumers.append(consumer)
        link.consumer = consumer
        link.open()

    def on_link_remote_close(self, event):
        self.detach(event.link)
        event.link.close()

    def on_link_flow(self, event):
        link = event.link
        if link.is_sender and link.credit > 0:
            consumer = getattr(link, "consumer", None)
            if consumer is not None and not consumer.gone:
                self.dispatch(consumer.queue)
            if link.drain_mode:  # the client asked for all there is, and no more
                link.drained()

    def on_delivery(self, event):
        delivery = event.delivery
        link = delivery.link
        if link.is_receiver:
            self.received(link, delivery)
        elif delivery.updated:
            self.disposition(link, delivery)

    def received(self, link, delivery) -> None:
        if delivery.aborted:
            delivery.settle()
            return
        if not delivery.readable or delivery.partial:
            return  # the rest is still coming
        data = link.recv(delivery.pending)
        link.advance()
        target = getattr(link, "route_to", None)
        message = None
        if target is None or self.record is not None:
            message = Message()
            message.decode(data)
        address = target or message.address
        if not address:
            delivery.local.condition = Condition("amqp:precondition-failed",
                                                 "an anonymous relay needs the 'to' address")
            delivery.update(Delivery.REJECTED)
        else:
            if self.record is not None:
                self.record.write(record_line(address, target, message))
                self.record.flush()
            self.route(address, data)
            delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        if link.credit < CREDIT // 2:
            link.flow(CREDIT - link.credit)

    def disposition(self, link, delivery) -> None:
        consumer = getattr(link, "consumer", None)
        state = delivery.remote_state
        if consumer is not None:
            data = consumer.unsettled.pop(delivery.tag, None)
            if data is not None and not consumer.gone and \
                    state in (Delivery.RELEASED, Delivery.MODIFIED):
                consumer.queue.messages.appendleft(data)  # to be delivered again
                self.dispatch(consumer.queue)
        if delivery.settled or state in TERMINAL:
            delivery.settle()

    def detach(self, link: Link) -> None:
        consumer = getattr(link, "consumer", None)
        if consumer is None or consumer.gone:
            return
        consumer.gone = True
        link.consumer = consumer.link = None  # the link's record and the consumer: a cycle
        queue = consumer.queue
        try:
            queue.consumers.remove(consumer)
        except ValueError:
            pass
        if consumer.topic is not None:  # a subscription ends with its consumer
            self.topics.get(consumer.topic, set()).discard(queue)
            return
        if consumer.unsettled:  # sent but never settled: back to the front, in order
            queue.messages.extendleft(reversed(list(consumer.unsettled.values())))
            consumer.unsettled.clear()
        self.dispatch(queue)

    def detach_all(self, connection) -> None:
        link = connection.link_head(0)
        while link:
            self.detach(link)
            link = link.next(0)


def server_ssl_domain(cert: str, key: str, ca: str | None) -> SSLDomain:
    domain = SSLDomain(SSLDomain.MODE_SERVER)
    domain.set_credentials(cert, key, None)
    if ca:
        domain.set_trusted_ca_db(ca)
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER, ca)
    else:
        domain.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
    return domain


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.broker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 0),
                        metavar="HOST:PORT")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-ca", help="require client certificates signed by this CA")
    parser.add_argument("--ready-file")
    parser.add_argument("--record", help="append one JSON line per received message")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_ca and not args.tls_cert):
        parser.error("--tls-cert and --tls-key go together; --tls-ca needs them")
    logging.basicConfig(level=logging.WARNING)
    domain = server_ssl_domain(args.tls_cert, args.tls_key, args.tls_ca) \
        if args.tls_cert else None
    record = open(args.record, "a", encoding="utf-8") if args.record else None
    exit_on_sigterm(*([record.flush] if record else []))
    host, port = args.listen
    Container(Broker(host, port, domain, args.ready_file, record)).run()
    return 0


def start_broker(port: int = 0, *, host: str = "127.0.0.1", tls_cert=None, tls_key=None,
                 tls_ca=None, record=None, log=None, timeout: float = 30):
    """Start ``python -m testbed.broker`` and wait until it listens: (Popen, port).
    Stop it with ``reference.stop(proc)``."""
    args = cli_args(listen=f"{host}:{port}", tls_cert=tls_cert, tls_key=tls_key,
                    tls_ca=tls_ca, record=record)
    proc, ready = launch("testbed.broker", args, timeout=timeout, log=log)
    return proc, ready["port"]


if __name__ == "__main__":
    sys.exit(main())
