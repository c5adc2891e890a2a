"""The verification files for the runtimes past podman: OpenShift/CRI-O, Kubernetes admission
(sigstore policy-controller) and Confidential Containers, made from the same facts as
verification/policy.json (the format's ``Verification``: the requirement, its keys and roots,
each registry's registries.d entry, the keyless identities).

    verification/openshift/policy.json, registries.d/     what the MachineConfigs install
    verification/openshift/51-{worker,master}-container-sign-action.yaml    MachineConfig
    verification/openshift/clusterimagepolicy.yaml        sigstore: config.openshift.io/v1
    verification/kubernetes/clusterimagepolicy.yaml       sigstore: policy.sigstore.dev/v1beta1
    verification/coco/kbs/default/<type>/<tag>            Trustee KBS resources
    verification/coco/aa-offline_fs_kbc-resources.json    the same, for the offline fs KBC
    verification/coco/aa-offline_fs_kbc-resources-legacy.json   its older form (Policy, ...)

Keys are named where each runtime installs them (``/etc/pki/...`` on a node, ``kbs:///...`` in a
guest), never by this run's output folder. Everything from outside (registry and repository
names, identities) goes into JSON and YAML through json.dumps and yaml.safe_dump only; object
names are this module's own (a hash of the facts), so they are valid DNS-1123 names whatever
the input. Where signatures are published (the lookaside) is the user's choice: the run's
``lookaside_url`` when given, else a placeholder under ``.invalid`` that fails closed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO

import yaml

from .formats.lookaside import lookaside_base
from .signing import Store, Verification
from .urls import has_userinfo, without_userinfo

log = logging.getLogger(__name__)

PKI = "/etc/pki/containers/container-sign-action"  # where a node's keys go
NODE_POLICY = "/etc/containers/policy.json"
NODE_REGISTRIES_D = "/etc/containers/registries.d/container-sign-action.yaml"
# A lookaside base nobody can serve (RFC 2606 .invalid): until it is replaced, CRI-O finds no
# signature for the signed repositories and refuses them, and only them.
PLACEHOLDER = "https://lookaside.invalid/replace-with-the-published-lookaside/{registry}"
IGNITION = "3.2.0"
POOLS = ("worker", "master")
MAX_SCOPES = 256  # config.openshift.io/v1 ClusterImagePolicy spec.scopes maxItems
ATTESTATION_NAME = 63  # characters of a policy-controller attestation's name (a DNS label's)
KBS_REPO = "default"
# image-rs's resource types (guest-components attestation-agent/kbc/src/offline_fs_kbc/README.md)
KBS_TYPES = {"signedBy": "gpg-public-key", "sigstoreSigned": "cosign-public-key"}
# the older offline fs KBC's fixed names and the guest paths its policy named keys by
LEGACY = {"signedBy": ("GPG Keyring", "/run/image-security/simple_signing/pubkey.gpg"),
          "sigstoreSigned": ("Cosign Key", "/run/image-security/cosign/cosign.pub")}
# a node's own default policy (containers-common's): images outside the signed repositories
# keep running, as they did before
NODE_DEFAULT = {"default": [{"type": "insecureAcceptAnything"}],
                "transports": {"docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}}}


def write_consumers(artifacts: Store, repositories: list[str], verification: Verification,
                    lookaside_url: str | None = None) -> str:
    """Write the cluster files; return the README section that names them."""
    facts = Facts(repositories, verification, lookaside_url)
    written = []
    if facts.checkable:
        written += _openshift_nodes(artifacts, facts)
        written += _coco(artifacts, facts)
    sigstore = [r for r in facts.requirement if r.get("type") == "sigstoreSigned"]
    if sigstore or verification.identities:
        written += _openshift_sigstore(artifacts, facts, sigstore)
        written += _policy_controller(artifacts, facts, sigstore)
    return _readme(facts, written)


class Facts:
    """What the cluster files are made of, read from a format's Verification."""

    def __init__(self, repositories: list[str], verification: Verification,
                 lookaside_url: str | None):
        self.repositories = sorted(set(repositories))
        self.requirement = verification.requirement
        self.files = verification.files
        self.identities = sorted(set(verification.identities))
        self.public_rekor = verification.public_rekor
        self.bundles = "bundle" in verification.sigstore_formats
        self.legacy = "legacy" in verification.sigstore_formats
        self.predicate_types = tuple(verification.predicate_types)
        # the published lookaside, as nodes will be told it: never with the run's credentials
        if lookaside_url and has_userinfo(lookaside_url):
            log.warning("--lookaside-url holds credentials: the cluster files in verification/ "
                        "name it without them, so nodes need credentials of their own to read "
                        "that lookaside")
            lookaside_url = without_userinfo(lookaside_url)
        self.lookaside_url = lookaside_url
        self.registries = {host: self._published(host, entry)
                           for host, entry in sorted(verification.registries.items())}
        # podman/CRI-O can check something (not only "reject": URI identities)
        self.checkable = any(r.get("type") != "reject" for r in self.requirement)
        # names objects and KBS tags: runs that signed other things never collide, and the
        # same facts give the same names wherever the output folder is (merged shards)
        rules, keys = relocate(self.requirement, self.files, lambda rule, name: name)
        facts = [self.repositories, rules, self.identities,
                 sorted((k, _b64(v)) for k, v in keys.items())]
        if self.predicate_types:  # (a run without attestations keeps the names it had)
            facts.append(list(self.predicate_types))
        digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode())
        self.id = digest.hexdigest()[:10]

    def _published(self, host: str, entry: Mapping[str, Any]) -> dict[str, Any]:
        """``entry`` with its lookaside where consumers will find it, not this folder."""
        entry = dict(entry)
        if "lookaside" in entry:
            entry["lookaside"] = lookaside_base(self.lookaside_url or PLACEHOLDER, host)
        return entry

    def registries_d(self, key: str = "lookaside") -> bytes:
        """The registries.d file; ``key``: ``sigstore`` for image-rs (the older name)."""
        docker = {host: {(key if k == "lookaside" else k): v for k, v in entry.items()}
                  for host, entry in self.registries.items()}
        return yaml.safe_dump({"docker": docker}, sort_keys=True).encode()


def relocate(requirement: list[dict[str, Any]], files: Mapping[str, bytes],
             place: Callable[[dict[str, Any], str], str]) -> tuple[list[dict[str, Any]],
                                                                   dict[str, bytes]]:
    """``requirement`` with every key named by ``place(rule, name)`` instead of given inline
    (keyData) or by its path in the output folder (keyPath, fulcio.caPath,
    rekorPublicKeyPath); returns it and the key files by their new names. A path to a file
    the run does not have (a placeholder, the public Sigstore's roots) keeps its name under
    the new place and is not in the files: the runtime refuses until it is put there."""
    rules, keys = [], {}
    counts: dict[str, int] = {}
    for rule in requirement:
        rule = copy.deepcopy(rule)
        if "keyData" in rule:
            n = counts[rule["type"]] = counts.get(rule["type"], 0) + 1
            name = "signing-keys.gpg" if rule["type"] == "signedBy" else f"cosign-{n}.pub"
            data = base64.b64decode(rule.pop("keyData"))
            rule["keyPath"] = place(rule, name)
            keys[rule["keyPath"]] = data
        for holder, field in ((rule, "keyPath"), (rule.get("fulcio", {}), "caPath"),
                              (rule, "rekorPublicKeyPath")):
            path = holder.get(field)
            if path and path not in keys:
                name = os.path.basename(path)
                holder[field] = place(rule, name)
                if name in files:
                    keys[holder[field]] = files[name]
        rules.append(rule)
    return rules, keys


class Blob:
    """A file's bytes made once, kept in a temporary file instead of memory (at 100,000
    repositories a policy is ~20 MB, its base64 in a data: URL ~27 MB, and the YAML emitter
    copies what it writes), and read back in chunks wherever it goes: as a file, as base64."""

    CHUNK = 3 << 16  # a multiple of 3: the base64 of each chunk joins into the whole's

    def __init__(self, write: Callable[[TextIO], object]):
        self._file = tempfile.TemporaryFile("w+b")
        text = io.TextIOWrapper(self._file, encoding="utf-8", write_through=False)
        write(text)
        text.flush()
        text.detach()
        self.size = self._file.tell()

    def chunks(self) -> Iterator[bytes]:
        self._file.seek(0)
        while chunk := self._file.read(self.CHUNK):
            yield chunk

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def b64_chunks(self) -> Iterator[str]:
        """Its base64 (that of the whole), a piece at a time."""
        return (base64.b64encode(chunk).decode("ascii") for chunk in self.chunks())

    def writer(self) -> Callable[[TextIO], None]:
        """A writer of its bytes (UTF-8 text) to a file (atomic's Data)."""
        def write(f: TextIO) -> None:
            for chunk in self.chunks():
                f.write(chunk.decode("utf-8"))  # (JSON: ASCII; a chunk never splits a char)
        return write


Data = bytes | Blob


def _policy(repositories: list[str], rules: list[dict[str, Any]],
            base: Mapping[str, Any]) -> Blob:
    policy = copy.deepcopy(dict(base))
    docker = policy.setdefault("transports", {}).setdefault("docker", {})
    docker.update({repo: rules for repo in repositories})

    # json.dumps with an indent joins a list of every piece (~70 MB at 100,000 repositories);
    # json.dump writes each piece as it is made, here to a temporary file
    def write(f: TextIO) -> None:
        json.dump(policy, f, indent=2, sort_keys=True)
        f.write("\n")
    return Blob(write)


def _bytes_of(data: Data) -> bytes:
    return data.read() if isinstance(data, Blob) else data


def _file_data(data: Data) -> bytes | Callable[[TextIO], None]:
    """What Store.write_file takes for ``data``."""
    return data.writer() if isinstance(data, Blob) else data


# libyaml's emitter when PyYAML has it: the pure-Python one takes ~5 s per MB of a
# MachineConfig's data: URLs (100,000 repositories: 66 s); both write the same documents
_BASE_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# a MachineConfig over this will not apply (the API server's object limit is about 1.5 MiB)
MACHINECONFIG_WARN = 1 << 20


def _literal_blocks(base: type[yaml.SafeDumper]) -> type[yaml.SafeDumper]:
    """``base`` (a safe dumper), with text of several lines (a PEM key) as a literal block."""
    dumper: type[yaml.SafeDumper] = type("_Dumper", (base,), {})
    dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))
    return dumper


_Dumper = _literal_blocks(_BASE_DUMPER)


# A data: URL longer than this is written by Blob.b64_chunks into the YAML the emitter wrote
# with a placeholder of the same style (a plain scalar: base64 never needs quotes)
BIG_DATA = 1 << 14
_PLACEHOLDER = "CSAPLACEHOLDER{n}X{token}"


def _yaml(artifacts: Store, parts: list[str], objects: list[dict[str, Any]],
          blobs: Mapping[str, Blob] | None = None) -> str:
    """Write ``objects`` as YAML documents, streamed to the file (no copy of it in memory).
    ``blobs``: placeholders in ``objects`` (whole scalars ``data:;base64,<placeholder>``)
    and the bytes whose base64 each stands for, written in pieces where it stands."""
    if not blobs:
        artifacts.write_file(["verification", *parts], lambda f: yaml.dump_all(
            objects, f, Dumper=_Dumper, sort_keys=False))
        return "/".join(parts)
    text = yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False)  # (small: placeholders)

    def write(f: TextIO) -> None:
        rest = text
        for placeholder, blob in blobs.items():
            before, found, rest = rest.partition(f"data:;base64,{placeholder}\n")
            if not found:  # (a style that is not a plain scalar on one line: never)
                raise ValueError(f"{'/'.join(parts)}: a data: URL was not written in place")
            f.write(before + "data:;base64,")
            for piece in blob.b64_chunks():
                f.write(piece)
            f.write("\n")
        f.write(rest)
    artifacts.write_file(["verification", *parts], write)
    return "/".join(parts)


def _data_url(data: Data, n: int, blobs: dict[str, Blob]) -> str:
    """``data`` as a data: URL; a big Blob by a placeholder (``blobs``: what it stands for)."""
    if isinstance(data, Blob) and data.size > BIG_DATA:
        placeholder = _PLACEHOLDER.format(n=n, token=os.urandom(8).hex())
        blobs[placeholder] = data
        return "data:;base64," + placeholder
    return "data:;base64," + _b64(_bytes_of(data))


def indented_json(value: object) -> Callable[[TextIO], None]:
    """A writer of ``value`` as JSON with an indent of 2 and a final newline, written as it is
    encoded: json.dumps would make the whole text, then ``.encode()`` a copy of it."""
    def write(f: TextIO) -> None:
        json.dump(value, f, indent=2)
        f.write("\n")
    return write


def _json(artifacts: Store, parts: list[str], value: Mapping[str, str | Blob]) -> None:
    """``value`` as json.dump(value, f, indent=2) writes it, and a newline; a Blob value as the
    JSON string of its base64, written in pieces."""
    if not any(isinstance(v, Blob) for v in value.values()):
        artifacts.write_file(["verification", *parts], indented_json(value))
        return

    def write(f: TextIO) -> None:
        f.write("{")
        for n, (key, item) in enumerate(value.items()):
            f.write(("," if n else "") + "\n  " + json.dumps(key) + ": ")
            if isinstance(item, Blob):  # (base64: nothing to escape)
                f.write('"')
                for piece in item.b64_chunks():
                    f.write(piece)
                f.write('"')
            else:
                f.write(json.dumps(item))
        f.write("\n}\n")
    artifacts.write_file(["verification", *parts], write)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- OpenShift / CRI-O --------------------------------------------------------------------

def _openshift_nodes(artifacts: Store, facts: Facts) -> list[str]:
    """The node policy.json (the signed repositories added to the node's default) and the
    MachineConfigs (Ignition 3.x, coreos/ignition config/v3_2/schema/ignition.json:
    storage.files[].path, mode, overwrite, contents.source) that install it, the registries.d
    file and the keys."""
    rules, keys = relocate(facts.requirement, facts.files,
                           lambda rule, name: f"{PKI}/{name}")
    policy, registries_d = _policy(facts.repositories, rules, NODE_DEFAULT), facts.registries_d()
    artifacts.write_file(["verification", "openshift", "policy.json"], policy.writer())
    artifacts.write_file(["verification", "openshift", *NODE_REGISTRIES_D.split("/")[3:]],
                         registries_d)
    files: dict[str, Data] = {NODE_POLICY: policy, NODE_REGISTRIES_D: registries_d, **keys}
    blobs: dict[str, Blob] = {}  # the policy's data: URL, written in pieces
    entries = [{"path": path, "mode": 0o644, "overwrite": True,
                "contents": {"source": _data_url(data, n, blobs)}}
               for n, (path, data) in enumerate(files.items())]
    written = ["openshift/policy.json", "openshift/registries.d/container-sign-action.yaml"]
    size = 0
    for pool in POOLS:
        name = f"51-{pool}-container-sign-action"
        written.append(_yaml(artifacts, ["openshift", f"{name}.yaml"], [{
            "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
            "metadata": {"name": name,
                         "labels": {"machineconfiguration.openshift.io/role": pool}},
            "spec": {"config": {"ignition": {"version": IGNITION},
                                "storage": {"files": entries}}}}], blobs))
        size = max(size, os.path.getsize(artifacts.root / "verification" / written[-1]))
    if size > MACHINECONFIG_WARN:
        log.warning("verification/openshift: the MachineConfigs are %.1f MiB: over ~1 MiB they "
                    "will not apply (the API server's object limit is about 1.5 MiB); broader "
                    "scopes are needed (docs/verification.md)", size / (1 << 20))
    return written


def _openshift_sigstore(artifacts: Store, facts: Facts,
                        sigstore: list[dict[str, Any]]) -> list[str]:
    """config.openshift.io/v1 ClusterImagePolicy, one per key or email identity (a policy has
    one root of trust; policy.json requires every key), at most 256 scopes each."""
    roots = []
    for rule in sigstore:
        rekor = facts.files.get("rekor.pub") if "rekorPublicKeyPath" in rule else None
        if "keyData" in rule:
            key = {"keyData": rule["keyData"], **({"rekorKeyData": _b64(rekor)} if rekor else {})}
            roots.append({"policyType": "PublicKey", "publicKey": key})
        elif "fulcio" in rule and rekor and "fulcio_root.pem" in facts.files:
            roots.append({"policyType": "FulcioCAWithRekor", "fulcioCAWithRekor": {
                "fulcioCAData": _b64(facts.files["fulcio_root.pem"]), "rekorKeyData": _b64(rekor),
                "fulcioSubject": {"oidcIssuer": rule["fulcio"]["oidcIssuer"],
                                  "signedEmail": rule["fulcio"]["subjectEmail"]}}})
    objects = []
    for n, root in enumerate(roots, 1):
        for part in range(0, len(facts.repositories), MAX_SCOPES):
            objects.append({
                "apiVersion": "config.openshift.io/v1", "kind": "ClusterImagePolicy",
                "metadata": {"name": f"container-sign-action-{facts.id}-{n}-{part // MAX_SCOPES}"},
                "spec": {"scopes": facts.repositories[part:part + MAX_SCOPES],
                         "policy": {"rootOfTrust": root, "signedIdentity": {
                             "matchPolicy": "MatchRepoDigestOrExact"}}}})
    return [_yaml(artifacts, ["openshift", "clusterimagepolicy.yaml"], objects)] if objects else []


# -- Kubernetes: sigstore policy-controller -----------------------------------------------

def _policy_controller(artifacts: Store, facts: Facts,
                       sigstore: list[dict[str, Any]]) -> list[str]:
    """policy.sigstore.dev/v1beta1 ClusterImagePolicy, one per key and keyless identity: an
    image must satisfy every policy that matches it, and one authority of each; each authority
    reads the bundles (``signatureFormat: bundle``) when they were written, else the legacy
    ``.sig`` signatures. When the run attested, one more per key and identity whose authority
    lists an ``attestations`` entry per predicate type: policy-controller checks an authority
    with attestations for those only, not the signature (pkg/webhook/validator.go,
    ValidatePolicy), so the signature's policy stays as it is beside it."""
    rekor = {"ctlog": {"url": "https://rekor.sigstore.dev"}} if facts.public_rekor else {}
    authorities = [{"name": "key", "key": {"data": base64.b64decode(r["keyData"]).decode(),
                                           "hashAlgorithm": "sha256"}, **rekor}
                   for r in sigstore if "keyData" in r]
    fulcio = facts.files.get("fulcio_root.pem")
    for identity, issuer in facts.identities:
        keyless: dict[str, Any] = {"identities": [{"issuer": issuer, "subject": identity}]}
        if fulcio:
            keyless["ca-cert"] = {"data": fulcio.decode()}
        authorities.append({"name": "keyless", "keyless": keyless})
    if facts.bundles:  # Sigstore bundles (referrers) were written: read those, except with a
        # key when the legacy form was written too (policy-controller refuses a key authority
        # in the bundle form: "the authority must be keyless", checkOptsFromAuthority)
        authorities = [{**a, "signatureFormat": "bundle"}
                       if "keyless" in a or not facts.legacy else a for a in authorities]
    globs = [{"glob": f"{repo}{tail}"} for repo in facts.repositories for tail in (":**", "@**")]
    objects = [{"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy",
                "metadata": {"name": f"container-sign-action-{facts.id}-{n}"},
                "spec": {"images": globs, "authorities": [authority]}}
               for n, authority in enumerate(authorities, 1)]
    attestations = attestation_entries(facts.predicate_types)
    objects += [{"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy",
                 "metadata": {"name": f"container-sign-action-{facts.id}-{n}-attestations"},
                 "spec": {"images": globs,
                          "authorities": [{**authority, "attestations": attestations}]}}
                for n, authority in enumerate(authorities, 1) if attestations]
    return [_yaml(artifacts, ["kubernetes", "clusterimagepolicy.yaml"], objects)] if objects else []


def attestation_entries(predicate_types: Sequence[str]) -> list[dict[str, str]]:
    """An authority's ``attestations`` (pkg/apis/policy/v1beta1: ``name``, ``predicateType``),
    one per type. ``predicateType`` is the URI, as the statement names it: policy-controller
    takes cosign's short names too, but warns that they are deprecated (its validation's "use
    RFC 3986 conformant values"), and cosign matches a URI to the statement's exactly
    (pkg/policy/attestation.go). ``name`` (what a CIP-level policy refers to) is cosign's name
    for a type it has one for (``slsaprovenance1``, ``spdx``...), else the URI made into a
    lowercase ``[a-z0-9-]`` label of at most 63 characters, with a hash of the URI when that
    label is taken: unique, and the same for the same types."""
    from .attestations import PREDICATE_TYPES

    known: dict[str, str] = {}
    for short, uri in PREDICATE_TYPES.items():
        known.setdefault(uri, short)  # (v0.2: slsaprovenance; SPDX: spdx)
    entries: list[dict[str, str]] = []
    taken: set[str] = set()
    for uri in predicate_types:
        name = known.get(uri) or re.sub(r"[^a-z0-9]+", "-", uri.partition("://")[2].lower()
                                        ).strip("-")[:ATTESTATION_NAME].strip("-") or "predicate"
        if name in taken or (name in PREDICATE_TYPES and known.get(uri) != name):
            tail = "-" + hashlib.sha256(uri.encode()).hexdigest()[:10]
            name = name[:ATTESTATION_NAME - len(tail)].strip("-") + tail
        taken.add(name)
        entries.append({"name": name, "predicateType": uri})
    return entries


# -- Confidential Containers --------------------------------------------------------------

def _coco(artifacts: Store, facts: Facts) -> list[str]:
    """The image security policy and its keys as KBS resources (``kbs:///default/<type>/
    <tag>``, guest-components attestation-agent/docs/RESOURCE_URI.md), the same as the offline
    fs KBC's resources file, and that file's older form (the seed's: ``Policy``, ``Cosign
    Key``...). image-rs checks keys only (keyPath/keyData: no Fulcio, no Rekor)."""
    tag = f"container-sign-action-{facts.id}"
    keyed = [r for r in facts.requirement if r.get("type") != "sigstoreSigned" or "keyData" in r]
    keyed = [{k: v for k, v in r.items() if k != "rekorPublicKeyPath"} for r in keyed]
    rules, keys = relocate(keyed or [{"type": "reject"}], facts.files, lambda rule, name: (
        f"kbs:///{KBS_REPO}/{KBS_TYPES[rule['type']]}/{tag}-{name.split('.')[0]}"))
    resources: dict[str, Data] = {f"{KBS_REPO}/security-policy/{tag}": _policy(
        facts.repositories, rules, {"default": [{"type": "reject"}]})}
    resources.update({uri.removeprefix("kbs:///"): data for uri, data in keys.items()})
    if any(r.get("type") == "signedBy" for r in rules):
        resources[f"{KBS_REPO}/sigstore-config/{tag}"] = facts.registries_d("sigstore")
    written = []
    for path, data in resources.items():
        artifacts.write_file(["verification", "coco", "kbs", *path.split("/")], _file_data(data))
        written.append(f"coco/kbs/{path}")
    _json(artifacts, ["coco", "aa-offline_fs_kbc-resources.json"],
          {k: v if isinstance(v, Blob) else _b64(v) for k, v in resources.items()})
    written.append("coco/aa-offline_fs_kbc-resources.json")
    legacy = _legacy(facts, keyed)
    if legacy:
        _json(artifacts, ["coco", "aa-offline_fs_kbc-resources-legacy.json"], legacy)
        written.append("coco/aa-offline_fs_kbc-resources-legacy.json")
    return written


def _legacy(facts: Facts, keyed: list[dict[str, Any]]) -> dict[str, str | Blob] | None:
    """The older offline fs KBC's resources: one key of a kind at a fixed guest path. None
    when the run has more than one key of a kind, or none: that form cannot say it."""
    kinds = [r["type"] for r in keyed]
    if not keyed or any(kinds.count(k) > 1 for k in kinds) or \
            any("keyData" not in r for r in keyed):
        return None
    rules, keys = relocate(keyed, facts.files, lambda rule, name: LEGACY[rule["type"]][1])
    out: dict[str, str | Blob] = {"Policy": _policy(facts.repositories, rules,
                                                    {"default": [{"type": "reject"}]})}
    for rule in rules:
        out[LEGACY[rule["type"]][0]] = _b64(keys[rule["keyPath"]])
    if "signedBy" in kinds:
        out["Sigstore Config"] = _b64(facts.registries_d("sigstore"))
    return out


def _readme(facts: Facts, written: list[str]) -> str:
    text = _README
    if any("lookaside" in e for e in facts.registries.values()):
        text += _LOOKASIDE_GIVEN if facts.lookaside_url else _LOOKASIDE_PLACEHOLDER.format(
            placeholder=PLACEHOLDER)
    return text + "\nWritten by this run:\n\n" + "".join(f"- `{w}`\n" for w in written)


_LOOKASIDE_GIVEN = """
The lookaside in these files is the published one this run was given (`lookaside_url`).
"""
_LOOKASIDE_PLACEHOLDER = """
The lookaside in these files is a placeholder, `{placeholder}`
({{registry}}: the registry folder), that serves nothing: CRI-O refuses the signed
repositories, and only them, until it is the URL where you publish `lookaside/`. Edit
`openshift/registries.d/container-sign-action.yaml`, then put `data:;base64,` and its base64
(`base64 -w0 FILE`) as the source of that path in both MachineConfigs; likewise coco's
sigstore-config resource.
"""


_README = """
# Clusters (details: docs/verification.md in container-sign-action)

- **OpenShift / CRI-O**: `openshift/51-worker-container-sign-action.yaml` and `51-master-...`
  are MachineConfigs that install `openshift/policy.json` as /etc/containers/policy.json (the
  node default, accept anything, plus the signed repositories requiring these signatures), the
  registries.d file and the keys (under /etc/pki/containers/container-sign-action/).
  `oc apply -f` them. They replace the node's policy.json: if the cluster already has one of
  its own (image.config.openshift.io `registrySources`, ClusterImagePolicy objects, another
  MachineConfig writing that path), merge `transports.docker` of ours into it instead: see
  the docs. For sigstore signatures `openshift/clusterimagepolicy.yaml`
  (config.openshift.io/v1) is the form the MCO merges into the node policy itself: apply it
  instead of the MachineConfigs, not with them.
- **Kubernetes admission**: `kubernetes/clusterimagepolicy.yaml` is for the sigstore
  policy-controller (cosign signatures only; a run that attested also requires, in the
  `...-attestations` objects, an attestation of each type by each key and identity).
  No admission controller checks GPG simple signing: for those, CRI-O's policy.json (the
  MachineConfigs) is the way.
- **Confidential Containers**: `coco/kbs/default/<type>/<tag>` are Trustee KBS resources
  (`kbs-client ... config ... set-resource --path default/<type>/<tag> --resource-file
  coco/kbs/default/<type>/<tag>`); point the guest's `image_security_policy_uri` at
  `kbs:///default/security-policy/<tag>` (and, GPG, `sigstore_config_uri` at
  `kbs:///default/sigstore-config/<tag>`). `coco/aa-offline_fs_kbc-resources.json` is the
  same for the offline file-system KBC (/etc/aa-offline_fs_kbc-resources.json), and
  `...-legacy.json` its older form (`Policy`, `Cosign Key`, `GPG Keyring`).
"""
