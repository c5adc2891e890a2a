"""The messaging signer's pure parts: request fields as pubtools-sign 1.0.6 builds them, reply
parsing, and the config/preflight errors."""

from __future__ import annotations

import base64
import bz2
import json
import os
import random
import subprocess
import uuid
import zlib

import pytest

from signaction.errors import InputError
from signaction.formats import openpgp
from signaction.formats.claim import atomic_claim
from signaction.formats.openpgp import OpenPGPError
from signaction.inputs import parse_inputs
from signaction.plan import BLOB, CLEARSIGN, SignFile, WorkItem, build_plan
from signaction.signing import Finding, Problem
from signers.base import Options
from signers.msg import (
    BadReply,
    MsgSigner,
    build_request,
    claim_problem,
    parse_reply,
    refusal,
    repo_of,
    signature_of,
    signed_text,
)
from testbed.signing_server import INSTANT_SIGNATURE, _packet, instant_signed_message

D = "sha256:" + "ab" * 32


def item(ref="registry.example.com/ns/app:1.0", key="199E2F91FD431D51", name=None):
    args = ["--reference", ref, "--digest", D, "--signing-key", key]
    if name:
        args += ["--signing-key-name", name]
    return next(build_plan(parse_inputs(args, {}), {}).items())


def test_request_has_pubtools_sign_fields_and_properties():
    req = build_request(item(name="release"), requester="alice", task_id="t-1",
                        environment="prod", service="pubtools-sign",
                        task_id_attribute="pub_task_id", address="topic://X", creator="me 1",
                        timestamp=123)
    body = json.loads(req.body)
    assert list(body) == ["sig_key_id", "claim_file", "request_id", "created", "requested_by",
                          "repo", "sig_keyname", "pub_task_id", "manifest_digest"]
    assert body["sig_key_id"] == "FD431D51"
    assert body["request_id"] == req.request_id
    assert body["created"].endswith("Z") and "+" not in body["created"]
    assert body["requested_by"] == "alice"
    assert body["repo"] == "ns/app"
    assert (body["sig_keyname"], body["pub_task_id"], body["manifest_digest"]) == \
        ("release", "t-1", D)
    claim = json.loads(base64.b64decode(body["claim_file"]))
    assert claim == {"critical": {"type": "atomic container signature",
                                  "image": {"docker-manifest-digest": D},
                                  "identity": {
                                      "docker-reference": "registry.example.com/ns/app:1.0"}},
                     "optional": {"creator": "me 1", "timestamp": 123}}
    assert req.properties == {"service": "pubtools-sign", "environment": "prod",
                              "owner_id": "alice", "mtype": "container_signature",
                              "source": "metadata", "pub_task_id": "t-1", "manifest_digest": D}
    assert req.address == "topic://X"


def test_no_key_name_no_field_and_a_custom_task_id_attribute():
    req = build_request(item(), requester="a", task_id="t", environment="e", service="s",
                        task_id_attribute="pipeline_run", address="q", creator="c", timestamp=None)
    body = json.loads(req.body)
    assert "sig_keyname" not in body and body["pipeline_run"] == "t"
    assert req.properties["pipeline_run"] == "t" and "pub_task_id" not in req.properties


@pytest.mark.parametrize("ref,repo", [("r.io/a:1", "a"), ("127.0.0.1:5000/ns/sub/app:v1",
                                                         "ns/sub/app")])
def test_repo_is_the_reference_without_host_and_tag(ref, repo):
    assert repo_of(ref) == repo


def reply(**msg):
    return json.dumps({"msg": msg, "msg_id": "x", "timestamp": "t", "topic": "q"})


def test_parse_reply_and_signature():
    body = reply(request_id="r1", errors=[], signed_claim=base64.b64encode(b"SIG").decode())
    rid, msg, text = parse_reply(body, "request_id")
    assert rid == "r1" and text == body
    assert signature_of(msg) == b"SIG"
    assert signature_of({"errors": ["key not allowed", "again"]}) == \
        "signing server: key not allowed; again"
    assert "neither errors nor a signed_claim" in signature_of({"errors": []})
    assert "not base64" in signature_of({"signed_claim": "%%%"})


@pytest.mark.parametrize("body,kind", [
    ("not json", "malformed"), (json.dumps({"no": "msg"}), "malformed"),
    (reply(other="x"), "malformed"), (json.dumps({"msg": ["a"]}), "malformed"),
    (reply(request_id=5), "malformed"), (None, "malformed"),
    ("x" * (1 << 20 + 1), "oversized"),
    ('{"msg": ' + "[" * 200_000 + "]" * 200_000 + "}", "malformed"),  # deeper than the parser
])
def test_bad_replies_are_classified(body, kind):
    with pytest.raises(BadReply) as err:
        parse_reply(body, "request_id")
    assert err.value.kind == kind


MSG = {"messaging_brokers": ["amqps://localhost:5671"], "messaging_cert_key": "/nonexistent.pem",
       "messaging_ca_cert": "/nonexistent-ca.crt", "topic_send_to": "topic://S",
       "topic_listen_to": "queue://Consumer.{creator}.{task_id}.R", "environment": "prod",
       "service": "svc", "timeout": 5, "retries": 2, "send_retries": 2,
       "message_id_key": "request_id"}


def preflight(config, argv=()):
    inputs = parse_inputs(["--signer", "msg", "--image", f"r.io/a:1@{D}", "--signing-key", "K",
                           "--task-id", "t9", *argv], {})
    signer = MsgSigner(config, Options.default(inputs=inputs))
    signer.preflight(build_plan(inputs, {}))
    return signer


@pytest.mark.parametrize("change,message", [
    ({"messaging_brokers": ["http://x"]}, "msg_signer.messaging_brokers: 'http://x' is not an"),
    ({}, "msg_signer.messaging_cert_key: '/nonexistent.pem' is not a readable file"),
    ({"messaging_ca_cert": None}, "msg_signer.messaging_ca_cert: needed to verify"),
    ({"topic_listen_to": "queue://{nope}", "messaging_cert_key": __file__,
      "messaging_ca_cert": __file__}, "msg_signer.topic_listen_to: unknown placeholder 'nope'"),
    ({"messaging_cert_key": None, "messaging_ca_cert": __file__},
     "no requester: give --requester or a client certificate"),
    ({"messaging_cert_key": __file__, "messaging_ca_cert": __file__},
     "no PEM certificate in it"),
    ({"messaging_cert_key": __file__, "messaging_ca_cert": __file__,
      "verify_keyring": __file__}, "msg_signer.verify_keyring: "),
])
def test_preflight_errors_name_the_key(change, message):
    config = {k: v for k, v in {**MSG, **change}.items() if v is not None}
    with pytest.raises(InputError) as err:
        preflight(config, ["--requester", "r"] if "placeholder" in message else [])
    assert message in str(err.value)


def test_no_section_is_an_error():
    with pytest.raises(InputError, match="config: msg_signer: the section is required"):
        preflight(None)


def test_addresses_are_templated_and_requester_given(tmp_path):
    config = {**MSG, "messaging_brokers": ["amqp://127.0.0.1:5672"]}
    del config["messaging_cert_key"], config["messaging_ca_cert"]
    signer = preflight(config, ["--requester", "bob"])
    assert signer.settings.listen_to == "queue://Consumer.bob.t9.R"
    assert signer.requester == "bob"


def test_requester_from_the_certificate_cn(tls_material):
    config = {**MSG, "messaging_cert_key": str(tls_material.client_pem),
              "messaging_ca_cert": str(tls_material.ca_cert)}
    signer = preflight(config)
    assert signer.requester == tls_material.client_cn


def test_deadline_takes_the_smaller_of_input_and_config():
    config = {**MSG, "messaging_brokers": ["amqp://127.0.0.1:1"], "deadline": 30}
    del config["messaging_cert_key"], config["messaging_ca_cert"]
    assert preflight(config, ["--requester", "r", "--deadline", "10"]).settings.deadline == 10
    assert preflight(config, ["--requester", "r", "--deadline", "60"]).settings.deadline == 30
    assert preflight(config, ["--requester", "r"]).settings.deadline == 30


# -- the OpenPGP reader (signaction/formats/openpgp/), on what real gpg makes and on broken data

REF = "registry.example.com/ns/app:1.0"
CLAIM = atomic_claim(REF, D, "test", 1700000000)


def gpg(keys, key, *args, data=CLAIM):
    """What real gpg makes of ``data`` with ``key`` and ``args`` (e.g. "--sign")."""
    return subprocess.run(["gpg", "--batch", "--quiet", "--homedir", keys.home, "--local-user",
                           key, *args], input=data, capture_output=True, check=True).stdout


def packets(data):
    return openpgp.packets._packets(data)


def joined(pkts):
    return b"".join(_packet(tag, body) for tag, body in pkts)


@pytest.fixture(scope="module")
def plain(gpg_keys):
    """An uncompressed signed message of CLAIM by key A, as ``gpg -z 0 --sign`` makes it."""
    return gpg(gpg_keys, gpg_keys.a, "-z", "0", "--sign")


@pytest.mark.parametrize("args,compression", [
    (["-z", "0"], None), ([], "ZIP"), (["--compress-algo", "zlib"], "ZLIB"),
    (["--compress-algo", "bzip2"], "BZip2"), (["--textmode", "-z", "0"], None)])
def test_messages_made_by_gpg_are_read_with_their_issuer(gpg_keys, args, compression):
    data = gpg(gpg_keys, gpg_keys.a, *args, "--sign")
    message = openpgp.signed_message(data)
    assert (message.content, message.compression, message.one_pass) == (CLAIM, compression, True)
    assert gpg_keys.a in message.signature.issuers
    assert openpgp.issuer_problem(message.signature, gpg_keys.a) is None
    assert openpgp.issuer_problem(message.signature, gpg_keys.b) == \
        f"it says it was signed by {gpg_keys.a}, not by the requested key {gpg_keys.b}"


def test_a_large_message_in_partial_lengths_is_read_and_its_content_checked(gpg_keys):
    content = bytes(range(256)) * 400  # gpg writes literal data from a pipe in partial lengths
    data = gpg(gpg_keys, gpg_keys.a, "-z", "0", "--sign", data=content)
    assert any(b >= 0xE0 for b in data[15:17])  # the literal packet's first length is partial
    assert openpgp.signed_message(data).content == content
    changed = bytearray(data)
    changed[5000] ^= 1  # a byte of the content, in the first part
    with pytest.raises(OpenPGPError, match="not made over this content"):
        openpgp.signed_message(bytes(changed))


@pytest.mark.parametrize("compress", [False, True])
def test_every_truncation_is_a_clear_error(gpg_keys, plain, compress):
    data = gpg(gpg_keys, gpg_keys.a, "--sign") if compress else plain
    for n in range(len(data)):
        with pytest.raises(OpenPGPError):
            openpgp.signed_message(data[:n])


@pytest.mark.parametrize("compress", [False, True])
def test_corrupted_bytes_give_a_clear_error_or_a_message_never_another_exception(
        gpg_keys, plain, compress):
    data = gpg(gpg_keys, gpg_keys.a, "--sign") if compress else plain
    rng = random.Random(13)
    errors = 0
    for n in range(len(data)):
        for flip in (0x01, 0x80, 0xFF, rng.randrange(1, 256)):
            broken = bytearray(data)
            broken[n] ^= flip
            try:
                openpgp.signed_message(bytes(broken))
            except OpenPGPError:
                errors += 1
    assert errors > len(data)  # most corruptions are caught (the signature's number is not)


@pytest.mark.parametrize("order", [[1, 0, 2], [2, 1], [0, 2, 1], [1, 2, 0], [1], [0, 1],
                                   [2, 0, 1], [0, 0, 1], [1, 2, 2]])
def test_packets_in_the_wrong_order_are_refused(plain, order):
    pkts = packets(plain)  # one-pass signature, literal data, signature
    with pytest.raises(OpenPGPError, match=r"a signed message is \[one-pass signature,\] literal"):
        openpgp.signed_message(joined([pkts[i] for i in order]))


def test_more_packets_than_a_signed_message_has_are_not_read(plain):
    pkts = packets(plain)
    for data in (joined(pkts + [pkts[2]]), joined([pkts[0]] + pkts), plain + b"\xca\x03PGP",
                 b"\xca\x03PGP" * 100_000):  # marker packets, endlessly
        with pytest.raises(OpenPGPError, match="more than 3 packets: not a signed message"):
            openpgp.signed_message(data)


def test_a_detached_signature_a_clear_signed_text_and_armor_are_not_signed_messages(gpg_keys):
    for args, why in ((["--detach-sign"], "a detached signature"),
                      (["--clearsign"], r"ASCII armor \(-----BEGIN PGP SIGNED MESSAGE-----\)"),
                      (["--armor", "--sign"], r"ASCII armor \(-----BEGIN PGP MESSAGE-----\)")):
        with pytest.raises(OpenPGPError, match=why):
            openpgp.signed_message(gpg(gpg_keys, gpg_keys.a, *args))


@pytest.mark.parametrize("header,why", [
    (b"\xc2\xff\xff\xff\xff\xff", "says it has 4294967295 bytes, but only 0 follow"),  # 5 octets
    (b"\x8a\xff\xff\xff\xf0", "says it has 4294967280 bytes"),  # old format, 4 octets
    (b"\xcb\xdf\xff", "says it has 8383 bytes"),  # new, 2 octets
    (b"\xc2\xff\x00", "truncated packet header"), (b"\x89\x01", "truncated packet header"),
    (b"\x00\x01\x02", "does not start a packet"), (b"\xc0\x01x", "tag 0"),
])
def test_bogus_and_huge_length_fields_are_clear_errors(header, why):
    with pytest.raises(OpenPGPError, match=why):
        openpgp.signed_message(header)


def test_a_partial_length_on_a_signature_packet_is_refused():
    with pytest.raises(OpenPGPError, match="signature packet with a partial length"):
        openpgp.signed_message(b"\xc2\xe0x\x01y")


def test_endless_partial_lengths_are_refused(plain):
    pkts = packets(plain)
    body = pkts[1][1]
    literal = bytes([0xCB]) + b"".join(b"\xe0" + bytes([c]) for c in body + b" " * 1024) + \
        b"\x00"  # one byte a part
    with pytest.raises(OpenPGPError, match="in more than 1024 parts"):
        openpgp.signed_message(_packet(4, pkts[0][1]) + literal + _packet(2, pkts[2][1]))
    short = bytes([0xCB]) + b"".join(b"\xe0" + bytes([c]) for c in body[:200]) + \
        bytes([len(body) - 200]) + body[200:]
    assert openpgp.signed_message(_packet(4, pkts[0][1]) + short + _packet(2, pkts[2][1])) \
        .content == CLAIM  # a few partial lengths are fine


def test_bogus_lengths_inside_the_signature_packet_are_clear_errors(plain):
    ops, literal, (tag, sig) = packets(plain)
    hashed = int.from_bytes(sig[4:6], "big")
    unhashed_at = 6 + hashed
    cases = {
        "hashed subpackets say they have 65535 bytes": sig[:4] + b"\xff\xff" + sig[6:],
        "unhashed subpackets say they have 65535": sig[:unhashed_at] + b"\xff\xff"
                                                   + sig[unhashed_at + 2:],
        "a signature subpacket says it has 191 bytes": sig[:6] + b"\xbf" + sig[7:],
        "truncated": sig[:-3],
        "after the signature's numbers": sig + b"\x00",
    }
    for why, body in cases.items():
        with pytest.raises(OpenPGPError, match=why):
            openpgp.signed_message(joined([ops, literal, (tag, body)]))


def test_a_compression_bomb_is_refused_without_inflating_it(plain):
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15).compress(b"\0" * (200 << 20))
    with pytest.raises(OpenPGPError, match="more than 1048576 bytes"):
        openpgp.signed_message(_packet(8, b"\x01" + bomb + zlib.compressobj(9, zlib.DEFLATED,
                                                                             -15).flush()))
    with pytest.raises(OpenPGPError, match="more than 1048576 bytes"):
        openpgp.signed_message(_packet(8, b"\x03" + bz2.compress(b"\0" * (20 << 20))))


def test_compressed_data_must_be_whole_alone_and_hold_a_plain_message(plain):
    def deflate(data):
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush()

    assert openpgp.signed_message(_packet(8, b"\x01" + deflate(plain))).content == CLAIM
    assert openpgp.signed_message(_packet(8, b"\x02" + zlib.compress(plain))).content == CLAIM
    assert openpgp.signed_message(_packet(8, b"\x00" + plain)).content == CLAIM
    cases = {
        "truncated ZIP": _packet(8, b"\x01" + deflate(plain)[:-4]),
        "3 bytes after the end of the ZLIB": _packet(8, b"\x02" + zlib.compress(plain) + b"abc"),
        "does not decompress": _packet(8, b"\x02" + b"not zlib data"),
        "compression algorithm 9": _packet(8, b"\x09" + plain),
        "an empty compressed-data packet": _packet(8, b""),
        "packets after the compressed data: literal data": _packet(8, b"\x00" + plain)
        + _packet(11, b"b\x00\x00\x00\x00\x00x"),
        "compressed data in the compressed data": _packet(8, b"\x00" + _packet(8, b"\x00"
                                                                              + plain)),
    }
    for why, data in cases.items():
        with pytest.raises(OpenPGPError, match=why):
            openpgp.signed_message(data)


def test_a_signature_taken_from_another_message_is_refused(gpg_keys, plain):
    ops, literal, sig = packets(plain)
    other = atomic_claim("registry.example.com/ns/other:2", D, "test", 1700000000)
    swapped = joined([ops, (11, literal[1][:6] + other), sig])
    with pytest.raises(OpenPGPError, match="not made over this content"):
        openpgp.signed_message(swapped)
    b_ops = packets(gpg(gpg_keys, gpg_keys.b, "-z", "0", "--sign"))[0]
    with pytest.raises(OpenPGPError, match="one-pass signature packet names key"):
        openpgp.signed_message(joined([b_ops, literal, sig]))


def test_signature_types_and_algorithms_that_sign_no_document_are_refused(plain):
    ops, literal, (tag, sig) = packets(plain)
    for body, why in ((sig[:1] + b"\x13" + sig[2:], "type 0x13 is not a signature over a doc"),
                      (sig[:2] + b"\x63" + sig[3:], "algorithm 99 is not one OpenPGP signs"),
                      (b"\x05" + sig[1:], "version 5 is not supported")):
        with pytest.raises(OpenPGPError, match=why):
            openpgp.signed_message(joined([ops, literal, (tag, body)]))


def test_an_issuer_must_be_named_and_every_one_must_match(plain):
    ops, literal, (tag, sig) = packets(plain)
    hashed = int.from_bytes(sig[4:6], "big")
    bare = sig[:4] + b"\x00\x00" + b"\x00\x00" + sig[6 + hashed + 2 +
                                                   int.from_bytes(sig[6 + hashed:8 + hashed],
                                                                  "big"):]
    signature = openpgp.packets._signature(bare)
    assert signature.issuers == ()
    assert openpgp.issuer_problem(signature, "0123456789ABCDEF") == \
        "the signature names no issuer key"
    mixed = openpgp.Signature(4, 0, 1, 8, ("AAAAAAAA89ABCDEF", "AAAAAAAA00000000"), b"", b"")
    assert openpgp.issuer_problem(mixed, "0123456789ABCDEF").startswith(
        "it says it was signed by AAAAAAAA00000000")
    assert "shorter than a key id" in openpgp.issuer_problem(mixed, "9ABCDEF")


# -- what the msg signer refuses to write (msg.refusal), without a keyring ---------------------

def work_item(key, target=None):
    base = item(key=key)
    return WorkItem(target or base.image, base.key)


def test_what_gpg_signs_for_the_request_passes_and_anything_else_is_refused(gpg_keys, plain):
    assert refusal(work_item(gpg_keys.a), plain) is None
    assert refusal(work_item(gpg_keys.a), gpg(gpg_keys, gpg_keys.a, "--sign")) is None
    assert refusal(work_item(gpg_keys.b), plain) == \
        f"it says it was signed by {gpg_keys.a}, not by the requested key {gpg_keys.b}"
    assert refusal(work_item(gpg_keys.a), gpg(gpg_keys, gpg_keys.a, "--sign", data=b"{}")) == \
        "the claim lacks critical, optional (readers refuse it)"
    assert refusal(work_item(gpg_keys.a), gpg(gpg_keys, gpg_keys.a, "--detach-sign")) == \
        "not a binary OpenPGP signed message: a detached signature (a signature packet " \
        "alone), not a signed message"


def test_armor_is_refused_not_dearmored(gpg_keys):
    """An armored message holds the same signature, but the reply is handed on as it came
    (operation_results, --raw): refusing it keeps what is written and what is reported the
    same bytes, and a server that armors is told so at once."""
    for args in (["--armor", "--sign"], ["--clearsign"]):
        problem = refusal(work_item(gpg_keys.a), gpg(gpg_keys, gpg_keys.a, *args))
        assert problem.startswith("ASCII-armored OpenPGP data: podman and skopeo read only binary")


def claim_with(change=None, text=None):
    claim = json.loads(CLAIM)
    if change:
        change(claim)
    return text if text is not None else json.dumps(claim).encode()


@pytest.mark.parametrize("content,why", [
    (claim_with(lambda c: c["critical"]["image"].update({"docker-manifest-digest": "sha256:"
                                                          + "cd" * 32})),
     f'it signs digest "sha256:{"cd" * 32}", not {D}'),
    (claim_with(lambda c: c["critical"]["identity"].update({"docker-reference": "r.io/x:1"})),
     f'it signs identity "r.io/x:1", not {REF}'),
    (claim_with(lambda c: c["critical"]["identity"].update({"docker-reference":
                                                             "../../../etc"})),
     f'it signs identity "../../../etc", not {REF}'),
    (claim_with(lambda c: c["critical"]["identity"].update({"docker-reference":
                                                             "x\n::error::pwn"})),
     r'it signs identity "x\n::error::pwn", not'),
    (claim_with(lambda c: c["critical"].update({"type": "cosign container image signature"})),
     'critical.type is "cosign container image signature", not "atomic container signature"'),
    (claim_with(lambda c: c["critical"].update({"expires": 1})),
     'critical has unknown key(s) "expires" (readers refuse it)'),
    (claim_with(lambda c: c["critical"]["image"].update({"size": 1})),
     'critical.image has unknown key(s) "size"'),
    (claim_with(lambda c: c.pop("optional")), "the claim lacks optional"),
    (claim_with(lambda c: c.update({"extra": {}})), 'the claim has unknown key(s) "extra"'),
    (claim_with(lambda c: c["critical"].pop("identity")), "critical lacks identity"),
    (claim_with(lambda c: c.update({"optional": []})), "optional is not a JSON object"),
    (claim_with(lambda c: c["optional"].update({"timestamp": 1.5})),
     "optional.timestamp is not an integer"),
    (claim_with(lambda c: c["optional"].update({"timestamp": True})),
     "optional.timestamp is not an integer"),
    (claim_with(lambda c: c["optional"].update({"creator": 7})),
     "optional.creator is not a string"),
    (claim_with(text=CLAIM[:-1] + b', "optional": {}}'), 'the key "optional" twice'),
    (claim_with(text=CLAIM.replace(b"1700000000", b"NaN")), "holds NaN, which is not JSON"),
    (claim_with(text=CLAIM.replace(b"1700000000", b"1e999")), "timestamp is not an integer"),
    (claim_with(text=b"[" * 100000), "not a JSON claim"),
    (claim_with(text=b"\xff\xfe{}"), "not a JSON claim"),
    (claim_with(text=b'"critical"'), "the claim is not a JSON object"),
])
def test_a_claim_is_read_as_containers_image_reads_it(content, why):
    assert claim_problem(CLAIM, D, REF) is None
    problem = claim_problem(content, D, REF)
    assert problem is not None and why in problem.detail
    problem = refusal(work_item("0123456789ABCDEF"),
                      instant_signed_message(content, "89ABCDEF"))
    assert problem is not None and why in problem and "\n" not in problem


def test_timestamps_and_optional_keys_that_readers_accept_pass():
    for change in (lambda c: c["optional"].update({"timestamp": 1700000000.0}),
                   lambda c: c["optional"].clear(),
                   lambda c: c["optional"].update({"anything": [1, 2]})):
        assert claim_problem(claim_with(change), D, REF) is None
    assert claim_problem(claim_with(lambda c: c["optional"].update({"timestamp": 2**63})), D,
                         REF) == Problem(Finding.UNREADABLE, "optional.timestamp is not an integer")


def test_the_instant_servers_message_passes_for_the_key_asked_only():
    data = instant_signed_message(CLAIM, "89ABCDEF")
    assert refusal(work_item("0123456789ABCDEF"), data) is None
    assert refusal(work_item("0123456789ABCDEE"), data).startswith("it says it was signed by ")
    assert refusal(work_item("0123456789ABCDEF"), INSTANT_SIGNATURE).startswith(
        "not a binary OpenPGP signed message: not OpenPGP data")
    assert refusal(work_item("0123456789ABCDEF"), os.urandom(300)).startswith(
        "not a binary OpenPGP signed message: ")


def file_item(key, kind, data):
    return work_item(key, SignFile("notes.txt", data, kind, "test"))


@pytest.mark.parametrize("text", [b"release notes\nline two\n", b"a  \n\n- dash\r\n-x\n\n",
                                  b"no newline", b"", "w\xe4rld\n".encode("latin-1")])
def test_clear_signed_texts_are_checked_against_the_text_sent(gpg_keys, text):
    signed = gpg(gpg_keys, gpg_keys.a, "--clearsign", data=text)
    assert openpgp.clearsigned(signed)[0] == signed_text(text)
    assert refusal(file_item(gpg_keys.a, CLEARSIGN, text), signed) is None
    assert refusal(file_item(gpg_keys.a, CLEARSIGN, text + b"more"), signed) == \
        "the clear-signed text is not the text that was sent"
    assert refusal(file_item(gpg_keys.b, CLEARSIGN, text), signed).startswith(
        "it says it was signed by")


def test_what_is_not_a_clear_signed_text_is_refused(gpg_keys):
    text = b"notes\n"
    signed = gpg(gpg_keys, gpg_keys.a, "--clearsign", data=text)
    head, sig = signed.split(b"-----BEGIN PGP SIGNATURE-----\n")
    lines = sig.split(b"\n")
    crc = next(i for i, line in enumerate(lines) if line.startswith(b"="))
    cases = {
        "does not start with -----BEGIN PGP SIGNED MESSAGE-----": INSTANT_SIGNATURE,
        "without -----BEGIN PGP SIGNATURE-----": head,
        "no -----END PGP SIGNATURE-----": signed.replace(b"-----END PGP SIGNATURE-----", b""),
        "the checksum does not match": head + b"-----BEGIN PGP SIGNATURE-----\n" + b"\n".join(
            lines[:crc] + [b"=AAAA"] + lines[crc + 1:]),
        "not base64": signed.replace(lines[1][:4], b"!!!!"),
        "data after -----END PGP SIGNATURE-----": signed + b"trailing\n",
        "a header line that is not 'Key: value'": signed.replace(
            b"-----BEGIN PGP SIGNED MESSAGE-----\n", b"-----BEGIN PGP SIGNED MESSAGE-----\nx\n"),
        "not made over this content": signed.replace(b"notes", b"nOtes"),
        "holds signature, signature, not one signature": head + b"-----BEGIN PGP SIGNATURE-----"
        b"\n\n" + base64.b64encode(2 * base64.b64decode(b"".join(lines[1:crc])))
        + b"\n-----END PGP SIGNATURE-----\n",
    }
    for why, data in cases.items():
        problem = refusal(file_item(gpg_keys.a, CLEARSIGN, text), data)
        assert problem is not None and why in problem, (why, problem)


def test_blob_signatures_are_detached_binary_signatures_of_the_bytes_sent(gpg_keys):
    blob = os.urandom(3000)
    sig = gpg(gpg_keys, gpg_keys.a, "--detach-sign", data=blob)
    assert refusal(file_item(gpg_keys.a, BLOB, blob), sig) is None
    assert "not made over this content" in refusal(file_item(gpg_keys.a, BLOB, blob + b"x"), sig)
    assert refusal(file_item(gpg_keys.b, BLOB, blob), sig).startswith("it says it was signed by")
    assert "a detached signature is one signature packet" in refusal(
        file_item(gpg_keys.a, BLOB, blob), gpg(gpg_keys, gpg_keys.a, "-z", "0", "--sign",
                                               data=blob))
    assert refusal(file_item(gpg_keys.a, BLOB, blob), INSTANT_SIGNATURE).startswith(
        "not a detached binary signature of the file: ")
    assert "ASCII armor, not a binary detached signature" in refusal(
        file_item(gpg_keys.a, BLOB, blob), gpg(gpg_keys, gpg_keys.a, "--armor", "--detach-sign",
                                               data=blob))


def test_raw_never_prints_a_signature_this_project_refused():
    from pubtools_commands import raw_lines
    ok = [{"msg": {"errors": [], "signed_claim": "GOOD"}}, {}]
    refused = [{"msg": {"errors": [], "signed_claim": "BAD"}}, {}]
    results = {"operation_results": [ok, refused, ""],
               "images": [{"status": "ok", "error": None},
                          {"status": "failed", "error": "signature refused: another digest"},
                          {"status": "failed", "error": "no signature: no reply"}]}
    out, err = raw_lines(results, "container", "msg")
    assert out == ["GOOD"]
    assert err == ["signature refused: another digest", "no signature: no reply"]


def test_request_ids_are_uuid4s_that_know_their_run_without_a_set():
    from signers.msg.wire import RequestIds

    ids, other = RequestIds(), RequestIds()
    made = [ids.new() for _ in range(1000)]
    assert len(set(made)) == 1000
    for text in made[:3] + made[-3:]:
        assert uuid.UUID(text).version == 4 and str(uuid.UUID(text)) == text
        assert text in ids and text not in other
    nxt = str(uuid.UUID(int=uuid.UUID(made[-1]).int + 1))  # not issued yet
    assert nxt not in ids
    assert made[0].upper() not in ids and "nope" not in ids and str(uuid.uuid4()) not in ids
