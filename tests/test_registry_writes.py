"""The registry client's writes that the bundle format made shared: ``update_tag`` (the one
conditional read-change-write loop of the ``.sig`` tag and the referrers fallback tag),
``push_blob(shared=True)`` (the empty config of every referrer: mounted, not uploaded again) and
the session's environment settings read once per host. Against docker-registry (no conditional
writes, POST-then-PUT uploads) and the test bed's OCI 1.1 registry (If-Match honoured,
monolithic uploads)."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from signaction.formats.oci import EMPTY, EMPTY_JSON, OCI_MANIFEST, descriptor
from signaction.reference import Reference
from signaction.registry import RegistryClient, RegistryError
from signaction.registry.transport import _Session
from testbed.registry import Registry as Oci11


class Counting(RegistryClient):
    """The client, each request it sends listed as (method, path and query)."""

    def __init__(self):
        super().__init__(plain_http=True, environ={})
        self.sent: list[tuple[str, str]] = []

    def _request(self, method, url, **kwargs):
        self.sent.append((method, url.split("/v2/", 1)[1]))
        return super()._request(method, url, **kwargs)


def index(*entries: str) -> bytes:
    """A manifest that lists ``entries`` (in an annotation: docker-registry checks that what an
    index lists exists, and the empty config is pushed by ``repository``)."""
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": descriptor(EMPTY, EMPTY_JSON), "layers": [],
                       "annotations": {"entries": ",".join(entries)}}).encode()


def listed(raw: bytes) -> list[str]:
    return [e for e in json.loads(raw)["annotations"]["entries"].split(",") if e]


def repository(host: str, path: str) -> Reference:
    ref = Reference(host, path, "")
    RegistryClient(plain_http=True, environ={}).push_blob(ref, EMPTY_JSON)
    return ref


@pytest.fixture(scope="module")
def oci11():
    with Oci11() as registry:
        yield registry


# -- push_blob(shared=True) ---------------------------------------------------------------------

def test_a_shared_blob_is_mounted_where_uploads_take_two_requests(registry):
    client = Counting()
    one, two = (Reference(registry.host, f"shared/mount-{n}", "") for n in (1, 2))
    digest = client.push_blob(one, EMPTY_JSON, shared=True)
    assert [m for m, _ in client.sent] == ["POST", "PUT"]  # docker-registry: a session
    client.sent.clear()
    assert client.push_blob(two, EMPTY_JSON, shared=True) == digest
    assert len(client.sent) == 1 and "mount=" in client.sent[0][1] and \
        "from=shared%2Fmount-1" in client.sent[0][1]
    client.sent.clear()
    client.push_blob(two, EMPTY_JSON, shared=True)  # pushed there by this client: no request
    assert client.sent == []
    got = requests.get(f"http://{registry.host}/v2/shared/mount-2/blobs/{digest}", timeout=30)
    assert got.status_code == 200 and got.content == EMPTY_JSON


def test_a_blob_not_shared_is_uploaded_every_time(registry):
    client = Counting()
    for n in (1, 2):
        client.push_blob(Reference(registry.host, f"shared/plain-{n}", ""), b"not shared")
    assert [m for m, _ in client.sent] == ["POST", "PUT"] * 2


def test_a_shared_blob_stays_one_monolithic_post_where_the_registry_takes_it(oci11):
    client = Counting()
    for n in (1, 2):
        client.push_blob(Reference(oci11.host, f"shared/mono-{n}", ""), EMPTY_JSON, shared=True)
    assert [m for m, _ in client.sent] == ["POST", "POST"]
    assert all("digest=" in path and "mount=" not in path for _, path in client.sent)


def test_a_mount_the_registry_refuses_is_uploaded(registry):
    client = Counting()
    first = Reference(registry.host, "shared/gone-1", "")
    client.push_blob(first, EMPTY_JSON, shared=True)
    client._shared_blobs[(first.host, "sha256:" + hashlib.sha256(EMPTY_JSON).hexdigest())] = \
        "shared/never-pushed"  # a mount the registry cannot make: it opens a session
    client.sent.clear()
    digest = client.push_blob(Reference(registry.host, "shared/gone-2", ""), EMPTY_JSON,
                              shared=True)
    assert [m for m, _ in client.sent] == ["POST", "PUT"]
    got = requests.get(f"http://{registry.host}/v2/shared/gone-2/blobs/{digest}", timeout=30)
    assert got.content == EMPTY_JSON


# -- update_tag ---------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["docker-registry", "oci11"])
def test_update_tag_creates_changes_and_leaves_alone(where, registry, oci11):
    client = Counting()
    ref = repository(registry.host if where == "docker-registry" else oci11.host,
                     f"update/plain-{where}")
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    written, writes = client.update_tag(ref, "t", lambda found: index(a), OCI_MANIFEST)
    assert writes == 1 and client.read_tag(ref, "t") == (index(a), written)
    written, writes = client.update_tag(
        ref, "t", lambda found: index(*listed(found[0]), b), OCI_MANIFEST)
    assert writes == 1 and listed(client.read_tag(ref, "t")[0]) == [a, b]
    client.sent.clear()
    assert client.update_tag(ref, "t", lambda found: None, OCI_MANIFEST) == (written, 0)
    assert [m for m, _ in client.sent] == ["GET"]  # read, nothing to change: nothing written
    assert client.update_tag(ref, "absent", lambda found: None, OCI_MANIFEST) == (None, 0)


def test_update_tag_keeps_a_change_made_between_its_read_and_its_write(oci11):
    """The test bed honours If-Match: the stale write is refused (412), and the change is made
    again on top of the other writer's."""
    client, other = Counting(), RegistryClient(plain_http=True, environ={})
    ref = repository(oci11.host, "update/race")
    a, b, c = ("sha256:" + x * 64 for x in "abc")
    client.put_manifest(ref, "t", index(a), OCI_MANIFEST)
    calls = []

    def change(found):
        calls.append(listed(found[0]))
        if len(calls) == 1:  # another writer, after our read
            other.put_manifest(ref, "t", index(*listed(found[0]), b), OCI_MANIFEST)
        return index(*listed(found[0]), c)
    written, writes = client.update_tag(ref, "t", change, OCI_MANIFEST)
    assert calls == [[a], [a, b]] and writes == 2
    assert listed(client.read_tag(ref, "t")[0]) == [a, b, c]
    assert client.tag_digest(ref, "t") == written


def test_update_tag_writes_again_when_the_tag_changed_after_its_write(registry):
    """docker-registry honours no condition: the check after the write sees the other writer's
    manifest, and the change is made again on top of it."""
    ref = repository(registry.host, "update/after")
    b, c = ("sha256:" + x * 64 for x in "bc")
    other = RegistryClient(plain_http=True, environ={})

    class Overwritten(Counting):
        def put_manifest(self, ref, tag, raw, media_type, **condition):
            written = super().put_manifest(ref, tag, raw, media_type, **condition)
            if len(listed(raw)) == 1:  # the first write, then another writer's on top of it
                other.put_manifest(ref, tag, index(b), OCI_MANIFEST)
            return written
    client = Overwritten()
    seen = []

    def change(found):
        seen.append(listed(found[0]) if found else None)
        return index(*(listed(found[0]) if found else []), c) if not found or \
            c not in listed(found[0]) else None
    _, writes = client.update_tag(ref, "t", change, OCI_MANIFEST, what="a test entry")
    assert seen == [None, [b]] and writes == 2
    assert listed(client.read_tag(ref, "t")[0]) == [b, c]


def test_update_tag_gives_up_after_its_attempts(registry):
    ref = repository(registry.host, "update/endless")
    other = RegistryClient(plain_http=True, environ={})
    n = iter(range(1, 100))

    def change(found):  # every write is overwritten at once by another writer
        return index("sha256:" + f"{next(n):064x}")

    class Overwritten(RegistryClient):
        def put_manifest(self, ref, tag, raw, media_type, **condition):
            written = super().put_manifest(ref, tag, raw, media_type, **condition)
            other.put_manifest(ref, tag, index("sha256:" + "f" * 64), OCI_MANIFEST)
            return written
    with pytest.raises(RegistryError, match="changed the tag 3 times while a test entry was "
                                            "added; not added"):
        Overwritten(plain_http=True, environ={}).update_tag(ref, "t", change, OCI_MANIFEST,
                                                            attempts=3, what="a test entry")


def test_update_tag_sends_no_condition_for_a_new_tag_when_told(oci11):
    sent = []

    class Recording(RegistryClient):
        def put_manifest(self, ref, tag, raw, media_type, **condition):
            sent.append(condition)
            return super().put_manifest(ref, tag, raw, media_type, **condition)
    client = Recording(plain_http=True, environ={})
    ref = repository(oci11.host, "update/conditions")
    client.update_tag(ref, "new", lambda f: index("sha256:" + "a" * 64), OCI_MANIFEST,
                      new_tag_condition=False)
    client.update_tag(ref, "other", lambda f: index("sha256:" + "a" * 64), OCI_MANIFEST)
    written = client.tag_digest(ref, "other")
    client.update_tag(ref, "other", lambda f: index("sha256:" + "b" * 64), OCI_MANIFEST)
    assert sent == [{}, {"if_absent": True}, {"if_match": written}]


# -- the session's environment, read once per host ----------------------------------------------

def test_the_session_reads_the_environment_as_requests_does(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test.invalid:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test.invalid:3129")
    monkeypatch.setenv("NO_PROXY", "near.test.invalid,127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    ours, theirs = _Session(), requests.Session()
    for url in ("https://far.test.invalid/v2/x/manifests/t", "https://near.test.invalid/v2/",
                "http://127.0.0.1:5000/v2/", "http://far.test.invalid:8080/v2/x",
                "https://far.test.invalid/v2/y/blobs/uploads/"):
        for verify in (True, False, "/some/ca.pem"):
            for _ in range(2):  # computed, then from what was kept
                got = ours.merge_environment_settings(url, {}, True, verify, None)
                assert got == theirs.merge_environment_settings(url, {}, True, verify, None)
    got["proxies"]["https"] = "changed by a caller"  # a copy: what is kept is not changed
    assert ours.merge_environment_settings("https://far.test.invalid/v2/y/blobs/uploads/", {},
                                           True, "/some/ca.pem", None)["proxies"] == \
        theirs.merge_environment_settings("https://far.test.invalid/", {}, True, True,
                                          None)["proxies"]
