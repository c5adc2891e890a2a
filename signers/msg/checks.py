"""What a signature a signing server returned must be before it is written (``refusal``): taken
apart in-process (signaction/formats/openpgp/), without a key, it must be exactly what was asked
for, naming the key asked for. ``verify_keyring`` adds the cryptographic check
(lookaside.signature_problem)."""

from __future__ import annotations

from signaction.formats import openpgp
from signaction.formats.claim import claim_problem
from signaction.plan import BLOB, SignFile, WorkItem


def refusal(item: WorkItem, signature: bytes) -> str | None:
    """Why the signature a signing server returned for ``item`` must not be written (None: it
    may be). No key is needed: the data is taken apart in-process (signaction/formats/openpgp/,
    some 15-25 microseconds a reply, by the signer's reply checker beside the event loop:
    signer.Replies) and must be what was asked for:

    - an image: a binary OpenPGP signed message (what ``gpg --sign`` makes, what podman and
      skopeo read) whose literal data is an atomic container signature claim for exactly the
      item's digest and identity, as containers-signature(5) readers parse it;
    - a clear-sign file: a clear-signed text of exactly the text sent;
    - a blob: one detached binary signature over exactly the bytes sent;

    and the signature must name the requested key as its issuer. That last check is a sanity
    check, not a proof: the issuer subpackets are written by whoever made the data, and without
    the key nothing here is verified cryptographically. ``verify_keyring`` adds that proof
    (lookaside.signature_problem, in-process, beside the event loop)."""
    target = item.image
    if isinstance(target, SignFile):
        if target.kind == BLOB:
            try:
                found = openpgp.detached_signature(signature, target.data)
            except openpgp.OpenPGPError as e:
                return f"not a detached binary signature of the file: {e}"
        else:
            try:
                text, found = openpgp.clearsigned(signature)
            except openpgp.OpenPGPError as e:
                return f"not a clear-signed text: {e}"
            if text != signed_text(target.data):
                return "the clear-signed text is not the text that was sent"
    else:
        if openpgp.is_armored(signature):
            return ("ASCII-armored OpenPGP data: podman and skopeo read only binary signatures "
                    "(\"unrecognized signature format\"); the signing server must return the "
                    "binary signed message")
        try:
            message = openpgp.signed_message(signature)
        except openpgp.OpenPGPError as e:
            return f"not a binary OpenPGP signed message: {e}"
        problem = claim_problem(message.content, target.known_digest, str(target.reference))
        if problem:
            return problem.detail
        found = message.signature
    return openpgp.issuer_problem(found, item.key.key)


def signed_text(data: bytes) -> bytes:
    """The text a clear-signature of ``data`` signs: its final line ending dropped, trailing
    white space off each line, lines joined by CRLF (RFC 9580, 7.1)."""
    if data.endswith(b"\n"):
        data = data[:-1]
    return b"\r\n".join(line.rstrip(b" \t\r") for line in data.split(b"\n"))
