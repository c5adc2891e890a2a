"""pubtools-sign 1.0.6's four commands on this project's signers, for pipelines that call them.

``pubtools-sign-msg-container-sign``, ``-msg-clear-sign``, ``-msg-blob-sign`` and
``pubtools-sign-cosign-container-sign`` take pubtools-sign's flags and print its JSON document
on stdout (``signer_result``, ``operation_results``, ``operation``, ``signing_keys``), or with
``--raw`` what pubtools-sign prints then; logs go to stderr. Each one is translated into the
entrypoint's own options and run through the same story (inputs, config, plan, signer, artifacts),
into a private folder unless ``--output-dir`` names one to keep. Where pubtools-sign hides a
failure (status ``ok`` with per-request errors, exit 0), these say ``error`` and exit 1:
README's "Replacing pubtools-sign" lists every difference.

An adapter at the edge: it imports the entrypoint, and nothing below imports it (make lint's
import contracts).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from entrypoint import main as run  # the one story of a run: this adapter sits above it
from signaction.config import CONFIG_PATHS
from signaction.errors import InputError
from signaction.inputs import take_list_flags

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# What each command prints per request with --raw: the reply field holding its result.
RAW_FIELD = {"container": "signed_claim", "clearsign": "signed_data", "blob": "signed_payload"}


@dataclass
class Translated:
    argv: list[str]  # the entrypoint's options
    kind: str  # "container", "clearsign" or "blob"
    signer: str
    raw: bool
    output_dir: str | None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as every input error of this project
        raise InputError(message)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=description, allow_abbrev=False,
                     epilog="Prints pubtools-sign's JSON result on stdout (logs on stderr). "
                     "exit codes: 0 all signed, 1 some signatures failed, 2 bad input or config.")
    parser.add_argument("--signing-key", action="append", metavar="KEY",
                        help="key fingerprint (its last 8 characters are sent) or key alias; "
                        "repeatable")
    parser.add_argument("--config-file", default=CONFIG_PATHS[0], metavar="PATH",
                        help="the pubtools-sign config file (default: %(default)s)")
    parser.add_argument("--raw", action="store_true",
                        help="print the signed data, one per line, instead of JSON")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="also keep the signatures, results.json (and for container "
                        "signatures the lookaside tree and verification files) in DIR")
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str], required: Sequence[str],
           optional: Sequence[str] = ()) -> argparse.Namespace:
    """argparse, with the repeatable flags taken out first in one pass (argparse is quadratic
    in their number; pipelines pass thousands of --reference)."""
    lists, rest = take_list_flags(argv, (*required, *optional), values=False)
    args = parser.parse_args(rest)
    for flag, values in lists.items():
        dest = flag[2:].replace("-", "_")
        setattr(args, dest, values + (getattr(args, dest) or []))
    missing = [flag for flag in required if not getattr(args, flag[2:].replace("-", "_"))]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    return args


def _msg_options(parser: argparse.ArgumentParser, *, names: bool = True,
                 signer_type: bool = True) -> None:
    parser.add_argument("--task-id", required=True, help="task id identifier (e.g. the "
                        "pipeline run)")
    parser.add_argument("--requester", help="requester instead of the one from the "
                        "certificate file")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    parser.add_argument("--deadline", metavar="SECONDS",
                        help="total seconds the signing may take (this project's addition)")
    if names:
        parser.add_argument("--signing-key-name", action="append", metavar="NAME",
                            help="signing key name, paired with --signing-key")
    if signer_type:
        parser.add_argument("--signer-type", default="single", choices=("single", "batch"),
                            type=str.lower)


def _common(args: argparse.Namespace, signer: str) -> list[str]:
    argv = ["--signer", signer, "--config-file", args.config_file,
            "--no-skip-signed", "--no-expand-index"]  # pubtools-sign signs what it is given
    argv += [a for key in args.signing_key for a in ("--signing-key", key)]
    for name in getattr(args, "signing_key_name", None) or ():
        argv += ["--signing-key-name", name]
    for flag in ("task_id", "requester", "deadline", "signer_type"):
        value = getattr(args, flag, None)
        if value:
            argv += [f"--{flag.replace('_', '-')}", value]
    if getattr(args, "log_level", None):
        argv += ["--log-level", args.log_level.lower()]
    return argv


def _translated(args: argparse.Namespace, argv: list[str], kind: str) -> Translated:
    return Translated(argv, kind, argv[1], args.raw, args.output_dir)


def _container(args: argparse.Namespace, signer: str) -> Translated:
    if len(args.digest) != len(args.reference):
        raise InputError(f"--reference has {len(args.reference)} value(s) but --digest has "
                         f"{len(args.digest)}: they are paired by position")
    argv = _common(args, signer)
    for reference, digest in zip(args.reference, args.digest, strict=True):
        argv += ["--reference", reference, "--digest", digest]
    for identity in getattr(args, "identity", None) or ():
        argv += ["--identity", identity]
    return _translated(args, argv, "container")


def msg_container_sign(argv: Sequence[str], work: str) -> Translated:
    p = _parser("pubtools-sign-msg-container-sign",
                "Sign container images over the messaging bus (pubtools-sign's command).")
    _msg_options(p)
    p.add_argument("--digest", action="append", help="digest to sign; repeatable")
    p.add_argument("--reference", action="append",
                   help="reference to sign, paired with --digest; repeatable")
    args = _parse(p, argv, required=("--signing-key", "--digest", "--reference"),
                  optional=("--signing-key-name",))
    return _container(args, "msg")


def cosign_container_sign(argv: Sequence[str], work: str) -> Translated:
    p = _parser("pubtools-sign-cosign-container-sign",
                "Sign container images with cosign (pubtools-sign's command).")
    p.add_argument("--digest", action="append", help="digest to sign; repeatable")
    p.add_argument("--reference", action="append",
                   help="reference (with its tag) of the image, paired with --digest")
    p.add_argument("--identity", action="append",
                   help="identity to sign each reference as, paired with --reference")
    args = _parse(p, argv, required=("--signing-key", "--digest"),
                  optional=("--reference", "--identity"))
    if not args.reference:  # pubtools-sign then signs REPO@DIGEST with a repository identity
        raise InputError("--reference is required here, with its tag: a signature whose "
                         "identity has no tag is refused by podman (see README, 'Replacing "
                         "pubtools-sign')")
    return _container(args, "cosign")


def msg_clear_sign(argv: Sequence[str], work: str) -> Translated:
    p = _parser("pubtools-sign-msg-clear-sign",
                "Clear-sign texts over the messaging bus (pubtools-sign's command).")
    _msg_options(p, names=False, signer_type=False)
    p.add_argument("--repo", help="repository reference sent with each request")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="a text to sign, or @FILE for a file's text")
    args = _parse(p, argv, required=("--signing-key",))
    if not args.inputs:
        raise InputError("nothing to sign: give texts, or @FILE for files")
    out = _common(args, "msg")
    if args.repo:
        out += ["--repo", args.repo]
    for n, value in enumerate(args.inputs, 1):
        if value.startswith("@"):
            out += ["--clear-sign-file", value[1:]]
        else:  # a text: a file of its own, named after its position
            path = os.path.join(work, "inputs", f"input-{n}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(value)
            out += ["--clear-sign-file", path]
    return _translated(args, out, "clearsign")


def msg_blob_sign(argv: Sequence[str], work: str) -> Translated:
    p = _parser("pubtools-sign-msg-blob-sign",
                "Sign files with detached signatures over the messaging bus (pubtools-sign's "
                "command).")
    _msg_options(p)
    p.add_argument("--blob-file", action="append", metavar="FILE",
                   help="file whose contents are signed; repeatable")
    args = _parse(p, argv, required=("--signing-key", "--blob-file"),
                  optional=("--signing-key-name",))
    if args.signer_type == "batch":
        raise InputError("--signer-type batch does not sign blobs (as in pubtools-sign)")
    files = [a for f in args.blob_file for a in ("--blob-file", f)]
    return _translated(args, _common(args, "msg") + files, "blob")


COMMANDS: dict[str, Callable[[Sequence[str], str], Translated]] = {
    "pubtools-sign-msg-container-sign": msg_container_sign,
    "pubtools-sign-msg-clear-sign": msg_clear_sign,
    "pubtools-sign-msg-blob-sign": msg_blob_sign,
    "pubtools-sign-cosign-container-sign": cosign_container_sign,
}


def pubtools_document(results: Mapping[str, Any]) -> dict[str, Any]:
    """pubtools-sign's stdout JSON: its four keys of results.json, in its order."""
    return {key: results[key] for key in ("signer_result", "operation_results", "operation",
                                          "signing_keys")}


def raw_lines(results: Mapping[str, Any], kind: str, signer: str) -> tuple[list[str], list[str]]:
    """(stdout lines, stderr lines) of ``--raw``: pubtools-sign prints each request's signed
    data, or its errors. A reply whose signature this project refused (results' entry failed)
    is not printed as signed: its error is. cosign: each cosign output."""
    if signer == "cosign":
        return [str(r) for r in results["operation_results"]], []
    replies = results["operation_results"]
    entries = results.get("files") or results.get("images") or []
    per_request = len(entries) == len(replies)  # single mode: entry i is request i's item
    out, err = [], []
    for n, reply in enumerate(replies):
        msg = reply[0]["msg"] if isinstance(reply, list) and reply else {}
        if msg.get("errors"):
            err += [str(e) for e in msg["errors"]]
        elif per_request and entries[n]["status"] != "ok":
            err.append(str(entries[n]["error"]))
        elif msg.get(RAW_FIELD[kind]):
            out.append(str(msg[RAW_FIELD[kind]]))
    return out, err


def main(command: str, argv: Sequence[str] | None = None,
         environ: Mapping[str, str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only this command's flags count: no action inputs, no GitHub or Tekton side effects (the
    # stdout of these commands is their JSON).
    environ = {k: v for k, v in (os.environ if environ is None else environ).items()
               if not k.startswith("INPUT_")}
    work = tempfile.mkdtemp(prefix="pubtools-sign-")
    try:
        try:
            cmd = COMMANDS[command](argv, work)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 2
        out = cmd.output_dir or os.path.join(work, "out")
        code = run([*cmd.argv, "--output-dir", out], environ, as_command=True)
        results_file = os.path.join(out, "results.json")
        if code == 2 or not os.path.exists(results_file):
            return code
        with open(results_file, encoding="utf-8") as f:
            results = json.load(f)
        if cmd.raw:
            lines, errors = raw_lines(results, cmd.kind, cmd.signer)
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stderr.write("".join(line + "\n" for line in errors))
            if results["signer_result"]["status"] == "error" and not errors:
                print(results["signer_result"]["error_message"], file=sys.stderr)
        else:
            sys.stdout.write(json.dumps(pubtools_document(results)) + "\n")
        sys.stdout.flush()
        return code
    finally:
        shutil.rmtree(work, ignore_errors=True)



# The console scripts (pyproject.toml's [project.scripts]): a return value is the exit code.

def msg_container_sign_command() -> int:
    return main("pubtools-sign-msg-container-sign")


def msg_clear_sign_command() -> int:
    return main("pubtools-sign-msg-clear-sign")


def msg_blob_sign_command() -> int:
    return main("pubtools-sign-msg-blob-sign")


def cosign_container_sign_command() -> int:
    return main("pubtools-sign-cosign-container-sign")
