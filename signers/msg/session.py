"""The msg signer's bus session: one proton event loop that sends every request and matches
every reply, with pubtools-sign's timeout / retries / send_retries and a total deadline.

How it differs from pubtools-sign 1.0.6 (the wire is the same: wire.py):

- the reply receiver is attached (remotely) before the first send;
- one sender link per target address (brokers without anonymous relay, like RabbitMQ, refuse
  pubtools-sign's anonymous sender); sends are pipelined under the link's credit;
- requests are made as they go out, at most MAX_IN_FLIGHT unanswered at a time (the same
  messages in the same order; a run of 100,000 does not hold 100,000 requests);
- replies are matched in O(1) by ``msg[message_id_key]``; stray, duplicate, late, malformed and
  oversized replies are ignored and counted;
- a resend (after timeout x retries) sends only what is unanswered, and the deadline is never
  overrun; a lost connection fails over to the next broker and reconnects with backoff,
  resending what is unanswered (a duplicate reply is ignored: no signature is written twice);
- the broker's certificate and host name are verified by default.

The handler (``Session``) keeps its state in two parts: the bus side (``Bus``: the current
connection, its links and queues, reconnecting) and the requests' side (``Progress``: what is
unanswered, the counters, the timeout clock). Only the session imports proton: the signer
imports this module when it is made, never when the run lists the signers.
"""

from __future__ import annotations

import collections.abc
import logging
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import proton
from cproton import (
    PN_ACCEPTED,
    pn_delivery_settle,
    pn_delivery_update,
    pn_message_body,
    pn_message_decode,
    pn_message_properties,
)
from proton.handlers import EndpointStateHandler
from proton.reactor import Container

from .wire import MAX_REPLY_BYTES, BadReply, Request, jsonable, parse_reply

log = logging.getLogger("signers.msg")

TICK = 0.1  # seconds between checks of the timeout and the deadline
CLOSE_GRACE = 2.0  # seconds a broker gets to answer our close at the end
CREDIT = 1000  # replies the broker may send before we have read them
# replies handed to ``deliver`` and not yet dealt with (``backlog``) beyond which no more credit
# is given: the broker keeps the replies while the checker catches up, not our memory
MAX_BACKLOG = 2 * CREDIT
# requests made and not yet answered at most (queued for credit, sent, waiting for a reply):
# the next ones are made as replies come, once no more than REFILL_AT are left. Enough to
# keep the broker and the signing server busy (4 times the replies' credit)
MAX_IN_FLIGHT = 4 * CREDIT
REFILL_AT = MAX_IN_FLIGHT - CREDIT
# the counters the session returns, in the order the run logs them
COUNTERS = ("stray", "duplicate", "late", "malformed", "oversized", "reconnects", "resent",
            "rejected")
REJECTED = proton.Delivery.REJECTED
RELEASED, MODIFIED = proton.Delivery.RELEASED, proton.Delivery.MODIFIED
ACTIVE = proton.Endpoint.LOCAL_ACTIVE | proton.Endpoint.REMOTE_ACTIVE


@dataclass
class Settings:
    """The msg signer's settings, from its config section (MsgSigner builds them)."""

    brokers: list[str]
    send_to: str
    listen_to: str
    environment: str
    service: str
    timeout: float
    retries: int
    send_retries: int
    id_key: str
    task_id_attribute: str
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    verify_broker: bool = True
    deadline: float | None = None
    verify_keyring: str | None = None
    max_reply: int = MAX_REPLY_BYTES  # more when files are signed: a reply echoes the file


def client_ssl_domain(cert=None, key=None, ca=None, *, verify: bool = True):
    """Proton client TLS settings: present ``cert`` (+ ``key``; one PEM may hold both) if given;
    trust ``ca``; with ``verify`` check the broker's certificate and host name (use the name in
    its certificate, e.g. ``localhost``: proton does not match IP addresses). Without ``verify``
    nothing about the broker is checked, as pubtools-sign does: never the default here."""
    domain = proton.SSLDomain(proton.SSLDomain.MODE_CLIENT)
    if cert:
        domain.set_credentials(str(cert), str(key or cert), None)
    if ca:
        domain.set_trusted_ca_db(str(ca))
    if verify:
        domain.set_peer_authentication(proton.SSLDomain.VERIFY_PEER_NAME,
                                       str(ca) if ca else None)
    else:
        domain.set_peer_authentication(proton.SSLDomain.ANONYMOUS_PEER)
    return domain


def accept(delivery) -> None:
    """Accept and settle a received delivery with the C API's two calls, on the delivery's
    private ``_impl``. proton's own Delivery.update() first copies the local disposition's
    (empty) data, annotations and condition through Python: measured in memory (two proton
    engines joined by their transports, 20,000 deliveries, 2 busy cores), update() + settle()
    took 17-26 us a delivery, these two calls 1-2 us: about 0.4 s of the event loop's one
    thread at N=20,000 replies."""
    pn_delivery_update(delivery._impl, PN_ACCEPTED)
    pn_delivery_settle(delivery._impl)


class Incoming:
    """One proton message, reused for every reply: of each, only the body and the application
    properties are read (``read``). proton's Message.decode makes a message and reads its four
    sections into Python objects; measured in memory (a 1.5 KB reply with 8 properties), a new
    Message decoded took 43 us, this 23 us: about 2 s of the event loop at N=100,000."""

    def __init__(self) -> None:
        self.message = proton.Message()

    def read(self, data: bytes) -> tuple[Any, Any]:
        """(body, application properties) of an encoded message; proton's MessageException
        if it is not one."""
        message = self.message
        message._check(pn_message_decode(message._msg, data))
        body = proton.Data(pn_message_body(message._msg))
        properties = proton.Data(pn_message_properties(message._msg))
        return (body.get_object() if body.next() else None,
                properties.get_object() if properties.next() else None)


def _condition(cond) -> str:
    """A remote condition's name and description, for a message (strip the message's end)."""
    return f"{cond.name if cond else ''} {cond.description if cond else ''}"


class _Call:
    """A proton timer target that calls a function."""

    def __init__(self, fn: Callable[[], None]):
        self.fn = fn

    def on_timer_task(self, event) -> None:
        self.fn()


@dataclass(slots=True)
class Bus:
    """The bus side: the current connection with its links and send queues (all replaced by
    ``renew`` for each new connection), and the bookkeeping of reconnecting, which outlives
    connections."""

    generation: int = 0  # which connection is current; events of older ones are stale
    conn: Any = None
    receiver: Any = None  # the reply listener
    senders: dict[str, Any] = field(default_factory=dict)  # by target address
    queues: dict[str, deque[Request]] = field(default_factory=dict)  # by address, for credit
    queued: set[str] = field(default_factory=set)  # request ids waiting in a queue (never twice)
    listening: bool = False  # the reply listener is attached: requests may go out
    broker: int = 0  # which broker (modulo their number): failover moves on to the next
    reconnect_pending: bool = False  # one reconnect per lost connection
    ever_connected: bool = False
    connect_failures: int = 0  # since the last good connection: the backoff grows with it
    disconnected_since: float | None = None
    last_error: str = ""

    def renew(self) -> int:
        """Forget the last connection's links and queues; the new connection's generation."""
        self.generation += 1
        self.reconnect_pending = self.listening = False
        self.senders, self.queues, self.queued = {}, {}, set()
        return self.generation

    def attached(self) -> bool:
        """The reply listener is attached: requests may go out. True when this is a
        reconnection (the connection before was lost)."""
        again = self.ever_connected
        self.ever_connected = self.listening = True
        self.connect_failures = 0
        self.disconnected_since = None
        return again

    def lost(self, now: float) -> tuple[float, float]:
        """The connection is lost: (seconds until the next attempt, on the next broker; seconds
        without a broker by then)."""
        self.reconnect_pending = True
        self.listening = False
        if self.disconnected_since is None:
            self.disconnected_since = now
        self.connect_failures += 1
        self.broker += 1
        delay = min(0.05 * 2 ** min(self.connect_failures, 7), 5.0)
        return delay, now - self.disconnected_since + delay


@dataclass(slots=True)
class Progress:
    """The requests' side: what is unanswered (consumed: each request is dropped once answered
    or given up), what is not made yet (``source``, in order: ``more`` makes them), what was,
    the counters, and the timeout / retry clock."""

    unanswered: dict[str, Request]
    # every request id (answered requests are freed, their ids kept): a set, or wire.RequestIds
    known: collections.abc.Container[str]
    source: Iterator[Request] | None = None  # None: every request is made
    given_up: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    last_progress: float = field(default_factory=time.monotonic)
    receive_attempt: int = 0
    send_cycle: int = 1
    done: bool = False

    def more(self, room: int) -> list[Request]:
        """Up to ``room`` requests more from ``source``, now unanswered (and known)."""
        made: list[Request] = []
        while self.source is not None and len(made) < room:
            req = next(self.source, None)
            if req is None:
                self.source = None
                break
            self.unanswered[req.request_id] = req
            if isinstance(self.known, set):
                self.known.add(req.request_id)
            made.append(req)
        return made

    def answered(self, request_id: str) -> Request | None:
        """The request a reply answers, now answered; None (and counted) for a late,
        duplicate or stray reply."""
        req = self.unanswered.pop(request_id, None)
        if req is None:
            kind = ("late" if request_id in self.given_up else
                    "duplicate" if request_id in self.known else "stray")
            self.counts[kind] += 1
            return None
        self.last_progress = time.monotonic()
        self.receive_attempt = 0
        return req


# Deliveries and credit are handled here, not by proton's MessagingHandler: its four child
# handlers see every event, and per message that dispatching cost more than the rest of the
# work (bench/msg_bench.py). Only the endpoint open/close/error logic is proton's.
class Session(proton.Handler):
    """Send every request and hand each matched reply (request, msg, the reply body as JSON
    text, reply properties) to ``deliver``, or each request given up to ``fail``. ``requests``:
    by id (all made), or in order, made as they are taken (at most MAX_IN_FLIGHT unanswered at
    a time)."""

    def __init__(self, settings: Settings,
                 requests: Mapping[str, Request] | Iterable[Request],
                 deliver: Callable[[Request, dict, str, dict], None],
                 fail: Callable[[Request, str], None], deadline_at: float, ttl: float,
                 known: collections.abc.Container[str] | None = None,
                 backlog: Callable[[], int] | None = None):
        self.handlers = [EndpointStateHandler(False, weakref.proxy(self))]
        self.settings, self.deliver, self.fail = settings, deliver, fail
        self.backlog = backlog or (lambda: 0)
        self.deadline_at, self.ttl = deadline_at, ttl
        self.bus = Bus()
        if isinstance(requests, Mapping):  # (a dict is consumed, as it is)
            self.progress = Progress(requests if isinstance(requests, dict) else dict(requests),
                                     set(requests) if known is None else known)
        else:
            self.progress = Progress({}, set() if known is None else known, iter(requests))
        self.container: Any = None
        self.stop_task: Any = None
        self.incoming = Incoming()

    # -- connections ------------------------------------------------------------------------

    def on_reactor_init(self, event):
        self.container = event.container
        self._connect()
        self._tick()

    def _ssl(self):
        s = self.settings
        if not any(b.startswith("amqps://") for b in s.brokers):
            return None
        return client_ssl_domain(s.cert, s.key, s.ca, verify=s.verify_broker)

    def _connect(self):
        if self.progress.done:
            return
        bus, brokers = self.bus, self.settings.brokers
        url = brokers[bus.broker % len(brokers)]
        log.debug("connecting to %s", url)
        generation = bus.renew()
        bus.conn = self.container.connect(url, ssl_domain=self._ssl(), reconnect=False,
                                           sasl_enabled=False)
        bus.conn.csa_generation = generation  # an int: nothing points back
        bus.receiver = self.container.create_receiver(
            bus.conn, self.settings.listen_to, name=f"csa-replies-{uuid.uuid4()}")

    def _current(self, event) -> bool:
        return getattr(event.connection, "csa_generation", None) == self.bus.generation

    def on_link_opened(self, event):
        if not self._current(event):
            return
        if event.receiver is not None and event.receiver.name == self.bus.receiver.name:
            # The reply listener is attached: only now may requests go out. After a
            # reconnection every unanswered request goes again (replies may have been lost
            # with the broker; a duplicate reply is ignored).
            progress = self.progress
            if self.bus.attached():
                progress.counts["reconnects"] += 1
                progress.counts["resent"] += len(progress.unanswered)
            progress.last_progress = time.monotonic()
            self._queue(progress.unanswered.values())
            self._refill()

    def on_link_error(self, event):
        if not self._current(event):
            return
        link = event.link
        address = link.source.address if link.is_receiver else link.target.address
        self._give_up(f"the broker refused the address {address!r}: "
                      f"{_condition(link.remote_condition)}".strip())

    def on_session_error(self, event):
        # RabbitMQ refuses an address by ending the whole session, not by detaching the link.
        if not self._current(event):
            return
        self._give_up(f"the broker refused the link: {_condition(event.session.remote_condition)}"
                      .strip())

    def on_transport_error(self, event):
        if not self._current(event):
            return
        cond = event.transport.condition
        self.bus.last_error = f"{cond.name}: {cond.description}" if cond else "transport error"
        text = self.bus.last_error.lower()
        if "certificate verify failed" in text or "certificate" in text and "fail" in text:
            self._give_up(f"TLS: the broker's certificate was refused ({self.bus.last_error})")

    def on_connection_error(self, event):
        cond = event.connection.remote_condition
        self.bus.last_error = f"{cond.name}: {cond.description}" if cond else "connection error"

    def on_disconnected(self, event):
        # proton may report one lost connection more than once: one reconnect per connection
        bus = self.bus
        if self.progress.done or not self._current(event) or bus.reconnect_pending:
            return
        now = time.monotonic()
        delay, down = bus.lost(now)
        limit = self.settings.timeout * max(self.settings.retries, 1)
        if down > limit:
            self._give_up(f"no broker reachable for {limit:g} s ({bus.last_error})")
        elif now + delay >= self.deadline_at:
            self._give_up(f"the deadline was reached while reconnecting ({bus.last_error})")
        else:
            log.warning("disconnected from the broker (%s); reconnecting in %.2f s",
                        bus.last_error or "connection lost", delay)
            self.container.schedule(delay, _Call(self._connect))

    def on_connection_closed(self, event):
        if self.progress.done and self.stop_task is not None and self._current(event):
            self.stop_task.cancel()  # closed cleanly: the loop ends by itself

    # -- sending ----------------------------------------------------------------------------

    def _queue(self, reqs: Iterable[Request], send: bool = True) -> None:
        """Queue ``reqs`` for their senders (made here when missing); with ``send``, send what
        the senders' credit allows."""
        bus = self.bus
        for req in reqs:
            if req.request_id not in bus.queued:
                bus.queued.add(req.request_id)
                bus.queues.setdefault(req.address, deque()).append(req)
        for address in bus.queues:
            if address not in bus.senders:
                bus.senders[address] = self.container.create_sender(bus.conn, address)
            elif send:
                self._send(bus.senders[address])

    def _refill(self) -> None:
        """Make and send the next requests, up to MAX_IN_FLIGHT unanswered, while the reply
        listener is attached (a reconnection sends the unanswered ones first)."""
        progress = self.progress
        if progress.source is not None and self.bus.listening:
            self._queue(progress.more(MAX_IN_FLIGHT - len(progress.unanswered)))

    def on_link_flow(self, event):
        link = event.link
        if link.is_sender and link.state & ACTIVE == ACTIVE:
            self._send(link)

    def _send(self, sender) -> None:
        bus, progress = self.bus, self.progress
        unanswered, address = progress.unanswered, sender.target.address
        while sender.credit > 0 and bus.listening:
            queue = bus.queues.get(address)
            if not queue:  # the next requests, if the window has room for them
                if progress.source is None or len(unanswered) >= MAX_IN_FLIGHT:
                    return
                self._queue(progress.more(MAX_IN_FLIGHT - len(unanswered)), send=False)
                queue = bus.queues.get(address)
                if not queue:
                    if progress.source is None:
                        self._maybe_finish()
                    return
            req = queue.popleft()
            bus.queued.discard(req.request_id)
            if req.request_id not in unanswered:
                continue
            sender.send(proton.Message(address=req.address, properties=req.properties,
                                       body=req.body, ttl=self.ttl),
                        tag=req.request_id.encode())

    def _sent(self, delivery) -> None:
        """What the broker did with a request: rejected (given up), released or modified
        (queued again), accepted."""
        state = delivery.remote_state
        if state == REJECTED:
            req = self.progress.unanswered.pop(delivery.tag.decode(), None)
            if req is not None:
                self.progress.counts["rejected"] += 1
                cond = delivery.remote.condition
                self.fail(req, "the broker rejected the request: "
                               f"{cond.name if cond else 'rejected'}")
                self._refill()
                self._maybe_finish()
        elif state == RELEASED or state == MODIFIED:
            req = self.progress.unanswered.get(delivery.tag.decode())
            if req is not None and self.bus.listening:
                self._queue([req])
        if delivery.settled:
            delivery.settle()

    # -- receiving --------------------------------------------------------------------------

    def on_link_remote_open(self, event):
        link = event.link
        if link.is_receiver:
            link.flow(CREDIT - link.credit)

    def on_delivery(self, event):
        delivery = event.delivery
        link = delivery.link
        if not link.is_receiver:
            if delivery.updated:
                self._sent(delivery)
        elif delivery.aborted:
            delivery.settle()
        elif delivery.readable and not delivery.partial:
            data = link.recv(delivery.pending)
            link.advance()
            try:
                self._reply(*self.incoming.read(data))
            finally:
                accept(delivery)  # every reply, used or not: an unaccepted one comes back
            self._credit(link)

    def _credit(self, link) -> None:
        """More credit for the reply link when half of it is used, unless the replies already
        handed over wait to be dealt with (then the next tick gives it)."""
        if link.credit < CREDIT // 2 and self.backlog() < MAX_BACKLOG:
            link.flow(CREDIT - link.credit)

    def _reply(self, body: Any, properties: Any) -> None:
        if self.progress.done:
            return
        try:
            request_id, msg, text = parse_reply(body, self.settings.id_key,
                                                self.settings.max_reply)
        except BadReply as e:
            self.progress.counts[e.kind] += 1
            log.debug("ignored a %s reply: %s", e.kind, e)
            return
        progress = self.progress
        req = progress.answered(request_id)
        if req is not None:
            self.deliver(req, msg, text, jsonable(properties or {}))
            if progress.source is not None and len(progress.unanswered) <= REFILL_AT:
                self._refill()
            self._maybe_finish()

    # -- timeouts, retries, the deadline, the end -------------------------------------------

    def _tick(self) -> None:
        progress = self.progress
        if progress.done:
            return
        now = time.monotonic()
        if now >= self.deadline_at:
            self._give_up("the deadline was reached")
            return
        receiver = self.bus.receiver
        if self.bus.listening and receiver is not None and receiver.state & ACTIVE == ACTIVE:
            self._credit(receiver)
        if self.bus.listening and now - progress.last_progress >= self.settings.timeout:
            progress.receive_attempt += 1
            progress.last_progress = now
            if progress.receive_attempt >= self.settings.retries and not self._resend():
                return
        self.container.schedule(min(TICK, max(self.deadline_at - now, 0.001)),
                                _Call(self._tick))

    def _resend(self) -> bool:
        """Every receive attempt timed out: send what is unanswered again, or give up when no
        send attempt is left (False)."""
        s, progress = self.settings, self.progress
        if progress.send_cycle >= s.send_retries:
            self._give_up(f"no reply: {s.send_retries} send attempt(s) x {s.retries} receive "
                          f"attempt(s) of {s.timeout:g} s")
            return False
        progress.send_cycle += 1
        progress.receive_attempt = 0
        log.warning("no reply for %d request(s) within %g s x %d; sending them again (attempt "
                    "%d of %d)", len(progress.unanswered), s.timeout, s.retries,
                    progress.send_cycle, s.send_retries)
        progress.counts["resent"] += len(progress.unanswered)
        self._queue(progress.unanswered.values())
        return True

    def _give_up(self, reason: str) -> None:
        progress = self.progress
        if progress.done:
            return
        for req in list(progress.unanswered.values()):
            progress.given_up.add(req.request_id)
            self.fail(req, f"no signature: {reason}")
        progress.unanswered.clear()
        for req in progress.source or ():  # never sent: no reply can come
            self.fail(req, f"no signature: {reason}")
        progress.source = None
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        progress = self.progress
        if progress.unanswered or progress.done:
            return
        if progress.source is not None:  # the rest may be none: made now if the bus is up
            self._refill()
            if progress.unanswered or progress.source is not None:
                return
        self.progress.done = True
        if self.bus.conn is not None and self.bus.listening:
            # Close and let the close complete: stopping the container at once would drop
            # the accepts of the last replies, and the broker would hand those replies to
            # the next reader of the queue. A broker that does not answer the close gets a
            # short grace, never past the deadline.
            self.bus.conn.close()
            grace = max(0.0, min(CLOSE_GRACE, self.deadline_at - time.monotonic()))
            self.stop_task = self.container.schedule(grace, _Call(self.container.stop))
        else:
            self.container.stop()


def run_session(settings: Settings, requests: Mapping[str, Request] | Iterable[Request],
                deliver: Callable[[Request, dict, str, dict], None],
                fail: Callable[[Request, str], None], deadline_at: float,
                ttl: float, known: collections.abc.Container[str] | None = None,
                backlog: Callable[[], int] | None = None) -> dict[str, int]:
    """Run a Session to its end: every request answered (``deliver``) or given up (``fail``).
    ``requests``: by id, or in order (made as they are taken); each is dropped once answered or
    given up. ``known``: every request id (wire.RequestIds; default: a set of ``requests``'
    ids), to tell a duplicate reply from a stray one. ``backlog``: how many delivered replies
    wait to be dealt with (beyond MAX_BACKLOG, no more credit until they are). Returns the
    counters (stray, duplicate, ...)."""
    session = Session(settings, requests, deliver, fail, deadline_at, ttl, known, backlog)
    if session.progress.unanswered or session.progress.more(1):
        Container(session).run()
    return session.progress.counts
