"""Signers: each one module behind the small interface below.

A run hands a signer its config section and the plan's work items; the signer reports one Outcome
per item, as soon as it has it, through the ``report`` callback (thread-safe on the receiving side),
so work already done is kept whatever happens to the rest of the run.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

from signaction.errors import InputError
from signaction.inputs import Inputs
from signaction.plan import Plan, WorkItem


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one work item: a signature, a failure, or a skip."""

    item: WorkItem
    signature: bytes | None = None  # raw signature for the lookaside tree (gpg, msg)
    error: str | None = None  # why it failed, in words for the user
    skipped: str | None = None  # why it needed no signature
    detail: Any = None  # for results.json's operation_results: a JSON-able value or JSON text


Report = Callable[[Outcome], None]


class Signer(ABC):
    name: ClassVar[str]
    section: ClassVar[str]  # its config section, e.g. "gpg_signer"

    def __init__(self, config: Mapping[str, Any] | None, environ: Mapping[str, str],
                 inputs: Inputs | None = None):
        self.config = dict(config or {})
        self.environ = environ
        self.inputs = inputs  # the run's task id, requester, deadline...
        self.stats: dict[str, int] = {}  # counters worth reporting (ignored replies, retries...)

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

    @abstractmethod
    def preflight(self, plan: Plan) -> None:
        """Check, before anything is signed, that the plan can be carried out (keys exist,
        tools are there). Raise InputError otherwise."""

    @abstractmethod
    def sign(self, items: Sequence[WorkItem], report: Report) -> None:
        """Sign every item, calling ``report`` once per item."""

    def public_keys(self, plan: Plan) -> bytes | None:
        """The signing keys' public part (an OpenPGP keyring), when this signer knows it."""
        return None


_MODULES = {"gpg": "signers.gpg", "msg": "signers.msg"}


def signer_class(name: str) -> type[Signer]:
    if name not in _MODULES:
        raise InputError(f"signer {name!r} is not available in this version "
                         f"(available: {', '.join(_MODULES)})")
    return importlib.import_module(_MODULES[name]).SIGNER
