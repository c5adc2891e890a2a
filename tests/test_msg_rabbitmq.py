"""The messaging signer against a real broker: a private RabbitMQ 3.10 node with the AMQP 1.0
plugin, TLS with verify_peer (client certificates required) and the broker verified by the client,
RabbitMQ-style addresses, the broker killed and restarted in the middle of a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ENTRYPOINT, gpg_decrypt, run_entrypoint, wait_until
from testbed import launch, stop


@pytest.fixture
def channel():
    """Addresses of one test: RabbitMQ style; /queue/ keeps what is sent before a reader."""
    task = f"t-{uuid.uuid4().hex[:8]}"
    return {"task": task, "requests": f"/queue/robosig.requests.{task}",
            "listen": "/queue/pub.sign.{creator}.{task_id}"}


@pytest.fixture
def rabbit_server(rabbitmq, gpg_keys, tls_material, channel):
    servers = []

    def start(**switches):
        reply = channel["listen"].format(creator=tls_material.client_cn, task_id=channel["task"])
        args = ["--broker", rabbitmq.amqps_url, "--cert-key", str(tls_material.client_pem),
                "--ca-cert", str(tls_material.ca_cert), "--listen-to", channel["requests"],
                "--reply-to", reply, "--gnupg-home", gpg_keys.home]
        for name, value in switches.items():
            flag = "--" + name.replace("_", "-")
            args += [flag] if value is True else [flag, str(value)]
        proc, _ = launch("testbed.signing_server", args, timeout=60)
        servers.append(proc)
        return proc

    yield start
    for proc in servers:
        stop(proc)


def conf(tmp_path, rabbitmq, tls_material, channel, **extra):
    body = {"messaging_brokers": [rabbitmq.amqps_url],
            "messaging_cert_key": str(tls_material.client_pem),
            "messaging_ca_cert": str(tls_material.ca_cert),
            "topic_send_to": channel["requests"], "topic_listen_to": channel["listen"],
            "environment": "stage", "service": "container-sign-action", "timeout": 20,
            "retries": 3, "send_retries": 2, "message_id_key": "request_id", **extra}
    path = tmp_path / "conf.yaml"
    path.write_text(json.dumps({"msg_signer": body}))
    return path


def args(config, out, key, task, n):
    a = ["--signer", "msg", "--config-file", str(config), "--task-id", task,
         "--output-dir", str(out), "--signing-key", key]
    for i in range(n):
        a += ["--reference", f"localhost:5000/ns/app{i % 7}:v{i}", "--digest", f"sha256:{i:064x}"]
    return a


def signature_files(out):
    return sorted(out.rglob("signature-*"))


def test_tls_with_client_certificates_and_rabbitmq_addresses(tmp_path, rabbitmq, rabbit_server,
                                                             gpg_keys, tls_material, channel):
    rabbit_server()
    out = tmp_path / "out"
    run = run_entrypoint(*args(conf(tmp_path, rabbitmq, tls_material, channel), out,
                               gpg_keys.a, channel["task"], 20))
    assert run.returncode == 0, run.stderr
    results = json.loads((out / "results.json").read_text())
    assert [e["status"] for e in results["images"]] == ["ok"] * 20
    for entry in results["images"]:
        claim, fpr = gpg_decrypt((out / entry["signature_path"]).read_bytes(), gpg_keys.home)
        assert fpr == gpg_keys.a
        assert json.loads(claim)["critical"]["identity"]["docker-reference"] == entry["reference"]
    assert str(signature_files(out)[0].relative_to(out)).startswith("lookaside/localhost_5000/ns/")


def test_broker_killed_and_restarted_mid_run_loses_and_duplicates_nothing(
        tmp_path, rabbitmq, rabbit_server, gpg_keys, tls_material, channel):
    rabbit_server(delay=0.01)
    out = tmp_path / "out"
    n = 500
    # timeout x retries bounds how long the broker may be away: RabbitMQ takes ~8-25 s to start.
    config = conf(tmp_path, rabbitmq, tls_material, channel, timeout=40, retries=3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    proc = subprocess.Popen([sys.executable, str(ENTRYPOINT),
                             *args(config, out, gpg_keys.a, channel["task"], n)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(signature_files(out)) >= 50, 120, "50 signatures", proc)
        rabbitmq.kill()  # SIGKILL: requests and replies in flight are lost with it
        before = len(signature_files(out))
        rabbitmq.start()  # same URLs; the client and the server reconnect on their own
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert before < n, "the broker must go away while requests are still unanswered"
    results = json.loads((out / "results.json").read_text())
    assert [e["status"] for e in results["images"]] == ["ok"] * n
    files = signature_files(out)
    assert len(files) == n and all(p.name == "signature-1" for p in files)
    assert results["signer_stats"]["reconnects"] >= 1
    for entry in results["images"][::50]:
        _, fpr = gpg_decrypt((out / entry["signature_path"]).read_bytes(), gpg_keys.home)
        assert fpr == gpg_keys.a


def test_a_broker_certificate_from_an_unknown_ca_is_refused(tmp_path, rabbitmq, gpg_keys,
                                                           tls_material, channel):
    out = tmp_path / "out"
    config = conf(tmp_path, rabbitmq, tls_material, channel,
                  messaging_ca_cert=str(tls_material.rogue_ca_cert))
    started = time.monotonic()
    run = run_entrypoint(*args(config, out, gpg_keys.a, channel["task"], 2))
    assert run.returncode == 1
    assert time.monotonic() - started < 15  # refused at once, not after timeout x retries
    results = json.loads((out / "results.json").read_text())
    assert all(e["error"].startswith("no signature: TLS: the broker's certificate was refused")
               for e in results["images"]), results["images"]
    assert signature_files(out) == []


def test_an_address_rabbitmq_refuses_fails_at_once(tmp_path, rabbitmq, gpg_keys, tls_material,
                                                  channel):
    out = tmp_path / "out"
    config = conf(tmp_path, rabbitmq, tls_material, channel,
                  topic_send_to="topic://VirtualTopic.eng.robosignatory.container.sign")
    started = time.monotonic()
    run = run_entrypoint(*args(config, out, gpg_keys.a, channel["task"], 2))
    assert run.returncode == 1
    assert time.monotonic() - started < 15
    results = json.loads((out / "results.json").read_text())
    assert all("the broker refused the link: amqp:invalid-field" in e["error"]
               for e in results["images"]), results["images"]


def test_separate_certificate_and_key_files(tmp_path, rabbitmq, rabbit_server, gpg_keys,
                                            tls_material, channel):
    rabbit_server()
    out = tmp_path / "out"
    config = conf(tmp_path, rabbitmq, tls_material, channel,
                  messaging_cert=str(tls_material.client_cert),
                  messaging_key=str(tls_material.client_key))
    data = json.loads(config.read_text())
    del data["msg_signer"]["messaging_cert_key"]
    config.write_text(json.dumps(data))
    run = run_entrypoint(*args(config, out, gpg_keys.a, channel["task"], 3))
    assert run.returncode == 0, run.stderr
    assert len(signature_files(out)) == 3


def test_turning_broker_verification_off_is_possible_and_loud(tmp_path, gpg_keys, tls_material,
                                                             channel):
    # A broker whose certificate comes from a CA nobody trusts: refused by default (above),
    # accepted with broker_tls_verify: false, and the run says so.
    broker, info = launch("testbed.broker", [
        "--listen", "127.0.0.1:0", "--tls-cert", tls_material.rogue_server_cert,
        "--tls-key", tls_material.rogue_server_key])
    url = f"amqps://localhost:{info['port']}"
    server, _ = launch("testbed.signing_server", [
        "--broker", url, "--cert-key", tls_material.client_pem, "--listen-to", "queue://req",
        "--reply-to", f"queue://rep.{channel['task']}", "--gnupg-home", gpg_keys.home])
    try:
        config = tmp_path / "conf.yaml"
        config.write_text(json.dumps({"msg_signer": {
            "messaging_brokers": [url], "messaging_cert_key": str(tls_material.client_pem),
            "topic_send_to": "queue://req", "topic_listen_to": "queue://rep.{task_id}",
            "environment": "e", "service": "s", "timeout": 10, "retries": 2,
            "send_retries": 1, "message_id_key": "request_id", "broker_tls_verify": False}}))
        out = tmp_path / "out"
        run = run_entrypoint(*args(config, out, gpg_keys.a, channel["task"], 2))
    finally:
        stop(server)
        stop(broker)
    assert run.returncode == 0, run.stderr
    assert "broker_tls_verify is false: the broker's certificate is NOT verified" in \
        run.stdout + run.stderr
    assert len(signature_files(out)) == 2
