"""The cluster files of verification/ (signaction.consumers), checked for what their runtimes
require: kinds, apiVersions, required fields and formats, with the field names of the
published schemas:

- MachineConfig: openshift/api machineconfiguration/v1/types.go (MachineConfig, spec.config)
  and zz_generated.crd-manifests/0000_80_machine-config_01_machineconfigs.crd.yaml; its
  Ignition 3.x config: coreos/ignition config/v3_2/schema/ignition.json (ignition.version,
  storage.files[].path, mode, overwrite, contents.source).
- OpenShift ClusterImagePolicy: openshift/api config/v1/
  zz_generated.crd-manifests/0000_10_config-operator_01_clusterimagepolicies.crd.yaml
  (spec.scopes maxItems 256; spec.policy.rootOfTrust.policyType PublicKey/FulcioCAWithRekor,
  publicKey.keyData, fulcioCAWithRekor.fulcioCAData/rekorKeyData/fulcioSubject).
- policy-controller ClusterImagePolicy: sigstore/policy-controller
  pkg/apis/policy/v1beta1/clusterimagepolicy_types.go (spec.images[].glob, authorities[].key.
  data, keyless.identities[].issuer/subject, keyless.ca-cert, ctlog.url), globs as
  pkg/apis/glob/glob.go accepts them.
- CoCo: guest-components attestation-agent/docs/RESOURCE_URI.md (kbs:///<repo>/<type>/<tag>),
  attestation-agent/kbc/src/offline_fs_kbc/README.md (the resources file: resource path ->
  base64), image-rs/src/signature/policy/mod.rs (CosignParameters: keyPath/keyData only), and
  the older resources file's names in the seed (Policy, Cosign Key).

Pure logic: the files are made by Artifacts.write_verification from a format's Verification,
as a run makes them; the skopeo checks are in test_consumers_integration.py.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from signaction import consumers
from signaction.artifacts import Artifacts
from signaction.consumers import PLACEHOLDER, relocate
from signers.cosign import CosignFormat
from signers.lookaside import LookasideFormat

PEM1 = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQone\n-----END PUBLIC KEY-----\n"
PEM2 = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQtwo\n-----END PUBLIC KEY-----\n"
CA = b"-----BEGIN CERTIFICATE-----\nMIIBfulcio\n-----END CERTIFICATE-----\n"
REKOR = b"-----BEGIN PUBLIC KEY-----\nMFkwrekor\n-----END PUBLIC KEY-----\n"
KEYRING = b"\x99\x01\x0dkeyring"
# DNS-1123 subdomain (Kubernetes object names)
DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
GLOB = re.compile(r"^[a-zA-Z0-9-_:\/\*\.@]+$")  # policy-controller's validGlob
ROLE = "machineconfiguration.openshift.io/role"


def gpg_folder(tmp_path: Path, repos=("r.io/ns/app", "r.io:5000/x/y"), keys=KEYRING,
               lookaside_url=None) -> Path:
    art = Artifacts(tmp_path / "out")
    hosts = sorted({r.split("/")[0] for r in repos})
    return art.write_verification(repos, LookasideFormat().verification(art, hosts, keys),
                                  lookaside_url=lookaside_url)


def cosign_folder(tmp_path: Path, repos=("r.io/ns/app",), roots=True, tlog=True) -> Path:
    art = Artifacts(tmp_path / "out")
    fmt = CosignFormat(tlog=tlog, roots={"fulcio_root_file": CA, "rekor_public_key_file": REKOR}
                       if roots else {})
    fmt.keyless = True
    fmt.identities[("me@example.com", "https://issuer.example")].append("r.io/ns/app@x")
    fmt.identities[("https://github.com/o/r/.github/workflows/w.yml@refs/tags/v1",
                    "https://token.actions.githubusercontent.com")].append("r.io/ns/app@x")
    hosts = sorted({r.split("/")[0] for r in repos})
    return art.write_verification(repos, fmt.verification(art, hosts, PEM1 + PEM2))


def docs(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


def data_url(source: str) -> bytes:
    """RFC 2397, as Ignition reads contents.source."""
    assert source.startswith("data:")
    header, _, data = source[5:].partition(",")
    assert header.endswith(";base64")
    return base64.b64decode(data, validate=True)


def machine_config_files(folder: Path, pool: str = "worker") -> dict[str, bytes]:
    (mc,) = docs(folder / "openshift" / f"51-{pool}-container-sign-action.yaml")
    assert mc["apiVersion"] == "machineconfiguration.openshift.io/v1"
    assert mc["kind"] == "MachineConfig"
    assert DNS1123.fullmatch(mc["metadata"]["name"])
    assert mc["metadata"]["labels"] == {ROLE: pool}
    config = mc["spec"]["config"]
    assert set(config) == {"ignition", "storage"}
    assert re.fullmatch(r"3\.[0-4]\.0", config["ignition"]["version"])  # what the MCO reads
    out = {}
    for entry in config["storage"]["files"]:
        assert set(entry) == {"path", "mode", "overwrite", "contents"}
        assert entry["path"].startswith(("/etc/containers/", "/etc/pki/"))
        assert entry["mode"] == 0o644 and entry["overwrite"] is True
        out[entry["path"]] = data_url(entry["contents"]["source"])
    return out


def test_a_gpg_run_gets_machine_configs_for_both_pools_installing_policy_keys_and_lookaside(
        tmp_path):
    folder = gpg_folder(tmp_path)
    files = machine_config_files(folder, "worker")
    assert files == machine_config_files(folder, "master")
    key = "/etc/pki/containers/container-sign-action/signing-keys.gpg"
    assert files[key] == KEYRING
    policy = json.loads(files["/etc/containers/policy.json"])
    assert policy == json.loads((folder / "openshift" / "policy.json").read_text())
    # the node's default stays (the cluster keeps pulling its own images); the signed
    # repositories need the key, named where it is installed: only that differs
    assert policy["default"] == [{"type": "insecureAcceptAnything"}]
    ours = json.loads((folder / "policy.json").read_text())["transports"]["docker"]
    node = policy["transports"]["docker"]
    assert set(node) == set(ours) == {"r.io/ns/app", "r.io:5000/x/y"}
    for repo, (rule,) in node.items():
        (mine,) = ours[repo]
        assert rule.pop("keyPath") == key and base64.b64decode(mine.pop("keyData")) == KEYRING
        assert rule == mine
    regd = yaml.safe_load(files["/etc/containers/registries.d/container-sign-action.yaml"])
    assert regd == {"docker": {
        "r.io": {"lookaside": PLACEHOLDER.replace("{registry}", "r.io")},
        "r.io:5000": {"lookaside": PLACEHOLDER.replace("{registry}", "r.io_5000")}}}
    assert not (folder / "openshift" / "clusterimagepolicy.yaml").exists()
    assert not (folder / "kubernetes").exists()  # no admission controller checks GPG
    readme = (folder / "README.md").read_text()
    assert "No admission controller checks GPG" in readme and "placeholder" in readme


def test_the_lookaside_url_when_given_is_where_the_cluster_looks(tmp_path):
    folder = gpg_folder(tmp_path, lookaside_url="https://sigs.example.com/{registry}")
    regd = yaml.safe_load(machine_config_files(folder)[
        "/etc/containers/registries.d/container-sign-action.yaml"])
    assert regd["docker"]["r.io:5000"] == {"lookaside": "https://sigs.example.com/r.io_5000"}
    # the run's own registries.d still points at this folder, for skopeo here
    assert "file://" in (folder / "registries.d" / "container-sign-action.yaml").read_text()


def test_cosign_openshift_cluster_image_policies(tmp_path):
    folder = cosign_folder(tmp_path)
    objects = docs(folder / "openshift" / "clusterimagepolicy.yaml")
    # one per key and per email identity (a policy has one root of trust); the URI identity
    # is not there: OpenShift's fulcioSubject names an email only
    assert [o["spec"]["policy"]["rootOfTrust"]["policyType"] for o in objects] == \
        ["PublicKey", "PublicKey", "FulcioCAWithRekor"]
    for o in objects:
        assert o["apiVersion"] == "config.openshift.io/v1" and o["kind"] == "ClusterImagePolicy"
        assert DNS1123.fullmatch(o["metadata"]["name"]) and len(o["metadata"]["name"]) <= 253
        assert o["spec"]["scopes"] == ["r.io/ns/app"]
        assert o["spec"]["policy"]["signedIdentity"] == {"matchPolicy": "MatchRepoDigestOrExact"}
    assert len({o["metadata"]["name"] for o in objects}) == 3
    keys = [base64.b64decode(o["spec"]["policy"]["rootOfTrust"]["publicKey"]["keyData"])
            for o in objects[:2]]
    assert keys == [PEM1, PEM2]
    assert all(base64.b64decode(o["spec"]["policy"]["rootOfTrust"]["publicKey"]["rekorKeyData"])
               == REKOR for o in objects[:2])
    fulcio = objects[2]["spec"]["policy"]["rootOfTrust"]["fulcioCAWithRekor"]
    assert set(fulcio) == {"fulcioCAData", "rekorKeyData", "fulcioSubject"}
    assert base64.b64decode(fulcio["fulcioCAData"]) == CA
    assert fulcio["fulcioSubject"] == {"oidcIssuer": "https://issuer.example",
                                       "signedEmail": "me@example.com"}


def test_more_than_256_repositories_are_split_across_policies(tmp_path):
    repos = [f"r.io/ns/app{n}" for n in range(300)]
    objects = docs(cosign_folder(tmp_path, repos, roots=False, tlog=False)
                   / "openshift" / "clusterimagepolicy.yaml")
    assert [len(o["spec"]["scopes"]) for o in objects] == [256, 44, 256, 44]
    assert sorted(s for o in objects[:2] for s in o["spec"]["scopes"]) == sorted(repos)


def test_cosign_policy_controller_policies(tmp_path):
    objects = docs(cosign_folder(tmp_path) / "kubernetes" / "clusterimagepolicy.yaml")
    for o in objects:
        assert o["apiVersion"] == "policy.sigstore.dev/v1beta1"
        assert o["kind"] == "ClusterImagePolicy" and DNS1123.fullmatch(o["metadata"]["name"])
        assert o["spec"]["images"] == [{"glob": "r.io/ns/app:**"}, {"glob": "r.io/ns/app@**"}]
        assert all(GLOB.match(g["glob"]) for g in o["spec"]["images"])
        # one authority per policy: every matching policy must be satisfied, one authority
        # of each (pkg/webhook/validator.go), as policy.json requires every key
        assert len(o["spec"]["authorities"]) == 1
    authorities = [o["spec"]["authorities"][0] for o in objects]
    assert [a["key"]["data"].encode() for a in authorities[:2]] == [PEM1, PEM2]
    assert all(a["key"]["hashAlgorithm"] == "sha256" for a in authorities[:2])
    # every identity, the URI too (policy-controller matches any SAN)
    assert [a["keyless"]["identities"] for a in authorities[2:]] == [
        [{"issuer": "https://token.actions.githubusercontent.com",
          "subject": "https://github.com/o/r/.github/workflows/w.yml@refs/tags/v1"}],
        [{"issuer": "https://issuer.example", "subject": "me@example.com"}]]
    assert all(a["keyless"]["ca-cert"]["data"].encode() == CA for a in authorities[2:])


def test_the_public_rekor_is_required_where_the_signatures_were_logged_there(tmp_path):
    objects = docs(cosign_folder(tmp_path, roots=False) / "kubernetes" / "clusterimagepolicy.yaml")
    key = objects[0]["spec"]["authorities"][0]
    assert key["ctlog"] == {"url": "https://rekor.sigstore.dev"}
    assert "ca-cert" not in objects[2]["spec"]["authorities"][0]["keyless"]
    # without the public Sigstore's roots no FulcioCAWithRekor can be written
    openshift = docs(tmp_path / "out" / "verification" / "openshift" / "clusterimagepolicy.yaml")
    assert [o["spec"]["policy"]["rootOfTrust"]["policyType"] for o in openshift] == \
        ["PublicKey", "PublicKey"]


def resources(folder: Path) -> dict[str, bytes]:
    coco = folder / "coco"
    files = {p.relative_to(coco / "kbs").as_posix(): p.read_bytes()
             for p in (coco / "kbs").rglob("*") if p.is_file()}
    offline = json.loads((coco / "aa-offline_fs_kbc-resources.json").read_text())
    assert {k: base64.b64decode(v) for k, v in offline.items()} == files
    return files


def test_coco_gpg_resources(tmp_path):
    files = resources(gpg_folder(tmp_path))
    (policy_path,) = [p for p in files if p.startswith("default/security-policy/")]
    tag = policy_path.rsplit("/", 1)[1]
    assert DNS1123.fullmatch(tag)
    policy = json.loads(files[policy_path])
    assert policy["default"] == [{"type": "reject"}]
    for (rule,) in policy["transports"]["docker"].values():
        assert rule["keyPath"].startswith("kbs:///default/gpg-public-key/")
        assert files[rule["keyPath"].removeprefix("kbs:///")] == KEYRING
    # image-rs reads a registries.d under its older key name, "sigstore"
    config = yaml.safe_load(files[f"default/sigstore-config/{tag}"])
    assert config["docker"]["r.io"] == {"sigstore": PLACEHOLDER.replace("{registry}", "r.io")}
    legacy = json.loads((tmp_path / "out/verification/coco/"
                         "aa-offline_fs_kbc-resources-legacy.json").read_text())
    assert set(legacy) == {"Policy", "GPG Keyring", "Sigstore Config"}
    assert base64.b64decode(legacy["GPG Keyring"]) == KEYRING
    rules = json.loads(base64.b64decode(legacy["Policy"]))["transports"]["docker"]["r.io/ns/app"]
    assert rules[0]["keyPath"] == "/run/image-security/simple_signing/pubkey.gpg"


def test_coco_cosign_resources_name_each_key_and_leave_out_what_image_rs_cannot_check(tmp_path):
    folder = cosign_folder(tmp_path)
    files = resources(folder)
    (policy_path,) = [p for p in files if p.startswith("default/security-policy/")]
    rules = json.loads(files[policy_path])["transports"]["docker"]["r.io/ns/app"]
    # the two keys; not the keyless rule, nor Rekor: image-rs has keyPath/keyData only
    assert [files[r["keyPath"].removeprefix("kbs:///")] for r in rules] == [PEM1, PEM2]
    assert all(set(r) == {"type", "keyPath", "signedIdentity"} for r in rules)
    # the older form has one "Cosign Key": two keys cannot be said in it
    assert not (folder / "coco" / "aa-offline_fs_kbc-resources-legacy.json").exists()


def test_a_cosign_run_with_one_key_gets_the_seeds_older_resources_file(tmp_path):
    art = Artifacts(tmp_path / "out")
    folder = art.write_verification(["example.org/test"], CosignFormat().verification(
        art, ["example.org"], PEM1))
    legacy = json.loads((folder / "coco" / "aa-offline_fs_kbc-resources-legacy.json").read_text())
    assert set(legacy) == {"Policy", "Cosign Key"}
    assert base64.b64decode(legacy["Cosign Key"]) == PEM1
    policy = json.loads(base64.b64decode(legacy["Policy"]))
    assert policy["transports"]["docker"]["example.org/test"][0]["keyPath"] == \
        "/run/image-security/cosign/cosign.pub"


@pytest.mark.parametrize("repo", ['r.io/a"b: [c]', "r.io/x\n- y: z", "r.io/{{x}}#&*!"])
def test_hostile_names_stay_data_and_object_names_stay_valid(tmp_path, repo):
    folder = cosign_folder(tmp_path, (repo,), roots=False, tlog=False)
    for path in ("openshift/clusterimagepolicy.yaml", "kubernetes/clusterimagepolicy.yaml"):
        for o in docs(folder / path):
            assert DNS1123.fullmatch(o["metadata"]["name"])
            assert repo in (o["spec"].get("scopes") or
                            [g["glob"][:-3] for g in o["spec"]["images"]])
    files = machine_config_files(folder)
    assert list(json.loads(files["/etc/containers/policy.json"])["transports"]["docker"]) == [repo]


def test_relocate_names_every_key_by_its_new_place_and_nothing_else_changes():
    requirement = [{"type": "sigstoreSigned", "keyData": base64.b64encode(PEM1).decode(),
                    "rekorPublicKeyPath": "/out/verification/rekor.pub",
                    "signedIdentity": {"type": "matchRepoDigestOrExact"}},
                   {"type": "sigstoreSigned", "fulcio": {
                       "caPath": "/out/verification/fulcio_root.pem", "oidcIssuer": "i",
                       "subjectEmail": "e"}, "rekorPublicKeyPath": "/out/verification/rekor.pub"}]
    rules, keys = relocate(requirement, {"rekor.pub": REKOR}, lambda rule, name: f"/new/{name}")
    assert rules == [{"type": "sigstoreSigned", "keyPath": "/new/cosign-1.pub",
                      "rekorPublicKeyPath": "/new/rekor.pub",
                      "signedIdentity": {"type": "matchRepoDigestOrExact"}},
                     {"type": "sigstoreSigned", "fulcio": {
                         "caPath": "/new/fulcio_root.pem", "oidcIssuer": "i",
                         "subjectEmail": "e"}, "rekorPublicKeyPath": "/new/rekor.pub"}]
    # the Fulcio root this run does not have keeps its name, and is not installed
    assert keys == {"/new/cosign-1.pub": PEM1, "/new/rekor.pub": REKOR}
    assert "keyData" in requirement[0]  # the format's own requirement is left as it was


def test_a_failure_in_the_cluster_files_leaves_podmans_files_whole(tmp_path):
    art = Artifacts(tmp_path / "out")
    fmt = CosignFormat(tlog=True, roots={"fulcio_root_file": b"\xff not a PEM"})
    fmt.identities[("me@example.com", "https://issuer.example")].append("r.io/ns/app@x")
    with pytest.raises(ValueError):
        art.write_verification(["r.io/ns/app"], fmt.verification(art, ["r.io"], PEM1))
    folder = tmp_path / "out" / "verification"
    assert json.loads((folder / "policy.json").read_text())["transports"]["docker"]
    assert (folder / "README.md").read_text().startswith("# Verifying")


def test_the_cluster_files_do_not_depend_on_where_the_output_folder_is(tmp_path):
    """Shards of one plan write them in different folders; merge requires them alike."""
    def cluster_files(where: Path) -> dict[str, bytes]:
        folder = cosign_folder(where)
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
                if p.is_file() and p.parts[len(folder.parts)] in ("openshift", "kubernetes",
                                                                  "coco")}
    one, two = cluster_files(tmp_path / "a"), cluster_files(tmp_path / "elsewhere")
    assert one == two and len(one) > 5


def yaml_files(folder: Path) -> dict[str, list]:
    return {p.relative_to(folder).as_posix(): docs(p) for p in sorted(folder.rglob("*.yaml"))}


def test_libyamls_emitter_writes_the_same_documents_as_pyyamls_own(tmp_path, monkeypatch):
    """The cluster files are dumped with libyaml's emitter when PyYAML has it (the pure-Python
    one takes seconds per MB of data: URLs); parsed back, both give the same documents."""
    assert consumers._Dumper.__mro__[1] is getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    hostile = ("r.io/ns/app", 'r.io/a"b: [c]', "r.io/x\n- y: z", "r.io/{{x}}#&*!")

    def written() -> dict[str, list]:  # in the same folder each time: podman's files name it
        shutil.rmtree(tmp_path, ignore_errors=True)
        return {**yaml_files(gpg_folder(tmp_path / "gpg", repos=hostile)),
                **{f"cosign/{k}": v for k, v in yaml_files(cosign_folder(
                    tmp_path / "cosign", repos=hostile)).items()}}
    fast = written()
    monkeypatch.setattr(consumers, "_Dumper", consumers._literal_blocks(yaml.SafeDumper))
    pure = written()
    assert fast == pure and len(fast) >= 5
    assert any(o["kind"] == "MachineConfig" for objects in fast.values() for o in objects)


def test_machine_configs_over_one_mib_are_warned_about_once(tmp_path, monkeypatch, caplog):
    gpg_folder(tmp_path / "small")
    assert not [r for r in caplog.records if "MachineConfig" in r.getMessage()]
    monkeypatch.setattr(consumers, "MACHINECONFIG_WARN", 1000)  # a smaller limit, same check
    gpg_folder(tmp_path / "big")
    warned = [r for r in caplog.records if "MachineConfig" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelname == "WARNING"
    assert "will not apply" in warned[0].getMessage()
