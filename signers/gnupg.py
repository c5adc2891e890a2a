"""Running gpg: batch mode, never a prompt, the passphrase on a pipe and never on argv, a
private environment; and checking atomic container signatures with it.

``gpg_sign`` is the whole signing act (the gpg signer and the reference signing server use it);
``SignatureCheck`` verifies a signature with a keyring in a GnuPG home of its own (the msg
signer's verify_keyring, existing lookaside signatures for skip-signed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping

from signaction.errors import InputError
from signaction.plan import BLOB, SignFile, WorkItem

from .tools import Running, child_env, run_tool

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



class SignatureCheck:
    """Checks an atomic container signature: made by the item's key, over a claim for exactly
    the item's digest and identity (the msg signer's verify_keyring; existing lookaside
    signatures). The keyring is imported once into a private GnuPG home; checks may run in
    several threads at once."""

    def __init__(self, keyring: bytes, label: str = "the keyring",
                 fingerprints: Mapping[str, str] | None = None):
        self.label = label
        # --signing-key (after aliases) -> its fingerprint, where the signer resolved it (a user
        # id or short id names no fingerprint by itself)
        self.fingerprints = {k: v.upper() for k, v in (fingerprints or {}).items()}
        self.home = tempfile.mkdtemp(prefix="csa-verify-")
        imported = subprocess.run(["gpg", "--batch", "--homedir", self.home, "--import"],
                                  input=keyring, capture_output=True, check=False,
                                  env=child_env(os.environ))
        if imported.returncode != 0:
            self.close()
            raise InputError(f"{label}: gpg could not import it")

    @classmethod
    def from_file(cls, path: str) -> SignatureCheck:
        try:
            with open(path, "rb") as f:
                return cls(f.read(), f"verify_keyring {path!r}")
        except OSError as e:
            raise InputError(f"verify_keyring {path!r}: {e.strerror}") from None

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", self.home, "--kill", "all"], check=False,
                       capture_output=True, env=child_env(os.environ))
        shutil.rmtree(self.home, ignore_errors=True)

    def problem(self, signature: bytes, item: WorkItem) -> str | None:
        """Why ``signature`` is not a good one for ``item`` (None: it is)."""
        target = item.image
        if isinstance(target, SignFile):
            return self._file_problem(signature, item, target)
        signed, problem = self._gpg(["--decrypt"], signature, item)
        if problem:
            return problem
        try:
            critical = json.loads(signed)["critical"]
            digest = critical["image"]["docker-manifest-digest"]
            identity = critical["identity"]["docker-reference"]
        except (ValueError, KeyError, TypeError):
            return "the signed content is not an atomic container signature claim"
        if digest != target.digest:
            return f"it signs digest {digest}, not {target.digest}"
        if identity != str(target.reference):
            return f"it signs identity {identity}, not {target.reference}"
        return None

    def _file_problem(self, signature: bytes, item: WorkItem, target: SignFile) -> str | None:
        if target.kind == BLOB:  # a detached signature: the file's bytes go on stdin
            with tempfile.NamedTemporaryFile(dir=self.home, suffix=".sig") as sig:
                sig.write(signature)
                sig.flush()
                return self._gpg(["--verify", sig.name, "-"], target.data, item)[1]
        # clear-signed: gpg checks the signature and its key; that the text is the one sent is
        # the signer's in-process check (signers.msg.checks.refusal, exact), which runs before this
        return self._gpg(["--decrypt"], signature, item)[1]

    def _gpg(self, args: list[str], data: bytes, item: WorkItem) -> tuple[bytes, str | None]:
        """gpg's output, and why the signature it checked is not by the item's key (or None)."""
        proc = subprocess.run(["gpg", "--batch", "--no-tty", "--homedir", self.home,
                               "--trust-model", "always", "--status-fd", "2", *args],
                              input=data, capture_output=True, check=False,
                              env=child_env(os.environ))
        status = proc.stderr.decode("utf-8", "replace")
        signers = [ln.split()[2] for ln in status.splitlines() if "[GNUPG:] VALIDSIG " in ln]
        if proc.returncode != 0 or not signers:
            return proc.stdout, f"not a valid signature by any key in {self.label}"
        expected = self.fingerprints.get(item.key.key)
        if not any(fpr.upper() == expected if expected else
                   fpr.upper().endswith(item.key.key[-8:].upper()) for fpr in signers):
            return proc.stdout, f"signed by {signers[0]}, not by the requested key {item.key.key}"
        return proc.stdout, None


