"""signaction/registry/ against a real docker-registry on loopback, mostly through the fault proxy
(tests/infra/fault_proxy.py) that injects 429/5xx/dropped connections, tampered bodies and Basic or
Bearer auth. Unit tests (no registry) cover credential lookup and lookaside reading."""

from __future__ import annotations

import base64
import email.utils
import functools
import hashlib
import http.server
import json
import logging
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import free_port, make_image
from infra import fault_proxy as fault_proxy_infra
from signaction.reference import Reference
from signaction.registry import (
    COSIGN_SIGNATURE_ANNOTATION,
    COSIGN_SIMPLESIGNING,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    RegistryClient,
    RegistryError,
    api_host,
    find_credentials,
    repository_path,
)

FaultProxy = fault_proxy_infra.FaultProxy


USER, PASSWORD = "alice", "pw-Sup3r-s3cret-value"
B64 = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
ALL_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- writing to the registry with its HTTP API (independent of the client under test) ---------

def push_blob(base: str, repo: str, data: bytes) -> dict:
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=30)
    assert r.status_code == 202, r.text
    location = requests.compat.urljoin(base, r.headers["Location"])
    sep = "&" if "?" in location else "?"
    r = requests.put(f"{location}{sep}digest={sha(data)}", data=data, timeout=30,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return {"digest": sha(data), "size": len(data)}


def put_manifest(base: str, repo: str, ref: str, doc: dict, media_type: str) -> tuple[str, bytes]:
    raw = json.dumps(doc, indent=1).encode()  # not canonical JSON: the digest is of these bytes
    r = requests.put(f"{base}/v2/{repo}/manifests/{ref}", data=raw, timeout=30,
                     headers={"Content-Type": media_type})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha(raw)
    return sha(raw), raw


def fetch_manifest(base: str, repo: str, ref: str) -> bytes:
    r = requests.get(f"{base}/v2/{repo}/manifests/{ref}", headers={"Accept": ALL_ACCEPT},
                     timeout=30)
    r.raise_for_status()
    return r.content


def cosign_payload(host: str, repo: str, digest: str, n: int) -> bytes:
    return json.dumps({"critical": {"identity": {"docker-reference": f"{host}/{repo}"},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": "cosign container image signature"},
                       "optional": {"n": n}}).encode()


class Images:
    """What the module pushed: name -> (repo, tag, digest, raw manifest)."""

    def __init__(self, host: str):
        self.host = host
        self.items: dict[str, tuple[str, str, str, bytes]] = {}

    def ref(self, name: str, host: str | None = None) -> Reference:
        repo, tag, _, _ = self.items[name]
        return Reference(host or self.host, repo, tag)

    def digest(self, name: str) -> str:
        return self.items[name][2]

    def raw(self, name: str) -> bytes:
        return self.items[name][3]


def _skopeo_v2s2(layout: Path, host: str, repo: str, tag: str) -> None:
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--format", "v2s2",
                    f"oci:{layout}:latest", f"docker://{host}/{repo}:{tag}"],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def images(registry, tmp_path_factory) -> Images:
    tmp = tmp_path_factory.mktemp("images")
    base = f"http://{registry.host}"
    out = Images(registry.host)

    # A single OCI manifest, pushed by skopeo.
    registry.push(make_image(tmp / "single", "single"), "regtest/single", "1.0")
    raw = fetch_manifest(base, "regtest/single", "1.0")
    out.items["oci"] = ("regtest/single", "1.0", sha(raw), raw)

    # A Docker schema 2 manifest.
    _skopeo_v2s2(make_image(tmp / "docker", "docker"), registry.host, "regtest/docker", "1.0")
    raw = fetch_manifest(base, "regtest/docker", "1.0")
    out.items["docker"] = ("regtest/docker", "1.0", sha(raw), raw)

    # An OCI index of two platform manifests.
    children = []
    for name, platform in (("amd", {"os": "linux", "architecture": "amd64"}),
                           ("arm", {"os": "linux", "architecture": "arm64", "variant": "v8"})):
        registry.push(make_image(tmp / f"multi-{name}", f"multi {name}"), "regtest/multi", name)
        child = fetch_manifest(base, "regtest/multi", name)
        children.append({"mediaType": OCI_MANIFEST, "digest": sha(child), "size": len(child),
                         "platform": platform})
    digest, raw = put_manifest(base, "regtest/multi", "1.0",
                               {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children},
                               OCI_INDEX)
    out.items["index"] = ("regtest/multi", "1.0", digest, raw)

    # A Docker manifest list of two schema 2 manifests.
    children = []
    for name, platform in (("amd", {"os": "linux", "architecture": "amd64"}),
                           ("s390x", {"os": "linux", "architecture": "s390x"})):
        _skopeo_v2s2(make_image(tmp / f"list-{name}", f"list {name}"), registry.host,
                     "regtest/list", name)
        child = fetch_manifest(base, "regtest/list", name)
        children.append({"mediaType": DOCKER_MANIFEST, "digest": sha(child), "size": len(child),
                         "platform": platform})
    digest, raw = put_manifest(base, "regtest/list", "1.0",
                               {"schemaVersion": 2, "mediaType": DOCKER_LIST,
                                "manifests": children}, DOCKER_LIST)
    out.items["list"] = ("regtest/list", "1.0", digest, raw)

    # Cosign signatures of the single image: two simplesigning layers and one other layer.
    repo, _, signed, _ = out.items["oci"]
    config = push_blob(base, repo, b"{}")
    layers = []
    for n in (1, 2):
        desc = push_blob(base, repo, cosign_payload(registry.host, repo, signed, n))
        layers.append({"mediaType": COSIGN_SIMPLESIGNING, **desc, "annotations": {
            COSIGN_SIGNATURE_ANNOTATION: base64.b64encode(f"sig-{n}".encode()).decode(),
            "dev.sigstore.cosign/bundle": json.dumps({"n": n})}})
    other = push_blob(base, repo, b"not a signature")
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", **other,
                   "annotations": {COSIGN_SIGNATURE_ANNOTATION: "c2hvdWxkIGJlIGlnbm9yZWQ="}})
    put_manifest(base, repo, signed.replace(":", "-") + ".sig",
                 {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                  "layers": layers}, OCI_MANIFEST)
    return out


def client(**kw) -> RegistryClient:
    kw.setdefault("environ", {})  # no ambient credentials
    kw.setdefault("plain_http", True)
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("retries", 3)
    kw.setdefault("timeout", 10)
    return RegistryClient(**kw)


def auth_file(tmp_path: Path, host: str, user: str = USER, password: str = PASSWORD) -> Path:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {host: {
        "auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}))
    return path


# -- resolve and manifest ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["oci", "docker", "index", "list"])
def test_resolve_returns_the_digest_of_what_the_tag_names(images, name):
    # For "index" and "list", the Accept header decides: without the index types the registry
    # answers 404 (OCI index) or the amd64 child (Docker list), whose digests differ.
    assert client().resolve(images.ref(name)) == images.digest(name)
def test_resolve_hashes_the_body_when_there_is_no_digest_header(images, fault_proxy):
    def strip(status, headers, body):
        return status, {k: v for k, v in headers.items() if k != "Docker-Content-Digest"}, body

    fault_proxy.rewrite_next(r"/manifests/1\.0$", strip, method="HEAD")
    fault_proxy.rewrite_next(r"/manifests/1\.0$", strip, method="GET")
    assert client().resolve(images.ref("index", fault_proxy.host)) == images.digest("index")
    assert [r.method for r in fault_proxy.records] == ["HEAD", "GET"]
def test_resolve_unknown_tag_is_an_error_with_the_registry_code(images):
    ref = Reference(images.host, "regtest/single", "nope")
    with pytest.raises(RegistryError) as e:
        client().resolve(ref)
    assert "404" in str(e.value) and "MANIFEST_UNKNOWN" in str(e.value)
    assert str(ref) in str(e.value)
    assert e.value.status == 404
def test_manifest_of_a_single_image(images):
    m = client().manifest(images.ref("oci"), images.digest("oci"))
    assert m == Manifest(images.digest("oci"), OCI_MANIFEST, images.raw("oci"))
    assert not m.is_index and m.platforms() == []
    d = client().manifest(images.ref("docker"), images.digest("docker"))
    assert d.media_type == DOCKER_MANIFEST and not d.is_index
def test_manifest_of_an_oci_index_lists_its_platforms(images):
    m = client().manifest(images.ref("index"), images.digest("index"))
    assert m.is_index and m.media_type == OCI_INDEX
    children = json.loads(images.raw("index"))["manifests"]
    assert m.platforms() == [(children[0]["digest"], "linux/amd64"),
                             (children[1]["digest"], "linux/arm64/v8")]
    # and each child is fetched and checked in turn
    for digest, _ in m.platforms():
        assert client().manifest(images.ref("index"), digest).media_type == OCI_MANIFEST
def test_manifest_of_a_docker_list_lists_its_platforms(images):
    m = client().manifest(images.ref("list"), images.digest("list"))
    assert m.is_index and m.media_type == DOCKER_LIST
    assert [p for _, p in m.platforms()] == ["linux/amd64", "linux/s390x"]


def test_platforms_of_children_without_platform_and_bad_digests():
    raw = json.dumps({"mediaType": OCI_INDEX, "manifests": [
        {"digest": "sha256:" + "a" * 64}]}).encode()
    assert Manifest(sha(raw), OCI_INDEX, raw).platforms() == [("sha256:" + "a" * 64,
                                                               "unknown/unknown")]
    raw = json.dumps({"mediaType": OCI_INDEX, "manifests": [{"digest": "sha256:../x"}]}).encode()
    with pytest.raises(RegistryError, match="not sha256"):
        Manifest(sha(raw), OCI_INDEX, raw).platforms()


@pytest.mark.parametrize("doc, problem", [
    ([], "no list of manifests"), ({"manifests": {"a": 1}}, "no list of manifests"),
    ({"manifests": ["sha256:" + "a" * 64]}, "digest is not sha256"),
    ({"manifests": [{"digest": "sha256:" + "a" * 64, "platform": "linux/amd64"}]},
     "platform is not an object"),
    ({"manifests": [{"digest": "sha256:" + "a" * 64, "platform": {"os": ["linux"]}}]},
     "not a short plain name"),
    ({"manifests": [{"digest": "sha256:" + "a" * 64,
                     "platform": {"os": "linux", "architecture": "x\n::add-mask::y"}}]},
     "not a short plain name")])
def test_an_index_of_the_wrong_shape_is_a_registry_error_naming_it(doc, problem):
    raw = json.dumps(doc).encode()
    with pytest.raises(RegistryError, match=problem):
        Manifest(sha(raw), OCI_INDEX, raw).platforms()
def test_manifest_refuses_a_body_that_does_not_match_the_digest(images, fault_proxy):
    digest = images.digest("oci")
    fault_proxy.rewrite_next(f"/manifests/{digest}$",
                             lambda s, h, b: (s, h, b.replace(b'"schemaVersion"',
                                                              b'"schemaVersion" ')))
    with pytest.raises(RegistryError) as e:
        client().manifest(images.ref("oci", fault_proxy.host), digest)
    assert "refusing" in str(e.value) and digest in str(e.value)
    # the untampered manifest passes through the same proxy
    assert client().manifest(images.ref("oci", fault_proxy.host), digest).raw == images.raw("oci")
def test_manifest_refuses_bodies_over_4_mib(images, fault_proxy):
    digest = images.digest("oci")
    fault_proxy.rewrite_next(f"/manifests/{digest}$", lambda s, h, b: (s, h, b + b" " * (4 << 20)))
    with pytest.raises(RegistryError, match=r"more than the 4194304"):
        client().manifest(images.ref("oci", fault_proxy.host), digest)
def test_manifest_unknown_digest_is_not_retried(images, fault_proxy):
    digest = "sha256:" + "0" * 64
    with pytest.raises(RegistryError) as e:
        client().manifest(images.ref("oci", fault_proxy.host), digest)
    assert "404" in str(e.value) and "MANIFEST_UNKNOWN" in str(e.value)
    assert len(fault_proxy.requests_to("/manifests/")) == 1


def test_manifest_refuses_a_malformed_digest():
    with pytest.raises(RegistryError, match="not a sha256"):
        client().manifest(Reference("127.0.0.1:1", "a/b", "t"), "sha256:../../x")


# -- cosign signatures ------------------------------------------------------------------------
def test_cosign_signatures_are_read_and_checked(images):
    ref, digest = images.ref("oci"), images.digest("oci")
    sigs = client().cosign_signatures(ref, digest)
    assert [s["payload"] for s in sigs] == [cosign_payload(images.host, ref.path, digest, n)
                                           for n in (1, 2)]
    assert [s["signature"] for s in sigs] == [base64.b64encode(b"sig-1").decode(),
                                             base64.b64encode(b"sig-2").decode()]
    assert sigs[0]["annotations"]["dev.sigstore.cosign/bundle"] == '{"n": 1}'
def test_cosign_signatures_absent_is_an_empty_list(images):
    assert client().cosign_signatures(images.ref("docker"), images.digest("docker")) == []
    assert client().cosign_signatures(Reference(images.host, "regtest/never-pushed", "1"),
                                      images.digest("docker")) == []
def test_cosign_signature_payload_is_digest_checked(images, fault_proxy):
    fault_proxy.rewrite_next(r"/blobs/sha256:",
                             lambda s, h, b: (s, h, b.replace(b"cosign", b"COSIGN")))
    with pytest.raises(RegistryError, match="refusing"):
        client().cosign_signatures(images.ref("oci", fault_proxy.host), images.digest("oci"))
def test_cosign_signature_payload_over_1_mib_is_refused(images, fault_proxy):
    fault_proxy.rewrite_next(r"/blobs/sha256:", lambda s, h, b: (s, h, b + b" " * (1 << 20)))
    with pytest.raises(RegistryError, match=r"more than the 1048576"):
        client().cosign_signatures(images.ref("oci", fault_proxy.host), images.digest("oci"))


# -- lookaside ----------------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


def write_lookaside(root: Path, ns_path: str, contents: dict[int, bytes]) -> Path:
    folder = root / ns_path.rsplit("/", 1)[0] / (ns_path.rsplit("/", 1)[1] + "@sha256=" + "ab" * 32)
    folder.mkdir(parents=True)
    for n, data in contents.items():
        (folder / f"signature-{n}").write_bytes(data)
    return folder


def test_lookaside_file_url_stops_at_the_first_missing_number(tmp_path):
    write_lookaside(tmp_path, "ns/app", {1: b"one", 2: b"two", 4: b"four"})
    ref = Reference("registry.example.com", "ns/app", "1.0")
    assert client().lookaside_signatures(tmp_path.as_uri(), ref, DIGEST) == [b"one", b"two"]
    assert client().lookaside_signatures(tmp_path.as_uri() + "/", ref, DIGEST) == [b"one", b"two"]
    assert client().lookaside_signatures((tmp_path / "other").as_uri(), ref, DIGEST) == []


def test_lookaside_more_than_the_limit_is_an_error(tmp_path):
    write_lookaside(tmp_path, "ns/app", {n: b"s" for n in range(1, 5)})
    ref = Reference("registry.example.com", "ns/app", "1.0")
    assert len(client().lookaside_signatures(tmp_path.as_uri(), ref, DIGEST, limit=4)) == 4
    with pytest.raises(RegistryError, match="more than 3 signatures"):
        client().lookaside_signatures(tmp_path.as_uri(), ref, DIGEST, limit=3)


def test_lookaside_docker_hub_path_has_library(tmp_path):
    write_lookaside(tmp_path, "library/ubuntu", {1: b"x"})
    ref = Reference("docker.io", "ubuntu", "24.04")
    assert client().lookaside_signatures(tmp_path.as_uri(), ref, DIGEST) == [b"x"]


@pytest.fixture
def web_server(tmp_path):
    """A plain http file server on loopback serving tmp_path/www; records request paths."""
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append(self.path)
            super().do_GET()

    server = fault_proxy_infra.QuietServer(("127.0.0.1", 0),
                                           functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.root, server.seen = root, seen
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def test_lookaside_http_url(web_server):
    write_lookaside(web_server.root / "sigs", "ns/app", {1: b"one", 2: b"two"})
    ref = Reference("registry.example.com", "ns/app", "1.0")
    got = client(plain_http=False).lookaside_signatures(web_server.url + "/sigs", ref, DIGEST)
    assert got == [b"one", b"two"]
    assert web_server.seen == [f"/sigs/ns/app@sha256={'ab' * 32}/signature-{n}" for n in (1, 2, 3)]


def test_lookaside_http_userinfo_is_basic_auth_and_never_shown(tmp_path):
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(500)  # always: the error message must not show the password
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://{USER}:{PASSWORD}@127.0.0.1:{server.server_address[1]}/sigs"
        with pytest.raises(RegistryError) as e:
            client(retries=1).lookaside_signatures(base, Reference("r.example", "ns/a", "1"),
                                                   DIGEST)
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["Basic " + B64]
    assert "500" in str(e.value) and PASSWORD not in str(e.value) and USER not in str(e.value)


def test_a_body_cut_off_while_it_streams_is_retried(caplog):
    """urllib3 has returned the response when its body breaks: the client retries it itself."""
    sent = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            sent.append(self.path)
            if not self.path.endswith("signature-1"):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            if len(sent) == 1:  # the first answer stops after 10 of its 100 bytes
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(b"y" * 100)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/sigs"
        ref = Reference("r.example", "ns/a", "1")
        with caplog.at_level("WARNING", logger="signaction"):
            assert client().lookaside_signatures(base, ref, DIGEST) == [b"y" * 100]
        assert [p.rsplit("/", 1)[1] for p in sent] == ["signature-1", "signature-1",
                                                       "signature-2"]
        assert any("attempt 1/3" in r.getMessage() for r in caplog.records)
        sent.clear()
        with pytest.raises(RegistryError, match="after 1 attempt"):  # no retries: no second try
            client(retries=1).lookaside_signatures(base, ref, DIGEST)
    finally:
        server.shutdown()
        server.server_close()


def test_lookaside_http_signature_over_1_mib_is_refused(web_server):
    write_lookaside(web_server.root, "ns/app", {1: b"x" * ((1 << 20) + 1)})
    with pytest.raises(RegistryError, match="more than"):
        client().lookaside_signatures(web_server.url, Reference("r.example", "ns/app", "1"), DIGEST)


# -- credentials (unit) -------------------------------------------------------------------------

def _auths(path: Path, auths: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": auths}))
    return str(path)


def _entry(user: str, password: str = "p") -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("key", ["quay.example", "https://quay.example", "https://quay.example/v1/",
                                 "http://quay.example/v2/", "quay.example/"])
def test_auth_file_key_spellings(tmp_path, key):
    env = {"REGISTRY_AUTH_FILE": _auths(tmp_path / "a.json", {key: _entry("u")})}
    assert find_credentials("quay.example", "ns/app", environ=env) == ("u", "p")
    assert find_credentials("other.example", "ns/app", environ=env) is None


@pytest.mark.parametrize("key", ["docker.io", "index.docker.io", "https://index.docker.io/v1/",
                                 "registry-1.docker.io"])
def test_auth_file_docker_hub_aliases(tmp_path, key):
    env = {"REGISTRY_AUTH_FILE": _auths(tmp_path / "a.json", {key: _entry("hub")})}
    assert find_credentials("docker.io", "library/ubuntu", environ=env) == ("hub", "p")


def test_auth_file_username_password_fields_and_namespace_keys(tmp_path):
    env = {"REGISTRY_AUTH_FILE": _auths(tmp_path / "a.json", {
        "quay.example": {"username": "host", "password": "hp"},
        "quay.example/team": _entry("team"),
        "quay.example/team/app": _entry("app")})}
    assert find_credentials("quay.example", "team/app", environ=env) == ("app", "p")
    assert find_credentials("quay.example", "team/other", environ=env) == ("team", "p")
    assert find_credentials("quay.example", "x/y", environ=env) == ("host", "hp")


def test_credential_lookup_order(tmp_path):
    host = "quay.example"
    env = {"REGISTRY_AUTH_FILE": _auths(tmp_path / "env.json", {host: _entry("env")}),
           "DOCKER_CONFIG": str(tmp_path / "dockercfg"),
           "HOME": str(tmp_path / "home"),
           "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    own = _auths(tmp_path / "own.json", {host: _entry("own")})
    _auths(tmp_path / "dockercfg" / "config.json", {host: _entry("docker-config")})
    _auths(tmp_path / "home" / ".docker" / "config.json", {host: _entry("home")})
    _auths(tmp_path / "run" / "containers" / "auth.json", {host: _entry("xdg")})

    def who(environ, **kw):
        creds = find_credentials(host, "ns/app", auth_file=kw.pop("auth_file", own),
                                 environ=environ, **kw)
        return creds and creds[0]

    assert who(env, username="explicit", password="x") == "explicit"
    assert who(env) == "env"
    del env["REGISTRY_AUTH_FILE"]
    assert who(env) == "own"
    assert who(env, auth_file=None) == "docker-config"
    del env["DOCKER_CONFIG"]
    assert who(env, auth_file=None) == "home"
    del env["HOME"]
    assert who(env, auth_file=None) == "xdg"
    del env["XDG_RUNTIME_DIR"]
    assert who(env, auth_file=None) is None


def test_a_file_without_an_entry_for_the_host_falls_through(tmp_path):
    env = {"REGISTRY_AUTH_FILE": _auths(tmp_path / "env.json", {"elsewhere.example": _entry("x")}),
           "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    _auths(tmp_path / "run" / "containers" / "auth.json", {"quay.example": _entry("xdg")})
    assert find_credentials("quay.example", "a/b", environ=env) == ("xdg", "p")


def test_a_missing_or_broken_named_auth_file_is_an_error(tmp_path):
    with pytest.raises(RegistryError, match="no such file"):
        find_credentials("q.example", "a", environ={"REGISTRY_AUTH_FILE": str(tmp_path / "none")})
    broken = tmp_path / "broken.json"
    broken.write_text('{"auths": {"q.example": {"auth": "' + B64)  # truncated
    with pytest.raises(RegistryError) as e:
        find_credentials("q.example", "a", auth_file=str(broken), environ={})
    assert "not valid JSON" in str(e.value) and B64 not in str(e.value)
    bad = _auths(tmp_path / "bad.json", {"q.example": {"auth": "!!!" + PASSWORD}})
    with pytest.raises(RegistryError) as e:
        find_credentials("q.example", "a", auth_file=bad, environ={})
    assert PASSWORD not in str(e.value)


def test_docker_hub_api_host_and_library():
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("quay.io") == "quay.io"
    assert repository_path(Reference("docker.io", "ubuntu", "1")) == "library/ubuntu"
    assert repository_path(Reference("docker.io", "me/app", "1")) == "me/app"
    assert repository_path(Reference("quay.io", "app", "1")) == "app"
    c = RegistryClient(environ={})
    assert (c._v2_url(Reference("docker.io", "ubuntu", "1"), "manifests/1")
            == "https://registry-1.docker.io/v2/library/ubuntu/manifests/1")


# -- auth through the proxy -----------------------------------------------------------------------
def test_basic_auth_from_registry_auth_file(images, fault_proxy, tmp_path):
    fault_proxy.require_basic(USER, PASSWORD)
    env = {"REGISTRY_AUTH_FILE": str(auth_file(tmp_path, fault_proxy.host))}
    c = client(environ=env)
    ref = images.ref("oci", fault_proxy.host)
    assert c.resolve(ref) == images.digest("oci")
    assert c.manifest(ref, images.digest("oci")).raw == images.raw("oci")
    got = [(r.method, r.status, r.auth_scheme) for r in fault_proxy.records]
    # one 401, retried once with Basic; later requests send Basic up front
    assert got == [("HEAD", 401, None), ("HEAD", 200, "Basic"), ("GET", 200, "Basic")]
def test_explicit_username_password_beat_the_auth_file(images, fault_proxy, tmp_path):
    fault_proxy.require_basic(USER, PASSWORD)
    env = {"REGISTRY_AUTH_FILE": str(auth_file(tmp_path, fault_proxy.host, "wrong", "wrong"))}
    c = client(environ=env, username=USER, password=PASSWORD)
    assert c.resolve(images.ref("oci", fault_proxy.host)) == images.digest("oci")
@pytest.mark.parametrize("token_field", ["token", "access_token"])
def test_bearer_auth_fetches_one_token_per_scope(images, fault_proxy, tmp_path, token_field):
    fault_proxy.require_bearer(USER, PASSWORD, token_field=token_field)
    c = client(environ={"REGISTRY_AUTH_FILE": str(auth_file(tmp_path, fault_proxy.host))})
    ref = images.ref("oci", fault_proxy.host)
    assert c.resolve(ref) == images.digest("oci")
    assert c.manifest(ref, images.digest("oci")).raw == images.raw("oci")
    assert len(c.cosign_signatures(ref, images.digest("oci"))) == 2
    assert fault_proxy.token_requests == [{"service": "test",
                                           "scope": "repository:regtest/single:pull"}]
    token_calls = fault_proxy.requests_to("^/token")
    assert [(r.status, r.auth_scheme) for r in token_calls] == [(200, "Basic")]
    registry_calls = [r for r in fault_proxy.records if r.path.startswith("/v2/")]
    assert [r.status for r in registry_calls][:2] == [401, 200]
    assert all(r.auth_scheme == "Bearer" and r.status == 200 for r in registry_calls[1:])
    # another repository is another scope: another token
    assert c.resolve(images.ref("index", fault_proxy.host)) == images.digest("index")
    assert [q["scope"] for q in fault_proxy.token_requests] == [
        "repository:regtest/single:pull", "repository:regtest/multi:pull"]
def test_bearer_token_expiry_and_revocation_get_a_new_token(images, fault_proxy, tmp_path):
    fault_proxy.require_bearer(USER, PASSWORD, expires_in=1)
    c = client(environ={"REGISTRY_AUTH_FILE": str(auth_file(tmp_path, fault_proxy.host))})
    ref = images.ref("oci", fault_proxy.host)
    c.resolve(ref)
    c.resolve(ref)
    assert len(fault_proxy.token_requests) == 1  # reused while valid
    time.sleep(0.6)  # past the client's use-by (half of a 1 s lifetime)
    c.resolve(ref)
    assert len(fault_proxy.token_requests) == 2
    fault_proxy.require_bearer(USER, PASSWORD, expires_in=300)
    c.resolve(ref)  # a token good for 5 minutes
    fault_proxy.revoke_tokens()
    fault_proxy.clear()
    assert c.resolve(ref) == images.digest("oci")  # the cached token is refused: one new one
    assert [(r.path.split("?")[0], r.status, r.auth_scheme) for r in fault_proxy.records] == [
        ("/v2/regtest/single/manifests/1.0", 401, "Bearer"), ("/token", 200, "Basic"),
        ("/v2/regtest/single/manifests/1.0", 200, "Bearer")]
def test_bearer_token_is_fetched_once_for_concurrent_threads(images, fault_proxy, tmp_path):
    fault_proxy.require_bearer(USER, PASSWORD)
    c = client(environ={"REGISTRY_AUTH_FILE": str(auth_file(tmp_path, fault_proxy.host))})
    ref = images.ref("index", fault_proxy.host)
    results, errors = [], []
    barrier = threading.Barrier(8)

    def work():
        try:
            barrier.wait(10)
            results.append(c.resolve(ref))
            results.append(c.manifest(ref, images.digest("index")).digest)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and results == [images.digest("index")] * 16
    assert len(fault_proxy.token_requests) == 1
@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_no_credentials_is_a_401_error_naming_the_host(images, fault_proxy, tmp_path, mode):
    getattr(fault_proxy, f"require_{mode}")(USER, PASSWORD)
    with pytest.raises(RegistryError) as e:
        client(environ={"HOME": str(tmp_path)}).resolve(images.ref("oci", fault_proxy.host))
    assert "401" in str(e.value) and fault_proxy.host in str(e.value)
    assert "no credentials" in str(e.value)
    assert e.value.status == 401
@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_wrong_credentials_are_retried_once_and_never_shown(images, fault_proxy, tmp_path, mode,
                                                            caplog):
    caplog.set_level(logging.DEBUG)
    getattr(fault_proxy, f"require_{mode}")(USER, "the-right-one")
    c = client(environ={"REGISTRY_AUTH_FILE": str(auth_file(tmp_path, fault_proxy.host))})
    with pytest.raises(RegistryError) as e:
        c.resolve(images.ref("oci", fault_proxy.host))
    assert "401" in str(e.value) and "rejected" in str(e.value)
    assert len(fault_proxy.records) == 2  # the first try and the one auth retry (or token fetch)
    for text in (str(e.value), caplog.text):
        assert PASSWORD not in text and B64 not in text
def test_secrets_never_reach_logs_or_errors(images, fault_proxy, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fault_proxy.require_bearer(USER, PASSWORD)
    fault_proxy.fail_next("^/token", status=503, times=1)
    fault_proxy.fail_next(r"/manifests/", status=429, headers={"Retry-After": "0"}, times=1,
                          method="GET")
    c = client(environ={"REGISTRY_AUTH_FILE": str(auth_file(tmp_path, fault_proxy.host))})
    ref = images.ref("oci", fault_proxy.host)
    assert c.manifest(ref, images.digest("oci")).raw == images.raw("oci")
    fault_proxy.fail_next(r"/manifests/", status=500, times=10,
                          body=json.dumps({"errors": [{"code": "X", "message": "boom"}]}))
    with pytest.raises(RegistryError) as e:
        c.manifest(ref, images.digest("oci"))
    assert "boom" in str(e.value)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 + 1 + 2  # token 503, manifest 429, two of three 500s
    secrets = [PASSWORD, B64, *fault_proxy.tokens]
    assert fault_proxy.tokens
    for text in (caplog.text, str(e.value)):
        for secret in secrets:
            assert secret not in text
def test_credentials_are_not_sent_to_a_plain_http_realm_not_allowed(images, fault_proxy, tmp_path):
    fault_proxy.require_bearer(USER, PASSWORD)
    # the registry is reached over plain http, but the realm host is not in the allowed list
    # (the allowed host is spelled "localhost:<port>", the realm "127.0.0.1:<port>")
    port = fault_proxy.host.split(":")[1]
    c = client(environ={"REGISTRY_AUTH_FILE": str(auth_file(tmp_path, f"localhost:{port}"))},
               plain_http=lambda host: host == f"localhost:{port}")
    with pytest.raises(RegistryError, match="token realm is plain http"):
        c.resolve(Reference(f"localhost:{port}", "regtest/single", "1.0"))
    assert fault_proxy.token_requests == []


# -- retries --------------------------------------------------------------------------------------
def test_429_honours_retry_after_seconds(images, fault_proxy):
    fault_proxy.fail_next(r"/manifests/1\.0$", status=429, headers={"Retry-After": "1"})
    start = time.monotonic()
    assert client().resolve(images.ref("oci", fault_proxy.host)) == images.digest("oci")
    assert time.monotonic() - start >= 1.0  # the backoff alone would be ~0.01 s
    assert [(r.method, r.status) for r in fault_proxy.records] == [("HEAD", 429), ("HEAD", 200)]
def test_429_honours_retry_after_http_date(images, fault_proxy):
    when = email.utils.formatdate(time.time() + 3, usegmt=True)  # 1 s resolution: at least 2 s
    fault_proxy.fail_next(r"/manifests/1\.0$", status=429, headers={"Retry-After": when})
    start = time.monotonic()
    assert client().resolve(images.ref("oci", fault_proxy.host)) == images.digest("oci")
    assert time.monotonic() - start >= 1.5
    assert len(fault_proxy.records) == 2
def test_retry_after_is_capped_by_max_backoff(images, fault_proxy):
    fault_proxy.fail_next(r"/manifests/1\.0$", status=429, headers={"Retry-After": "3600"})
    c = client(max_backoff=0.2)
    start = time.monotonic()
    assert c.resolve(images.ref("oci", fault_proxy.host)) == images.digest("oci")
    assert time.monotonic() - start < 5
def test_500_then_success(images, fault_proxy, caplog):
    caplog.set_level(logging.WARNING, logger="signaction.registry")
    fault_proxy.fail_next(r"/manifests/", status=500, times=2)
    assert client().resolve(images.ref("oci", fault_proxy.host)) == images.digest("oci")
    assert [r.status for r in fault_proxy.records] == [500, 500, 200]
    assert len([r for r in caplog.records if "HTTP 500" in r.getMessage()]) == 2
def test_dropped_connection_then_success(images, fault_proxy):
    fault_proxy.fail_next(r"/manifests/", drop=True, times=1)
    d = images.digest("oci")
    assert client().manifest(images.ref("oci", fault_proxy.host), d).digest == d
    assert [r.status for r in fault_proxy.records] == [None, 200]
def test_retries_exhausted_is_an_error(images, fault_proxy):
    fault_proxy.fail_next(r"/manifests/", status=503, times=10,
                          body=json.dumps({"errors": [{"code": "UNAVAILABLE",
                                                       "message": "try later"}]}))
    ref = images.ref("oci", fault_proxy.host)
    with pytest.raises(RegistryError) as e:
        client(retries=3).manifest(ref, images.digest("oci"))
    msg = str(e.value)
    assert "503" in msg and "3 attempts" in msg and "UNAVAILABLE: try later" in msg
    assert str(ref) in msg and "\n" not in msg
    assert len(fault_proxy.records) == 3
@pytest.mark.parametrize("status", [400, 403, 404, 405])
def test_other_4xx_are_not_retried(images, fault_proxy, status):
    fault_proxy.fail_next(r"/manifests/", status=status, times=10, method="GET")
    with pytest.raises(RegistryError, match=str(status)):
        client().manifest(images.ref("oci", fault_proxy.host), images.digest("oci"))
    assert len(fault_proxy.records) == 1
def test_resolve_does_not_spend_its_retries_twice(images, fault_proxy):
    fault_proxy.fail_next(r"/manifests/", status=503, times=10)
    with pytest.raises(RegistryError, match="503"):
        client(retries=2).resolve(images.ref("oci", fault_proxy.host))
    assert [r.method for r in fault_proxy.records] == ["HEAD", "HEAD"]


def test_connection_refused_is_retried_then_an_error(caplog):
    caplog.set_level(logging.WARNING, logger="signaction.registry")
    ref = Reference(f"127.0.0.1:{free_port()}", "a/b", "1")
    with pytest.raises(RegistryError) as e:
        client(retries=3).resolve(ref)
    assert "3 attempts" in str(e.value) and "refused" in str(e.value).lower()
    assert len(caplog.records) == 2


def test_backoff_is_exponential_with_jitter_and_capped():
    delays = []
    c = client(retries=6, backoff_base=1.0, max_backoff=3.0)
    c._sleep = delays.append
    with pytest.raises(RegistryError):
        c.resolve(Reference(f"127.0.0.1:{free_port()}", "a/b", "1"))
    assert len(delays) == 5
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0
    assert all(1.5 <= d <= 3.0 for d in delays[2:])


# -- transport ------------------------------------------------------------------------------------
def test_plain_http_only_for_allowed_hosts(images):
    ref = images.ref("oci")
    with pytest.raises(RegistryError):
        client(plain_http=False, retries=1).resolve(ref)
    with pytest.raises(RegistryError):
        client(plain_http=lambda h: h == "other.example", retries=1).resolve(ref)
    assert client(plain_http=lambda h: h == images.host).resolve(ref) == images.digest("oci")
def test_tls_verified_by_default_or_with_a_ca_bundle(images, registry, tls_material):
    proxy = FaultProxy(registry.host, tls=(str(tls_material.server_cert),
                                           str(tls_material.server_key))).start()
    try:
        ref = images.ref("oci", proxy.host)
        with pytest.raises(RegistryError, match="(?i)certificate"):
            client(plain_http=False, retries=1).resolve(ref)
        assert client(plain_http=False, verify_tls=str(tls_material.ca_cert)).resolve(ref) \
            == images.digest("oci")
        assert client(plain_http=False, verify_tls=False).resolve(ref) == images.digest("oci")
    finally:
        proxy.stop()
def test_the_proxy_passes_uploads_through(images, fault_proxy):
    """The proxy itself: a blob upload (POST, then PUT to the rewritten Location) goes through."""
    base = fault_proxy.url
    desc = push_blob(base, "regtest/upload", b"through the proxy")
    assert requests.get(f"http://{images.host}/v2/regtest/upload/blobs/{desc['digest']}",
                        timeout=10).content == b"through the proxy"
    methods = [r.method for r in fault_proxy.records]
    assert methods == ["POST", "PUT"]
@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_skopeo_pushes_through_the_proxy_with_auth(images, fault_proxy, tmp_path, mode):
    """The proxy carries a real client's push (chunked PATCH/PUT uploads, Location rewriting,
    push-scope tokens), so signers' own tools can run through it; the client then reads it."""
    getattr(fault_proxy, f"require_{mode}")(USER, PASSWORD)
    layout = make_image(tmp_path / "img", f"through proxy {mode}")
    proc = subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                           "--dest-creds", f"{USER}:{PASSWORD}", f"oci:{layout}:latest",
                           f"docker://{fault_proxy.host}/regtest/pushed-{mode}:1.0"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert {"POST", "PUT"} <= {r.method for r in fault_proxy.records}
    c = client(username=USER, password=PASSWORD)
    ref = Reference(fault_proxy.host, f"regtest/pushed-{mode}", "1.0")
    digest = c.resolve(ref)
    assert digest == sha(fetch_manifest(f"http://{images.host}", f"regtest/pushed-{mode}", "1.0"))
