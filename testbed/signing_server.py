"""A reference signing server: the server side of pubtools-sign 1.0.6's messaging format.

    python -m testbed.signing_server --broker URL [--broker URL ...] --listen-to ADDRESS
        --reply-to ADDRESS [--cert-key PEM --ca-cert FILE] [--gnupg-home DIR] [--ready-file PATH]
        [--workers N] [--instant] [--delay SECONDS] [--drop-every N] [--error-for-key KEYID]
        [--duplicate] [--stray N] [--garbage] [--oversized BYTES] [--wrong-key FPR]
        [--wrong-claim WHAT] [--wrong-format FORMAT] [--garbage-signature] [--fault-key KEYID]
        [--replies-from DIR]

It connects to the broker as a client (amqp:// or amqps://; with amqps it presents --cert-key,
one PEM holding key and certificate, and checks the broker's certificate and host name against
--ca-cert), receives signing requests on --listen-to and sends each reply to --reply-to:

- request (application property ``mtype`` other than ``batch``): a JSON body with
  ``sig_key_id`` (the last 8 hex digits of a key fingerprint) and the base64 input; the reply's
  ``msg`` is the request's fields plus ``errors``, ``signing_status`` and, on success, the base64
  result, by ``mtype`` (any other is taken for ``container_signature``):
  ``container_signature``: ``claim_file`` -> ``signed_claim``, the binary OpenPGP signed message
  wrapping the claim (``gpg --sign``); ``clearsign_signature``: ``data`` -> ``signed_data``, the
  ASCII-armored clear-signed text (``gpg --clearsign``); ``gpg_signature``: ``artifact`` ->
  ``signed_payload``, a detached binary signature (``gpg --detach-sign``).
- batch (``mtype: batch``): ``claims: [{claim_file, sig_key_ids, ...}]``; each claim of the reply
  gains ``signed_claims`` {key id: signature} and ``errors``.
- the reply's body is the JSON string ``{"msg", "msg_id", "timestamp", "topic"}``; the request's
  application properties come back as the reply's.

gpg runs in a small thread pool (``signers.gpg.gpg_sign``), replies go back through the event
loop. Fault switches, for tests of clients: ``--delay`` (each reply, without holding up others),
``--drop-every N`` (no reply to every Nth request), ``--error-for-key`` (refuse that key),
``--duplicate`` (every reply twice), ``--stray N`` (N replies with unknown request ids before each
real one), ``--garbage`` (a non-JSON body and a JSON body without ``msg`` before each real
reply), ``--oversized BYTES`` (a reply body of that many characters with an unknown id before
each real one), ``--wrong-key FPR`` (sign with FPR whatever was asked), ``--wrong-claim WHAT``
(sign a claim changed from the one asked for: another ``digest``, another ``identity``, the
identity ``../../../etc`` (``traversal``), another ``type``, an ``unknown-key`` in critical),
``--wrong-format FORMAT`` (answer a container request with ``gpg --sign --armor`` (``armored``),
``gpg --detach-sign`` (``detached``) or ``gpg --clearsign`` (``clearsigned``) output),
``--garbage-signature`` (300 random bytes as the signature), ``--fault-key KEYID`` (the last
three only for requests for that key; others are signed as asked), ``--replies-from DIR`` (a
forger's server: a container request whose claim names digest ``sha256:HEX`` is answered with the
bytes of ``DIR/HEX`` when that file exists, whatever they are), ``--instant`` (no gpg:
answered in order at once, for throughput tests; a container request gets a binary OpenPGP
signed message of its claim naming the requested key, whose signature is a fixed dummy number
that no key verifies (``instant_signed_message``); clear-sign and blob requests get
``INSTANT_SIGNATURE``, which is not OpenPGP at all).

It reconnects (with backoff) when the broker goes away, on a fresh connection with fresh links:
proton's own reconnect re-attaches the old links, and RabbitMQ then refused a transfer on a
re-attached link ("Unexpected frame") and ended the session, which ended the server. The ready
file (JSON ``{"pid", "attached", "listen_to", "reply_to"}``) is written each time both its links
are attached; ``attached`` counts the times. SIGTERM ends it at once.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import ApplicationEvent, Container, EventInjector

from signers.gpg import GpgError, Running, gpg_sign
from testbed import (
    cli_args,
    client_ssl_domain,
    condition_text,
    exit_on_sigterm,
    launch,
    log_transport_error,
    write_ready_file,
)

INSTANT_SIGNATURE = b"instant-signature"
STRAY_SIGNATURE = b"stray-signature"
WRONG_CLAIMS = ("digest", "identity", "traversal", "type", "unknown-key")
WRONG_FORMATS = {"armored": ["--armor", "--sign"], "detached": ["--detach-sign"],
                 "clearsigned": ["--clearsign"]}


class Kind(NamedTuple):
    """One kind of single signing request: its input and result fields, and gpg_sign's mode."""
    source: str
    result: str
    mode: str


CONTAINER = Kind("claim_file", "signed_claim", "sign")
KINDS = {"container_signature": CONTAINER,
         "clearsign_signature": Kind("data", "signed_data", "clearsign"),
         "gpg_signature": Kind("artifact", "signed_payload", "detach")}


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _packet(tag: int, body: bytes) -> bytes:
    """An OpenPGP packet in the new format (RFC 9580, 4.2)."""
    n = len(body)
    if n < 192:
        length = bytes([n])
    elif n < 8384:
        length = bytes([((n - 192) >> 8) + 192, (n - 192) & 0xFF])
    else:
        length = b"\xff" + n.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + length + body


_DUMMY_NUMBER = (2048).to_bytes(2, "big") + b"\xa5" * 256  # an RSA-sized MPI, no real signature
INSTANT_TIME = 1767225600  # 2026-01-01: the instant signatures' creation time, fixed


def instant_signed_message(data: bytes, key_id: str, when: int = INSTANT_TIME) -> bytes:
    """A binary OpenPGP signed message over ``data``, shaped as ``gpg -z 0 --sign`` makes it
    (one-pass signature, literal data, version 4 RSA/SHA-256 signature whose issuer subpackets
    end with ``key_id`` and whose hash prefix is right), but its signature number is a fixed
    dummy: it parses like a real one and verifies with no key. Built per request in a few
    microseconds, so the instant mode still stands for a server that signs; the same request
    always gets the same bytes."""
    kid = key_id.strip().upper()
    try:
        key = bytes.fromhex(kid[-16:].rjust(16, "0"))
    except ValueError:
        key = bytes(8)
    hashed = (b"\x04\x00\x01\x08"  # version 4, binary document, RSA, SHA-256
              + (6 + 23).to_bytes(2, "big")
              + b"\x16\x21\x04" + b"\xd0" * 12 + key  # issuer fingerprint (v4), ends in key
              + b"\x05\x02" + when.to_bytes(4, "big"))
    digest = hashlib.sha256(data + hashed + b"\x04\xff" + len(hashed).to_bytes(4, "big")).digest()
    signature = (hashed + (10).to_bytes(2, "big") + b"\x09\x10" + key  # issuer key id
                 + digest[:2] + _DUMMY_NUMBER)
    return (_packet(4, b"\x03\x00\x08\x01" + key + b"\x01")
            + _packet(11, b"b\x00" + bytes(4) + data) + _packet(2, signature))


def prepared_reply(folder: str, claim: bytes) -> bytes | None:
    """``--replies-from``: the signature a test prepared for the claim's digest (the file
    named by the digest's hex in ``folder``), sent as it is; None: sign as usual."""
    try:
        digest = json.loads(claim)["critical"]["image"]["docker-manifest-digest"]
    except (ValueError, KeyError, TypeError):
        return None
    hex_part = str(digest).rpartition(":")[2]
    if not hex_part.isalnum():
        return None
    try:
        with open(os.path.join(folder, hex_part), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def wrong_claim(data: bytes, what: str) -> bytes:
    """The claim ``data`` changed as ``--wrong-claim`` says (unchanged if it is not JSON)."""
    try:
        claim = json.loads(data)
        critical = claim["critical"]
        if what == "digest":
            critical["image"]["docker-manifest-digest"] = \
                "sha256:" + hashlib.sha256(data).hexdigest()
        elif what == "identity":
            critical["identity"]["docker-reference"] = "registry.example.com/other/image:1.0"
        elif what == "traversal":
            critical["identity"]["docker-reference"] = "../../../etc"
        elif what == "type":
            critical["type"] = "cosign container image signature"
        elif what == "unknown-key":
            critical["expires"] = "never"
    except (ValueError, KeyError, TypeError):
        return data
    return json.dumps(claim).encode("utf-8")


def same_key(key_id: str, other: str) -> bool:
    """A short key id (last 8 hex digits) and a longer one or a fingerprint name the same key."""
    a, b = key_id.strip().upper(), other.strip().upper()
    return bool(a and b) and (a.endswith(b) or b.endswith(a))


class Keyring:
    """The secret keys in a GnuPG home, found by the end of their fingerprints."""

    def __init__(self, gnupg_home: str | None):
        self.gnupg_home = gnupg_home
        self._lock = threading.Lock()
        self._fprs: dict[str, str] = {}  # fingerprint of a key or subkey -> primary fingerprint
        self.reload()

    def reload(self) -> None:
        cmd = ["gpg", "--batch", "--with-colons", "--list-secret-keys"]
        if self.gnupg_home:
            cmd[1:1] = ["--homedir", self.gnupg_home]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
        fprs, primary, previous = {}, None, ""
        for line in out.splitlines():
            fields = line.split(":")
            if fields[0] == "fpr" and len(fields) > 9:
                if previous == "sec":
                    primary = fields[9]
                if primary:
                    fprs[fields[9].upper()] = primary
            previous = fields[0]
        with self._lock:
            self._fprs = fprs

    def find(self, key_id: str) -> str:
        """The primary fingerprint whose key (or subkey) ends with ``key_id``; KeyError says
        why there is none."""
        key_id = key_id.strip().upper()
        if len(key_id) < 8 or any(c not in "0123456789ABCDEF" for c in key_id):
            raise KeyError(f"sig_key_id {key_id!r} is not a key id (8 or more hex digits)")
        for attempt in (1, 2):
            with self._lock:
                found = {p for f, p in self._fprs.items() if f.endswith(key_id)}
            if len(found) == 1:
                return found.pop()
            if len(found) > 1:
                raise KeyError(f"signing key {key_id} is ambiguous here")
            if attempt == 1:
                self.reload()  # a key added since the start
        raise KeyError(f"signing key {key_id} is not known to this signing server")


class Signing:
    """Turns a request body into a reply body; runs in worker threads (nothing here touches
    proton)."""

    def __init__(self, opts, keyring: Keyring | None, running: Running):
        self.opts, self.keyring, self.running = opts, keyring, running

    def sign(self, data_b64, key_id, kind: Kind = CONTAINER) -> str:
        """base64 of the signature (by ``kind``) over the decoded input; ValueError says why
        not."""
        if not isinstance(key_id, str) or not key_id:
            raise ValueError("no sig_key_id in the request")
        if any(same_key(key_id, refused) for refused in self.opts.error_for_key or ()):
            raise ValueError(f"signing with key {key_id} is refused (--error-for-key)")
        if not isinstance(data_b64, str):
            raise ValueError(f"no {kind.source} in the request")
        try:
            data = base64.b64decode(data_b64, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ValueError(f"{kind.source} is not base64") from None
        opts = self.opts
        faulty = not opts.fault_key or same_key(key_id, opts.fault_key)
        if faulty and opts.garbage_signature:
            return b64(os.urandom(300))
        if opts.replies_from and kind is CONTAINER:
            forged = prepared_reply(opts.replies_from, data)
            if forged is not None:
                return b64(forged)
        if faulty and opts.wrong_claim and kind is CONTAINER:
            data = wrong_claim(data, opts.wrong_claim)
        if opts.instant:
            return b64(instant_signed_message(data, key_id) if kind is CONTAINER
                       else INSTANT_SIGNATURE)
        try:
            fpr = opts.wrong_key or self.keyring.find(key_id)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
        try:
            if faulty and opts.wrong_format and kind is CONTAINER:
                return b64(self.wrong_format(data, fpr))
            return b64(gpg_sign(data, fpr, gnupg_home=opts.gnupg_home,
                                running=self.running, mode=kind.mode))
        except (GpgError, OSError) as e:
            raise ValueError(f"gpg failed for key {key_id}: {e}") from None

    def wrong_format(self, data: bytes, fpr: str) -> bytes:
        """``data`` signed by ``fpr`` in the shape ``--wrong-format`` names (real gpg output)."""
        proc = subprocess.run(["gpg", "--batch", "--no-tty", "--quiet", "--homedir",
                               self.opts.gnupg_home, "--local-user", fpr,
                               *WRONG_FORMATS[self.opts.wrong_format]],
                              input=data, capture_output=True, check=False)
        if proc.returncode != 0 or not proc.stdout:
            raise GpgError(proc.stderr.decode("utf-8", "replace").strip()[-300:])
        return proc.stdout

    def envelope(self, msg: dict) -> dict:
        """A reply body around ``msg``."""
        return {"msg": msg, "msg_id": str(uuid.uuid4()), "timestamp": now_iso(),
                "topic": self.opts.reply_to}

    def reply(self, request: dict, mtype) -> dict:
        """The reply to a request whose application property ``mtype`` is that."""
        if mtype == "batch":
            return self.envelope(self.batch(request))
        return self.envelope(self.single(request, KINDS.get(mtype, CONTAINER)))

    def single(self, request: dict, kind: Kind = CONTAINER) -> dict:
        msg = dict(request)
        try:
            signed = self.sign(request.get(kind.source), request.get("sig_key_id"), kind)
        except ValueError as e:
            msg.update(errors=[str(e)], signing_status="failure")
        else:
            msg.update({"errors": [], "signing_status": "success", kind.result: signed})
        return msg

    def batch(self, request: dict) -> dict:
        msg, claims, errors = dict(request), [], []
        for claim in request.get("claims") or []:
            claim = dict(claim) if isinstance(claim, dict) else {"claim": claim}
            signed, claim_errors = {}, []
            for key_id in claim.get("sig_key_ids") or []:
                try:
                    signed[key_id] = self.sign(claim.get("claim_file"), key_id)
                except ValueError as e:
                    claim_errors.append(str(e))
            if not claim.get("sig_key_ids"):
                claim_errors.append("no sig_key_ids in the claim")
            claim.update(signed_claims=signed, errors=claim_errors)
            claims.append(claim)
            errors += [f"{claim.get('manifest_digest', '?')}: {e}" for e in claim_errors]
        if not claims:
            errors.append("no claims in the batch request")
        msg.update(claims=claims, errors=errors,
                   signing_status="failure" if errors else "success")
        return msg

    def stray(self, request: dict) -> dict:
        """A reply that looks right but answers no request of this client."""
        return self.envelope({**request, "request_id": str(uuid.uuid4()), "errors": [],
                              "signing_status": "success",
                              "signed_claim": b64(STRAY_SIGNATURE)})

    def oversized(self, size: int) -> str:
        """A reply body of exactly ``size`` characters (at least the bare structure)."""
        body = self.envelope({"request_id": str(uuid.uuid4()), "errors": [],
                              "signing_status": "success", "signed_claim": ""})
        pad = max(0, size - len(json.dumps(body)))
        body["msg"]["signed_claim"] = "A" * pad
        return json.dumps(body)


class _Later:
    """A timer task's handler."""

    def __init__(self, action):
        self.action = action

    def on_timer_task(self, event):
        self.action()


class SigningServer(MessagingHandler):
    def __init__(self, opts, signing: Signing):
        super().__init__(prefetch=500)
        self.opts, self.signing = opts, signing
        self.pool = ThreadPoolExecutor(opts.workers, thread_name_prefix="sign")
        self.done: deque = deque()  # (reply body, properties) from the workers
        self.injector = EventInjector()
        self.outgoing: deque[Message] = deque()
        self.unsettled: dict = {}  # delivery tag -> message, resent after a reconnect
        self.requests = 0
        self.attached = 0
        self.open_links: set[str] = set()
        self.sender = None
        self.conn = None
        self.connects = 0
        self.failures = 0  # reconnections since the links were last attached

    def on_start(self, event):
        self.container = event.container
        self.container.selectable(self.injector)
        self._connect()

    def _connect(self) -> None:
        url = self.opts.broker[self.connects % len(self.opts.broker)]  # each broker in turn
        self.connects += 1
        domain = client_ssl_domain(self.opts.cert_key, self.opts.ca_cert) \
            if url.startswith("amqps:") else None
        self.conn = self.container.connect(url, ssl_domain=domain, sasl_enabled=False,
                                           reconnect=False)
        self.conn.generation = self.connects  # proton wrappers are not identical objects
        self.container.create_receiver(self.conn, self.opts.listen_to, name="requests")
        self.sender = self.container.create_sender(self.conn, self.opts.reply_to, name="replies")

    # -- links and the ready file -------------------------------------------------------------

    def on_link_opened(self, event):
        link = event.link
        terminus = link.remote_source if link.is_receiver else link.remote_target
        if terminus.address is None:
            return  # a refusal: the broker attaches without a terminus, then detaches
        self.open_links.add(link.name)
        if len(self.open_links) == 2:
            self.attached += 1
            self.failures = 0
            self.flush()  # replies that waited for the links
            write_ready_file(self.opts.ready_file, {
                "pid": os.getpid(), "attached": self.attached,
                "listen_to": self.opts.listen_to, "reply_to": self.opts.reply_to})
            print(f"attached ({self.attached}) to {self.opts.listen_to}", flush=True)

    def on_disconnected(self, event):
        # proton may report a lost connection twice: one reconnection per connection
        if self.conn is None or getattr(event.connection, "generation", None) != self.connects:
            return
        self.conn, self.sender = None, None
        self.open_links.clear()
        lost = list(self.unsettled.values())  # sent but not confirmed: send again
        self.unsettled.clear()
        self.outgoing.extendleft(reversed(lost))
        delay = min(0.1 * 2 ** self.failures, 2.0)
        self.failures += 1
        print(f"disconnected; {len(lost)} replies to resend; reconnecting in {delay:.1f} s",
              flush=True)
        self.container.schedule(delay, _Later(self._connect))

    def on_transport_error(self, event):  # reconnect follows, unless the broker is not trusted
        log_transport_error(event)
        cond = event.transport.condition
        if cond and "certificate verify failed" in (cond.description or ""):
            print(f"TLS refused: {cond.description}; not retrying", file=sys.stderr, flush=True)
            event.connection.close()
            self.injector.close()
            self.pool.shutdown(wait=False, cancel_futures=True)
            os._exit(1)  # proton would reconnect forever otherwise

    def _fatal(self, what, endpoint):
        """The broker refused a link, session or connection: end (exit status 1)."""
        print(f"{what} refused: {condition_text(endpoint) or 'closed'}", file=sys.stderr,
              flush=True)
        (endpoint if what == "connection" else endpoint.connection).close()
        self.injector.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def on_link_error(self, event):
        self._fatal("link", event.link)

    def on_session_error(self, event):
        self._fatal("session", event.session)

    def on_connection_error(self, event):
        self._fatal("connection", event.connection)

    # -- requests -----------------------------------------------------------------------------

    def on_message(self, event):
        self.requests += 1
        if self.opts.drop_every and self.requests % self.opts.drop_every == 0:
            return
        message = event.message
        body = message.body
        if isinstance(body, (bytes, memoryview)):
            body = bytes(body).decode("utf-8", "replace")
        try:
            request = json.loads(body)
        except (TypeError, ValueError):
            request = None
        if not isinstance(request, dict):
            print(f"ignored a request whose body is not a JSON object: {body!r:.200}",
                  file=sys.stderr, flush=True)
            return
        properties = dict(message.properties or {})
        for _ in range(self.opts.stray):
            self.queue(json.dumps(self.signing.stray(request)), properties)
        mtype = properties.get("mtype")
        if self.opts.instant:
            self.answer(json.dumps(self.signing.reply(request, mtype)), request, properties)
        else:
            future = self.pool.submit(self.signing.reply, request, mtype)
            future.add_done_callback(lambda f: self._signed(f, request, properties))

    def _signed(self, future, request, properties):  # in a worker thread
        try:
            body = json.dumps(future.result())
        except Exception as e:  # never leave a request without an answer by accident
            body = json.dumps(self.signing.envelope({
                **request, "errors": [f"signing server error: {e}"],
                "signing_status": "failure"}))
        self.done.append((body, request, properties))
        self.injector.trigger(ApplicationEvent("signed"))

    def on_signed(self, event):
        while self.done:
            self.answer(*self.done.popleft())

    def answer(self, body: str, request: dict, properties: dict) -> None:
        if self.opts.delay:
            self.container.schedule(self.opts.delay,
                                    _Later(lambda: self.reply_now(body, request, properties)))
        else:
            self.reply_now(body, request, properties)

    def reply_now(self, body: str, request: dict, properties: dict) -> None:
        if self.opts.garbage:
            self.queue("this is not JSON {", properties)
            self.queue(json.dumps({"request_id": request.get("request_id"),
                                   "status": "garbage without msg"}), properties)
        if self.opts.oversized:
            self.queue(self.signing.oversized(self.opts.oversized), properties)
        for _ in range(2 if self.opts.duplicate else 1):
            self.queue(body, properties)

    # -- replies ------------------------------------------------------------------------------

    def queue(self, body: str, properties: dict) -> None:
        self.outgoing.append(Message(body=body, properties=properties or None,
                                     address=self.opts.reply_to))
        self.flush()

    def flush(self) -> None:
        sender = self.sender
        while self.outgoing and sender is not None and sender.credit > 0 \
                and "replies" in self.open_links:
            message = self.outgoing.popleft()
            self.unsettled[sender.send(message).tag] = message

    def on_sendable(self, event):
        self.flush()

    def on_settled(self, event):
        if event.link.is_sender:
            self.unsettled.pop(event.delivery.tag, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.signing_server",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", action="append", required=True, metavar="URL")
    parser.add_argument("--listen-to", required=True, metavar="ADDRESS")
    parser.add_argument("--reply-to", required=True, metavar="ADDRESS")
    parser.add_argument("--cert-key", metavar="PEM", help="client key and certificate (amqps)")
    parser.add_argument("--ca-cert", metavar="FILE", help="CA that signed the broker (amqps)")
    parser.add_argument("--gnupg-home", metavar="DIR")
    parser.add_argument("--ready-file", metavar="PATH")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--instant", action="store_true")
    parser.add_argument("--delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--drop-every", type=int, default=0, metavar="N")
    parser.add_argument("--error-for-key", action="append", metavar="KEYID")
    parser.add_argument("--duplicate", action="store_true")
    parser.add_argument("--stray", type=int, default=0, metavar="N")
    parser.add_argument("--garbage", action="store_true")
    parser.add_argument("--oversized", type=int, default=0, metavar="BYTES")
    parser.add_argument("--wrong-key", metavar="FPR")
    parser.add_argument("--wrong-claim", choices=WRONG_CLAIMS)
    parser.add_argument("--wrong-format", choices=sorted(WRONG_FORMATS))
    parser.add_argument("--garbage-signature", action="store_true")
    parser.add_argument("--replies-from", metavar="DIR",
                        help="reply to a container request with DIR/<digest hex>, when there")
    parser.add_argument("--fault-key", metavar="KEYID")
    opts = parser.parse_args(argv)
    if not opts.instant and not opts.gnupg_home:
        parser.error("--gnupg-home is needed unless --instant")
    if opts.instant and opts.wrong_format:
        parser.error("--wrong-format needs gpg: not with --instant")
    running = Running()
    exit_on_sigterm(running.end)
    keyring = None if opts.instant else Keyring(opts.gnupg_home)
    Container(SigningServer(opts, Signing(opts, keyring, running))).run()
    return 1  # it only ends when the broker refused it


def start_signing_server(brokers, listen_to: str, reply_to: str, *, log=None,
                         timeout: float = 30, **switches):
    """Start ``python -m testbed.signing_server`` and wait until its links are attached:
    (Popen, ready dict). ``switches`` are the other options by their Python names, e.g.
    ``gnupg_home=..., instant=True, drop_every=3, error_for_key=[...]``. Stop it with
    ``reference.stop(proc)``."""
    brokers = [brokers] if isinstance(brokers, str) else list(brokers)
    args = cli_args(broker=brokers, listen_to=listen_to, reply_to=reply_to, **switches)
    return launch("testbed.signing_server", args, timeout=timeout, log=log)


if __name__ == "__main__":
    sys.exit(main())
