"""The "atomic container signature" claim of containers-signature(5): what a simple-signing
(OpenPGP) signature signs. ``atomic_claim`` builds it; ``claim_problem`` reads one as
containers/image reads it and says, as a ``Problem``, why it is not the claim for an image."""

from __future__ import annotations

import json
import re
from typing import Any

from signaction.formats.findings import Finding, Problem

CLAIM_TYPE = "atomic container signature"


def atomic_claim(reference: str, digest: str, creator: str, timestamp: int | None) -> bytes:
    """The JSON that a simple-signing signature wraps.

    ``critical`` holds exactly type, image and identity (readers reject unknown critical keys);
    ``optional.timestamp`` must be an integer (skopeo rejects a float).
    """
    optional: dict[str, object] = {"creator": creator}
    if timestamp is not None:
        optional["timestamp"] = int(timestamp)
    claim = {
        "critical": {
            "type": CLAIM_TYPE,
            "image": {"docker-manifest-digest": digest},
            "identity": {"docker-reference": reference},
        },
        "optional": optional,
    }
    return json.dumps(claim).encode("utf-8")


def _quoted(value: Any, limit: int = 120) -> str:
    """A value from the signing server, fit for a message: JSON-quoted (no raw line breaks or
    control characters), cut at ``limit`` characters."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _BadClaim(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):  # readers refuse a key twice; json.loads keeps the last
        keys = [k for k, _ in pairs]
        twice = next(k for k in keys if keys.count(k) > 1)
        raise _BadClaim(f"the claim has the key {_quoted(twice)} twice")
    return value


def _constant(name: str) -> Any:
    raise _BadClaim(f"the claim holds {name}, which is not JSON")


def _exact(value: Any, keys: set[str], where: str) -> dict:
    if not isinstance(value, dict):
        raise _BadClaim(f"{where} is not a JSON object")
    if set(value) != keys:
        extra, missing = sorted(set(value) - keys), sorted(keys - set(value))
        raise _BadClaim(f"{where} " + ("has unknown key(s) " + ", ".join(map(_quoted, extra))
                                       if extra else "lacks " + ", ".join(missing))
                        + " (readers refuse it)")
    return value


# The claim as ``atomic_claim`` writes it (json.dumps' separators and key order), after its
# identity: ``optional`` with a creator of printable ASCII without escapes and an integer
# timestamp of at most 18 digits (an int64), either or both left out. Each text this matches is
# a claim that ``claim_problem``'s parse accepts for that digest and identity.
_CANONICAL_OPTIONAL = re.compile(
    rb'\{(?:"creator": "[ !#-\[\]-~]*"(?:, "timestamp": -?(?:0|[1-9][0-9]{0,17}))?'
    rb'|"timestamp": -?(?:0|[1-9][0-9]{0,17}))?\}\}')


def canonical_claim(content: bytes, digest: str, identity: str) -> bool:
    """Whether ``content`` is, byte for byte, the claim for ``digest`` and ``identity`` in the
    form ``atomic_claim`` writes (what a signing server signs: the claim it was sent); such a
    claim needs no parse to be known good. False says nothing: ``claim_problem`` parses it."""
    head = (b'{"critical": {"type": "atomic container signature", "image": '
            b'{"docker-manifest-digest": ' + json.dumps(digest).encode("ascii")
            + b'}, "identity": {"docker-reference": ' + json.dumps(identity).encode("ascii")
            + b'}}, "optional": ')
    return (content.startswith(head)
            and _CANONICAL_OPTIONAL.fullmatch(content, len(head)) is not None)


def claim_problem(content: bytes, digest: str, identity: str) -> Problem | None:
    """Why ``content`` is not the atomic container signature claim for ``digest`` and
    ``identity`` as containers-signature(5) readers (containers/image) parse it: exactly
    ``critical`` and ``optional``; ``critical`` exactly type, image, identity, each exactly its
    one key; no key twice; ``optional.creator`` a string, ``optional.timestamp`` an integer.
    The claim as this project writes it is recognised as such without a parse (a byte
    comparison and one regular expression, ``canonical_claim``); anything else is parsed."""
    if canonical_claim(content, digest, identity):
        return None
    return parsed_claim_problem(content, digest, identity)


def parsed_claim_problem(content: bytes, digest: str, identity: str) -> Problem | None:
    """``claim_problem`` by parsing ``content`` whatever its form (tests compare the two)."""
    try:
        claim = json.loads(content.decode("utf-8"), object_pairs_hook=_object,
                           parse_constant=_constant)
    except _BadClaim as e:
        return Problem(Finding.UNREADABLE, str(e))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Problem(Finding.UNREADABLE, "the signed content is not a JSON claim")
    try:
        _exact(claim, {"critical", "optional"}, "the claim")
        critical = _exact(claim["critical"], {"type", "image", "identity"}, "critical")
        image = _exact(critical["image"], {"docker-manifest-digest"}, "critical.image")
        named = _exact(critical["identity"], {"docker-reference"}, "critical.identity")
        optional = claim["optional"]
        if not isinstance(optional, dict):
            raise _BadClaim("optional is not a JSON object")
    except _BadClaim as e:
        return Problem(Finding.UNREADABLE, str(e))
    if critical["type"] != CLAIM_TYPE:
        return Problem(Finding.UNREADABLE, f"critical.type is {_quoted(critical['type'])}, "
                       f"not {_quoted(CLAIM_TYPE)}")
    if image["docker-manifest-digest"] != digest:
        return Problem(Finding.OTHER_DIGEST, "it signs digest "
                       f"{_quoted(image['docker-manifest-digest'])}, not {digest}")
    if named["docker-reference"] != identity:
        return Problem(Finding.OTHER_IDENTITY, "it signs identity "
                       f"{_quoted(named['docker-reference'])}, not {identity}")
    if "creator" in optional and not isinstance(optional["creator"], str):
        return Problem(Finding.UNREADABLE, "optional.creator is not a string")
    if "timestamp" in optional and not _int64(optional["timestamp"]):
        return Problem(Finding.UNREADABLE, "optional.timestamp is not an integer")
    return None


def _int64(value: Any) -> bool:
    """An integral JSON number that fits in an int64 (containers/image reads it as one)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63
