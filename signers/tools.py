"""Running the tools a signer uses (gpg, gpgconf, cosign) and the threads it signs in.

- ``child_env``: the environment a tool gets, an allowlist (never the action's inputs or tokens);
- ``run_tool``: one tool process, in its own process group, killed whole on a timeout;
- ``Running``: the tool processes of one run, all ended at once when the run is interrupted;
- ``run_pool``: a function over many tasks in a thread pool that an interruption (SIGTERM,
  Ctrl-C) or a deadline stops cleanly.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# The kernel may hand the run's SIGTERM to a worker thread; Python then runs its handler in the
# main thread only once that thread runs Python code again. Waiting for a tool that hangs, it
# would not: so run_pool waits in slices of this many seconds.
WAKE_EVERY = 0.5
IN_FLIGHT = 4  # run_pool's tasks submitted per worker at a time


class Running:
    """The tool processes (gpg, cosign) of one run. Once ended, a process that registers is
    ended at once, so none escapes an interruption however the threads interleave."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self._ended = False

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)
            if self._ended:
                proc.terminate()

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def end(self) -> None:
        with self._lock:
            self._ended = True
            for proc in self._procs:
                proc.terminate()

    @property
    def ended(self) -> bool:
        return self._ended


# -- what a tool gets from the environment --------------------------------------------------

# Every tool gets these (when set) and nothing else unless asked for: where programs are, whose
# home, the language of its messages, the time zone, where temporary files go.
BASE_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR")

# Never handed on, whatever a ``keep`` pattern says: the action's inputs (INPUT_CONFIG may hold
# registry passwords), GitHub's tokens. Keyless cosign signing (a later issue) would let
# ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN through to cosign alone: by ``extra``, not by loosening this.
NEVER_ENV = ("INPUT_*", "GITHUB_TOKEN", "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_*")


def _matches_any(name: str, patterns: Sequence[str]) -> bool:
    """Is ``name`` one of ``patterns``: exact names, or prefixes ending in ``*``."""
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


def child_env(environ: Mapping[str, str], keep: Sequence[str] = (),
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a tool this program starts (gpg, gpgconf, cosign): from ``environ``
    only BASE_ENV and ``keep`` (names, or prefixes ending in ``*``), never NEVER_ENV; then
    ``extra``, values this program chose (a private GNUPGHOME or DOCKER_CONFIG, COSIGN_PASSWORD,
    the config's env_variables), which win."""
    env = {k: v for k, v in environ.items()
           if _matches_any(k, BASE_ENV) or (_matches_any(k, keep) and not
                                            _matches_any(k, NEVER_ENV))}
    env.update({str(k): str(v) for k, v in (extra or {}).items()})
    return env


def run_tool(cmd: list[str], *, timeout: float, input: bytes | None = None,
             env: Mapping[str, str] | None = None, pass_fds: tuple[int, ...] = (),
             running: Running | None = None) -> tuple[subprocess.CompletedProcess, bool]:
    """Run a signing tool (gpg, gpgconf, cosign): (the finished process, with bytes output;
    whether it timed out). ``env`` is its whole environment (build it with child_env); without
    one it gets child_env(os.environ), never this process's environment as it is. It gets its
    own process group, killed whole on a timeout (a helper it started would otherwise hold its
    output pipes open), and ``running`` holds it while it runs, so that an interrupted run can
    end it."""
    if env is None:
        env = child_env(os.environ)
    proc = subprocess.Popen(cmd, env=env, pass_fds=pass_fds, start_new_session=True,
                            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if running is not None:
        running.add(proc)
    timed_out = False
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    finally:
        if running is not None:
            running.discard(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), timed_out


def run_pool(fn: Callable[[T], R], tasks: Iterable[T], *, workers: int, name: str,
             running: Running | None = None, deadline_at: float = float("inf"),
             grace: float = 5.0) -> list[R]:
    """``fn`` over every task in ``workers`` threads: the results, in task order. The calling
    (main) thread waits in WAKE_EVERY slices, so a signal's handler runs at once; whatever it
    raises (an interruption), or a pool still busy ``grace`` seconds past ``deadline_at``
    (TimeoutError), drops the tasks not started and ends ``running``'s tools before it goes on.
    About ``workers`` x IN_FLIGHT tasks are submitted at a time, the next as each one is taken:
    a queued future costs ~1.9 KB (100,000 tasks at once: 186 MB)."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
    try:
        pending = iter(tasks)
        futures: deque[Future[R]] = deque(
            pool.submit(fn, task) for task in itertools.islice(pending, workers * IN_FLIGHT))
        results = []
        while futures:
            future = futures.popleft()
            while not wait([future], timeout=WAKE_EVERY).done:  # (a signal's handler runs here)
                if time.monotonic() > deadline_at + grace:
                    raise TimeoutError(f"{name}: still busy {grace:g} s after the deadline")
            results.append(future.result())
            for task in itertools.islice(pending, 1):
                futures.append(pool.submit(fn, task))
        return results
    except BaseException:  # interrupted: drop what has not started, end what runs
        pool.shutdown(wait=False, cancel_futures=True)
        if running is not None:
            running.end()
        raise
    finally:
        pool.shutdown(wait=True)
