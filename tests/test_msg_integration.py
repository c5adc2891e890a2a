"""The messaging signer end to end through the embedded broker (ActiveMQ semantics: virtual topics)
and the reference signing server making real GPG signatures; each fault has an exact outcome."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ENTRYPOINT, gpg_decrypt, run_entrypoint, wait_until
from testbed import launch, stop

SEND_TO = "topic://VirtualTopic.eng.robosignatory.container.sign"
SERVER_QUEUE = "queue://Consumer.robosig.VirtualTopic.eng.robosignatory.container.sign"
REPLY_TOPIC = "topic://VirtualTopic.eng.pub.sign"
LISTEN_TO = "queue://Consumer.{creator}.{task_id}.VirtualTopic.eng.pub.sign"


@pytest.fixture
def broker():  # one per test: leftover replies on virtual topics would reach the next test
    proc, info = launch("testbed.broker", ["--listen", "127.0.0.1:0"])
    yield f"amqp://127.0.0.1:{info['port']}"
    stop(proc)


class Server:
    def __init__(self, url: str, gpg_keys, **switches):
        args = ["--broker", url, "--listen-to", SERVER_QUEUE, "--reply-to", REPLY_TOPIC,
                "--gnupg-home", gpg_keys.home]
        for name, value in switches.items():
            flag = "--" + name.replace("_", "-")
            args += [flag] if value is True else [flag, str(value)]
        self.proc, _ = launch("testbed.signing_server", args)

    def stop(self):
        stop(self.proc)


@pytest.fixture
def server(broker, gpg_keys):
    started = []

    def start(**switches) -> Server:
        s = Server(broker, gpg_keys, **switches)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def conf(tmp_path: Path, url: str, tls_material, section="msg_signer", **extra) -> Path:
    """pubtools-sign's conf.yaml shape, ActiveMQ-style addresses, plain amqp on loopback; the
    client certificate gives the requester (its CN), as in pubtools-sign."""
    body = {"messaging_brokers": [url], "messaging_cert_key": str(tls_material.client_pem),
            "messaging_ca_cert": str(tls_material.ca_cert), "topic_send_to": SEND_TO,
            "topic_listen_to": LISTEN_TO, "environment": "prod", "service": "pubtools-sign",
            "timeout": 20, "retries": 3, "send_retries": 2, "message_id_key": "request_id",
            "log_level": "info", "key_aliases": {}, **extra}
    path = tmp_path / "conf.yaml"
    path.write_text(json.dumps({section: body}))
    return path


def images(n: int, repo: str = "ns/app") -> list[str]:
    args = []
    for i in range(n):
        args += ["--reference", f"registry.example.com/{repo}{i % 3}:v{i}",
                 "--digest", f"sha256:{i:064x}"]
    return args


def sign(config: Path, out: Path, keys: list[str], image_args: list[str], *extra: str,
         env=None):
    args = ["--signer", "msg", "--config-file", str(config), "--task-id", "t1",
            "--output-dir", str(out)]
    for key in keys:
        args += ["--signing-key", key]
    return run_entrypoint(*args, *image_args, *extra, env=env)


def check_signatures(out: Path, gpg_keys, expected_fpr: str | None = None) -> dict:
    """Every ok entry's file decrypts to the claim asked for; returns results.json."""
    results = json.loads((out / "results.json").read_text())
    for entry in results["images"]:
        if entry["status"] != "ok":
            continue
        claim, fpr = gpg_decrypt((out / entry["signature_path"]).read_bytes(), gpg_keys.home)
        assert fpr == (expected_fpr or entry["signing_key"])
        critical = json.loads(claim)["critical"]
        assert critical["image"]["docker-manifest-digest"] == entry["digest"]
        assert critical["identity"]["docker-reference"] == entry["reference"]
    return results


def signature_files(out: Path) -> list[Path]:
    return sorted(out.rglob("signature-*"))


def test_pubtools_conf_unchanged_signs_40_images(tmp_path, broker, server, gpg_keys,
                                                  tls_material):
    server()
    out = tmp_path / "out"
    run = sign(conf(tmp_path, broker, tls_material), out, [gpg_keys.a], images(40))
    assert run.returncode == 0, run.stderr
    results = check_signatures(out, gpg_keys)
    assert [e["status"] for e in results["images"]] == ["ok"] * 40
    assert len(signature_files(out)) == 40
    assert all(p.name == "signature-1" for p in signature_files(out))
    # pubtools-sign's result keys, with one [reply, properties] per reply
    assert results["signer_result"] == {"status": "ok", "error_message": ""}
    assert len(results["operation_results"]) == 40
    assert results["operation_results"][0][0]["msg"]["requested_by"] == tls_material.client_cn


def test_a_failing_key_exits_1_and_keeps_the_others(tmp_path, broker, server, gpg_keys,
                                                    tls_material):
    server(error_for_key=gpg_keys.b[-8:])
    out = tmp_path / "out"
    run = sign(conf(tmp_path, broker, tls_material), out, [gpg_keys.a, gpg_keys.b], images(5))
    assert run.returncode == 1
    results = check_signatures(out, gpg_keys)
    by_key = {k: [e for e in results["images"] if e["signing_key"] == k]
              for k in (gpg_keys.a, gpg_keys.b)}
    assert [e["status"] for e in by_key[gpg_keys.a]] == ["ok"] * 5
    assert [e["status"] for e in by_key[gpg_keys.b]] == ["failed"] * 5
    assert all(e["error"].startswith("signing server: ") for e in by_key[gpg_keys.b])
    assert len(signature_files(out)) == 5


def test_stray_duplicate_garbage_and_oversized_replies_are_ignored_and_counted(
        tmp_path, broker, server, gpg_keys, tls_material):
    server(stray=2, duplicate=True, garbage=True, oversized=2_000_000)
    out = tmp_path / "out"
    n = 6
    run = sign(conf(tmp_path, broker, tls_material), out, [gpg_keys.a], images(n))
    assert run.returncode == 0, run.stderr
    results = check_signatures(out, gpg_keys)
    assert [e["status"] for e in results["images"]] == ["ok"] * n
    assert all(p.name == "signature-1" for p in signature_files(out))  # none written twice
    stats = results["signer_stats"]
    # Replies that arrive after the last expected one are not waited for, so the counts of
    # what comes after each real reply are at most n (the duplicates of the last ones may
    # arrive after the run closed).
    assert stats["stray"] == 2 * n
    assert stats["malformed"] == 2 * n
    assert stats["oversized"] == n
    assert n - 1 <= stats["duplicate"] <= n


def test_a_wrong_key_signature_is_refused_with_verify_keyring(tmp_path, broker, server,
                                                              gpg_keys, tls_material):
    keyring = tmp_path / "trusted.gpg"
    keyring.write_bytes(subprocess.run(["gpg", "--export", gpg_keys.a, gpg_keys.b],
                                       env={**os.environ, **gpg_keys.env()},
                                       capture_output=True, check=True).stdout)
    server(wrong_key=gpg_keys.b)
    out = tmp_path / "out"
    run = sign(conf(tmp_path, broker, tls_material, verify_keyring=str(keyring)), out,
               [gpg_keys.a], images(3))
    assert run.returncode == 1
    results = json.loads((out / "results.json").read_text())
    assert [e["status"] for e in results["images"]] == ["failed"] * 3
    assert all(f"signed by {gpg_keys.b}, not by the requested key {gpg_keys.a}" in e["error"]
               for e in results["images"])
    assert signature_files(out) == []


def test_verify_keyring_accepts_the_right_signatures(tmp_path, broker, server, gpg_keys,
                                                     tls_material):
    keyring = tmp_path / "trusted.gpg"
    keyring.write_bytes(subprocess.run(["gpg", "--export", gpg_keys.a],
                                       env={**os.environ, **gpg_keys.env()},
                                       capture_output=True, check=True).stdout)
    server()
    out = tmp_path / "out"
    run = sign(conf(tmp_path, broker, tls_material, verify_keyring=str(keyring)), out,
               [gpg_keys.a], images(3))
    assert run.returncode == 0, run.stderr
    assert len(signature_files(out)) == 3


def test_only_unanswered_requests_are_sent_again(tmp_path, broker, server, gpg_keys,
                                                 tls_material):
    # The server drops every 2nd request it sees: 4 requests -> 2 answered; the 2 resent ->
    # 1 answered; the last one resent -> answered. Three send cycles, all signed.
    server(drop_every=2)
    out = tmp_path / "out"
    run = sign(conf(tmp_path, broker, tls_material, timeout=1, retries=1, send_retries=3), out,
               [gpg_keys.a], images(4))
    assert run.returncode == 0, run.stderr
    results = check_signatures(out, gpg_keys)
    assert [e["status"] for e in results["images"]] == ["ok"] * 4
    assert results["signer_stats"]["resent"] == 3  # 2 + 1: only the unanswered ones


def test_no_reply_fails_after_timeout_x_retries_x_send_retries(tmp_path, broker, gpg_keys,
                                                               tls_material):
    out = tmp_path / "out"  # no signing server at all
    started = time.monotonic()
    run = sign(conf(tmp_path, broker, tls_material, timeout=1, retries=2, send_retries=2), out,
               [gpg_keys.a], images(2))
    elapsed = time.monotonic() - started
    assert run.returncode == 1
    results = json.loads((out / "results.json").read_text())
    assert all(e["error"] == "no signature: no reply: 2 send attempt(s) x 2 receive attempt(s) "
                             "of 1 s" for e in results["images"])
    assert 4 <= elapsed < 4 + 3  # 1 s x 2 x 2, plus start-up


def test_the_deadline_ends_the_run_with_partial_results(tmp_path, broker, server, gpg_keys,
                                                       tls_material):
    server(drop_every=2)  # half the requests never get a reply
    out = tmp_path / "out"
    started = time.monotonic()
    run = sign(conf(tmp_path, broker, tls_material, timeout=60, retries=3, send_retries=2), out,
               [gpg_keys.a], images(6), "--deadline", "3")
    elapsed = time.monotonic() - started
    assert run.returncode == 1
    assert elapsed < 3 + 1.5, elapsed  # the deadline counts from the start of the run
    results = check_signatures(out, gpg_keys)
    statuses = [e["status"] for e in results["images"]]
    assert statuses.count("ok") == 3 and statuses.count("failed") == 3
    assert all(e["error"] == "no signature: the deadline was reached"
               for e in results["images"] if e["status"] == "failed")


def test_a_signing_server_restart_loses_and_duplicates_nothing(tmp_path, broker, server,
                                                               gpg_keys, tls_material):
    first = server(delay=0.05)
    out = tmp_path / "out"
    config = conf(tmp_path, broker, tls_material, timeout=10)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    proc = subprocess.Popen(["python3" if False else os.sys.executable, str(ENTRYPOINT),
                             "--signer", "msg", "--config-file", str(config), "--task-id", "t1",
                             "--output-dir", str(out), "--signing-key", gpg_keys.a,
                             *images(120)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(signature_files(out)) >= 20, 60, "20 signatures", proc)
        first.stop()  # requests keep arriving in its queue meanwhile
        server()  # a new server takes them from the same virtual-topic consumer queue
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    results = check_signatures(out, gpg_keys)
    assert [e["status"] for e in results["images"]] == ["ok"] * 120
    assert len(signature_files(out)) == 120
    assert all(p.name == "signature-1" for p in signature_files(out))


def test_batch_mode(tmp_path, broker, server, gpg_keys, tls_material):
    server()
    out = tmp_path / "out"
    config = conf(tmp_path, broker, tls_material, section="msg_batch_signer", chunk_size=2)
    run = sign(config, out, [gpg_keys.a, gpg_keys.b], images(7), "--signer-type", "batch")
    assert run.returncode == 0, run.stderr
    results = check_signatures(out, gpg_keys)
    assert [e["status"] for e in results["images"]] == ["ok"] * 14
    # 7 images in 3 repos (3+2+2) in chunks of 2: 2+1+1 = 4 requests, one reply each, in the
    # order pubtools-sign sends them (repos by first appearance, then chunks)
    assert [[c["manifest_digest"] for c in reply[0]["msg"]["claims"]]
            for reply in results["operation_results"]] == \
        [[f"sha256:{i:064x}" for i in chunk] for chunk in ([0, 3], [6], [1, 4], [2, 5])]


def test_operation_results_are_in_request_order_with_failures_and_gaps(
        tmp_path, broker, server, gpg_keys, tls_material):
    """pubtools-sign's layout, which Konflux pairs with operation.references by position: entry i
    answers request i (per image, then per key), a failed reply in place, "" for no reply."""
    server(error_for_key=gpg_keys.b[-8:], drop_every=3)
    out = tmp_path / "out"
    run = sign(conf(tmp_path, broker, tls_material, timeout=60, retries=3, send_retries=2), out,
               [gpg_keys.a, gpg_keys.b], images(5), "--deadline", "3")
    assert run.returncode == 1
    results = check_signatures(out, gpg_keys)
    assert results["signer_result"]["status"] == "error"
    replies, entries = results["operation_results"], results["images"]
    assert len(replies) == len(entries) == 10
    assert [e["signing_key"] for e in entries] == [gpg_keys.a, gpg_keys.b] * 5
    gaps = 0
    for reply, entry in zip(replies, entries):
        if reply == "":
            gaps += 1
            assert entry["error"] == "no signature: the deadline was reached"
            continue
        msg = reply[0]["msg"]
        assert (msg["manifest_digest"], msg["sig_key_id"]) == \
            (entry["digest"], entry["signing_key"][-8:])
        assert bool(msg["errors"]) == (entry["signing_key"] == gpg_keys.b)
        assert entry["status"] == ("failed" if msg["errors"] else "ok")
    assert gaps == 3  # every third request went unanswered


def test_an_unreachable_broker_fails_cleanly(tmp_path, gpg_keys, tls_material):
    from conftest import free_port
    out = tmp_path / "out"
    run = sign(conf(tmp_path, f"amqp://127.0.0.1:{free_port()}", tls_material, timeout=1,
                    retries=2), out, [gpg_keys.a], images(2))
    assert run.returncode == 1
    results = json.loads((out / "results.json").read_text())
    assert all(e["error"].startswith("no signature: no broker reachable for 2 s")
               for e in results["images"]), results["images"]


def test_failover_to_the_next_broker(tmp_path, broker, server, gpg_keys, tls_material):
    from conftest import free_port
    server()
    out = tmp_path / "out"
    config = conf(tmp_path, broker, tls_material, timeout=5)
    data = json.loads(config.read_text())
    data["msg_signer"]["messaging_brokers"] = [f"amqp://127.0.0.1:{free_port()}", broker]
    config.write_text(json.dumps(data))
    run = sign(config, out, [gpg_keys.a], images(3))
    assert run.returncode == 0, run.stderr
    assert "reconnecting" in run.stdout + run.stderr  # the first broker was tried and refused
    assert len(signature_files(out)) == 3


def test_every_reply_is_accepted_before_the_run_ends(tmp_path, broker, server, gpg_keys,
                                                     tls_material):
    # Two runs with the same task id read the same consumer queue. Had the first run ended
    # without accepting its last replies, the broker would hand them to the second one.
    server()
    config = conf(tmp_path, broker, tls_material)
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        run = sign(config, out, [gpg_keys.a], images(30))
        assert run.returncode == 0, run.stderr
        results = json.loads((out / "results.json").read_text())
        assert results["signer_stats"] == {}, results["signer_stats"]  # nothing stray


def gpg_verify(home: str, *args: str) -> str:
    """The fingerprint gpg says made a good signature (raises if gpg refuses it)."""
    proc = subprocess.run(["gpg", "--batch", "--status-fd", "1", "--verify", *args],
                          env={**os.environ, "GNUPGHOME": home}, capture_output=True, text=True,
                          check=True)
    return next(ln.split()[2] for ln in proc.stdout.splitlines() if "[GNUPG:] VALIDSIG" in ln)


def test_files_are_clear_signed_and_blob_signed_over_the_bus(tmp_path, broker, server,
                                                           gpg_keys, tls_material):
    """pubtools-sign's clear-sign and blob-sign through the action's inputs: NAME.asc holds the
    clear-signed text, NAME.<key id>.sig a detached signature per key; gpg verifies each."""
    server()
    config = conf(tmp_path, broker, tls_material, verify_keyring=str(keyring(tmp_path, gpg_keys)))
    notes, blob = tmp_path / "notes.txt", tmp_path / "app.tar"
    notes.write_text("release notes\nline two\n")
    blob.write_bytes(os.urandom(5000))
    out = tmp_path / "out"
    run = run_entrypoint("--signer", "msg", "--config-file", str(config), "--task-id", "t1",
                         "--output-dir", str(out), "--signing-key", gpg_keys.a,
                         "--clear-sign-file", str(notes), "--repo", "ns/app")
    assert run.returncode == 0, run.stderr
    assert gpg_verify(gpg_keys.home, str(out / "notes.txt.asc")) == gpg_keys.a
    assert gpg_decrypt((out / "notes.txt.asc").read_bytes(), gpg_keys.home)[0] == \
        notes.read_bytes()
    results = json.loads((out / "results.json").read_text())
    assert [e["signature_path"] for e in results["files"]] == ["notes.txt.asc"]
    assert results["operation"]["inputs"] == [notes.read_text()]
    assert results["operation_results"][0][0]["msg"]["repo"] == "ns/app"

    run = run_entrypoint("--signer", "msg", "--config-file", str(config), "--task-id", "t1",
                         "--output-dir", str(out), "--signing-key", gpg_keys.a,
                         "--signing-key", gpg_keys.b, "--blob-file", str(blob))
    assert run.returncode == 0, run.stderr
    sigs = {key: out / f"app.tar.{key[-8:]}.sig" for key in (gpg_keys.a, gpg_keys.b)}
    for key, sig in sigs.items():
        assert gpg_verify(gpg_keys.home, str(sig), str(blob)) == key
    blob.write_bytes(b"altered" + blob.read_bytes()[7:])
    for sig in sigs.values():
        with pytest.raises(subprocess.CalledProcessError):
            gpg_verify(gpg_keys.home, str(sig), str(blob))


def keyring(tmp_path: Path, gpg_keys) -> Path:
    path = tmp_path / "keyring.gpg"
    path.write_bytes(subprocess.run(["gpg", "--export", gpg_keys.a, gpg_keys.b],
                                    env={**os.environ, **gpg_keys.env()}, capture_output=True,
                                    check=True).stdout)
    return path


# -- every returned signature is checked before it is written, with or without a keyring -------

def refused_and_kept_apart(out: Path, gpg_keys, run, bad: str, good: str, why: str,
                           n: int) -> dict:
    """Key ``bad``'s signatures were refused for ``why`` and none written; key ``good``'s are
    written and verify; each reply is at its request's place in operation_results."""
    assert run.returncode == 1, run.stderr
    results = check_signatures(out, gpg_keys)
    by_key = {k: [e for e in results["images"] if e["signing_key"] == k] for k in (bad, good)}
    assert [e["status"] for e in by_key[good]] == ["ok"] * n
    assert [e["status"] for e in by_key[bad]] == ["failed"] * n
    for entry in by_key[bad]:
        assert entry["error"].startswith("signature refused: ") and why in entry["error"], entry
        assert not entry.get("signature_path")
    files = signature_files(out)
    assert len(files) == n
    assert {gpg_decrypt(p.read_bytes(), gpg_keys.home)[1] for p in files} == {good}
    assert results["signer_result"]["status"] == "error"
    return results


FAULTS = [
    ({"wrong_claim": "digest"}, 'it signs digest "sha256:'),
    ({"wrong_claim": "identity"}, 'it signs identity "registry.example.com/other/image:1.0", '
                                  "not registry.example.com/ns/app"),
    ({"wrong_claim": "traversal"}, 'it signs identity "../../../etc", not '
                                   "registry.example.com/ns/app"),
    ({"wrong_claim": "type"}, 'critical.type is "cosign container image signature"'),
    ({"wrong_claim": "unknown-key"}, 'critical has unknown key(s) "expires"'),
    ({"garbage_signature": True}, "not a binary OpenPGP signed message: "),
    ({"wrong_format": "armored"}, "ASCII-armored OpenPGP data: podman and skopeo read only "
                                  "binary signatures"),
    ({"wrong_format": "detached"}, "not a binary OpenPGP signed message: a detached signature"),
    ({"wrong_format": "clearsigned"}, "ASCII-armored OpenPGP data"),
]


@pytest.mark.parametrize("fault,why", FAULTS, ids=[next(iter(f.values())) if
                                                    isinstance(next(iter(f.values())), str)
                                                    else next(iter(f)) for f, _ in FAULTS])
def test_a_bad_signature_is_refused_without_a_keyring_and_the_others_are_kept(
        tmp_path, broker, server, gpg_keys, tls_material, fault, why):
    server(fault_key=gpg_keys.a[-8:], **fault)  # key A's replies are bad, key B's good
    out = tmp_path / "out"
    run = sign(conf(tmp_path, broker, tls_material), out, [gpg_keys.a, gpg_keys.b], images(3))
    results = refused_and_kept_apart(out, gpg_keys, run, gpg_keys.a, gpg_keys.b, why, 3)
    # every reply, refused or not, at its request's place (per image, then per key)
    replies = results["operation_results"]
    assert len(replies) == 6
    for reply, entry in zip(replies, results["images"]):
        msg = reply[0]["msg"]
        assert (msg["manifest_digest"], msg["sig_key_id"]) == \
            (entry["digest"], entry["signing_key"][-8:])
        assert msg["errors"] == [] and msg["signed_claim"]


def test_a_signature_by_another_key_is_refused_without_a_keyring(tmp_path, broker, server,
                                                                 gpg_keys, tls_material):
    server(wrong_key=gpg_keys.b)  # everything signed by B: right for B, wrong for A
    out = tmp_path / "out"
    run = sign(conf(tmp_path, broker, tls_material), out, [gpg_keys.a, gpg_keys.b], images(2))
    refused_and_kept_apart(out, gpg_keys, run, gpg_keys.a, gpg_keys.b,
                           f"it says it was signed by {gpg_keys.b}, not by the requested key "
                           f"{gpg_keys.a}", 2)


def test_batch_replies_are_checked_per_claim_and_key(tmp_path, broker, server, gpg_keys,
                                                     tls_material):
    server(fault_key=gpg_keys.a[-8:], wrong_claim="traversal")
    out = tmp_path / "out"
    config = conf(tmp_path, broker, tls_material, section="msg_batch_signer", chunk_size=2)
    run = sign(config, out, [gpg_keys.a, gpg_keys.b], images(4), "--signer-type", "batch")
    results = refused_and_kept_apart(out, gpg_keys, run, gpg_keys.a, gpg_keys.b,
                                     'it signs identity "../../../etc"', 4)
    # 4 images in 3 repos, chunks of 2: 3 requests, each reply once, in request order
    assert [[c["manifest_digest"] for c in reply[0]["msg"]["claims"]]
            for reply in results["operation_results"]] == \
        [[f"sha256:{i:064x}" for i in chunk] for chunk in ([0, 3], [1], [2])]


def test_with_a_keyring_a_claim_signed_by_the_right_key_is_still_checked(
        tmp_path, broker, server, gpg_keys, tls_material):
    server(fault_key=gpg_keys.a[-8:], wrong_claim="digest")  # A signs, but another digest
    out = tmp_path / "out"
    config = conf(tmp_path, broker, tls_material, verify_keyring=str(keyring(tmp_path, gpg_keys)))
    run = sign(config, out, [gpg_keys.a, gpg_keys.b], images(2))
    refused_and_kept_apart(out, gpg_keys, run, gpg_keys.a, gpg_keys.b, 'it signs digest "sha256:',
                           2)


def test_file_signatures_are_checked_without_a_keyring(tmp_path, broker, server, gpg_keys,
                                                      tls_material):
    """Clear-signed texts and detached signatures come back in their own shapes: each is
    checked as that shape, for the text or bytes sent, and a bad one is not written."""
    server(fault_key=gpg_keys.a[-8:], garbage_signature=True)
    config = conf(tmp_path, broker, tls_material)
    notes, blob = tmp_path / "notes.txt", tmp_path / "app.tar"
    notes.write_text("release notes\n- line two\n")
    blob.write_bytes(os.urandom(5000))
    for flag, path, suffix, why in (
            ("--clear-sign-file", notes, "asc", "not a clear-signed text: "),
            ("--blob-file", blob, "sig", "not a detached binary signature of the file: ")):
        out = tmp_path / f"out-{suffix}"
        run = run_entrypoint("--signer", "msg", "--config-file", str(config), "--task-id", "t1",
                             "--output-dir", str(out), "--signing-key", gpg_keys.a,
                             "--signing-key", gpg_keys.b, flag, str(path), "--repo", "ns/app")
        assert run.returncode == 1, run.stderr
        entries = {e["signing_key"]: e for e in
                   json.loads((out / "results.json").read_text())["files"]}
        assert entries[gpg_keys.a]["status"] == "failed"
        assert entries[gpg_keys.a]["error"].startswith("signature refused: " + why)
        assert entries[gpg_keys.b]["status"] == "ok"
        written = sorted(p.name for p in out.glob(f"{path.name}*.{suffix}"))
        assert written == [Path(entries[gpg_keys.b]["signature_path"]).name]
        signed = out / entries[gpg_keys.b]["signature_path"]
        assert gpg_verify(gpg_keys.home, *([str(signed), str(path)] if suffix == "sig"
                                           else [str(signed)])) == gpg_keys.b
