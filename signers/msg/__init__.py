"""The msg signer: signing requests over an AMQP 1.0 bus to a remote signing server.

- wire: the wire format (requests, replies, pubtools-sign's fields);
- checks: what a returned signature must be before it is written;
- signer: the session and the signer, for now.

This package re-exports what the run (``SIGNER``), the tests and the test bed import from
``signers.msg``.
"""

from .checks import claim_problem, refusal, signed_text
from .signer import MsgSigner, Settings, client_ssl_domain, requester_from_certificate, run_session
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

__all__ = ["SIGNER", "BadReply", "MsgSigner", "Request", "Settings", "build_batch_requests",
           "build_request", "claim_problem", "client_ssl_domain", "isodate_now", "outcomes_of",
           "parse_reply", "refusal", "repo_of", "requester_from_certificate", "run_session",
           "signature_of", "signed_text"]

SIGNER = MsgSigner
