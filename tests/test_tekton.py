"""The Tekton Task (tekton/container-sign.yaml) and the step results it relies on.

The Task is checked as data (params mirror the action inputs, arrays are arrays, no script, a
non-root securityContext, catalog metadata), then its step is rendered the way Tekton renders it
(params with their defaults substituted into env and args, an array expanded where a whole arg is
``$(params.X[*])``, workspace and result paths substituted) and the entrypoint is run with exactly
that command, args, env and working folder: a dry run of 10,000 images, real gpg signing, a partial
failure, invalid input and, when the tests run as root, a run as uid 1001.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import ENTRYPOINT, ROOT, Run, gpg_decrypt
from signaction.config import CONFIG_PATHS
from signaction.errors import InputError
from signaction.inputs import OPTIONS, parse_inputs
from signaction.tekton import (
    BUDGET,
    NAMES,
    RESULTS_DIR,
    TERMINATION_MESSAGE_LIMIT,
    TektonResults,
    fit,
    message_size,
    requested_folder,
)

TASK_PATH = ROOT / "tekton" / "container-sign.yaml"
TASK = yaml.safe_load(TASK_PATH.read_text())
SPEC = TASK["spec"]
STEP = SPEC["steps"][0]
CONTAINER_SIGN = "/opt/venv/bin/container-sign"  # the image's ENTRYPOINT (Dockerfile)
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
ARRAYS = {"references", "digests", "images", "identities", "clear-sign-files", "blob-files",
          "signing-keys", "signing-key-names", "shard-dirs", "predicates", "predicate-types",
          "attestation-types"}
# what $(context.taskRun.*) stands for in a rendered step (the TaskRun's name, uid, namespace)
TASK_RUN = {"name": "sign-run-1", "uid": "6a1f9a52-3c1e-4c0e-9d43-1b2f7c1e2a90",
            "namespace": "release"}
# Action inputs the Task sets itself instead of taking them as params.
NOT_PARAMS = {"tekton-results": "the Task points it at /tekton/results"}

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


# -- the Task as data ------------------------------------------------------------------------

def test_kind_version_and_catalog_metadata():
    assert TASK["apiVersion"] == "tekton.dev/v1" and TASK["kind"] == "Task"
    meta = TASK["metadata"]
    assert meta["name"] == "container-sign"
    assert meta["labels"]["app.kubernetes.io/version"] == "0.1.0"
    notes = meta["annotations"]
    assert tuple(map(int, notes["tekton.dev/pipelines.minVersion"].split("."))) >= (0, 50, 0)
    assert notes["tekton.dev/categories"] == "Security"
    assert notes["tekton.dev/tags"] == "signing, containers, cosign, gpg"
    assert notes["tekton.dev/displayName"] and notes["tekton.dev/platforms"] == "linux/amd64"
    assert SPEC["description"].strip()
    # only fields of Tekton's v1 TaskSpec and Step (a typo would be dropped or refused)
    assert set(SPEC) <= {"description", "displayName", "params", "workspaces", "results",
                         "volumes", "stepTemplate", "sidecars", "steps"}
    assert len(SPEC["steps"]) == 1
    assert set(STEP) <= {"name", "image", "command", "args", "workingDir", "env", "envFrom",
                         "computeResources", "volumeMounts", "volumeDevices", "imagePullPolicy",
                         "securityContext", "script", "timeout", "workspaces", "onError",
                         "stdoutConfig", "stderrConfig", "results", "when", "displayName"}
    assert "onError" not in STEP  # a failed signature fails the TaskRun


def test_params_mirror_the_action_inputs_in_order_with_the_same_defaults():
    inputs = [name for name in ACTION["inputs"] if name not in NOT_PARAMS]
    assert [p["name"] for p in SPEC["params"]] == inputs
    assert set(NOT_PARAMS) <= set(ACTION["inputs"])
    for param in SPEC["params"]:
        name = param["name"]
        assert param["description"].strip(), name
        if name in ARRAYS:
            assert param["type"] == "array" and param["default"] == [], name
            assert next(o for o in OPTIONS if o.input == name).kind == "list"
        else:
            assert param["type"] == "string", name
            assert param["default"] == ACTION["inputs"][name].get("default", ""), name
    assert ARRAYS == {o.input for o in OPTIONS if o.kind == "list"}


def env_name(input_name: str) -> str:
    return "INPUT_" + input_name.upper().replace("-", "_")


def test_each_param_reaches_the_step_once_through_env_or_args_never_a_script():
    for step in SPEC["steps"]:
        assert "script" not in step  # nothing to interpolate into
    env = {e["name"]: e.get("value") for e in STEP["env"]}
    for param in SPEC["params"]:
        name = param["name"]
        if name in ARRAYS:  # after --values NAME, expanded by Tekton into arguments
            at = STEP["args"].index(f"$(params.{name}[*])")
            assert STEP["args"][at - 2:at] == ["--values", name]
        else:  # the underscore form: a C identifier, valid in any Kubernetes version
            assert env[env_name(name)] == f"$(params.{name})", name
    text = json.dumps(SPEC["steps"])
    for param in SPEC["params"]:
        assert len(re.findall(rf"\$\(params\.{re.escape(param['name'])}(\[\*\])?\)", text)) == 1
    assert env["INPUT_TEKTON_RESULTS"] == RESULTS_DIR
    # arrays only as whole args, and everything after the first --values is values
    assert all(a.startswith("--values") or not a.startswith("--") for a in STEP["args"])
    assert STEP["args"][0] == "--values"


def test_the_step_runs_the_images_entrypoint_as_a_non_root_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    entry = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, re.M)
    assert STEP["command"] == json.loads(entry.group(1)) == [CONTAINER_SIGN]
    # the console script is entrypoint.py's main: what run_step runs from this checkout
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[Path(CONTAINER_SIGN).name] == "entrypoint:main"
    assert re.fullmatch(r"[a-z0-9.\-]+(/[a-z0-9._\-]+)+@sha256:[0-9a-f]{64}", STEP["image"])
    sc = STEP["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 1001 and sc["runAsUser"] != 0
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not sc.get("privileged")


def test_home_is_a_writable_emptydir_and_workspaces_are_where_the_entrypoint_looks():
    env = {e["name"]: e.get("value") for e in STEP["env"]}
    mounts = {m["mountPath"]: m["name"] for m in STEP["volumeMounts"]}
    volumes = {v["name"]: v for v in SPEC["volumes"]}
    assert volumes[mounts[env["HOME"]]] == {"name": "home", "emptyDir": {}}
    ws = {w["name"]: w for w in SPEC["workspaces"]}
    assert set(ws) == {"config", "keys", "output"}
    for name in ("config", "keys"):
        assert ws[name]["optional"] is True and ws[name]["readOnly"] is True
    assert not ws["output"].get("readOnly") and not ws["output"].get("optional")
    assert os.path.join(ws["config"]["mountPath"], "conf.yaml") == CONFIG_PATHS[-1]
    assert "1001" in ws["output"]["description"]  # who must be able to write it
    assert STEP["workingDir"] == "$(workspaces.output.path)"


def test_results_are_the_ones_the_entrypoint_writes():
    assert [r["name"] for r in SPEC["results"]] == list(NAMES)
    assert all(r.get("type", "string") == "string" for r in SPEC["results"])
    assert set(NAMES) == set(ACTION["outputs"])  # the step outputs, same names


def test_the_samples_use_declared_params_and_workspaces():
    sample = (ROOT / "tekton" / "samples" / "sign-taskrun.yaml").read_text()
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all(sample)}
    pipeline_tasks = docs["Pipeline"]["spec"]["tasks"]
    uses = [docs["TaskRun"]["spec"], *(t for t in pipeline_tasks
                                       if t.get("taskRef", {}).get("name") == "container-sign")]
    assert len(uses) == 2 and docs["TaskRun"]["spec"]["taskRef"]["name"] == "container-sign"
    declared = {p["name"]: p["type"] for p in SPEC["params"]}
    for use in uses:
        for param in use["params"]:
            kind = "array" if isinstance(param["value"], list) else "string"
            assert declared[param["name"]] == kind, param["name"]
        given = {w["name"] for w in use["workspaces"]}
        required = {w["name"] for w in SPEC["workspaces"] if not w.get("optional")}
        assert required <= given <= {w["name"] for w in SPEC["workspaces"]}
    assert docs["TaskRun"]["spec"]["podTemplate"]["securityContext"]["fsGroup"] == 1001
    assert "$(tasks.sign.results.results-file)" in sample
    for task in pipeline_tasks:  # no param interpolated into a command or script here either
        for step in task.get("taskSpec", {}).get("steps", []):
            assert "$(params." not in json.dumps([step.get("command"), step.get("args"),
                                                  step.get("script")])


# -- rendering the step as Tekton does ---------------------------------------------------------

_VAR = re.compile(r"\$\(([^()]*)\)")


@dataclasses.dataclass
class Rendered:
    command: list[str]
    args: list[str]
    env: dict[str, str]
    working_dir: str


def render_step(params: dict, mounts: dict[str, Path], bound: set[str] = frozenset()) -> Rendered:
    """The step after Tekton's substitution, with each container path in ``mounts`` (workspace
    mountPaths, /tekton/results, volumeMounts) standing for a host folder.

    As Tekton: a TaskRun param must be declared and of the declared type, missing ones take their
    default; an array param is allowed only as a whole arg, ``$(params.X[*])``, and expands into
    one arg per element; ``$(workspaces.W.path)`` is the workspace's mountPath (default
    /workspace/W), ``$(workspaces.W.bound)`` true or false, ``$(results.R.path)``
    /tekton/results/R. Anything else in ``$(...)`` is refused here (Tekton would leave a typo
    as it is)."""
    declared = {p["name"]: p for p in SPEC["params"]}
    values = {name: p.get("default") for name, p in declared.items()}
    for name, value in params.items():
        assert name in declared, f"param {name} is not declared"
        want = list if declared[name]["type"] == "array" else str
        assert isinstance(value, want), f"param {name}: {type(value).__name__}"
        values[name] = value
    assert all(v is not None for v in values.values()), "a param without default is missing"
    workspaces = {w["name"]: w.get("mountPath", f"/workspace/{w['name']}")
                  for w in SPEC["workspaces"]}
    results = {r["name"] for r in SPEC["results"]}

    def var(name: str, *, whole_arg: bool) -> str | list[str]:
        parts = name.split(".")
        if parts[0] == "params":
            pname = ".".join(parts[1:])
            star = pname.endswith("[*]")
            pname = pname.removesuffix("[*]")
            is_array = declared[pname]["type"] == "array"
            assert star == is_array, f"$({name}): arrays need [*], strings must not have it"
            assert whole_arg or not is_array, f"$({name}) must be a whole arg"
            return values[pname]
        if parts[0] == "workspaces" and parts[2] == "path":
            return workspaces[parts[1]]
        if parts[0] == "workspaces" and parts[2] == "bound":
            return "true" if parts[1] in bound else "false"
        if parts[:2] == ["context", "taskRun"] and parts[2] in TASK_RUN:
            return TASK_RUN[parts[2]]
        if parts[0] == "results" and parts[2] == "path":
            assert parts[1] in results
            return f"{RESULTS_DIR}/{parts[1]}"
        raise AssertionError(f"unknown variable $({name})")

    def text(value: str) -> str:
        return _VAR.sub(lambda m: var(m.group(1), whole_arg=False), value)

    def host(path: str) -> str:  # a container path below a mount -> the host folder
        for mount, folder in mounts.items():
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                return str(folder) + path[len(mount.rstrip("/")):]
        return path

    args: list[str] = []
    for arg in STEP["args"]:
        whole = _VAR.fullmatch(arg)
        expanded = var(whole.group(1), whole_arg=True) if whole else text(arg)
        args += expanded if isinstance(expanded, list) else [expanded]
    # (a pod label's value, from valueFrom: none here, as outside a PipelineRun)
    env = {e["name"]: host(text(e["value"])) for e in STEP["env"] if "value" in e}
    return Rendered(STEP["command"], args, env, host(text(STEP["workingDir"])))


def run_step(step: Rendered, *, python: str = sys.executable, preexec=None, extra_env=None,
             timeout: float = 300) -> Run:
    """Run the rendered step: the image's ENTRYPOINT, the console script of entrypoint:main, is
    this checkout's entrypoint.py; the environment the image's (PATH, PYTHONUNBUFFERED) plus the
    step's, nothing inherited."""
    assert step.command == [CONTAINER_SIGN]
    env = {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1", **(extra_env or {}), **step.env}
    proc = subprocess.run([python, str(ENTRYPOINT), *step.args], env=env, cwd=step.working_dir,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def results_of(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


@pytest.fixture
def pod(tmp_path):
    return pod_folders(tmp_path)


def pod_folders(tmp_path):
    """Host folders standing for the pod's mounts: output workspace, results, HOME."""
    folders = {"output": tmp_path / "output", "results": tmp_path / "results",
               "home": tmp_path / "home"}
    for folder in folders.values():
        folder.mkdir()
    ws = {w["name"]: w.get("mountPath", f"/workspace/{w['name']}") for w in SPEC["workspaces"]}
    mounts = {ws["output"]: folders["output"], RESULTS_DIR: folders["results"],
              STEP["volumeMounts"][0]["mountPath"]: folders["home"]}
    return folders, mounts


def test_the_renderer_expands_arrays_and_defaults_as_tekton_does(pod):
    folders, mounts = pod
    step = render_step({"references": ["r.io/a:1", "r.io/b:1"], "digests": [],
                        "task-id": "uid-1"}, mounts)
    assert step.args[:5] == ["--values", "references", "r.io/a:1", "r.io/b:1", "--values"]
    assert step.args[5:7] == ["digests", "--values"]
    assert step.env["INPUT_TASK_ID"] == "uid-1" and step.env["INPUT_SIGNER"] == "gpg"
    assert step.env["INPUT_TEKTON_RESULTS"] == str(folders["results"])
    assert step.env["HOME"] == str(folders["home"])
    assert step.working_dir == str(folders["output"])
    with pytest.raises(AssertionError):
        render_step({"references": "r.io/a:1"}, mounts)  # a string for an array param


def test_dry_run_of_10000_images_through_the_rendered_step(pod, gpg_keys):
    folders, mounts = pod
    images = [{"reference": f"registry.example.com/ns/app{n}:1.0", "digest": f"sha256:{n:064x}"}
              for n in range(10_000)]
    (folders["output"] / "images.json").write_text(json.dumps(images))
    step = render_step({"images-file": "images.json",  # relative: to the output workspace
                        "signing-keys": [gpg_keys.a], "dry-run": "true",
                        "config": f"gpg_signer: {{gnupg_home: {gpg_keys.home}}}"}, mounts)
    run = run_step(step)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("would sign ") == 10_000
    results = results_of(folders["results"])
    assert results == {"status": "dry-run", "signed-count": "0", "verified-count": "0",
                       "failed-count": "0",
                       "results-file": "", "signatures-dir": ""}
    assert sum(len(v.encode()) for v in results.values()) < TERMINATION_MESSAGE_LIMIT
    assert message_size(results) <= BUDGET < TERMINATION_MESSAGE_LIMIT
    assert sorted(os.listdir(folders["output"])) == ["images.json"]  # a dry run writes nothing


def test_gpg_signing_through_the_rendered_step(pod, gpg_keys):
    folders, mounts = pod
    step = render_step({
        "references": ["registry.example.com/ns/a:1"], "digests": [D1],
        "images": [f"registry.example.com/ns/b:2@{D2}"],
        "signing-keys": [gpg_keys.a], "task-id": "3f0c-uid",
        "config": f"gpg_signer: {{gnupg_home: {gpg_keys.home}}}"}, mounts)
    run = run_step(step)
    assert run.returncode == 0, run.stderr
    results = results_of(folders["results"])
    assert results == {"status": "success", "signed-count": "2", "verified-count": "0",
                       "failed-count": "0",
                       "results-file": "signatures/results.json", "signatures-dir": "signatures"}
    # the paths are relative to the output workspace, where a later Task finds them
    report = json.loads((folders["output"] / results["results-file"]).read_text())
    assert report["summary"]["signed"] == 2 and report["operation"]["task_id"] == "3f0c-uid"
    for entry in report["images"]:
        sig = folders["output"] / results["signatures-dir"] / entry["signature_path"]
        claim, fpr = gpg_decrypt(sig.read_bytes(), gpg_keys.home)
        assert fpr == gpg_keys.a
        critical = json.loads(claim)["critical"]
        assert critical["identity"]["docker-reference"] == entry["reference"]
        assert critical["image"]["docker-manifest-digest"] == entry["digest"]
    assert {e["digest"] for e in report["images"]} == {D1, D2}
    assert not [p for p in folders["results"].iterdir() if p.name.startswith(".")]


def test_a_partial_failure_fails_the_step_and_still_writes_the_results(pod, gpg_keys, tmp_path,
                                                                      gpg_refusing):
    folders, mounts = pod
    wrong = tmp_path / "pass"  # the right one: the key fails mid-run (gpg_refusing)
    wrong.write_text(gpg_keys.passphrase + "\n")
    gpg_keys.forget_passphrases()
    step = render_step({
        "references": ["registry.example.com/ns/a:1", "registry.example.com/ns/b:1"],
        "digests": [D1, D2], "signing-keys": [gpg_keys.a, gpg_keys.protected],
        "config": f"gpg_signer: {{gnupg_home: {gpg_keys.home}, passphrase_file: {wrong}}}"},
        mounts)
    run = run_step(step, timeout=120, extra_env=gpg_refusing(gpg_keys.protected))
    assert run.returncode == 1, run.stderr  # the TaskRun fails: signing failures are not hidden
    assert results_of(folders["results"]) == {
        "status": "partial", "signed-count": "2", "verified-count": "0", "failed-count": "2",
        "results-file": "signatures/results.json", "signatures-dir": "signatures"}


def test_invalid_input_is_a_result_too(pod):
    folders, mounts = pod
    run = run_step(render_step({"log-level": "loud"}, mounts))
    assert run.returncode == 2
    assert run.stderr.startswith("error: input 'log-level': 'loud' is not one of")
    assert results_of(folders["results"])["status"] == "invalid-input"
    assert list(folders["output"].iterdir()) == []


def test_a_bad_values_name_is_invalid_input_and_reported():
    with pytest.raises(InputError, match=r"^--values: 'reference' is not a list option"):
        parse_inputs(["--values", "reference", "r.io/a:1"], {})
    with pytest.raises(InputError, match=r"^--values: expected a list option name"):
        parse_inputs(["--values"], {})


# -- uid 1001, as the securityContext says -----------------------------------------------------

def _can_run_as_1001() -> str | None:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return "needs root and setpriv to switch to uid 1001"
    python = "/usr/bin/python3"
    if not os.path.exists(python) or subprocess.run(
            [python, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 11))"]).returncode:
        return "needs a Python 3.11 that uid 1001 can run at /usr/bin/python3"
    return None


@pytest.mark.skipif(_can_run_as_1001() is not None, reason=str(_can_run_as_1001()))
def test_signing_as_uid_1001_with_home_on_the_emptydir(gpg_keys):
    """The step as Kubernetes starts it: uid 1001 and no home in the image, HOME on the emptyDir
    (mode 0777, as Kubernetes makes it), results in /tekton/results (also 0777), the output
    workspace writable through the fsGroup (group 1001, setgid). GnuPG finds its home under HOME,
    a copy of the test keys owned by 1001."""
    base = Path(tempfile.mkdtemp(prefix="csa-tekton-"))  # pytest's tmp_path is root-only
    try:
        os.chmod(base, 0o755)
        folders = {n: base / n for n in ("output", "results", "home")}
        for name, folder in folders.items():
            folder.mkdir()
            os.chmod(folder, 0o777 if name != "output" else 0o2770)
        os.chown(folders["output"], 0, 1001)
        gnupg = folders["home"] / ".gnupg"
        shutil.copytree(gpg_keys.home, gnupg,
                        ignore=shutil.ignore_patterns("S.*", "*.lock", ".#*"))
        for path in [gnupg, *gnupg.rglob("*")]:
            os.chown(path, 1001, 1001)
        ws = {w["name"]: w.get("mountPath", f"/workspace/{w['name']}") for w in SPEC["workspaces"]}
        mounts = {ws["output"]: folders["output"], RESULTS_DIR: folders["results"],
                  STEP["volumeMounts"][0]["mountPath"]: folders["home"]}
        step = render_step({"references": ["registry.example.com/ns/a:1"], "digests": [D1],
                            "signing-keys": [gpg_keys.a]}, mounts)

        def as_1001():
            os.setgroups([])
            os.setgid(1001)
            os.setuid(1001)

        purelib = sysconfig.get_paths()["purelib"]  # this venv's packages, readable by anyone
        run = run_step(step, python="/usr/bin/python3", preexec=as_1001,
                       extra_env={"PYTHONPATH": purelib})
        assert run.returncode == 0, run.stderr
        results = results_of(folders["results"])
        assert results["status"] == "success" and results["signed-count"] == "1"
        sig_owner = {p.stat().st_uid for p in folders["output"].rglob("signature-*")}
        assert sig_owner == {1001}
        assert {p.stat().st_uid for p in folders["results"].iterdir()} == {1001}
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in folders["results"].iterdir())
    finally:
        subprocess.run(["gpgconf", "--homedir", str(base / "home" / ".gnupg"), "--kill", "all"],
                       preexec_fn=lambda: os.setuid(1001), check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


# -- results outside a step, and their size --------------------------------------------------

def test_outside_tekton_nothing_tekton_is_written(tmp_path, gpg_keys):
    assert not os.path.exists(RESULTS_DIR)  # this machine is no Tekton step
    assert not TektonResults.find([], {}).active
    assert not TektonResults.find([], {}, default=str(tmp_path / "absent")).active
    (tmp_path / "a-file").write_text("")
    assert not TektonResults.find([], {}, default=str(tmp_path / "a-file")).active
    work = tmp_path / "work"
    work.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    proc = subprocess.run([sys.executable, str(ENTRYPOINT), "--reference", "r.io/ns/a:1",
                           "--digest", D1, "--signing-key", gpg_keys.a, "--config",
                           f"gpg_signer: {{gnupg_home: {gpg_keys.home}}}"],
                          env=base, cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(work)) == ["signatures"]
    assert "results.json" in os.listdir(work / "signatures")
    assert not any(name in os.listdir(work / "signatures") for name in NAMES)


def test_the_folder_is_detected_requested_or_absent(tmp_path):
    detected = tmp_path / "tekton-results"
    detected.mkdir()
    assert TektonResults.find([], {}, default=str(detected)).folder == str(detected)
    assert TektonResults.find(["--tekton-results", "x"], {}, default=str(detected)).folder == "x"
    assert TektonResults.find([], {"INPUT_TEKTON_RESULTS": "y"}).folder == "y"
    assert TektonResults.find(["--tekton-results", ""], {}, default=str(detected)).active
    # invalid input (a flag where the folder should be) is reported where Tekton looks
    bad = ["--tekton-results", "--reference", "r.io/a:1"]
    with pytest.raises(InputError):
        parse_inputs(bad, {})
    assert TektonResults.find(bad, {}, default=str(detected)).folder == str(detected)


@pytest.mark.parametrize("argv,environ", [
    ([], {}),
    (["--tekton-results", "a"], {}),
    (["--tekton-results=a", "--tekton-results", "b"], {}),
    ([], {"INPUT_TEKTON-RESULTS": "e"}),
    ([], {"INPUT_TEKTON_RESULTS": " u "}),
    ([], {"INPUT_TEKTON-RESULTS": "  ", "INPUT_TEKTON_RESULTS": "u"}),
    (["--tekton-results", "f"], {"INPUT_TEKTON_RESULTS": "e"}),
    (["--reference", "--tekton-results", "--tekton-results", "g"], {}),
    (["--tekton-results", "h", "--values", "references", "--tekton-results", "i"], {}),
])
def test_the_folder_is_read_as_parse_inputs_reads_it(argv, environ):
    """Read before parsing, so that invalid input is reported too; the same answer."""
    assert requested_folder(argv, environ) == parse_inputs(argv, environ).tekton_results


def test_results_are_written_whole_exactly_and_atomically(tmp_path):
    folder = tmp_path / "r"
    TektonResults(str(folder)).write({"status": "success", "signed-count": "3",
                                      "failed-count": "0", "results-file": "s/results.json",
                                      "signatures-dir": "s", "something-else": "x"})
    assert results_of(folder) == {"status": "success", "signed-count": "3", "verified-count": "",
                                  "failed-count": "0", "results-file": "s/results.json",
                                  "signatures-dir": "s"}
    TektonResults(str(folder)).write({"status": "dry-run"})  # replaced, all still declared
    assert results_of(folder)["status"] == "dry-run" and results_of(folder)["results-file"] == ""
    assert sorted(os.listdir(folder)) == sorted(NAMES)  # no temporary file left behind


def test_a_results_folder_that_cannot_be_written_is_a_warning(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    TektonResults(str(tmp_path / "file" / "r")).write({"status": "success"})
    assert "warning: Tekton results not written" in capsys.readouterr().err


def test_results_stay_small_for_10000_images_and_absurd_paths(capsys):
    big = {"status": "partial", "signed-count": "10000", "failed-count": "10000",
           "results-file": "signatures/results.json", "signatures-dir": "signatures"}
    assert fit(big) == big and message_size(big) < 300
    absurd = dict(big, **{"results-file": "<&>" * 400 + "/results.json",
                          "signatures-dir": "\u00e9\n" * 600})
    fitted = fit(absurd)
    assert message_size(fitted) <= BUDGET
    assert fitted["status"] == "partial" and fitted["failed-count"] == "10000"
    assert fitted["results-file"] == ""  # blanked, with a warning, rather than failing the run
    assert "too long for Tekton" in capsys.readouterr().err
    # the size estimate is Go's encoding/json: <, > and & take six bytes each
    assert message_size({"k": "<"}) == len('[{"key":"k","value":"\\u003c","type":1}]')


def test_values_are_linear_and_never_flags():
    argv = ["--signing-key", "K", "--values", "references",
            *[f"r.io/a:{n}" for n in range(20_000)], "--dry-run", "--values", "digests",
            *[f"sha256:{n:064x}" for n in range(20_000)]]
    start = time.monotonic()
    inputs = parse_inputs(argv, {})
    assert time.monotonic() - start < 5
    assert len(inputs.references) == 20_001 and inputs.references[-1] == "--dry-run"
    assert len(inputs.digests) == 20_000 and inputs.dry_run is False
    same = parse_inputs(["--reference", "r.io/a:1", "--values", "references", "r.io/b:1"], {})
    assert same.references == ("r.io/a:1", "r.io/b:1") and same.origin["references"] == "flag"
    empty = parse_inputs(["--values", "references", "--values", "digests"],
                         {"INPUT_REFERENCES": "r.io/env:1"})
    assert empty.references == ("r.io/env:1",) and empty.origin["references"] == "input"
