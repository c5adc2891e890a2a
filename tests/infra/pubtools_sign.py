"""pubtools-sign 1.0.6 itself, the anchor for comparisons and benchmarks, in a venv of its own.

``ensure_pubtools_sign()`` creates the venv once (pip from the package index: the first run needs
it, later runs use the cache in ``<repo>/.cache/``); ``run_pubtools_msg_container_sign`` runs its
``pubtools-sign-msg-container-sign`` command, which prints the JSON result on stdout.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

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


def run_pubtools_msg_container_sign(config_file: str | os.PathLike, references: Sequence[str],
                                    digests: Sequence[str], signing_keys: Sequence[str],
                                    task_id: str, env: dict | None = None,
                                    timeout: float = 600,
                                    extra_args: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run ``pubtools-sign-msg-container-sign`` (references and digests paired by position);
    its stdout is the JSON result (``--raw`` would print only the signatures instead)."""
    args = [str(ensure_pubtools_sign() / MSG_CONTAINER_SIGN), "--config-file", str(config_file),
            "--task-id", task_id]
    for ref in references:
        args += ["--reference", ref]
    for digest in digests:
        args += ["--digest", digest]
    for key in signing_keys:
        args += ["--signing-key", key]
    return subprocess.run([*args, *extra_args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
