"""pubtools-sign 1.0.6 itself, the anchor for comparisons and benchmarks, in a venv of its own,
and this project's drop-in commands of the same names (``bin/``).

``ensure_pubtools_sign()`` creates the venv once (pip from the package index: the first run needs
it, later runs use the cache in ``<repo>/.cache/``). ``run_pubtools(command, *args)`` runs any of
its commands (``pubtools-sign-msg-container-sign``, ``-msg-clear-sign``, ``-msg-blob-sign``,
``-cosign-container-sign``), ``run_dropin(command, *args)`` this project's command of that name,
and ``run_tool(tool, command, *args)`` either one by name (``PUBTOOLS`` or ``DROPIN``), so a test
can run the same command line through both. ``run_pubtools_msg_container_sign`` is the older
shortcut for container signing. The JSON result is on stdout, logs on stderr.

``write_conf`` writes pubtools-sign's ``conf.yaml`` for a broker on loopback (this project reads
it unchanged), addressed as Red Hat's bus is (``SEND_TO``, ``LISTEN_TO``; a signing server
reads ``SERVER_QUEUE`` and replies to ``REPLY_TOPIC``). ``recording_bus`` starts the reference
broker recording every message it receives, with a reference signing server on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

VERSION = "1.0.6"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".cache" / f"pubtools-sign-{VERSION}"
# Everything pinned (as resolved on 2026-11-22), so every machine measures the same thing; proton
# is the project's own (requirements.txt), so comparisons measure the code, not the library.
REQUIREMENTS = (
    f"pubtools-sign=={VERSION}", "python-qpid-proton==0.40.0",
    "ansible-core==2.19.14", "certifi==2026.10.18", "cffi==2.1.1", "charset-normalizer==3.5.2",
    "click==8.5.1", "cryptography==50.0.2", "googleapis-common-protos==1.76.0",
    "grpcio==1.85.1", "idna==3.20", "Jinja2==3.1.6", "MarkupSafe==3.0.4", "marshmallow==4.4.0",
    "monotonic==1.6", "opentelemetry-api==1.45.2", "opentelemetry-exporter-http-transport==0.66b2",
    "opentelemetry-exporter-otlp==1.45.2", "opentelemetry-exporter-otlp-common==0.66b2",
    "opentelemetry-exporter-otlp-proto-common==1.45.2",
    "opentelemetry-exporter-otlp-proto-grpc==1.45.2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2", "opentelemetry-proto==1.45.2",
    "opentelemetry-sdk==1.45.2", "opentelemetry-semantic-conventions==0.66b2", "packaging==26.3",
    "piny==1.1.0", "pluggy==1.7.0", "protobuf==7.36.2", "pubtools==1.4.5", "pycparser==3.12",
    "pyOpenSSL==26.4.0", "PyYAML==6.0.3", "requests==2.34.2", "resolvelib==1.2.1",
    "typing_extensions==4.16.0", "urllib3==2.8.0",
)
MSG_CONTAINER_SIGN = "pubtools-sign-msg-container-sign"
MSG_CLEAR_SIGN = "pubtools-sign-msg-clear-sign"
MSG_BLOB_SIGN = "pubtools-sign-msg-blob-sign"
COSIGN_CONTAINER_SIGN = "pubtools-sign-cosign-container-sign"
COMMANDS = (MSG_CONTAINER_SIGN, MSG_CLEAR_SIGN, MSG_BLOB_SIGN, COSIGN_CONTAINER_SIGN)
PUBTOOLS, DROPIN = "pubtools-sign", "drop-in"  # the two tools run_tool knows
# this project's commands: the console scripts of the venv running the tests (make venv)
DROPIN_BIN = Path(sys.executable).parent
_INSTALLED = VENV / ".installed"  # written last (the venv is complete), holds REQUIREMENTS


def ensure_pubtools_sign(timeout: float = 900) -> Path:
    """The bin folder of a venv holding pubtools-sign (its proton built with SSL), made once
    (again when REQUIREMENTS change)."""
    if _installed():
        return VENV / "bin"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / f"pubtools-sign-{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing it right now
        if not _installed():
            _install(timeout)
    return VENV / "bin"


def _installed() -> bool:
    try:
        return _INSTALLED.read_text() == "\n".join(REQUIREMENTS) + "\n"
    except OSError:
        return False


def _install(timeout: float) -> None:
    shutil.rmtree(VENV, ignore_errors=True)  # a half-made venv from an interrupted run
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", *REQUIREMENTS],
        # Without a working `pkg-config openssl` proton builds silently without SSL.
        [str(VENV / "bin" / "python"), "-c",
         "import proton, sys; sys.exit(0 if proton.SSL.present() else "
         "'python-qpid-proton was built without SSL: install libssl-dev and pkg-config')"],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            raise RuntimeError(f"installing pubtools-sign {VERSION}: {' '.join(cmd[:4])} failed "
                               f"({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    _INSTALLED.write_text("\n".join(REQUIREMENTS) + "\n")


def _run(argv: Sequence[str], env: dict | None, timeout: float,
         cwd: str | os.PathLike | None) -> subprocess.CompletedProcess:
    """As a Tekton step runs it: without the GitHub runner's variables (the tests may run in a
    GitHub job, and ours reads INPUT_* and GITHUB_* as the action does), plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    return subprocess.run([str(a) for a in argv], env={**base, **(env or {})}, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def run_pubtools(command: str, *args: str | os.PathLike, env: dict | None = None,
                 timeout: float = 600,
                 cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run pubtools-sign's ``command`` (one of ``COMMANDS``) with ``args``, as its users do."""
    if command not in COMMANDS:
        raise ValueError(f"pubtools-sign {VERSION} has no command {command!r}")
    return _run([ensure_pubtools_sign() / command, *args], env, timeout, cwd)


def run_dropin(command: str, *args: str | os.PathLike, env: dict | None = None,
               timeout: float = 600,
               cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run this project's drop-in for pubtools-sign's ``command``: the console script of the venv
    running the tests (``.venv/bin/COMMAND args``)."""
    if command not in COMMANDS:
        raise ValueError(f"pubtools-sign {VERSION} has no command {command!r}")
    return _run([DROPIN_BIN / command, *args], env, timeout, cwd)


def run_tool(tool: str, command: str, *args: str | os.PathLike,
             **kwargs) -> subprocess.CompletedProcess:
    """``command`` run by ``tool``: ``PUBTOOLS`` (pubtools-sign itself) or ``DROPIN`` (ours)."""
    runners = {PUBTOOLS: run_pubtools, DROPIN: run_dropin}
    return runners[tool](command, *args, **kwargs)


def stdout_json(run: subprocess.CompletedProcess) -> dict:
    """The JSON result a command printed; an AssertionError showing its output if it is not."""
    try:
        return json.loads(run.stdout)
    except ValueError:
        raise AssertionError(f"{' '.join(map(str, run.args[:2]))}: exit {run.returncode}, stdout "
                             f"is not JSON: {run.stdout[-500:]!r}\n{run.stderr[-2000:]}") from None


def run_pubtools_msg_container_sign(config_file: str | os.PathLike, references: Sequence[str],
                                    digests: Sequence[str], signing_keys: Sequence[str],
                                    task_id: str, env: dict | None = None,
                                    timeout: float = 600,
                                    extra_args: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run ``pubtools-sign-msg-container-sign`` (references and digests paired by position);
    its stdout is the JSON result (``--raw`` would print only the signatures instead)."""
    args = ["--config-file", str(config_file), "--task-id", task_id]
    for ref in references:
        args += ["--reference", ref]
    for digest in digests:
        args += ["--digest", digest]
    for key in signing_keys:
        args += ["--signing-key", key]
    return run_pubtools(MSG_CONTAINER_SIGN, *args, *extra_args, env=env, timeout=timeout)


# -- a bus like Red Hat's, on loopback ------------------------------------------------------------

SEND_TO = "topic://VirtualTopic.eng.robosignatory.container.sign"
SERVER_QUEUE = "queue://Consumer.robosig.VirtualTopic.eng.robosignatory.container.sign"
REPLY_TOPIC = "topic://VirtualTopic.eng.pub.sign"
LISTEN_TO = "queue://Consumer.{creator}.{task_id}.VirtualTopic.eng.pub.sign"


def write_conf(path: Path, url: str, tls, section: str = "msg_signer", **overrides) -> Path:
    """pubtools-sign's conf.yaml (JSON is YAML) for the broker at ``url`` (plain amqp on
    loopback); ``tls`` (tests/infra/tls.py) gives the client certificate, whose CN is the
    requester. ``overrides`` replace or add keys (``timeout=5``, ``chunk_size=2``)."""
    body = {"messaging_brokers": [url], "messaging_cert_key": str(tls.client_pem),
            "messaging_ca_cert": str(tls.ca_cert), "topic_send_to": SEND_TO,
            "topic_listen_to": LISTEN_TO, "environment": "prod", "service": "pubtools-sign",
            "timeout": 20, "retries": 3, "send_retries": 2, "message_id_key": "request_id",
            "log_level": "info",  # pubtools-sign 1.0.6 fails without it (KeyError)
            "task_id_attribute": "pub_task_id", **overrides}
    path.write_text(json.dumps({section: body}))
    return path


@dataclass
class RecordingBus:
    """A reference broker that records every message it receives (one JSON line each, see
    testbed.broker.record_line), and the signing server on it."""
    url: str
    record: Path

    def messages(self) -> list[dict]:
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def requests(self, task_id: str) -> list[dict]:
        """The signing requests of one client run (its task id is in their properties), in the
        order the broker received them."""
        return [m for m in self.messages()
                if m["address"] == SEND_TO and task_id in json.dumps(m["properties"])]

    def replies(self) -> list[dict]:
        """The ``msg`` of each reply the signing server sent (any client's)."""
        return [json.loads(m["body"])["msg"] for m in self.messages()
                if m["address"] == REPLY_TOPIC]


@contextlib.contextmanager
def recording_bus(folder: Path, **server_switches) -> Iterator[RecordingBus]:
    """Start ``testbed.broker --record`` and ``testbed.signing_server`` on it (reading
    ``SERVER_QUEUE``, replying to ``REPLY_TOPIC``) with ``server_switches`` by their Python names
    (``instant=True``, ``gnupg_home=...``, ``error_for_key=[...]``, ``drop_every=2``); stop both
    at the end."""
    from testbed import launch, stop  # proton is imported only when a test needs a broker
    from testbed.signing_server import start_signing_server

    record = folder / "wire.jsonl"
    broker, info = launch("testbed.broker", ["--listen", "127.0.0.1:0", "--record", record])
    try:
        url = f"amqp://127.0.0.1:{info['port']}"
        server, _ = start_signing_server(url, SERVER_QUEUE, REPLY_TOPIC, **server_switches)
        try:
            yield RecordingBus(url, record)
        finally:
            stop(server)
    finally:
        stop(broker)
