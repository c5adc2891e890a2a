"""What comes from outside never reaches the log as a workflow command, unescaped Markdown, or a
URL's credentials (signaction/outside.py): unit checks of the one mechanism, then whole runs."""

from __future__ import annotations

import json
import logging

import pytest

from conftest import run_entrypoint
from signaction.github import markdown_text
from signaction.outside import LIMIT, SafeFormatter, neutralize, redact, scrub

D = "sha256:" + "a" * 64
# Our own commands: the only lines that may start with '::' (after blanks).
OURS = ("::add-mask::", "::group::", "::endgroup::", "::error title=")


def commands(text: str) -> list[str]:
    """Lines the runner would take for workflow commands (.NET splits on \\r and \\n, and
    trims leading white space), and legacy ##[ commands anywhere."""
    lines = text.replace("\r", "\n").split("\n")
    return [ln for ln in lines if ln.lstrip().startswith("::") or "##[" in ln]


@pytest.mark.parametrize("hostile", [
    "x\n::add-mask::signed\n::error title=pwn::X", "  ::warning::w", "a\r::stop-commands::t",
    "\t::set-output name=x::y", "\u2003::debug::d", "ok ##[error]legacy", "::"])
def test_no_outside_line_becomes_a_workflow_command(hostile):
    assert commands(neutralize(hostile)) == []
    assert commands(scrub(hostile)) == []


@pytest.mark.parametrize("url, shown", [
    ("http://user:PW@host/{registry}", "http://***@host/{registry}"),
    ("https://PW@h:8443/p?token=PW2&x=1 ", "https://***@h:8443/p?*** "),
    ("amqps://svc:PW@broker:5671", "amqps://***@broker:5671"),
    ("file:///srv/sigs", "file:///srv/sigs")])
def test_credentials_and_queries_in_urls_are_redacted(url, shown):
    assert redact(f"could not read {url}: refused") == f"could not read {shown}: refused"


def test_one_outside_text_is_capped():
    assert len(scrub("x" * 10**6)) < LIMIT + 100
    record = logging.LogRecord("signers", logging.ERROR, __file__, 1, "server: %s", ("y" * 10**6,),
                               None)
    assert len(SafeFormatter("%(message)s").format(record)) < 2 * LIMIT + 100


def test_markdown_from_outside_is_inert():
    text = markdown_text("a|b <img src=x onerror=alert(1)> *x* [l](javascript:x) `c` # h\n- i")
    assert "<img" not in text and "|" not in text.replace("\\|", "")
    assert "\n" not in text and "\\*x\\*" in text and "\\[l\\]" in text


def github_env(tmp_path) -> dict:
    summary = tmp_path / "summary.md"
    return {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(tmp_path / "output"),
            "GITHUB_STEP_SUMMARY": str(summary)}


def test_an_invalid_input_quoting_commands_and_markdown_is_escaped_everywhere(tmp_path):
    env = github_env(tmp_path)
    run = run_entrypoint("--signing-key", "K", "--dry-run", "--image",
                         "<b>x</b>|a\n::add-mask::signed\r::error title=pwn::X", env=env)
    assert run.returncode == 2
    assert "add-mask::signed" in run.stderr  # quoted, but not as a command
    assert [ln for ln in commands(run.stdout + "\n" + run.stderr)
            if not ln.startswith(OURS)] == []
    summary = (tmp_path / "summary.md").read_text()
    assert "<b>" not in summary and "\\|" in summary and "::add-mask" not in summary.replace(
        "\\:", ":").replace("%3A", "")


def test_a_lookaside_password_never_reaches_the_log_or_results(tmp_path, gpg_keys):
    from conftest import free_port
    env = {**gpg_keys.env(), **github_env(tmp_path)}
    out = tmp_path / "out"
    run = run_entrypoint("--signer", "gpg", "--signing-key", gpg_keys.a, "--task-id", "t",
                         "--reference", "r.io/ns/a:1", "--digest", D, "--output-dir", str(out),
                         "--lookaside-url",
                         f"http://user:PW-SECRET@127.0.0.1:{free_port()}/{{registry}}?tok=Q-SECRET",
                         env=env)
    assert run.returncode == 0, run.stderr
    everything = run.stdout + run.stderr + (out / "results.json").read_text() + \
        (tmp_path / "summary.md").read_text()
    assert "could not read existing signatures" in run.stdout + run.stderr
    assert "PW-SECRET" not in everything and "Q-SECRET" not in everything
    assert json.loads((out / "results.json").read_text())["summary"]["signed"] == 1
