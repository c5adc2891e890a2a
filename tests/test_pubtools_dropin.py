"""This project's commands in ``bin/`` as a drop-in for pubtools-sign 1.0.6's: the same command
lines, the same JSON document on stdout, and what consumes that document accepts ours as it
accepts theirs. The consumer is Konflux's ``check-signing-response`` step (its script, verbatim,
in tests/fixtures/konflux/), which pairs ``operation_results`` with ``operation.references`` by
position and hands each pair's signature to Pyxis.

Everything goes through the reference broker (recording each request, so that a result can be
matched to the request it answers) and the reference signing server making real GPG signatures
with the session's test keys. Tests that must hold for pubtools-sign too run for both tools,
which keeps the harness honest; the rest are about ours, including its deliberate differences:
a failed or unanswered request makes the status "error" and the exit status 1 (pubtools-sign
says "ok"), and ``operation_results`` always has one entry per request in request order (per
reference, then per key), a failed reply in place, ``""`` for a request with no reply
(pubtools-sign drops every result on a timeout).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import gpg_decrypt
from infra.pubtools_sign import (
    DROPIN,
    MSG_BLOB_SIGN,
    MSG_CLEAR_SIGN,
    MSG_CONTAINER_SIGN,
    PUBTOOLS,
    recording_bus,
    run_tool,
    stdout_json,
    write_conf,
)

KONFLUX_CHECK = Path(__file__).parent / "fixtures" / "konflux" / "check-signing-response.sh"
BOTH = pytest.mark.parametrize("tool", [DROPIN, PUBTOOLS])
# Where our clear-sign and blob-sign put the signature of an input file given with --output-dir
# (pubtools-sign has no such option): formatted with the input file's name.
OUTPUT_FILE = {MSG_CLEAR_SIGN: "{name}.asc", MSG_BLOB_SIGN: "{name}.sig"}


# -- the bus, the commands, Konflux's step ---------------------------------------------------------

@pytest.fixture
def start_bus(tmp_path, gpg_keys):
    """``start_bus(**switches)``: the recording broker and a signing server that signs with the
    test keys (real gpg), with the server's fault switches (``error_for_key=[...]``,
    ``drop_every=N``); stopped after the test."""
    with contextlib.ExitStack() as stack:
        def start(**switches):
            return stack.enter_context(recording_bus(tmp_path, gnupg_home=gpg_keys.home,
                                                     **switches))
        yield start


@dataclass
class Signed:
    run: subprocess.CompletedProcess
    requests: list[dict]  # the request bodies the broker got from this run

    @property
    def result(self) -> dict:
        return stdout_json(self.run)

    def request_for(self, **fields) -> dict:
        """The one request whose body has these field values."""
        found = [r for r in self.requests if all(r.get(k) == v for k, v in fields.items())]
        assert len(found) == 1, (fields, self.requests)
        return found[0]


def sign(tool: str, command: str, bus, tls, folder: Path, args: list, *,
         keys: list[str], **conf) -> Signed:
    """Run ``command`` by ``tool`` with a fresh task id, the signing keys and ``args``, with
    pubtools-sign's conf.yaml for ``bus`` (``conf`` overrides its keys)."""
    config = write_conf(folder / f"conf-{uuid.uuid4().hex[:8]}.yaml", bus.url, tls, **conf)
    task = f"{tool}-{uuid.uuid4().hex[:8]}"
    key_args = [a for key in keys for a in ("--signing-key", key)]
    run = run_tool(tool, command, "--config-file", config, *key_args, *args, "--task-id", task)
    return Signed(run, [json.loads(r["body"]) for r in bus.requests(task)])


def images(n: int) -> list[tuple[str, str]]:
    """``n`` distinct (reference, digest) pairs in three repositories."""
    return [(f"registry.example.com/ns/app{i % 3}:v{i}",
             "sha256:" + hashlib.sha256(f"image {i}".encode()).hexdigest()) for i in range(n)]


def sign_containers(tool, bus, tls, folder, imgs, keys, *extra, **conf) -> Signed:
    """``pubtools-sign-msg-container-sign`` as Konflux's request-signature step runs it: every
    --reference, then every --digest (paired by position)."""
    args = [a for ref, _ in imgs for a in ("--reference", ref)]
    args += [a for _, digest in imgs for a in ("--digest", digest)]
    return sign(tool, MSG_CONTAINER_SIGN, bus, tls, folder, [*args, *extra], keys=keys, **conf)


@dataclass
class Konflux:
    run: subprocess.CompletedProcess
    pairs: list[dict] | None  # what the step leaves for upload-signature, when it passed


def konflux_check(folder: Path, stdout: str) -> Konflux:
    """Konflux's check-signing-response step on a command's stdout, in a workspace of its own."""
    data = folder / f"konflux-{uuid.uuid4().hex[:8]}"
    data.mkdir()
    response = data / "signing_response.json"
    response.write_text(stdout)
    run = subprocess.run(["bash", KONFLUX_CHECK, data], capture_output=True, text=True,
                         env={**os.environ, "signature_data_file": response.name}, timeout=60)
    assert "command not found" not in run.stderr, run.stderr  # jq: scripts/setup-system.sh
    return Konflux(run, json.loads(response.read_text()) if run.returncode == 0 else None)


# -- what a signature says -------------------------------------------------------------------------

def signed_claim(b64: str, gpg_keys) -> tuple[dict, str]:
    """The ``critical`` part of the claim inside a base64 signed message, and the fingerprint
    whose good signature gpg found on it."""
    content, fpr = gpg_decrypt(base64.b64decode(b64), gpg_keys.home)
    return json.loads(content)["critical"], fpr


def claim_for(ref: str, digest: str) -> dict:
    return {"type": "atomic container signature", "image": {"docker-manifest-digest": digest},
            "identity": {"docker-reference": ref}}


def gpg_verify(gpg_keys, *files: Path) -> str:
    """``gpg --verify FILES`` must succeed; the fingerprint of the one good signature."""
    proc = subprocess.run(["gpg", "--batch", "--status-fd", "1", "--verify", *map(str, files)],
                          env={**os.environ, **gpg_keys.env()}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    valid = [line.split()[2] for line in proc.stdout.splitlines()
             if line.startswith("[GNUPG:] VALIDSIG ")]
    assert len(valid) == 1, proc.stdout
    return valid[0]


def repo_of(ref: str) -> str:
    """pubtools-sign's ``repo``: the reference without its registry and tag."""
    return ref.split("/", 1)[1].rsplit(":", 1)[0]


def request_order(imgs, keys) -> list[tuple[str, str]]:
    """(digest, sig_key_id) of each request, in request order: per image, then per key."""
    return [(digest, key[-8:]) for _, digest in imgs for key in keys]


def assert_answers(entry, request: dict) -> dict:
    """``entry`` (an operation_results item, [reply body, reply properties]) is the reply to
    ``request``; returns its ``msg``."""
    assert entry != "", f"no reply in place for request {request['request_id']}"
    msg = entry[0]["msg"]
    assert msg["request_id"] == request["request_id"]
    return msg


def assert_container_results(signed: Signed, imgs, keys, gpg_keys, failing=()) -> None:
    """operation_results[i] answers request i (image i // len(keys), key i % len(keys)); each
    successful one is that image's claim signed by that key; the indexes in ``failing`` are
    failed replies, in place."""
    results = signed.result["operation_results"]
    assert len(results) == len(imgs) * len(keys)
    for i, (digest, key_id) in enumerate(request_order(imgs, keys)):
        msg = assert_answers(results[i], signed.request_for(manifest_digest=digest,
                                                            sig_key_id=key_id))
        if i in failing:
            assert msg["errors"] and "signed_claim" not in msg, msg
            continue
        assert msg["errors"] == [], msg
        ref, key = imgs[i // len(keys)][0], keys[i % len(keys)]
        assert signed_claim(msg["signed_claim"], gpg_keys) == (claim_for(ref, digest), key)


# -- container signing, read by Konflux ------------------------------------------------------------

@BOTH
@pytest.mark.parametrize("n", [1, 2, 7])
def test_konflux_uploads_each_reference_with_its_signature(tool, n, tmp_path, start_bus,
                                                           tls_material, gpg_keys):
    bus, imgs, key = start_bus(), images(n), gpg_keys.a
    signed = sign_containers(tool, bus, tls_material, tmp_path, imgs, [key])
    assert signed.run.returncode == 0, signed.run.stderr[-2000:]
    result = signed.result
    assert result["signer_result"] == {"status": "ok", "error_message": ""}
    assert result["operation"]["references"] == [ref for ref, _ in imgs]
    assert result["operation"]["digests"] == [digest for _, digest in imgs]
    assert result["signing_keys"] == [key]
    assert_container_results(signed, imgs, [key], gpg_keys)

    konflux = konflux_check(tmp_path, signed.run.stdout)
    assert konflux.run.returncode == 0, konflux.run.stderr[-3000:]
    assert len(konflux.pairs) == n
    for pair, (ref, digest) in zip(konflux.pairs, imgs):
        assert (pair["reference"], pair["manifest_digest"]) == (ref, digest)
        assert (pair["repository"], pair["sig_key_id"]) == (repo_of(ref), key[-8:])
        # what Pyxis gets as this reference's signature names exactly this reference and digest
        claim, fpr = signed_claim(pair["signature_data"], gpg_keys)
        assert claim == claim_for(pair["reference"], pair["manifest_digest"]) and fpr == key


@BOTH
def test_two_keys_give_one_result_per_request_in_request_order(tool, tmp_path, start_bus,
                                                              tls_material, gpg_keys):
    bus, imgs, keys = start_bus(), images(3), [gpg_keys.a, gpg_keys.b]
    signed = sign_containers(tool, bus, tls_material, tmp_path, imgs, keys)
    assert signed.run.returncode == 0, signed.run.stderr[-2000:]
    assert signed.result["signer_result"]["status"] == "ok"
    assert signed.result["signing_keys"] == keys
    assert_container_results(signed, imgs, keys, gpg_keys)  # result i: image i//2, key i%2


def konflux_view(pairs: list[dict], gpg_keys) -> list[dict]:
    """Konflux's pairs with each signature replaced by what it says (claim and signer): two
    signatures of one claim differ in their bytes (time of signing; ours also put a timestamp
    in the claim's optional part)."""
    return [{**{k: v for k, v in pair.items() if k != "signature_data"},
             "signed": signed_claim(pair["signature_data"], gpg_keys)} for pair in pairs]


@pytest.mark.parametrize("n,key_count", [(7, 1), (3, 2)], ids=["7-refs-1-key", "3-refs-2-keys"])
def test_konflux_pairs_ours_as_it_pairs_pubtools_sign(n, key_count, tmp_path, start_bus,
                                                      tls_material, gpg_keys):
    bus, imgs = start_bus(), images(n)
    keys = [gpg_keys.a, gpg_keys.b][:key_count]
    views = {}
    for tool in (PUBTOOLS, DROPIN):
        signed = sign_containers(tool, bus, tls_material, tmp_path, imgs, keys)
        assert signed.run.returncode == 0, f"{tool}: {signed.run.stderr[-2000:]}"
        konflux = konflux_check(tmp_path, signed.run.stdout)
        assert konflux.run.returncode == 0, f"{tool}: {konflux.run.stderr[-3000:]}"
        views[tool] = konflux_view(konflux.pairs, gpg_keys)
    assert views[DROPIN] == views[PUBTOOLS]
    if key_count == 2:
        # Konflux's step assumes one key: it pairs result i with reference i, but with two keys
        # result i is image i // 2's, and results n..2n-1 get no reference (jq's transpose pads
        # with null). It goes wrong for ours exactly as for pubtools-sign's.
        assert [p["reference"] for p in views[DROPIN]] == [r for r, _ in imgs] + [None] * n
        assert [p["manifest_digest"] for p in views[DROPIN]] == [d for _, d in imgs
                                                                 for _ in keys]


@pytest.mark.parametrize("refused", [0, 1], ids=["first-key-refused", "second-key-refused"])
def test_a_failed_request_fails_the_run_with_its_reply_in_place(refused, tmp_path, start_bus,
                                                               tls_material, gpg_keys):
    keys = [gpg_keys.a, gpg_keys.b]
    bus, imgs = start_bus(error_for_key=[keys[refused][-8:]]), images(1)
    signed = sign_containers(DROPIN, bus, tls_material, tmp_path, imgs, keys)
    assert signed.run.returncode == 1, signed.run.stderr[-2000:]
    assert signed.result["signer_result"]["status"] == "error"
    assert_container_results(signed, imgs, keys, gpg_keys, failing={refused})
    msg = signed.result["operation_results"][refused][0]["msg"]
    assert any("refused" in error for error in msg["errors"]), msg["errors"]
    konflux = konflux_check(tmp_path, signed.run.stdout)
    assert konflux.run.returncode != 0 and "Signing failed" in konflux.run.stdout

    # pubtools-sign says "ok" and exits 0 here; Konflux's step refuses it for the reply's errors
    theirs = sign_containers(PUBTOOLS, bus, tls_material, tmp_path, imgs, keys)
    assert theirs.run.returncode == 0 and theirs.result["signer_result"]["status"] == "ok"
    konflux = konflux_check(tmp_path, theirs.run.stdout)
    assert konflux.run.returncode != 0 and "Signing failed with errors" in konflux.run.stdout


def test_an_unanswered_request_is_an_empty_entry_in_place(tmp_path, start_bus, tls_material,
                                                          gpg_keys):
    # The server answers no 2nd request it gets. One receive attempt ending 3 s after the last
    # reply, and no resend (send_retries 1): a resend would be the server's 3rd request, answered.
    bus, imgs, key = start_bus(drop_every=2), images(3), gpg_keys.a
    signed = sign_containers(DROPIN, bus, tls_material, tmp_path, imgs, [key],
                             timeout=3, retries=1, send_retries=1)
    assert signed.run.returncode == 1, signed.run.stderr[-2000:]
    assert signed.result["signer_result"]["status"] == "error"
    answered = {msg["request_id"] for msg in bus.replies()}
    order = [signed.request_for(manifest_digest=d, sig_key_id=k)
             for d, k in request_order(imgs, [key])]
    unanswered = [i for i, request in enumerate(order) if request["request_id"] not in answered]
    assert len(unanswered) == 1, unanswered
    results = signed.result["operation_results"]
    assert len(results) == len(imgs)
    for i, (entry, request) in enumerate(zip(results, order)):
        if i in unanswered:
            assert entry == ""
        else:
            msg = assert_answers(entry, request)
            assert signed_claim(msg["signed_claim"], gpg_keys) == (claim_for(*imgs[i]), key)
    assert konflux_check(tmp_path, signed.run.stdout).run.returncode != 0


@BOTH
def test_raw_prints_one_signed_claim_per_line_in_request_order(tool, tmp_path, start_bus,
                                                               tls_material, gpg_keys):
    bus, imgs, keys = start_bus(), images(2), [gpg_keys.a, gpg_keys.b]
    signed = sign_containers(tool, bus, tls_material, tmp_path, imgs, keys, "--raw")
    assert signed.run.returncode == 0, signed.run.stderr[-2000:]
    lines = signed.run.stdout.splitlines()
    assert len(lines) == len(imgs) * len(keys), signed.run.stdout
    for i, line in enumerate(lines):
        ref, digest = imgs[i // len(keys)]
        assert signed_claim(line, gpg_keys) == (claim_for(ref, digest), keys[i % len(keys)])


# -- clear-sign and blob-sign ----------------------------------------------------------------------

def msgs_in_request_order(signed: Signed, inputs: list[str], keys: list[str],
                          field: str) -> list[dict]:
    """operation_results' ``msg``s, checked to answer the requests in request order (per input,
    then per key); ``field`` is the request's base64 input field (``data``, ``artifact``)."""
    results = signed.result["operation_results"]
    requests = [signed.request_for(**{field: b64, "sig_key_id": key[-8:]})
                for b64 in inputs for key in keys]
    assert len(results) == len(requests)
    return [assert_answers(entry, request) for entry, request in zip(results, requests)]


def b64_text(text: str) -> str:
    return base64.b64encode(text.encode("latin-1")).decode()  # as pubtools-sign sends a text


def b64_file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@BOTH
def test_clear_sign_signs_each_input_in_request_order(tool, tmp_path, start_bus, tls_material,
                                                      gpg_keys):
    notes = tmp_path / "notes.txt"
    notes.write_text("Release notes\n\n- fixed: everything\n")
    bus, keys = start_bus(), [gpg_keys.a, gpg_keys.b]
    signed = sign(tool, MSG_CLEAR_SIGN, bus, tls_material, tmp_path,
                  ["--repo", "ns/app", "hello", f"@{notes}"], keys=keys)
    assert signed.run.returncode == 0, signed.run.stderr[-2000:]
    assert signed.result["signer_result"]["status"] == "ok"
    texts = ["hello", notes.read_text()]
    msgs = msgs_in_request_order(signed, [b64_text(t) for t in texts], keys, "data")
    for i, msg in enumerate(msgs):
        assert msg["errors"] == [], msg
        text, fpr = gpg_decrypt(base64.b64decode(msg["signed_data"]), gpg_keys.home)
        assert (text.decode().rstrip("\n"), fpr) == (texts[i // 2].rstrip("\n"), keys[i % 2])


def test_clear_sign_writes_each_input_files_signature_into_the_output_dir(
        tmp_path, start_bus, tls_material, gpg_keys):
    notes, out = tmp_path / "notes.txt", tmp_path / "out"
    notes.write_text("Release notes\n\n- fixed: everything\n")
    signed = sign(DROPIN, MSG_CLEAR_SIGN, start_bus(), tls_material, tmp_path,
                  ["--repo", "ns/app", "--output-dir", out, f"@{notes}"], keys=[gpg_keys.a])
    assert signed.run.returncode == 0, signed.run.stderr[-2000:]
    asc = out / OUTPUT_FILE[MSG_CLEAR_SIGN].format(name=notes.name)
    msg = msgs_in_request_order(signed, [b64_text(notes.read_text())], [gpg_keys.a], "data")[0]
    assert asc.read_bytes() == base64.b64decode(msg["signed_data"])
    assert gpg_verify(gpg_keys, asc) == gpg_keys.a
    text, _ = gpg_decrypt(asc.read_bytes(), gpg_keys.home)
    assert text.decode().rstrip("\n") == notes.read_text().rstrip("\n")


def blob_files(folder: Path) -> list[Path]:
    blobs = [folder / "app.tar.gz", folder / "SHA256SUMS"]
    blobs[0].write_bytes(bytes(range(256)) * 8)
    blobs[1].write_text(f"{hashlib.sha256(blobs[0].read_bytes()).hexdigest()}  app.tar.gz\n")
    return blobs


@BOTH
def test_blob_sign_signs_each_file_in_request_order(tool, tmp_path, start_bus, tls_material,
                                                    gpg_keys):
    blobs, keys = blob_files(tmp_path), [gpg_keys.a, gpg_keys.b]
    signed = sign(tool, MSG_BLOB_SIGN, start_bus(), tls_material, tmp_path,
                  [a for blob in blobs for a in ("--blob-file", blob)], keys=keys)
    assert signed.run.returncode == 0, signed.run.stderr[-2000:]
    assert signed.result["signer_result"]["status"] == "ok"
    msgs = msgs_in_request_order(signed, [b64_file(b) for b in blobs], keys, "artifact")
    for i, msg in enumerate(msgs):
        assert msg["errors"] == [], msg
        sig = tmp_path / f"reply-{i}.sig"
        sig.write_bytes(base64.b64decode(msg["signed_payload"]))  # a detached signature
        assert gpg_verify(gpg_keys, sig, blobs[i // 2]) == keys[i % 2]


def test_blob_sign_writes_each_files_signature_into_the_output_dir(tmp_path, start_bus,
                                                                  tls_material, gpg_keys):
    blobs, out = blob_files(tmp_path), tmp_path / "out"
    signed = sign(DROPIN, MSG_BLOB_SIGN, start_bus(), tls_material, tmp_path,
                  ["--output-dir", out, *[a for blob in blobs for a in ("--blob-file", blob)]],
                  keys=[gpg_keys.a])
    assert signed.run.returncode == 0, signed.run.stderr[-2000:]
    for blob in blobs:
        sig = out / OUTPUT_FILE[MSG_BLOB_SIGN].format(name=blob.name)
        assert gpg_verify(gpg_keys, sig, blob) == gpg_keys.a
