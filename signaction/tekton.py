"""Tekton's side of a run: the step's results, a few small files in the results folder.

They are written only in a Tekton step: when ``--tekton-results DIR`` (input ``tekton-results``)
names the folder, or when ``/tekton/results`` exists and is writable (Tekton mounts it in every
step of a Task that declares results). Anywhere else nothing Tekton-specific happens.

Tekton hands a step's results to the controller in the container's termination message, which
Kubernetes caps at 4096 bytes for everything the step reports, Tekton's own entries included; above
it the TaskRun fails. So the results are a status, two counts and two paths, never per-image data
(results.json in the output workspace has that), whatever the number of images. A path too long
for the budget is left empty, with a warning, rather than failing the TaskRun.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from . import atomic
from .errors import InputError
from .inputs import VALUES_FLAG, _env_value, _Parser, take_list_flags

RESULTS_DIR = "/tekton/results"
# Every result the Task declares, always all written (empty when they don't apply: a result a
# Pipeline refers to must exist, even after a dry run or invalid input).
NAMES = ("status", "signed-count", "verified-count", "failed-count", "results-file",
         "signatures-dir")
PATHS = ("results-file", "signatures-dir")  # blanked, in this order, if over the budget
TERMINATION_MESSAGE_LIMIT = 4096  # bytes, for the whole step (Kubernetes; Tekton fails above)
BUDGET = 2048  # bytes of that message these results may take; the rest is left to Tekton

_FLAG = "--tekton-results"


def requested_folder(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The folder named by ``--tekton-results`` (the last one wins) or by the input, read by
    the one argv reader (list flags and their values taken out as parse_inputs does; nothing
    after ``--`` or ``--values``: what follows is no flag); here so that invalid input, which
    stops parsing, is reported too."""
    _, rest = take_list_flags(list(argv), values=False)
    for end in ("--", VALUES_FLAG):
        if end in rest:
            rest = rest[:rest.index(end)]
    parser = _Parser(add_help=False, allow_abbrev=False)
    parser.add_argument(_FLAG)
    try:
        found = parser.parse_known_args(rest)[0].tekton_results
    except InputError:  # e.g. the flag without a value: as if not given
        found = None
    if found is not None:
        return found
    raw = _env_value(environ, "tekton-results")
    return raw.strip() if raw is not None else None


class TektonResults:
    """Writes the step's results into ``folder``; does nothing when ``folder`` is None."""

    def __init__(self, folder: str | None):
        self.folder = folder

    @classmethod
    def find(cls, argv: Sequence[str], environ: Mapping[str, str],
             default: str = RESULTS_DIR) -> TektonResults:
        folder = requested_folder(argv, environ) or None  # empty: not given
        if folder is None and os.path.isdir(default) and os.access(default, os.W_OK | os.X_OK):
            folder = default
        return cls(folder)

    @property
    def active(self) -> bool:
        return self.folder is not None

    def write(self, outputs: Mapping[str, str]) -> None:
        """Write every declared result (from the step outputs of the same names), each file
        replaced atomically. A failure to write is a warning: the signatures are what matter."""
        if self.folder is None:
            return
        values = fit({name: outputs.get(name, "") for name in NAMES})
        try:
            os.makedirs(self.folder, exist_ok=True)
            for name, value in values.items():
                # exactly the value (Tekton keeps every byte: no newline), readable by Tekton's
                # other containers
                atomic.replace(os.path.join(self.folder, name), value)
        except OSError as e:
            print(f"warning: Tekton results not written to {self.folder}: {e.strerror or e}",
                  file=sys.stderr, flush=True)


def fit(values: Mapping[str, str]) -> dict[str, str]:
    """The values, with paths blanked (and a warning) if they would take more than BUDGET bytes
    of the termination message."""
    values = dict(values)
    for name in PATHS:
        if message_size(values) <= BUDGET:
            break
        print(f"warning: Tekton result {name} left empty: the path is too long for Tekton's "
              f"{TERMINATION_MESSAGE_LIMIT}-byte result limit", file=sys.stderr, flush=True)
        values[name] = ""
    size = message_size(values)
    assert size <= BUDGET, f"Tekton results take {size} bytes"  # status and counts: ~270
    return values


def message_size(values: Mapping[str, str]) -> int:
    """Bytes these results take in the termination message: Tekton writes them as Go's
    encoding/json does, ``[{"key":"status","value":"success","type":1},...]``."""
    entries = [len('{"key":,"value":,"type":1}') + _json_len(k) + _json_len(v)
               for k, v in values.items()]
    return 2 + sum(entries) + max(len(entries) - 1, 0)


def _json_len(text: str) -> int:
    """Length of a JSON string as Go's json.Marshal writes it: HTML characters, control
    characters, U+2028/9 as \\uXXXX; quotes, backslashes, \\n \\r \\t as two bytes; the rest as
    UTF-8 (a lone surrogate as U+FFFD)."""
    n = 2
    for ch in text:
        if ch in '"\\\n\r\t':
            n += 2
        elif ch in "<>&\u2028\u2029" or ord(ch) < 0x20 or 0xD800 <= ord(ch) <= 0xDFFF:
            n += 6
        else:
            n += len(ch.encode("utf-8"))
    return n
