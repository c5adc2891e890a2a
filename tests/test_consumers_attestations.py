"""policy-controller's ``attestations:`` in verification/kubernetes/clusterimagepolicy.yaml
(signaction.consumers): a run that attested requires, for every key and keyless identity, an
attestation of each predicate type it attested, and a run that did not writes none.

Checked the ways available without a cluster or Go:

- against the CRD's own OpenAPI v3 schema (v1beta1 of sigstore/policy-controller
  config/300-clusterimagepolicy.yaml, a copy in tests/fixtures/policy-controller/), with
  jsonschema, and with what the API server's pruning would do: a field the schema does not
  declare is dropped without a word, so one misspelled field would silently lose a requirement;
- against a transcription of policy-controller's defaulting and validation for the fields
  written (pkg/apis/policy/v1beta1/clusterimagepolicy_defaults.go and _validation.go: exactly
  one of key/keyless, a key's PEM and hash algorithm, keyless url or ca-cert, identities, an
  attestation's name and predicateType, and the warning for a deprecated predicate type).

Pure logic: the files are made by Artifacts.write_verification from CosignFormat's
Verification, as a run makes them.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signaction import attestations as pure
from signaction.artifacts import Artifacts
from signaction.consumers import attestation_entries
from signaction.errors import InputError
from signaction.inputs import Inputs
from signers.base import Options
from signers.cosign import CosignFormat

CRD = Path(__file__).parent / "fixtures" / "policy-controller" / "300-clusterimagepolicy.yaml"
CA = b"-----BEGIN CERTIFICATE-----\nMIIBfulcio\n-----END CERTIFICATE-----\n"
REKOR = b"-----BEGIN PUBLIC KEY-----\nMFkwrekor\n-----END PUBLIC KEY-----\n"
EMAIL = ("me@example.com", "https://issuer.example")
WORKFLOW = ("https://github.com/o/r/.github/workflows/w.yml@refs/tags/v1",
            "https://token.actions.githubusercontent.com")
SBOM = "https://example.com/sbom/v1"
NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # a DNS label: safe in CUE and Rego
DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# pkg/apis/policy/common/validation.go ValidPredicateTypes: accepted, with a deprecation warning
SHORT_NAMES = {"custom", "slsaprovenance", "spdx", "spdxjson", "cyclonedx", "link", "vuln"}
HASHES = {"sha224", "sha256", "sha384", "sha512"}  # pkg/apis/signaturealgo


@cache
def pem(n: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def policies(tmp_path: Path, types: tuple[str, ...] = (), *, keys: int = 2,
             identities: tuple[tuple[str, str], ...] = (EMAIL, WORKFLOW),
             formats: tuple[str, ...] = ("legacy",), repos=("r.io/ns/app",),
             roots: bool = True) -> list[dict[str, Any]]:
    """The policy-controller objects a run writes: ``keys`` keys, keyless ``identities``."""
    art = Artifacts(tmp_path / "out")
    fmt = CosignFormat(tlog=True, formats=formats, predicate_types=types,
                       roots={"fulcio_root_file": CA, "rekor_public_key_file": REKOR}
                       if roots else {})
    fmt.keyless = bool(identities)
    for identity in identities:
        fmt.identities[identity].append("r.io/ns/app@sha256:" + "1" * 64)
    hosts = sorted({r.split("/")[0] for r in repos})
    public = b"".join(pem(n) for n in range(keys))
    folder = art.write_verification(repos, fmt.verification(art, hosts, public))
    path = folder / "kubernetes" / "clusterimagepolicy.yaml"
    objects = list(yaml.safe_load_all(path.read_text())) if path.exists() else []
    for o in objects:
        check_against_the_crd(o)
        errors, _ = validate(o)
        assert not errors, (errors, o)
    return objects


# -- the CRD's schema, and pruning --------------------------------------------------------

@cache
def v1beta1_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["spec"]["group"] == "policy.sigstore.dev"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    assert version["served"]
    return version["schema"]["openAPIV3Schema"]


def pruned(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """What the API server would drop from ``value`` (structural schema pruning): every field
    an object's schema does not declare, unless it preserves unknown fields."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        declared = schema.get("properties", {})
        out = [f"{path}.{k}" for k in value if k not in declared]
        for k, v in value.items():
            if k in declared:
                out += pruned(v, declared[k], f"{path}.{k}")
        return out
    if isinstance(value, list):
        return [p for n, v in enumerate(value) for p in pruned(v, schema["items"], f"{path}[{n}]")]
    return []


def check_against_the_crd(o: dict[str, Any]) -> None:
    assert o["apiVersion"] == "policy.sigstore.dev/v1beta1" and o["kind"] == "ClusterImagePolicy"
    assert DNS1123.fullmatch(o["metadata"]["name"]) and len(o["metadata"]["name"]) <= 253
    body = {k: v for k, v in o.items() if k not in ("apiVersion", "kind", "metadata")}
    jsonschema.Draft7Validator(v1beta1_schema()).validate(body)
    assert pruned(body, v1beta1_schema()) == []


# -- policy-controller's defaults and validation, for the fields written ------------------

def _request_uri(text: str) -> bool:
    """Go's url.ParseRequestURI, as far as an absolute URI goes: a scheme, valid escapes."""
    return bool(re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", text)) and \
        not re.search(r"%(?![0-9A-Fa-f]{2})", text)


def validate(o: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of ClusterImagePolicy.SetDefaults then Validate (v1beta1)."""
    errors: list[str] = []
    warnings: list[str] = []
    spec = o["spec"]
    if not spec.get("images"):
        errors.append("images: missing")
    for image in spec.get("images", []):
        if not re.fullmatch(r"[a-zA-Z0-9-_:/*.@]+", image.get("glob", "")):
            errors.append(f"glob {image.get('glob')!r}")
    for n, authority in enumerate(spec.get("authorities", [])):
        authority.setdefault("name", f"authority-{n}")
        kinds = [k for k in ("key", "keyless", "static") if k in authority]
        if len(kinds) != 1:
            errors.append(f"authority {n}: exactly one of key, keyless, static: {kinds}")
            continue
        if "key" in authority:
            key = authority["key"]
            if sum(bool(key.get(k)) for k in ("data", "kms", "secretRef")) != 1:
                errors.append("key: one of data, kms, secretref")
            try:
                serialization.load_pem_public_key(key.get("data", "").encode())
            except ValueError:
                errors.append("key.data: not a PEM public key")
            if key.get("hashAlgorithm", "sha256").strip().lower() not in HASHES:
                errors.append("key.hashAlgorithm")
        if "keyless" in authority:
            keyless = authority["keyless"]
            if "url" not in keyless and "ca-cert" not in keyless:  # SetDefaults: public Fulcio
                keyless["url"] = "https://fulcio.sigstore.dev"
            if "url" in keyless and "ca-cert" in keyless:
                errors.append("keyless: one of url, ca-cert")
            if not keyless.get("identities"):
                errors.append("keyless.identities: missing")
            for identity in keyless.get("identities", []):
                if not (identity.get("issuer") or identity.get("issuerRegExp")) or \
                        not (identity.get("subject") or identity.get("subjectRegExp")):
                    errors.append(f"identity {identity}")
        if authority.get("signatureFormat", "legacy") not in ("legacy", "bundle"):
            errors.append("signatureFormat")
        for att in authority.get("attestations", []):
            if not att.get("name"):
                errors.append("attestations.name: missing")
            predicate = att.get("predicateType", "")
            if not predicate:
                errors.append("attestations.predicateType: missing")
            elif predicate in SHORT_NAMES or not _request_uri(predicate):
                warnings.append(f"{predicate!r}: deprecated value, use RFC 3986 conformant values")
            if "policy" in att:
                errors.append("attestations.policy: not written by the run")
    return errors, warnings


def attestation_authorities(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for o in objects for a in o["spec"]["authorities"] if "attestations" in a]


# -- the tests ----------------------------------------------------------------------------

def test_a_run_without_attestations_requires_none(tmp_path):
    objects = policies(tmp_path)
    assert len(objects) == 4  # two keys, two identities: a policy each, signatures only
    assert attestation_authorities(objects) == []
    assert not any(o["metadata"]["name"].endswith("-attestations") for o in objects)


def test_every_key_and_identity_must_have_attested_each_type(tmp_path):
    types = (pure.SLSA_PROVENANCE_V1, pure.SPDX_DOCUMENT, SBOM)
    objects = policies(tmp_path / "with", types)
    plain = policies(tmp_path / "without")
    # the signatures are still required as before, each in a policy of its own: an authority
    # with attestations is checked for those only (pkg/webhook/validator.go ValidatePolicy)
    signatures = [o for o in objects if not o["metadata"]["name"].endswith("-attestations")]
    assert [o["spec"] for o in signatures] == [o["spec"] for o in plain]
    attested = [o for o in objects if o["metadata"]["name"].endswith("-attestations")]
    assert len(attested) == 4
    for o, signature in zip(attested, signatures, strict=True):
        (authority,) = o["spec"]["authorities"]
        entries = authority.pop("attestations")
        assert o["spec"]["images"] == signature["spec"]["images"]
        assert authority == signature["spec"]["authorities"][0]  # the same key or identity
        assert entries == [{"name": "slsaprovenance1", "predicateType": pure.SLSA_PROVENANCE_V1},
                           {"name": "spdx", "predicateType": pure.SPDX_DOCUMENT},
                           {"name": "example-com-sbom-v1", "predicateType": SBOM}]
    kinds = [next(k for k in ("key", "keyless") if k in o["spec"]["authorities"][0])
             for o in attested]
    assert kinds == ["key", "key", "keyless", "keyless"]
    assert [o["spec"]["authorities"][0]["keyless"]["identities"][0]["subject"]
            for o in attested[2:]] == [WORKFLOW[0], EMAIL[0]]
    # no deprecation warning: URIs, not the short names
    assert all(validate(o)[1] == [] for o in objects)
    # different facts, different names: applying both runs' files keeps both sets
    assert not {o["metadata"]["name"] for o in objects} & {o["metadata"]["name"] for o in plain}


@pytest.mark.parametrize("keys,identities,count", [(1, (), 1), (0, (WORKFLOW,), 1),
                                                   (0, (), 0)])
def test_key_alone_keyless_alone_and_neither(tmp_path, keys, identities, count):
    objects = policies(tmp_path, (pure.SLSA_PROVENANCE_V1,), keys=keys, identities=identities)
    assert len(attestation_authorities(objects)) == count
    assert len(objects) == 2 * count


def test_the_bundle_form_is_read_for_attestations_too(tmp_path):
    for formats in (("bundle",), ("legacy", "bundle")):
        objects = policies(tmp_path / "-".join(formats), (pure.SLSA_PROVENANCE_V1,),
                           formats=formats)
        found = {("keyless" in a, a.get("signatureFormat")) for o in objects
                 for a in o["spec"]["authorities"]}
        # a key authority is refused in the bundle form: with the legacy one there, that one
        assert found == ({(True, "bundle"), (False, "bundle")} if formats == ("bundle",) else
                         {(True, "bundle"), (False, None)}), (formats, found)
    legacy = policies(tmp_path / "legacy", (pure.SLSA_PROVENANCE_V1,))
    assert all("signatureFormat" not in a for a in attestation_authorities(legacy))


def test_the_public_sigstore_authorities_carry_their_rekor_and_fulcio(tmp_path):
    objects = policies(tmp_path, (pure.SLSA_PROVENANCE_V1,), roots=False)
    key, keyless = attestation_authorities(objects)[0], attestation_authorities(objects)[2]
    assert key["ctlog"] == {"url": "https://rekor.sigstore.dev"}
    assert "ca-cert" not in keyless["keyless"]  # policy-controller defaults the public Fulcio


# URIs signaction.attestations.predicate_type accepts, with every character YAML gives a
# meaning to that RFC 3986 allows
HOSTILE = ["https://e.x/a'b:[c]#d", "https://e.x/&anchor*alias!tag", "https://e.x/'",
           "https://e.x/?k=v,w;x=%zz&y=$(z)", "http://[::1]:8/@x/-%20-/~", "https://e.x/:",
           "https://e.x/" + "a:b/" * 240, "https://E.X/Upper", "https://e.x/upper"]


def test_hostile_predicate_types_stay_data(tmp_path):
    for uri in HOSTILE:
        assert pure.predicate_type(uri) == uri  # a run can attest them
    objects = policies(tmp_path, tuple(HOSTILE))
    for authority in attestation_authorities(objects):
        entries = authority["attestations"]
        assert [e["predicateType"] for e in entries] == HOSTILE  # read back as written
        assert all(set(e) == {"name", "predicateType"} for e in entries)
        names = [e["name"] for e in entries]
        assert all(NAME.fullmatch(n) for n in names) and len(set(names)) == len(names)
    # what cannot be in a type never gets this far
    for bad in ('https://e.x/"q"', "https://e.x/a\nb: c", "https://e.x/a b", "https://e.x/\x00"):
        with pytest.raises(InputError):
            pure.predicate_type(bad)


def test_names_are_cosigns_for_its_types_and_unique_labels_for_the_others():
    entries = attestation_entries([pure.SLSA_PROVENANCE_V02, pure.SPDX_DOCUMENT, pure.OPENVEX,
                                   pure.COSIGN_VULN, pure.COSIGN_CUSTOM])
    assert [e["name"] for e in entries] == ["slsaprovenance", "spdx", "openvex", "vuln",
                                            "custom"]
    entries = attestation_entries([pure.SLSA_PROVENANCE_V1, pure.IN_TOTO_LINK_V1,
                                   pure.CYCLONEDX_BOM])
    assert [e["name"] for e in entries] == ["slsaprovenance1", "link", "cyclonedx"]
    # a URI whose label is taken, or is one of cosign's names for another type, gets a hash
    entries = attestation_entries(["https://e.x/a", "https://E.X/A", "http://e.x/a",
                                   "https://spdx", "https://!!!", "https://" + "x" * 900])
    names = [e["name"] for e in entries]
    assert names[0] == "e-x-a" and names[1].startswith("e-x-a-") and names[2].startswith("e-x-a-")
    assert names[3].startswith("spdx-") and names[4] == "predicate"
    assert len(names[5]) == 63 and all(NAME.fullmatch(n) for n in names)
    assert len(set(names)) == len(names)
    assert attestation_entries(["https://e.x/a", "https://E.X/A"]) == entries[:2]  # stable
    assert attestation_entries([]) == []


def test_the_signer_tells_the_format_what_it_attests(tmp_path):
    from signers.cosign.signer import CosignSigner

    sbom = tmp_path / "sbom.json"
    sbom.write_text('{"spdxVersion": "SPDX-2.3"}')
    inputs = Inputs(predicates=(str(sbom),), predicate_types=("spdxjson",))
    signer = CosignSigner({}, Options.default(inputs=inputs))
    assert signer.cosign_format.predicate_types == (pure.SPDX_DOCUMENT,)
    assert CosignSigner({}, Options.default()).cosign_format.predicate_types == ()
