"""A real docker-registry on loopback (plain HTTP): for the tests, the benchmarks and the image
check. ``log`` is its log config (default: warnings only); its output goes to
``root/registry.log``."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        if predicate():
            return
        time.sleep(0.05)  # polling a readiness condition, bounded by the deadline
    raise TimeoutError(f"{what}: not ready after {timeout} s")


def start_registry(root: Path, log: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``docker-registry serve`` storing under ``root``; wait until it answers /v2/.
    Returns (process, "127.0.0.1:PORT"); stop it with stop_registry."""
    root.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{free_port()}"
    (root / "config.yml").write_text(json.dumps({  # JSON is YAML
        "version": 0.1, "log": log or {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")},
                    "delete": {"enabled": True}},
        "http": {"addr": host}}))
    with open(root / "registry.log", "ab") as out:
        proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")],
                                stdout=out, stderr=subprocess.STDOUT)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://{host}/v2/", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_until(ready, 30, "docker-registry", proc)
    except BaseException:
        stop_registry(proc)
        raise
    return proc, host


def stop_registry(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
