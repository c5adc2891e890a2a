"""The interface every signer implements, and what it gets from the run.

A run builds one signer from its config section and the run's Options, asks it to ``preflight``
the plan (everything that can fail before anything is signed), then hands it the work items;
the signer reports one Outcome per item, as soon as it has it, through the ``report`` callback
(thread-safe on the receiving side), so work already done is kept whatever happens to the rest
of the run. Its ``format`` (a signaction.signing.SignatureFormat) stores and describes the
signatures it makes.
"""

from __future__ import annotations

import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from signaction.errors import InputError
from signaction.inputs import Inputs
from signaction.plan import Plan, WorkItem
from signaction.safeload import read_text_file
from signaction.signing import FollowUp, Outcome, Report, SignatureFormat

from .tools import run_pool

if TYPE_CHECKING:  # (annotations only: signaction.registry imports requests and cryptography)
    from signaction.artifacts import Artifacts
    from signaction.registry import RegistryClient, RegistrySettings

MAX_SECRET_FILE = 64 << 10  # bytes of a passphrase or password file

__all__ = ["Options", "Outcome", "Report", "RunRegistry", "Signer", "skip_signed"]

log = logging.getLogger(__name__)


class RunRegistry:
    """The run's one registry client and the settings it is built from (the config's section
    ``registry``, or cosign_signer's registry_* keys), built on first use (thread-safe): a run
    that reads no registry, such as a gpg run of images given by digest, never imports the HTTP
    stack (signaction.registry imports requests and cryptography)."""

    def __init__(self, registry: Mapping | None, cosign: Mapping | None,
                 environ: Mapping[str, str]):
        self._sections, self._environ = (registry, cosign), environ
        self._lock = threading.Lock()
        self._built: tuple[RegistrySettings, RegistryClient] | None = None

    def _build(self) -> tuple[RegistrySettings, RegistryClient]:
        with self._lock:
            if self._built is None:
                # the HTTP stack, imported by the first run that needs a registry (see above)
                from signaction.registry import RegistrySettings
                settings = RegistrySettings.from_config(*self._sections)
                self._built = settings, settings.client(self._environ)
            return self._built

    def check(self) -> None:
        """Build it now: RegistryError when the config's settings are wrong."""
        self._build()

    @property
    def configured(self) -> bool:
        """Whether the config has sections the settings are read from (which may be wrong:
        a user without a password); without them the defaults cannot be."""
        return any(self._sections)

    @property
    def settings(self) -> RegistrySettings:
        """RegistryError when the config's settings are wrong."""
        return self._build()[0]

    @property
    def client(self) -> RegistryClient:
        """RegistryError when the config's settings are wrong."""
        return self._build()[1]


@dataclass(frozen=True)
class Options:
    """What a signer gets from the run besides its config section: the inputs (task id,
    requester, deadline, output folder...), the environment it may hand on (filtered) to its
    tools, and the run's one registry client with the settings it was built from (the config's
    section ``registry``, or cosign_signer's registry_* keys; built on first use)."""

    inputs: Inputs
    environ: Mapping[str, str]
    registry: RunRegistry

    @classmethod
    def default(cls, environ: Mapping[str, str] | None = None,
                inputs: Inputs | None = None) -> Options:
        """Options for a signer made outside a run (tests): default inputs and registry
        settings, unless given."""
        environ = {} if environ is None else environ
        return cls(inputs or Inputs(), environ, RunRegistry(None, None, environ))


class Signer(ABC):
    name: ClassVar[str]
    section: ClassVar[str]  # its config section, e.g. "gpg_signer"
    summary: ClassVar[str] = ""  # what it signs with, for --help (e.g. "a local GnuPG key")
    expands_index: ClassVar[bool] = False  # sign multi-arch images' platforms by default
    signs_files: ClassVar[bool] = False  # can clear-sign / blob-sign files (plan.files)
    attests: ClassVar[bool] = False  # can attach in-toto attestations (--provenance, ...)
    format: SignatureFormat  # how its image signatures are stored and described

    def __init__(self, config: Mapping[str, Any] | None, options: Options):
        self.config = dict(config or {})
        self.options = options
        self.inputs = options.inputs
        self.environ = options.environ
        self.stats: dict[str, int] = {}  # counters worth reporting (ignored replies, retries...)

    @property
    def registry(self) -> RegistryClient:
        """The run's one registry client (built when first asked for: RunRegistry)."""
        return self.options.registry.client

    @property
    def registry_settings(self) -> RegistrySettings:
        return self.options.registry.settings

    def path_of(self, key: str) -> str:
        """How ``key`` signs, when a signer has more than one way (e.g. "native" or "cosign
        binary"), for --dry-run; "" when there is only one."""
        return ""

    @classmethod
    def after_merge(cls, artifacts: Artifacts, rows: Iterable[dict[str, Any]],
                    shard_files: set[str]) -> list[FollowUp]:
        """What this signer's format writes after ``merge`` (e.g. an attach script), from the
        merged results.json entries ``rows`` (plan order); ``shard_files``: the names found at
        the top of the shards' folders."""
        return []

    @classmethod
    def config_section(cls, inputs: Inputs) -> str:
        """The config section this signer reads (it may depend on the inputs)."""
        return cls.section

    @property
    def key_aliases(self) -> Mapping[str, str]:
        return self.config.get("key_aliases") or {}

    def secrets(self) -> list[str]:
        """Secret values this signer read (beyond the config's), to be masked in logs."""
        return []

    def read_secret_file(self, key: str) -> str | None:
        """The first line of the file the config key ``key`` names (a passphrase), or None;
        always None in verify mode, which needs no secret."""
        path = self.config.get(key)
        if not path or self.inputs.mode == "verify":
            return None
        named = f"config: {self.section}.{key}: {path!r}"
        # a regular file only (a FIFO would hang the run), bounded, UTF-8; never quoted
        text = read_text_file(os.path.expanduser(path), named, MAX_SECRET_FILE)
        assert text is not None
        return text.split("\n", 1)[0].rstrip("\r")

    def notes(self) -> list[str]:
        """Lines --dry-run adds about what else each signature comes with (none here)."""
        return []

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

    def public_keys(self, plan: Plan) -> bytes | None:
        """The signing keys' public part (an OpenPGP keyring, or PEM public keys for sigstore),
        when this signer knows it."""
        return None

    def trusted_keys(self, plan: Plan) -> dict[str, Any]:
        """Verify mode, instead of preflight: each plan key (``key.key``) -> the public material
        its signatures are checked with, in the form this signer's ``format.verifier`` takes;
        found without any secret (no passphrase, no server). InputError when a key's public
        part cannot be found."""
        raise InputError(f"--mode verify: the {self.name} signer cannot verify signatures")

    @contextmanager
    def signed_check(self, plan: Plan) -> Iterator[Callable[[WorkItem], str | None] | None]:
        """A function telling why an item needs no new signature (None: it does), or None when
        this signer cannot tell. It may be called from several threads at once."""
        yield None


def skip_signed(signer: Signer, plan: Plan, items: list[WorkItem],
                report: Report) -> list[WorkItem]:
    """Report as skipped each item that already carries a valid signature (as far as the signer
    can tell, checking several at once); return the others."""
    with signer.signed_check(plan) as signed:
        if signed is None:
            return items
        reasons = run_pool(signed, items, workers=8, name="skip-check")
    rest = []
    for item, reason in zip(items, reasons, strict=True):
        if reason:
            report(Outcome(item, skipped=reason))
        else:
            rest.append(item)
    if len(rest) < len(items):
        log.info("%d of %d signature(s) already exist: skipped", len(items) - len(rest),
                 len(items))
    return rest
