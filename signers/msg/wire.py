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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signaction.formats.claim import atomic_claim
from signaction.plan import BLOB, CLEARSIGN, Image, SignFile, SigningKey, WorkItem
from signaction.safeload import parse_json

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


_COUNTED = (1 << 48) - 1  # a request id's last 48 bits (its UUID's node field): its number


class RequestIds:
    """A run's request ids: version-4 UUIDs whose last 48 bits number the run's requests and
    whose other 74 random bits are the run's own. Whether a reply names one of this run's
    requests is then known without keeping every id: a set of 100,000 ids, kept to the end of
    the run to tell a duplicate reply from a stray one, held 13 MB."""

    def __init__(self) -> None:
        self._base = uuid.uuid4().int & ~_COUNTED
        self.issued = 0

    def new(self) -> str:
        if self.issued > _COUNTED:
            raise OverflowError("more than 2**48 requests in one run")
        self.issued += 1
        return str(uuid.UUID(int=self._base | (self.issued - 1)))

    def __contains__(self, request_id: object) -> bool:
        try:
            value = uuid.UUID(str(request_id)).int
        except ValueError:
            return False
        return (value & ~_COUNTED == self._base and value & _COUNTED < self.issued
                and str(uuid.UUID(int=value)) == request_id)


@dataclass(frozen=True, slots=True)
class Fields:
    """What every request of a run shares: who asks, for which task, where it goes."""

    requester: str
    task_id: str
    environment: str
    service: str
    address: str
    creator: str
    timestamp: int | None
    task_id_attribute: str = "pub_task_id"
    repo: str = ""  # clear-sign: the repository sent with each request


@dataclass(slots=True)
class Request:
    """One request: its work items, its id and the run's shared ``fields``. Its body and
    application properties are made from those when it is sent, not kept: 100,000 requests'
    bodies and property maps held from the start took 119 MB (1,250 bytes a request), these
    records 22 MB (tracemalloc around building them); and the session makes them as it sends
    them (lazy_single_requests, lazy_batch_requests), a window at a time, so that not even
    those are held all at once. A resend sends the same bytes: ``created`` is set when the
    body is first made."""

    items: list[WorkItem]  # one (single mode), or every (image, key) of a batch chunk
    request_id: str
    fields: Fields
    batch: bool = False
    slot: int | None = None  # batch: its place in operation_results (request order)
    created: str | None = None  # pubtools-sign's created, once the body is first made

    @property
    def address(self) -> str:
        return self.fields.address

    @property
    def properties(self) -> dict[str, Any]:
        """The application properties, as pubtools-sign 1.0.6 sets them."""
        f = self.fields
        common = {"service": f.service, "environment": f.environment, "owner_id": f.requester}
        if self.batch:
            return {**common, "mtype": BATCH, "source": "metadata",
                    "pipeline_run_id": str(f.task_id)}
        mtype, extra = self._kind()
        return {**common, "mtype": mtype, "source": "metadata", **extra}

    @property
    def body(self) -> str:
        """The JSON text that goes on the wire, field for field as pubtools-sign 1.0.6's: a
        container claim, or a file to clear-sign (its text in ``data``, with ``repo``) or to
        sign detached (its bytes in ``artifact``)."""
        if self.created is None:
            self.created = isodate_now()
        if self.batch:
            return self._batch_body()
        item, f = self.items[0], self.fields
        target = item.image
        if isinstance(target, SignFile):
            field, data = FILE_REQUESTS[target.kind][1], target.data
            repo = f.repo if target.kind == CLEARSIGN else ""
        else:
            reference = str(target.reference)
            field, repo = "claim_file", repo_of(reference)
            data = atomic_claim(reference, target.known_digest, f.creator, f.timestamp)
        body: dict[str, Any] = {
            "sig_key_id": item.key.key[-8:],
            field: base64.b64encode(data).decode("ascii"),
            "request_id": self.request_id,
            "created": self.created,
            "requested_by": f.requester,
            "repo": repo,
        }
        if item.key.name:
            body["sig_keyname"] = item.key.name
        body.update(self._kind()[1])
        return json.dumps(body)

    def _kind(self) -> tuple[str, dict[str, Any]]:
        """A single request's mtype and the fields both its body and properties end with."""
        target, f = self.items[0].image, self.fields
        if isinstance(target, SignFile):
            return FILE_REQUESTS[target.kind][0], {f.task_id_attribute: f.task_id}
        return CONTAINER_SIGNATURE, {f.task_id_attribute: f.task_id,
                                     "manifest_digest": target.known_digest}

    def _batch_body(self) -> str:
        """A batch request's body as msg_batch_signer builds it: every claim of the chunk (one
        repo), each listing every key."""
        f = self.fields
        chunk = list(dict.fromkeys(i.container for i in self.items))
        keys = list(dict.fromkeys(i.key for i in self.items))
        names = [k.name or "" for k in keys] if any(k.name for k in keys) else [""]
        return json.dumps({
            "claims": [{
                "claim_file": base64.b64encode(atomic_claim(
                    str(i.reference), i.known_digest, f.creator, f.timestamp)).decode("ascii"),
                "sig_keynames": names,
                "sig_key_ids": [k.key[-8:] for k in keys],
                "manifest_digest": i.known_digest,
                "repo": repo_of(str(i.reference)),
            } for i in chunk],
            "request_id": self.request_id,
            "created": self.created,
            "requested_by": f.requester,
            "pipeline_run_id": str(f.task_id),
        })


def build_request(item: WorkItem, **fields: Any) -> Request:
    """One signing request for ``item`` (``fields``: Fields' keywords)."""
    return single_requests([item], Fields(**fields))[0]


def single_requests(items: Iterable[WorkItem], fields: Fields,
                    ids: RequestIds | None = None) -> list[Request]:
    """One request per work item, as pubtools-sign 1.0.6's msg_signer sends them."""
    return list(lazy_single_requests(items, fields, ids))


def lazy_single_requests(items: Iterable[WorkItem], fields: Fields,
                         ids: RequestIds | None = None) -> Iterator[Request]:
    """``single_requests``, each made when it is taken (its id too: ids in request order)."""
    ids = ids or RequestIds()
    for item in items:
        yield Request([item], ids.new(), fields)


def build_batch_requests(images: Sequence[Image], keys: Sequence[SigningKey], *,
                         chunk_size: int, ids: RequestIds | None = None,
                         **fields: Any) -> list[Request]:
    """Batch requests as pubtools-sign 1.0.6's msg_batch_signer builds them: images grouped by
    repo, ``chunk_size`` claims a request, every claim listing every key."""
    return list(lazy_batch_requests(images, keys, chunk_size=chunk_size, ids=ids,
                                    **fields)[1])


def lazy_batch_requests(images: Sequence[Image], keys: Sequence[SigningKey], *,
                        chunk_size: int, ids: RequestIds | None = None,
                        **fields: Any) -> tuple[int, Iterator[Request]]:
    """``build_batch_requests``: how many there are, and the requests, each made when it is
    taken."""
    shared, ids = Fields(**fields), ids or RequestIds()
    by_repo: dict[str, list[Image]] = {}
    for image in images:
        by_repo.setdefault(repo_of(str(image.reference)), []).append(image)
    count = sum(-(-len(group) // chunk_size) for group in by_repo.values())

    def requests() -> Iterator[Request]:
        slot = 0
        for group in by_repo.values():
            for start in range(0, len(group), chunk_size):
                items = [WorkItem(i, k) for i in group[start:start + chunk_size] for k in keys]
                yield Request(items, ids.new(), shared, batch=True, slot=slot)
                slot += 1

    return count, requests()


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
        outer = parse_json(body)
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

