"""The msg reply check's fast paths give the verdicts of the full ones (issue 26 item 1): the
claim recognised without a parse (claim.canonical_claim) against the parse
(claim.parsed_claim_problem) on mutated claims, and the reply checker thread (signer.Replies):
every reply checked, none in the event loop's thread, all reported before the block ends."""

from __future__ import annotations

import base64
import json
import random
import threading

import pytest

from signaction.formats.claim import (
    atomic_claim,
    canonical_claim,
    claim_problem,
    parsed_claim_problem,
)

D = "sha256:" + "ab" * 32
REF = "registry.example.com/ns/app:1.0"


def _same(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and
                                         (a.finding, a.detail) == (b.finding, b.detail))


@pytest.mark.parametrize("reference,digest,creator,timestamp", [
    (REF, D, "container-sign-action", 1767225600),
    (REF, D, "csa", None),
    ("localhost:5000/a/b/c:tag", "sha256:" + "0" * 64, "", 0),
    ("registry.example.com/ns/app@sha256:" + "1" * 64, D, "x y", -5),
    ("registry.example.com/ns/\u00e9t\u00e9:1", D, "cr\u00e9ateur \"q\"", 2**62),
])
def test_claims_we_write_take_the_fast_path(reference, digest, creator, timestamp):
    claim = atomic_claim(reference, digest, creator, timestamp)
    ascii_creator = creator.isascii() and '"' not in creator
    assert canonical_claim(claim, digest, reference) is ascii_creator
    assert claim_problem(claim, digest, reference) is None
    assert parsed_claim_problem(claim, digest, reference) is None


def _variants(rng: random.Random) -> list[bytes]:
    """Claims near the canonical form: structural changes and random byte edits."""
    base = atomic_claim(REF, D, "csa", 1767225600)
    out = [base, atomic_claim(REF, D, "csa", None), atomic_claim(REF, D, "", 0)]
    text = base.decode()
    for old, new in [("1767225600", "1767225600.0"), ("1767225600", "1e9"),
                     ("1767225600", str(2**63)), ("1767225600", "9" * 18),
                     ("1767225600", "9" * 19), ("1767225600", "-0"), ("1767225600", "NaN"),
                     ("1767225600", "true"), ("1767225600", '"1"'), ('"csa"', "3"),
                     ('"csa"', '"c\\u0073a"'), ('"csa"', '"c\\"a"'), ('"csa"', '"\u00e9"'),
                     ('"timestamp"', '"creator"'), ('"creator"', '"timestamp"'),
                     ('"creator": "csa", ', ""), ('"optional": {', '"optional": {"x": 1, '),
                     ("}}", "}, }}"), (": ", ":"), (", ", ","), ("sha256:", "sha256:\\u0061"),
                     ('"critical"', '"Critical"'), ("app:1.0", "app:1.1"), ("abab", "abac")]:
        out.append(text.replace(old, new, 1).encode())
        out.append(text.replace(old, new).encode())
    out.append(text.encode() + b" ")
    out.append(b" " + text.encode())
    out.append(text.encode() + b"}")
    out.append(text.encode()[:-1])
    out.append(text.encode("utf-16"))
    alphabet = b'{}[]":,. 0123456789-e\\tsaE\x00\xff\xc3\xa9'
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data) + 1)
            op = rng.randrange(3)
            if op == 0 and at < len(data):
                del data[at]
            elif op == 1:
                data.insert(at, rng.choice(alphabet))
            elif at < len(data):
                data[at] = rng.choice(alphabet)
        out.append(bytes(data))
    return out


def test_the_fast_path_accepts_only_what_the_parse_accepts():
    rng = random.Random(26)
    fast = 0
    for content in _variants(rng):
        parsed = parsed_claim_problem(content, D, REF)
        if canonical_claim(content, D, REF):
            fast += 1
            assert parsed is None, content
        assert _same(claim_problem(content, D, REF), parsed), content
        # and the same texts for another digest and identity are refused by both
        assert not canonical_claim(content, "sha256:" + "cd" * 32, REF)
        assert not canonical_claim(content, D, REF + "x")
    assert fast > 10  # the fast path was taken (some random edits keep the claim canonical)


def test_the_fast_path_reads_json_strings_as_json_does():
    for digest, identity in [(D, 'registry.example.com/ns/"q":1'), (D, "a\\b"),
                             ('sha256:\u2028', REF), ("sha256:\ud800", REF)]:
        claim = json.dumps({"critical": {"type": "atomic container signature",
                                         "image": {"docker-manifest-digest": digest},
                                         "identity": {"docker-reference": identity}},
                            "optional": {}}).encode()
        assert canonical_claim(claim, digest, identity)
        assert parsed_claim_problem(claim, digest, identity) is None


# -- the reply checker thread -----------------------------------------------------------------

def test_replies_are_checked_beside_the_event_loop(monkeypatch):
    from signaction.plan import Image, SigningKey, WorkItem
    from signaction.reference import parse_reference
    from signers.msg import signer as msg_signer
    from signers.msg.wire import Fields, single_requests
    from testbed.signing_server import instant_signed_message

    key = "0123456789ABCDEF0123456789ABCDEF01234567"
    items = [WorkItem(Image(parse_reference(f"registry.example.com/ns/app:{n}")[0],
                            f"sha256:{n:064x}", "test"), SigningKey(key, key))
             for n in range(200)]
    fields = Fields("me", "t", "prod", "svc", "topic://x", "csa", 1767225600)
    requests = single_requests(items, fields)
    loop = threading.current_thread()
    checked: list[threading.Thread] = []
    real = msg_signer.refusal

    def refusal(item, signature):
        checked.append(threading.current_thread())
        return real(item, signature)

    monkeypatch.setattr(msg_signer, "refusal", refusal)
    reported = []
    with msg_signer.Replies(lambda outcome: reported.append(
            (outcome, threading.current_thread())), None) as replies:
        for n, req in enumerate(requests):
            target = req.items[0].container
            claim = atomic_claim(str(target.reference), target.known_digest, "csa", 1767225600)
            if n == 7:  # another image's claim: refused
                claim = atomic_claim(str(target.reference), f"sha256:{999:064x}", "csa", None)
            signed = instant_signed_message(claim, key if n != 9 else key[:-8] + "FFFFFFFF")
            replies.deliver(req, {"signed_claim": base64.b64encode(signed).decode(),
                                  "request_id": req.request_id}, "{}", {"mtype": "x"})
        replies.fail(single_requests(items[:1], fields)[0], "no signature: given up")
    assert len(checked) == 200 and loop not in checked
    assert len(reported) == 201 and all(thread is not loop for _, thread in reported)
    errors = sorted(o.error for o, _ in reported if o.error)
    assert len(errors) == 3, errors
    assert errors[0] == "no signature: given up"
    assert errors[1].startswith("signature refused: it says it was signed by ")
    assert errors[2].startswith("signature refused: it signs digest")


def test_a_checker_error_is_raised_when_the_block_ends(monkeypatch):
    from signaction.plan import Image, SigningKey, WorkItem
    from signaction.reference import parse_reference
    from signers.msg import signer as msg_signer
    from signers.msg.wire import Fields, single_requests

    def broken(outcome):
        raise RuntimeError("a bug in report")

    item = WorkItem(Image(parse_reference("registry.example.com/ns/app:1")[0], D, "test"),
                    SigningKey("0123456789ABCDEF", "0123456789ABCDEF"))
    req = single_requests([item], Fields("me", "t", "prod", "svc", "topic://x", "csa", None))[0]
    with pytest.raises(RuntimeError, match="a bug in report"):
        with msg_signer.Replies(broken, None) as replies:
            replies.fail(req, "given up")


def test_no_more_credit_while_the_checker_is_behind():
    from signers.msg.session import CREDIT, MAX_BACKLOG, Session, Settings

    class Link:
        credit = CREDIT // 2 - 1
        granted = 0

        def flow(self, n):
            self.granted += n
            self.credit += n

    waiting = [MAX_BACKLOG]
    settings = Settings(["amqp://127.0.0.1:1"], "a", "b", "prod", "svc", 1.0, 1, 1, "request_id",
                        "pub_task_id")
    session = Session(settings, {}, lambda *a: None, lambda *a: None, 0.0, 1.0,
                      backlog=lambda: waiting[0])
    link = Link()
    session._credit(link)
    assert link.granted == 0  # the checker is MAX_BACKLOG replies behind: the broker keeps them
    waiting[0] = MAX_BACKLOG - 1
    session._credit(link)
    assert link.granted == CREDIT // 2 + 1 and link.credit == CREDIT
