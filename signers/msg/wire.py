"""The msg signer's wire format, as pubtools-sign 1.0.6 has it (shared notes: wire-format.md):
the requests (body fields, application properties; single, file and batch requests) and the
replies (parsing, the signature or error of each work item). Pure functions, unit-tested against
pubtools-sign's."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signaction.claim import atomic_claim
from signaction.plan import BLOB, CLEARSIGN, Image, SignFile, SigningKey, WorkItem

MAX_REPLY_BYTES = 1 << 20  # a reply holds one signature (a few KiB); anything this big is junk
CONTAINER_SIGNATURE = "container_signature"
BATCH = "batch"
# A file's request type and the body field carrying it; the reply field with the signature.
FILE_REQUESTS = {CLEARSIGN: ("clearsign_signature", "data"), BLOB: ("gpg_signature", "artifact")}
SIGNED_FIELD = {CLEARSIGN: "signed_data", BLOB: "signed_payload"}


def isodate_now() -> str:
    """pubtools-sign's ``created``: naive UTC ISO-8601 with a trailing Z."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None).isoformat() + "Z"


def repo_of(reference: str) -> str:
    """pubtools-sign's ``repo``: the reference without registry host and tag."""
    return reference.split("/", 1)[1].split(":")[0]


@dataclass(slots=True)
class Request:
    items: list[WorkItem]  # one (single mode), or every (image, key) of a batch chunk
    request_id: str
    address: str
    properties: dict[str, Any]
    body: str  # the JSON string that goes on the wire
    batch: bool = False
    slot: int | None = None  # batch: its place in operation_results (request order)


def build_request(item: WorkItem, *, requester: str, task_id: str, environment: str,
                  service: str, task_id_attribute: str, address: str, creator: str,
                  timestamp: int | None, repo: str = "") -> Request:
    """One signing request, field for field as pubtools-sign 1.0.6 builds it: a container
    claim, or a file to clear-sign (its text in ``data``, with ``repo``) or to sign detached (its
    bytes in ``artifact``)."""
    target = item.image
    if isinstance(target, SignFile):
        mtype, field = FILE_REQUESTS[target.kind]
        data, repo = target.data, repo if target.kind == CLEARSIGN else ""
        extra: dict[str, Any] = {task_id_attribute: task_id}
    else:
        mtype, field, reference = CONTAINER_SIGNATURE, "claim_file", str(target.reference)
        digest = target.known_digest
        data, repo = atomic_claim(reference, digest, creator, timestamp), repo_of(reference)
        extra = {task_id_attribute: task_id, "manifest_digest": digest}
    request_id = str(uuid.uuid4())
    body: dict[str, Any] = {
        "sig_key_id": item.key.key[-8:],
        field: base64.b64encode(data).decode("ascii"),
        "request_id": request_id,
        "created": isodate_now(),
        "requested_by": requester,
        "repo": repo,
    }
    if item.key.name:
        body["sig_keyname"] = item.key.name
    body.update(extra)
    properties = {"service": service, "environment": environment, "owner_id": requester,
                  "mtype": mtype, "source": "metadata", **extra}
    return Request([item], request_id, address, properties, json.dumps(body))


def build_batch_requests(images: Sequence[Image], keys: Sequence[SigningKey], *,
                         chunk_size: int, requester: str, task_id: str, environment: str,
                         service: str, address: str, creator: str,
                         timestamp: int | None) -> list[Request]:
    """Batch requests as pubtools-sign 1.0.6's msg_batch_signer builds them: images grouped by
    repo, ``chunk_size`` claims a request, every claim listing every key."""
    by_repo: dict[str, list[Image]] = {}
    for image in images:
        by_repo.setdefault(repo_of(str(image.reference)), []).append(image)
    names = [k.name or "" for k in keys] if any(k.name for k in keys) else [""]
    properties = {"service": service, "environment": environment, "owner_id": requester,
                  "mtype": BATCH, "source": "metadata", "pipeline_run_id": str(task_id)}
    requests: list[Request] = []
    for repo, group in by_repo.items():
        for start in range(0, len(group), chunk_size):
            chunk = group[start:start + chunk_size]
            request_id = str(uuid.uuid4())
            body = {
                "claims": [{
                    "claim_file": base64.b64encode(atomic_claim(
                        str(i.reference), i.known_digest, creator, timestamp)).decode("ascii"),
                    "sig_keynames": names,
                    "sig_key_ids": [k.key[-8:] for k in keys],
                    "manifest_digest": i.known_digest,
                    "repo": repo,
                } for i in chunk],
                "request_id": request_id,
                "created": isodate_now(),
                "requested_by": requester,
                "pipeline_run_id": str(task_id),
            }
            items = [WorkItem(i, k) for i in chunk for k in keys]
            requests.append(Request(items, request_id, address, dict(properties),
                                    json.dumps(body), batch=True, slot=len(requests)))
    return requests


class BadReply(Exception):
    """A reply that cannot be used: its kind ("malformed" or "oversized") is in ``kind``."""

    def __init__(self, kind: str, why: str):
        super().__init__(why)
        self.kind = kind


def parse_reply(body: Any, id_key: str, max_bytes: int = MAX_REPLY_BYTES) -> tuple[str, dict, str]:
    """(request id, msg, the body as JSON text) of a reply body, or BadReply."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        raise BadReply("malformed", f"body of type {type(body).__name__}")
    if len(body) > max_bytes:
        raise BadReply("oversized", f"{len(body)} bytes")
    try:
        outer = json.loads(body)
        msg = outer["msg"]
        request_id = msg[id_key]
    except (ValueError, KeyError, TypeError):
        raise BadReply("malformed", "not a JSON object with msg." + id_key) from None
    if not isinstance(msg, dict) or not isinstance(request_id, str):
        raise BadReply("malformed", "msg is not an object, or its id is not a string")
    return request_id, msg, body


def signature_of(msg: Mapping[str, Any], field: str = "signed_claim") -> bytes | str:
    """The raw signature in a reply's ``msg`` (base64 in ``field``), or the error text to report
    (a str)."""
    errors = msg.get("errors")
    if errors:
        texts = errors if isinstance(errors, list) else [errors]
        return "signing server: " + "; ".join(str(e) for e in texts)
    claim = msg.get(field)
    if not isinstance(claim, str) or not claim:
        return f"signing server: the reply has neither errors nor a {field}"
    try:
        return base64.b64decode(claim, validate=True)
    except (binascii.Error, ValueError):
        return f"signing server: the reply's {field} is not base64"


def outcomes_of(req: Request, msg: Mapping[str, Any]) -> list[tuple[WorkItem, bytes | str]]:
    """Each work item of a request with its signature, or the error text (a str)."""
    if not req.batch:
        target = req.items[0].image
        field = SIGNED_FIELD[target.kind] if isinstance(target, SignFile) else "signed_claim"
        return [(req.items[0], signature_of(msg, field))]
    whole = signature_of({"errors": msg.get("errors")}) if msg.get("errors") else None
    claims = msg.get("claims")
    if not isinstance(claims, list):
        claims = []
    by_digest = {c.get("manifest_digest"): c for c in claims if isinstance(c, dict)}
    results = []
    for item in req.items:
        digest = item.container.digest  # a batch holds only images
        claim = by_digest.get(digest)
        if whole is not None:
            results.append((item, whole))
        elif claim is None:
            results.append((item, f"signing server: the batch reply has no claim for {digest}"))
        elif claim.get("errors"):
            results.append((item, signature_of({"errors": claim["errors"]})))
        else:
            signed = claim.get("signed_claims")
            value = signed.get(item.key.key[-8:]) if isinstance(signed, dict) else None
            results.append((item, signature_of({"signed_claim": value})
                            if value else "signing server: the batch reply has no signature "
                                          f"for key {item.key.key[-8:]}"))
    return results


def jsonable(value: Any) -> Any:
    """A reply's application properties as JSON can hold them (operation_results keeps them):
    proton's symbols, ulongs, binaries and the like become strings."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)

