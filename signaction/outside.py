"""Text that came from outside (config values, file names, registry answers, broker replies,
server error texts), made safe to print, log and keep in artifacts. One mechanism for every path:

- ``redact``: credentials in URLs (``scheme://user:password@host``) and query strings
  (``?token=...``) are replaced by ``***`` wherever a URL appears in the text;
- ``neutralize``: no line can be read by the GitHub runner as a workflow command. The runner
  takes a line whose text, after leading blanks, starts with ``::`` (``::add-mask::``,
  ``::error::``, ``::stop-commands::``...), and a legacy ``##[command]`` anywhere in a line; their
  first character is percent-escaped, so the line reads ``%3A:add-mask::...``. This program's own
  commands are printed by signaction.github and never pass through here;
- ``cap``: one text adds at most ``limit`` characters (a server may answer with megabytes).

``scrub`` does all three; the log handler (``SafeFormatter``) applies it to every log record.
"""

from __future__ import annotations

import logging
import re

LIMIT = 2000  # characters one log record, error or reason may take

_URL = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#@]*@)?"
                  r"(?P<rest>[^\s?#]*)(?P<query>\?[^\s#]*)?")
# A line starts after \n or \r (the runner's reader splits on both) and its leading blanks.
_COMMAND_LINE = re.compile(r"(^|[\r\n])([^\S\r\n]*):(?=:)")
_LEGACY_COMMAND = re.compile(r"##\[")


def redact(text: str) -> str:
    """``text`` with every URL's userinfo and query string replaced by ``***``."""
    def one(m: re.Match) -> str:
        return (m["scheme"] + ("***@" if m["userinfo"] else "") + m["rest"]
                + ("?***" if m["query"] else ""))
    return _URL.sub(one, text) if "://" in text else text


def neutralize(text: str) -> str:
    """``text`` with nothing the GitHub runner would take for a workflow command."""
    text = _COMMAND_LINE.sub(lambda m: m[1] + m[2] + "%3A", text) if "::" in text else text
    return _LEGACY_COMMAND.sub("#%23[", text) if "##[" in text else text


def cap(text: str, limit: int = LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def scrub(text: str, limit: int = LIMIT) -> str:
    """Redacted, capped and neutralized: ready for a log line, an error or an artifact."""
    return neutralize(cap(redact(text), limit))


class SafeFormatter(logging.Formatter):
    """Every log record scrubbed: what a message quotes from outside cannot leak credentials in
    a URL, flood the log or inject a workflow command."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record), limit=LIMIT * 2)
