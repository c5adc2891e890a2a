"""The gpg signer (GpgSigner): atomic container signatures made with a key on this machine.

Signing itself is gnupg.py's ``gpg_sign`` (batch mode, never a prompt, the passphrase on a
pipe and never on argv); signatures go to the lookaside tree (signers.lookaside).

A run signs in a GnuPG home of its own, never in the user's: preflight copies each signing key
into a private home (the public key exported and imported, the secret key's file copied from
``private-keys-v1.d`` as it is, still protected) or imports ``key_files`` there, so the run talks
to a gpg-agent of its own that starts with an empty passphrase cache: a passphrase cached by the
user's agent cannot hide a wrong ``passphrase_file``. Preflight then makes one test signature
per key, so that a key that needs a passphrase, a wrong passphrase or an unusable key is one
line (exit 2) before anything is signed. The home and its agent go when the run ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.parse
import weakref
from collections.abc import Mapping, Sequence

from signaction import CREATOR
from signaction.errors import InputError
from signaction.formats import openpgp
from signaction.formats.claim import atomic_claim
from signaction.plan import Plan, SigningKey, WorkItem

from ..base import Options, Outcome, Report
from ..lookaside import LookasideSigner
from ..tools import Running, run_pool, run_tool
from .gnupg import GPG_TIMEOUT, GpgError, _gpg, _last_lines, _run_gpg, gpg_env, gpg_sign

# The private home's copy of a protected key is re-protected with gpg's smallest iteration count
# once its passphrase is known: the user's key file keeps its own (often 10^8 iterations: most of a
# signature's gpg-agent CPU, one signature at a time); the copy lives in a folder of this
# run's own (mode 0700) that is removed when the run ends, and the passphrase it would protect
# is in passphrase_file anyway.
PRIVATE_AGENT_CONF = "s2k-count 65536\n"
_BAD_PASSPHRASE = 11  # gpg-error's GPG_ERR_BAD_PASSPHRASE, in a status line's error code


class GpgSigner(LookasideSigner):
    name = "gpg"
    section = "gpg_signer"
    summary = "a local GnuPG key"

    def __init__(self, config, options: Options):
        super().__init__(config, options)
        home = self.config.get("gnupg_home") or self.environ.get("GNUPGHOME")
        self.user_home = os.path.expanduser(home) if home else None  # where the keys are
        self.gnupg_home: str | None = None  # the run's own home, where it signs (preflight)
        self.key_files = [os.path.expanduser(f) for f in self.config.get("key_files") or []]
        if self.key_files and self.config.get("gnupg_home"):
            raise InputError("config: gpg_signer: give key_files or gnupg_home, not both")
        self.passphrase = self.read_secret_file("passphrase_file")
        self.fingerprints: dict[str, str] = {}  # --signing-key (after aliases) -> fingerprint
        self.workers = min(8, (os.cpu_count() or 1) * 2)

    def secrets(self) -> list[str]:
        return [self.passphrase] if self.passphrase else []

    def _gpg(self, args: list[str], home: str | None, **kw) -> bytes:
        return _gpg(args, gnupg_home=home, environ=self.environ, **kw)

    def preflight(self, plan: Plan) -> None:
        if shutil.which("gpg") is None:
            raise InputError("gpg signer: the gpg program is not on PATH (install gnupg)")
        if not self.key_files and self.user_home and not os.path.isdir(self.user_home):
            raise InputError(f"config: gpg_signer.gnupg_home: {self.user_home!r} is not a folder")
        home = tempfile.mkdtemp(prefix="csa-gnupg-")
        ended = weakref.finalize(self, _remove_home, home, gpg_env(self.environ, home))
        try:
            with open(os.path.join(home, "gpg-agent.conf"), "w", encoding="utf-8") as f:
                f.write(PRIVATE_AGENT_CONF)
            if self.key_files:
                self._import_key_files(home)
            for key in plan.keys:
                if self.key_files:
                    self.fingerprints[key.key] = self._one_key(key, home, "the key_files")[0]
                else:
                    self.fingerprints[key.key] = self._copy_key(key, home)
            for key in plan.keys:
                self._check_can_sign(key, home)
        except BaseException:
            ended()  # nothing of this run's is left behind
            raise
        self.gnupg_home = home

    def _import_key_files(self, home: str) -> None:
        for n, path in enumerate(self.key_files, 1):
            if not os.path.isfile(path):
                raise InputError(f"config: gpg_signer.key_files[{n}]: {path!r}: no such file")
            try:
                self._gpg(["--import", path], home, passphrase=self.passphrase)
            except GpgError as e:
                raise InputError(f"config: gpg_signer.key_files[{n}]: {path!r}: gpg could not "
                                 f"import it: {e}") from None

    def _one_key(self, key: SigningKey, home: str | None, where: str) -> tuple[str, list[str]]:
        """The fingerprint of the one secret key that ``key`` names in ``home`` and the
        keygrips of its parts; InputError when none or several match."""
        named = f"signing key {key.key!r}" + (f" (alias {key.given!r})"
                                               if key.given != key.key else "")
        try:
            listing = self._gpg(["--with-colons", "--with-keygrip", "--list-secret-keys", "--",
                                 key.key], home)
        except GpgError:
            listing = b""
        found = _secret_keys(listing.decode("utf-8", "replace"))
        if not found:
            raise InputError(f"{named}: no secret key for it in {where}")
        if len(found) > 1:
            raise InputError(f"{named}: ambiguous, {len(found)} secret keys in {where} match it "
                             f"({', '.join(found)}): give the fingerprint of one")
        (fpr, grips), = found.items()
        return fpr, grips

    def _copy_key(self, key: SigningKey, home: str) -> str:
        """Copy the key ``key`` names from the user's GnuPG home into ``home``: its public part
        (export, import) and its secret parts as the agent keeps them (files named by keygrip,
        copied as they are: protected keys stay protected, no passphrase is needed, the user's
        agent and its cache play no part)."""
        where = self.user_home or "the default GnuPG home"
        fpr, grips = self._one_key(key, self.user_home, where)
        secrets = os.path.join(self.user_home or self._default_home(), "private-keys-v1.d")
        copied = 0
        for grip in grips:
            src = os.path.join(secrets, f"{grip}.key")
            if not os.path.isfile(src):
                continue  # e.g. an offline primary key: its signing subkey is enough
            dest_dir = os.path.join(home, "private-keys-v1.d")
            os.makedirs(dest_dir, mode=0o700, exist_ok=True)
            try:
                shutil.copyfile(src, os.path.join(dest_dir, f"{grip}.key"))
            except OSError as e:
                raise InputError(f"signing key {fpr}: cannot read its secret key {src!r}: "
                                 f"{e.strerror}") from None
            copied += 1
        if not copied:
            raise InputError(f"signing key {fpr}: its secret key is not a file in {secrets} "
                             "(a remote gpg-agent or a smartcard?): export it to a file and "
                             "give that in gpg_signer.key_files")
        try:
            self._gpg(["--import"], home, data=self._gpg(["--export", fpr], self.user_home))
        except GpgError as e:
            raise InputError(f"signing key {fpr}: cannot copy it into this run's GnuPG home: "
                             f"{e}") from None
        return fpr

    def _default_home(self) -> str:
        """gpg's own default home (``gpgconf --list-dirs homedir``), as gpg would use it."""
        proc, _ = run_tool(["gpgconf", "--list-dirs", "homedir"], timeout=GPG_TIMEOUT,
                           env=gpg_env(self.environ, None))
        home = urllib.parse.unquote(proc.stdout.decode("utf-8", "replace").strip())
        if proc.returncode != 0 or not home:
            raise InputError("gpg signer: gpgconf does not say where the default GnuPG home is: "
                             "set gpg_signer.gnupg_home")
        return home

    def _check_can_sign(self, key: SigningKey, home: str) -> None:
        """One test signature, with the passphrase if there is one: a key that needs one, a
        wrong one, an expired or unusable key is an InputError before anything is signed."""
        fpr = self.fingerprints[key.key]
        if self.passphrase is not None:  # cheap protection for this copy (PRIVATE_AGENT_CONF);
            try:  # a wrong passphrase fails here and again, with its reason, just below
                self._gpg(["--passwd", fpr], home, passphrase=self.passphrase)
            except GpgError:
                pass
        proc = _run_gpg(["--status-fd", "2", "--local-user", fpr, "--detach-sign"],
                        gnupg_home=home, data=b"container-sign-action: can this key sign?",
                        passphrase=self.passphrase, environ=self.environ)
        status = proc.stderr.decode("utf-8", "replace")
        if proc.returncode == 0 and proc.stdout and "[GNUPG:] SIG_CREATED " in status:
            return
        if self.passphrase is None and "[GNUPG:] NEED_PASSPHRASE " in status:
            raise InputError(f"config: gpg_signer.passphrase_file: key {fpr} needs a passphrase: "
                             "give passphrase_file")
        if self.passphrase is not None and ("[GNUPG:] BAD_PASSPHRASE " in status or
                                            _BAD_PASSPHRASE in _error_codes(status)):
            raise InputError(f"config: gpg_signer.passphrase_file: the passphrase in "
                             f"{self.config.get('passphrase_file')!r} does not unlock key {fpr}")
        raise InputError(f"signing key {fpr}: gpg cannot sign with it: "
                         f"{_last_lines(proc.stderr, 1) or f'gpg exited with {proc.returncode}'}")

    def sign(self, items: Sequence[WorkItem], report: Report) -> None:
        running = Running()

        def one(item: WorkItem) -> None:
            image = item.container
            claim = atomic_claim(str(image.reference), image.known_digest, CREATOR,
                                 int(time.time()))
            try:
                signature = gpg_sign(claim, self.fingerprints.get(item.key.key, item.key.key),
                                     gnupg_home=self.gnupg_home, passphrase=self.passphrase,
                                     running=running, environ=self.environ)
            except GpgError as e:
                if running.ended:
                    return  # ended by us: the run reports it as not signed, and why

                report(Outcome(item, error=f"gpg: {e}"))
            except OSError as e:
                report(Outcome(item, error=f"gpg could not run: {e.strerror}"))
            else:
                report(Outcome(item, signature=signature))

        run_pool(one, items, workers=self.workers, name="gpg", running=running)

    def key_fingerprints(self) -> Mapping[str, str]:
        return self.fingerprints

    def verify_keyring(self, plan: Plan) -> tuple[openpgp.Keyring, str]:
        """Verify mode: the public part of the signing keys, exported by gpg (one process:
        no secret key is touched, no passphrase needed) from gnupg_home, or from a private
        home the key_files are imported into."""
        if shutil.which("gpg") is None:
            raise InputError("gpg signer: the gpg program is not on PATH (install gnupg), or "
                             "give --verify-keyring FILE")
        keys = [k.key for k in plan.keys]
        home = self.user_home
        tmp = tempfile.mkdtemp(prefix="csa-gnupg-") if self.key_files else None
        try:
            if tmp is not None:
                home = tmp
                for path in self.key_files:
                    self._gpg(["--import", path], home)
            data = self._gpg(["--export", "--", *keys], home)
        except GpgError as e:
            raise InputError(f"gpg signer: cannot export the signing keys' public part: {e}"
                             ) from None
        finally:
            if tmp is not None:
                _remove_home(tmp, gpg_env(self.environ, tmp))
        where = "the key_files" if self.key_files else (self.user_home or "the GnuPG home")
        if not data:
            raise InputError(f"gpg signer: no public key for {', '.join(keys)} in {where}")
        try:
            return openpgp.Keyring.parse(data), where
        except openpgp.OpenPGPError as e:
            raise InputError(f"{where}: no OpenPGP public keys: {e}") from None

    def public_keys(self, plan: Plan) -> bytes | None:
        try:
            return self._gpg(["--export", *(self.fingerprints.get(k.key, k.key)
                                            for k in plan.keys)], self.gnupg_home) or None
        except GpgError:
            return None


def _secret_keys(colons: str) -> dict[str, list[str]]:
    """``gpg --with-colons --with-keygrip --list-secret-keys`` output: each secret key's
    fingerprint and the keygrips of its primary key and subkeys."""
    keys: dict[str, list[str]] = {}
    current: list[str] | None = None
    want_fpr = False
    for line in colons.splitlines():
        fields = line.split(":")
        if fields[0] == "sec":
            current, want_fpr = [], True
        elif fields[0] == "ssb":
            want_fpr = False
        elif fields[0] == "fpr" and want_fpr and current is not None and len(fields) > 9:
            keys[fields[9]] = current
            want_fpr = False
        elif fields[0] == "grp" and current is not None and len(fields) > 9:
            current.append(fields[9])
    return keys


def _error_codes(status: str) -> set[int]:
    """gpg-error codes (without their source) in FAILURE and ERROR status lines."""
    codes = set()
    for line in status.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "[GNUPG:]" and parts[1] in ("FAILURE", "ERROR"):
            if parts[3].isdigit():
                codes.add(int(parts[3]) & 0xFFFF)
    return codes


def _remove_home(home: str, env: Mapping[str, str]) -> None:
    """End the private home's gpg-agent (and any other daemon gpg started there), remove it."""
    try:
        run_tool(["gpgconf", "--homedir", home, "--kill", "all"], timeout=30, env=env)
    except OSError:
        pass
    shutil.rmtree(home, ignore_errors=True)

