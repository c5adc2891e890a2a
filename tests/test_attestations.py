"""Attestations (issue 27): in-toto Statements signed in-process and attached in cosign 2's
legacy form (the ``.att`` tag) and as Sigstore bundle referrers, key and keyless, with the
sigstore test bed's Rekor and Fulcio. Independent readers in the same test: cosign 2.5
``verify-attestation --type ...`` (legacy; ``--new-bundle-format --trusted-root`` for bundles).
Verify mode's ``--attestation-type`` on the same images, and on hostile ones: an image without
the attestation, one whose ``.att`` tag holds another image's attestation (cosign refuses it
too), a provenance that names another repository or workflow."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import infra.sigstore as kit
from conftest import run_entrypoint
from signaction.formats import dsse, intoto
from signaction.formats.cosign import att_tag
from signaction.reference import Reference
from signaction.registry import RegistryClient
from test_bundles import PASSWORD, conf, results, run
from testbed.registry import Registry
from testbed.sigstore import Sigstore

REPOSITORY = "octo-org/octo-repo"
WORKFLOW_IDENTITY = f"https://github.com/{REPOSITORY}/.github/workflows/sign.yml@refs/heads/main"
SPDX = "https://spdx.dev/Document"
PROVENANCE = "https://slsa.dev/provenance/v1"
SBOM = {"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": "app", "documentNamespace": "https://example.com/spdx/app-1",
        "creationInfo": {"created": "2026-12-08T00:00:00Z", "creators": ["Tool: test"]},
        "packages": [{"name": "app", "SPDXID": "SPDXRef-app", "downloadLocation": "NOASSERTION"}]}
SHA = "0123456789abcdef0123456789abcdef01234567"
# what a GitHub runner sets (the variables GitHub's attest-build-provenance reads)
GITHUB = {"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com",
          "GITHUB_REPOSITORY": REPOSITORY, "GITHUB_REPOSITORY_ID": "123456",
          "GITHUB_REPOSITORY_OWNER_ID": "654321", "GITHUB_REF": "refs/heads/main",
          "GITHUB_SHA": SHA, "GITHUB_EVENT_NAME": "push", "GITHUB_RUN_ID": "987654321",
          "GITHUB_RUN_ATTEMPT": "2", "RUNNER_ENVIRONMENT": "github-hosted",
          "GITHUB_WORKFLOW_REF": f"{REPOSITORY}/.github/workflows/sign.yml@refs/heads/main"}


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    with Sigstore(tmp_path_factory.mktemp("attest-bed")) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def oci11():
    with Registry() as registry:
        yield registry


@pytest.fixture(scope="module")
def keys(tmp_path_factory, trixie_tools):
    return kit.cosign_keypair(tmp_path_factory.mktemp("attest-keys"), PASSWORD,
                              tools=trixie_tools)


@pytest.fixture(scope="module")
def sbom(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("attest-sbom") / "sbom.spdx.json"
    path.write_text(json.dumps(SBOM))
    return path


def cosign_attestation(tools, bed, ref: str, kind: str, form: str, *how: str):
    """cosign 2.5 ``verify-attestation`` of ``kind`` in ``form`` (legacy: the .att tag;
    bundle: referrers, offline against the test bed's trusted root)."""
    roots = {k: bed.env[k] for k in ("SIGSTORE_ROOT_FILE", "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE",
                                     "SIGSTORE_REKOR_PUBLIC_KEY")}
    extra = ("--new-bundle-format", "--trusted-root", bed.env["TRUSTED_ROOT"]) \
        if form == "bundle" else ()
    return tools.run_cosign_env(roots, "verify-attestation", "--type", kind,
                                "--allow-http-registry", *extra, *how, ref)


def statements(path: Path) -> list[intoto.Statement]:
    """The Statements of an attestations file: one DSSE envelope a line."""
    lines = path.read_bytes().splitlines()
    return [intoto.parse(dsse.parse(json.loads(line)).payload) for line in lines]


# -- key: both formats, read by cosign 2.5 and verify mode --------------------------------

def test_key_attestations_in_both_formats_read_by_cosign_and_verify_mode(
        registry, trixie_tools, bed, keys, sbom, tmp_path):
    key, pub = keys
    image = kit.push_index(registry.host, "attest/key", "v1", tmp_path, content="key",
                           platforms=("linux/amd64", "linux/arm64"))
    target = ["--image", f"{image.by_tag}@{image.digest}", "--signing-key", str(key)]
    summary = tmp_path / "summary.md"
    signed = run(tmp_path, trixie_tools, conf(bed), *target, "--provenance",
                 "--predicate", str(sbom), "--predicate-type", "spdxjson", out="sign",
                 env={**GITHUB, "GITHUB_STEP_SUMMARY": str(summary)})
    assert signed.returncode == 0, signed.stderr
    escaped = [uri.replace(".", "\\.") for uri in (PROVENANCE, SPDX)]  # (Markdown-escaped)
    assert f"attested: {escaped[0]}, {escaped[1]}" in summary.read_text()
    rows = results(tmp_path, "sign")["images"]
    assert len(rows) == 3  # the index and its two platforms, each with its statements
    for row in rows:
        made = {a["predicate_type"]: a for a in row["attestations"]}
        assert set(made) == {PROVENANCE, SPDX}, row
        for uri, found in made.items():
            assert found["tag"] == att_tag(row["digest"]) and found["rekor_log_index"] >= 0
            assert found["bundle_stored"] == f"tag {row['digest'].replace(':', '-')}"
            path = tmp_path / "sign" / found["path"]
            assert path.name == ("slsaprovenance1" if uri == PROVENANCE else "spdxjson") + \
                ".intoto.jsonl"
            said = statements(path)
            assert len(said) == 2  # the legacy envelope and the bundle's
            assert {s.subjects for s in said} == {((f"{registry.host}/attest/key",
                                                   row["digest"]),)}
            assert {s.predicate_type for s in said} == {uri}
    provenance = statements(tmp_path / "sign" / rows[0]["attestations"][0]["path"])[0]
    workflow = provenance.predicate["buildDefinition"]["externalParameters"]["workflow"]
    assert workflow == {"ref": "refs/heads/main", "repository": f"https://github.com/{REPOSITORY}",
                        "path": ".github/workflows/sign.yml"}
    assert provenance.predicate["buildDefinition"]["resolvedDependencies"][0]["digest"] == \
        {"gitCommit": SHA}

    for row in rows:
        ref = image.by_digest(row["digest"])
        for kind in ("slsaprovenance1", "spdxjson"):
            for form in ("legacy", "bundle"):
                read = cosign_attestation(trixie_tools, bed, ref, kind, form, "--key", str(pub))
                assert read.returncode == 0, (kind, form, read.stderr)
        missing = cosign_attestation(trixie_tools, bed, ref, "cyclonedx", "legacy", "--key",
                                     str(pub))
        assert missing.returncode != 0

    verify = ["--mode", "verify", *target, "--attestation-type", "slsaprovenance1",
              "--attestation-type", "spdxjson"]
    pinned = ("--provenance-repository", REPOSITORY, "--provenance-workflow",
              ".github/workflows/sign.yml")
    checked = run(tmp_path, trixie_tools, conf(bed), *verify, *pinned, out="verify",
                  env={"GITHUB_STEP_SUMMARY": str(tmp_path / "verify.md")})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "slsaprovenance1: verified, spdxjson: verified |" in \
        (tmp_path / "verify.md").read_text()
    for row in results(tmp_path, "verify")["images"]:
        assert row["attestations"] == {"slsaprovenance1": "verified", "spdxjson": "verified"}

    for pin in (("--provenance-repository", "octo-org/other-repo"),
                ("--provenance-repository", REPOSITORY,
                 "--provenance-workflow", ".github/workflows/other.yml")):
        refused = run(tmp_path, trixie_tools, conf(bed), *verify, *pin, out="pinned")
        assert refused.returncode == 1, refused.stderr
        assert "the provenance names" in refused.stdout + refused.stderr

    absent = run(tmp_path, trixie_tools, conf(bed), "--mode", "verify", *target,
                 "--attestation-type", "cyclonedx", out="absent")
    assert absent.returncode == 1
    assert {r["attestations"]["cyclonedx"] for r in results(tmp_path, "absent")["images"]} \
        == {"missing"}


def test_an_attestation_moved_onto_another_image_is_refused_by_both(
        registry, trixie_tools, bed, keys, sbom, tmp_path):
    """The ``.att`` tag of one image copied to another's: the signature is sound, its
    Statement names the first image. cosign and verify mode refuse it alike."""
    key, pub = keys
    first = kit.push_index(registry.host, "attest/moved", "a", tmp_path, content="first",
                           platforms=("linux/amd64",))
    other = kit.push_index(registry.host, "attest/moved", "b", tmp_path, content="other",
                           platforms=("linux/amd64",))
    signed = run(tmp_path, trixie_tools, conf(bed, signature_format="legacy"), "--image",
                 f"{first.by_tag}@{first.digest}", "--no-expand-index", "--signing-key",
                 str(key), "--predicate", str(sbom), "--predicate-type", "spdxjson",
                 out="sign")
    assert signed.returncode == 0, signed.stderr
    client = RegistryClient(plain_http=True, environ={})
    where = Reference(registry.host, "attest/moved", "")
    raw, _ = client.read_tag(where, att_tag(first.digest))
    client.put_manifest(where, att_tag(other.digest), raw,
                        json.loads(raw)["mediaType"])
    judged = cosign_attestation(trixie_tools, bed, other.by_digest(), "spdxjson", "legacy",
                                "--key", str(pub))
    assert judged.returncode != 0, judged.stdout
    ours = run(tmp_path, trixie_tools, conf(bed, signature_format="legacy"), "--mode",
               "verify", "--image", f"{other.by_tag}@{other.digest}", "--no-expand-index",
               "--signing-key", str(key), "--attestation-type", "spdxjson", out="verify")
    assert ours.returncode == 1
    row = results(tmp_path, "verify")["images"][0]
    assert row["attestations"] == {"spdxjson": "invalid"}
    assert "other digest" in json.dumps(row), row


# -- keyless -------------------------------------------------------------------------------

def test_keyless_attestations_read_by_cosign(oci11, trixie_tools, bed, sbom, tmp_path):
    image = kit.push_index(oci11.host, "attest/keyless", "v1", tmp_path, content="keyless",
                           platforms=("linux/amd64",))
    target = ["--image", f"{image.by_tag}@{image.digest}", "--no-expand-index",
              "--signing-key", "keyless"]
    # keyless, the provenance is built from the identity token's claims, as GitHub's action
    # builds it: what the certificate names, not a variable (here made to disagree)
    env = {"ACTIONS_ID_TOKEN_REQUEST_URL": bed.env["ACTIONS_ID_TOKEN_REQUEST_URL"],
           "ACTIONS_ID_TOKEN_REQUEST_TOKEN": bed.request_token, **GITHUB,
           "GITHUB_WORKFLOW_REF": f"{REPOSITORY}/.github/workflows/caller.yml@refs/heads/main"}
    signed = run(tmp_path, trixie_tools, conf(bed), *target, "--provenance", "--predicate",
                 str(sbom), "--predicate-type", "spdxjson", out="sign", env=env)
    assert signed.returncode == 0, signed.stderr
    row = results(tmp_path, "sign")["images"][0]
    said = statements(tmp_path / "sign" / row["attestations"][0]["path"])[0].predicate
    assert said["runDetails"]["builder"]["id"] == WORKFLOW_IDENTITY
    assert said["buildDefinition"]["externalParameters"]["workflow"]["path"] == \
        ".github/workflows/sign.yml"
    assert row["attestations"][0]["bundle_stored"] == "referrers API"
    how = ("--certificate-identity", WORKFLOW_IDENTITY, "--certificate-oidc-issuer",
           bed.env["OIDC_ISSUER"])
    for kind in ("slsaprovenance1", "spdxjson"):
        for form in ("legacy", "bundle"):
            read = cosign_attestation(trixie_tools, bed, image.by_digest(), kind, form, *how)
            assert read.returncode == 0, (kind, form, read.stderr)
    other = ("--certificate-identity", "https://github.com/evil/repo/.github/workflows/x.yml"
             "@refs/heads/main", "--certificate-oidc-issuer", bed.env["OIDC_ISSUER"])
    assert cosign_attestation(trixie_tools, bed, image.by_digest(), "spdxjson", "legacy",
                              *other).returncode != 0
    checked = run(tmp_path, trixie_tools, conf(bed), "--mode", "verify", *target, *how,
                  "--attestation-type", "slsaprovenance1", "--attestation-type", "spdxjson",
                  out="verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    refused = run(tmp_path, trixie_tools, conf(bed), "--mode", "verify", *target, *other,
                  "--attestation-type", "spdxjson", out="other")
    assert refused.returncode == 1


# -- input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args, said", [
    (("--provenance",), "--provenance needs GitHub Actions or a Tekton step"),
    (("--predicate", "sbom"), "give a type for each predicate file"),
    (("--predicate-type", "spdxjson"), "give a type for each predicate file"),
    (("--predicate", "sbom", "--predicate-type", "nonsense"), "not a predicate type"),
    (("--predicate", "sbom", "--predicate-type", "spdxjson", "--predicate", "sbom",
      "--predicate-type", "spdxjson"), "attested twice"),
    (("--attestation-type", "spdxjson"), "only for verify mode"),
    (("--predicate", "surrogate", "--predicate-type", "spdxjson"), "lone UTF-16 surrogate"),
])
def test_bad_attestation_input_is_one_line_and_exit_2(args, said, sbom, tmp_path):
    surrogate = tmp_path / "surrogate.json"
    surrogate.write_text('{"spdxVersion": "SPDX-2.3", "name": "\\ud800"}')
    args = tuple({"sbom": str(sbom), "surrogate": str(surrogate)}.get(a, a) for a in args)
    key = tmp_path / "none.key"
    done = run_entrypoint("--signer", "cosign", "--config", "{}", "--image",
                          "127.0.0.1:1/ns/app:1@sha256:" + "a" * 64, "--signing-key", str(key),
                          "--output-dir", str(tmp_path / "out"), *args, env={})
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_gpg_signer_refuses_attestations(tmp_path):
    done = run_entrypoint("--signer", "gpg", "--config", "{}", "--provenance",
                          "--output-dir", str(tmp_path / "out"), env={})
    assert done.returncode == 2 and "the cosign signer attaches" in done.stderr


def test_a_tekton_runs_provenance_names_its_pipeline_run(registry, trixie_tools, bed, keys,
                                                         tmp_path):
    """What the Task passes (tekton/container-sign.yaml: the TaskRun's context, the pod's
    PipelineRun labels) is what the provenance records; cosign reads it as slsaprovenance1."""
    key, pub = keys
    image = kit.push_index(registry.host, "attest/tekton", "v1", tmp_path, content="tekton",
                           platforms=("linux/amd64",))
    run_uid, task_uid = "1b4e28ba-2fa1-41d2-883f-0016d3cca427", \
        "6fa459ea-ee8a-4ca4-894e-db77e160355e"
    tekton = {"TEKTON_TASK_RUN": "release-sign", "TEKTON_TASK_RUN_UID": task_uid,
              "TEKTON_NAMESPACE": "rhtap-releng", "TEKTON_PIPELINE_RUN": "release-42",
              "TEKTON_PIPELINE_RUN_UID": run_uid}
    signed = run(tmp_path, trixie_tools, conf(bed, signature_format="legacy"), "--image",
                 f"{image.by_tag}@{image.digest}", "--no-expand-index", "--signing-key",
                 str(key), "--provenance", out="sign", env=tekton)
    assert signed.returncode == 0, signed.stderr
    row = results(tmp_path, "sign")["images"][0]
    said, = statements(tmp_path / "sign" / row["attestations"][0]["path"])
    assert said.predicate_type == PROVENANCE
    recorded = said.predicate["buildDefinition"]["internalParameters"]["tekton"]
    assert recorded == {"namespace": "rhtap-releng",
                        "pipelineRun": {"name": "release-42", "uid": run_uid},
                        "taskRun": {"name": "release-sign", "uid": task_uid}}
    assert said.predicate["runDetails"]["metadata"]["invocationID"] == run_uid
    read = cosign_attestation(trixie_tools, bed, image.by_digest(), "slsaprovenance1",
                              "legacy", "--key", str(pub))
    assert read.returncode == 0, read.stderr
    hostile = run(tmp_path, trixie_tools, conf(bed, signature_format="legacy"), "--image",
                  f"{image.by_tag}@{image.digest}", "--signing-key", str(key),
                  "--provenance", out="hostile",
                  env={**tekton, "TEKTON_PIPELINE_RUN": "x\n::error::owned"})
    assert hostile.returncode == 2 and "TEKTON_PIPELINE_RUN" in hostile.stderr
    assert "::error::owned" not in hostile.stdout + hostile.stderr


# -- differential: forged legacy attestations, judged by cosign 2.5 and verify mode --------

def _write_att(client: RegistryClient, where: Reference, digest: str, blob: bytes,
               annotations: dict) -> None:
    """``digest``'s .att tag made to hold exactly one layer: ``blob`` with ``annotations``."""
    from signaction.formats import cosign as cosign_format

    layer = {"mediaType": cosign_format.DSSE_LAYER, "size": len(blob),
             "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
             "annotations": cosign_format.sorted_map(annotations)}
    config = cosign_format.signature_config([layer])
    client.push_blob(where, blob)
    client.push_blob(where, config)
    client.put_manifest(where, att_tag(digest), cosign_format.signature_manifest(config, [layer]),
                        "application/vnd.oci.image.manifest.v1+json")


def _forgeries(layer: dict, blob: bytes, other_key) -> dict:
    """(blob, annotations) of each forged case, made from a genuine spdxjson layer."""
    import base64

    from signaction.formats.keys import sign_bytes

    annotations = dict(layer["annotations"])
    envelope = json.loads(blob)
    statement = json.loads(base64.b64decode(envelope["payload"]))

    def with_statement(changed: dict, resign=None) -> bytes:
        payload = json.dumps(changed, separators=(",", ":")).encode()
        sig = envelope["signatures"][0]["sig"] if resign is None else base64.b64encode(
            sign_bytes(resign, dsse.pae(dsse.IN_TOTO, payload))).decode()
        return json.dumps({"payload": base64.b64encode(payload).decode(),
                           "payloadType": dsse.IN_TOTO, "signatures": [{"sig": sig}]},
                          separators=(",", ":")).encode()

    other_digest = {**statement, "subject": [{**statement["subject"][0],
                                              "digest": {"sha256": "f" * 64}}]}
    bundle_annotation = json.loads(annotations["dev.sigstore.cosign/bundle"])
    bundle_annotation["SignedEntryTimestamp"] = base64.b64encode(b"\0" * 70).decode()
    return {
        "genuine": (blob, annotations),
        "annotation says another type": (blob, {**annotations,
                                                "predicateType": "https://cyclonedx.org/bom"}),
        "payload edited, signature kept": (with_statement(other_digest), annotations),
        "re-signed by another key": (with_statement(statement, other_key), annotations),
        "SET corrupted": (blob, {**annotations, "dev.sigstore.cosign/bundle": json.dumps(
            bundle_annotation, separators=(",", ":"))}),
        "no Rekor bundle": (blob, {k: v for k, v in annotations.items()
                                   if k != "dev.sigstore.cosign/bundle"}),
        # the same payload and signature, other bytes than Rekor logged (its envelopeHash)
        "envelope re-spaced": (json.dumps(envelope, indent=1).encode(), annotations),
        # Go's decoder matches keys without case, the last one winning: another Statement
        "a second Payload key": (blob[:-1] + b',"Payload":' + json.dumps(
            json.loads(with_statement(other_digest))["payload"]).encode() + b"}", annotations),
    }


def test_forged_legacy_attestations_judged_alike_by_cosign_and_verify_mode(
        registry, trixie_tools, bed, keys, sbom, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    key, pub = keys
    image = kit.push_index(registry.host, "attest/forged", "v1", tmp_path, content="forged",
                           platforms=("linux/amd64",))
    target = ["--image", f"{image.by_tag}@{image.digest}", "--no-expand-index",
              "--signing-key", str(key)]
    signed = run(tmp_path, trixie_tools, conf(bed, signature_format="legacy"), *target,
                 "--predicate", str(sbom), "--predicate-type", "spdxjson", out="sign")
    assert signed.returncode == 0, signed.stderr
    client = RegistryClient(plain_http=True, environ={})
    where = Reference(registry.host, "attest/forged", "")
    raw, _ = client.read_tag(where, att_tag(image.digest))
    layer, = json.loads(raw)["layers"]
    blob = client.blob(where, layer, "the genuine attestation", 1 << 20)
    verdicts = {}
    for case, (forged, said) in _forgeries(
            layer, blob, ec.generate_private_key(ec.SECP256R1())).items():
        _write_att(client, where, image.digest, forged, said)
        # (the other type: only where the type is what the case is about)
        for kind in ("spdxjson", "cyclonedx") if case in ("genuine", "annotation says "
                                                          "another type") else ("spdxjson",):
            theirs = cosign_attestation(trixie_tools, bed, image.by_digest(), kind, "legacy",
                                        "--key", str(pub)).returncode == 0
            ours = run(tmp_path, trixie_tools, conf(bed, signature_format="legacy"),
                       "--mode", "verify", *target, "--attestation-type", kind,
                       out="verify").returncode == 0
            verdicts[(case, kind)] = (theirs, ours)
    assert all(theirs == ours for theirs, ours in verdicts.values()), verdicts
    accepted = {case for (case, _), (theirs, _) in verdicts.items() if theirs}
    assert accepted == {"genuine", "annotation says another type"}, verdicts


def test_a_bundle_attestation_moved_onto_another_image_is_refused_by_both(
        oci11, trixie_tools, bed, keys, sbom, tmp_path):
    """An attestation bundle of one image pushed as a referrer of another (its subject edited:
    the referrer manifest is not signed). cosign 2.5 and verify mode refuse it alike; the
    genuine one, on the first image, both accept."""
    from signaction.formats import bundle as bundle_format

    key, pub = keys
    first = kit.push_index(oci11.host, "attest/moved-bundle", "a", tmp_path, content="b-first",
                           platforms=("linux/amd64",))
    other = kit.push_index(oci11.host, "attest/moved-bundle", "b", tmp_path, content="b-other",
                           platforms=("linux/amd64",))
    signed = run(tmp_path, trixie_tools, conf(bed, signature_format="bundle"), "--image",
                 f"{first.by_tag}@{first.digest}", "--no-expand-index", "--signing-key",
                 str(key), "--predicate", str(sbom), "--predicate-type", "spdxjson",
                 out="sign")
    assert signed.returncode == 0, signed.stderr
    made = results(tmp_path, "sign")["images"][0]["attestations"][0]
    client = RegistryClient(plain_http=True, environ={})
    where = Reference(oci11.host, "attest/moved-bundle", "")
    referrer = json.loads(client.manifest(where, made["bundle_referrer"]).raw)
    target = client.manifest(where, other.digest)
    referrer["subject"] = {"mediaType": target.media_type, "size": len(target.raw),
                           "digest": other.digest}
    client.put_referrer(where, json.dumps(referrer).encode(), other.digest)
    assert bundle_format.PREDICATE_ANNOTATION in referrer["annotations"]
    for image, accepted in ((first, True), (other, False)):
        theirs = cosign_attestation(trixie_tools, bed, image.by_digest(), "spdxjson", "bundle",
                                    "--key", str(pub))
        # (the other image has no signature of its own: only its attestation is compared)
        run(tmp_path, trixie_tools, conf(bed, signature_format="bundle"), "--mode", "verify",
            "--image", f"{image.by_tag}@{image.digest}", "--no-expand-index", "--signing-key",
            str(key), "--attestation-type", "spdxjson", out="verify")
        row = results(tmp_path, "verify")["images"][0]
        assert (theirs.returncode == 0) == accepted, theirs.stderr
        assert (row["attestations"]["spdxjson"] == "verified") == accepted, row


@pytest.mark.parametrize("found, pinned, same", [
    (f"https://github.com/{REPOSITORY}", REPOSITORY, True),
    (f"https://github.com/{REPOSITORY}.git", REPOSITORY, True),
    (f"https://evil.example/{REPOSITORY}", REPOSITORY, False),  # owner/name is github.com's
    (f"http://github.com/{REPOSITORY}", REPOSITORY, False),
    (f"https://github.com@evil.example/{REPOSITORY}", REPOSITORY, False),
    (f"https://ghe.example.com/{REPOSITORY}", f"https://ghe.example.com/{REPOSITORY}", True),
    (f"https://github.com/{REPOSITORY}", f"https://ghe.example.com/{REPOSITORY}", False),
    (f"https://github.com/{REPOSITORY}-fork", REPOSITORY, False),
])
def test_a_repository_pin_binds_the_host(found, pinned, same):
    from signaction.formats.attestation import same_repository
    assert same_repository(found, pinned) is same


@pytest.mark.parametrize("args, said", [
    (("--provenance-repository", "https://evil.example/github.com/a/b@x"), "not owner/name"),
    (("--provenance-repository", "http://github.com/a/b"), "not owner/name"),
    (("--provenance-repository", "a/b", "--provenance-workflow", "../x.yml"),
     "not a workflow file"),
    (("--provenance-workflow", ".github/workflows/release.yml"),
     "needs --provenance-repository too"),
])
def test_bad_pins_are_refused(args, said, tmp_path):
    done = run_entrypoint("--mode", "verify", "--signer", "cosign", "--config", "{}",
                          "--image", "127.0.0.1:1/ns/app:1@sha256:" + "a" * 64,
                          "--signing-key", str(tmp_path / "none.pub"), "--attestation-type",
                          "slsaprovenance1", *args, env={})
    assert done.returncode == 2 and said in done.stderr, done.stderr


def test_a_statement_naming_a_field_twice_by_case_is_refused():
    """Go's decoder (cosign's) takes ``PredicateType`` for ``predicateType``, the last one
    winning: such a Statement would say one type to cosign and another to a Python reader."""
    digest = '{"sha256":"' + "a" * 64 + '"}'
    head = '{"_type":"https://in-toto.io/Statement/v1",'
    for payload in (head + f'"subject":[{{"digest":{digest}}}],"predicateType":"https://a/1",'
                    '"PredicateType":"https://b/1"}',
                    head + f'"subject":[{{"digest":{digest},"Digest":{{"sha256":"{"b" * 64}"}}}}],'
                    '"predicateType":"https://a/1"}'):
        with pytest.raises(ValueError, match="names a field twice"):
            intoto.parse(payload.encode())
    fine = intoto.statement("sha256:" + "a" * 64, "https://a/1", {"name": 1, "Name": 2})
    assert intoto.parse(fine).predicate == {"name": 1, "Name": 2}  # the predicate is its own


def test_a_referrer_refused_once_is_pushed_again(registry, trixie_tools, bed, keys, sbom,
                                                 tmp_path):
    """docker-registry answers 400 DIGEST_INVALID to a manifest whose blob another writer (a
    second shard, the same shared empty config) is committing that moment: the blobs are pushed
    again and the referrer once more, and the image is signed and attested."""
    from infra.fault_proxy import FaultProxy

    key, pub = keys
    proxy = FaultProxy(registry.host).start()
    try:
        image = kit.push_index(registry.host, "attest/retry", "v1", tmp_path, content="retry",
                               platforms=("linux/amd64",))
        proxy.fail_next(r"/v2/attest/retry/manifests/sha256:[0-9a-f]{64}$", 400, method="PUT",
                        body='{"errors":[{"code":"DIGEST_INVALID","message":"provided digest '
                             'did not match uploaded content"}]}')
        signed = run(tmp_path, trixie_tools, conf(bed, signature_format="bundle"), "--image",
                     f"{proxy.host}/attest/retry:v1@{image.digest}", "--no-expand-index",
                     "--signing-key", str(key), "--predicate", str(sbom), "--predicate-type",
                     "spdxjson", out="sign")
        assert signed.returncode == 0, signed.stderr
        puts = proxy.requests_to(r"/manifests/sha256:[0-9a-f]{64}$", "PUT")
        assert [r.status for r in puts][:2] == [400, 201] and len(puts) == 3, puts
    finally:
        proxy.stop()
    read = cosign_attestation(trixie_tools, bed, image.by_digest(), "spdxjson", "bundle",
                              "--key", str(pub))
    assert read.returncode == 0, read.stderr
