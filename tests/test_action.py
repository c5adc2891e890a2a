"""action.yml declares exactly the inputs the entrypoint reads, with the same defaults."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from signaction.inputs import OPTIONS

ACTION = yaml.safe_load((Path(__file__).resolve().parent.parent / "action.yml").read_text())


def test_inputs_match_the_option_table():
    assert list(ACTION["inputs"]) == [o.input for o in OPTIONS]
    for opt in OPTIONS:
        declared = ACTION["inputs"][opt.input]
        assert declared["description"]
        if opt.default is None:
            assert "default" not in declared, opt.input
        else:
            expected = str(opt.default).lower() if opt.kind == "bool" else str(opt.default)
            assert declared["default"] == expected, opt.input


def test_outputs_are_the_ones_the_entrypoint_writes():
    assert set(ACTION["outputs"]) == {"status", "signed-count", "verified-count",
                                      "failed-count", "results-file", "signatures-dir"}
    assert ACTION["runs"] == {"using": "docker", "image": "Dockerfile"}


def test_workflows_run_the_tests_the_action_and_the_release():
    flows = Path(__file__).resolve().parent.parent / ".github" / "workflows"
    load = lambda name: yaml.safe_load((flows / name).read_text())  # noqa: E731
    steps = lambda flow: [s for job in flow["jobs"].values() for s in job["steps"]]  # noqa: E731
    assert any(s.get("run") == "make test" for s in steps(load("ci.yml")))
    selftest = load("self-test.yml")
    assert {"gpg", "cosign"} <= set(selftest["jobs"])
    for job in selftest["jobs"].values():  # the action as users run it, then checked
        uses = [s for s in job["steps"] if s.get("uses") == "./"]
        assert len(uses) == 1 and uses[0]["id"] == "sign"
        later = job["steps"][job["steps"].index(uses[0]) + 1:]
        assert any("verify" in s.get("run", "") or "--decrypt" in s.get("run", "")
                   for s in later)
    release = load("release.yml")
    build = [s for s in steps(release) if s.get("uses", "").startswith("docker/build-push")]
    assert build and build[0]["with"]["push"] is True
    assert release[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    # the release signs what it pushed with this action, keyless, both forms, and attests it
    sign, verify = [s for s in steps(release) if s.get("uses") == "./"]
    assert sign["with"]["signing-keys"] == "keyless" and sign["with"]["provenance"] == "true"
    assert "signature_format: both" in sign["with"]["config"]
    assert sign["with"]["predicate-types"] == "spdxjson"
    assert sign["with"]["images"].endswith("@${{ steps.build.outputs.digest }}")
    assert release["jobs"]["image"]["permissions"]["id-token"] == "write"
    assert verify["with"]["mode"] == "verify"
    assert set(verify["with"]["attestation-types"].split()) == {"slsaprovenance1", "spdxjson"}
    for used in (sign, verify):
        assert set(used["with"]) <= set(ACTION["inputs"]), used
    for step in steps(release):  # the job holds id-token: write: nothing from outside by tag
        uses = step.get("uses", "./")
        assert uses == "./" or re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), uses


def test_the_action_is_named_described_and_branded_for_the_marketplace():
    assert ACTION["name"] and len(ACTION["description"]) > 40
    assert set(ACTION["branding"]) == {"icon", "color"}
    for name in ("deadline", "upload", "skip-signed", "expand-index", "identities"):
        assert name in ACTION["inputs"], name
