"""The sharded examples as the engines would run them: examples/github/sharded-signing.yml (a job
matrix, artifacts, merge, verify) and tekton/samples/sharded-pipeline.yaml (a Task matrix and a
finally merge). Each is checked as data against what it uses (action inputs, Task params, artifact
names and paths), then its jobs' commands are run here in order with real gpg: N shards, merge,
and (GitHub) verify mode on the merged signatures."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT, run_entrypoint
from test_tekton import SPEC, pod_folders, render_step, results_of, run_step

ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
FLOW = yaml.safe_load((ROOT / "examples" / "github" / "sharded-signing.yml").read_text())
PIPELINE = yaml.safe_load((ROOT / "tekton" / "samples" / "sharded-pipeline.yaml").read_text())
THE_ACTION = "OWNER/container-sign-action@v0"  # as README names it


def _images(n: int) -> list[dict]:
    return [{"reference": f"registry.example.com/rel/app-{k}:1.{k % 3}",
             "digest": "sha256:" + hashlib.sha256(f"image {k}".encode()).hexdigest()}
            for k in range(n)]


@pytest.fixture
def workspace(tmp_path, gpg_keys):
    """A checkout as the examples expect it: the config, the public key, the images file."""
    ws = tmp_path / "checkout"
    (ws / "signing").mkdir(parents=True)
    (ws / "release").mkdir()
    (ws / "signing" / "conf.yaml").write_text(f"gpg_signer: {{gnupg_home: {gpg_keys.home}}}\n")
    (ws / "signing" / "release-key.pub").write_bytes(subprocess.run(
        ["gpg", "--export", gpg_keys.a], env={**os.environ, **gpg_keys.env()},
        capture_output=True, check=True).stdout)
    (ws / "release" / "images.yaml").write_text(yaml.safe_dump(_images(24)))
    return ws


# -- GitHub --------------------------------------------------------------------------------

_EXPR = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def _sub(text: str, values: dict[str, str]) -> str:
    return _EXPR.sub(lambda m: values[m.group(1)], str(text))


def _action_steps(job: dict) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses") == THE_ACTION]


def _artifact_steps(job: dict, kind: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(f"actions/{kind}-artifact@")]


def test_the_workflow_wires_shards_merge_and_verify():
    jobs = FLOW["jobs"]
    assert list(jobs) == ["sign", "merge", "verify"]
    shards = jobs["sign"]["strategy"]["matrix"]["shard"]
    n = len(shards)
    assert shards == list(range(1, n + 1)) and jobs["sign"]["strategy"]["fail-fast"] is False
    assert jobs["merge"]["needs"] == "sign" and jobs["verify"]["needs"] == "merge"
    assert "cancelled()" in jobs["merge"]["if"]  # a failed shard still gets merged (and named)
    for job in jobs.values():
        for step in _action_steps(job):
            assert set(step["with"]) <= set(ACTION["inputs"]), step["with"]
    sign, = _action_steps(jobs["sign"])
    assert sign["with"]["shard"] == f"${{{{ matrix.shard }}}}/{n}"
    upload, = _artifact_steps(jobs["sign"], "upload")
    folder = sign["with"]["output-dir"].replace("{shard}", "${{ matrix.shard }}")
    assert upload["with"]["path"] == folder  # each shard uploads the folder it wrote
    download, = _artifact_steps(jobs["merge"], "download")
    for k in shards:  # every shard's artifact is downloaded into a folder merge takes
        name = _sub(upload["with"]["name"], {"matrix.shard": str(k)})
        assert fnmatch.fnmatch(name, download["with"]["pattern"])
        assert fnmatch.fnmatch(f"{download['with']['path']}/{name}",
                               _action_steps(jobs["merge"])[0]["with"]["shard-dirs"])


def _run_action(step: dict, values: dict[str, str], cwd, env=None):
    """The action's container: each input as the runner passes it (INPUT_NAME, hyphen kept)."""
    inputs = {f"INPUT_{name.upper()}": _sub(value, values)
              for name, value in step["with"].items()}
    return run_entrypoint(env={**inputs, **(env or {})}, cwd=cwd)


def test_the_workflow_signs_merges_and_verifies(workspace, gpg_keys, tmp_path):
    jobs = FLOW["jobs"]
    values = {"github.run_id": "4242", "vars.SIGNING_KEY": gpg_keys.a}
    upload, = _artifact_steps(jobs["sign"], "upload")
    download, = _artifact_steps(jobs["merge"], "download")
    merge_ws = tmp_path / "merge-job"
    for k in jobs["sign"]["strategy"]["matrix"]["shard"]:  # each matrix job, in its checkout
        job_ws = tmp_path / f"sign-{k}"
        shutil.copytree(workspace, job_ws)
        shard_values = {**values, "matrix.shard": str(k)}
        run = _run_action(_action_steps(jobs["sign"])[0], shard_values, job_ws)
        assert run.returncode == 0, run.stderr
        name = _sub(upload["with"]["name"], shard_values)  # upload, then download by name
        shutil.copytree(job_ws / _sub(upload["with"]["path"], shard_values),
                        merge_ws / download["with"]["path"] / name)
    merged = _run_action(_action_steps(jobs["merge"])[0], values, merge_ws)
    assert merged.returncode == 0, merged.stderr
    results = json.loads((merge_ws / "signatures" / "results.json").read_text())
    assert results["summary"] == {"signed": 24, "failed": 0, "skipped": 0, "total": 24}
    assert [e["reference"] for e in results["images"]] == [i["reference"] for i in _images(24)]

    published = merge_ws / "signatures" / "lookaside"  # the publish step, here: a file:// URL
    values["vars.LOOKASIDE_URL"] = f"{published.as_uri()}/{{registry}}"
    # (verify mode looks multi-arch images up in the registry: these images are in none)
    verified = _run_action(_action_steps(jobs["verify"])[0], values, workspace,
                           env={"INPUT_EXPAND-INDEX": "false"})
    assert verified.returncode == 0, verified.stderr
    report = json.loads((workspace / "verified" / "results.json").read_text())
    assert report["summary"]["verified"] == 24 and report["summary"]["failed"] == 0


def test_the_workflows_merge_names_a_shard_that_never_uploaded(workspace, gpg_keys, tmp_path):
    jobs = FLOW["jobs"]
    values = {"github.run_id": "4242", "vars.SIGNING_KEY": gpg_keys.a, "matrix.shard": "1"}
    assert _run_action(_action_steps(jobs["sign"])[0], values, workspace).returncode == 0
    merge_ws = tmp_path / "merge-job"
    shutil.copytree(workspace / "shards" / "1", merge_ws / "shards" / "shard-1")
    run = _run_action(_action_steps(jobs["merge"])[0], values, merge_ws)
    assert run.returncode == 2 and "shard 2/4, 3/4, 4/4" in run.stderr, run.stderr


# -- Tekton --------------------------------------------------------------------------------

def _pipeline_task(name: str) -> dict:
    return next(t for t in PIPELINE["spec"]["tasks"] + PIPELINE["spec"]["finally"]
                if t["name"] == name)


def test_the_pipeline_fans_the_task_out_over_shard_and_merges_finally():
    assert PIPELINE["kind"] == "Pipeline" and PIPELINE["apiVersion"] == "tekton.dev/v1"
    declared = {p["name"]: p["type"] for p in SPEC["params"]}
    sign, merge = _pipeline_task("sign"), _pipeline_task("merge")
    assert merge in PIPELINE["spec"]["finally"]  # runs even when a shard failed
    matrix = sign["matrix"]["params"]
    assert [p["name"] for p in matrix] == ["shard"] and declared["shard"] == "string"
    n = len(matrix[0]["value"])
    assert matrix[0]["value"] == [f"{k}/{n}" for k in range(1, n + 1)]
    for task in (sign, merge):
        assert task["taskRef"]["name"] == "container-sign"
        for param in task["params"]:
            kind = "array" if isinstance(param["value"], list) else "string"
            assert declared[param["name"]] == kind, param["name"]
    out = {p["name"]: p["value"] for p in sign["params"]}["output-dir"]
    merge_params = {p["name"]: p["value"] for p in merge["params"]}
    assert merge_params["mode"] == "merge"
    assert all(fnmatch.fnmatch(out.replace("{shard}", str(k)), merge_params["shard-dirs"][0])
               for k in range(1, n + 1))
    spec_ws = {w["name"] for w in PIPELINE["spec"]["workspaces"]}
    assert all(w["workspace"] in spec_ws for t in (sign, merge) for w in t["workspaces"])


def _task_params(task: dict, pipeline_params: dict, extra: dict) -> dict:
    """A PipelineTask's params after Tekton's substitution of pipeline params and context."""
    def sub(value):
        if isinstance(value, list):
            return [x for v in value for x in (pipeline_params[v[9:-4]] if v.startswith(
                "$(params.") and v.endswith("[*])") else [sub(v)])]
        return re.sub(r"\$\(([^()]*)\)", lambda m: {
            "context.pipelineRun.uid": "run-uid-7", **{f"params.{k}": v for k, v in
                                                       pipeline_params.items()}}[m.group(1)],
            value)
    return {**{p["name"]: sub(p["value"]) for p in task["params"]}, **extra}


def test_the_pipeline_signs_as_n_taskruns_then_merges(tmp_path, workspace, gpg_keys):
    (tmp_path / "pod").mkdir()
    folders, mounts = pod_folders(tmp_path / "pod")
    shutil.copytree(workspace, folders["output"], dirs_exist_ok=True)  # the shared workspace
    # the config workspace: here the default config path below the step's HOME
    conf = folders["home"] / ".config" / "pubtools-sign" / "conf.yaml"
    conf.parent.mkdir(parents=True)
    shutil.copy(workspace / "signing" / "conf.yaml", conf)
    given = {"images-file": "release/images.yaml", "signing-keys": [gpg_keys.a]}
    sign = _pipeline_task("sign")
    for shard in sign["matrix"]["params"][0]["value"]:  # one TaskRun per matrix value
        step = render_step(_task_params(sign, given, {"shard": shard}), mounts)
        run = run_step(step)
        assert run.returncode == 0, run.stderr
        assert results_of(folders["results"])["status"] == "success"
    run = run_step(render_step(_task_params(_pipeline_task("merge"), given, {}), mounts))
    assert run.returncode == 0, run.stderr
    outputs = results_of(folders["results"])
    assert outputs["signed-count"] == "24" and outputs["signatures-dir"] == "signatures"
    report = json.loads((folders["output"] / outputs["results-file"]).read_text())
    assert report["operation"]["task_id"] == "run-uid-7" and report["summary"]["signed"] == 24
