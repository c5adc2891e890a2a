"""Messaging signer: signing requests over an AMQP 1.0 bus to a remote signing server.

Wire-compatible with pubtools-sign 1.0.6 (shared notes: wire-format.md): the same request body,
application properties, ttl and reply format. What differs is how the client behaves:

- one proton event loop; the reply receiver is attached (remotely) before the first send;
- one sender link per target address (brokers without anonymous relay, like RabbitMQ, refuse
  pubtools-sign's anonymous sender); sends are pipelined under the link's credit;
- replies are matched in O(1) by ``msg[message_id_key]``; stray, duplicate, late, malformed and
  oversized replies are ignored and counted;
- pubtools-sign's timeout / retries / send_retries (resending only unanswered requests), plus a total
  deadline that the run never overruns; failover across brokers and reconnection with backoff,
  resending what is unanswered (a duplicate reply is ignored, so no signature is written twice);
- the broker's certificate and host name are verified by default;
- every signature a server returns is taken apart before it is written (``refusal``): a binary
  signed message of exactly the claim asked for, naming the key asked for, or nothing is
  written for that (image, key) ("signature refused: ..."); ``verify_keyring`` adds gpg's
  cryptographic check.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from signaction.errors import InputError
from signaction.plan import Plan, WorkItem

from ..base import Options, Outcome, Report
from ..gnupg import SignatureCheck
from ..lookaside import LookasideSigner
from ..tools import child_env
from .checks import refusal
from .wire import (
    MAX_REPLY_BYTES,
    BadReply,
    Request,
    build_batch_requests,
    build_request,
    jsonable,
    outcomes_of,
    parse_reply,
)

log = logging.getLogger("signers.msg")

TICK = 0.1  # seconds between checks of the timeout and the deadline
CLOSE_GRACE = 2.0  # seconds a broker gets to answer our close at the end
CREDIT = 1000  # replies the broker may send before we have read them


# -- settings ---------------------------------------------------------------------------------

@dataclass
class Settings:
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


def _path(value: str | None) -> str | None:
    return os.path.expanduser(value) if value else None


def requester_from_certificate(path: str) -> str:
    """CN of the client certificate, else its UID (as pubtools-sign does), via pyOpenSSL."""
    from cryptography.x509.oid import NameOID
    from OpenSSL import crypto

    try:
        with open(path, "rb") as f:
            cert = crypto.load_certificate(crypto.FILETYPE_PEM, f.read()).to_cryptography()
    except OSError as e:
        raise InputError(f"messaging certificate {path!r}: {e.strerror}") from None
    except crypto.Error:
        raise InputError(f"messaging certificate {path!r}: no PEM certificate in it") from None
    for oid in (NameOID.COMMON_NAME, NameOID.USER_ID):
        values = cert.subject.get_attributes_for_oid(oid)
        if values:
            return str(values[0].value)
    raise InputError(f"messaging certificate {path!r}: its subject has neither CN nor UID")


def client_ssl_domain(cert=None, key=None, ca=None, *, verify: bool = True):
    """Proton client TLS settings: present ``cert`` (+ ``key``; one PEM may hold both) if given;
    trust ``ca``; with ``verify`` check the broker's certificate and host name (use the name in
    its certificate, e.g. ``localhost``: proton does not match IP addresses). Without ``verify``
    nothing about the broker is checked, as pubtools-sign does: never the default here."""
    import proton

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


# -- the event loop -----------------------------------------------------------------------------

def _proton():
    import proton
    from proton.handlers import EndpointStateHandler
    from proton.reactor import Container
    return proton, EndpointStateHandler, Container


class _Call:
    """A proton timer target that calls a function."""

    def __init__(self, fn: Callable[[], None]):
        self.fn = fn

    def on_timer_task(self, event) -> None:
        self.fn()


def run_session(settings: Settings, requests: dict[str, Request],
                deliver: Callable[[Request, dict, str, dict], None],
                fail: Callable[[Request, str], None], deadline_at: float,
                ttl: float) -> dict[str, int]:
    """Send every request (by id) and hand each matched reply (request, msg, the reply body as
    JSON text, reply properties) to ``deliver``, or each request given up to ``fail``, in one proton event
    loop. ``requests`` is consumed: each is removed once answered or given up. Returns the
    counters (stray, duplicate, ...)."""
    proton, EndpointStateHandler, Container = _proton()
    from cproton import PN_ACCEPTED, pn_delivery_settle, pn_delivery_update
    REJECTED = proton.Delivery.REJECTED
    RELEASED, MODIFIED = proton.Delivery.RELEASED, proton.Delivery.MODIFIED
    ACTIVE = proton.Endpoint.LOCAL_ACTIVE | proton.Endpoint.REMOTE_ACTIVE

    # Deliveries and credit are handled here, not by proton's MessagingHandler: its four child
    # handlers see every event, and per message that dispatching cost more than the rest of the
    # work (bench/msg_bench.py). Only the endpoint open/close/error logic is proton's.
    class Session(proton.Handler):
        def __init__(self):
            self.handlers = [EndpointStateHandler(False, weakref.proxy(self))]
            self.unanswered: dict[str, Request] = requests
            self.known: set[str] = set(requests)  # ids only: answered requests are freed
            self.given_up: set[str] = set()
            self.queues: dict[str, deque[Request]] = {}
            self.queued: set[str] = set()  # request ids waiting in a queue (never twice)
            self.counts = {"stray": 0, "duplicate": 0, "late": 0, "malformed": 0,
                           "oversized": 0, "reconnects": 0, "resent": 0, "rejected": 0}
            self.conn = None
            self.receiver = None
            self.senders: dict[str, Any] = {}
            self.listening = False
            self.done = False
            self.broker = 0
            self.generation = 0  # which connection is current; events of older ones are stale
            self.reconnect_pending = False
            self.ever_connected = False
            self.connect_failures = 0
            self.disconnected_since: float | None = None
            self.last_error = ""
            self.last_progress = time.monotonic()
            self.receive_attempt = 0
            self.send_cycle = 1
            self.stop_task = None

        # connection management
        def on_reactor_init(self, event):
            self.container = event.container
            self._connect()
            self._tick()

        def _ssl(self):
            if not any(b.startswith("amqps://") for b in settings.brokers):
                return None
            return client_ssl_domain(settings.cert, settings.key, settings.ca,
                                     verify=settings.verify_broker)

        def _connect(self):
            if self.done:
                return
            url = settings.brokers[self.broker % len(settings.brokers)]
            log.debug("connecting to %s", url)
            self.reconnect_pending = False
            self.generation += 1
            self.listening = False
            self.senders = {}
            self.queues = {}
            self.queued = set()
            self.conn = self.container.connect(url, ssl_domain=self._ssl(), reconnect=False,
                                               sasl_enabled=False)
            self.conn.csa_generation = self.generation  # an int: nothing points back
            self.receiver = self.container.create_receiver(
                self.conn, settings.listen_to, name=f"csa-replies-{uuid.uuid4()}")

        def _current(self, event) -> bool:
            return getattr(event.connection, "csa_generation", None) == self.generation

        def on_link_opened(self, event):
            if not self._current(event):
                return
            if event.receiver is not None and event.receiver.name == self.receiver.name:
                # The reply listener is attached: only now may requests go out. After a
                # reconnection every unanswered request goes again (replies may have been lost
                # with the broker; a duplicate reply is ignored).
                if self.ever_connected:
                    self.counts["reconnects"] += 1
                    self.counts["resent"] += len(self.unanswered)
                self.ever_connected = True
                self.listening = True
                self.connect_failures = 0
                self.disconnected_since = None
                self.last_progress = time.monotonic()
                self._queue(self.unanswered.values())

        def _queue(self, reqs) -> None:
            for req in reqs:
                if req.request_id not in self.queued:
                    self.queued.add(req.request_id)
                    self.queues.setdefault(req.address, deque()).append(req)
            for address in self.queues:
                if address not in self.senders:
                    self.senders[address] = self.container.create_sender(self.conn, address)
                else:
                    self._send(self.senders[address])

        def on_link_flow(self, event):
            link = event.link
            if link.is_sender and link.state & ACTIVE == ACTIVE:
                self._send(link)

        def on_link_remote_open(self, event):
            link = event.link
            if link.is_receiver:
                link.flow(CREDIT - link.credit)

        def on_delivery(self, event):
            delivery = event.delivery
            link = delivery.link
            if link.is_receiver:
                if delivery.aborted:
                    delivery.settle()
                elif delivery.readable and not delivery.partial:
                    message = proton.Message()
                    message.decode(link.recv(delivery.pending))
                    link.advance()
                    try:
                        self._reply(message)
                    finally:
                        # Every reply is accepted, used or not (an unaccepted one comes back),
                        # with the C API's two calls: Delivery.update() first copies the
                        # (empty) local disposition through Python, ~0.1 ms a reply.
                        pn_delivery_update(delivery._impl, PN_ACCEPTED)
                        pn_delivery_settle(delivery._impl)
                    if link.credit < CREDIT // 2:
                        link.flow(CREDIT - link.credit)
            elif delivery.updated:
                state = delivery.remote_state
                if state == REJECTED:
                    self._rejected(delivery)
                elif state == RELEASED or state == MODIFIED:
                    self._released(delivery)
                if delivery.settled:
                    delivery.settle()

        def _send(self, sender) -> None:
            queue = self.queues.get(sender.target.address)
            while queue and sender.credit > 0 and self.listening:
                req = queue.popleft()
                self.queued.discard(req.request_id)
                if req.request_id not in self.unanswered:
                    continue
                sender.send(proton.Message(address=req.address, properties=req.properties,
                                           body=req.body, ttl=ttl),
                            tag=req.request_id.encode())

        def _rejected(self, delivery):
            req = self.unanswered.pop(delivery.tag.decode(), None)
            if req is not None:
                self.counts["rejected"] += 1
                cond = delivery.remote.condition
                fail(req, f"the broker rejected the request: {cond.name if cond else 'rejected'}")
                self._maybe_finish()

        def _released(self, delivery):
            req = self.unanswered.get(delivery.tag.decode())
            if req is not None and self.listening:
                self._queue([req])

        def on_link_error(self, event):
            if not self._current(event):
                return
            link = event.link
            cond = link.remote_condition
            address = link.source.address if link.is_receiver else link.target.address
            self._give_up(f"the broker refused the address {address!r}: "
                          f"{cond.name if cond else ''} {cond.description if cond else ''}".strip())

        def on_session_error(self, event):
            # RabbitMQ refuses an address by ending the whole session, not by detaching the link.
            if not self._current(event):
                return
            cond = event.session.remote_condition
            self._give_up("the broker refused the link: "
                          f"{cond.name if cond else ''} {cond.description if cond else ''}".strip())

        def on_transport_error(self, event):
            if not self._current(event):
                return
            cond = event.transport.condition
            self.last_error = f"{cond.name}: {cond.description}" if cond else "transport error"
            text = self.last_error.lower()
            if "certificate verify failed" in text or "certificate" in text and "fail" in text:
                self._give_up(f"TLS: the broker's certificate was refused ({self.last_error})")

        def on_connection_error(self, event):
            cond = event.connection.remote_condition
            self.last_error = f"{cond.name}: {cond.description}" if cond else "connection error"

        def on_disconnected(self, event):
            # proton may report one lost connection more than once: one reconnect per connection
            if self.done or not self._current(event) or self.reconnect_pending:
                return
            self.reconnect_pending = True
            self.listening = False
            now = time.monotonic()
            if self.disconnected_since is None:
                self.disconnected_since = now
            self.connect_failures += 1
            self.broker += 1  # fail over to the next broker
            delay = min(0.05 * 2 ** min(self.connect_failures, 7), 5.0)
            limit = settings.timeout * max(settings.retries, 1)
            if now - self.disconnected_since + delay > limit:
                self._give_up(f"no broker reachable for {limit:g} s ({self.last_error})")
                return
            if now + delay >= deadline_at:
                self._give_up(f"the deadline was reached while reconnecting ({self.last_error})")
                return
            log.warning("disconnected from the broker (%s); reconnecting in %.2f s",
                        self.last_error or "connection lost", delay)
            self.container.schedule(delay, _Call(self._connect))

        # replies
        def _reply(self, message):
            if self.done:
                return
            try:
                request_id, msg, text = parse_reply(message.body, settings.id_key,
                                                    settings.max_reply)
            except BadReply as e:
                self.counts[e.kind] += 1
                log.debug("ignored a %s reply: %s", e.kind, e)
                return
            req = self.unanswered.pop(request_id, None)
            if req is None:
                kind = ("late" if request_id in self.given_up else
                        "duplicate" if request_id in self.known else "stray")
                self.counts[kind] += 1
                return
            self.last_progress = time.monotonic()
            self.receive_attempt = 0
            deliver(req, msg, text, jsonable(message.properties or {}))
            self._maybe_finish()

        # timeouts, retries, deadline
        def _tick(self):
            if self.done:
                return
            now = time.monotonic()
            if now >= deadline_at:
                self._give_up("the deadline was reached")
                return
            if self.listening and now - self.last_progress >= settings.timeout:
                self.receive_attempt += 1
                self.last_progress = now
                if self.receive_attempt >= settings.retries:
                    if self.send_cycle >= settings.send_retries:
                        self._give_up(
                            f"no reply: {settings.send_retries} send attempt(s) x "
                            f"{settings.retries} receive attempt(s) of {settings.timeout:g} s")
                        return
                    self.send_cycle += 1
                    self.receive_attempt = 0
                    log.warning("no reply for %d request(s) within %g s x %d; sending them "
                                "again (attempt %d of %d)", len(self.unanswered),
                                settings.timeout, settings.retries, self.send_cycle,
                                settings.send_retries)
                    self.counts["resent"] += len(self.unanswered)
                    self._queue(self.unanswered.values())
            self.container.schedule(min(TICK, max(deadline_at - now, 0.001)), _Call(self._tick))

        def _give_up(self, reason: str) -> None:
            if self.done:
                return
            for req in list(self.unanswered.values()):
                self.given_up.add(req.request_id)
                fail(req, f"no signature: {reason}")
            self.unanswered.clear()
            self._maybe_finish()

        def _maybe_finish(self) -> None:
            if self.unanswered or self.done:
                return
            self.done = True
            if self.conn is not None and self.listening:
                # Close and let the close complete: stopping the container at once would drop
                # the accepts of the last replies, and the broker would hand those replies to
                # the next reader of the queue. A broker that does not answer the close gets a
                # short grace, never past the deadline.
                self.conn.close()
                grace = max(0.0, min(CLOSE_GRACE, deadline_at - time.monotonic()))
                self.stop_task = self.container.schedule(grace, _Call(self.container.stop))
            else:
                self.container.stop()

        def on_connection_closed(self, event):
            if self.done and self.stop_task is not None and self._current(event):
                self.stop_task.cancel()  # closed cleanly: the loop ends by itself

    session = Session()
    if requests:
        Container(session).run()
    return session.counts


# -- the signer ---------------------------------------------------------------------------------

class MsgSigner(LookasideSigner):
    name = "msg"
    section = "msg_signer"
    summary = "a remote signing server over an AMQP 1.0 bus"
    signs_files = True

    @classmethod
    def config_section(cls, inputs) -> str:
        return "msg_batch_signer" if inputs.signer_type == "batch" else cls.section

    def __init__(self, config, options: Options):
        super().__init__(config, options)
        self.started = time.monotonic()  # the deadline counts from the start of the run
        self.requests = 0  # how many were sent (batch: the chunks)
        self.section = self.config_section(self.inputs)
        self.settings = self._settings()

    def _settings(self) -> Settings:
        c = self.config
        if not c:
            raise InputError(f"config: {self.section}: the section is required for "
                             f"--signer {self.name}"
                             + (" --signer-type batch" if self.section != MsgSigner.section
                                else ""))
        cert = _path(c.get("messaging_cert") or c.get("messaging_cert_key"))
        key = _path(c.get("messaging_key") or c.get("messaging_cert_key"))
        deadline = self.inputs.deadline
        if c.get("deadline") is not None:
            deadline = min(deadline or float("inf"), float(c["deadline"]))
        return Settings(
            brokers=list(c["messaging_brokers"]), send_to=c["topic_send_to"],
            listen_to=c["topic_listen_to"], environment=c["environment"], service=c["service"],
            timeout=float(c["timeout"]), retries=int(c["retries"]),
            send_retries=int(c["send_retries"]), id_key=c["message_id_key"],
            task_id_attribute=c.get("task_id_attribute", "pub_task_id"), cert=cert, key=key,
            ca=_path(c.get("messaging_ca_cert")), verify_broker=c.get("broker_tls_verify", True),
            deadline=deadline, verify_keyring=_path(c.get("verify_keyring")))

    def preflight(self, plan: Plan) -> None:
        s = self.settings
        where = f"config: {self.section}"
        for url in s.brokers:
            if not url.startswith(("amqp://", "amqps://")):
                raise InputError(f"{where}.messaging_brokers: {url!r} is not an amqp:// or "
                                 "amqps:// URL")
        if any(b.startswith("amqps://") for b in s.brokers):
            if not s.ca and s.verify_broker:
                raise InputError(f"{where}.messaging_ca_cert: needed to verify the broker's "
                                 "certificate (or set broker_tls_verify: false, not advised)")
        for label, path in (("messaging_cert_key", s.cert), ("messaging_key", s.key),
                            ("messaging_ca_cert", s.ca), ("verify_keyring", s.verify_keyring)):
            if path and not os.access(path, os.R_OK):
                raise InputError(f"{where}.{label}: {path!r} is not a readable file")
        if s.verify_keyring and subprocess.run(
                ["gpg", "--batch", "--show-keys", s.verify_keyring], capture_output=True,
                check=False, env=child_env(self.environ)).returncode != 0:
            raise InputError(f"{where}.verify_keyring: {s.verify_keyring!r} holds no OpenPGP "
                             "public keys")
        if plan.files:
            if self.section == "msg_batch_signer":
                raise InputError("--signer-type batch signs container images only, not files "
                                 "(as pubtools-sign's msg_batch_signer)")
            # a reply echoes the request (the file, base64) and adds its signed copy (base64)
            s.max_reply = MAX_REPLY_BYTES + 3 * max(len(f.data) for f in plan.files)
        if s.timeout <= 0 or s.retries < 1 or s.send_retries < 1:
            raise InputError(f"{where}: timeout must be > 0, retries and send_retries >= 1")
        requester = self.inputs.requester
        if not requester:
            if not s.cert:
                raise InputError(f"{where}: no requester: give --requester or a client "
                                 "certificate (messaging_cert_key)")
            requester = requester_from_certificate(s.cert)
        self.requester = requester
        fields = {"creator": requester, "task_id": self.inputs.task_id or "",
                  "environment": s.environment, "service": s.service}
        for key in ("topic_send_to", "topic_listen_to"):
            try:
                value = self.config[key].format(**fields)
            except (KeyError, IndexError, ValueError) as e:
                raise InputError(f"{where}.{key}: unknown placeholder {e} (known: "
                                 f"{', '.join('{' + k + '}' for k in fields)})") from None
            setattr(s, "send_to" if key == "topic_send_to" else "listen_to", value)
        if not s.verify_broker:
            log.warning("warning: broker_tls_verify is false: the broker's certificate is NOT "
                        "verified; anyone on the network path can read and answer requests")

    def slots(self, plan: Plan) -> int:
        # single: one request per (image, key) of the plan, in plan order; batch: per request
        return self.requests if self.section == "msg_batch_signer" else len(plan)

    def public_keys(self, plan: Plan) -> bytes | None:
        """The verify_keyring, when configured: the keys the signing server signs with."""
        if not self.settings.verify_keyring:
            return None
        try:
            with open(self.settings.verify_keyring, "rb") as f:
                return f.read()
        except OSError:
            return None

    def sign(self, items: Sequence[WorkItem], report: Report) -> None:
        from signaction import CREATOR

        s = self.settings
        task_id = self.inputs.task_id or ""
        now = int(time.time())
        if self.section == "msg_batch_signer":
            images = list(dict.fromkeys(i.image for i in items))
            keys = list(dict.fromkeys(i.key for i in items))
            requests = build_batch_requests(
                images, keys, chunk_size=int(self.config.get("chunk_size") or 50),
                requester=self.requester, task_id=task_id, environment=s.environment,
                service=s.service, address=s.send_to, creator=CREATOR, timestamp=now)
        else:
            requests = [build_request(item, requester=self.requester, task_id=task_id,
                                      environment=s.environment, service=s.service,
                                      task_id_attribute=s.task_id_attribute, address=s.send_to,
                                      creator=CREATOR, timestamp=now,
                                      repo=self.inputs.repo or "")
                        for item in items]
        self.requests = len(requests)
        deadline_at = self.started + s.deadline if s.deadline else float("inf")
        checker = SignatureCheck.from_file(s.verify_keyring) if s.verify_keyring else None
        checks = ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="verify") \
            if checker else None
        # Each outcome is recorded (its signature file written) in the event loop itself: a
        # writer thread cost ~10% more CPU in GIL hand-offs than the writes themselves
        # (bench/msg_bench.py, N=3,000), and the machine is shared with the broker and server.

        def deliver(req: Request, msg: dict, text: str, headers: dict) -> None:
            # operation_results gets [reply, properties] once per reply, as pubtools-sign's
            # does; kept as JSON text (the reply's own), which is smaller than parsed objects.
            # In single mode its place is the item's in the plan (the request order); a batch
            # reply is one entry, at its request's place.
            reply = f"[{text}, {json.dumps(headers)}]"
            for n, (item, signature) in enumerate(outcomes_of(req, msg)):
                detail = reply if n == 0 else None
                if isinstance(signature, str):
                    report(Outcome(item, error=signature, detail=detail, slot=req.slot))
                elif (problem := refusal(item, signature)) is not None:
                    report(Outcome(item, error=f"signature refused: {problem}", detail=detail,
                                   slot=req.slot))
                elif checks is not None:  # gpg takes time: never in the event loop
                    checks.submit(check, item, signature, detail, req.slot)
                else:
                    report(Outcome(item, signature=signature, detail=detail, slot=req.slot))

        def check(item: WorkItem, signature: bytes, detail: str | None, slot: int | None) -> None:
            problem = checker.problem(signature, item)
            report(Outcome(item, error=f"signature refused: {problem}", detail=detail, slot=slot)
                   if problem else Outcome(item, signature=signature, detail=detail, slot=slot))

        def fail(req: Request, why: str) -> None:
            for item in req.items:
                report(Outcome(item, error=why))

        log.info("sending %d request(s) to %s via %s", len(requests), s.send_to,
                 ", ".join(s.brokers))
        pending = {r.request_id: r for r in requests}
        del requests  # the session pops each request once answered: memory stays flat
        try:
            counts = run_session(s, pending, deliver, fail, deadline_at,
                                 ttl=s.timeout * s.retries)
        finally:
            if checks is not None:
                checks.shutdown(wait=True)
                checker.close()
        self.stats = {k: v for k, v in counts.items() if v}
        if self.stats:
            log.info("replies ignored or retried: %s",
                     ", ".join(f"{k} {v}" for k, v in self.stats.items()))


SIGNER = MsgSigner
