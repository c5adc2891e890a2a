"""A hostile registry while verifying and skipping (issue 23): the answers a verifier reads (the
``sha256-<hex>.sig`` manifest, the image's index) replaced, through the fault proxy, by mutations
generated from the genuine ones (seeded, so a failure is reproducible: each case's id is its
seed and what it did). Whatever comes back, the check gives a verdict (no exception), never
"verified" unless the genuine signature layer is still there as it was, reads a bounded number
of blobs, and the run says what happened in one line."""

from __future__ import annotations

import copy
import json
import random

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import make_image, run_entrypoint
from infra.fault_proxy import FaultProxy
from signaction.errors import InputError
from signaction.inputs import parse_inputs
from signaction.plan import build_plan
from signaction.registry import RegistryClient
from signaction.resolve import complete_plan
from signers.cosign import CosignTrust, cosign_verifier

SIG_TAG = r"/manifests/sha256-[0-9a-f]{64}\.sig$"


@pytest.fixture(scope="module")
def proxy(registry):
    """One fault proxy for the module: the image is signed through it, so that the signature's
    identity names the host the checks read from."""
    shared = FaultProxy(registry.host).start()
    yield shared
    shared.stop()


@pytest.fixture
def fault_proxy(proxy):
    proxy.clear()
    yield proxy
    proxy.clear()


@pytest.fixture(scope="module")
def signed(registry, proxy, tmp_path_factory):
    """An image in the registry signed in-process, through the proxy, with a plain P-256 key
    (no log): the key's files, the image's digest and the genuine .sig manifest."""
    tmp = tmp_path_factory.mktemp("hostile-registry")
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp / "key.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    digest = registry.push(make_image(tmp / "img", "hostile registry"), "hostile/app", "v1")
    (tmp / "conf.json").write_text(json.dumps({"registry": {"allow_http": True, "retries": 1},
                                               "cosign_signer": {"upload_tlog": False}}))
    run = run_entrypoint("--signer", "cosign", "--config-file", str(tmp / "conf.json"),
                         "--signing-key", str(tmp / "key.pem"), "--output-dir",
                         str(tmp / "out"), "--image", f"{proxy.host}/hostile/app:v1@{digest}")
    assert run.returncode == 0, run.stderr
    sig = registry.manifest("hostile/app", f"{digest.replace(':', '-')}.sig")
    return tmp, digest, json.loads(sig)


def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.choice(["str", "int", "list", "dict", "null", "bool", "float"])
    if depth > 2 or kind in ("str", "int", "null", "bool", "float"):
        return {"str": "x" * rng.randint(0, 40), "int": rng.randint(-2**70, 2**70),
                "null": None, "bool": True, "float": 1e308 * 10 if rng.random() < .3 else 0.5,
                "list": [], "dict": {}}[kind]
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["mediaType", "digest", "size", "annotations", "layers", "x"]):
            _random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _nodes(value, path=()):
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nodes(v, (*path, i))


def mutate_sig(genuine: dict, seed: int) -> tuple[str, bytes]:
    """One hostile ``.sig`` manifest from the genuine one: (what was done, the bytes)."""
    rng = random.Random(seed)
    doc = copy.deepcopy(genuine)
    layer = doc["layers"][0]
    how = rng.choice(["layers", "media-type", "annotation", "digest", "retype", "deep",
                      "truncate", "bytes", "config"])
    if how == "layers":  # the genuine layer and thousands of copies or variants
        n = rng.choice([129, 1001, 10_000])
        doc["layers"] = [layer] + [{**layer, "annotations": {
            **layer["annotations"], "dev.cosignproject.cosign/signature": f"x{i}"}}
            for i in range(n)]
        return f"{n + 1} layers", json.dumps(doc).encode()
    if how == "media-type":
        layer["mediaType"] = rng.choice(["", "text/html", "application/vnd.oci.image.layer.v1"
                                         ".tar+gzip", "application/vnd.dev.cosign.simplesigning"
                                         ".v1+json; charset=evil", 7])
        return f"media type {layer['mediaType']!r}", json.dumps(doc).encode()
    if how == "annotation":
        size = rng.choice([100_000, 1 << 20, 3 << 20])
        name = rng.choice(["dev.cosignproject.cosign/signature", "dev.sigstore.cosign/certificate",
                           "dev.sigstore.cosign/chain", "dev.sigstore.cosign/bundle", "other"])
        layer["annotations"][name] = rng.choice("A=-\n") * size
        return f"annotation {name} of {size} bytes", json.dumps(doc).encode()
    if how == "digest":
        layer["digest"] = rng.choice(["sha256:" + "0" * 64, "sha512:" + "a" * 128, "sha256:../x",
                                      "sha256:" + "A" * 64, None, 5])
        return f"digest {layer['digest']!r}", json.dumps(doc).encode()
    if how == "retype":  # a random node of the document replaced by a random JSON value
        paths = list(_nodes(doc))[1:]
        path = rng.choice(paths)
        target = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = _random_json(rng)
        return f"{'/'.join(map(str, path))} retyped", json.dumps(doc).encode()
    if how == "deep":
        depth = rng.choice([1000, 100_000, 1_000_000])
        return f"nested {depth} deep", b'{"layers": ' + b"[" * depth + b"]" * depth + b"}"
    if how == "truncate":
        raw = json.dumps(genuine).encode()
        cut = rng.randrange(len(raw))
        return f"cut at {cut}", raw[:cut]
    if how == "config":
        doc["config"] = _random_json(rng)
        return "config retyped", json.dumps(doc).encode()
    return "random bytes", rng.randbytes(rng.randint(0, 5000))


def _genuine_layer_kept(genuine: dict, body: bytes) -> bool:
    """A layer of ``body`` still has what the key check rests on (no Rekor key is configured
    here): the genuine layer's media type, payload digest and signature annotation."""
    first = genuine["layers"][0]
    sig = "dev.cosignproject.cosign/signature"
    try:
        return any(isinstance(layer, dict) and layer.get("mediaType") == first["mediaType"]
                   and layer.get("digest") == first["digest"]
                   and isinstance(layer.get("annotations"), dict)
                   and layer["annotations"].get(sig) == first["annotations"][sig]
                   for layer in json.loads(body).get("layers"))
    except (ValueError, TypeError, AttributeError, RecursionError):
        return False


SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_hostile_sig_manifest_gets_a_verdict_never_a_false_verified(
        signed, registry, fault_proxy, seed):
    tmp, digest, genuine = signed
    what, body = mutate_sig(genuine, seed)
    fault_proxy.rewrite_next(SIG_TAG, lambda status, headers, _: (200, {
        **{k: v for k, v in headers.items() if k.lower() != "content-length"},
        "Content-Type": "application/vnd.oci.image.manifest.v1+json"}, body), times=10)
    inputs = parse_inputs(["--image", f"{fault_proxy.host}/hostile/app:v1@{digest}",
                           "--signing-key", str(tmp / "key.pub")], {})
    item = next(build_plan(inputs, {}).items())
    client = RegistryClient(plain_http=True, retries=1)
    trust = CosignTrust(public_pem=(tmp / "key.pub").read_bytes())
    verdict = cosign_verifier(client, {item.key.key: trust})(item)
    assert verdict.status in ("verified", "invalid", "missing"), (what, verdict)
    if verdict.status == "verified":
        assert _genuine_layer_kept(genuine, body), (what, verdict)
    assert "\n" not in verdict.reason and len(verdict.reason) < 4000, (what, verdict.reason[:300])
    blobs = [r for r in fault_proxy.records if "/blobs/" in r.path]
    assert len(blobs) <= 1000, (what, len(blobs))  # at most the cap, each distinct blob once
    if what.endswith(" layers") and int(what.split()[0]) > 1000:  # not read one by one
        assert verdict.status == "invalid" and "more than the 1000" in verdict.reason, what


def test_skip_signed_with_a_hostile_sig_manifest_signs_or_fails_in_one_line(
        signed, fault_proxy, tmp_path):
    """Signing with skip-signed while the registry answers the .sig tag with JSON nested a
    million deep: the existing signatures cannot be read (a warning), and appending to such a
    tag is refused: that image fails in one line, exit 1, nothing else written for it."""
    tmp, digest, genuine = signed
    body = b'{"layers": ' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}"
    fault_proxy.rewrite_next(SIG_TAG, lambda status, headers, _: (200, {
        **{k: v for k, v in headers.items() if k.lower() != "content-length"},
        "Content-Type": "application/vnd.oci.image.manifest.v1+json"}, body), times=20)
    run = run_entrypoint("--signer", "cosign", "--config-file", str(tmp / "conf.json"),
                         "--signing-key", str(tmp / "key.pem"), "--output-dir",
                         str(tmp_path / "out"), "--no-expand-index",
                         "--image", f"{fault_proxy.host}/hostile/app:v1@{digest}")
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    [entry] = json.loads((tmp_path / "out" / "results.json").read_text())["images"]
    assert entry["status"] == "failed" and "not a JSON image manifest" in entry["error"], entry
    assert "existing signatures" in run.stderr or "could not" in run.stderr, run.stderr


def test_the_run_reports_a_hostile_sig_manifest_in_one_line(signed, registry, fault_proxy,
                                                             tmp_path):
    tmp, digest, genuine = signed
    _, body = mutate_sig(genuine, next(s for s in SEEDS if mutate_sig(genuine, s)[0]
                                        .startswith("nested")))
    fault_proxy.rewrite_next(SIG_TAG, lambda status, headers, _: (200, headers, body), times=10)
    run = run_entrypoint("--mode", "verify", "--signer", "cosign", "--config-file",
                         str(tmp / "conf.json"), "--signing-key", str(tmp / "key.pub"),
                         "--output-dir", str(tmp_path / "v"), "--no-expand-index",
                         "--image", f"{fault_proxy.host}/hostile/app:v1@{digest}")
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, run.stderr


# -- the image's index, read to expand it ---------------------------------------------------

def hostile_index(rng: random.Random) -> tuple[str, bytes]:
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 500,
             "digest": "sha256:" + "1" * 64,
             "platform": {"os": "linux", "architecture": "amd64"}}
    how = rng.choice(["many", "retype", "deep", "platform"])
    doc: dict = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}
    if how == "many":
        n = rng.choice([1025, 20_000, 100_000])
        doc["manifests"] = [{**entry, "digest": f"sha256:{i:064x}"} for i in range(n)]
    elif how == "retype":
        doc["manifests"] = [entry, _random_json(rng)]
    elif how == "deep":
        return "nested", b'{"mediaType": "application/vnd.oci.image.index.v1+json", ' \
            b'"manifests": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    else:
        doc["manifests"] = [{**entry, "platform": {"os": rng.choice(["\n::error::x", "a" * 300,
                                                                      "../..", ""]),
                                                   "architecture": "amd64"}}]
    return how, json.dumps(doc).encode()


@pytest.mark.parametrize("seed", range(12))
def test_a_hostile_index_is_refused_by_name_or_expanded_within_bounds(fault_proxy, seed):
    import hashlib

    what, body = hostile_index(random.Random(seed))
    digest = "sha256:" + hashlib.sha256(body).hexdigest()  # served under its own digest
    fault_proxy.rewrite_next(r"/manifests/sha256:", lambda status, headers, _: (200, {
        "Content-Type": "application/vnd.oci.image.index.v1+json",
        "Docker-Content-Digest": digest}, body), times=10)
    inputs = parse_inputs(["--image", f"{fault_proxy.host}/hostile/app:v1@{digest}",
                           "--signing-key", "k.pub"], {})
    client = RegistryClient(plain_http=True, retries=1)
    try:
        plan = complete_plan(build_plan(inputs, {}), client, expand=True)
    except InputError as e:
        assert "\n" not in str(e) and len(str(e)) < 1000, (what, str(e)[:300])
        assert "::" not in str(e) or "::error::" not in str(e), what
        return
    assert len(plan.images) <= 1 + 1024, what
