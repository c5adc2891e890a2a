"""One argument model, two front doors: command-line flags and GitHub action inputs.

Every option is declared once in OPTIONS. From that table come the argparse parser (flags named
like pubtools-sign's) and the reader of ``INPUT_*`` environment variables, in both the runner's
form (``INPUT_TASK-ID``: hyphen kept) and the shell-friendly form (``INPUT_TASK_ID``). A flag
given on the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import CREATOR
from .errors import InputError
from .urls import check_lookaside_url

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Option:
    input: str  # action input name, e.g. "task-id"
    flag: str  # command-line flag, e.g. "--task-id"
    kind: str  # "str" | "list" | "bool" | "seconds"
    help: str
    default: object = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    @property
    def attr(self) -> str:
        return self.input.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    # (its choices are the signers the run has: parse_inputs' ``signers``)
    Option("mode", "--mode", "str", "sign: make signatures; verify: sign nothing, check that "
           "each image's published signatures verify for every key, as podman would (gpg/msg: "
           "at --lookaside-url; cosign: the .sig attachment in the registry); needs no secret; "
           "merge: combine the output folders of sharded runs (--shard-dir, or "
           "'merge --output-dir OUT DIR...') into one",
           default="sign", choices=("sign", "verify", "merge")),
    Option("signer", "--signer", "str", "which signer makes the signatures", default="gpg"),
    Option("signer-type", "--signer-type", "str", "msg signer mode: single (one request per "
           "image and key) or batch (msg_batch_signer: chunk_size claims per request)",
           default="single", choices=("single", "batch")),
    Option("config-file", "--config-file", "str", "YAML config file (pubtools-sign's conf.yaml "
           "is accepted unchanged). Default: ~/.config/pubtools-sign/conf.yaml, then "
           "/etc/pubtools-sign/conf.yaml, if they exist", metavar="PATH"),
    Option("config", "--config", "str", "the config as inline YAML, instead of --config-file",
           metavar="YAML"),
    Option("references", "--reference", "list", "image to sign, fully qualified with its tag: "
           "the identity written into the signature (repeatable; paired with --digest by "
           "position)", metavar="REF"),
    Option("digests", "--digest", "list", "manifest digest of the image, sha256:<64 hex> "
           "(repeatable; the Nth digest belongs to the Nth --reference)", metavar="DIGEST"),
    Option("images", "--image", "list", "image as one string, registry/ns/name:tag@sha256:<hex>; "
           "without @digest the tag is resolved in the registry; ' as IDENTITY' signs it for "
           "another name (repeatable; the action input takes one per line)",
           metavar="REF[@DIGEST][ as IDENTITY]"),
    Option("identities", "--identity", "list", "identity to sign the Nth --reference as, when the "
           "image is published under another name than where it is now (e.g. "
           "registry.example.com/ns/app:1.0 for an image at quay.io/staging/app:1.0); paired "
           "with --reference by position, as pubtools-sign's --identity. --image lines and "
           "images files say it with ' as IDENTITY' and an 'identity' key", metavar="REF"),
    Option("images-file", "--images-file", "str", "YAML or JSON file holding a list of "
           "{reference, digest, identity} entries (digest and identity optional)",
           metavar="FILE"),
    Option("clear-sign-files", "--clear-sign-file", "list", "msg signer: a text file to "
           "clear-sign instead of images (repeatable); its signed copy is written as "
           "<output-dir>/NAME.asc (with several keys NAME.<key id>.asc)", metavar="FILE"),
    Option("blob-files", "--blob-file", "list", "msg signer: a file to sign with a detached "
           "signature instead of images (repeatable); the signature is written as "
           "<output-dir>/NAME.sig (with several keys NAME.<key id>.sig)", metavar="FILE"),
    Option("repo", "--repo", "str", "clear-sign: the repository sent with each request "
           "(pubtools-sign's --repo)", metavar="REPO"),
    Option("signing-keys", "--signing-key", "list", "key to sign with: a key alias from the "
           "config, or the key itself (a GPG fingerprint or key id). Repeatable: every image is "
           "signed with every key", metavar="KEY"),
    Option("signing-key-names", "--signing-key-name", "list", "name of the signing key, sent to "
           "a signing server as sig_keyname (repeatable; paired with --signing-key by position)",
           metavar="NAME"),
    Option("task-id", "--task-id", "str", "identifier of this signing task (e.g. the pipeline "
           "run), sent along with signing requests", metavar="ID"),
    Option("requester", "--requester", "str", "who asks for the signatures (default: the CN of "
           "the messaging client certificate, else the user)", metavar="NAME"),
    Option("deadline", "--deadline", "seconds", "total seconds the signing may take; what is not "
           "signed by then is reported as failed, and the run ends (msg signer; also a config "
           "key)", metavar="SECONDS"),
    Option("expand-index", "--expand-index", "bool", "sign every platform manifest of a "
           "multi-arch image (index / manifest list) as well as the index: podman checks the "
           "platform it pulls. Default: on for cosign, off for gpg and msg (whose callers "
           "usually list every digest; needs registry access)"),
    Option("skip-signed", "--skip-signed", "bool", "skip what already has a valid signature by "
           "the same key for the same identity (cosign: in the registry)", default=True),
    Option("lookaside-url", "--lookaside-url", "str", "gpg and msg signers, with skip-signed: "
           "where published signatures are (http(s):// or file://; {registry} stands for the "
           "registry folder name, as in the output folder); an image with a signature-N there "
           "that verifies with the signing key for its digest and identity is skipped",
           metavar="URL"),
    Option("verify-keyring", "--verify-keyring", "str", "verify mode, gpg and msg: the "
           "OpenPGP public keyring (binary or armored) to check signatures with, instead of "
           "gpg_signer's keys or msg_signer.verify_keyring", metavar="FILE"),
    Option("certificate-identity", "--certificate-identity", "str", "verify mode, cosign "
           "keyless: the identity (email or URI) the Fulcio certificate must name (as cosign "
           "verify's flag)", metavar="IDENTITY"),
    Option("certificate-oidc-issuer", "--certificate-oidc-issuer", "str", "verify mode, "
           "cosign keyless: the OIDC issuer the Fulcio certificate must name (as cosign "
           "verify's flag)", metavar="URL"),
    Option("trusted-root", "--trusted-root", "str", "cosign: Sigstore's trusted_root.json "
           "(Fulcio CA chains, Rekor and CT log keys), instead of cosign_signer's root files "
           "(also the config key cosign_signer.trusted_root_file)", metavar="FILE"),
    Option("signing-config", "--signing-config", "str", "cosign: Sigstore's "
           "signing_config.json (v0.2: the Fulcio, OIDC and Rekor URLs; also the config key "
           "cosign_signer.signing_config_file)", metavar="FILE"),
    Option("provenance", "--provenance", "bool", "cosign: attach to each signed image a SLSA "
           "provenance v1 attestation built from the CI run (GitHub Actions: the workflow, "
           "repository, commit and run, as GitHub's attest-build-provenance writes them; "
           "Tekton: the PipelineRun and TaskRun); refused elsewhere", default=False),
    Option("predicates", "--predicate", "list", "cosign: a predicate file (JSON) to attest for "
           "each signed image, as an in-toto Statement signed like the signature "
           "(repeatable; paired with --predicate-type by position)", metavar="FILE"),
    Option("predicate-types", "--predicate-type", "list", "the type of the Nth --predicate: "
           "cosign's names (slsaprovenance1, slsaprovenance, spdxjson, spdx, cyclonedx, "
           "openvex, vuln, link, custom) or a type URI", metavar="TYPE"),
    Option("attestation-types", "--attestation-type", "list", "verify mode, cosign: require "
           "for every image an attestation of this predicate type (a name as --predicate-type "
           "takes, or a URI) signed by the key or keyless identity, about the image's digest "
           "(repeatable)", metavar="TYPE"),
    Option("provenance-repository", "--provenance-repository", "str", "verify mode, with "
           "--attestation-type slsaprovenance1: the source repository the provenance must "
           "name (owner/name on github.com, or its https:// URL)", metavar="REPO"),
    Option("provenance-workflow", "--provenance-workflow", "str", "verify mode, with "
           "--provenance-repository: the workflow file the provenance must name "
           "(e.g. .github/workflows/release.yml)", metavar="PATH"),
    Option("upload", "--upload", "bool", "cosign: attach the signatures in the registry. With "
           "false they are only written to the output folder, with a script that attaches "
           "them later (also the config key cosign_signer.upload)"),
    Option("output-dir", "--output-dir", "str", "folder for signatures, results.json and "
           "verification files ({shard} stands for K with --shard K/N: one folder per shard)",
           default="signatures", metavar="DIR"),
    Option("shard", "--shard", "str", "sign only this run's share of the images, K of N (e.g. "
           "3/8), for a CI matrix of N jobs: the whole plan is checked, then the images whose "
           "hash (identity, digest) falls in share K are signed, all keys and platforms of an "
           "image in the same share; results.json records the share for merge",
           metavar="K/N"),
    Option("shard-dirs", "--shard-dir", "list", "merge mode: an output folder of a sharded run, "
           "or a pattern of them such as 'shards/*' (repeatable; every shard 1..N of one "
           "plan)", metavar="DIR"),
    Option("dry-run", "--dry-run", "bool", "plan and validate, print what would be signed, "
           "sign nothing", default=False),
    Option("tekton-results", "--tekton-results", "str", "Tekton only: folder to write the "
           "step's results into (status, signed-count, failed-count, results-file, "
           "signatures-dir; a few bytes each). Default: /tekton/results when it exists and is "
           "writable, else no results are written", metavar="DIR"),
    Option("log-level", "--log-level", "str", "how much to log", default="info",
           choices=LOG_LEVELS),
)

EPILOG = """\
examples:
  # sign one image with a local GPG key; signatures land in ./out
  %(prog)s --signer gpg --config-file conf.yaml \\
      --reference registry.example.com/ns/app:1.0 \\
      --digest sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef \\
      --signing-key 3A1B2C3D4E5F60718293A4B5C6D7E8F901234567 --task-id t1 --output-dir out

  # cosign: a multi-arch image by tag (looked up, then the index and every platform signed
  # by digest); the key's passphrase comes from COSIGN_PASSWORD
  %(prog)s --signer cosign --config-file conf.yaml --image quay.io/ns/app:1.0 \\
      --signing-key cosign.key --task-id t1 --output-dir out

  # cosign keyless in a GitHub workflow, attesting the run's SLSA provenance and an SBOM;
  # then check all three as a consumer would
  %(prog)s --signer cosign --image ghcr.io/acme/app:1.0 --signing-key keyless \\
      --provenance --predicate sbom.spdx.json --predicate-type spdxjson
  %(prog)s --mode verify --signer cosign --image ghcr.io/acme/app:1.0 \\
      --signing-key keyless --certificate-identity IDENTITY --certificate-oidc-issuer URL \\
      --attestation-type slsaprovenance1 --attestation-type spdxjson

  # see what a list of 10,000 images would do, without signing
  %(prog)s --images-file images.yaml --signing-key prod --dry-run

  # a list given as one run of arguments, as a Tekton step expands an array param
  %(prog)s --signing-key prod --dry-run \\
      --values references r.io/ns/a:1 r.io/ns/b:1 --values digests sha256:... sha256:...

As a GitHub action, each option is an input of the same name (task-id, signing-keys, ...);
multi-valued inputs take one value per line. Flags win over INPUT_* variables.
exit codes: 0 all signed, 1 some signatures failed (the others are kept), 2 bad input or config.
"""


@dataclass(frozen=True)
class Inputs:
    mode: str = "sign"
    signer: str = "gpg"
    signer_type: str = "single"
    config_file: str | None = None
    config: str | None = None
    references: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    identities: tuple[str, ...] = ()
    images_file: str | None = None
    clear_sign_files: tuple[str, ...] = ()
    blob_files: tuple[str, ...] = ()
    repo: str | None = None
    signing_keys: tuple[str, ...] = ()
    signing_key_names: tuple[str, ...] = ()
    task_id: str | None = None
    requester: str | None = None
    deadline: float | None = None
    expand_index: bool | None = None  # None: the signer's default
    skip_signed: bool = True
    lookaside_url: str | None = None
    verify_keyring: str | None = None
    certificate_identity: str | None = None
    certificate_oidc_issuer: str | None = None
    trusted_root: str | None = None
    signing_config: str | None = None
    provenance: bool = False
    predicates: tuple[str, ...] = ()
    predicate_types: tuple[str, ...] = ()
    attestation_types: tuple[str, ...] = ()
    provenance_repository: str | None = None
    provenance_workflow: str | None = None
    upload: bool | None = None  # None: the config's, else true
    output_dir: str = "signatures"
    shard: str | None = None
    shard_dirs: tuple[str, ...] = ()
    dry_run: bool = False
    tekton_results: str | None = None
    log_level: str = "info"
    # Where each option came from ("flag", "input" or "default"), so errors can say where.
    origin: Mapping[str, str] = field(default_factory=dict, compare=False)
    # Flags found among the values after --values (read as values): the run refuses them.
    misplaced: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def numbered(self, attr: str) -> list[tuple[str, str]]:
        """The values of a list option, each with where it came from: ``("--reference #2",
        ...)`` or ``("input 'references' line 2", ...)``. Blank lines of an input are skipped
        (so that a list can end with a newline); a blank flag value is an error."""
        values = getattr(self, attr)
        if self.origin.get(attr) == "input":
            return [(f"{self.where(attr)} line {n}", v) for n, v in enumerate(values, 1) if v]
        numbered = [(f"{self.where(attr)} #{n}", v) for n, v in enumerate(values, 1)]
        for origin, value in numbered:
            if not value.strip():
                raise InputError(f"{origin}: the value is empty")
        return numbered

    def check_values_last(self) -> None:
        """--values takes every argument after it as a value: a flag there was not obeyed."""
        if self.misplaced:
            name, arg = self.misplaced[0]
            raise InputError(f"{VALUES_FLAG} {name}: {arg[:60]!r} is read as a value, not as a "
                             f"flag: everything after {VALUES_FLAG} is values, so {VALUES_FLAG} "
                             f"must come last (put {arg.partition('=')[0][:40]} before it)")

    def where(self, attr: str) -> str:
        """How to name an option in an error message: ``--reference`` or ``input 'references'``."""
        opt = _BY_ATTR[attr]
        return f"input {opt.input!r}" if self.origin.get(attr) == "input" else opt.flag


_BY_ATTR = {o.attr: o for o in OPTIONS}
_LISTS = {o.input: o for o in OPTIONS if o.kind == "list"}  # --values NAME: by input name
VALUES_FLAG = "--values"
_FLAGS = frozenset([o.flag for o in OPTIONS] + ["--no-" + o.flag[2:] for o in OPTIONS
                                                 if o.kind == "bool"] + ["-h", "--help",
                                                                         "--version"])


def _default_text(opt: Option) -> str:
    """What --help says of a default: nothing when there is none, on/off for a switch."""
    if opt.default is None or opt.default is False:
        return ""
    return " (default: on)" if opt.default is True else f" (default: {opt.default})"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other input error
        raise InputError(message)


def _with_signers(signers: Mapping[str, str] | None) -> tuple[Option, ...]:
    """OPTIONS, with the signers the run has (name -> what it signs with) as --signer's
    choices, each named in its help."""
    if not signers:
        return OPTIONS
    listed = ", ".join(f"{name} ({summary})" if summary else name
                       for name, summary in signers.items())
    return tuple(dataclasses.replace(o, help=f"{o.help}: {listed}", choices=tuple(signers))
                 if o.attr == "signer" else o for o in OPTIONS)


def build_parser(prog: str | None = None, options: Sequence[Option] = OPTIONS
                 ) -> argparse.ArgumentParser:
    """The parser of every option; ``prog`` (in usage lines) defaults to how this program was
    started: ``entrypoint.py``, or ``container-sign`` (the installed command)."""
    parser = _Parser(
        prog=prog,
        description="Sign container images (atomic GPG signatures via a local key or a signing "
        "server over AMQP, or cosign signatures) and write the signatures, results.json and "
        "verification files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    for opt in options:
        extra = _default_text(opt)
        if opt.kind == "bool":
            parser.add_argument(opt.flag, dest=opt.attr, action=argparse.BooleanOptionalAction,
                                default=None, help=opt.help + extra)
        elif opt.kind == "list":
            parser.add_argument(opt.flag, dest=opt.attr, action="append", default=None,
                                metavar=opt.metavar, help=opt.help)
        elif opt.kind == "seconds":
            parser.add_argument(opt.flag, dest=opt.attr, default=None, metavar=opt.metavar,
                                help=opt.help, type=functools.partial(_seconds_flag, opt.flag))
        else:
            parser.add_argument(opt.flag, dest=opt.attr, default=None, metavar=opt.metavar,
                                choices=opt.choices, help=opt.help + extra,
                                type=str.lower if opt.choices else str)
    parser.add_argument(
        VALUES_FLAG, nargs="+", metavar=("NAME", "VALUE"),
        help="give the list option NAME (" + ", ".join(_LISTS) + ") every argument that "
        "follows, up to the next --values: '--values references A B' is '--reference A "
        "--reference B'. For callers that expand an array into arguments (Tekton: "
        "$(params.references[*])). Everything after the first --values is values, never "
        "flags: put it last. No values means not given")
    parser.add_argument("--version", action="version", version=CREATOR)
    return parser


def _env_value(environ: Mapping[str, str], name: str) -> str | None:
    """The runner's form INPUT_TASK-ID first, then INPUT_TASK_ID; empty means not given."""
    key = "INPUT_" + name.upper().replace(" ", "_")
    for candidate in (key, key.replace("-", "_")):
        value = environ.get(candidate)
        if value is not None and value.strip() != "":
            return value
    return None


def _parse_bool(text: str, where: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise InputError(f"{where}: {text.strip()!r} is not a boolean (true or false)")


def _seconds_flag(flag: str, text: str) -> float:
    return _parse_seconds(text, flag)


def _parse_seconds(text: str, where: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise InputError(f"{where}: {text.strip()!r} is not a positive number of seconds")
    return value


def _from_env(opt: Option, raw: str) -> object:
    where = f"input {opt.input!r}"
    if opt.kind == "bool":
        return _parse_bool(raw, where)
    if opt.kind == "seconds":
        return _parse_seconds(raw, where)
    if opt.kind == "list":
        # One value per line. Blank lines are kept here (and skipped by numbered()) so that an
        # error can name the line as the user sees it in the workflow file.
        return tuple(line.strip() for line in raw.splitlines())
    value = raw.strip()
    if opt.choices:
        value = value.lower()
        if value not in opt.choices:
            raise InputError(f"{where}: {raw.strip()!r} is not one of {', '.join(opt.choices)}")
    return value


def take_list_flags(argv: Sequence[str], flags: Iterable[str] | None = None,
                    values: bool = True, misplaced: list | None = None,
                    ) -> tuple[dict[str, list[str]], list[str]]:
    """Pull ``--reference X`` / ``--digest=X`` ... (``flags``; default: every list option's) out
    of argv in one pass: argparse takes time quadratic in the number of flags, and pubtools-sign
    users pass thousands of them. With ``values``, everything from the first ``--values`` on is
    list values (see _take_values; flags among them are added to ``misplaced``)."""
    lists: dict[str, list[str]] = {f: [] for f in flags} if flags is not None else \
        {o.flag: [] for o in OPTIONS if o.kind == "list"}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if values and arg == VALUES_FLAG:
            _take_values(argv[i + 1:], lists, [] if misplaced is None else misplaced)
            break
        flag, eq, value = arg.partition("=")
        if flag in lists and (eq or i + 1 < len(argv)):
            lists[flag].append(value if eq else argv[i + 1])
            i += 1 if eq else 2
            continue
        rest.append(arg)  # anything else, and a list flag missing its value: argparse's job
        i += 1
    return lists, rest


def _take_values(tail: Sequence[str], lists: dict[str, list[str]],
                 misplaced: list[tuple[str, str]]) -> None:
    """``NAME V1 V2 ... [--values NAME2 W1 ...]``: each run of values goes to the list option
    NAME (an input name: references, signing-keys, ...), after whatever its flag gave. A value is
    never read as a flag, so an array param can't inject options; only ``--values`` itself is
    special here. A value that is one of our flags is noted in ``misplaced`` (the run refuses
    it: --values was not given last)."""
    target: list[str] | None = None
    name = ""
    for arg in tail:
        if target is None:
            opt = _LISTS.get(arg)
            if opt is None:
                raise InputError(f"{VALUES_FLAG}: {arg[:60]!r} is not a list option (one of "
                                 f"{', '.join(_LISTS)})")
            target, name = lists[opt.flag], arg
        elif arg == VALUES_FLAG:
            target = None
        else:
            if arg[:1] == "-" and arg.partition("=")[0] in _FLAGS:
                misplaced.append((name, arg))
            target.append(arg)
    if target is None:
        raise InputError(f"{VALUES_FLAG}: expected a list option name (one of "
                         f"{', '.join(_LISTS)})")


def parse_inputs(argv: Sequence[str], environ: Mapping[str, str],
                 signers: Mapping[str, str] | None = None) -> Inputs:
    """Merge command-line flags over action inputs over defaults. ``signers``: the signers
    this run has, by name, with what each signs with (for --help); --signer must be one of
    them (None: not checked here). Raises InputError."""
    options = _with_signers(signers)
    misplaced: list[tuple[str, str]] = []
    lists, rest = take_list_flags(list(argv), misplaced=misplaced)
    args = build_parser(options=options).parse_args(rest)
    for opt in options:
        if opt.kind == "list" and lists[opt.flag]:
            setattr(args, opt.attr, lists[opt.flag])
    values: dict[str, Any] = {}  # (each of its option's kind)
    origin: dict[str, str] = {}
    for opt in options:
        flag_value = getattr(args, opt.attr)
        if flag_value is not None:
            values[opt.attr] = tuple(flag_value) if opt.kind == "list" else flag_value
            origin[opt.attr] = "flag"
            continue
        raw = _env_value(environ, opt.input)
        if raw is not None:
            values[opt.attr] = _from_env(opt, raw)
            origin[opt.attr] = "input"
        else:
            origin[opt.attr] = "default"
            if opt.default is not None:
                values[opt.attr] = opt.default
    if values.get("lookaside_url"):
        check_lookaside_url(values["lookaside_url"], "--lookaside-url" if origin[
            "lookaside_url"] == "flag" else "input 'lookaside-url'")
    return Inputs(**values, origin=origin, misplaced=tuple(misplaced))


MERGE_COMMAND = "merge"


def merge_argv(argv: Sequence[str]) -> list[str]:
    """``merge [FLAGS] DIR...`` (the merge command) as the flags of merge mode: each DIR is a
    ``--shard-dir``. A flag that takes a value takes the next argument, as argparse would."""
    valued = {o.flag for o in OPTIONS if o.kind != "bool"}
    args = ["--mode", "merge"]
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            args += [f"--shard-dir={d}" for d in argv[i + 1:]]
            break
        if arg.startswith("-"):
            takes = arg in valued and i + 1 < len(argv)
            args += [arg, argv[i + 1]] if takes else [arg]
            i += 2 if takes else 1
            continue
        args.append(f"--shard-dir={arg}")
        i += 1
    return args
