"""The test bed: the other side of every network conversation the signers have, on loopback.

- for the messaging signer: an AMQP 1.0 broker with ActiveMQ's addressing (``testbed.broker``)
  and a signing server speaking pubtools-sign's wire format (``testbed.signing_server``);
- for sigstore: an OIDC issuer with GitHub's token endpoint, a Fulcio CA and a Rekor log
  (``testbed.sigstore``) that real cosign and skopeo accept with its trust roots.

They run as subprocesses (``python -m testbed.X``); this module holds what the AMQP ones share:
starting one and waiting for its ready file, stopping it, TLS client settings, and ``exchange``,
a small proton client that sends and receives in one go. Not part of the installed package.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from proton import Message, SSLDomain
from proton.handlers import MessagingHandler
from proton.reactor import Container

ROOT = Path(__file__).resolve().parent.parent


# -- the programs' side ---------------------------------------------------------------------

def write_ready_file(path: str | None, info: dict) -> None:
    """Write ``info`` as JSON, atomically: a reader never sees half a file."""
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def exit_on_sigterm(*before: Callable[[], None]) -> None:
    """End the process at once on SIGTERM or SIGINT, after ``before`` (flushing files).
    Stopping a proton Container from a signal handler takes seconds; exiting is instant."""

    def handler(signum, frame):
        for f in before:
            try:
                f()
            except Exception:  # exiting anyway
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def client_ssl_domain(cert_key: str | None = None, ca_cert: str | None = None) -> SSLDomain:
    """The signer's TLS settings (one PEM with key and certificate); the broker is verified
    exactly when a CA is given."""
    from signers.msg import client_ssl_domain as signer_ssl_domain

    return signer_ssl_domain(cert_key, None, ca_cert, verify=bool(ca_cert))


def condition_text(endpoint) -> str | None:
    """The error condition on a proton endpoint or transport as "name: description", if any."""
    cond = getattr(endpoint, "remote_condition", None) or getattr(endpoint, "condition", None)
    return f"{cond.name}: {cond.description}" if cond else None


def log_transport_error(event) -> None:
    """For a program's on_transport_error: a client refused or gone is worth a line, no more."""
    print(f"transport: {condition_text(event.transport) or 'error'}", file=sys.stderr, flush=True)


# -- the caller's side ----------------------------------------------------------------------

def cli_args(**options) -> list[str]:
    """Command-line options from keyword arguments: ``drop_every=3`` -> ``--drop-every 3``,
    ``True`` -> a bare switch, a list -> the option repeated, None or False -> left out."""
    args: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


def launch(module: str, args: Sequence[str], *, timeout: float = 30,
           log: str | os.PathLike | None = None) -> tuple[subprocess.Popen, dict]:
    """Run ``python -m module args --ready-file F`` (from the project root) and wait until it
    writes F; return the process and the ready file's content, plus its path as "ready_file".
    Raises RuntimeError (with the end of its log) if it exits or is not ready in time; it is
    then stopped."""
    if log:
        log_path = str(log)
        ready = f"{log_path}.ready.json"
        if os.path.exists(ready):
            os.remove(ready)  # a previous run's
    else:
        folder = tempfile.mkdtemp(prefix="ref-")
        log_path, ready = os.path.join(folder, "log.txt"), os.path.join(folder, "ready.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", module, *map(str, args),
                                 "--ready-file", ready], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while not os.path.exists(ready):
        exited = proc.poll() is not None
        if exited or time.monotonic() > deadline:
            why = f"exited with {proc.returncode}" if exited else f"not ready after {timeout} s"
            stop(proc)
            tail = Path(log_path).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{module} {why}; its log ends:\n{tail}")
        time.sleep(0.02)  # polling the ready file, bounded by the deadline
    with open(ready, encoding="utf-8") as f:
        return proc, {**json.load(f), "ready_file": ready}


def stop(proc: subprocess.Popen, timeout: float = 10) -> int:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Received:
    address: str  # the source address of the receiver that got it
    receiver: int  # that receiver's position in ``receive_from``
    message: Message
    at: float  # time.monotonic()


@dataclass
class Exchange:
    received: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent_at: float | None = None  # time.monotonic() of the first send
    accepted: int = 0
    rejected: int = 0
    timed_out: bool = False

    def bodies(self, receiver: int | None = None) -> list:
        """The bodies received (by the receiver at that position in ``receive_from``)."""
        return [r.message.body for r in self.received if receiver in (None, r.receiver)]


class _Exchanger(MessagingHandler):
    TICK = 0.05

    def __init__(self, url, send, send_to, receive_from, done, timeout, ssl_domain, sasl,
                 credit, settle):
        super().__init__(prefetch=credit, auto_accept=settle)
        self.url, self.send, self.send_to = url, list(send), send_to
        self.receive_from, self.done = list(receive_from), done
        self.ssl_domain, self.sasl = ssl_domain, sasl
        self.result = Exchange()
        self.deadline = time.monotonic() + timeout
        self.attached = 0
        self.sender = None
        self.next = 0
        self.settled = 0
        self.closing_since: float | None = None
        self.gone = False

    def on_start(self, event):
        kwargs = {"sasl_enabled": bool(self.sasl), "reconnect": False}
        if self.sasl:
            kwargs["allowed_mechs"] = self.sasl
        self.conn = event.container.connect(self.url, ssl_domain=self.ssl_domain, **kwargs)
        for i, address in enumerate(self.receive_from):
            event.container.create_receiver(self.conn, address, name=f"receiver-{i}")
        if not self.receive_from:
            self._open_sender(event.container)
            self._check()
        event.container.schedule(self.TICK, self)

    def _open_sender(self, container):
        if self.send and self.sender is None:
            self.sender = container.create_sender(self.conn, self.send_to)

    def on_link_opened(self, event):
        if event.link.is_receiver:
            self.attached += 1
            if self.attached == len(self.receive_from):  # every receiver in place: now send
                self._open_sender(event.container)
                self._check()

    def on_sendable(self, event):
        sender = event.sender
        while self.next < len(self.send) and sender.credit > 0:
            if self.result.sent_at is None:
                self.result.sent_at = time.monotonic()
            sender.send(self.send[self.next])
            self.next += 1

    def on_accepted(self, event):
        self.result.accepted += 1

    def on_rejected(self, event):
        self.result.rejected += 1

    def on_settled(self, event):
        if event.link.is_sender:
            self.settled += 1
        self._check()

    def on_message(self, event):
        link = event.link
        self.result.received.append(Received(link.source.address, int(link.name.split("-")[1]),
                                             event.message, time.monotonic()))
        self._check()

    def _check(self):
        if self.closing_since is None and self.settled >= len(self.send) and \
                self.done(self.result.received):
            self._close()

    def _close(self):
        self.closing_since = time.monotonic()
        self.conn.close()

    def on_timer_task(self, event):
        now = time.monotonic()
        if self.closing_since is not None:
            if now - self.closing_since > 2:  # the peer never answered the close
                event.container.stop()
                return
        elif now > self.deadline:
            self.result.timed_out = True
            self._close()
        if not self.gone:
            event.container.schedule(self.TICK, self)

    def on_transport_closed(self, event):
        # Everything is written (accepts included) once the transport is closed: end now
        # rather than at the next tick.
        self.gone = True
        event.container.stop()

    def _error(self, what, endpoint):
        why = condition_text(endpoint)
        self.result.errors.append(f"{what}: {why}" if why else what)
        if self.closing_since is None:
            self._close()

    def on_transport_error(self, event):
        self._error("transport", event.transport)

    def on_connection_error(self, event):
        self._error("connection", event.connection)

    def on_session_error(self, event):
        self._error("session", event.session)

    def on_link_error(self, event):
        self._error("link", event.link)

    def on_disconnected(self, event):
        if self.closing_since is None:
            self._error("disconnected", event.transport)


def exchange(url: str, *, send: Iterable[Message] = (), send_to: str | None = None,
             receive_from: Iterable[str] = (), expect: int = 0,
             until: Callable[[list[Received]], bool] | None = None, timeout: float = 15,
             ssl_domain: SSLDomain | None = None, sasl: str | None = None,
             credit: int = 1000, settle: bool = True) -> Exchange:
    """Connect to ``url`` (no reconnect), attach a receiver on each ``receive_from`` address,
    and once they are all attached send ``send`` on one sender link whose target is ``send_to``
    (None: an anonymous relay link, each message routed by its own address, as pubtools-sign
    does). Ends when every sent message is settled and ``until(received)`` holds (default: at
    least ``expect`` messages received), on a connection error, or after ``timeout`` seconds
    (``timed_out`` is then set). SASL is off unless ``sasl`` names mechanisms. With
    ``settle=False`` nothing received is accepted: a broker should deliver it again."""
    done = until or (lambda received: len(received) >= expect)
    handler = _Exchanger(url, send, send_to, receive_from, done, timeout, ssl_domain, sasl,
                         credit, settle)
    Container(handler).run()
    return handler.result


def example_manifests(refs, folder: Path) -> dict[str, tuple[Path, str]]:
    """A small OCI manifest per reference (distinct, as a registry would serve it), written into
    ``folder``: ``{ref: (manifest file, its digest)}``, for skopeo standalone-verify checks in the
    demo and the image check."""
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    manifests = {}
    for ref in refs:
        body = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": "sha256:"
                                     + hashlib.sha256(ref.encode()).hexdigest(),
                                      "size": len(ref)},
                           "layers": []}).encode()
        path = folder / (ref.replace("/", "_").replace(":", "_") + ".json")
        path.write_bytes(body)
        manifests[ref] = (path, "sha256:" + hashlib.sha256(body).hexdigest())
    return manifests
