#!/usr/bin/env python3
"""Signer scale: the msg signer to 100,000 images, the gpg signer to 10,000 (issue 14).

Each run is this project as a whole process (``entrypoint.py`` from start to exit: start-up,
config, plan, signing, every signature file of the lookaside tree, results.json, verification/
and the GitHub step summary), given an images file of ``reference`` + ``digest`` (one
repository per image, random digests: nothing is resolved, no registry is needed):

- msg: through the embedded broker (testbed/broker.py) and the instant signing server
  (testbed/signing_server.py --instant: no gpg, but every reply is made and sent on the wire),
  as bench/msg_bench.py does;
- gpg: real gpg with an RSA-2048 key that needs no passphrase, made in a GnuPG home of its own.

Per signer and size: wall seconds, signatures/s, the peak RSS of the signing process
(bench/msg_bench.py's ``measured``), the ratio of time per image at that size to time per
image at the signer's smallest size (the anchor, measured in the same run; 1.0 is linear), and
the same for the process's CPU seconds (getrusage of the children: gpg's included), which the
load of a shared machine moves much less than wall time.
Targets: linear; msg's peak RSS at 100,000 under 200 MB with one repository per image (the
default) and under 150 MB with --repositories 1000 (issue 26). Each line ends with the
machine's load average over the minute before it (os.getloadavg): the machine is shared, and a
starved run waits longer (and the msg signer's resends when its timeout passes cost memory too).

Run: make bench-scale
     (or .venv/bin/python bench/scale_bench.py [--sizes 10000,20000,100000]
      [--gpg-sizes 1000,10000] [--quick] [--profile DIR] [--json FILE])
     --json FILE: the figures also as JSON, for bench/report.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from msg_bench import KEY, REPLY_TOPIC, SERVER_QUEUE, config, measured

ROOT = Path(__file__).resolve().parent.parent
RSS_TARGET_MB = 150  # msg at 100,000 images in 1,000 repositories
RSS_TARGET_ONE_EACH_MB = 200  # ... and in a repository each (a policy entry per image)
RATIO_TARGET = 1.25  # time per image at N over time per image at the anchor: "linear"


REPOSITORIES = 0  # --repositories: images spread over this many (0: one repository each)


def write_images(path: Path, n: int) -> Path:
    """``n`` images as an images file, a random digest each: one repository each (the worst
    case for verification/: a policy scope per image), or spread over REPOSITORIES."""
    repos = REPOSITORIES or n
    with open(path, "w", encoding="utf-8") as f:
        json.dump([{"reference": f"127.0.0.1:5000/bench/app-{i % repos}:v{i}",
                    "digest": f"sha256:{secrets.token_hex(32)}"} for i in range(n)], f)
    return path


def cpu_of_children() -> float:
    """CPU seconds (user + system) of this process's children waited for so far (a child's
    includes its own children's: gpg's processes count in the signing process's)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(n: int, signer: list[str], tmp: Path, profile: Path | None
        ) -> tuple[float, float, float]:
    """Sign ``n`` images with ``signer`` (its flags) as one process: (wall seconds, CPU
    seconds, peak RSS MB). With ``profile``, under cProfile (slower: for finding where the
    time goes, not figures)."""
    listing = write_images(tmp / f"images-{n}.json", n)
    out = tmp / f"out-{uuid.uuid4().hex[:6]}"
    summary = tmp / "step-summary.md"
    prof = ["-m", "cProfile", "-o", str(profile / f"{signer[1]}-{n}.prof")] if profile else []
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}  # the summary is built too
    cpu = cpu_of_children()
    wall, rss, rc, err = measured(
        [sys.executable, *prof, str(ROOT / "entrypoint.py"), *signer, "--images-file",
         str(listing), "--task-id", f"scale-{uuid.uuid4().hex[:6]}", "--output-dir", str(out),
         "--log-level", "warning"], env)
    cpu = cpu_of_children() - cpu
    try:
        signed = json.loads((out / "results.json").read_text())["summary"]["signed"]
    except (OSError, ValueError, KeyError):
        signed = None
    if rc != 0 or signed != n:
        raise SystemExit(f"{signer[1]} failed at N={n} (exit {rc}, {signed} signed): {err}")
    shutil.rmtree(out)  # 100,000 folders: not kept for the next size
    summary.unlink(missing_ok=True)
    return wall, cpu, rss


@contextmanager
def msg_signer(tmp: Path) -> Iterator[list[str]]:
    """The embedded broker and the instant signing server, running; the msg signer's flags."""
    from infra.tls import make_tls
    from testbed import launch, stop

    tls = make_tls(tmp / "tls")
    broker, info = launch("testbed.broker", ["--listen", "127.0.0.1:0"])
    url = f"amqp://127.0.0.1:{info['port']}"
    try:
        server, _ = launch("testbed.signing_server", [
            "--broker", url, "--listen-to", SERVER_QUEUE, "--reply-to", REPLY_TOPIC,
            "--instant"])
        try:
            conf = config(tmp / "msg.json", url, tls)
            yield ["--signer", "msg", "--config-file", str(conf), "--signing-key", KEY]
        finally:
            stop(server)
    finally:
        stop(broker)


@contextmanager
def gpg_signer(tmp: Path) -> Iterator[list[str]]:
    """A GnuPG home with an RSA-2048 signing key that needs no passphrase; the gpg signer's
    flags. (A short path of its own: gpg-agent's socket path has a length limit.)"""
    home = tempfile.mkdtemp(prefix="scale-gpg-")
    env = {**os.environ, "GNUPGHOME": home}
    try:
        subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                        "--quick-gen-key", "Scale Bench <scale@bench.invalid>", "rsa2048",
                        "sign", "never"], env=env, check=True, capture_output=True)
        colons = subprocess.run(["gpg", "--with-colons", "--list-secret-keys"], env=env,
                                check=True, capture_output=True, text=True).stdout
        fpr = next(line.split(":")[9] for line in colons.splitlines()
                   if line.startswith("fpr:"))
        conf = tmp / "gpg.json"
        conf.write_text(json.dumps({"gpg_signer": {"gnupg_home": home}}))
        yield ["--signer", "gpg", "--config-file", str(conf), "--signing-key", fpr]
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def measure(name: str, signer: list[str], sizes: list[int], tmp: Path,
            profile: Path | None, rows: list[dict] | None = None) -> list[str]:
    """One signer at each size, smallest first (the anchor); a line of the table each, printed
    as it comes (and appended to ``rows`` as a dict). Returns what missed a target. The ratio is
    also given for CPU seconds: on a shared machine wall time follows the other processes' load,
    CPU time much less."""
    missed = []
    anchor = None
    for n in sorted(sizes):
        wall, cpu, rss = run(n, signer, tmp, profile)
        anchor = anchor or (wall / n, cpu / n)
        ratio, cpu_ratio = wall / n / anchor[0], cpu / n / anchor[1]
        print(f"{name:<6} {n:>7} {wall:>9.2f} s {n / wall:>7.0f} {rss:>7.0f} MB {ratio:>7.2f} "
              f"{cpu:>9.2f} s {cpu_ratio:>9.2f} {os.getloadavg()[0]:>5.1f}", flush=True)
        if rows is not None:
            rows.append({"signer": name, "n": n, "wall_s": wall, "cpu_s": cpu,
                         "peak_rss_mb": rss, "ratio": ratio, "cpu_ratio": cpu_ratio,
                         "load": os.getloadavg()})
        if min(ratio, cpu_ratio) > RATIO_TARGET:
            missed.append(f"{name} at {n}: {ratio:.2f}x (CPU {cpu_ratio:.2f}x) the anchor's "
                          "time per image")
        target = rss_target()
        if name == "msg" and n >= 100_000 and rss > target:
            missed.append(f"msg at {n}: peak RSS {rss:.0f} MB > {target} MB")
    return missed


def rss_target() -> int:
    """msg's peak RSS target at 100,000 images for this run's spread of repositories."""
    return RSS_TARGET_MB if REPOSITORIES and REPOSITORIES <= 1000 else RSS_TARGET_ONE_EACH_MB


def sizes_of(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,20000,100000",
                        help="msg signer sizes; the smallest is the anchor (empty: none)")
    parser.add_argument("--gpg-sizes", default="1000,10000",
                        help="gpg signer sizes; the smallest is the anchor (empty: none)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (msg 50,100; gpg 5,10): that the bench still runs")
    parser.add_argument("--repositories", type=int, default=0, metavar="R",
                        help="spread the images over R repositories (default: one each)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="run each process under cProfile, DIR/<signer>-<N>.prof")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures to FILE as JSON (bench/report.py reads it)")
    opts = parser.parse_args(argv)
    global REPOSITORIES
    REPOSITORIES = opts.repositories
    msg_sizes, gpg_sizes = sizes_of(opts.sizes), sizes_of(opts.gpg_sizes)
    if opts.quick:
        msg_sizes, gpg_sizes = [50, 100], [5, 10]
    if opts.profile:
        opts.profile.mkdir(parents=True, exist_ok=True)
    missed: list[str] = []
    rows: list[dict] = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        print(f"{os.cpu_count()} CPUs; images in "
              f"{REPOSITORIES or 'one'} repositor{'ies' if REPOSITORIES else 'y each'}",
              flush=True)
        print(f"{'signer':<6} {'N':>7} {'seconds':>11} {'sig/s':>7} {'peak RSS':>10} "
              f"{'ratio':>7} {'CPU':>11} {'CPU ratio':>9} {'load':>5}", flush=True)
        for name, signer, sizes in (("msg", msg_signer, msg_sizes),
                                    ("gpg", gpg_signer, gpg_sizes)):
            if sizes:
                with signer(Path(tmp)) as flags:
                    missed += measure(name, flags, sizes, Path(tmp), opts.profile, rows)
    print("ratio: wall (CPU ratio: CPU) time per image at N / at the signer's smallest N (the "
          f"anchor, this run); targets: ratio <= {RATIO_TARGET}, msg peak RSS < {rss_target()} "
          "MB at 100,000; load: the 1-minute load average as the line was printed")
    for miss in missed:
        print(f"missed: {miss}")
    if opts.json:
        opts.json.write_text(json.dumps({
            "repositories": REPOSITORIES, "rows": rows, "missed": missed,
            "targets": {"ratio": RATIO_TARGET, "rss_mb_1000_repositories": RSS_TARGET_MB,
                        "rss_mb_one_each": RSS_TARGET_ONE_EACH_MB},
            "load_start": load_start, "load_end": os.getloadavg()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
