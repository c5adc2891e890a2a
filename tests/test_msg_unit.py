"""The messaging signer's pure parts: request fields as pubtools-sign 1.0.6 builds them, reply
parsing, and the config/preflight errors."""

from __future__ import annotations

import base64
import json

import pytest

from signaction.errors import InputError
from signaction.inputs import parse_inputs
from signaction.plan import build_plan
from signers.msg import BadReply, MsgSigner, build_request, parse_reply, repo_of, signature_of

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
                                  "identity": {"docker-reference": "registry.example.com/ns/app:1.0"}},
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
    signer = MsgSigner(config, {}, inputs)
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
