"""Keyless at a service's rate limit (issue 26 item 4): the client's token bucket
(signers/cosign/services.py: RateLimit) as pure logic on an injected clock, and the whole run
against the sigstore test bed with its rate-limit switch on: below the server's limit the test
bed never answers 429; above it, the 429s are retried after their Retry-After and every image
is signed; a wait that would pass the run's deadline fails the image at once."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import time
from pathlib import Path

import pytest

from conftest import free_port, run_entrypoint
from signaction.registry import PastDeadline, RegistryClient, RegistryError
from signers.cosign import services
from signers.cosign.services import RateLimit, ServiceError
from testbed.registry import Registry
from testbed.sigstore import Sigstore
from testbed.sigstore.common import RateLimiter, Refused

EMAIL = "rate@example.com"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Clock:
    """A monotonic clock the test moves; ``sleep`` records what would have been slept."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def bucket(per_minute: float, clock: Clock, **kw) -> RateLimit:
    return RateLimit(per_minute, "Rekor https://rekor.invalid", clock=clock, sleep=clock.sleep,
                     **kw)


# -- the bucket ---------------------------------------------------------------------------------

def test_a_burst_at_once_then_one_place_every_interval():
    clock = Clock()
    limit = bucket(600, clock)  # 10 a second, burst: half a second's worth
    assert limit.burst == 5
    waits = [limit.reserve() for _ in range(8)]
    assert waits[:5] == [0, 0, 0, 0, 0]
    assert waits[5:] == pytest.approx([0.1, 0.2, 0.3])  # queued: one place per 1/rate
    clock.now += 10  # refilled, to the burst and no more
    assert [limit.reserve() for _ in range(6)] == pytest.approx([0, 0, 0, 0, 0, 0.1])


def test_the_long_run_rate_is_the_limit():
    clock = Clock()
    limit = bucket(480, clock)  # the default: 8 a second, burst 4
    waits = [limit.reserve() for _ in range(484)]
    assert waits[-1] == pytest.approx(60.0)  # 480 more than the burst take a minute
    # whatever the callers' timing, no window of 60 s holds more than burst + 480 sends
    sends = sorted(100.0 + w for w in waits)
    assert sum(1 for t in sends if t < sends[0] + 60) <= 4 + 480


def test_acquire_sleeps_once_for_its_place_and_not_at_all_within_the_burst():
    clock = Clock()
    limit = bucket(60, clock, burst=2)
    for _ in range(4):
        limit.acquire()
    assert clock.slept == pytest.approx([1.0, 2.0])
    assert limit.requests == 4 and limit.waited == pytest.approx(3.0)


def test_a_wait_past_the_deadline_is_refused_not_slept_and_takes_no_place():
    clock = Clock()
    limit = bucket(60, clock, burst=1, deadline=clock.now + 1.5)
    limit.acquire()
    limit.acquire()  # its place at +1 s: before the deadline
    with pytest.raises(ServiceError, match=r"Rekor https://rekor.invalid: waiting 2\.0 s for a "
                                           r"place under its rate limit \(60 requests a minute\)"
                                           r" would pass the run's deadline: not sent"):
        limit.acquire()
    assert clock.slept == pytest.approx([1.0]) and limit.requests == 2
    clock.now += 5
    with pytest.raises(ServiceError, match="the run's deadline has passed: not sent"):
        limit.reserve()


def test_a_retry_after_pauses_every_caller_then_the_rate_resumes():
    clock = Clock()
    limit = bucket(600, clock)
    limit.pause(3)
    assert [limit.reserve() for _ in range(3)] == pytest.approx([3.0, 3.1, 3.2])
    limit.pause(1)  # a shorter pause does not shorten the one under way
    assert limit.reserve() == pytest.approx(3.3)


def test_a_retry_after_past_the_deadline_fails_at_once():
    clock = Clock()
    limit = bucket(600, clock, deadline=clock.now + 10)
    limit.pause(30)
    with pytest.raises(ServiceError, match=r"waiting 30\.0 s .*and a Retry-After\) would pass"):
        limit.reserve()
    limit.pause(10_000)  # capped: a service can't park the run for hours
    assert limit.base == pytest.approx(clock.now + services.MAX_RETRY_AFTER)


def test_the_bucket_is_refused_without_a_rate():
    with pytest.raises(ValueError):
        RateLimit(0, "Rekor")


@pytest.mark.parametrize("value,seconds", [("2", 2.0), ("0", 0.0), (None, None), ("soon", None),
                                           ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_reads_seconds_and_dates(value, seconds):
    assert services.retry_after({"Retry-After": value} if value is not None else {}) == seconds


class Answers:
    """A registry client whose ``service`` answers from a list."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.sent = 0

    def service(self, method, url, **kwargs):
        self.sent += 1
        return self.answers.pop(0)


def test_a_429_left_after_the_transports_retries_pauses_the_bucket():
    clock = Clock()
    limit = bucket(600, clock)
    registry = Answers((429, {"Retry-After": "4"}, b"{}"), (201, {}, b"{}"))
    assert services.limited_service(registry, limit, "POST", "u", what="w")[0] == 429
    assert limit.reserve() == pytest.approx(4.0)  # the next caller waits for Retry-After
    assert services.limited_service(registry, None, "POST", "u", what="w")[0] == 201


def test_the_signer_reads_the_limits_and_zero_means_none():
    from signaction.inputs import Inputs
    from signers.base import Options
    from signers.cosign import CosignSigner

    def limits(section: dict, deadline: float | None = None):
        signer = CosignSigner(section, Options.default(inputs=Inputs(deadline=deadline)))
        return (signer._rate_limit("rekor", services.PUBLIC_REKOR),
                signer._rate_limit("fulcio", services.PUBLIC_FULCIO))

    rekor, fulcio = limits({})
    assert rekor is not None and fulcio is not None
    assert rekor.per_minute == fulcio.per_minute == services.DEFAULT_REQUESTS_PER_MINUTE
    assert rekor.what == "Rekor https://rekor.sigstore.dev" and rekor.deadline == float("inf")
    rekor, fulcio = limits({"rekor_requests_per_minute": 0, "fulcio_requests_per_minute": 30,
                            "fulcio_url": "https://fulcio.example/"}, deadline=60)
    assert rekor is None and fulcio is not None and fulcio.per_minute == 30
    assert fulcio.what == "Fulcio https://fulcio.example" and fulcio.deadline < float("inf")
    # another instance: no default limit (its operator's is not known here), unless configured
    rekor, fulcio = limits({"rekor_url": "https://rekor.example", "fulcio_url":
                            "https://fulcio.example"})
    assert rekor is None and fulcio is None


# -- the test bed's switch ----------------------------------------------------------------------

def test_the_test_beds_limiter_answers_429_with_retry_after_and_counts():
    limiter = RateLimiter(600, 2)
    limiter.admit("rekor", 0.0)
    limiter.admit("rekor", 0.0)
    with pytest.raises(Refused) as refused:
        limiter.admit("rekor", 0.05)
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
    limiter.admit("fulcio", 0.05)  # a bucket per service
    limiter.admit("rekor", 0.2)
    assert limiter.requests == {"fulcio": 1, "rekor": 4}
    assert limiter.limited == {"fulcio": 0, "rekor": 1}
    off = RateLimiter()
    for _ in range(1000):
        off.admit("rekor", 0.0)  # the default: no limit, only counted
    assert off.limited == {"fulcio": 0, "rekor": 0}


# -- against the test bed -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    with Sigstore(tmp_path_factory.mktemp("rate-bed")) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def oci11():
    with Registry() as registry:
        yield registry


def seed_images(registry: Registry, namespace: str, n: int, listing: Path) -> Path:
    """``n`` distinct one-layer images put straight into the in-process registry's store."""
    store, images = registry.store, []
    for i in range(n):
        name = f"{namespace}/app{i}"
        config, layer = json.dumps({"i": i, "ns": namespace}).encode(), f"layer {i}".encode()
        blobs = store.repo(name).blobs
        descriptors = []
        for data, media in ((config, "application/vnd.oci.image.config.v1+json"),
                            (layer, "application/vnd.oci.image.layer.v1.tar")):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            blobs[digest] = data
            descriptors.append({"mediaType": media, "digest": digest, "size": len(data)})
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": descriptors[0], "layers": descriptors[1:]}).encode()
        digest, _ = store.put_manifest(name, "v1", raw, OCI_MANIFEST, None)
        images.append({"reference": f"{registry.host}/{name}:v1", "digest": digest})
    listing.write_text(json.dumps(images))
    return listing


def sign_keyless(bed, oci11, tmp_path: Path, n: int, *, server: float, client: float,
                 deadline: str | None = None):
    """``n`` images signed keyless (legacy) through the entrypoint, the test bed limited to
    ``server`` requests a minute per service, the client to ``client``: (the run, its
    results.json, the test bed's state after it)."""
    bed.set_faults(rate_limit=server, rate_burst=0)
    listing = seed_images(oci11, tmp_path.name, n, tmp_path / "images.json")
    env = bed.env
    section = {"allow_http_registry": True, "signature_format": "legacy",
               "fulcio_url": env["FULCIO_URL"], "rekor_url": env["REKOR_URL"],
               "fulcio_root_file": env["SIGSTORE_ROOT_FILE"],
               "ctlog_public_key_file": env["SIGSTORE_CT_LOG_PUBLIC_KEY_FILE"],
               "rekor_public_key_file": env["SIGSTORE_REKOR_PUBLIC_KEY"],
               "fulcio_requests_per_minute": client, "rekor_requests_per_minute": client}
    conf = tmp_path / "conf.yaml"
    conf.write_text(json.dumps({"cosign_signer": section}))
    run = run_entrypoint(
        "--signer", "cosign", "--config-file", str(conf), "--output-dir", str(tmp_path / "out"),
        "--images-file", str(listing), "--no-expand-index", "--signing-key", "keyless",
        *(("--deadline", deadline) if deadline else ()),
        env={"ACTIONS_ID_TOKEN_REQUEST_URL": env["ACTIONS_ID_TOKEN_REQUEST_URL"]
             + f"&email={EMAIL}", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": bed.request_token})
    state = bed.state()
    bed.set_faults(rate_limit=0)
    return run, json.loads((tmp_path / "out" / "results.json").read_text()), state


def test_keyless_below_the_servers_limit_is_never_answered_429(bed, oci11, tmp_path):
    run, results, state = sign_keyless(bed, oci11, tmp_path, 20, server=1200, client=600)
    assert run.returncode == 0, run.stderr
    assert results["summary"]["signed"] == 20 and results["summary"]["failed"] == 0
    assert state["faults"]["limited"] == {"fulcio": 0, "rekor": 0}, state
    # one certificate for the run, one Rekor entry per signature
    assert state["faults"]["requests"] == {"fulcio": 1, "rekor": 20}, state
    assert "retrying" not in run.stderr


def test_keyless_above_the_servers_limit_retries_each_429_after_its_retry_after(
        bed, oci11, tmp_path):
    run, results, state = sign_keyless(bed, oci11, tmp_path, 20, server=600, client=60000)
    assert run.returncode == 0, run.stderr
    assert results["summary"]["signed"] == 20 and results["summary"]["failed"] == 0
    limited = state["faults"]["limited"]["rekor"]
    assert limited > 0, state  # the client's burst is past the test bed's (10)
    assert state["faults"]["requests"]["rekor"] == 20 + limited  # each 429 retried once more
    retries = [line for line in run.stderr.splitlines() if "HTTP 429" in line]
    assert len(retries) == limited, run.stderr
    # the test bed's Retry-After (1 s at 10 a second), not the client's own backoff
    assert all(line.endswith("retrying in 1.0 s") for line in retries), retries


def test_keyless_waits_that_would_pass_the_deadline_fail_those_images_at_once(
        bed, oci11, tmp_path):
    run, results, state = sign_keyless(bed, oci11, tmp_path, 12, server=0, client=30,
                                       deadline="4")
    assert run.returncode == 1, run.stderr
    entries = results["images"]
    failed = [e for e in entries if e["status"] == "failed"]
    signed = [e for e in entries if e["status"] != "failed"]
    assert signed and failed, entries  # 30 a minute: one place every 2 s, within 4 s a few
    assert all("would pass the run's deadline" in e["error"] or "deadline" in e["error"]
               for e in failed), failed
    assert any("rate limit (30 requests a minute)" in e["error"] for e in failed), failed
    assert state["faults"]["requests"]["rekor"] == len(signed)
    assert state["faults"]["limited"] == {"fulcio": 0, "rekor": 0}


# -- the transport's retries within the run's deadline (RegistryClient.service) ----------------

class Slept(list):
    """The client's sleep, recorded instead of slept: what each retry would have waited."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def service_client(**kw) -> tuple[RegistryClient, Slept]:
    client, slept = RegistryClient(**kw), Slept()
    client._sleep = slept
    return client, slept


@pytest.fixture
def rekor_url(bed):
    """The test bed at 6 requests a minute a service (burst 1), its one token of Rekor's
    taken: Rekor's next request is answered 429 with a Retry-After of 10 s (9 once a second
    has passed). A Rekor URL (an entry it does not have: 404 when admitted)."""
    bed.set_faults(rate_limit=6, rate_burst=1)
    url = f"{bed.env['REKOR_URL']}/api/v1/log/entries/{'0' * 64}"
    try:
        with RegistryClient() as client:
            assert client.service("GET", url, what="Rekor: a first request")[0] == 404
        yield url
    finally:
        bed.set_faults(rate_limit=0)


def rekor_counts(bed) -> tuple[int, int]:
    faults = bed.state()["faults"]
    return faults["requests"]["rekor"], faults["limited"]["rekor"]


def test_a_retry_after_that_would_pass_the_deadline_is_not_waited_for(bed, rekor_url):
    client, slept = service_client()
    with client, pytest.raises(PastDeadline) as given_up:
        client.service("GET", rekor_url, what="Rekor http://bed: reading an entry",
                       deadline=time.monotonic() + 5)
    message = str(given_up.value)
    assert "Rekor http://bed: reading an entry" in message, message
    assert re.search(r"HTTP 429 after 1 attempt; waiting (9|10)\.0 s to retry would pass the run's "
                     r"deadline \([0-9.]+ s left\): given up$", message), message
    assert given_up.value.status == 429 and given_up.value.delay in (9.0, 10.0)
    assert slept == []  # nothing waited for, and no second attempt: one 429, at once
    assert rekor_counts(bed) == (2, 1)


@pytest.mark.parametrize("deadline", [None, 600])
def test_retries_within_the_deadline_are_made_as_before(bed, rekor_url, deadline):
    client, slept = service_client(retries=3)
    with client:
        status, headers, _ = client.service(
            "GET", rekor_url, what="Rekor: reading",
            deadline=None if deadline is None else time.monotonic() + deadline)
    assert status == 429 and headers["Retry-After"] in ("9", "10")
    assert len(slept) == 2 and all(s in (9.0, 10.0) for s in slept)  # Retry-After honoured
    assert rekor_counts(bed) == (4, 3)


def test_a_backoff_that_would_pass_the_deadline_is_not_waited_for():
    """No answer at all (a closed loopback port): the backoff, not a Retry-After."""
    client, slept = service_client(backoff_base=20)  # the first retry after 10 to 20 s
    url = f"http://127.0.0.1:{free_port()}/api/v2/signingCert"
    with client, pytest.raises(PastDeadline) as given_up:
        client.service("POST", url, what="Fulcio http://x: a signing certificate", body=b"{}",
                       deadline=time.monotonic() + 5)
    assert re.search(r"Fulcio http://x: a signing certificate: POST http://127\.0\.0\.1:\d+/api"
                     r"/v2/signingCert: ConnectionError: .* after 1 attempt; waiting "
                     r"\d+\.\d s to retry would pass the run's deadline", str(given_up.value)), \
        str(given_up.value)
    assert given_up.value.status is None and slept == []


class CutBody(http.server.BaseHTTPRequestHandler):
    """Promises 1,000 bytes, sends 10 and closes: a body that breaks while it streams."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_a_broken_body_is_not_retried_past_the_deadline():
    """The client's own retry loop (a body cut off once urllib3 has handed the answer back)
    keeps the deadline as urllib3's retries do."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CutBody)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client, slept = service_client(backoff_base=20, retries=3)
    url = f"http://127.0.0.1:{server.server_address[1]}/token"
    try:
        with pytest.raises(PastDeadline, match=r"a token: GET http://127\.0\.0\.1:\d+/token: "
                                               r"\w+: .* after 1 attempt; waiting [\d.]+ s to "
                                               r"retry would pass the run's deadline"):
            client.service("GET", url, what="a token", deadline=time.monotonic() + 5)
        assert slept == []
        with pytest.raises(RegistryError, match="failed after 3 attempts") as far:
            client.service("GET", url, what="a token", deadline=time.monotonic() + 600)
        assert not isinstance(far.value, PastDeadline) and len(slept) == 2
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        thread.join()


def test_rekor_gives_up_at_the_deadline_and_pauses_its_bucket(bed, rekor_url):
    """services: the bucket's deadline reaches the transport; the 429 given up pauses the
    bucket, so the next request is refused by the bucket, not sent."""
    client, slept = service_client()
    limit = RateLimit(60000, "Rekor bed", deadline=time.monotonic() + 5)
    rekor = services.Rekor(client, bed.env["REKOR_URL"], None, limit)
    with client:
        with pytest.raises(PastDeadline, match="would pass the run's deadline"):
            rekor.find("0" * 64, b"payload", b"signature", b"key")
        with pytest.raises(ServiceError, match=r"Rekor bed: waiting \d+\.\d s for a place under "
                                               r"its rate limit .*and a Retry-After\) would "
                                               r"pass the run's deadline: not sent"):
            rekor.find("0" * 64, b"payload", b"signature", b"key")
        # without a bucket, the deadline given to the client of Rekor
        bare = services.Rekor(client, bed.env["REKOR_URL"], None,
                              deadline=time.monotonic() + 5)
        with pytest.raises(PastDeadline, match="would pass the run's deadline"):
            bare.find("0" * 64, b"payload", b"signature", b"key")
    assert slept == [] and rekor_counts(bed) == (3, 2)


def test_keyless_429s_whose_retry_after_would_pass_the_deadline_fail_at_once(
        bed, oci11, tmp_path):
    """The whole run: the test bed's Rekor takes 6 a minute (Retry-After 10 s), the run has 8
    s: the second Rekor request's 429 is not retried, and the bucket, paused, sends no more."""
    run, results, state = sign_keyless(bed, oci11, tmp_path, 6, server=6, client=60000,
                                       deadline="8")
    assert run.returncode == 1, run.stderr
    entries = results["images"]
    failed = [e for e in entries if e["status"] == "failed"]
    assert len(failed) == 5, entries
    assert all("would pass the run's deadline" in e["error"] for e in failed), failed
    assert any("HTTP 429 after 1 attempt; waiting" in e["error"] for e in failed), failed
    assert not re.search(r"\(attempt \d+/\d+\); retrying in", run.stderr)  # none retried
    limited = state["faults"]["limited"]["rekor"]
    assert limited >= 1 and state["faults"]["requests"]["rekor"] == 1 + limited, state


def test_rekor_and_fulcio_without_a_limit_still_keep_the_deadline():
    """A private instance (no default limit) or a limit of 0: the run's deadline still reaches
    every Rekor and Fulcio request (their retries are not waited for past it)."""
    from signaction.inputs import Inputs
    from signaction.plan import SigningKey
    from signers.base import Options
    from signers.cosign import CosignSigner
    from signers.cosign.common import KEYLESS

    for deadline, bounded in ((60, True), (None, False)):
        signer = CosignSigner({"rekor_url": "https://rekor.example",
                               "fulcio_url": "https://fulcio.example"},
                              Options.default(inputs=Inputs(deadline=deadline)))
        signer._prepare_native([SigningKey(KEYLESS, KEYLESS)])
        assert signer.native.rekor.limit is None and signer.native.keyless.limit is None
        for service in (signer.native.rekor, signer.native.keyless):
            assert (service.deadline < float("inf")) is bounded, service
