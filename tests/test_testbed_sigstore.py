"""The sigstore test bed (``testbed.sigstore``) against the real tools: cosign 2.5 signs keyless
with GitHub's ambient token variables and with a key plus the transparency log, and verifies
with nothing but the bed's ``SIGSTORE_*`` roots (no ``--insecure-*`` flag anywhere); skopeo
1.18 accepts keyless signatures with a ``fulcio`` + ``rekorPublicKeyPath`` policy. Its OIDC
issuer, Fulcio and Rekor refuse what the real ones refuse, and the fault switches do what they
say. One test bed process serves the whole module."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from infra.sigstore import (
    PushedIndex,
    cosign_keypair,
    push_index,
    registries_d,
    skopeo_copy_all,
    skopeo_fulcio_policy,
)
from testbed import stop
from testbed.sigstore import ENV_KEYS, Sigstore, start_sigstore

PASSWORD = "correct horse battery"
REPOSITORY = "octo-org/octo-repo"
WORKFLOW_IDENTITY = f"https://github.com/{REPOSITORY}/.github/workflows/sign.yml@refs/heads/main"
EMAIL = "release@example.com"
ROOTS = ("SIGSTORE_ROOT_FILE", "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE", "SIGSTORE_REKOR_PUBLIC_KEY")


# -- plumbing -------------------------------------------------------------------------------

def http(method: str, url: str, payload=None, headers: dict | None = None):
    """(status, headers, body: parsed JSON when it is JSON) of one request."""
    data = payload if isinstance(payload, bytes) or payload is None else \
        json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, head, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, head, raw = e.code, e.headers, e.read()
    ctype = head.get("Content-Type", "")
    return status, head, json.loads(raw) if ctype.startswith("application/json") else raw


def claims_of(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """``python -m testbed.sigstore`` as users start it: the ready file's values (the env's,
    plus ``control``)."""
    folder = tmp_path_factory.mktemp("sigstore")
    proc, ready = start_sigstore(folder / "bed", log=folder / "bed.log")
    try:
        yield ready
    finally:
        assert stop(proc) == 0  # SIGTERM ends it cleanly


@pytest.fixture
def faults(bed):
    """Set fault switches for one test (``faults(fulcio_fail=1)``); cleared afterwards."""
    def set_faults(**switches):
        status, _, state = http("POST", f"{bed['control']}/testbed/faults", switches)
        assert status == 200, state
        return state

    yield set_faults
    set_faults(fulcio_fail=0, rekor_fail=0, rekor_lose=0, fail_status=503)


def roots(bed) -> dict:
    """What a verifier gets: the trust roots, nothing else."""
    return {k: bed[k] for k in ROOTS}


def ambient(bed, email: str | None = None) -> dict:
    """What cosign sees in a GitHub job with ``id-token: write``, pointed at the bed."""
    url = bed["ACTIONS_ID_TOKEN_REQUEST_URL"] + (f"&email={email}" if email else "")
    return {**roots(bed), "ACTIONS_ID_TOKEN_REQUEST_URL": url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": bed["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]}


def sign_keyless(tools, bed, ref: str, *extra: str, email: str | None = None):
    return tools.run_cosign_env(ambient(bed, email), "sign", "--yes", "--allow-http-registry",
                                "--fulcio-url", bed["FULCIO_URL"], "--rekor-url",
                                bed["REKOR_URL"], "--oidc-issuer", bed["OIDC_ISSUER"], *extra,
                                ref)


def verify_keyless(tools, bed, ref: str, identity: str, issuer: str, env: dict | None = None):
    return tools.run_cosign_env(env or roots(bed), "verify", "--allow-http-registry",
                                "--certificate-identity", identity,
                                "--certificate-oidc-issuer", issuer, ref)


def token(bed, **request) -> str:
    status, _, answer = http("POST", f"{bed['control']}/testbed/token", request)
    assert status == 200, answer
    return answer["value"]


def fulcio_request(bed, tok: str, key=None, subject: str | None = None):
    """A cosign-2.x-style (API v1) signing-certificate request; the proof signs ``subject``
    (default: the token's, as cosign does)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    c = claims_of(tok)
    proof = key.sign((subject or c.get("email") or c["sub"]).encode(), ec.ECDSA(hashes.SHA256()))
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return http("POST", f"{bed['FULCIO_URL']}/api/v1/signingCert",
                {"publicKey": {"content": base64.b64encode(pem).decode()},
                 "signedEmailAddress": base64.b64encode(proof).decode()},
                {"Authorization": f"Bearer {tok}"})


def hashedrekord(artifact: bytes, key=None) -> dict:
    key = key or ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(artifact).hexdigest()}},
        "signature": {"content": base64.b64encode(key.sign(artifact, ec.ECDSA(
            hashes.SHA256()))).decode(), "publicKey": {"content": base64.b64encode(pem).decode()}}}}


def rekor_key(bed):
    return serialization.load_pem_public_key(Path(bed["SIGSTORE_REKOR_PUBLIC_KEY"]).read_bytes())


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2, written from the RFC (not the bed's code)."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def check_checkpoint(note: str, key, size: int, root_hex: str) -> None:
    """A Rekor signed note: origin, size, base64 root; ``— name base64(hint || signature)``."""
    text, _, signatures = note.partition("\n\n")
    lines = text.split("\n")
    assert int(lines[1]) == size and base64.b64decode(lines[2]).hex() == root_hex, note
    dash, _name, sig_b64 = signatures.strip().split(" ")
    assert dash == "\u2014"
    raw = base64.b64decode(sig_b64)
    spki = key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    assert raw[:4] == hashlib.sha256(spki).digest()[:4]
    key.verify(raw[4:], (text + "\n").encode(), ec.ECDSA(hashes.SHA256()))


def check_entry(bed, entry: dict) -> None:
    """The SET and the inclusion proof (with its checkpoint) of a Rekor entry, offline."""
    key = rekor_key(bed)
    payload = {k: entry[k] for k in ("body", "integratedTime", "logID", "logIndex")}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    key.verify(base64.b64decode(entry["verification"]["signedEntryTimestamp"]), canonical,
               ec.ECDSA(hashes.SHA256()))
    proof = entry["verification"]["inclusionProof"]
    leaf = hashlib.sha256(b"\x00" + base64.b64decode(entry["body"])).digest()
    assert verify_inclusion(proof["logIndex"], proof["treeSize"], leaf,
                            [bytes.fromhex(h) for h in proof["hashes"]],
                            bytes.fromhex(proof["rootHash"])), proof
    check_checkpoint(proof["checkpoint"], key, proof["treeSize"], proof["rootHash"])


# -- images signed once for the module ------------------------------------------------------

@pytest.fixture(scope="module")
def keyless(registry, trixie_tools, bed, tmp_path_factory) -> tuple[PushedIndex, Path]:
    """A 2-platform index signed keyless (``--recursive``: the index and each platform) with
    the GitHub workflow identity; and the certificate cosign got."""
    tmp = tmp_path_factory.mktemp("keyless")
    image = push_index(registry.host, "bed/keyless", "v1", tmp)
    proc = sign_keyless(trixie_tools, bed, image.by_digest(), "--recursive",
                        "--output-certificate", str(tmp / "cert.pem"))
    assert proc.returncode == 0, proc.stderr
    assert "Successfully verified SCT" in proc.stderr, proc.stderr
    return image, tmp / "cert.pem"


@pytest.fixture(scope="module")
def email_signed(registry, trixie_tools, bed, tmp_path_factory) -> PushedIndex:
    """A 2-platform index signed keyless with an email identity, for its tag."""
    image = push_index(registry.host, "bed/email", "v1", tmp_path_factory.mktemp("email"),
                       content="email")
    proc = sign_keyless(trixie_tools, bed, image.by_digest(), "--recursive",
                        "--sign-container-identity", image.by_tag, email=EMAIL)
    assert proc.returncode == 0, proc.stderr
    return image


# -- the files and the token endpoint -------------------------------------------------------

def test_env_file_names_every_service_and_root(bed):
    env_file = Path(bed["SIGSTORE_ROOT_FILE"]).parent / "env"
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert list(env) == list(ENV_KEYS)
    assert all(env[k] == bed[k] for k in ENV_KEYS)
    for k in ROOTS:
        assert Path(env[k]).read_text().startswith("-----BEGIN "), k
    status, _, doc = http("GET", f"{env['OIDC_ISSUER']}/.well-known/openid-configuration")
    assert status == 200 and doc["issuer"] == env["OIDC_ISSUER"]
    status, _, jwks = http("GET", doc["jwks_uri"])
    assert status == 200 and jwks["keys"][0]["alg"] == "ES256"


def test_token_endpoint_gives_github_claims(bed):
    status, _, answer = http("GET", bed["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=sigstore",
                             headers={"Authorization": "bearer "
                                      + bed["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]})
    assert status == 200, answer
    c = claims_of(answer["value"])
    assert c["iss"] == bed["OIDC_ISSUER"] and c["aud"] == "sigstore"
    assert c["sub"] == f"repo:{REPOSITORY}:ref:refs/heads/main"
    assert c["repository"] == REPOSITORY and c["repository_owner"] == "octo-org"
    assert c["job_workflow_ref"] == c["workflow_ref"] == \
        f"{REPOSITORY}/.github/workflows/sign.yml@refs/heads/main"
    assert c["event_name"] == "push" and c["runner_environment"] == "github-hosted"
    assert c["exp"] - c["iat"] == 300 and "email" not in c


def test_token_endpoint_refuses_a_wrong_bearer(bed):
    url = bed["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=sigstore"
    for headers in ({"Authorization": "bearer not-the-token"}, {}):
        status, _, answer = http("GET", url, headers=headers)
        assert status == 401 and "value" not in answer, answer


def test_token_lifetime_and_email_switches(tmp_path):
    """The Python API, in this process: ``token_lifetime`` and ``email`` as the flags set them."""
    with Sigstore(tmp_path, token_lifetime=30, email=EMAIL) as bed:
        status, _, answer = http("GET", bed.env["ACTIONS_ID_TOKEN_REQUEST_URL"]
                                 + "&audience=sigstore",
                                 headers={"Authorization": "bearer " + bed.request_token})
        assert status == 200, answer
        c = claims_of(answer["value"])
        assert c["exp"] - c["iat"] == 30
        assert c["email"] == EMAIL and c["email_verified"] is True
        assert "job_workflow_ref" not in c


def test_switches_given_as_flags(tmp_path):
    """``--fulcio-fail``, ``--rekor-lose``, ``--fail-status``, ``--token-lifetime`` and
    ``--email`` on the command line."""
    proc, ready = start_sigstore(tmp_path / "bed", log=tmp_path / "bed.log", fulcio_fail=1,
                                 rekor_lose=2, fail_status=500, token_lifetime=30, email=EMAIL,
                                 fulcio_delay=0.25)
    try:
        faults = http("GET", f"{ready['control']}/testbed/state")[2]["faults"]
        assert (faults["fulcio_fail"], faults["rekor_lose"], faults["fail_status"],
                faults["fulcio_delay"]) == (1, 2, 500, 0.25)
        status, _, answer = http("GET", ready["ACTIONS_ID_TOKEN_REQUEST_URL"]
                                 + "&audience=sigstore", headers={
                                     "Authorization": "bearer "
                                     + ready["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]})
        c = claims_of(answer["value"])
        assert c["exp"] - c["iat"] == 30 and c["email"] == EMAIL
        assert [fulcio_request(ready, answer["value"])[0] for _ in range(2)] == [500, 201]
    finally:
        assert stop(proc) == 0


def test_fulcio_delay_switch(tmp_path):
    """``fulcio_delay``: each signing-certificate request is answered that much later, and the
    token is checked after the wait (a token that expires meanwhile is refused)."""
    import time
    with Sigstore(tmp_path, fulcio_delay=1.0) as bed:
        env = {"FULCIO_URL": bed.env["FULCIO_URL"]}
        started = time.monotonic()
        assert fulcio_request(env, bed.token())[0] == 201
        assert time.monotonic() - started >= 1.0
        assert fulcio_request(env, bed.token(lifetime=1))[0] == 401  # expired while it waited
        bed.set_faults(fulcio_delay=0)
        assert bed.state()["faults"]["fulcio_delay"] == 0


# -- keyless with cosign --------------------------------------------------------------------

def test_cosign_verifies_the_keyless_index_and_platforms(trixie_tools, bed, keyless):
    image, _ = keyless
    for ref in (image.by_tag, *map(image.by_digest, image.platforms.values())):
        proc = verify_keyless(trixie_tools, bed, ref, WORKFLOW_IDENTITY, bed["OIDC_ISSUER"])
        assert proc.returncode == 0, (ref, proc.stderr)
        assert "verified offline" in proc.stderr  # the SET, from the bundle
        [payload] = json.loads(proc.stdout)
        assert payload["optional"]["Subject"] == WORKFLOW_IDENTITY
        assert payload["optional"]["Issuer"] == bed["OIDC_ISSUER"]


def test_cosign_refuses_another_identity_or_issuer(trixie_tools, bed, keyless):
    image, _ = keyless
    other = WORKFLOW_IDENTITY.replace("refs/heads/main", "refs/heads/evil")
    for identity, issuer in ((other, bed["OIDC_ISSUER"]),
                             (WORKFLOW_IDENTITY, "https://token.actions.githubusercontent.com")):
        proc = verify_keyless(trixie_tools, bed, image.by_tag, identity, issuer)
        assert proc.returncode != 0
        assert "none of the expected identities matched" in proc.stderr, proc.stderr


def test_cosign_refuses_other_trust_roots(trixie_tools, bed, keyless, tmp_path):
    """The roots matter: another bed's Fulcio root, CT log key or Rekor key is refused."""
    image, _ = keyless
    with Sigstore(tmp_path / "other") as other:  # its files only matter
        others = dict(other.env)
    for name, message in (("SIGSTORE_ROOT_FILE", "certificate signed by unknown authority"),
                          ("SIGSTORE_CT_LOG_PUBLIC_KEY_FILE", "ctfe public key not found"),
                          ("SIGSTORE_REKOR_PUBLIC_KEY", "rekor log public key not found")):
        env = {**roots(bed), name: others[name]}
        proc = verify_keyless(trixie_tools, bed, image.by_tag, WORKFLOW_IDENTITY,
                              bed["OIDC_ISSUER"], env=env)
        assert proc.returncode != 0 and message in proc.stderr, (name, proc.stderr)


def test_the_certificate_is_fulcios(bed, keyless):
    _, cert_file = keyless
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(minutes=10)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(
        x509.UniformResourceIdentifier) == [WORKFLOW_IDENTITY]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])

    def ext(n: int) -> bytes:
        return cert.extensions.get_extension_for_oid(
            ObjectIdentifier(f"1.3.6.1.4.1.57264.1.{n}")).value.value

    issuer = bed["OIDC_ISSUER"].encode()
    assert ext(1) == issuer  # raw (deprecated form)
    assert ext(8) == b"\x0c" + bytes([len(issuer)]) + issuer  # DER UTF8String
    assert ext(5) == REPOSITORY.encode() and ext(6) == b"refs/heads/main" and ext(2) == b"push"
    assert ext(9).endswith(WORKFLOW_IDENTITY.encode())
    assert ext(12).endswith(f"https://github.com/{REPOSITORY}".encode())
    scts = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps)
    [sct] = scts.value
    ct_key = serialization.load_pem_public_key(
        Path(bed["SIGSTORE_CT_LOG_PUBLIC_KEY_FILE"]).read_bytes())
    assert sct.log_id == hashlib.sha256(ct_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()


# -- a key and the transparency log ---------------------------------------------------------

@pytest.fixture(scope="module")
def keyed(registry, trixie_tools, bed, tmp_path_factory):
    """A key pair and a 2-platform index whose index is signed with it and logged in Rekor."""
    tmp = tmp_path_factory.mktemp("keyed")
    key, pub = cosign_keypair(tmp, PASSWORD, tools=trixie_tools)
    image = push_index(registry.host, "bed/keyed", "v1", tmp, content="keyed")
    proc = trixie_tools.run_cosign_env(roots(bed), "sign", "--yes", "--allow-http-registry",
                                       "--key", str(key), "--tlog-upload=true", "--rekor-url",
                                       bed["REKOR_URL"], image.by_digest(), password=PASSWORD)
    assert proc.returncode == 0, proc.stderr
    assert "tlog entry created" in proc.stderr
    return image, key, pub


def test_cosign_verifies_a_key_signature_and_its_log_entry(trixie_tools, bed, keyed, tmp_path):
    image, _, pub = keyed
    proc = trixie_tools.run_cosign_env(roots(bed), "verify", "--allow-http-registry", "--key",
                                       str(pub), image.by_tag)
    assert proc.returncode == 0, proc.stderr
    assert "verified offline" in proc.stderr, proc.stderr
    # ... and that took the Rekor key: another one refuses the same signature
    other = tmp_path / "other-rekor.pub"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    proc = trixie_tools.run_cosign_env({**roots(bed), "SIGSTORE_REKOR_PUBLIC_KEY": str(other)},
                                       "verify", "--allow-http-registry", "--key", str(pub),
                                       image.by_tag)
    assert proc.returncode != 0 and "rekor log public key not found" in proc.stderr, proc.stderr


def test_a_lost_rekor_answer_is_a_409_that_cosign_accepts(trixie_tools, bed, keyed, faults):
    """The entry is logged but its answer lost (503): cosign's retry gets 409 with the
    entry's Location, fetches it and checks it offline (inclusion proof and SET, with the key
    from ``/api/v1/log/publicKey``)."""
    image, key, pub = keyed
    faults(rekor_lose=1)
    before = http("GET", f"{bed['control']}/testbed/state")[2]["rekor_entries"]
    platform = image.by_digest(image.platforms["linux/arm64"])
    proc = trixie_tools.run_cosign_env(roots(bed), "sign", "--yes", "--allow-http-registry",
                                       "--key", str(key), "--tlog-upload=true", "--rekor-url",
                                       bed["REKOR_URL"], platform, password=PASSWORD)
    assert proc.returncode == 0, proc.stderr
    assert "Signature already exists" in proc.stderr, proc.stderr
    state = http("GET", f"{bed['control']}/testbed/state")[2]
    assert state["faults"]["seen"]["rekor"] == 2 and state["rekor_entries"] == before + 1
    proc = trixie_tools.run_cosign_env(roots(bed), "verify", "--allow-http-registry", "--key",
                                       str(pub), platform)
    assert proc.returncode == 0, proc.stderr


# -- skopeo, keyless with an email identity -------------------------------------------------

def skopeo_pull(tools, bed, image: PushedIndex, tmp_path: Path, **changes):
    rule = {"ca_path": Path(bed["SIGSTORE_ROOT_FILE"]).with_name("fulcio_root.pem"),
            "oidc_issuer": bed["OIDC_ISSUER"], "subject_email": EMAIL,
            "rekor_public_key": Path(bed["SIGSTORE_REKOR_PUBLIC_KEY"]), **changes}
    tmp_path.mkdir(parents=True, exist_ok=True)
    policy = skopeo_fulcio_policy(tmp_path / "policy.json", scope=image.host, **rule)
    regd = registries_d(tmp_path / "registries.d", image.host)
    return skopeo_copy_all(tools, policy, regd, image.by_tag, tmp_path / "pulled")


def test_skopeo_accepts_the_email_identity(trixie_tools, bed, email_signed, tmp_path):
    proc = skopeo_pull(trixie_tools, bed, email_signed, tmp_path)
    assert proc.returncode == 0, proc.stderr
    pulled = json.loads((tmp_path / "pulled" / "index.json").read_text())
    assert pulled["manifests"][0]["digest"] == email_signed.digest


def test_skopeo_refuses_another_issuer_email_or_rekor_key(trixie_tools, bed, email_signed,
                                                          tmp_path):
    other_rekor = tmp_path / "other-rekor.pub"
    other_rekor.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for name, change, message in (
            ("issuer", {"oidc_issuer": "https://accounts.example.com"},
             "Unexpected Fulcio OIDC issuer"),
            ("email", {"subject_email": "someone@example.com"}, "Required email"),
            ("rekor", {"rekor_public_key": other_rekor}, "Rekor SET failed")):
        proc = skopeo_pull(trixie_tools, bed, email_signed, tmp_path / name, **change)
        assert proc.returncode != 0 and message in proc.stderr, (name, proc.stderr)


# -- Fulcio refusals ------------------------------------------------------------------------

def test_fulcio_issues_for_a_good_request(bed):
    status, head, body = fulcio_request(bed, token(bed))
    assert status == 201, body
    assert head["Content-Type"] == "application/pem-certificate-chain"
    chain = x509.load_pem_x509_certificates(body)
    assert len(chain) == 3 and chain[2].subject == chain[2].issuer  # leaf, intermediate, root
    chain[0].verify_directly_issued_by(chain[1])
    chain[1].verify_directly_issued_by(chain[2])


def test_fulcio_v2_issues_for_a_good_request(bed):
    key = ec.generate_private_key(ec.SECP256R1())
    tok = token(bed, email=EMAIL)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    status, _, body = http("POST", f"{bed['FULCIO_URL']}/api/v2/signingCert", {
        "credentials": {"oidcIdentityToken": tok},
        "publicKeyRequest": {"publicKey": {"algorithm": "ECDSA", "content": pem.decode()},
                             "proofOfPossession": base64.b64encode(key.sign(
                                 EMAIL.encode(), ec.ECDSA(hashes.SHA256()))).decode()}})
    assert status == 200, body
    leaf = x509.load_pem_x509_certificate(
        body["signedCertificateEmbeddedSct"]["chain"]["certificates"][0].encode())
    assert leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.RFC822Name) == [EMAIL]


@pytest.mark.parametrize("case", ["expired", "audience", "issuer", "signature", "proof",
                                  "unverified-email"])
def test_fulcio_refuses(bed, case):
    if case == "expired":
        status, _, body = fulcio_request(bed, token(bed, lifetime=-10))
    elif case == "audience":
        status, _, body = fulcio_request(bed, token(bed, claims={"aud": "not-sigstore"}))
    elif case == "issuer":
        status, _, body = fulcio_request(bed, token(bed, claims={
            "iss": "https://token.actions.githubusercontent.com"}))
    elif case == "signature":  # a token whose claims were changed after signing
        head, _, sig = token(bed).split(".")
        forged = base64.urlsafe_b64encode(json.dumps({
            **claims_of(token(bed)), "repository": "evil/repo"}).encode()).rstrip(b"=")
        status, _, body = fulcio_request(bed, f"{head}.{forged.decode()}.{sig}")
    elif case == "proof":
        status, _, body = fulcio_request(bed, token(bed), subject="someone else")
    else:
        status, _, body = fulcio_request(bed, token(bed, email=EMAIL,
                                                    claims={"email_verified": False}))
    expected = 400 if case == "proof" else 401
    assert status == expected, (case, status, body)
    assert body["code"] == expected and "error processing" in body["message"], body


# -- Rekor ----------------------------------------------------------------------------------

def test_rekor_logs_verifies_and_refuses_a_duplicate(bed):
    url = f"{bed['REKOR_URL']}/api/v1/log/entries"
    proposed = hashedrekord(b"an artifact")
    status, head, body = http("POST", url, proposed)
    assert status == 201, body
    [(entry_id, entry)] = body.items()
    assert head["Location"] == f"/api/v1/log/entries/{entry_id}"
    check_entry(bed, entry)
    status, head, body = http("POST", url, proposed)
    assert status == 409 and head["Location"] == f"/api/v1/log/entries/{entry_id}", body
    assert entry_id[16:] in body["message"]
    for ref in (entry_id, entry_id[16:]):  # by entry ID and by UUID
        status, _, got = http("GET", f"{url}/{ref}")
        assert status == 200 and got[entry_id]["body"] == entry["body"], got
    status, _, got = http("GET", f"{url}?logIndex={entry['logIndex']}")
    assert status == 200 and list(got) == [entry_id]
    status, _, found = http("POST", f"{url}/retrieve", {"entries": [proposed]})
    assert status == 200 and [list(f) for f in found] == [[entry_id]]


def test_rekor_refuses_a_bad_signature(bed):
    proposed = hashedrekord(b"an artifact")
    proposed["spec"]["data"]["hash"]["value"] = hashlib.sha256(b"another").hexdigest()
    status, _, body = http("POST", f"{bed['REKOR_URL']}/api/v1/log/entries", proposed)
    assert status == 400 and "verification failed" in body["message"], body


def test_rekor_proofs_hold_for_every_entry_and_the_checkpoint(bed, keyless, keyed):
    """Every entry so far (cosign's included) proves its inclusion in the current tree, whose
    signed checkpoint ``/api/v1/log`` serves."""
    status, _, info = http("GET", f"{bed['REKOR_URL']}/api/v1/log")
    assert status == 200 and info["treeSize"] >= 4, info
    check_checkpoint(info["signedTreeHead"], rekor_key(bed), info["treeSize"], info["rootHash"])
    for index in range(info["treeSize"]):
        status, _, got = http("GET", f"{bed['REKOR_URL']}/api/v1/log/entries?logIndex={index}")
        [entry] = got.values()
        check_entry(bed, entry)
    status, head, pem = http("GET", f"{bed['REKOR_URL']}/api/v1/log/publicKey")
    assert status == 200 and pem == Path(bed["SIGSTORE_REKOR_PUBLIC_KEY"]).read_bytes()


# -- fault switches -------------------------------------------------------------------------

def test_fulcio_fail_switch(trixie_tools, bed, registry, faults, tmp_path):
    """The first k signing-certificate requests get 503: cosign (which does not retry Fulcio)
    fails once, then signs."""
    faults(fulcio_fail=2)
    assert fulcio_request(bed, token(bed))[0] == 503
    image = push_index(registry.host, "bed/fulcio-fail", "v1", tmp_path, content="fulcio-fail")
    proc = sign_keyless(trixie_tools, bed, image.by_digest())
    assert proc.returncode != 0 and "503" in proc.stderr, proc.stderr
    proc = sign_keyless(trixie_tools, bed, image.by_digest())
    assert proc.returncode == 0, proc.stderr


def test_rekor_fail_switch(bed, faults):
    """The first k uploads get the fail status and are not logged; then they are."""
    faults(rekor_fail=1, fail_status=502)
    url = f"{bed['REKOR_URL']}/api/v1/log/entries"
    size = http("GET", f"{bed['REKOR_URL']}/api/v1/log")[2]["treeSize"]
    proposed = hashedrekord(b"rekor-fail")
    status, _, body = http("POST", url, proposed)
    assert status == 502, body
    assert http("GET", f"{bed['REKOR_URL']}/api/v1/log")[2]["treeSize"] == size
    status, _, body = http("POST", url, proposed)
    assert status == 201, body
    assert http("GET", f"{bed['REKOR_URL']}/api/v1/log")[2]["treeSize"] == size + 1


def test_cosign_retries_rekor_5xx(trixie_tools, bed, keyed, faults):
    """rekor's client retries a 503 (the bed says ``Retry-After: 0``): the upload goes through."""
    image, key, pub = keyed
    faults(rekor_fail=1)
    platform = image.by_digest(image.platforms["linux/amd64"])
    proc = trixie_tools.run_cosign_env(roots(bed), "sign", "--yes", "--allow-http-registry",
                                       "--key", str(key), "--tlog-upload=true", "--rekor-url",
                                       bed["REKOR_URL"], platform, password=PASSWORD)
    assert proc.returncode == 0, proc.stderr
    state = http("GET", f"{bed['control']}/testbed/state")[2]
    assert state["faults"]["seen"]["rekor"] == 2, state
