"""Running gpg: batch mode, never a prompt, the passphrase on a pipe and never on argv, a
private environment.

``gpg_sign`` is the whole signing act (the gpg signer and the reference signing server use it).
Signatures are verified in-process, not with gpg (lookaside.signature_problem, through Sequoia).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

from ..tools import Running, child_env, run_tool

GPG_TIMEOUT = 120  # seconds for one gpg call; a hung agent must not hang the run
# gpg (and the gpg-agent it starts, which inherits gpg's environment) needs no more than
# signers.tools.BASE_ENV and where its home is; never COSIGN_PASSWORD, INPUT_*, tokens.
GPG_ENV = ("GNUPGHOME",)

class GpgError(Exception):
    pass


def gpg_env(environ: Mapping[str, str] | None, gnupg_home: str | None) -> dict[str, str]:
    """The environment gpg gets: signers.tools.BASE_ENV, GNUPGHOME (``gnupg_home`` when given)."""
    return child_env(os.environ if environ is None else environ, keep=GPG_ENV,
                     extra={"GNUPGHOME": gnupg_home} if gnupg_home else None)


def _run_gpg(args: list[str], *, gnupg_home: str | None, data: bytes = b"",
             passphrase: str | None = None, running: Running | None = None,
             environ: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """gpg in batch mode, finished (whatever its exit code); GpgError if it timed out."""
    cmd = ["gpg", "--batch", "--no-tty", "--quiet", "--pinentry-mode", "loopback"]
    if gnupg_home:
        cmd += ["--homedir", gnupg_home]
    pass_fds: tuple[int, ...] = ()
    read_fd = None
    if passphrase is not None:
        read_fd, write_fd = os.pipe()
        os.write(write_fd, passphrase.encode("utf-8") + b"\n")  # far below a pipe's buffer
        os.close(write_fd)
        cmd += ["--passphrase-fd", str(read_fd)]
        pass_fds = (read_fd,)
    try:
        proc, timed_out = run_tool(cmd + args, input=data, timeout=GPG_TIMEOUT,
                                   env=gpg_env(environ, gnupg_home), pass_fds=pass_fds,
                                   running=running)
    finally:
        if read_fd is not None:
            os.close(read_fd)
    if timed_out:
        raise GpgError(f"gpg did not finish within {GPG_TIMEOUT} s")
    return proc


def _gpg(args: list[str], *, gnupg_home: str | None, data: bytes = b"",
         passphrase: str | None = None, running: Running | None = None,
         environ: Mapping[str, str] | None = None) -> bytes:
    """Run gpg in batch mode: its stdout, or GpgError with its last lines. ``running`` (if
    given) holds the process while it runs, so that an interrupted run can end it; ``environ``
    (default: this process's) is filtered by gpg_env."""
    proc = _run_gpg(args, gnupg_home=gnupg_home, data=data, passphrase=passphrase,
                    running=running, environ=environ)
    if proc.returncode != 0:
        raise GpgError(_last_lines(proc.stderr) or f"gpg exited with {proc.returncode}")
    return proc.stdout


def _last_lines(stderr: bytes, n: int = 3) -> str:
    lines = [ln for ln in stderr.decode("utf-8", "replace").splitlines()
             if ln.strip() and not ln.startswith("[GNUPG:] ")]
    return "; ".join(lines[-n:])


GPG_MODES = {"sign": "--sign", "clearsign": "--clearsign", "detach": "--detach-sign"}


def gpg_sign(data: bytes, key: str, *, gnupg_home: str | None = None,
             passphrase: str | None = None, running: Running | None = None,
             mode: str = "sign", environ: Mapping[str, str] | None = None) -> bytes:
    """A signature over ``data`` made with ``key``: by ``mode``, a binary OpenPGP signed message
    wrapping it (``sign``, ``gpg --sign``), the ASCII-armored clear-signed text (``clearsign``,
    ``gpg --clearsign``) or a detached binary signature (``detach``, ``gpg --detach-sign``).
    gpg's environment is gpg_env(``environ``)."""
    signature = _gpg(["--local-user", key, GPG_MODES[mode]], gnupg_home=gnupg_home, data=data,
                     passphrase=passphrase, running=running, environ=environ)
    if not signature:
        raise GpgError("gpg produced no signature")
    return signature
