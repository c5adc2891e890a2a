"""signaction.attestations: predicate type names, predicate files read as hostile input, and the
SLSA provenance predicate of a GitHub Actions or Tekton run, with hostile environments.

The expected values are written here from the sources, not computed by the module: the type
URIs from cosign 2.5's options/predicate.go and in-toto-golang 0.9's constants; the GitHub
predicate from actions/toolkit's packages/attest/__tests__/__snapshots__/provenance.test.ts.snap
(the predicate the real action writes for that test's token claims; the claims' placeholder ids,
``repo-id`` and ``run-id``, made the numbers GitHub gives); the Tekton one from Tekton Chains'
SLSA v1 provenance (docs/predicate/slsa/v2.md, formats slsa/v2alpha4).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from signaction import attestations
from signaction.attestations import predicate_type, provenance, read_predicate
from signaction.errors import InputError
from signaction.formats import intoto


def refused(call, *args, **kwargs) -> str:
    """The one-line InputError message the call ends with."""
    with pytest.raises(InputError) as e:
        call(*args, **kwargs)
    message = str(e.value)
    assert message and "\n" not in message and "\r" not in message, message
    assert "Traceback" not in message and len(message) < 1500, message
    return message


# -- predicate types ----------------------------------------------------------------------

COSIGN_2_5 = {  # cmd/cosign/cli/options/predicate.go at v2.5.3, in-toto-golang v0.9.0
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "link": "https://in-toto.io/Link/v1",
    "spdx": "https://spdx.dev/Document",
    "spdxjson": "https://spdx.dev/Document",
    "cyclonedx": "https://cyclonedx.org/bom",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "openvex": "https://openvex.dev/ns",
    "custom": "https://cosign.sigstore.dev/attestation/v1",
}


@pytest.mark.parametrize("name", COSIGN_2_5)
def test_each_of_cosigns_names_is_its_uri(name):
    assert predicate_type(name) == COSIGN_2_5[name]


def test_the_names_are_cosigns_and_no_more():
    assert dict(attestations.PREDICATE_TYPES) == COSIGN_2_5


@pytest.mark.parametrize("uri", [
    "https://slsa.dev/provenance/v1",  # a known type by its URI: itself
    "https://example.com/attestations/test-result/v0.1",
    "http://example.com/predicate",
    "https://example.com:8443/a/b?version=1#frag",
    "https://in-toto.io/attestation/vulns/v0.2",
    "https://example.com/%7Euser/type",
    "https://" + "a" * (attestations.MAX_TYPE_URI - len("https://")),
])
def test_a_type_uri_is_taken_as_it_is(uri):
    assert predicate_type(uri) == uri


@pytest.mark.parametrize("value", [
    "", "SPDXJSON", "SpdxJson", " spdxjson", "spdxjson ", "spdxjson\n", "slsaprovenance2",
    "slsa", "sbom", "https://", "http:///path", "https:/example.com/x", "https//example.com",
    "ftp://example.com/type", "file:///etc/passwd", "javascript:alert(1)", "urn:example:type",
    "/absolute/path", "example.com/type", "https://exa mple.com/type", "https://example.com/a b",
    "https://example.com/\x00", "https://example.com/\x7f", "https://example.com/\ttype",
    "https://example.com/x\n::error::forged", "https://example.com/x\r\n::warning::y",
    "https://example.com/\u202egnp.exe", "https://example.com/\u2028", "https://exämple.com/x",
    'https://example.com/"quoted"', "https://example.com/<script>", "https://example.com/a\\b",
    "https://" + "a" * (attestations.MAX_TYPE_URI - len("https://") + 1),
    "::error::spdxjson",
])
def test_anything_else_is_refused_naming_it_and_the_names(value):
    message = refused(predicate_type, value)
    assert message.startswith("--predicate-type "), message
    assert repr(value[:60]) in message, message  # the value, quoted on one line, cut
    for name in COSIGN_2_5:
        assert name in message
    assert "type URI" in message


# -- predicate files ----------------------------------------------------------------------

SLSA1 = {"buildDefinition": {"buildType": "https://example.com/b", "externalParameters": {}},
         "runDetails": {"builder": {"id": "https://example.com/builder"}}}
SLSA02 = {"builder": {"id": "https://example.com/builder"}, "buildType": "https://example.com/b"}
LINK = {"_type": "link", "name": "build", "materials": {}, "products": {}, "byproducts": {},
        "command": ["make"], "environment": {}}
SPDX_JSON = {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "app",
             "packages": [{"name": "zlib", "versionInfo": "1.3"}]}
CYCLONEDX = {"bomFormat": "CycloneDX", "specVersion": "1.5",
             "components": [{"type": "library", "name": "zlib", "version": "1.3"}]}
OPENVEX_DOC = {"@context": "https://openvex.dev/ns/v0.2.0", "statements": []}
VULN = {"invocation": {"uri": "https://example.com/scan"}, "scanner": {"uri": "trivy"},
        "metadata": {"scanStartedOn": "2025-01-01T00:00:00Z"}}


def write(tmp_path, data: bytes | str, name: str = "predicate.json") -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


@pytest.mark.parametrize("named, document", [
    ("slsaprovenance1", SLSA1), ("slsaprovenance", SLSA02), ("slsaprovenance02", SLSA02),
    ("link", LINK), ("spdxjson", SPDX_JSON), ("cyclonedx", CYCLONEDX), ("openvex", OPENVEX_DOC),
    ("vuln", VULN), ("https://example.com/my-type/v1", {"anything": [1, 2.5, None, True]}),
    ("https://slsa.dev/provenance/v1", {"no": "required fields for a URI, as in cosign"}),
])
def test_a_json_predicate_is_the_object_as_written(tmp_path, named, document):
    text = json.dumps(document, indent=2, ensure_ascii=False)
    assert read_predicate(write(tmp_path, text), named) == document


def test_spdx_tag_value_is_the_text_itself(tmp_path):
    text = "SPDXVersion: SPDX-2.3\nDataLicense: CC0-1.0\nPackageName: zlib\n"
    assert read_predicate(write(tmp_path, text, "sbom.spdx"), "spdx") == text


def test_custom_is_cosigns_wrapper_of_the_text_with_a_utc_timestamp(tmp_path):
    text = '{"not": "parsed"}\n'
    eastern = timezone(timedelta(hours=-5))
    moment = datetime(2025, 1, 2, 22, 4, 5, 999999, tzinfo=eastern)
    assert read_predicate(write(tmp_path, text), "custom", now=moment) == \
        {"Data": text, "Timestamp": "2025-01-03T03:04:05Z"}
    stamped = read_predicate(write(tmp_path, "plain text, not JSON"), "custom")
    assert stamped["Data"] == "plain text, not JSON"
    parsed = datetime.strptime(stamped["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(parsed.replace(tzinfo=UTC) - datetime.now(UTC)) < \
        timedelta(minutes=5)


def test_a_file_of_16_mib_is_read_one_byte_more_is_not(tmp_path):
    assert attestations.MAX_PREDICATE_BYTES == 16 * 1024 * 1024
    body = '{"a":"' + "x" * (attestations.MAX_PREDICATE_BYTES - 8) + '"}'
    assert len(body) == attestations.MAX_PREDICATE_BYTES
    assert read_predicate(write(tmp_path, body), "spdxjson")["a"].startswith("xxx")
    big = tmp_path / "big.json"
    with open(big, "wb") as f:  # sparse: no 16 MiB written
        f.truncate(attestations.MAX_PREDICATE_BYTES + 1)
    message = refused(read_predicate, str(big), "spdxjson")
    assert "larger than 16 MiB" in message and "big.json" in message


def test_a_symbolic_link_is_refused_even_to_a_good_file(tmp_path):
    good = write(tmp_path, json.dumps(SPDX_JSON), "real.json")
    os.symlink(good, tmp_path / "link.json")
    message = refused(read_predicate, str(tmp_path / "link.json"), "spdxjson")
    assert message.startswith(f"--predicate {str(tmp_path / 'link.json')!r}: ")
    assert "link" in message


def test_a_hard_link_is_refused(tmp_path):
    good = write(tmp_path, json.dumps(SPDX_JSON), "real.json")
    os.link(good, tmp_path / "other.json")
    assert "hard link" in refused(read_predicate, good, "spdxjson")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    assert "named pipe" in refused(read_predicate, str(fifo), "spdxjson")


@pytest.mark.parametrize("path, said", [("/dev/zero", "character device"),
                                        ("/dev/null", "character device")])
def test_a_device_is_refused(path, said):
    assert said in refused(read_predicate, path, "cyclonedx")


def test_a_folder_and_a_missing_file_are_refused(tmp_path):
    assert "folder" in refused(read_predicate, str(tmp_path), "spdxjson")
    assert "not found" in refused(read_predicate, str(tmp_path / "nope.json"), "spdxjson")
    assert "NUL" in refused(read_predicate, "a\x00b", "spdxjson")


def test_a_file_name_with_a_newline_stays_on_one_line(tmp_path):
    name = "x\n::error::forged.json"
    path = write(tmp_path, "[]", name)
    message = refused(read_predicate, path, "spdxjson")
    assert "::error::forged" in message and "\\n" in message  # quoted, escaped


@pytest.mark.parametrize("named", ["spdxjson", "spdx", "custom", "slsaprovenance1",
                                   "https://example.com/t"])
@pytest.mark.parametrize("data, said", [(b"", "is empty"), (b" \n\t\r\n", "only white space")])
def test_an_empty_file_is_refused(tmp_path, named, data, said):
    assert said in refused(read_predicate, write(tmp_path, data), named)


@pytest.mark.parametrize("named", ["spdxjson", "spdx", "custom"])
def test_not_utf8_is_refused(tmp_path, named):
    message = refused(read_predicate, write(tmp_path, b'{"a": "\xff\xfe"}'), named)
    assert "not UTF-8" in message


@pytest.mark.parametrize("text, said", [
    ("{", "line 1, column 2"), ("not json", "line 1, column 1"),
    ('{"a": 1,}', "line 1"), ("{'a': 1}", "line 1"), ('{"a": 1}\n{"b": 2}', "line 2"),
    ('\ufeff{"a": 1}', "BOM"), ("SPDXVersion: SPDX-2.3\n", "line 1"),
])
def test_not_json_is_refused_with_where(tmp_path, text, said):
    message = refused(read_predicate, write(tmp_path, text), "spdxjson")
    assert said in message, message


def test_nesting_is_bounded(tmp_path):
    depth = attestations.MAX_PREDICATE_DEPTH
    ok = '{"a":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    assert read_predicate(write(tmp_path, ok), "cyclonedx")["a"] is not None
    deeper = '{"a":' + "[" * depth + "]" * depth + "}"
    assert f"nested deeper than {depth} levels" in \
        refused(read_predicate, write(tmp_path, deeper), "cyclonedx")
    bomb = '{"a":' + "[" * 200_000 + "]" * 200_000 + "}"  # past the parser's recursion
    assert "nested deeper" in refused(read_predicate, write(tmp_path, bomb), "cyclonedx")


@pytest.mark.parametrize("text, key", [
    ('{"spdxVersion": "SPDX-2.3", "spdxVersion": "SPDX-2.2"}', "'spdxVersion'"),
    ('{"packages": [{"name": "a", "name": "b"}]}', "'name'"),
])
def test_a_key_given_twice_is_refused(tmp_path, text, key):
    message = refused(read_predicate, write(tmp_path, text), "spdxjson")
    assert f"duplicate key {key}" in message


@pytest.mark.parametrize("constant, said", [("NaN", "NaN"), ("Infinity", "infinity"),
                                            ("-Infinity", "-infinity")])
def test_nan_and_infinity_are_refused(tmp_path, constant, said):
    message = refused(read_predicate, write(tmp_path, '{"score": %s}' % constant), "vuln")
    assert f"{said} is not a finite number" in message


@pytest.mark.parametrize("named", ["spdxjson", "cyclonedx", "slsaprovenance1", "slsaprovenance",
                                   "link", "vuln", "openvex", "https://example.com/t"])
@pytest.mark.parametrize("text, kind", [("[]", "an array"), ('"sbom"', "a string"),
                                        ("1", "a number"), ("null", "null"),
                                        ("true", "a boolean")])
def test_a_json_predicate_must_be_an_object(tmp_path, named, text, kind):
    message = refused(read_predicate, write(tmp_path, text), named)
    assert f"must be a JSON object, not {kind}" in message


@pytest.mark.parametrize("named, document, lacking", [
    ("slsaprovenance1", {"buildDefinition": {}}, "runDetails"),
    ("slsaprovenance1", {"predicate": SLSA1}, "buildDefinition, runDetails"),
    ("slsaprovenance", {"builder": {}}, "buildType"),
    ("slsaprovenance02", SLSA1, "builder, buildType"),
    ("link", {k: v for k, v in LINK.items() if k != "command"}, "command"),
])
def test_cosigns_required_fields(tmp_path, named, document, lacking):
    message = refused(read_predicate, write(tmp_path, json.dumps(document)), named)
    assert message.endswith(f"it lacks {lacking}"), message


def test_the_type_is_checked_before_the_file_is_read(tmp_path):
    message = refused(read_predicate, str(tmp_path / "missing.json"), "sbom")
    assert message.startswith("--predicate-type 'sbom'")


# -- provenance: GitHub Actions -----------------------------------------------------------

# the test's token claims (packages/attest/__tests__/provenance.test.ts), ids made numbers
CLAIMS = {
    "iss": "https://token.actions.foo.ghe.com",
    "aud": "nobody",
    "repository": "owner/repo",
    "ref": "refs/heads/main",
    "sha": "babca52ab0c93ae16539e5923cb0d7403b9a093b",
    "job_workflow_ref": "owner/workflows/.github/workflows/publish.yml@main",
    "workflow_ref": "owner/repo/.github/workflows/main.yml@main",
    "event_name": "push",
    "repository_id": "123456789",
    "repository_owner_id": "987654",
    "run_id": "13579246810",
    "run_attempt": "2",
    "runner_environment": "github-hosted",
}

# the snapshot's predicate ("params"), key order as the action writes it
ACTION_WRITES = {
    "buildDefinition": {
        "buildType": "https://actions.github.io/buildtypes/workflow/v1",
        "externalParameters": {"workflow": {
            "ref": "refs/heads/main",
            "repository": "https://foo.ghe.com/owner/repo",
            "path": ".github/workflows/main.yml"}},
        "internalParameters": {"github": {
            "event_name": "push",
            "repository_id": "123456789",
            "repository_owner_id": "987654",
            "runner_environment": "github-hosted"}},
        "resolvedDependencies": [{
            "uri": "git+https://foo.ghe.com/owner/repo@refs/heads/main",
            "digest": {"gitCommit": "babca52ab0c93ae16539e5923cb0d7403b9a093b"}}],
    },
    "runDetails": {
        "builder": {"id": "https://foo.ghe.com/owner/workflows/.github/workflows/publish.yml@main"},
        "metadata": {"invocationId":
                     "https://foo.ghe.com/owner/repo/actions/runs/13579246810/attempts/2"},
    },
}

# the same run as the runner's environment says it
GITHUB_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://foo.ghe.com",
    "GITHUB_REPOSITORY": "owner/repo",
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_SHA": "babca52ab0c93ae16539e5923cb0d7403b9a093b",
    "GITHUB_WORKFLOW_REF": "owner/repo/.github/workflows/main.yml@main",
    "GITHUB_EVENT_NAME": "push",
    "GITHUB_REPOSITORY_ID": "123456789",
    "GITHUB_REPOSITORY_OWNER_ID": "987654",
    "GITHUB_RUN_ID": "13579246810",
    "GITHUB_RUN_ATTEMPT": "2",
    "RUNNER_ENVIRONMENT": "github-hosted",
    "GITHUB_TOKEN": "ghs_not-to-be-read", "HOME": "/home/runner", "PATH": "/usr/bin",
}


def same(got: dict, want: dict) -> None:
    """Equal, field by field and in the same key order (the JSON as written)."""
    assert got == want
    assert json.dumps(got) == json.dumps(want)


def test_with_the_tokens_claims_it_is_what_the_action_writes():
    environ = {**GITHUB_ENV, "GITHUB_REPOSITORY": "someone/else", "GITHUB_SHA": "0" * 40}
    same(provenance(environ, claims=CLAIMS), ACTION_WRITES)


def test_from_the_environment_the_builder_is_the_workflow_itself():
    want = json.loads(json.dumps(ACTION_WRITES))
    want["runDetails"]["builder"]["id"] = \
        "https://foo.ghe.com/owner/repo/.github/workflows/main.yml@main"
    same(provenance(GITHUB_ENV), want)


def test_the_predicate_fields_are_the_actions_and_no_more():
    got = provenance(GITHUB_ENV)
    assert list(got) == ["buildDefinition", "runDetails"]
    assert list(got["buildDefinition"]) == ["buildType", "externalParameters",
                                            "internalParameters", "resolvedDependencies"]
    assert list(got["runDetails"]) == ["builder", "metadata"]
    assert list(got["runDetails"]["metadata"]) == ["invocationId"]  # the action's spelling
    text = json.dumps(got)
    for secret in ("ghs_not-to-be-read", "/home/runner", "/usr/bin"):
        assert secret not in text


def test_a_real_github_com_run():
    environ = {**GITHUB_ENV, "GITHUB_SERVER_URL": "https://github.com",
               "GITHUB_REPOSITORY": "octo-org/octo.repo_1",
               "GITHUB_WORKFLOW_REF": "octo-org/octo.repo_1/.github/workflows/release.yml"
                                      "@refs/tags/v1.2.3",
               "GITHUB_REF": "refs/tags/v1.2.3", "GITHUB_EVENT_NAME": "workflow_dispatch",
               "RUNNER_ENVIRONMENT": "self-hosted", "GITHUB_SHA": "ab" * 32}
    got = provenance(environ)
    definition = got["buildDefinition"]
    assert definition["externalParameters"]["workflow"] == {
        "ref": "refs/tags/v1.2.3", "repository": "https://github.com/octo-org/octo.repo_1",
        "path": ".github/workflows/release.yml"}
    assert definition["resolvedDependencies"] == [{
        "uri": "git+https://github.com/octo-org/octo.repo_1@refs/tags/v1.2.3",
        "digest": {"gitCommit": "ab" * 32}}]
    assert got["runDetails"]["builder"]["id"] == \
        "https://github.com/octo-org/octo.repo_1/.github/workflows/release.yml@refs/tags/v1.2.3"
    assert definition["internalParameters"]["github"]["runner_environment"] == "self-hosted"


def test_it_is_a_slsa_v1_predicate_cosign_takes(tmp_path):
    got = provenance(GITHUB_ENV)
    path = write(tmp_path, json.dumps(got))
    assert read_predicate(path, "slsaprovenance1") == got
    found = intoto.parse(intoto.statement("sha256:" + "1" * 64, predicate_type("slsaprovenance1"),
                                          got, name="ghcr.io/owner/repo"))
    assert found.predicate == got and found.predicate_type == "https://slsa.dev/provenance/v1"


@pytest.mark.parametrize("variable", [v for v in GITHUB_ENV if v.startswith(("GITHUB_", "RUN"))
                                      and v not in ("GITHUB_ACTIONS", "GITHUB_TOKEN")])
@pytest.mark.parametrize("gone", ["unset", "empty"])
def test_each_missing_variable_is_named(variable, gone):
    environ = dict(GITHUB_ENV)
    if gone == "unset":
        del environ[variable]
    else:
        environ[variable] = ""
    message = refused(provenance, environ)
    assert message == f"--provenance on GitHub Actions needs {variable} (not set)"


HOSTILE_GITHUB = [
    ("GITHUB_SHA", "babca52ab0c93ae16539e5923cb0d7403b9a093"),  # 39
    ("GITHUB_SHA", "BABCA52AB0C93AE16539E5923CB0D7403B9A093B"),
    ("GITHUB_SHA", "babca52ab0c93ae16539e5923cb0d7403b9a093b\n"),
    ("GITHUB_SHA", "babca52ab0c93ae16539e5923cb0d7403b9a093b\n::error::forged"),
    ("GITHUB_RUN_ID", "12a"), ("GITHUB_RUN_ID", "-1"), ("GITHUB_RUN_ID", "1" * 21),
    ("GITHUB_RUN_ID", "1\n::error::forged"), ("GITHUB_RUN_ATTEMPT", "1 "),
    ("GITHUB_RUN_ATTEMPT", "\u0661"),  # an Arabic-Indic one: a digit, not 0-9
    ("GITHUB_REPOSITORY_ID", "repo-id"), ("GITHUB_REPOSITORY_OWNER_ID", "1.5"),
    ("GITHUB_REPOSITORY", "ownerless"), ("GITHUB_REPOSITORY", "owner/repo/extra"),
    ("GITHUB_REPOSITORY", "../repo"), ("GITHUB_REPOSITORY", "owner/.."),
    ("GITHUB_REPOSITORY", "owner/repo\n::error::x"), ("GITHUB_REPOSITORY", "own er/repo"),
    ("GITHUB_REPOSITORY", "-owner/repo"), ("GITHUB_REPOSITORY", "o" * 40 + "/repo"),
    ("GITHUB_REF", "main"), ("GITHUB_REF", "refs/heads/a b"), ("GITHUB_REF", "refs/heads/a..b"),
    ("GITHUB_REF", "refs/heads/x\n::error::forged"), ("GITHUB_REF", "refs/heads/\u202eevil"),
    ("GITHUB_REF", "refs/heads/a\x00"), ("GITHUB_REF", "refs/heads/x.lock"),
    ("GITHUB_REF", "refs/heads/"), ("GITHUB_REF", "refs/heads/a@{1}"),
    ("GITHUB_REF", "refs/heads/" + "a" * 2000),
    ("GITHUB_WORKFLOW_REF", "owner/repo/ci.yml@refs/heads/main"),
    ("GITHUB_WORKFLOW_REF", "owner/repo/.github/workflows/main.yml"),
    ("GITHUB_WORKFLOW_REF", "owner/repo/.github/workflows/main.yml@"),
    ("GITHUB_WORKFLOW_REF", "owner/repo/.github/workflows/../../x.yml@main"),
    ("GITHUB_WORKFLOW_REF", "owner/repo/.github/workflows/a b.yml@main"),
    ("GITHUB_WORKFLOW_REF", "owner/repo/.github/workflows/m.yml@main\n::error::forged"),
    ("GITHUB_SERVER_URL", "http://foo.ghe.com"), ("GITHUB_SERVER_URL", "https://foo.ghe.com/"),
    ("GITHUB_SERVER_URL", "https://foo.ghe.com/path"), ("GITHUB_SERVER_URL", "foo.ghe.com"),
    ("GITHUB_SERVER_URL", "https://foo.ghe.com\n::error::x"),
    ("GITHUB_SERVER_URL", "https://user@foo.ghe.com"),
    ("GITHUB_EVENT_NAME", "push\n"), ("GITHUB_EVENT_NAME", "Push"),
    ("GITHUB_EVENT_NAME", "::error::x"),
    ("RUNNER_ENVIRONMENT", "GitHub Hosted"), ("RUNNER_ENVIRONMENT", "github-hosted\r"),
]


@pytest.mark.parametrize("variable, value", HOSTILE_GITHUB)
def test_a_malformed_value_is_refused_naming_the_variable_not_the_value(variable, value):
    message = refused(provenance, {**GITHUB_ENV, variable: value})
    assert message.startswith(f"--provenance: {variable} is not "), message
    assert "::error::" not in message and "forged" not in message and value not in message


def test_a_workflow_of_another_repository_is_refused():
    environ = {**GITHUB_ENV,
               "GITHUB_WORKFLOW_REF": "evil/repo/.github/workflows/main.yml@refs/heads/main"}
    message = refused(provenance, environ)
    assert message == ("--provenance: GITHUB_WORKFLOW_REF does not name a workflow of the "
                       "repository GITHUB_REPOSITORY names")


@pytest.mark.parametrize("claim, value", [
    ("run_id", 13579246810), ("sha", None), ("sha", ""), ("repository", ["owner/repo"]),
    ("job_workflow_ref", "owner/workflows/publish.yml@main"), ("ref", "refs/heads/\n"),
    ("workflow_ref", "someone/else/.github/workflows/main.yml@main"),
])
def test_the_tokens_claims_are_checked_as_the_variables(claim, value):
    message = refused(provenance, GITHUB_ENV, claims={**CLAIMS, claim: value})
    assert f"the identity token's {claim} claim" in message or \
        (claim == "workflow_ref" and "does not name a workflow" in message), message


def test_a_claim_missing_from_the_token_is_named():
    claims = {k: v for k, v in CLAIMS.items() if k not in ("job_workflow_ref", "run_attempt")}
    assert refused(provenance, GITHUB_ENV, claims=claims) == (
        "--provenance on GitHub Actions needs the identity token's job_workflow_ref claim, "
        "the identity token's run_attempt claim (not set)")


@pytest.mark.parametrize("flag", ["false", "TRUE", "1", "", "true\n"])
def test_github_is_only_github_actions_true(flag):
    message = refused(provenance, {**GITHUB_ENV, "GITHUB_ACTIONS": flag})
    assert message.startswith("--provenance needs GitHub Actions or a Tekton step")


# -- provenance: Tekton -------------------------------------------------------------------

PIPELINE_RUN_UID = "17e34bd9-e7a2-48b2-8da1-eda6e3552cb5"  # Chains' docs' examples
TASK_RUN_UID = "155a34f8-4ac0-4f00-8d25-0fcd725a25ad"
TEKTON_ENV = {
    "TEKTON_TASK_RUN": "build-and-sign-7xk2p-sign",
    "TEKTON_TASK_RUN_UID": TASK_RUN_UID,
    "TEKTON_NAMESPACE": "tenant-ns",
    "TEKTON_PIPELINE_RUN": "build-and-sign-7xk2p",
    "TEKTON_PIPELINE_RUN_UID": PIPELINE_RUN_UID,
    "TEKTON_GIT_URL": "https://github.com/org/app",
    "TEKTON_GIT_COMMIT": "3f1a3e2c0b1d4e5f60718293a4b5c6d7e8f90123",
    "HOME": "/home/container-sign", "INPUT_CONFIG": "cosign_signer: {registry_password: s3cr3t}",
}


def test_a_pipeline_runs_provenance_in_chains_shape():
    params = {"images": ["quay.io/org/app:1.0@sha256:" + "a" * 64], "signer": "cosign",
              "labels": {"team": "a"}}
    same(provenance(TEKTON_ENV, parameters=params), {
        "buildDefinition": {
            "buildType": "https://tekton.dev/chains/v2/slsa",
            "externalParameters": {"runSpec": {"params": [
                {"name": "images", "value": ["quay.io/org/app:1.0@sha256:" + "a" * 64]},
                {"name": "signer", "value": "cosign"},
                {"name": "labels", "value": {"team": "a"}}]}},
            "internalParameters": {"tekton": {
                "namespace": "tenant-ns",
                "pipelineRun": {"name": "build-and-sign-7xk2p", "uid": PIPELINE_RUN_UID},
                "taskRun": {"name": "build-and-sign-7xk2p-sign", "uid": TASK_RUN_UID}}},
            "resolvedDependencies": [{
                "name": "inputs/result", "uri": "git+https://github.com/org/app.git",
                "digest": {"sha1": "3f1a3e2c0b1d4e5f60718293a4b5c6d7e8f90123"}}],
        },
        "runDetails": {
            "builder": {"id": "urn:container-sign-action:tekton"},
            "metadata": {"invocationID": PIPELINE_RUN_UID},  # Chains' spelling, the run's uid
        },
    })


def test_a_lone_task_run_is_its_own_invocation():
    environ = {**TEKTON_ENV, "TEKTON_PIPELINE_RUN": "", "TEKTON_PIPELINE_RUN_UID": ""}
    del environ["TEKTON_GIT_URL"], environ["TEKTON_GIT_COMMIT"]
    same(provenance(environ), {
        "buildDefinition": {
            "buildType": "https://tekton.dev/chains/v2/slsa",
            "externalParameters": {},
            "internalParameters": {"tekton": {
                "namespace": "tenant-ns",
                "taskRun": {"name": "build-and-sign-7xk2p-sign", "uid": TASK_RUN_UID}}},
        },
        "runDetails": {"builder": {"id": "urn:container-sign-action:tekton"},
                       "metadata": {"invocationID": TASK_RUN_UID}},
    })


def test_nothing_but_the_named_variables_reaches_the_predicate():
    text = json.dumps(provenance(TEKTON_ENV))
    assert "s3cr3t" not in text and "/home/container-sign" not in text


def test_chains_fields_and_a_slsa_v1_predicate(tmp_path):
    got = provenance(TEKTON_ENV)
    assert set(got["buildDefinition"]) == {"buildType", "externalParameters",
                                           "internalParameters", "resolvedDependencies"}
    assert set(got["runDetails"]) == {"builder", "metadata"}
    assert got["runDetails"]["builder"]["id"] != "https://tekton.dev/chains/v2"  # not Chains
    assert read_predicate(write(tmp_path, json.dumps(got)), "slsaprovenance1") == got


@pytest.mark.parametrize("url, commit, uri, digest", [
    ("https://github.com/org/app.git", "a" * 40, "git+https://github.com/org/app.git", "sha1"),
    ("git+https://gitlab.example.com/g/app", "b" * 64, "git+https://gitlab.example.com/g/app.git",
     "sha256"),
    ("ssh://git@example.com:2222/app", "c" * 40, "git+ssh://git@example.com:2222/app.git", "sha1"),
])
def test_the_source_as_chains_writes_a_git_url(url, commit, uri, digest):
    got = provenance({**TEKTON_ENV, "TEKTON_GIT_URL": url, "TEKTON_GIT_COMMIT": commit})
    assert got["buildDefinition"]["resolvedDependencies"] == [
        {"name": "inputs/result", "uri": uri, "digest": {digest: commit}}]


def test_the_builder_id_can_be_named():
    got = provenance({**TEKTON_ENV, "TEKTON_BUILDER_ID": "https://konflux.example.com/cluster-1"})
    assert got["runDetails"]["builder"] == {"id": "https://konflux.example.com/cluster-1"}


@pytest.mark.parametrize("only", ["TEKTON_TASK_RUN", "TEKTON_NAMESPACE", "TEKTON_PIPELINE_RUN",
                                  "TEKTON_PIPELINE_RUN_UID", "TEKTON_TASK_RUN_UID"])
def test_one_tekton_variable_makes_a_tekton_step_that_lacks_the_others(only):
    message = refused(provenance, {only: TEKTON_ENV[only]})
    assert message.startswith("--provenance in a Tekton step needs "), message
    needs = message.split(" needs ", 1)[1].split(" (not set;", 1)[0].split(", ")
    assert needs == [v for v in ("TEKTON_TASK_RUN", "TEKTON_TASK_RUN_UID", "TEKTON_NAMESPACE")
                     if v != only]


@pytest.mark.parametrize("drop, said", [
    ("TEKTON_PIPELINE_RUN_UID", "TEKTON_PIPELINE_RUN and TEKTON_PIPELINE_RUN_UID go together: "
                                "TEKTON_PIPELINE_RUN_UID is not set"),
    ("TEKTON_PIPELINE_RUN", "TEKTON_PIPELINE_RUN and TEKTON_PIPELINE_RUN_UID go together: "
                            "TEKTON_PIPELINE_RUN is not set"),
    ("TEKTON_GIT_COMMIT", "TEKTON_GIT_URL and TEKTON_GIT_COMMIT go together: "
                          "TEKTON_GIT_COMMIT is not set"),
])
def test_pairs_go_together(drop, said):
    environ = dict(TEKTON_ENV)
    del environ[drop]
    assert refused(provenance, environ) == f"--provenance: {said}"


HOSTILE_TEKTON = [
    ("TEKTON_NAMESPACE", "Tenant_NS"), ("TEKTON_NAMESPACE", "a" * 64),
    ("TEKTON_NAMESPACE", "ns\n::error::forged"), ("TEKTON_NAMESPACE", "-ns"),
    ("TEKTON_TASK_RUN", "run\n"), ("TEKTON_TASK_RUN", "a" * 254), ("TEKTON_TASK_RUN", "Run"),
    ("TEKTON_TASK_RUN", "$(context.taskRun.name)"), ("TEKTON_TASK_RUN", "a..b"),
    ("TEKTON_PIPELINE_RUN", "::error::forged"), ("TEKTON_PIPELINE_RUN", "pr/other"),
    ("TEKTON_TASK_RUN_UID", "not-a-uid"), ("TEKTON_TASK_RUN_UID", TASK_RUN_UID.upper()),
    ("TEKTON_PIPELINE_RUN_UID", PIPELINE_RUN_UID + "\n::error::forged"),
    ("TEKTON_PIPELINE_RUN_UID", "$(context.pipelineRun.uid)"),
    ("TEKTON_GIT_URL", "file:///etc/passwd"), ("TEKTON_GIT_URL", "file://host/etc/passwd"),
    ("TEKTON_GIT_URL", "ftp://x.example/app"), ("TEKTON_GIT_URL", "https://x.example/a b"),
    ("TEKTON_GIT_URL", "git@github.com:org/app.git"), ("TEKTON_GIT_URL", "https://?x"),
    ("TEKTON_GIT_URL", "https://x.example/\n::error::forged"),
    ("TEKTON_GIT_URL", "https://x.example/" + "a" * 1100),
    ("TEKTON_GIT_COMMIT", "abc123"), ("TEKTON_GIT_COMMIT", "g" * 40),
    ("TEKTON_BUILDER_ID", "not a uri"), ("TEKTON_BUILDER_ID", "https://x\n::error::forged"),
    ("TEKTON_BUILDER_ID", "builder"),
]


@pytest.mark.parametrize("variable, value", HOSTILE_TEKTON)
def test_a_malformed_tekton_value_is_refused_naming_the_variable(variable, value):
    message = refused(provenance, {**TEKTON_ENV, variable: value})
    assert message.startswith(f"--provenance: {variable} is not "), message
    assert "::error::" not in message and value not in message


def test_params_are_the_callers_in_their_order_and_checked():
    got = provenance(TEKTON_ENV, parameters={"b": "2", "a": ["x", "y"]})
    assert got["buildDefinition"]["externalParameters"] == {"runSpec": {"params": [
        {"name": "b", "value": "2"}, {"name": "a", "value": ["x", "y"]}]}}
    with pytest.raises(ValueError):
        provenance(TEKTON_ENV, parameters={"bad name\n": "x"})
    with pytest.raises(TypeError):
        provenance(TEKTON_ENV, parameters={"n": 5})  # type: ignore[dict-item]


# -- neither, or both ---------------------------------------------------------------------

def test_elsewhere_provenance_is_refused_saying_what_is_missing():
    message = refused(provenance, {"HOME": "/root", "CI": "true", "GITLAB_CI": "true"})
    assert message == ("--provenance needs GitHub Actions or a Tekton step: neither "
                       "GITHUB_ACTIONS=true nor TEKTON_TASK_RUN, TEKTON_TASK_RUN_UID, "
                       "TEKTON_NAMESPACE (the Tekton Task sets them) is set")
    assert refused(provenance, {}) == message
    assert refused(provenance, {"TEKTON_PIPELINE_RUN": "", "TEKTON_GIT_URL": "x"}) == message


def test_both_contexts_at_once_is_ambiguous():
    message = refused(provenance, {**GITHUB_ENV, **TEKTON_ENV})
    assert "both GitHub Actions" in message and "ambiguous" in message


# -- start-up -----------------------------------------------------------------------------

def test_importing_it_imports_nothing_the_start_does_not():
    """Every run imports signaction.safeload (and so yaml) at start: this module adds itself."""
    def imported(module: str) -> set[str]:
        code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
        return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True, timeout=60).stdout.split())

    assert imported("signaction.attestations") - imported("signaction.safeload") == \
        {"signaction.attestations"}
