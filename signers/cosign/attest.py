"""What a run attests: the attestations asked for by ``--provenance`` and ``--predicate FILE
--predicate-type TYPE`` pairs, read and checked before anything is signed (predicate files are
hostile input: signaction.attestations reads them), one predicate each, the same for every image
(the Statement's subject is the image: native.Native._attest makes one per image)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from signaction.errors import InputError
from signaction.inputs import Inputs

from .native import Attestation

SIGN_ONLY = ("provenance", "predicates", "predicate_types")
PROVENANCE = "slsaprovenance1"  # --provenance's attestation (its name)
VERIFY_ONLY = ("attestation_types", "provenance_repository", "provenance_workflow")


def requested(inputs: Inputs, environ: Mapping[str, str]) -> tuple[Attestation, ...]:
    """The attestations of this run (sign mode), in the order asked; InputError naming the
    input when a predicate file or type is unusable, the pairs do not match, a type is asked
    for twice, or provenance is asked for outside a CI run that has one."""
    if inputs.mode == "verify":
        for attr in SIGN_ONLY:
            if getattr(inputs, attr):
                raise InputError(f"{inputs.where(attr)}: attestations are made in sign mode; "
                                 "verify mode checks them with --attestation-type")
        return ()
    for attr in VERIFY_ONLY:
        if getattr(inputs, attr):
            raise InputError(f"{inputs.where(attr)}: only for verify mode (--mode verify)")
    files, types = inputs.numbered("predicates"), inputs.numbered("predicate_types")
    if len(files) != len(types):
        raise InputError(f"{len(files)} {inputs.where('predicates')} and {len(types)} "
                         f"{inputs.where('predicate_types')}: give a type for each predicate "
                         "file, paired by position")
    made: list[Attestation] = []
    if not inputs.provenance and not files:
        return ()
    from signaction import attestations

    if inputs.provenance:
        made.append(Attestation(attestations.SLSA_PROVENANCE_V1, PROVENANCE,
                                attestations.provenance(environ), from_ci=True))
    for (_, path), (_, given) in zip(files, types, strict=True):
        uri = attestations.predicate_type(given)
        made.append(Attestation(uri, file_name(given, uri),
                                attestations.read_predicate(path, given)))
    seen: dict[str, str] = {}
    for one in made:
        if one.predicate_type in seen or one.name in seen.values():
            raise InputError(f"predicate type {one.predicate_type!r} is attested twice "
                             "(--provenance and --predicate, or two --predicate-type): one "
                             "predicate a type")
        seen[one.predicate_type] = one.name
    return tuple(made)


def from_token(made: tuple[Attestation, ...], environ: Mapping[str, str],
               claims: Mapping) -> tuple[Attestation, ...]:
    """``made`` with a GitHub provenance built from the keyless run's identity token's
    ``claims`` instead of the environment, as attest-build-provenance builds it: the same
    facts the certificate names (a reusable workflow's ``job_workflow_ref`` as builder id,
    which no variable holds)."""
    from signaction import attestations

    if environ.get("GITHUB_ACTIONS") != "true":
        return made
    return tuple(Attestation(a.predicate_type, a.name,
                             attestations.provenance(environ, claims=claims), from_ci=True)
                 if a.from_ci else a for a in made)


def required(inputs: Inputs) -> tuple[tuple[str, str], ...]:
    """Verify mode's ``--attestation-type`` values: (type URI, the name given), each once."""
    pinned = [a for a in ("provenance_repository", "provenance_workflow") if getattr(inputs, a)]
    if not inputs.attestation_types and not pinned:
        return ()
    _check_pins(inputs)
    from signaction import attestations

    found: dict[str, str] = {}
    for _, given in inputs.numbered("attestation_types"):
        found.setdefault(attestations.predicate_type(given), given)
    if pinned and attestations.SLSA_PROVENANCE_V1 not in found:
        raise InputError(f"{inputs.where(pinned[0])}: needs --attestation-type "
                         "slsaprovenance1 (the provenance it pins)")
    return tuple(found.items())


def file_name(given: str, uri: str) -> str:
    """The attestation's file name in the output folder: cosign's name for its type when it
    was given by one, else the URI made into a safe name (``example.com_sbom_v1``)."""
    from signaction.attestations import PREDICATE_TYPES

    if given in PREDICATE_TYPES:
        return given
    return re.sub(r"[^A-Za-z0-9.-]+", "_", uri.partition("://")[2]).strip("._-")[:120] or \
        "predicate"


_PIN_REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}/[A-Za-z0-9_.-]{1,100}|"
                             r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9_.~-]+){2,8}/?")
_PIN_WORKFLOW = re.compile(r"(\./)?\.github/workflows/[A-Za-z0-9_./-]{1,200}\.ya?ml")


def _check_pins(inputs: Inputs) -> None:
    """What --provenance-repository and --provenance-workflow may be: ``owner/name`` (on
    github.com) or an https:// repository URL; a workflow file, only with the repository
    (a workflow path alone would accept any repository's file of that name)."""
    repository, workflow = inputs.provenance_repository, inputs.provenance_workflow
    if repository and (not _PIN_REPOSITORY.fullmatch(repository) or ".." in repository):
        raise InputError(f"{inputs.where('provenance_repository')}: not owner/name nor an "
                         "https:// repository URL")
    if workflow and (not _PIN_WORKFLOW.fullmatch(workflow) or "/../" in workflow):
        raise InputError(f"{inputs.where('provenance_workflow')}: not a workflow file "
                         "(.github/workflows/NAME.yml)")
    if workflow and not repository:
        raise InputError(f"{inputs.where('provenance_workflow')}: needs "
                         "--provenance-repository too (the same workflow file name can be "
                         "in any repository)")
