"""The cluster files of a real run, consumed as their runtimes would: the files a MachineConfig
installs are decoded from its data URLs into a root and skopeo runs with exactly those (CRI-O
reads the same policy.json and registries.d through containers/image); the CoCo security
policy's kbs:// key paths are mapped to the KBS resource files, and skopeo runs with that
policy. Each accepts what the run signed and refuses the same image when the installed key is
another one. gpg: bookworm's skopeo; cosign: skopeo 1.18 (sigstoreSigned).

The only changes made to the decoded files: a path prefix (/etc/pki/... into the temp root;
kbs:///... to the resource folder) and the lookaside placeholder to where this run's
signatures are (a file:// URL); each test checks that mapping back gives the files as
written."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import make_image, run_entrypoint
from infra.sigstore import cosign_keypair, push_index, skopeo_copy_all
from signaction.consumers import PLACEHOLDER
from test_consumers import machine_config_files

PASSWORD = "consumers"
REGISTRIES_D = "/etc/containers/registries.d/container-sign-action.yaml"


def map_prefix(text: str, old: str, new: str) -> str:
    mapped = text.replace(old, new)
    assert mapped.replace(new, old) == text  # the mapping is the only change, and reversible
    return mapped


def install(root: Path, files: dict[str, bytes], lookaside: dict[str, str]) -> tuple[Path, Path]:
    """The MachineConfig's files below ``root``; the policy's /etc/pki paths and the
    lookaside placeholder mapped by prefix. Returns (policy.json, registries.d folder)."""
    for path, data in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    policy = root / "etc/containers/policy.json"
    policy.write_text(map_prefix(policy.read_text(), '"/etc/pki/', f'"{root}/etc/pki/'))
    regd = root / REGISTRIES_D.lstrip("/")
    text = regd.read_text()
    for placeholder, url in lookaside.items():
        text = map_prefix(text, placeholder, url)
    regd.write_text(text)
    return policy, regd.parent


def coco_policy(folder: Path, dest: Path) -> tuple[Path, dict[str, Path]]:
    """The CoCo security policy with each kbs:///default/... key path mapped to its resource
    file; returns it and the resources by kbs path."""
    kbs = folder / "coco" / "kbs"
    resources = {p.relative_to(kbs).as_posix(): p for p in kbs.rglob("*") if p.is_file()}
    (policy_path,) = [p for p in resources if p.startswith("default/security-policy/")]
    text = resources[policy_path].read_text()
    rules = [r for rules in json.loads(text)["transports"]["docker"].values() for r in rules]
    assert all(r["keyPath"].removeprefix("kbs:///") in resources for r in rules)
    dest.write_text(map_prefix(text, '"kbs:///', f'"{kbs}/'))
    return dest, resources


def skopeo(policy: Path, regd: Path, image: str, dest: Path,
           binary: str = "skopeo") -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, "--policy", str(policy), "--registries.d", str(regd), "copy", "--quiet",
         "--src-tls-verify=false", f"docker://{image}", f"dir:{dest}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def export(gpg_keys, fingerprint: str) -> bytes:
    return subprocess.run(["gpg", "--export", fingerprint], env={**os.environ, **gpg_keys.env()},
                          check=True, capture_output=True).stdout


def test_gpg_machine_config_and_coco_files_verify_with_skopeo(tmp_path, registry, gpg_keys):
    digest = registry.push(make_image(tmp_path / "img", "consumers gpg"), "consumers/app", "v1")
    image = f"{registry.host}/consumers/app:v1"
    out = tmp_path / "out"
    run = run_entrypoint("--signer", "gpg", "--signing-key", gpg_keys.a, "--task-id", "t",
                         "--output-dir", str(out), "--reference", image, "--digest", digest,
                         env=gpg_keys.env())
    assert run.returncode == 0, run.stderr
    folder = out / "verification"
    folder_name = registry.host.replace(":", "_")
    lookaside = {PLACEHOLDER.replace("{registry}", folder_name):
                 (out / "lookaside" / folder_name).resolve().as_uri()}
    files = machine_config_files(folder)
    policy, regd = install(tmp_path / "root", files, lookaside)
    assert skopeo(policy, regd, image, tmp_path / "p1").returncode == 0
    (rule,) = json.loads(policy.read_text())["transports"]["docker"][image.rsplit(":", 1)[0]]
    Path(rule["keyPath"]).write_bytes(export(gpg_keys, gpg_keys.b))  # the file it names
    refused = skopeo(policy, regd, image, tmp_path / "p2")
    assert refused.returncode != 0 and "signature" in refused.stderr.lower()

    # CoCo: the security policy, its keys by kbs:// path, and the sigstore config (image-rs's
    # registries.d) from the KBS resources
    coco, resources = coco_policy(folder, tmp_path / "coco-policy.json")
    (config,) = [p for name, p in resources.items() if name.startswith("default/sigstore-config/")]
    (tmp_path / "coco-regd").mkdir()
    (tmp_path / "coco-regd" / "sigstore.yaml").write_text(
        map_prefix(config.read_text(), *next(iter(lookaside.items()))))
    assert skopeo(coco, tmp_path / "coco-regd", image, tmp_path / "p3").returncode == 0
    (gpg_key,) = [p for name, p in resources.items() if name.startswith("default/gpg-public-key/")]
    gpg_key.write_bytes(export(gpg_keys, gpg_keys.b))
    assert skopeo(coco, tmp_path / "coco-regd", image, tmp_path / "p4").returncode != 0


def test_cosign_machine_config_and_coco_files_verify_with_skopeo(tmp_path, registry,
                                                                  trixie_tools):
    key, _ = cosign_keypair(tmp_path, PASSWORD, tools=trixie_tools)
    _, other = cosign_keypair(tmp_path, "x", name="other", tools=trixie_tools)
    image = push_index(registry.host, "consumers/cosign", "v1", tmp_path, content="consumers")
    (tmp_path / "conf.yaml").write_text(
        "cosign_signer: {allow_http_registry: true, upload_tlog: false}\n")
    env = {**trixie_tools.cosign_env(PASSWORD),
           "PATH": f"{trixie_tools.cosign.parent}:{os.environ['PATH']}"}
    run = run_entrypoint("--signer", "cosign", "--config-file", str(tmp_path / "conf.yaml"),
                         "--task-id", "t", "--output-dir", str(tmp_path / "out"),
                         "--image", f"{image.by_tag}@{image.digest}", "--signing-key", str(key),
                         env=env)
    assert run.returncode == 0, run.stderr
    folder = tmp_path / "out" / "verification"
    files = machine_config_files(folder)
    assert yaml.safe_load(files[REGISTRIES_D]) == {
        "docker": {registry.host: {"use-sigstore-attachments": True}}}
    policy, regd = install(tmp_path / "root", files, {})
    copy = skopeo_copy_all  # every platform, as a node pulling any of them checks it
    assert copy(trixie_tools, policy, regd, image.by_tag, tmp_path / "p1").returncode == 0, \
        policy.read_text()
    (installed,) = (tmp_path / "root/etc/pki/containers/container-sign-action").iterdir()
    installed.write_bytes(other.read_bytes())
    refused = copy(trixie_tools, policy, regd, image.by_tag, tmp_path / "p2")
    assert refused.returncode != 0 and "signature" in refused.stderr.lower()

    coco, resources = coco_policy(folder, tmp_path / "coco-policy.json")
    assert copy(trixie_tools, coco, regd, image.by_tag, tmp_path / "p3").returncode == 0
    (cosign_key,) = [p for n, p in resources.items() if n.startswith("default/cosign-public-key/")]
    cosign_key.write_bytes(other.read_bytes())
    assert copy(trixie_tools, coco, regd, image.by_tag, tmp_path / "p4").returncode != 0


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    from testbed.sigstore import Sigstore

    with Sigstore(tmp_path_factory.mktemp("sigstore")) as testbed:
        yield testbed


def test_keyless_and_rekor_roots_installed_by_the_machine_config_verify_with_skopeo(
        tmp_path, registry, trixie_tools, bed):
    """A keyless (email) signature and a key one, both logged in a private Rekor: the node gets
    the Fulcio root and the Rekor key under /etc/pki, and skopeo checks both with them."""
    from test_cosign_keyless import EMAIL, ambient, conf, other_key, sign

    key, _ = cosign_keypair(tmp_path, "correct horse battery staple", tools=trixie_tools)
    image = push_index(registry.host, "consumers/keyless", "v1", tmp_path, content="keyless")
    run = sign(tmp_path, trixie_tools, conf(bed), "--image", f"{image.by_tag}@{image.digest}",
               "--signing-key", "keyless", "--signing-key", str(key), env=ambient(bed, EMAIL))
    assert run.returncode == 0, run.stderr
    folder = tmp_path / "out" / "verification"
    files = machine_config_files(folder)
    pki = "/etc/pki/containers/container-sign-action"
    rekor = Path(bed.env["SIGSTORE_REKOR_PUBLIC_KEY"]).read_bytes()
    assert files[f"{pki}/rekor.pub"] == rekor
    assert files[f"{pki}/fulcio_root.pem"] == Path(bed.env["SIGSTORE_ROOT_FILE"]).read_bytes()
    policy, regd = install(tmp_path / "root", files, {})
    ok = skopeo_copy_all(trixie_tools, policy, regd, image.by_tag, tmp_path / "p1")
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "root" / pki.lstrip("/") / "rekor.pub").write_bytes(
        other_key(tmp_path).read_bytes())
    refused = skopeo_copy_all(trixie_tools, policy, regd, image.by_tag, tmp_path / "p2")
    assert refused.returncode != 0 and "Rekor" in refused.stderr, refused.stderr

    # the same roots and identity in the cluster policies
    objects = list(yaml.safe_load_all((folder / "openshift" / "clusterimagepolicy.yaml")
                                      .read_text()))
    fulcio = [o["spec"]["policy"]["rootOfTrust"] for o in objects
              if o["spec"]["policy"]["rootOfTrust"]["policyType"] == "FulcioCAWithRekor"]
    assert [f["fulcioCAWithRekor"]["fulcioSubject"] for f in fulcio] == [
        {"oidcIssuer": bed.env["OIDC_ISSUER"], "signedEmail": EMAIL}]
    admission = list(yaml.safe_load_all((folder / "kubernetes" / "clusterimagepolicy.yaml")
                                        .read_text()))
    assert [a["keyless"]["identities"] for o in admission for a in o["spec"]["authorities"]
            if "keyless" in a] == [[{"issuer": bed.env["OIDC_ISSUER"], "subject": EMAIL}]]


def test_the_lookaside_url_given_to_the_run_is_the_one_the_cluster_files_name(
        tmp_path, registry, gpg_keys):
    """--lookaside-url (where the signatures will be published; here: this run's own tree)
    goes into the cluster files as it is: skopeo accepts with them unchanged."""
    digest = registry.push(make_image(tmp_path / "img", "consumers url"), "consumers/url", "v1")
    image = f"{registry.host}/consumers/url:v1"
    out = tmp_path / "out"
    url = f"{(out / 'lookaside').resolve().as_uri()}/{{registry}}"
    run = run_entrypoint("--signer", "gpg", "--signing-key", gpg_keys.a, "--task-id", "t",
                         "--output-dir", str(out), "--reference", image, "--digest", digest,
                         "--lookaside-url", url, env=gpg_keys.env())
    assert run.returncode == 0, run.stderr
    files = machine_config_files(out / "verification")
    assert not any(PLACEHOLDER.split("{")[0].encode() in data for data in files.values())
    policy, regd = install(tmp_path / "root", files, {})
    assert skopeo(policy, regd, image, tmp_path / "p1").returncode == 0
