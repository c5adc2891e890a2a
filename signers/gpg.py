"""Local GnuPG signer: atomic container signatures made with a key on this machine.

``gpg_sign`` is the whole signing act (batch mode, never a prompt, the passphrase on a pipe and
never on argv); the reference signing server reuses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Sequence

from signaction import CREATOR
from signaction.claim import atomic_claim
from signaction.errors import InputError
from signaction.plan import Plan, WorkItem

from . import Outcome, Report, Running, Signer, run_tool

GPG_TIMEOUT = 120  # seconds for one gpg call; a hung agent must not hang the run


class GpgError(Exception):
    pass


def _gpg(args: list[str], *, gnupg_home: str | None, data: bytes = b"",
         passphrase: str | None = None, running: Running | None = None) -> bytes:
    """Run gpg in batch mode; ``running`` (if given) holds the process while it runs, so that an
    interrupted run can end it."""
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
                                   pass_fds=pass_fds, running=running)
    finally:
        if read_fd is not None:
            os.close(read_fd)
    if timed_out:
        raise GpgError(f"gpg did not finish within {GPG_TIMEOUT} s")
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise GpgError("; ".join(lines[-3:]) or f"gpg exited with {proc.returncode}")
    return proc.stdout


GPG_MODES = {"sign": "--sign", "clearsign": "--clearsign", "detach": "--detach-sign"}


def gpg_sign(data: bytes, key: str, *, gnupg_home: str | None = None,
             passphrase: str | None = None, running: Running | None = None,
             mode: str = "sign") -> bytes:
    """A signature over ``data`` made with ``key``: by ``mode``, a binary OpenPGP signed message
    wrapping it (``sign``, ``gpg --sign``), the ASCII-armored clear-signed text (``clearsign``,
    ``gpg --clearsign``) or a detached binary signature (``detach``, ``gpg --detach-sign``)."""
    signature = _gpg(["--local-user", key, GPG_MODES[mode]], gnupg_home=gnupg_home, data=data,
                     passphrase=passphrase, running=running)
    if not signature:
        raise GpgError("gpg produced no signature")
    return signature


class GpgSigner(Signer):
    name = "gpg"
    section = "gpg_signer"

    def __init__(self, config, environ: Mapping[str, str], inputs=None):
        super().__init__(config, environ, inputs)
        home = self.config.get("gnupg_home") or environ.get("GNUPGHOME")
        self.gnupg_home = os.path.expanduser(home) if home else None
        self.key_files = [os.path.expanduser(f) for f in self.config.get("key_files") or []]
        if self.key_files and self.config.get("gnupg_home"):
            raise InputError("config: gpg_signer: give key_files or gnupg_home, not both")
        self.passphrase = self.read_secret_file("passphrase_file")
        self.workers = min(8, (os.cpu_count() or 1) * 2)

    def secrets(self) -> list[str]:
        return [self.passphrase] if self.passphrase else []

    def preflight(self, plan: Plan) -> None:
        if shutil.which("gpg") is None:
            raise InputError("gpg signer: the gpg program is not on PATH (install gnupg)")
        if self.key_files:
            self.gnupg_home = self._private_home()
        if self.gnupg_home and not os.path.isdir(self.gnupg_home):
            raise InputError(f"config: gpg_signer.gnupg_home: {self.gnupg_home!r} is not a folder")
        where = self.gnupg_home or "the default GnuPG home"
        for key in plan.keys:
            try:
                _gpg(["--with-colons", "--list-secret-keys", key.key], gnupg_home=self.gnupg_home)
            except GpgError:
                alias = f" (alias {key.given!r})" if key.given != key.key else ""
                raise InputError(f"signing key {key.key!r}{alias}: no secret key for it in "
                                 f"{where}") from None

    def _private_home(self) -> str:
        """A GnuPG home of this run's own, holding the key_files; it (and its agent) go when
        the run ends."""
        home = tempfile.mkdtemp(prefix="csa-gnupg-")
        weakref.finalize(self, _remove_home, home)
        for n, path in enumerate(self.key_files, 1):
            if not os.path.isfile(path):
                raise InputError(f"config: gpg_signer.key_files[{n}]: {path!r}: no such file")
            try:
                _gpg(["--import", path], gnupg_home=home, passphrase=self.passphrase)
            except GpgError as e:
                raise InputError(f"config: gpg_signer.key_files[{n}]: {path!r}: gpg could not "
                                 f"import it: {e}") from None
        return home

    def sign(self, items: Sequence[WorkItem], report: Report) -> None:
        running = Running()

        def one(item: WorkItem) -> None:
            claim = atomic_claim(str(item.image.reference), item.image.digest, CREATOR,
                                 int(time.time()))
            try:
                signature = gpg_sign(claim, item.key.key, gnupg_home=self.gnupg_home,
                                     passphrase=self.passphrase, running=running)
            except GpgError as e:
                if running.ended:
                    return  # ended by us: the run reports it as not signed, and why

                report(Outcome(item, error=f"gpg: {e}"))
            except OSError as e:
                report(Outcome(item, error=f"gpg could not run: {e.strerror}"))
            else:
                report(Outcome(item, signature=signature))

        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="gpg")
        try:
            for future in [pool.submit(one, item) for item in items]:
                future.result()
        except BaseException:  # interrupted: drop what has not started, end what runs
            pool.shutdown(wait=False, cancel_futures=True)
            running.end()
            raise
        finally:
            pool.shutdown(wait=True)

    def public_keys(self, plan: Plan) -> bytes | None:
        try:
            return _gpg(["--export", *(k.key for k in plan.keys)],
                        gnupg_home=self.gnupg_home) or None
        except GpgError:
            return None


def _remove_home(home: str) -> None:
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True,
                   check=False)
    shutil.rmtree(home, ignore_errors=True)


SIGNER = GpgSigner
