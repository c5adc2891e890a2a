"""The msg signer: signing requests over an AMQP 1.0 bus to a remote signing server,
wire-compatible with pubtools-sign 1.0.6 (shared notes: wire-format.md).

- wire: the wire format, pure functions: requests as pubtools-sign builds them (body fields,
  application properties; single, file and batch requests), reply parsing, each work item's
  signature or error in a reply;
- checks: what a returned signature must be before it is written (``refusal``): exactly what
  was asked for, naming the key asked for ("signature refused: ..." otherwise);
- session: the proton event loop (``Session``, ``run_session``) and its ``Settings``:
  sending, matching replies, timeouts, retries, the deadline, failover and reconnection;
- signer: ``MsgSigner``, from its config section to Outcomes.

This package re-exports what the run (``SIGNER``), the tests and the test bed import from
``signers.msg``. The session's names are loaded on first use: the run imports every signer
package to list them, and only the session imports proton.
"""

from typing import Any

from .checks import claim_problem, refusal, signed_text
from .signer import MsgSigner, requester_from_certificate
from .wire import (
    BadReply,
    Request,
    build_batch_requests,
    build_request,
    isodate_now,
    outcomes_of,
    parse_reply,
    repo_of,
    signature_of,
)

__all__ = ["SIGNER", "BadReply", "MsgSigner", "Request", "Session", "Settings",
           "build_batch_requests", "build_request", "claim_problem", "client_ssl_domain",
           "isodate_now", "outcomes_of", "parse_reply", "refusal", "repo_of",
           "requester_from_certificate", "run_session", "signature_of", "signed_text"]

SIGNER = MsgSigner

_SESSION = frozenset({"Session", "Settings", "client_ssl_domain", "run_session"})


def __getattr__(name: str) -> Any:
    if name in _SESSION:
        from . import session

        return getattr(session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
