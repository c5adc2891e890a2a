"""Signers: each one module behind the small interface below.

A run hands a signer its config section and the plan's work items; the signer reports one Outcome
per item, as soon as it has it, through the ``report`` callback (thread-safe on the receiving side),
so work already done is kept whatever happens to the rest of the run.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import subprocess
import threading
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

from signaction.errors import InputError
from signaction.inputs import Inputs
from signaction.plan import BLOB, Plan, SignFile, WorkItem
from signaction.registry import RegistrySettings

log = logging.getLogger("signers")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one work item: a signature, a failure, or a skip."""

    item: WorkItem
    signature: bytes | None = None  # raw signature for the lookaside tree (gpg, msg)
    error: str | None = None  # why it failed, in words for the user
    skipped: str | None = None  # why it needed no signature
    payload: bytes | None = None  # what a cosign signature signs (then ``signature`` is base64)
    detail: Any = None  # for results.json's operation_results: a JSON-able value or JSON text
    # Where ``detail`` goes in operation_results: None = the item's position in the plan
    # (pubtools-sign's request order: per image, then per key); a signer whose requests cover
    # several items (msg batch) gives its request's index, and says how many in ``slots()``.
    slot: int | None = None


Report = Callable[[Outcome], None]


class Running:
    """The tool processes (gpg, cosign) of one run. Once ended, a process that registers is ended at once, so
    none escapes an interruption however the threads interleave."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self._ended = False

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)
            if self._ended:
                proc.terminate()

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def end(self) -> None:
        with self._lock:
            self._ended = True
            for proc in self._procs:
                proc.terminate()

    @property
    def ended(self) -> bool:
        return self._ended


# -- what a tool gets from the environment ---------------------------------------------------

# Every tool gets these (when set) and nothing else unless asked for: where programs are, whose
# home, the language of its messages, the time zone, where temporary files go.
BASE_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR")

# Never handed on, whatever a ``keep`` pattern says: the action's inputs (INPUT_CONFIG may hold
# registry passwords), GitHub's tokens. Keyless cosign signing (a later issue) would let
# ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN through to cosign alone: by ``extra``, not by loosening this.
NEVER_ENV = ("INPUT_*", "GITHUB_TOKEN", "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_*")


def _matches_any(name: str, patterns: Sequence[str]) -> bool:
    """Is ``name`` one of ``patterns``: exact names, or prefixes ending in ``*``."""
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


def child_env(environ: Mapping[str, str], keep: Sequence[str] = (),
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a tool this program starts (gpg, gpgconf, cosign): from ``environ``
    only BASE_ENV and ``keep`` (names, or prefixes ending in ``*``), never NEVER_ENV; then
    ``extra``, values this program chose (a private GNUPGHOME or DOCKER_CONFIG, COSIGN_PASSWORD,
    the config's env_variables), which win."""
    env = {k: v for k, v in environ.items()
           if _matches_any(k, BASE_ENV) or (_matches_any(k, keep) and not
                                            _matches_any(k, NEVER_ENV))}
    env.update({str(k): str(v) for k, v in (extra or {}).items()})
    return env


def run_tool(cmd: list[str], *, timeout: float, input: bytes | None = None,
             env: Mapping[str, str] | None = None, pass_fds: tuple[int, ...] = (),
             running: Running | None = None) -> tuple[subprocess.CompletedProcess, bool]:
    """Run a signing tool (gpg, gpgconf, cosign): (the finished process, with bytes output;
    whether it timed out). ``env`` is its whole environment (build it with child_env); without
    one it gets child_env(os.environ), never this process's environment as it is. It gets its
    own process group, killed whole on a timeout (a helper it started would otherwise hold its
    output pipes open), and ``running`` holds it while it runs, so that an interrupted run can
    end it."""
    if env is None:
        env = child_env(os.environ)
    proc = subprocess.Popen(cmd, env=env, pass_fds=pass_fds, start_new_session=True,
                            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if running is not None:
        running.add(proc)
    timed_out = False
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    finally:
        if running is not None:
            running.discard(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), timed_out


class SignatureCheck:
    """Checks an atomic container signature: made by the item's key, over a claim for exactly
    the item's digest and identity (the msg signer's verify_keyring; existing lookaside
    signatures). The keyring is imported once into a private GnuPG home; checks may run in
    several threads at once."""

    def __init__(self, keyring: bytes, label: str = "the keyring",
                 fingerprints: Mapping[str, str] | None = None):
        import tempfile

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
        import shutil

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
            import tempfile

            with tempfile.NamedTemporaryFile(dir=self.home, suffix=".sig") as sig:
                sig.write(signature)
                sig.flush()
                return self._gpg(["--verify", sig.name, "-"], target.data, item)[1]
        # clear-signed: gpg checks the signature and its key; that the text is the one sent is
        # the signer's in-process check (signers.msg.refusal, exact), which runs before this
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


class Signer(ABC):
    name: ClassVar[str]
    section: ClassVar[str]  # its config section, e.g. "gpg_signer"
    expands_index: ClassVar[bool] = False  # sign multi-arch images' platforms by default
    signature_kind: ClassVar[str] = "gpg"  # "gpg" (lookaside files) or "sigstore" (cosign)
    attach_later: bool = False  # signatures are only in the output folder, to attach later
    signs_files: ClassVar[bool] = False  # can clear-sign / blob-sign files (plan.files)

    def __init__(self, config: Mapping[str, Any] | None, environ: Mapping[str, str],
                 inputs: Inputs | None = None, registry: RegistrySettings | None = None):
        self.config = dict(config or {})
        self.environ = environ
        self.inputs = inputs  # the run's task id, requester, deadline...
        # the config's registry settings (section registry, or cosign_signer's registry_* keys)
        self.registry_settings = registry or RegistrySettings()
        self.stats: dict[str, int] = {}  # counters worth reporting (ignored replies, retries...)
        self._registry = None
        self._registry_lock = threading.Lock()  # worker threads may ask for it at once

    @classmethod
    def config_section(cls, inputs: Inputs | None) -> str:
        """The config section this signer reads (it may depend on the inputs)."""
        return cls.section

    @property
    def key_aliases(self) -> Mapping[str, str]:
        return self.config.get("key_aliases") or {}

    def secrets(self) -> list[str]:
        """Secret values this signer read (beyond the config's), to be masked in logs."""
        return []

    def read_secret_file(self, key: str) -> str | None:
        """The first line of the file the config key ``key`` names (a passphrase), or None."""
        path = self.config.get(key)
        if not path:
            return None
        try:
            with open(os.path.expanduser(path), encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as e:
            raise InputError(f"config: {self.section}.{key}: cannot read {path!r}: "
                             f"{e.strerror}") from None

    @abstractmethod
    def preflight(self, plan: Plan) -> None:
        """Check, before anything is signed, that the plan can be carried out (keys exist,
        tools are there). Raise InputError otherwise."""

    @abstractmethod
    def sign(self, items: Sequence[WorkItem], report: Report) -> None:
        """Sign every item, calling ``report`` once per item."""

    def slots(self, plan: Plan) -> int:
        """How many entries results.json's operation_results has: one per request, in request
        order (``""`` for a request without a detail). 0: this signer reports no details."""
        return 0

    def key_fingerprints(self) -> Mapping[str, str]:
        """Each signing key (after aliases) -> the fingerprint it resolved to, where known."""
        return {}

    def public_keys(self, plan: Plan) -> bytes | None:
        """The signing keys' public part (an OpenPGP keyring, or PEM public keys for sigstore),
        when this signer knows it."""
        return None

    @contextmanager
    def signed_check(self, plan: Plan) -> Iterator[Callable[[WorkItem], str | None] | None]:
        """A function telling why an item needs no new signature (None: it does), or None when
        this signer cannot tell. GPG signers look for a signature-N that verifies with the
        signing keys for the item's digest and identity: in the output folder's own lookaside
        tree (an earlier run into the same folder), then at --lookaside-url."""
        bases = self._lookaside_bases()
        keyring = self.public_keys(plan) if bases else None
        if not bases or not keyring:
            if self.inputs is not None and self.inputs.lookaside_url:
                log.warning("--lookaside-url: the %s signer does not know the signing keys' "
                            "public part (msg: set verify_keyring), so existing signatures "
                            "cannot be checked; signing everything", self.name)
            yield None
            return
        check = SignatureCheck(keyring, "the signing keys", self.key_fingerprints())
        try:
            yield lambda item: next((found for base in bases
                                     if (found := self._in_lookaside(base, check, item))), None)
        finally:
            check.close()

    def _lookaside_bases(self) -> list[str]:
        """Where existing GPG signatures may be, ``{registry}`` standing for the registry
        folder: this run's own output tree, if an earlier run left one, and --lookaside-url."""
        from signaction.artifacts import LOOKASIDE

        if self.inputs is None:
            return []
        own = Path(self.inputs.output_dir, LOOKASIDE)
        bases = [own.resolve().as_uri() + "/{registry}"] if own.is_dir() else []
        return bases + ([self.inputs.lookaside_url] if self.inputs.lookaside_url else [])

    def _in_lookaside(self, base: str, check: SignatureCheck, item: WorkItem) -> str | None:
        from signaction.artifacts import registry_folder
        from signaction.registry import RegistryError

        image = item.image
        url = base.replace("{registry}", registry_folder(image.reference.host))
        try:
            found = self.registry().lookaside_signatures(url, image.reference, image.digest)
        except RegistryError as e:  # signing again is safe; skipping wrongly is not
            log.warning("could not read existing signatures of %s@%s: %s", image.reference,
                        image.digest, e)
            return None
        for n, signature in enumerate(found, 1):
            if check.problem(signature, item) is None:
                return f"already signed by this key: signature-{n} in {url}"
        return None

    def registry(self):
        """The run's one registry client (signaction.registry), set up from the config's
        registry settings (``registry_settings``); else the usual auth files."""
        from signaction.registry import RegistryError

        with self._registry_lock:
            if self._registry is None:
                try:
                    self._registry = self.registry_settings.client(self.environ)
                except RegistryError as e:  # e.g. a user without a password
                    raise InputError(f"config: registry: {e}") from None
            return self._registry


def skip_signed(signer: Signer, plan: Plan, items: list[WorkItem],
                report: Report) -> list[WorkItem]:
    """Report as skipped each item that already carries a valid signature (as far as the signer
    can tell, checking several at once); return the others."""
    with signer.signed_check(plan) as signed:
        if signed is None:
            return items
        with ThreadPoolExecutor(8, thread_name_prefix="skip-check") as pool:
            reasons = list(pool.map(signed, items))
    rest = []
    for item, reason in zip(items, reasons):
        if reason:
            report(Outcome(item, skipped=reason))
        else:
            rest.append(item)
    if len(rest) < len(items):
        log.info("%d of %d signature(s) already exist: skipped", len(items) - len(rest),
                 len(items))
    return rest


_MODULES = {"gpg": "signers.gpg", "msg": "signers.msg", "cosign": "signers.cosign"}


def signer_class(name: str) -> type[Signer]:
    if name not in _MODULES:
        raise InputError(f"signer {name!r} is not available in this version "
                         f"(available: {', '.join(_MODULES)})")
    return importlib.import_module(_MODULES[name]).SIGNER
