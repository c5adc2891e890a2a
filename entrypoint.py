#!/usr/bin/env python3
"""Sign container images: inputs -> config -> plan -> signer -> artifacts -> outputs.

The same entry serves a GitHub action (inputs from INPUT_* variables), a Tekton step and a plain
``docker run`` or local run (command-line flags). ``--help`` lists every option.
Exit codes: 0 all signed, 1 some signatures failed (the rest are kept), 2 bad input or config.
``--mode verify`` signs nothing: the same inputs, config and plan, then each (image, key)'s
published signature is checked as podman would check it; 0 all verified, 1 some not.
``--shard K/N`` signs one share of the plan (signaction.shard); ``merge --output-dir OUT DIR...``
(``--mode merge``) makes the shards' folders into the one an unsharded run leaves
(signaction.merge); 2 when they are not the shards of one plan.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

if sys.version_info < (3, 11):
    print(f"error: Python 3.11 or later is needed (this is {sys.version.split()[0]})",
          file=sys.stderr)
    sys.exit(2)
# Found, not imported: a run imports what it needs when it needs it (tests/test_cold_start.py).
for _package in ("jsonschema", "yaml"):
    if importlib.util.find_spec(_package) is None:  # e.g. the system's python3, not the venv
        print(f"error: the Python package {_package!r} is missing: run this with the project's "
              "virtual environment (make venv; .venv/bin/python entrypoint.py ...), or the image",
              file=sys.stderr)
        sys.exit(2)

from signaction import CREATOR  # noqa: E402
from signaction.artifacts import Artifacts  # noqa: E402
from signaction.config import Config, load_config  # noqa: E402
from signaction.errors import InputError  # noqa: E402
from signaction.github import (  # noqa: E402
    Actions,
    markdown_text,
    summary_markdown,
    verify_summary_markdown,
)
from signaction.inputs import MERGE_COMMAND, Inputs, merge_argv, parse_inputs  # noqa: E402
from signaction.outside import SafeFormatter, scrub  # noqa: E402
from signaction.plan import Plan, build_plan  # noqa: E402
from signaction.resolve import complete_plan, needs_registry  # noqa: E402
from signaction.results import (  # noqa: E402
    FAILED,
    Entry,
    Recorder,
    label,
    results_json,
    verdict_json,
    verify_results_json,
)
from signaction.shard import Shard, Share, manifest, parse_shard, take_share  # noqa: E402
from signaction.signing import INVALID, VERIFIED, Check, FollowUp, Verdict  # noqa: E402
from signaction.tekton import TektonResults  # noqa: E402
from signers import available, signer_class, summaries  # noqa: E402
from signers.base import Options, RunRegistry, Signer, skip_signed  # noqa: E402
from signers.tools import run_pool  # noqa: E402

log = logging.getLogger("signaction")
VERIFY_WORKERS = 16  # signatures fetched and checked at once in verify mode (one HTTP session)
MAX_ANNOTATIONS = 50  # failures annotated one by one (GitHub shows 10 a step); then one for all


class Interrupted(Exception):
    pass


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None, *,
         as_command: bool = False) -> int:
    """One run. ``as_command``: a plain command whose stdout is data (the pubtools-sign
    commands): no GitHub workflow commands or outputs, no Tekton results, logs on stderr."""
    environ = os.environ if environ is None else environ
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [MERGE_COMMAND]:  # merge --output-dir OUT SHARD_DIR...
        argv = merge_argv(argv[1:])
    actions = Actions({} if as_command else environ)
    tekton = TektonResults(None) if as_command else TektonResults.find(argv, environ)

    # 1-3. Inputs, config, plan: everything is checked before anything is written or signed.
    try:
        inputs = parse_inputs(argv, environ, summaries())
        if inputs.mode == "merge":  # sharded runs' output folders made into one
            return _merge(inputs, actions, tekton)
        inputs, shard = _shard_of(inputs)
        config = load_config(inputs.config_file, inputs.config, environ)
        actions.mask(config.secrets)  # before any log line
        _setup_logging(inputs.log_level, to_stdout=actions.active)
        registry = _registry(config, environ)  # the run's one client, for planning and signer
        signer = _signer(inputs, config, registry, environ)
        actions.mask(signer.secrets())
        whole = plan = build_plan(inputs, signer.key_aliases)
        verify = inputs.mode == "verify"  # the same plan, checked instead of signed
        share = _share(shard, plan, verify)  # --shard K/N: only this run's share is signed
        plan = share.plan if share else plan
        expand = (verify or signer.expands_index) if inputs.expand_index is None \
            else inputs.expand_index
        _check_files(plan, signer, verify)
        if plan.images and needs_registry(plan, expand):
            # tags to digests, multi-arch images to their platforms
            plan = complete_plan(plan, registry.client, expand=expand)
        if verify:  # the format finds and checks; the signer gives public keys, no secret
            check = signer.format.verifier(registry.client, inputs, signer.trusted_keys(plan))
        else:
            signer.preflight(plan)
        log.info("%s: %s signer, config from %s", CREATOR, signer.name, config.source)
        if inputs.dry_run:
            return _dry_run(plan, signer, actions, tekton, "verify" if verify else "sign", share)
        artifacts = Artifacts(inputs.output_dir)
        # proven writable, before anything is signed (verify mode writes results.json only)
        artifacts.create(() if verify else signer.format.own_paths)
    except InputError as e:
        return _invalid(actions, tekton, str(e))

    if verify:  # 4-6 of verify mode: each (image, key) checked, results.json, outputs
        return _verify(check, plan, artifacts, inputs, signer.name, actions, tekton)

    # 4. Signer: each outcome is recorded (and its signature written) as soon as it arrives.
    recorder = Recorder(artifacts, plan, signer.format)
    error = _sign(signer, plan, recorder, actions)

    # 5. Artifacts: results.json (always, even when everything failed) and verification files.
    entries = recorder.entries(unfinished_reason=f"not signed: {error or 'no outcome reported'}")
    results = results_json(inputs, plan, entries, recorder.details(signer.slots(plan)),
                           signer.name, signer.stats, error)
    if share:  # what merge needs to put the shards together
        results["shard"] = {**manifest(share, plan.images), "root": str(artifacts.root.resolve())}
    unwritten = _write_artifacts(artifacts, whole, signer, results, entries)

    # 6. Outputs: step outputs, annotations, summary, exit code.
    return _report(actions, tekton, inputs, results, _Entries(entries),
                   str(artifacts.root / "results.json"), unwritten)


def _registry(config: Config, environ: Mapping[str, str]) -> RunRegistry:
    """The registry settings every part of the run uses (section ``registry``, or
    pubtools-sign's registry_* keys under cosign_signer) and the client built from them, on
    first use; checked now when the config has those sections (the defaults cannot be wrong)."""
    registry = RunRegistry(config.section("registry"), config.section("cosign_signer"), environ)
    if registry.configured:
        # (here, not at the top: signaction.registry imports requests and cryptography)
        from signaction.registry import RegistryError
        try:
            registry.check()  # a wrong setting is bad input (exit 2) before anything runs
        except RegistryError as e:  # e.g. a user without a password
            raise InputError(f"config: registry: {e}") from None
    return registry


def _signer(inputs: Inputs, config: Config, registry: RunRegistry,
            environ: Mapping[str, str]) -> Signer:
    signer_cls = signer_class(inputs.signer)
    if not signer_cls.attests:
        for attr in ("provenance", "predicates", "predicate_types", "attestation_types",
                     "provenance_repository", "provenance_workflow"):
            if getattr(inputs, attr):
                raise InputError(f"{inputs.where(attr)}: attestations are sigstore's: the "
                                 f"cosign signer attaches and checks them, the "
                                 f"{signer_cls.name} signer makes atomic signatures only")
    return signer_cls(config.section(signer_cls.config_section(inputs)),
                      Options(inputs, environ, registry))


def _write_artifacts(artifacts: Artifacts, plan: Plan, signer: Signer, results: dict,
                     entries: Sequence[Entry]) -> list[str]:
    """results.json, the verification files and what the signer's format writes after the run
    (e.g. an attach script), each written if it can be (a full disk must not cost the others);
    returns what could not be written, and why. ``plan``: the whole plan, when this run signed
    a share of it (verification/ is the same for every shard: merge checks it)."""
    writes: list[FollowUp] = [("results.json", lambda: artifacts.write_results(results))]
    if plan.images:  # (clear-signed and detached file signatures carry no policy)
        hosts = sorted({i.reference.host for i in plan.images})
        writes.append(("verification/", lambda: artifacts.write_verification(
            (i.reference.repository for i in plan.images),
            signer.format.verification(artifacts, hosts, signer.public_keys(plan)),
            signer.inputs.lookaside_url)))
    writes += signer.format.after_run(artifacts, entries)
    unwritten = []
    for name, write in writes:
        try:
            write()
        except (OSError, ValueError) as e:
            unwritten.append(scrub(f"could not write {name}: {getattr(e, 'strerror', None) or e}"))
    return unwritten


def _sign(signer: Signer, plan: Plan, recorder: Recorder, actions: Actions) -> str | None:
    """Run the signer; return why it stopped early, if it did."""
    log.info("signing %d %s(s) with %d key(s): %d signature(s)%s",
             len(plan.images or plan.files), "image" if plan.images else "file",
             len(plan.keys), len(plan),
             f" ({plan.duplicates} duplicate(s) collapsed)" if plan.duplicates else "")

    previous = signal.signal(signal.SIGTERM, _on_signal)
    try:
        with actions.group(f"Signing {len(plan)} signature(s)"):
            items = list(plan.items())
            if signer.inputs.skip_signed and plan.images:
                items = skip_signed(signer, plan, items, recorder.report)
            if items:  # (a shard may own no image)
                signer.sign(items, recorder.report)
        return None
    except (Interrupted, KeyboardInterrupt) as e:
        message = str(e) or "the run was stopped (SIGINT)"
        log.error("%s; keeping what was signed", message)
        return message
    except Exception as e:  # a signer bug must not lose the signatures already made
        log.exception("the %s signer failed", signer.name)
        return scrub(f"the {signer.name} signer failed: {type(e).__name__}: {e}")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_files(plan: Plan, signer: Signer, verify: bool) -> None:
    if plan.files and verify:
        raise InputError("--mode verify checks container images, not files (clear-sign-files, "
                         "blob-files)")
    if plan.files and not signer.signs_files:
        raise InputError(f"--signer {signer.name} cannot sign files (clear-sign-files, "
                         "blob-files): use --signer msg")


def _verify(check: Check, plan: Plan, artifacts: Artifacts, inputs: Inputs, signer: str,
            actions: Actions, tekton: TektonResults) -> int:
    """Verify mode: every (image, key) checked by the format's ``check``, several at once
    (bounded; through the run's one registry client), then results.json and the outputs."""
    items = list(plan.items())
    log.info("verifying %d image(s) with %d key(s): %d check(s)", len(plan.images),
             len(plan.keys), len(items))
    stopped: str | None = None

    def one(item) -> Verdict:
        try:
            verdict = check(item)
        except Exception as e:  # a verifier bug must not lose the other verdicts
            log.exception("checking %s failed", label(item))
            verdict = Verdict(INVALID, scrub(f"the check failed: {type(e).__name__}: {e}"))
        if verdict.status == VERIFIED:
            log.info("verified %s key %s: %s", label(item), item.key.key, verdict.reason)
        else:
            log.info("NOT VERIFIED (%s) %s key %s: %s", verdict.status, label(item),
                     item.key.key, verdict.reason)
        return verdict

    previous = signal.signal(signal.SIGTERM, _on_signal)
    try:
        with actions.group(f"Verifying {len(items)} signature(s)"):
            verdicts = run_pool(one, items, workers=VERIFY_WORKERS, name="verify")
    except (Interrupted, KeyboardInterrupt) as e:
        stopped = str(e) or "the run was stopped (SIGINT)"
        verdicts = [Verdict(INVALID, f"not checked: {stopped}")] * len(items)
    finally:
        signal.signal(signal.SIGTERM, previous)
    rows = [verdict_json(item, v) for item, v in zip(items, verdicts, strict=True)]
    results = verify_results_json(inputs, plan, rows, signer)
    unwritten = []
    try:
        artifacts.write_results(results)
    except (OSError, ValueError) as e:
        unwritten.append(scrub(f"could not write results.json: "
                               f"{getattr(e, 'strerror', None) or e}"))
    return _verify_report(actions, tekton, inputs, results, rows,
                          str(artifacts.root / "results.json"), unwritten + ([stopped] if stopped
                                                                            else []))


def _verify_report(actions: Actions, tekton: TektonResults, inputs: Inputs, results: dict,
                   rows: list[dict], results_file: str, problems: list[str]) -> int:
    c = results["summary"]
    for problem in problems:
        actions.error("Verification", problem)
    for row in rows:
        if row["status"] != VERIFIED:
            actions.error(f"Not verified: {row['reference']}", f"{row['digest']} with key "
                          f"{row['signing_key']}: {row['status']}: {row['reason']}")
    status = "success" if not c["failed"] and not problems else \
        "partial" if c["verified"] else "failure"
    problems += _set_outputs(actions, tekton, inputs, problems, results_file, status=status,
                             verified=c["verified"], failed=c["failed"])
    problems += actions.write_summary(verify_summary_markdown(
        f"Container signature verification: {status} ({results['signer']} signer)", c, rows,
        results_file))
    log.info("%d verified, %d missing, %d invalid; %s", c["verified"], c["missing"],
             c["invalid"], _results_at(results_file))
    for row in rows:
        if row["status"] != VERIFIED:
            print(scrub(f"error: {row['reference']}@{row['digest']} key {row['signing_key']}: "
                        f"{row['status']}: {row['reason']}"), file=sys.stderr, flush=True)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr, flush=True)
    return 1 if c["failed"] or problems else 0


def _results_at(results_file: str) -> str:
    return f"results in {results_file}" if os.path.exists(results_file) else \
        "results.json could not be written (below)"


def _on_signal(signum, _frame):
    raise Interrupted(f"the run was stopped ({signal.Signals(signum).name})")


def _shard_of(inputs: Inputs) -> tuple[Inputs, Shard | None]:
    """--shard K/N, and the output folder with K for ``{shard}`` (one folder per shard)."""
    if inputs.shard is None:
        if "{shard}" in inputs.output_dir:
            raise InputError(f"{inputs.where('output_dir')}: {{shard}} stands for the shard's "
                             "number, but no --shard K/N is given")
        return inputs, None
    shard = parse_shard(inputs.shard, inputs.where("shard"))
    return replace(inputs, output_dir=inputs.output_dir.replace("{shard}", str(shard.index))
                   ), shard


def _share(shard: Shard | None, plan: Plan, verify: bool) -> Share | None:
    if shard is None:
        return None
    if verify:
        raise InputError("--shard splits signing between runs; --mode verify checks the whole "
                         "plan in one run")
    share = take_share(plan, shard)
    log.info("shard %s: %d of the plan's %d image(s) (plan %s)", share.shard,
             len(share.plan.images), share.total, share.fingerprint)
    return share


def _merge(inputs: Inputs, actions: Actions, tekton: TektonResults) -> int:
    """Merge mode: the output folders of a plan's shards (--shard-dir) into one."""
    from signaction.merge import merge  # (merge mode's own: not imported by other runs' start)

    _setup_logging(inputs.log_level, to_stdout=actions.active)
    artifacts = Artifacts(inputs.output_dir)
    if not inputs.shard_dirs:
        return _invalid(actions, tekton, "merge: give the shards' output folders (--shard-dir "
                        "DIR, repeatable; or: merge --output-dir OUT DIR...)")
    try:
        folders = _shard_folders(inputs)
        with actions.group(f"Merging {len(folders)} shard folder(s)"):
            results, rows, unwritten = merge(folders, artifacts, {
                name: cls.after_merge for name, cls in available().items()})
    except InputError as e:
        return _invalid(actions, tekton, str(e))
    log.info("merged %d shard folder(s) into %s", len(folders), artifacts.root)
    return _report(actions, tekton, inputs, results, rows,
                   str(artifacts.root / "results.json"), [scrub(u) for u in unwritten])


def _shard_folders(inputs: Inputs) -> list[str]:
    """--shard-dir values, each a folder or a pattern (``shards/*``) of folders."""
    folders: list[str] = []
    for origin, value in inputs.numbered("shard_dirs"):
        if not any(c in value for c in "*?["):
            folders.append(value)
            continue
        found = sorted(f for f in glob.glob(value) if os.path.isdir(f))
        if not found:
            raise InputError(f"{origin}: {value!r} matches no folder")
        folders += found
    return folders


def _dry_run(plan: Plan, signer: Signer, actions: Actions, tekton: TektonResults,
             verb: str = "sign", share: Share | None = None) -> int:
    paths = {key.key: signer.path_of(key.key) for key in plan.keys}
    lines = [f"would {verb} {label(item)} with key {item.key.key}"
             + (f" ({paths[item.key.key]})" if paths[item.key.key] else "")
             for item in plan.items()]
    if verb == "sign":
        lines += signer.notes()
    if share:
        lines.append(f"shard {share.shard}: {len(share.plan.images)} of the plan's "
                     f"{share.total} image(s); plan {share.fingerprint}")
    lines.append(f"dry run: {len(plan.images or plan.files)} "
                 f"{'image' if plan.images else 'file'}(s) x {len(plan.keys)} key(s) = "
                 f"{len(plan)} signature(s); nothing was {verb}ed")
    print(scrub("\n".join(lines), limit=len(plan) * 600), flush=True)
    outputs = {"status": "dry-run", "signed-count": "0", "verified-count": "0",
               "failed-count": "0"}
    problems = actions.set_outputs(outputs)
    tekton.write(outputs)
    for problem in problems:
        print(f"error: {scrub(problem)}", file=sys.stderr, flush=True)
    return 1 if problems else 0


def _invalid(actions: Actions, tekton: TektonResults, message: str) -> int:
    message = scrub(message)  # it may quote input: a URL's password, a newline, '::'
    print(f"error: {message}", file=sys.stderr, flush=True)
    actions.error("Invalid input", message)
    outputs = {"status": "invalid-input", "signed-count": "0", "verified-count": "0",
               "failed-count": "0"}
    actions.set_outputs(outputs)  # (a run that failed this early reports nothing more)
    tekton.write(outputs)
    actions.write_summary(f"### Container signing: invalid input\n\n{markdown_text(message)}"
                          "\n\nNothing was signed.\n\n")
    return 2


class _Entries:
    """The entries' results.json form, made anew each time they are read (one at a time)."""

    def __init__(self, entries: Sequence[Entry]):
        self.entries = entries

    def __iter__(self):
        return (e.to_json() for e in self.entries)


def _report(actions: Actions, tekton: TektonResults, inputs: Inputs, results: dict,
            images: Iterable[dict], results_file: str, unwritten: list[str]) -> int:
    """Annotations, outputs, summary, exit code; ``images``: results.json's entries, read
    twice (a list, _Entries, or merge's Rows): nothing here holds all of them."""
    c = results["summary"]
    for problem in unwritten:
        actions.error("Output folder", problem)
    annotated = 0
    for entry in images:
        if entry["status"] == FAILED and annotated < MAX_ANNOTATIONS:
            annotated += 1
            what = entry.get("reference") or entry["file"]
            actions.error(f"Signing failed: {what}", f"{entry.get('digest') or entry['file']} "
                          f"with key {entry['signing_key']}: {entry['error']}")
    if c["failed"] > annotated:
        actions.error("Signing failed", f"...and {c['failed'] - annotated} more: see "
                      f"{results_file}")
    failed = c["failed"] or unwritten
    status = "success" if not failed else "partial" if c["signed"] else "failure"
    unwritten += _set_outputs(actions, tekton, inputs, unwritten, results_file, status=status,
                              signed=c["signed"], failed=c["failed"])
    unwritten += actions.write_summary(summary_markdown(
        f"Container signing: {status} ({results['signer']} signer)", c, images, results_file,
        results["signer_stats"]))
    log.info("%d signed, %d failed, %d skipped; %s", c["signed"], c["failed"],
             c["skipped"], _results_at(results_file))
    if c["failed"]:
        print(f"error: {scrub(results['signer_result']['error_message'])}", file=sys.stderr,
              flush=True)
    for problem in unwritten:
        print(f"error: {problem}", file=sys.stderr, flush=True)
    return 1 if c["failed"] or unwritten else 0


def _set_outputs(actions: Actions, tekton: TektonResults, inputs: Inputs, problems: list[str],
                 results_file: str, *, status: str, signed: int = 0, verified: int = 0,
                 failed: int = 0) -> list[str]:
    """A finished run's step outputs and Tekton results (results-file empty when results.json
    could not be written); returns the outputs that could not be set."""
    unwritten = any("results.json" in p for p in problems)
    outputs = {"status": status, "signed-count": str(signed), "verified-count": str(verified),
               "failed-count": str(failed), "results-file": "" if unwritten else results_file,
               "signatures-dir": inputs.output_dir}
    not_set = actions.set_outputs(outputs)
    tekton.write(outputs)
    return not_set


def _setup_logging(level: str, *, to_stdout: bool) -> None:
    # In GitHub, logs share stdout with workflow commands so groups enclose them in order.
    handler = logging.StreamHandler(sys.stdout if to_stdout else sys.stderr)
    handler.setFormatter(SafeFormatter("%(message)s"))  # nothing from outside reaches it raw
    for name in ("signaction", "signers"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


if __name__ == "__main__":
    sys.exit(main())
