"""The msg signer: signing requests over an AMQP 1.0 bus to a remote signing server.

signer.py holds it for now; this package re-exports what the run (``SIGNER``), the tests and
the test bed import from ``signers.msg``.
"""

from .signer import (BadReply, MsgSigner, Request, Settings, build_batch_requests,
                     build_request, claim_problem, client_ssl_domain, isodate_now, outcomes_of,
                     parse_reply, refusal, repo_of, requester_from_certificate, run_session,
                     signature_of, signed_text)

__all__ = ["SIGNER", "BadReply", "MsgSigner", "Request", "Settings", "build_batch_requests",
           "build_request", "claim_problem", "client_ssl_domain", "isodate_now", "outcomes_of",
           "parse_reply", "refusal", "repo_of", "requester_from_certificate", "run_session",
           "signature_of", "signed_text"]

SIGNER = MsgSigner
