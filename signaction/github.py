"""GitHub Actions' side of a run: masks, log groups, annotations, step outputs, step summary.

Workflow commands are printed only when GITHUB_ACTIONS=true; outputs and the summary are written
only when the runner names their files. Anywhere else none of this appears.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TextIO

SUMMARY_ROWS = 200  # rows listed in the step summary; the rest is counted (limit: 1 MiB a step)
SUMMARY_CELL = 300  # characters kept of one cell


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


class Actions:
    def __init__(self, environ: Mapping[str, str], out: TextIO | None = None):
        self.active = environ.get("GITHUB_ACTIONS") == "true"
        self.output_path = environ.get("GITHUB_OUTPUT") or None
        self.summary_path = environ.get("GITHUB_STEP_SUMMARY") or None
        self.out = out or sys.stdout

    def _command(self, text: str) -> None:
        if self.active:
            print(text, file=self.out, flush=True)

    def mask(self, secrets: Iterable[str]) -> None:
        """Mask every secret, line by line (the runner masks per line), before any log line."""
        for secret in secrets:
            for line in secret.splitlines():
                if line.strip():
                    self._command(f"::add-mask::{_escape_data(line)}")

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        self._command(f"::group::{_escape_data(title)}")
        try:
            yield
        finally:
            self._command("::endgroup::")

    def error(self, title: str, message: str) -> None:
        self._command(f"::error title={_escape_property(title)}::{_escape_data(message)}")

    def set_outputs(self, outputs: Mapping[str, str]) -> list[str]:
        """Append the step outputs; returns what went wrong (an unwritable GITHUB_OUTPUT)."""
        if not self.output_path:
            return []
        chunks = []
        for name, value in outputs.items():
            # unguessable, as the toolkit's uuid4 (the uuid module imports platform: slow)
            delimiter = f"ghadelimiter_{os.urandom(16).hex()}"
            while delimiter in value:  # practically never; but a value must not end the block
                delimiter = f"ghadelimiter_{os.urandom(16).hex()}"
            chunks.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
        return _append(self.output_path, "".join(chunks), "GITHUB_OUTPUT (the step outputs)")

    def write_summary(self, markdown: str) -> list[str]:
        """Append to the step summary; returns what went wrong."""
        if not self.summary_path:
            return []
        return _append(self.summary_path, markdown, "GITHUB_STEP_SUMMARY")


def _append(path: str, text: str, what: str) -> list[str]:
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        return [f"could not write {what}: {path}: {e.strerror}"]
    return []


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def markdown_text(text: str | None, limit: int | None = None) -> str:
    """``text`` (from outside) as literal Markdown on one line: every character Markdown could
    read as syntax backslash-escaped, HTML tags and entities made inert."""
    text = " ".join((text or "").split())
    if limit is not None and len(text) > limit:
        text = text[:limit - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return _MARKDOWN.sub(r"\\\1", text)


def _cell(text: str | None) -> str:
    return markdown_text(text, SUMMARY_CELL)


SIGSTORE_FACTS = ("rekor_log_index", "rekor_entry_uuid", "certificate_identity",
                  "certificate_oidc_issuer", "attestations")


def _sigstore_cell(row: Mapping) -> str:
    """A sigstore signature's facts: its certificate's identity and issuer, its Rekor entry
    (log index and UUID), each escaped (the identity comes from a certificate)."""
    parts = []
    if row.get("certificate_identity") is not None:
        parts.append(f"{_cell(str(row['certificate_identity']))} (issuer "
                     f"{_cell(str(row.get('certificate_oidc_issuer')))})")
    if row.get("rekor_log_index") is not None:
        parts.append(f"Rekor index {_cell(str(row['rekor_log_index']))}")
    if row.get("rekor_entry_uuid") is not None:
        parts.append(f"UUID {_cell(str(row['rekor_entry_uuid']))}")
    attested = row.get("attestations")
    if isinstance(attested, list) and attested:
        parts.append("attested: " + ", ".join(
            _cell(str(a.get("predicate_type"))) for a in attested if isinstance(a, dict)))
    return "; ".join(parts)


def _listed(rows: Iterable[dict], first: Callable[[dict], bool]) -> tuple[list[dict], int]:
    """The SUMMARY_ROWS rows a summary lists (those ``first`` picks ahead of the others, each
    part in its order) and how many rows there were, holding no more than 2 x SUMMARY_ROWS of
    them: a run of 100,000 images may hand them over one at a time (a generator)."""
    ahead: list[dict] = []
    rest: list[dict] = []
    total = 0
    for row in rows:
        total += 1
        part = ahead if first(row) else rest
        if len(part) < SUMMARY_ROWS:
            part.append(row)
    return (ahead + rest)[:SUMMARY_ROWS], total


def summary_markdown(title: str, counts: Mapping[str, int], rows: Iterable[dict],
                     results_file: str, stats: Mapping[str, int] | None = None) -> str:
    """A table of outcomes, failed first, capped at SUMMARY_ROWS rows: its size and what it
    holds of ``rows`` (a list, or a generator) do not grow with the run."""
    listed, total = _listed(rows, lambda r: r["status"] == "failed")
    # sigstore signatures (a run's are all of one signer): a column for their Rekor entry and
    # certificate identity
    sigstore = any(any(k in r for k in SIGSTORE_FACTS) for r in listed)
    lines = [f"### {title}", "",
             f"**{counts['signed']} signed**, **{counts['failed']} failed**, "
             f"{counts['skipped']} skipped. Full results: `{_cell(results_file)}`", ""]
    if stats:
        # (merge sums the stats of shard folders: from outside)
        lines += ["Signer: " + ", ".join(f"{_cell(str(k))} {_cell(str(v))}"
                                         for k, v in stats.items()), ""]
    lines += ["| Status | Image | Digest | Key | Error |" + (" Signature |" if sigstore else ""),
              "|---|---|---|---|---|" + ("---|" if sigstore else "")]
    for r in listed:
        mark = {"ok": "✅ ok", "failed": "❌ failed", "skipped": "⏭️ skipped"}[r["status"]]
        digest = f"`{r['digest'][:19]}…`" if r.get("digest") else ""  # files have none
        lines.append(f"| {mark} | {_cell(r.get('reference') or r.get('file'))} | {digest} | "
                     f"{_cell(r['signing_key'])} | {_cell(r['error'])} |"
                     + (f" {_sigstore_cell(r)} |" if sigstore else ""))
    if total > len(listed):
        lines += ["", f"…and {total - len(listed)} more (failed ones are listed first); "
                      "see results.json."]
    return "\n".join(lines) + "\n\n"


def verify_summary_markdown(title: str, counts: Mapping[str, int], rows: Iterable[dict],
                            results_file: str) -> str:
    """Verify mode's table: what does not verify first, capped at SUMMARY_ROWS rows."""
    listed, total = _listed(rows, lambda r: r["status"] != "verified")
    # attestations required (--attestation-type): a column of each type's status
    attested = any(isinstance(r.get("attestations"), dict) for r in listed)
    lines = [f"### {title}", "",
             f"**{counts['verified']} verified**, **{counts['missing']} missing**, "
             f"**{counts['invalid']} invalid**. Full results: `{_cell(results_file)}`", "",
             "| Status | Image | Digest | Key | Reason |" + (" Attestations |" if attested else ""),
             "|---|---|---|---|---|" + ("---|" if attested else "")]
    for r in listed:
        mark = {"verified": "✅ verified", "missing": "❌ missing",
                "invalid": "❌ invalid"}[r["status"]]
        found = r.get("attestations")
        found = found if isinstance(found, dict) else {}
        lines.append(f"| {mark} | {_cell(r['reference'])} | `{r['digest'][:19]}…` | "
                     f"{_cell(r['signing_key'])} | {_cell(r['reason'])} |" + (
                         " " + ", ".join(f"{_cell(str(k))}: {_cell(str(v))}"
                                         for k, v in found.items()) + " |" if attested else ""))
    if total > len(listed):
        lines += ["", f"…and {total - len(listed)} more (failures are listed first); "
                      "see results.json."]
    return "\n".join(lines) + "\n\n"
