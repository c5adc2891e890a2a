"""A private RabbitMQ 3.10 node with the AMQP 1.0 plugin, on loopback only, without systemd.

Each ``RabbitNode`` has its own node name, data, logs, Erlang cookie and epmd, and listens on free
ports: plain AMQP (``amqp_url``) and TLS (``amqps_url``; the broker requires a client certificate
signed by ``tls.ca_cert``). Its address forms are RabbitMQ's, not ActiveMQ's: ``/queue/NAME``
(kept until consumed) and ``/topic/ROUTING.KEY`` (only receivers attached at that moment get a
copy); ``topic://``, ``queue://`` and sender links without a target are refused, by ending the
whole session with ``amqp:invalid-field``.

A proton client needs no SASL (``sasl_enabled=False``: the plugin uses its default user, guest).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from proton.utils import BlockingConnection

from conftest import free_port, wait_until
from infra.tls import Tls
from signers.msg import client_ssl_domain as signer_ssl_domain

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
STARTUP_TIMEOUT = 60.0
_names = itertools.count(1)


def client_ssl_domain(ca_cert, cert=None, key=None):
    """The signer's TLS settings, verifying the broker exactly when a CA is given."""
    return signer_ssl_domain(cert, key, ca_cert, verify=bool(ca_cert))


class RabbitNode:
    """``start()``, ``stop()``, ``restart()`` (same ports, data and name), ``kill()`` (crash)."""

    def __init__(self, workdir: str | os.PathLike, tls: Tls,
                 startup_timeout: float = STARTUP_TIMEOUT):
        self.workdir = Path(workdir)
        self.tls = tls
        self.startup_timeout = startup_timeout
        self.node_name = f"csa-{os.getpid()}-{next(_names)}@localhost"
        ports: set[int] = set()
        while len(ports) < 4:
            ports.add(free_port())
        self.amqp_port, self.amqps_port, self.dist_port, self.epmd_port = ports
        self.log_file = self.workdir / "log" / f"{self.node_name}.log"
        self.console_file = self.workdir / "console.log"
        self._proc: subprocess.Popen | None = None
        self._epmd: subprocess.Popen | None = None
        atexit.register(self.stop)

    @property
    def amqp_url(self) -> str:
        return f"amqp://127.0.0.1:{self.amqp_port}"

    @property
    def amqps_url(self) -> str:
        return f"amqps://localhost:{self.amqps_port}"  # the server certificate's host name

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> float:
        """Start the node and wait until it accepts AMQP 1.0; return the seconds it took."""
        if self.running:
            return 0.0
        began = time.monotonic()
        self._write_files()
        env = self._env()
        self._start_epmd(env)
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.console_file, "ab") as console:
            self._proc = subprocess.Popen([RABBITMQ_SERVER], cwd=self.workdir, env=env,
                                          stdin=subprocess.DEVNULL, stdout=console,
                                          stderr=subprocess.STDOUT, start_new_session=True)

        def ready() -> bool:
            return (_contains(self.log_file, log_offset, b"Server startup complete")
                    and _amqp_opens(self.amqp_url))

        try:
            wait_until(ready, self.startup_timeout, f"RabbitMQ node {self.node_name}", self._proc)
        except (RuntimeError, TimeoutError) as e:
            self.stop()
            raise RuntimeError(f"{e}\n--- {self.console_file}:\n{_tail(self.console_file)}"
                               f"\n--- {self.log_file}:\n{_tail(self.log_file)}") from None
        return time.monotonic() - began

    def stop(self, timeout: float = 30) -> None:
        """Stop the node (SIGTERM: a clean shutdown) and its epmd."""
        self._stop_node(signal.SIGTERM, timeout)
        if self._epmd is not None:
            self._epmd.kill()  # it keeps nothing worth a clean shutdown
            self._epmd.wait()
            self._epmd = None

    def restart(self) -> float:
        """Stop and start again with the same ports, data and node name; return the seconds the
        start took. Clients reconnect to the same URLs."""
        self._stop_node(signal.SIGTERM, 30)
        return self.start()

    def kill(self) -> None:
        """Crash the node: SIGKILL, no shutdown. ``start()`` brings it back with its data."""
        self._stop_node(signal.SIGKILL, 10)

    def rss_bytes(self) -> int:
        """Resident memory of the node's processes (shell, Erlang VM and helpers) and its epmd."""
        pids = _descendants(self._proc.pid) if self.running else []
        if self._epmd is not None and self._epmd.poll() is None:
            pids.append(self._epmd.pid)
        total = 0
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += sum(int(line.split()[1]) * 1024 for line in status.splitlines()
                         if line.startswith("VmRSS:"))
        return total

    def __enter__(self) -> RabbitNode:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------

    def _write_files(self) -> None:
        for sub in ("home", "mnesia", "log"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        (self.workdir / "enabled_plugins").write_text("[rabbitmq_amqp1_0].\n")
        (self.workdir / "rabbitmq-env.conf").write_text("")  # instead of /etc/rabbitmq's
        tls = self.tls
        (self.workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"listeners.ssl.default = 127.0.0.1:{self.amqps_port}\n"
            f"ssl_options.cacertfile = {tls.ca_cert}\n"
            f"ssl_options.certfile = {tls.server_cert}\n"
            f"ssl_options.keyfile = {tls.server_key}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n"
            "distribution.listener.interface = 127.0.0.1\n"
            "log.file.level = info\n")

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RABBITMQ_", "ERL_")) and k != "NOTIFY_SOCKET"}
        w = self.workdir
        env.update(
            HOME=str(w / "home"),  # .erlang.cookie
            RABBITMQ_NODENAME=self.node_name,
            RABBITMQ_MNESIA_BASE=str(w / "mnesia"),
            RABBITMQ_LOG_BASE=str(w / "log"),
            RABBITMQ_CONFIG_FILE=str(w / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(w / "advanced.config"),  # absent on purpose
            RABBITMQ_CONF_ENV_FILE=str(w / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(w / "enabled_plugins"),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        return env

    def _start_epmd(self, env: dict) -> None:
        """Our own epmd, as our child: otherwise Erlang starts one as a daemon that outlives us."""
        if self._epmd is not None and self._epmd.poll() is None:
            return
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        self._epmd = subprocess.Popen([epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                                      env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        wait_until(lambda: _listens(self.epmd_port), 10, "epmd", self._epmd)

    def _stop_node(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            # erl_child_setup and inet_gethost run in sessions of their own: end them too.
            family = _descendants(proc.pid)
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_all(family, signal.SIGKILL)
                proc.wait(10)
            try:
                wait_until(lambda: not any(_alive(p) for p in family), timeout,
                           "RabbitMQ's helper processes to end")
            except TimeoutError:
                _signal_all(family, signal.SIGKILL)
        proc.wait()


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaps counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _amqp_opens(url: str) -> bool:
    try:
        BlockingConnection(url, timeout=5, sasl_enabled=False).close()
        return True
    except Exception:  # refused, reset, timed out: not ready yet
        return False


def _contains(path: Path, offset: int, needle: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return needle in f.read()
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"
