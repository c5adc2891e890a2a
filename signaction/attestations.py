"""What gets attested: predicate types, predicates read from files, SLSA provenance from CI.

Pure logic: nothing here signs, attaches or writes. The only I/O is reading a predicate file
(through signaction.safeload) and the environment mapping a caller passes in. The statement
around a predicate is formats.intoto.statement(digest, predicate_type, predicate): a predicate is
per image only through its subject, so provenance() is computed once a run and its dict used for
every image.

**Predicate types** (``predicate_type``): cosign 2.5's names (cmd/cosign/cli/options/predicate.go)
and their URIs; ``slsaprovenance`` is v0.2 as in cosign, ``spdx`` and ``spdxjson`` one URI. A type
URI given directly is accepted: absolute ``https://`` or ``http://``, at most 1,000 characters,
only the characters RFC 3986 allows (no space, no control character). Anything else is refused.

**Predicate files** (``read_predicate``): hostile input. A regular file (a symbolic or hard link,
a FIFO, a device, a socket or a folder is refused), at most 16 MiB (actions/attest's cap), UTF-8;
then as cosign 2.5's attest reads each type (pkg/cosign/attestation/attestation.go):

- ``spdx`` (tag-value SPDX): the text itself is the predicate, a JSON string.
- ``custom``: ``{"Data": <the text>, "Timestamp": <RFC 3339, UTC>}``, cosign's wrapper.
- every other type, and a type URI: JSON, nested at most 64 levels, at most 4,000,000 values, no
  key given twice in an object, no NaN or Infinity, and a JSON object. ``slsaprovenance``/``02``
  must have ``builder`` and ``buildType``, ``slsaprovenance1`` ``buildDefinition`` and
  ``runDetails``, ``link`` every field of an in-toto link (cosign refuses them without). The
  object is kept as written (cosign re-encodes the known types through its Go structs, which
  drops fields those do not know; nothing a verifier checks).

Every refusal is one InputError line naming the file (``--predicate 'sbom.json': ...``).

**Provenance** (``provenance(environ)``): a SLSA provenance v1 predicate
(https://slsa.dev/provenance/v1) of the CI run, detected from the environment:

GitHub Actions (``GITHUB_ACTIONS=true``): the predicate actions/attest-build-provenance writes
(actions/toolkit packages/attest/src/provenance.ts), field for field, in its order::

    {"buildDefinition": {
       "buildType": "https://actions.github.io/buildtypes/workflow/v1",
       "externalParameters": {"workflow": {"ref": GITHUB_REF,
           "repository": "<GITHUB_SERVER_URL>/<GITHUB_REPOSITORY>",
           "path": <GITHUB_WORKFLOW_REF without "<repository>/" and "@<ref>">}},
       "internalParameters": {"github": {"event_name": GITHUB_EVENT_NAME,
           "repository_id": GITHUB_REPOSITORY_ID, "repository_owner_id": GITHUB_REPOSITORY_OWNER_ID,
           "runner_environment": RUNNER_ENVIRONMENT}},
       "resolvedDependencies": [{"uri": "git+<server>/<repository>@<ref>",
           "digest": {"gitCommit": GITHUB_SHA}}]},
     "runDetails": {
       "builder": {"id": "<server>/<job_workflow_ref>"},
       "metadata": {"invocationId":
           "<server>/<repository>/actions/runs/<GITHUB_RUN_ID>/attempts/<GITHUB_RUN_ATTEMPT>"}}}

The action reads these from the OIDC identity token's claims; given the token's decoded claims
(``claims=``), so does this, the server URL alone from the environment, as the action does.
From the environment alone, ``job_workflow_ref`` (the reusable workflow a job runs, when it runs
one) has no variable: the builder id is then the calling workflow's, GITHUB_WORKFLOW_REF.

Tekton / Konflux: the shape of Tekton Chains' SLSA v1 provenance (formats slsa/v2alpha3 and 4),
buildType ``https://tekton.dev/chains/v2/slsa``, holding what a step can see::

    {"buildDefinition": {
       "buildType": "https://tekton.dev/chains/v2/slsa",
       "externalParameters": {"runSpec": {"params": [{"name": ..., "value": ...}, ...]}},
       "internalParameters": {"tekton": {"namespace": ...,
           "pipelineRun": {"name": ..., "uid": ...},          (inside a PipelineRun)
           "taskRun": {"name": ..., "uid": ...}}},
       "resolvedDependencies": [{"name": "inputs/result", "uri": "git+<url>.git",
           "digest": {"sha1": <commit>}}]},                     (with TEKTON_GIT_*)
     "runDetails": {
       "builder": {"id": TEKTON_BUILDER_ID, else "urn:container-sign-action:tekton"},
       "metadata": {"invocationID": <the PipelineRun's uid, else the TaskRun's>}}}

``externalParameters`` is ``{}`` when the caller passes no ``parameters`` (Chains records the
run's whole spec there; a step sees only what it is given: the caller passes the params it
means, never a secret). The source repository is Chains' ``inputs/result`` dependency (what
it records from the CHAINS-GIT_URL and CHAINS-GIT_COMMIT type hints). The builder id is not
Chains' (``https://tekton.dev/chains/v2``): the step is not Chains, and must not pass for it.

The environment variables the Tekton Task sets for the step (a Task cannot name
$(context.pipelineRun.*), a Pipeline's variables: the PipelineRun's name and uid are the labels
Tekton puts on every TaskRun of a PipelineRun and on its pod, which the downward API reads; a
label that is not there, outside a PipelineRun, reads as an empty string, taken as not set):

- ``TEKTON_TASK_RUN``: ``$(context.taskRun.name)``, required
- ``TEKTON_TASK_RUN_UID``: ``$(context.taskRun.uid)``, required
- ``TEKTON_NAMESPACE``: ``$(context.taskRun.namespace)``, required
- ``TEKTON_PIPELINE_RUN``: ``valueFrom: {fieldRef: {fieldPath:
  "metadata.labels['tekton.dev/pipelineRun']"}}``
- ``TEKTON_PIPELINE_RUN_UID``: ``fieldPath: "metadata.labels['tekton.dev/pipelineRunUID']"``;
  both or neither
- ``TEKTON_GIT_URL``, ``TEKTON_GIT_COMMIT``: optional, both or neither: the source repository
  (https, http, ssh or git URL) and its commit (40 hex digits: ``sha1``, as Chains; 64: ``sha256``)
- ``TEKTON_BUILDER_ID``: optional, the builder id to record (an absolute URI)

A Tekton step is recognised by any of the first five being set (not empty). Elsewhere, or with
both contexts' variables set, provenance() refuses with one line naming what is missing. Every
value from the environment (or the token) is checked for its shape and refused, naming the
variable and never quoting the value, when it has another: a ``::error::`` or a newline in a
variable cannot reach a log line or the predicate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .safeload import decode_text, load_json, read_regular_file, shown

if TYPE_CHECKING:
    from datetime import datetime

# -- predicate types ----------------------------------------------------------------------

SLSA_PROVENANCE_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
SPDX_DOCUMENT = "https://spdx.dev/Document"
CYCLONEDX_BOM = "https://cyclonedx.org/bom"
IN_TOTO_LINK_V1 = "https://in-toto.io/Link/v1"
COSIGN_VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
OPENVEX = "https://openvex.dev/ns"
COSIGN_CUSTOM = "https://cosign.sigstore.dev/attestation/v1"

# cosign 2.5's names, in its help text's order
PREDICATE_TYPES: Mapping[str, str] = {
    "slsaprovenance": SLSA_PROVENANCE_V02,
    "slsaprovenance02": SLSA_PROVENANCE_V02,
    "slsaprovenance1": SLSA_PROVENANCE_V1,
    "link": IN_TOTO_LINK_V1,
    "spdx": SPDX_DOCUMENT,
    "spdxjson": SPDX_DOCUMENT,
    "cyclonedx": CYCLONEDX_BOM,
    "vuln": COSIGN_VULN,
    "openvex": OPENVEX,
    "custom": COSIGN_CUSTOM,
}
MAX_TYPE_URI = 1000  # characters
# RFC 3986's characters: unreserved, reserved, percent signs (no space, " < > \ or control)
_URI_TAIL = r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*"
_HTTP_URI = re.compile(r"https?://[A-Za-z0-9\-._~%!$&'()*+,;=:\[\]@]+(?:[/?#]" + _URI_TAIL + ")?")
_ANY_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9\-._~/?#\[\]@!$&'()*+,;=%]" + _URI_TAIL)


def predicate_type(named: str) -> str:
    """The predicate type URI of one of cosign's names, or ``named`` itself when it is an
    absolute http(s) URI; InputError naming the value and the accepted names otherwise."""
    found = PREDICATE_TYPES.get(named)
    if found is not None:
        return found
    if len(named) <= MAX_TYPE_URI and _HTTP_URI.fullmatch(named):
        return named
    raise InputError(f"--predicate-type {shown(named)}: not a predicate type: one of "
                     f"{', '.join(PREDICATE_TYPES)}, or a type URI (https://..., at most "
                     f"{MAX_TYPE_URI:,} characters, no space or control character)")


# -- predicate files ----------------------------------------------------------------------

MAX_PREDICATE_BYTES = 16 << 20  # actions/attest's cap on a predicate
MAX_PREDICATE_DEPTH = 64  # levels of nesting (Chains' provenance needs about 12)
MAX_PREDICATE_VALUES = 4_000_000  # a 16 MiB SBOM of short values stays below it
_TEXT_TYPES = ("spdx", "custom")  # cosign embeds these files as text
# top-level fields cosign requires (the fields of in-toto-golang 0.9's structs without omitempty)
_REQUIRED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "slsaprovenance": ("builder", "buildType"),
    "slsaprovenance02": ("builder", "buildType"),
    "slsaprovenance1": ("buildDefinition", "runDetails"),
    "link": ("_type", "name", "materials", "products", "byproducts", "command", "environment"),
}
_JSON_KINDS = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
               float: "a number", type(None): "null"}


def read_predicate(path: str, named: str, *, now: datetime | None = None) -> Any:
    """The predicate of type ``named`` (a cosign name or a type URI, as predicate_type takes)
    from the file at ``path``, as cosign 2.5's attest makes it (see the module's docstring);
    ``now`` (a datetime) stamps a ``custom`` predicate, the current time by default.
    InputError, one line naming the file, for anything else."""
    kind = named if named in PREDICATE_TYPES else None
    if kind is None:
        predicate_type(named)  # refuses what is neither a name nor a URI
    label = f"--predicate {shown(path, 200)}"
    data = read_regular_file(path, label, MAX_PREDICATE_BYTES, follow_links=False)
    if not data.strip():
        raise InputError(f"{label}: is empty" if not data else f"{label}: holds only white space")
    text = decode_text(data, label)
    if kind in _TEXT_TYPES:
        return text if kind == "spdx" else {"Data": text, "Timestamp": _rfc3339(now)}
    value = load_json(text, label, max_depth=MAX_PREDICATE_DEPTH,
                      max_nodes=MAX_PREDICATE_VALUES)
    if not isinstance(value, dict):
        what = f"a {kind} predicate" if kind else "a predicate of a type URI"
        raise InputError(f"{label}: {what} must be a JSON object, not "
                         f"{_JSON_KINDS.get(type(value), 'a value')}")
    try:  # a lone surrogate ("\ud800") is JSON but no UTF-8: the Statement could not be made
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{label}: holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape "
                         "without its pair), which is no Unicode text") from None
    missing = [k for k in _REQUIRED_FIELDS.get(kind or "", ()) if k not in value]
    if missing:
        raise InputError(f"{label}: a {kind} predicate needs the fields "
                         f"{', '.join(_REQUIRED_FIELDS[kind or ''])}; it lacks "
                         f"{', '.join(missing)}")
    return value


def _rfc3339(now: datetime | None) -> str:
    """Go's time.RFC3339 of a UTC time, as cosign stamps a custom predicate."""
    from datetime import UTC, datetime

    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- provenance: shapes of what the environment says -------------------------------------

GITHUB_BUILD_TYPE = "https://actions.github.io/buildtypes/workflow/v1"
TEKTON_BUILD_TYPE = "https://tekton.dev/chains/v2/slsa"
TEKTON_BUILDER_ID = "urn:container-sign-action:tekton"
MAX_ENV_VALUE = 1024  # characters of any one value

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_DIGITS = re.compile(r"[0-9]{1,20}")
_REPOSITORY_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,38})/(?!\.\.?(?:/|$))[A-Za-z0-9._-]{1,100}"
_REPOSITORY = re.compile(_REPOSITORY_NAME)
_WORKFLOW = re.compile(rf"({_REPOSITORY_NAME})/(\.github/workflows/[^@]+)@(.+)", re.DOTALL)
_REF_REFUSED = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(?:/|$)|[/.]$")
_SERVER = re.compile(r"https://[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::[0-9]{1,5})?")
_EVENT = re.compile(r"[a-z][a-z0-9_]{0,63}")
_RUNNER = re.compile(r"[a-z][a-z0-9-]{0,63}")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_DNS_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_GIT_URL = re.compile(r"(?:git\+)?(?:https?|ssh|git)://[A-Za-z0-9\-._~%!$&'()*+,;=:\[\]@]+"
                      r"(?:/" + _URI_TAIL + ")?")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,252}")


def _ref_name(text: str) -> bool:
    """A name git check-ref-format allows (a ref, a branch, a tag; a commit hash too)."""
    return text.isprintable() and not _REF_REFUSED.search(text) and not text.startswith("/")


def _git_ref(text: str) -> bool:
    """A full ref, below refs/ (GITHUB_REF)."""
    return text.startswith("refs/") and _ref_name(text)


def _workflow_path(path: str) -> bool:
    return path.isprintable() and not any(c.isspace() for c in path) and \
        ".." not in path.split("/") and not path.endswith("/")


def _workflow_ref(text: str) -> bool:
    found = _WORKFLOW.fullmatch(text)
    return bool(found and _workflow_path(found[2]) and _ref_name(found[3]))


# (the token's claim, the variable, the check, what the value must be); the server URL is
# the environment's in both cases, as the action reads it
_SERVER_FACT = ("", "GITHUB_SERVER_URL", _SERVER.fullmatch, "https://HOST[:PORT]")
_WORKFLOW_SHAPE = "owner/name/.github/workflows/FILE@REF"
_GITHUB_FACTS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("repository", "GITHUB_REPOSITORY", _REPOSITORY.fullmatch, "owner/name"),
    ("ref", "GITHUB_REF", _git_ref, "a git ref (refs/...)"),
    ("sha", "GITHUB_SHA", _COMMIT.fullmatch, "a commit hash (40 or 64 hex digits)"),
    ("workflow_ref", "GITHUB_WORKFLOW_REF", _workflow_ref, _WORKFLOW_SHAPE),
    ("job_workflow_ref", "GITHUB_WORKFLOW_REF", _workflow_ref, _WORKFLOW_SHAPE),
    ("event_name", "GITHUB_EVENT_NAME", _EVENT.fullmatch, "an event name"),
    ("repository_id", "GITHUB_REPOSITORY_ID", _DIGITS.fullmatch, "a number"),
    ("repository_owner_id", "GITHUB_REPOSITORY_OWNER_ID", _DIGITS.fullmatch, "a number"),
    ("runner_environment", "RUNNER_ENVIRONMENT", _RUNNER.fullmatch,
     "a runner kind (github-hosted, self-hosted)"),
    ("run_id", "GITHUB_RUN_ID", _DIGITS.fullmatch, "a number"),
    ("run_attempt", "GITHUB_RUN_ATTEMPT", _DIGITS.fullmatch, "a number"),
)

TEKTON_VARIABLES = ("TEKTON_TASK_RUN", "TEKTON_TASK_RUN_UID", "TEKTON_NAMESPACE",
                    "TEKTON_PIPELINE_RUN", "TEKTON_PIPELINE_RUN_UID")
_TEKTON_REQUIRED = TEKTON_VARIABLES[:3]


def _dns_name(text: str) -> bool:
    return len(text) <= 253 and bool(_DNS_NAME.fullmatch(text))


def _builder_id(text: str) -> bool:
    return len(text) <= MAX_TYPE_URI and bool(_ANY_URI.fullmatch(text))


def _git_url(text: str) -> bool:
    return len(text) <= MAX_ENV_VALUE and bool(_GIT_URL.fullmatch(text))


_TEKTON_CHECKS: Mapping[str, tuple[Callable[[str], Any], str]] = {
    "TEKTON_TASK_RUN": (_dns_name, "a Kubernetes object name"),
    "TEKTON_TASK_RUN_UID": (_UID.fullmatch, "a Kubernetes uid"),
    "TEKTON_NAMESPACE": (_DNS_LABEL.fullmatch, "a Kubernetes namespace"),
    "TEKTON_PIPELINE_RUN": (_dns_name, "a Kubernetes object name"),
    "TEKTON_PIPELINE_RUN_UID": (_UID.fullmatch, "a Kubernetes uid"),
    "TEKTON_GIT_URL": (_git_url, "a git URL (https://, http://, ssh:// or git://)"),
    "TEKTON_GIT_COMMIT": (_COMMIT.fullmatch, "a commit hash (40 or 64 hex digits)"),
    "TEKTON_BUILDER_ID": (_builder_id, "an absolute URI"),
}


def _checked(value: Any, check: Callable[[str], Any], named: str, shape: str) -> str:
    """``value`` when it is a string of the shape ``check`` accepts; InputError naming it
    (never quoting it) otherwise."""
    if not isinstance(value, str) or len(value) > MAX_ENV_VALUE or not check(value):
        raise InputError(f"--provenance: {named} is not {shape}")
    return value


# -- provenance ---------------------------------------------------------------------------

Parameters = Mapping[str, str | Sequence[str] | Mapping[str, str]]


def provenance(environ: Mapping[str, str], *, claims: Mapping[str, Any] | None = None,
               parameters: Parameters | None = None) -> dict[str, Any]:
    """The SLSA provenance v1 predicate of this CI run (GitHub Actions or Tekton; see the
    module's docstring), the same for every image the run attests: compute it once.
    ``claims``: the GitHub identity token's decoded claims, read instead of the variables as
    actions/attest-build-provenance reads them. ``parameters``: the Tekton run's params to
    record (name -> a string, a list of strings or an object of strings), in their order.
    InputError, one line, outside both contexts or when a value is missing or malformed."""
    github = environ.get("GITHUB_ACTIONS") == "true"
    tekton = [name for name in TEKTON_VARIABLES if environ.get(name)]
    if github and tekton:
        raise InputError(f"--provenance: both GitHub Actions (GITHUB_ACTIONS=true) and a Tekton "
                         f"step ({', '.join(tekton)}) are named by the environment: which "
                         "built the image is ambiguous")
    if github:
        return _github(environ, claims)
    if tekton:
        return _tekton(environ, parameters or {})
    raise InputError("--provenance needs GitHub Actions or a Tekton step: neither GITHUB_ACTIONS"
                     f"=true nor {', '.join(_TEKTON_REQUIRED)} (the Tekton Task sets them) "
                     "is set")


def _github(environ: Mapping[str, str], claims: Mapping[str, Any] | None) -> dict[str, Any]:
    if claims is None:
        found = [(fact[1], environ.get(fact[1]), fact) for fact in _GITHUB_FACTS]
    else:
        found = [(f"the identity token's {fact[0]} claim", claims.get(fact[0]), fact)
                 for fact in _GITHUB_FACTS]
    found.insert(0, (_SERVER_FACT[1], environ.get(_SERVER_FACT[1]), _SERVER_FACT))
    missing = dict.fromkeys(named for named, value, _ in found if value is None or value == "")
    if missing:
        raise InputError(f"--provenance on GitHub Actions needs {', '.join(missing)} (not set)")
    facts = {fact[0]: _checked(value, fact[2], named, fact[3]) for named, value, fact in found}
    server, repository, ref = facts[""], facts["repository"], facts["ref"]
    workflow = _WORKFLOW.fullmatch(facts["workflow_ref"])
    if workflow is None or workflow[1] != repository:  # (the first: checked above)
        raise InputError(f"--provenance: {found[4][0]} does not name a workflow of the "
                         f"repository {found[1][0]} names")
    return {
        "buildDefinition": {
            "buildType": GITHUB_BUILD_TYPE,
            "externalParameters": {"workflow": {"ref": ref,
                                                "repository": f"{server}/{repository}",
                                                "path": workflow[2]}},
            "internalParameters": {"github": {
                "event_name": facts["event_name"],
                "repository_id": facts["repository_id"],
                "repository_owner_id": facts["repository_owner_id"],
                "runner_environment": facts["runner_environment"]}},
            "resolvedDependencies": [{"uri": f"git+{server}/{repository}@{ref}",
                                      "digest": {"gitCommit": facts["sha"]}}],
        },
        "runDetails": {
            "builder": {"id": f"{server}/{facts['job_workflow_ref']}"},
            "metadata": {"invocationId": f"{server}/{repository}/actions/runs/"
                                         f"{facts['run_id']}/attempts/{facts['run_attempt']}"},
        },
    }


def _tekton(environ: Mapping[str, str], parameters: Parameters) -> dict[str, Any]:
    missing = [name for name in _TEKTON_REQUIRED if not environ.get(name)]
    if missing:
        raise InputError(f"--provenance in a Tekton step needs {', '.join(missing)} (not set; "
                         "the Task sets them from $(context.taskRun.*))")
    given = {name: _checked(environ[name], check, name, shape)
             for name, (check, shape) in _TEKTON_CHECKS.items() if environ.get(name)}
    for first, second in (("TEKTON_PIPELINE_RUN", "TEKTON_PIPELINE_RUN_UID"),
                          ("TEKTON_GIT_URL", "TEKTON_GIT_COMMIT")):
        if (first in given) != (second in given):
            raise InputError(f"--provenance: {first} and {second} go together: "
                             f"{second if first in given else first} is not set")
    runs: dict[str, Any] = {"namespace": given["TEKTON_NAMESPACE"]}
    if "TEKTON_PIPELINE_RUN" in given:
        runs["pipelineRun"] = {"name": given["TEKTON_PIPELINE_RUN"],
                               "uid": given["TEKTON_PIPELINE_RUN_UID"]}
    runs["taskRun"] = {"name": given["TEKTON_TASK_RUN"], "uid": given["TEKTON_TASK_RUN_UID"]}
    definition: dict[str, Any] = {
        "buildType": TEKTON_BUILD_TYPE,
        "externalParameters": {"runSpec": {"params": _params(parameters)}} if parameters else {},
        "internalParameters": {"tekton": runs},
    }
    if "TEKTON_GIT_URL" in given:
        definition["resolvedDependencies"] = [_git_source(given["TEKTON_GIT_URL"],
                                                          given["TEKTON_GIT_COMMIT"])]
    return {
        "buildDefinition": definition,
        "runDetails": {
            "builder": {"id": given.get("TEKTON_BUILDER_ID", TEKTON_BUILDER_ID)},
            "metadata": {"invocationID": runs.get("pipelineRun", runs["taskRun"])["uid"]},
        },
    }


def _git_source(url: str, commit: str) -> dict[str, Any]:
    """Chains' ``inputs/result`` dependency: ``git+`` before the URL and ``.git`` after it, as
    Chains writes a CHAINS-GIT_URL (attest.SPDXGit)."""
    uri = url if url.startswith("git+") else f"git+{url}"
    uri = uri if uri.endswith(".git") else f"{uri}.git"
    return {"name": "inputs/result", "uri": uri,
            "digest": {"sha1" if len(commit) == 40 else "sha256": commit}}


def _params(parameters: Parameters) -> list[dict[str, Any]]:
    """Tekton's params as Chains records a run spec's: ``{"name", "value"}`` in order."""
    out = []
    for name, value in parameters.items():
        if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
            raise ValueError(f"not a Tekton param name: {name!r}")
        if isinstance(value, str):
            kept: Any = value
        elif isinstance(value, Mapping):
            kept = {str(k): str(v) for k, v in value.items()}
        elif isinstance(value, Sequence):
            kept = [str(v) for v in value]
        else:
            raise TypeError(f"param {name}: a string, a list or an object, not {type(value)}")
        out.append({"name": name, "value": kept})
    return out
