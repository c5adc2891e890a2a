"""The msg signer: a remote signing server signs, over an AMQP 1.0 bus (session.py), requests
built as pubtools-sign 1.0.6 builds them (wire.py); every signature it returns is taken apart
before it is written (checks.py), and ``verify_keyring`` adds the cryptographic check (Sequoia,
in-process: lookaside.signature_problem)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from signaction import CREATOR
from signaction.errors import InputError
from signaction.formats import openpgp
from signaction.plan import Plan, WorkItem
from signaction.safeload import read_regular_file

from ..base import Options, Outcome, Report
from ..lookaside import LookasideSigner, TrustedKey, signature_problem, trusted_for
from .checks import refusal
from .wire import (
    MAX_REPLY_BYTES,
    Fields,
    Request,
    RequestIds,
    lazy_batch_requests,
    lazy_single_requests,
    outcomes_of,
)

if TYPE_CHECKING:
    from .session import Settings

log = logging.getLogger("signers.msg")
# seconds the reply checker lets replies gather once woken: it then checks them in one go, and
# the event loop and it hand the GIL to each other per batch, not per reply
BATCH_PAUSE = 0.02


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
        # the section this signer reads, batch or single: the class's is the default
        self.section = self.config_section(self.inputs)  # type: ignore[misc]
        self.settings = self._settings()
        self.trusted: dict[str, TrustedKey] = {}  # verify_keyring's keys (preflight)

    def _settings(self) -> Settings:
        # Imported here, as the run makes this signer: the session imports proton, and every
        # run imports every signer package to list them.
        from .session import Settings

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
        if s.verify_keyring:
            self.trusted = self._trusted(f"{where}.verify_keyring", s.verify_keyring, plan)
        if plan.files:
            if self.section == "msg_batch_signer":
                raise InputError("--signer-type batch signs container images only, not files "
                                 "(as pubtools-sign's msg_batch_signer)")
            # a reply echoes the request (the file, base64) and adds its signed copy (base64)
            s.max_reply = MAX_REPLY_BYTES + 3 * max(len(f.data) for f in plan.files)
        if s.timeout <= 0 or s.retries < 1 or s.send_retries < 1:
            raise InputError(f"{where}: timeout must be > 0, retries and send_retries >= 1")
        self.requester = self._requester(where)
        self._addresses(where)
        if not s.verify_broker:
            log.warning("warning: broker_tls_verify is false: the broker's certificate is NOT "
                        "verified; anyone on the network path can read and answer requests")

    def _requester(self, where: str) -> str:
        """--requester, else the client certificate's CN (or UID)."""
        if self.inputs.requester:
            return self.inputs.requester
        if not self.settings.cert:
            raise InputError(f"{where}: no requester: give --requester or a client "
                             "certificate (messaging_cert_key)")
        return requester_from_certificate(self.settings.cert)

    def _addresses(self, where: str) -> None:
        """The send and listen addresses, their placeholders ({creator}, {task_id}, ...)
        filled in."""
        s = self.settings
        fields = {"creator": self.requester, "task_id": self.inputs.task_id or "",
                  "environment": s.environment, "service": s.service}
        for key in ("topic_send_to", "topic_listen_to"):
            try:
                value = self.config[key].format(**fields)
            except (KeyError, IndexError, ValueError) as e:
                raise InputError(f"{where}.{key}: unknown placeholder {e} (known: "
                                 f"{', '.join('{' + k + '}' for k in fields)})") from None
            setattr(s, "send_to" if key == "topic_send_to" else "listen_to", value)

    @staticmethod
    def _trusted(where: str, path: str, plan: Plan) -> dict[str, TrustedKey]:
        """verify_keyring, read in-process: each key asked for -> the primary key of it that
        must have made its signatures."""
        where = f"{where}: {path!r}"
        data = read_regular_file(path, f"{where}: cannot read it", openpgp.MAX_KEYRING)
        try:
            ring = openpgp.Keyring.parse(data)
        except openpgp.OpenPGPError as e:
            raise InputError(f"{where} is not an OpenPGP public keyring: {e}") from None
        return trusted_for(ring, {k.key for k in plan.keys}, where)

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
        from .session import run_session  # proton's: see _settings

        s = self.settings
        ids = RequestIds()
        self.requests, requests = self._requests(items, ids)
        deadline_at = self.started + s.deadline if s.deadline else float("inf")
        with Replies(report, self.trusted if s.verify_keyring else None) as replies:
            log.info("sending %d request(s) to %s via %s", self.requests, s.send_to,
                     ", ".join(s.brokers))
            # made as the session takes them, a window at a time (session.MAX_IN_FLIGHT), and
            # dropped once answered: memory does not grow with the number of requests
            counts = run_session(s, requests, replies.deliver, replies.fail, deadline_at,
                                 ttl=s.timeout * s.retries, known=ids, backlog=replies.backlog)
        self.stats = {k: v for k, v in counts.items() if v}
        if self.stats:
            log.info("replies ignored or retried: %s",
                     ", ".join(f"{k} {v}" for k, v in self.stats.items()))

    def _requests(self, items: Sequence[WorkItem], ids: RequestIds
                  ) -> tuple[int, Iterator[Request]]:
        """How many requests ``items`` take, and those requests (one per item, or (batch)
        per chunk of images), each made when it is taken."""
        s = self.settings
        fields: dict[str, Any] = {
            "requester": self.requester, "task_id": self.inputs.task_id or "",
            "environment": s.environment, "service": s.service, "address": s.send_to,
            "creator": CREATOR, "timestamp": int(time.time()),
            "task_id_attribute": s.task_id_attribute}
        if self.section == "msg_batch_signer":
            images = list(dict.fromkeys(i.container for i in items))  # batch: images only
            keys = list(dict.fromkeys(i.key for i in items))
            return lazy_batch_requests(images, keys,
                                       chunk_size=int(self.config.get("chunk_size") or 50),
                                       ids=ids, **fields)
        return len(items), lazy_single_requests(
            items, Fields(**fields, repo=self.inputs.repo or ""), ids)


class Replies:
    """What becomes of each reply (``deliver``) or request given up (``fail``): an Outcome per
    work item, each reply checked (``refusal``: every check, on every reply) and its signature
    file written by one checker thread beside the event loop, so that the loop never waits on
    a check or a write (``deliver`` only queues the reply). The hand-off costs the loop one
    append, and a wake-up only when the checker has run dry: it takes what is queued in one
    go, so GIL hand-offs come per batch of replies, not per reply (a thread woken per reply
    cost ~10% more CPU than the writes themselves: bench/msg_bench.py, N=3,000).
    verify_keyring's cryptographic check runs in a small pool of its own (``Verify``). Leaving
    the ``with`` block checks and reports every reply queued (what was signed is kept), then
    raises what the checker raised, if anything."""

    def __init__(self, report: Report, trusted: dict[str, TrustedKey] | None):
        self.report = report
        self.verify = Verify(report, trusted) if trusted is not None else None
        self._queue: deque[tuple[Request, dict | None, str, dict | None]] = deque()
        self._ready = threading.Event()  # something is queued, or the end
        self._closed = threading.Event()  # the end: no more replies to gather
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="msg-replies", daemon=True)
        self._thread.start()

    def __enter__(self) -> Replies:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        if self._error is not None and exc[0] is None:
            raise self._error

    def close(self) -> None:
        """Check and report everything queued, then stop the checker (and Verify's pool)."""
        if not self._closing:
            self._closing = True
            self._closed.set()
            self._ready.set()
            self._thread.join()
            if self.verify is not None:
                self.verify.close()

    def backlog(self) -> int:
        """Replies queued and not yet checked (the session gives no more credit beyond a
        bound: memory stays flat when the checker falls behind)."""
        return len(self._queue)

    def deliver(self, req: Request, msg: dict, text: str, headers: dict) -> None:
        """Queue a reply (the event loop's side: an append, and a wake-up if the checker
        sleeps)."""
        self._queue.append((req, msg, text, headers))
        if not self._ready.is_set():
            self._ready.set()

    def fail(self, req: Request, why: str) -> None:
        self._queue.append((req, None, why, None))
        if not self._ready.is_set():
            self._ready.set()

    def _run(self) -> None:
        queue, ready = self._queue, self._ready
        while True:
            ready.wait()
            ready.clear()
            # let replies gather (one hand-off takes them all), but not once the block ends
            self._closed.wait(BATCH_PAUSE)
            while queue:
                req, msg, text, headers = queue.popleft()
                if self._error is not None:
                    continue  # a bug stopped the checks: nothing more is written
                try:
                    if msg is None:
                        for item in req.items:
                            self.report(Outcome(item, error=text))
                    else:
                        self._outcomes(req, msg, text, headers or {})
                except BaseException as e:  # raised again by __exit__, in the signer's thread
                    self._error = e
            if self._closing and not queue:
                return

    def _outcomes(self, req: Request, msg: dict, text: str, headers: dict) -> None:
        # operation_results gets [reply, properties] once per reply, as pubtools-sign's
        # does; kept as JSON text (the reply's own), which is smaller than parsed objects.
        # In single mode a reply's place in operation_results is the item's in the plan (the
        # request order); a batch reply is one entry, at its request's place.
        reply = f"[{text}, {json.dumps(headers)}]"
        for n, (item, signature) in enumerate(outcomes_of(req, msg)):
            detail = reply if n == 0 else None
            if isinstance(signature, str):
                self.report(Outcome(item, error=signature, detail=detail, slot=req.slot))
            elif (problem := refusal(item, signature)) is not None:
                self.report(Outcome(item, error=f"signature refused: {problem}", detail=detail,
                                    slot=req.slot))
            elif self.verify is not None:
                self.verify.submit(item, signature, detail, req.slot)
            else:
                self.report(Outcome(item, signature=signature, detail=detail, slot=req.slot))


class Verify:
    """verify_keyring's cryptographic check of each signature returned (lookaside's
    ``signature_problem``, the check verify mode and skip-signed make, in-process through
    Sequoia) in a pool of up to 4 threads beside the event loop; each signature's Outcome
    reported once checked. Every key asked for must be a primary key of the keyring."""

    def __init__(self, report: Report, trusted: dict[str, TrustedKey]):
        self.report = report
        self.trusted = trusted
        self.pool = ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="verify")

    def submit(self, item: WorkItem, signature: bytes, detail: str | None,
               slot: int | None) -> None:
        self.pool.submit(self._check, item, signature, detail, slot)

    def _check(self, item: WorkItem, signature: bytes, detail: str | None,
               slot: int | None) -> None:
        problem = signature_problem(signature, item, self.trusted[item.key.key])
        self.report(Outcome(item, error=f"signature refused: {problem}", detail=detail, slot=slot)
                    if problem else Outcome(item, signature=signature, detail=detail, slot=slot))

    def close(self) -> None:
        self.pool.shutdown(wait=True)


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


SIGNER = MsgSigner
