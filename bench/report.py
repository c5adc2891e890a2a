#!/usr/bin/env python3
"""`make bench`: every bench in one run, and docs/performance.md from their figures (issue 26
item 6).

Each bench runs as a child process, one after another (never two at once: they would share the
2 cores), with `--json FILE`: it prints its usual table (passed through to this process's output,
the log) and writes its figures to FILE, which this driver reads. The document has the machine
(cores, RAM, CPU model, the load average before and after each bench, the date, the git commit
and the uncommitted files, whose changes were measured too), each bench's exact command, then
ONE table: a row per target, with the figure, the anchor measured in the same run (the bare
proton echo, pubtools-sign 1.0.6, a bare push, a bare fetch, `python -c pass`, ...), their
ratio, the target, and "met" or "missed by X" with a short reason.

The sizes are the ones issue 26 names for its targets (msg at 3,000 and 100,000 images against
the echo; peak RSS at 100,000 images, one repository per image and 1,000 repositories; merge of
4 shards of 100,000; cold start; 1,000 keyless images at 500 requests a minute; the floor at
1,000 images) and smaller ones for the older targets; about 30 minutes on an idle 2-core
machine. A bench that fails leaves its rows "not measured" (the others still run); the driver
then exits 1, after writing the document.

Run: make bench   (or PYTHONPATH=.:tests .venv/bin/python bench/report.py [--only msg,start]
     [--quick] [--out docs/performance.md] [--json-dir DIR] [--from-json DIR])
     --quick: tiny sizes, that the plumbing works (the document says so; not figures);
     --from-json: the document again from a run's figures, nothing run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30 * 60  # s, one bench; a hung one is stopped (its process group) and reported


@dataclass
class Bench:
    key: str
    script: str
    args: list[str]
    quick: list[str]
    what: str  # one line: what it measures here
    # filled by run()
    json: dict | None = None
    rc: int | None = None
    wall: float = 0.0
    load: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
    command: list[str] = field(default_factory=list)


BENCHES = [
    Bench("start", "start_bench.py", ["15"], ["2"],
          "cold start: --help and a one-image gpg dry run against `python -c pass`"),
    Bench("plan", "plan_bench.py", [], ["--sizes", "100"],
          "planning an images file, whole --dry-run process"),
    Bench("trust", "trust_bench.py", ["1000"], ["20"],
          "one signature's trust decision, CPU only, against the bare public-key verify"),
    Bench("msg", "msg_bench.py", ["--sizes", "3000", "--repeat", "3", "--anchor-max", "3000"],
          ["--sizes", "50", "--repeat", "1", "--anchor-max", "50"],
          "msg signer at 3,000 images against the bare proton echo and pubtools-sign 1.0.6"),
    Bench("msg-100k", "msg_bench.py", ["--sizes", "100000", "--repeat", "1", "--anchor-max",
                                       "0"],
          ["--sizes", "100", "--repeat", "1", "--anchor-max", "0"],
          "msg signer at 100,000 images against the bare proton echo"),
    Bench("scale-one-each", "scale_bench.py", ["--sizes", "10000,100000", "--gpg-sizes",
                                               "1000,3000"],
          ["--sizes", "50,100", "--gpg-sizes", "5,10"],
          "peak RSS and linearity, one repository per image (msg), gpg signer"),
    Bench("scale-1000-repos", "scale_bench.py", ["--sizes", "10000,100000", "--gpg-sizes", "",
                                                 "--repositories", "1000"],
          ["--sizes", "50,100", "--gpg-sizes", "", "--repositories", "10"],
          "peak RSS and linearity, images in 1,000 repositories (msg)"),
    Bench("shard", "shard_bench.py", ["--sizes", "10000,100000", "--shards", "4"],
          ["--sizes", "40,80", "--shards", "4"],
          "4 shards and their merge"),
    Bench("keyless", "keyless_bench.py", ["--images", "1000", "--limit", "500"],
          ["--images", "20", "--limit", "500"],
          "keyless signing against a test bed limited to 500 requests a minute"),
    Bench("floor", "floor_bench.py", ["--images", "1000", "--rounds", "3"],
          ["--images", "20", "--rounds", "1"],
          "in-process cosign signing against a bare http.client push of the same images"),
    Bench("cosign", "cosign_bench.py", ["--images", "100", "--rss-images", "2000"],
          ["--images", "5", "--rss-images", "20"],
          "in-process cosign against pubtools-sign 1.0.6 and bare cosign; peak RSS"),
    Bench("bundle", "bundle_bench.py", ["--images", "100", "--referrers", "0"],
          ["--images", "5", "--referrers", "0"],
          "cosign signing by signature_format: both against legacy"),
    Bench("verify", "verify_bench.py", ["1000"], ["20"],
          "verify mode against a bare fetch of the same lookaside files and gpg"),
]


def loadavg() -> tuple[float, ...]:
    return tuple(round(x, 2) for x in os.getloadavg())


def run(bench: Bench, quick: bool, json_dir: Path) -> None:
    """Runs the bench, its output passed through; its figures into bench.json."""
    out = json_dir / f"{bench.key}.json"
    out.unlink(missing_ok=True)
    bench.command = ["bench/" + bench.script, *(bench.quick if quick else bench.args)]
    cmd = [sys.executable, *bench.command, "--json", str(out)]
    print(f"\n=== {bench.key}: {shlex.join(bench.command)}   (load {fmt_load(loadavg())})",
          flush=True)
    before, start = loadavg(), time.perf_counter()
    tail: deque[str] = deque(maxlen=30)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    timer = _Timer(proc)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line)
        bench.rc = proc.wait()
    finally:
        timer.cancel()
    bench.wall, bench.load = time.perf_counter() - start, (before, loadavg())
    if timer.fired:
        bench.rc = bench.rc or -1
        print(f"=== {bench.key}: stopped after {TIMEOUT} s", flush=True)
    try:
        bench.json = json.loads(out.read_text())
    except (OSError, ValueError):
        bench.json = None
    print(f"=== {bench.key}: exit {bench.rc}, {bench.wall:.0f} s, load "
          f"{fmt_load(bench.load[0])} -> {fmt_load(bench.load[1])}", flush=True)


class _Timer:
    """Stops the bench's process group (this driver started it: its own session) after
    TIMEOUT seconds."""

    def __init__(self, proc: subprocess.Popen):
        import threading
        self.fired = False
        self.proc = proc
        self.t = threading.Timer(TIMEOUT, self._fire)
        self.t.daemon = True
        self.t.start()

    def _fire(self) -> None:
        self.fired = True
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def cancel(self) -> None:
        self.t.cancel()


# -- the machine --------------------------------------------------------------------------------

def machine() -> dict:
    model, mem = "unknown", 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.rstrip("\n") if proc.returncode == 0 else ""
    return {"cores": os.cpu_count(), "ram_mb": mem, "cpu": model,
            "kernel": platform.release(), "python": platform.python_version(),
            "commit": git("rev-parse", "HEAD"), "subject": git("log", "-1", "--format=%s"),
            "dirty": [line[3:] for line in git("status", "--porcelain",
                                               "--untracked-files=no").splitlines()]}


# -- the table ----------------------------------------------------------------------------------

@dataclass
class Row:
    what: str
    figure: str
    anchor: str
    ratio: str
    target: str
    result: str
    why: str


def at_most(value: float, target: float, unit: str, digits: int = 2) -> str:
    return "met" if value <= target else f"missed by {value - target:.{digits}f}{unit}"


def at_least(value: float, target: float, unit: str, digits: int = 2) -> str:
    return "met" if value >= target else f"missed by {target - value:.{digits}f}{unit}"


def largest(rows: list[dict], **match) -> dict | None:
    """The row of the largest n among those matching (the size the target is at)."""
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return max(found, key=lambda r: r["n"]) if found else None


def smallest(rows: list[dict], **match) -> dict | None:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return min(found, key=lambda r: r["n"]) if found else None


def ms(s: float) -> str:
    return f"{s * 1000:.0f} ms"


def rows_start(j: dict) -> list[Row]:
    c, target = j["commands"], j["target_s"]
    floor = c["python -c pass"]
    out = []
    for name, label, met, missed in (
            ("--help", "Cold start, `--help` (#26.3)",
             "imports deferred to their first use (signers from a static table, the registry "
             "client built on first use); tests/test_cold_start.py keeps heavy ones out",
             "imports at start, or the load: see its CPU time"),
            ("gpg --dry-run, 1 image", "Cold start, one-image gpg dry run (#26.3)",
             "as `--help`, plus gpg's preflight (a test signature in a private home)",
             "gpg's preflight (a test signature, the agent started and ended) on top of the "
             "imports, or the load: see its CPU time"),
            ("the same, config file", "Cold start, the same dry run with a config file (beside "
             "#26.3)",
             "as above; jsonschema imported to validate the config",
             "jsonschema imported and the schema compiled to validate the config (~75 ms); "
             "the dry run without a config file is the #26 target")):
        m = c[name]["median_s"]
        verdict = "met" if m <= target else f"missed by {(m - target) * 1000:.0f} ms"
        out.append(Row(label, f"{ms(m)} (median of {j['rounds']}; CPU {ms(c[name]['cpu_s'])},"
                              f" imports {ms(c[name]['imports_s'])})",
                       f"`python -c pass` {ms(floor['median_s'])}",
                       f"{m / floor['median_s']:.1f}x", f"< {ms(target)}", verdict,
                       met if m <= target else missed))
    return out


def rows_plan(j: dict) -> list[Row]:
    target = j["target_s"]
    sizes = {r["n"] for r in j["rows"]}
    big = 10_000 if 10_000 in sizes else max(sizes)  # the size issue 2's target names
    got = {r["format"]: r for r in j["rows"] if r["n"] == big}
    worst = max(r["dry_run_s"] for r in got.values())
    return [Row(f"Planning {big:,} images, whole `--dry-run` process (#2)",
                " / ".join(f"{f.upper()} {got[f]['dry_run_s']:.2f} s" for f in ("json", "yaml")
                           if f in got),
                "— (in-process plan: " + " / ".join(
                    f"{ms(got[f]['in_process_s'])}" for f in ("json", "yaml") if f in got) + ")",
                "—", f"< {target:.0f} s", at_most(worst, target, " s"),
                "start-up, config and the gpg key check are most of it" if worst <= target
                else "under load; the in-process plan is a fraction of it")]


def rows_trust(j: dict) -> list[Row]:
    out = []
    cosign = [r for r in j["rows"] if r["kind"].startswith("cosign")]
    for r in cosign:
        us = r["ours_cpu_s"] / r["count"] * 1e6
        anchor = r["anchor_cpu_s"] / r["count"] * 1e6
        out.append(Row(f"Trust decision, {r['kind']} (#22)", f"{us:.0f} us/signature CPU",
                       f"bare ECDSA verify {anchor:.0f} us", f"{us / anchor:.1f}x",
                       "none stated", "—",
                       "the chain, SCT, identity, SET and body checks beside the one ECDSA "
                       "verification" if "keyless" in r["kind"] else
                       "the Rekor SET and body checks beside the payload's verification"))
    pgp = [r for r in j["rows"] if r["kind"].startswith("OpenPGP")]
    if pgp:
        out.append(Row("Trust decision, OpenPGP claim (parser, Sequoia, podman's rules) (#22)",
                       ", ".join(f"{r['kind'].split()[1]} "
                                 f"{r['ours_cpu_s'] / r['count'] * 1e6:.0f} us" for r in pgp),
                       "bare verify " + ", ".join(
                           f"{r['anchor_cpu_s'] / r['count'] * 1e6:.0f} us" for r in pgp),
                       ", ".join(f"{r['ours_cpu_s'] / r['anchor_cpu_s']:.1f}x" for r in pgp),
                       "none stated", "—",
                       "Sequoia's verify against cryptography's (rsa2048: the OpenPGP packet "
                       "hashing and parsing weigh more beside a fast RSA verify)"))
    return out


def rows_msg(j: dict) -> list[Row]:
    out = []
    t = j["targets"]
    for r in j["sizes"]:
        n = r["n"]
        ratio, med = r["ours_best_s"] / r["echo_best_s"], r["ours_median_s"] / r[
            "echo_median_s"]
        best = "best" if j["repeat"] > 1 else "one run"
        loads = "; ".join(
            f"load ours {x['load_1min']['ours'][0]:.1f}→{x['load_1min']['ours'][1]:.1f}, "
            f"echo {x['load_1min']['echo'][0]:.1f}→{x['load_1min']['echo'][1]:.1f}"
            for x in r.get("runs", []))
        if ratio < 0.9:
            why = ("the echo took longer than this project: the load slowed it more ("
                   + (f"{loads}; " if loads else "") + f"CPU {r['ours_cpu_s']:.1f} s against "
                   f"the echo's {r['echo_cpu_s']:.1f} s)")
        elif ratio <= t["vs_echo"]:
            why = ("the fixed start-up (~0.36 s) is spread over many images; every reply "
                   "is checked, beside the event loop" if n >= 20000 else
                   "every reply checked beside the event loop; the start-up is small here")
        elif n >= 20000:
            why = ("the per-image signature write path (signature file, results) and the "
                   "load; every reply is checked, none skipped")
        else:
            why = ("fixed start-up ~0.36 s (Python, config, plan, the certificate's CN) that "
                   "the echo has not, and the signature write path (~0.6 CPU s per 3,000: "
                   "results, artifacts, lookaside); every reply is checked, none skipped")
        if loads and ratio >= 0.9 and j["repeat"] == 1:
            why += f" ({loads})"
        out.append(Row(f"msg signer, {n:,} images, against the bare echo (#26.1)",
                       f"{r['ours_best_s']:.2f} s ({best}; median {r['ours_median_s']:.2f} s, "
                       f"CPU {r['ours_cpu_s']:.2f} s)",
                       f"bare proton echo {r['echo_best_s']:.2f} s (median "
                       f"{r['echo_median_s']:.2f} s, CPU {r['echo_cpu_s']:.2f} s)",
                       f"{ratio:.2f}x (medians {med:.2f}x)",
                       f"≤ {t['vs_echo']:.2f}x (#3: ≤ {t['vs_echo_issue3']:.1f}x)",
                       at_most(ratio, t["vs_echo"], "x"), why))
        if r.get("pubtools_s"):
            speedup = r["pubtools_s"] / r["ours_best_s"]
            out.append(Row(f"msg signer, {n:,} images, against pubtools-sign 1.0.6 (#3)",
                           f"{r['ours_best_s']:.2f} s (best; median {r['ours_median_s']:.2f} s, "
                           f"CPU {r['ours_cpu_s']:.2f} s)",
                           f"pubtools-sign 1.0.6 {r['pubtools_s']:.2f} s (one run)",
                           f"{speedup:.1f}x faster", f"≥ {t['vs_pubtools']:.0f}x",
                           at_least(speedup, t["vs_pubtools"], "x", 1),
                           "one event loop, sends pipelined under credit, replies matched in "
                           "O(1); pubtools-sign's time grows faster than N" if
                           speedup >= t["vs_pubtools"] else
                           "our fixed start-up weighs at 3,000 images; pubtools-sign's time "
                           "grows faster than N (the gap widens with N)"))
    return out


def rows_scale(one_each: dict | None, spread: dict | None) -> list[Row]:
    out = []
    for j, label, tkey, met, missed in (
            (one_each, "one repository per image", "rss_mb_one_each",
             "the Recorder keeps a status byte per image (the rest on disk), results.json and "
             "verification/ streamed",
             "a policy scope per repository in verification/, the plan's Image/Reference "
             "objects (~570 B/image), the msg session's request list"),
            (spread, "1,000 repositories", "rss_mb_1000_repositories",
             "the Recorder keeps a status byte per image, results.json streamed",
             "the plan's Image/Reference objects (~570 B/image) and the msg session's request "
             "list, built up front")):
        if j is None:
            continue
        big, small = largest(j["rows"], signer="msg"), smallest(j["rows"], signer="msg")
        if big is None:
            continue
        target = j["targets"][tkey]
        anchor = (f"the same at {small['n']:,}: {small['peak_rss_mb']:.0f} MB"
                  if small is not big else "—")
        ratio = f"{big['peak_rss_mb'] / small['peak_rss_mb']:.2f}x" if small is not big else "—"
        ok = big["peak_rss_mb"] < target
        out.append(Row(f"Peak RSS, msg signer, {big['n']:,} images in {label} (#26.2)",
                       f"{big['peak_rss_mb']:.0f} MB ({big['wall_s']:.0f} s)", anchor, ratio,
                       f"< {target} MB", "met" if ok else
                       f"missed by {big['peak_rss_mb'] - target:.0f} MB", met if ok else missed))
    for j, signer, label in ((spread, "msg", "msg signer, 1,000 repositories (#14)"),
                             (one_each, "gpg", "gpg signer, a key without passphrase (#14)")):
        if j is None:
            continue
        big, small = largest(j["rows"], signer=signer), smallest(j["rows"], signer=signer)
        if big is None or big is small:
            continue
        target = j["targets"]["ratio"]
        best = min(big["ratio"], big["cpu_ratio"])
        out.append(Row(f"Linear: time per image at {big['n']:,} against {small['n']:,}, "
                       f"{label}",
                       f"{big['wall_s'] / big['n'] * 1000:.2f} ms/image (CPU "
                       f"{big['cpu_s'] / big['n'] * 1000:.2f})",
                       f"at {small['n']:,}: {small['wall_s'] / small['n'] * 1000:.2f} ms/image "
                       f"(CPU {small['cpu_s'] / small['n'] * 1000:.2f})",
                       f"{big['ratio']:.2f}x (CPU {big['cpu_ratio']:.2f}x)", f"≤ {target}x",
                       at_most(best, target, "x"),
                       "nothing per image grows with N" if big["ratio"] <= target else
                       f"CPU per image flat ({big['cpu_ratio']:.2f}x): the wall time followed "
                       f"the load (1-minute average as each ended: {small['load'][0]:.1f} at "
                       f"{small['n']:,}, {big['load'][0]:.1f} at {big['n']:,})"
                       if best <= target else "grows with N, in CPU time too"))
    if spread is not None:
        small_runs = [x for x in spread["rows"] if x["signer"] == "msg" and x["n"] <= 10000]
        if small_runs:
            r = max(small_runs, key=lambda x: x["n"])
            out.append(Row(f"Peak RSS, msg signer, {r['n']:,} images, 1,000 repositories (#3)",
                           f"{r['peak_rss_mb']:.0f} MB", "—", "—", "< 100 MB",
                           "met" if r["peak_rss_mb"] < 100 else
                           f"missed by {r['peak_rss_mb'] - 100:.0f} MB",
                           "requests built when sent, a status byte per recorded image"))
    return out


def rows_shard(j: dict) -> list[Row]:
    big, small = largest(j["rows"]), smallest(j["rows"])
    if big is None or small is None:
        return []
    target = j["targets"]["merge_rss_mb_at_100000"]
    m, a = big["merge"], small["merge"]
    ok = m["peak_rss_mb"] < target
    return [Row(f"Peak RSS, merge of {j['shards']} shards of {big['n']:,} images (#26.2)",
                f"{m['peak_rss_mb']:.0f} MB ({m['wall_s']:.1f} s)",
                f"merge of {small['n']:,}: {a['peak_rss_mb']:.0f} MB" if small is not big
                else "—",
                f"{m['peak_rss_mb'] / a['peak_rss_mb']:.2f}x" if small is not big else "—",
                f"< {target} MB", "met" if ok else f"missed by {m['peak_rss_mb'] - target:.0f} MB",
                "each shard's results.json read element by element (never parsed whole), "
                "entries through one temporary file" if ok else
                "what merge keeps per image grows with N")]


def rows_keyless(j: dict) -> list[Row]:
    ratio = j["wall_s"] / j["allowed_s"]
    close = 1.1
    ok = j["failures"] == 0 and j["exit"] == 0 and ratio <= close
    limited = j["limited"]
    client = j.get("allowed_client_s")
    verdict = "met" if ok else (f"missed: {j['failures']} failures" if j["failures"] else
                                f"missed by {ratio - close:.2f}x")
    return [Row(f"Keyless, {j['n']:,} images, test bed at {j['limit_per_minute']:g} requests/"
                f"min (#26.4)",
                f"{j['wall_s']:.1f} s, {j['failures']} failures, 429s: Fulcio "
                f"{limited['fulcio']}, Rekor {limited['rekor']}",
                f"what the limit allows: {j['allowed_s']:.1f} s ({j['needed_requests']} "
                f"requests)", f"{ratio:.2f}x",
                f"0 failures, ≤ {close}x (\"close to what the limit allows\")", verdict,
                (f"the client keeps to its own {j['client_per_minute']:g}/min, below the "
                 f"server's limit ({client:.1f} s for the same requests): no 429; the rest is "
                 f"start-up, plan and pushes (a dry run {j['dry_run_s']:.1f} s)") if client
                else "no client-side limit")]


def rows_floor(j: dict) -> list[Row]:
    o, f = j["ours"], j["floor"]
    n = j["n"]
    ratio = j["ratio_best"]
    return [Row(f"In-process cosign against a bare push, {n:,} images (#26.5)",
                f"{n / o['best_wall_s']:.0f} images/s ({o['best_wall_s']:.2f} s, best of "
                f"{j['rounds']}; {o['requests_per_image']:.1f} requests/image)",
                f"bare http.client push {n / f['best_wall_s']:.0f} images/s "
                f"({f['best_wall_s']:.2f} s; {f['requests_per_image']:.1f} requests/image)",
                f"{ratio:.2f} (medians {j['ratio_median']:.2f}; signing phase "
                f"{j['ratio_phase']:.2f})", f"≥ {j['target']}",
                at_least(ratio, j["target"], ""),
                "" if ratio >= j["target"] else
                f"{o['requests_per_image']:.0f} requests/image against "
                f"{f['requests_per_image']:.0f}: the `.sig` read (skip-signed, appending to a "
                "`.sig` already there) and the re-read after the write (a concurrent writer's "
                f"overwrite caught) are the cost of correctness; start-up {j['dry_run_s']:.2f} s")]


def rows_cosign(j: dict) -> list[Row]:
    runs, t = j["runs"], j["targets"]
    out = []
    native, pub, bare = runs["native"], runs["pubtools_sign"], runs["bare_cosign"]
    dry = runs["dry_run"]["wall_s"]
    speedup = pub["wall_s"] / native["wall_s"]
    per_ours = max(native["wall_s"] - dry, 1e-6) / j["n"] * 1000
    per_pub = pub["wall_s"] / j["n"] * 1000
    out.append(Row(f"In-process cosign against pubtools-sign 1.0.6, {j['n']:,} images (#15, at "
                   "200)", f"{native['wall_s']:.2f} s",
                   f"pubtools-sign 1.0.6 {pub['wall_s']:.2f} s (bare `cosign sign` calls "
                   f"{bare['wall_s']:.2f} s)", f"{speedup:.1f}x faster",
                   f"≥ {t['pubtools_over_native']:.0f}x",
                   at_least(speedup, t["pubtools_over_native"], "x", 1),
                   "signed in-process, the key decrypted once; pubtools-sign runs a cosign "
                   "process per image (start-up and scrypt each time)"
                   if speedup >= t["pubtools_over_native"] else
                   f"per image {per_ours:.0f} ms against pubtools-sign's {per_pub:.0f} ms "
                   f"({per_pub / per_ours:.1f}x); our fixed {dry:.2f} s (start-up, plan, the "
                   "key's scrypt decryption: a dry run) weighs on the whole run at this size"))
    big, plain = runs.get("native_rss"), runs.get("native_rss_pkcs8")
    if big:
        ok = big["peak_rss_mb"] < t["rss_mb"]
        out.append(Row(f"Peak RSS, in-process cosign, {big['n']:,} images (#15)",
                       f"{big['peak_rss_mb']:.0f} MB",
                       f"the same with a PKCS#8 key (no scrypt): {plain['peak_rss_mb']:.0f} MB"
                       if plain else "—",
                       f"{big['peak_rss_mb'] / plain['peak_rss_mb']:.2f}x" if plain else "—",
                       f"< {t['rss_mb']} MB", "met" if ok else
                       f"missed by {big['peak_rss_mb'] - t['rss_mb']:.0f} MB",
                       "cosign's key file needs scrypt (N=65536, r=8: 64 MiB once) to decrypt"
                       if plain else ""))
    return out


def rows_bundle(j: dict) -> list[Row]:
    """A row per registry; judged as the bench judges: the whole run's ratio and the signing
    part's (less a dry run's time), both at least the target."""
    out = []
    target = j["target"]
    names = {"docker-registry": "docker-registry (fallback tag)",
             "oci11": "OCI 1.1 registry (referrers API)"}
    for where in ("docker-registry", "oci11"):
        cs = [c for c in j["configs"] if c["registry"] == where]
        if not cs:
            continue
        worst = min(min(c["ratio_whole"], c["ratio_signing"]) for c in cs)
        figure = "; ".join(f"tlog {'on' if c['tlog'] else 'off'}: both "
                           f"{c['formats']['both']['images_per_s']:.1f} images/s" for c in cs)
        anchor = "; ".join(f"legacy {c['formats']['legacy']['images_per_s']:.1f}" for c in cs)
        why = "two pushes per image instead of one (and two log entries with Rekor)"
        if worst < target:
            why += (f"; one run of each format (--repeat {j['repeat']}, {j['n']} images: issue 25 "
                    "measured 200, best of 3) under a moving load")
        elif max(c["ratio_whole"] for c in cs) > 1:
            why += (f"; a ratio over 1 is noise: one run of each format (--repeat "
                    f"{j['repeat']}) under a moving load")
        out.append(Row(f"cosign `both` against `legacy`, {j['n']} images, {names[where]} (#25)",
                       figure, anchor + " (same run)",
                       "whole run " + " / ".join(f"{c['ratio_whole']:.2f}" for c in cs)
                       + ", signing part " + " / ".join(f"{c['ratio_signing']:.2f}" for c in cs)
                       + " (tlog off / on)",
                       f"≥ {target}, both", at_least(worst, target, ""), why))
    return out


def rows_verify(j: dict) -> list[Row]:
    n = j["n"]
    return [Row(f"Verify mode, {n:,} images from a local HTTP lookaside (#13)",
                f"{j['verify_s']:.2f} s ({n / j['verify_s']:.0f} images/s)",
                f"bare fetch of the same {2 * n:,} URLs {j['bare_fetch_s']:.2f} s; a gpg "
                f"process per signature {j['gpg_per_signature_s']:.2f} s (scaled)",
                f"{j['verify_s'] / j['bare_fetch_s']:.2f}x the fetch; gpg's "
                f"{j['gpg_per_signature_s'] / j['verify_s']:.1f}x ours",
                "none stated", "—",
                "start-up, keyring, plan and an in-process check per signature beside the same "
                "fetches")]


def table(benches: dict[str, Bench]) -> list[Row]:
    def have(*keys: str) -> bool:
        return all(benches.get(k) and benches[k].json for k in keys)
    rows: list[Row] = []
    missing = []

    def add(keys: tuple[str, ...], build: Callable[[], list[Row]], label: str) -> None:
        if have(*keys):
            rows.extend(build())
        else:
            failed = [k for k in keys if benches.get(k) and not benches[k].json]
            if failed:
                missing.append(Row(label, "—", "—", "—", "—", "not measured",
                                   "bench failed: " + ", ".join(
                                       f"{k} (exit {benches[k].rc})" for k in failed)))
    j = lambda k: benches[k].json  # noqa: E731
    add(("msg",), lambda: rows_msg(j("msg")), "msg signer at 3,000 images")
    add(("msg-100k",), lambda: rows_msg(j("msg-100k")),
        "msg signer at 100,000 images")
    if have("scale-one-each") or have("scale-1000-repos"):
        rows.extend(rows_scale(j("scale-one-each") if have("scale-one-each") else None,
                               j("scale-1000-repos") if have("scale-1000-repos") else None))
    for k in ("scale-one-each", "scale-1000-repos"):
        if benches.get(k) and not benches[k].json:
            missing.append(Row(f"Peak RSS at 100,000 ({k})", "—", "—", "—", "—",
                               "not measured", f"bench failed: {k} (exit {benches[k].rc})"))
    add(("shard",), lambda: rows_shard(j("shard")), "merge of 4 shards")
    add(("start",), lambda: rows_start(j("start")), "cold start")
    add(("keyless",), lambda: rows_keyless(j("keyless")), "keyless at 500 requests/min")
    add(("floor",), lambda: rows_floor(j("floor")), "in-process cosign against a bare push")
    add(("cosign",), lambda: rows_cosign(j("cosign")), "in-process cosign vs pubtools-sign")
    add(("bundle",), lambda: rows_bundle(j("bundle")), "cosign both against legacy")
    add(("plan",), lambda: rows_plan(j("plan")), "planning")
    add(("verify",), lambda: rows_verify(j("verify")), "verify mode")
    add(("trust",), lambda: rows_trust(j("trust")), "trust decision")
    return sorted(rows + missing, key=order)


OLDER = ("3", "14", "15", "25", "2", "13", "22")  # after issue 26's rows, in this order


def order(row: Row) -> tuple[int, float]:
    """Issue 26's rows first, by item; then the older targets'."""
    import re
    found = re.search(r"#(\d+)(?:\.(\d+))?", row.what)
    if found is None:
        return (2, 0.0)
    issue, item = found.group(1), found.group(2)
    if issue == "26":
        return (0, float(item or 0))
    return (1, float(OLDER.index(issue)) if issue in OLDER else 99.0)


# -- the document -------------------------------------------------------------------------------

def fmt_load(load: tuple[float, ...]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def document(benches: list[Bench], info: dict, started: datetime.datetime,
             ended: datetime.datetime, argv: list[str], quick: bool,
             rewritten: datetime.datetime | None = None) -> str:
    by_key = {b.key: b for b in benches}
    rows = table(by_key)
    gib = info["ram_mb"] / 1024
    lines = ["# Performance", ""]
    if quick:
        lines += ["**A `--quick` run: tiny sizes that check the benches run, not figures.**", ""]
    minutes = round((ended - started).total_seconds() / 60)
    subject = info["subject"]
    if len(subject) > 80:
        subject = subject[:80].rsplit(" ", 1)[0] + " …"
    lines += [
        f"Written by `make bench` (bench/report.py) on {started:%Y-%m-%d}, from {started:%H:%M} "
        f"to {ended:%H:%M} UTC ({minutes} minute{'s' if minutes != 1 else ''}). The benches "
        "run one after another, never two at once, each measuring whole processes from start "
        "to exit; each figure sits beside its anchor measured in the same run, on the same "
        "machine, minutes apart at most." + (
            f" The text was written again on {rewritten:%Y-%m-%d %H:%M} UTC from this run's "
            "figures (`bench/report.py --from-json`), nothing re-measured." if rewritten
            else ""),
        "",
        "**Machine**: " + f"{info['cores']} cores ({info['cpu']}), {gib:.1f} GiB RAM, Linux "
        f"{info['kernel']}, Python {info['python']}. Commit `{info['commit'][:12]}` "
        f"({subject})" + (
            "; uncommitted changes in the checkout at the start, measured too: "
            + ", ".join(f"`{p}`" for p in info["dirty"]) if info["dirty"] else
            "; no uncommitted changes") + ".",
        "",
        "**Load**: the machine is shared with other jobs (test suites, other sessions), so "
        "its load average is given before and after each bench (1, 5 and 15 minutes). Figures "
        "taken under load are pessimistic: wall times grow with it, CPU times much less (some "
        "rows give both). That is why each ratio is against an anchor measured in the same "
        "run, which the same load slows alike; an absolute target (milliseconds, megabytes, "
        "seconds) has no such shield, and memory is not moved by load.",
        "",
        "**Command**: `make bench`, which runs `PYTHONPATH=$PWD:$PWD/tests " + shlex.join(
            [".venv/bin/python", "bench/report.py", *argv]) + "`; it runs, in this order:",
        "",
    ]
    for b in benches:
        status = "" if b.rc == 0 else f" — **failed, exit {b.rc}**"
        lines.append(f"- `{shlex.join(b.command)}`: {b.what}; {b.wall:.0f} s, load "
                     f"{fmt_load(b.load[0])} → {fmt_load(b.load[1])}{status}")
    lines += [
        "",
        "Each bench also runs on its own (`make bench-msg`, `bench-scale`, `bench-shard`, "
        "`bench-start`, `bench-keyless`, `bench-floor`, `bench-cosign`, `bench-bundle`, "
        "`bench-verify`, `bench-trust`, `bench-plan`), with its own defaults, and prints more "
        "than this table (every size, medians, CPU and registry figures, where the time goes); "
        "each one's docstring says what it measures. `--json FILE` makes any of them write its "
        "figures as JSON, which is how this table is made.",
        "",
        "| What (issue) | Figure | Anchor (same run) | Ratio | Target | Result | Why |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(cell(x) for x in (
            r.what, r.figure, r.anchor, r.ratio, r.target, r.result, r.why)) + " |")
    lines += [
        "",
        "#N: the issue that set the target (issue 26's items are #26.1 to #26.5). Sizes are the "
        "ones issue 26 names for its targets; some older targets are measured at smaller sizes "
        "than their issues named, to keep the run short: cosign against pubtools-sign at 100 "
        "images, not 200 (our fixed start-up weighs more at 100, so that ratio errs low), gpg "
        "linearity to 3,000, not 10,000. Best: the "
        "shortest of interleaved runs; the peak RSS is the signing process's own (VmHWM). "
        "\"Why\" gives the causes found when each target was worked on (issue 26's notes and "
        "the commits that name it); this run re-measures the figures, not the causes.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated bench keys: " +
                        ", ".join(b.key for b in BENCHES))
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: that the plumbing works (not figures)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--json-dir", type=Path,
                        help="where each bench's JSON and the run's (run.json) are kept "
                             "(default: a new temporary folder, named at the end)")
    parser.add_argument("--from-json", type=Path, metavar="DIR",
                        help="run nothing: write the document again from a run's --json-dir "
                             "(the same figures, machine, loads and commands)")
    argv = sys.argv[1:]
    opts = parser.parse_args(argv)
    if opts.from_json:
        return rewrite(opts.from_json, opts.out)
    benches = BENCHES
    if opts.only:
        keys = opts.only.split(",")
        unknown = set(keys) - {b.key for b in BENCHES}
        if unknown:
            parser.error(f"unknown bench: {', '.join(sorted(unknown))}")
        benches = [b for b in BENCHES if b.key in keys]
    info = machine()
    started = datetime.datetime.now(datetime.UTC)
    print(f"make bench: {len(benches)} benches, {info['cores']} cores, load "
          f"{fmt_load(loadavg())}, commit {info['commit'][:12]}", flush=True)
    json_dir = opts.json_dir or Path(tempfile.mkdtemp(prefix="bench-report-"))
    json_dir.mkdir(parents=True, exist_ok=True)
    for b in benches:
        run(b, opts.quick, json_dir)
    ended = datetime.datetime.now(datetime.UTC)
    (json_dir / "run.json").write_text(json.dumps({
        "info": info, "started": started.isoformat(), "ended": ended.isoformat(), "argv": argv,
        "quick": opts.quick, "benches": [{"key": b.key, "rc": b.rc, "wall": b.wall,
                                          "load": b.load, "command": b.command}
                                         for b in benches]}, indent=1) + "\n")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(document(benches, info, started, ended, argv, opts.quick))
    print(f"\nwrote {opts.out} ({(ended - started).total_seconds() / 60:.1f} minutes); the "
          f"figures as JSON in {json_dir}")
    failed = [b.key for b in benches if b.rc != 0 or b.json is None]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def rewrite(json_dir: Path, out: Path) -> int:
    """The document again from a finished run's JSON (after a change to how it is written)."""
    saved = json.loads((json_dir / "run.json").read_text())
    known = {b.key: b for b in BENCHES}
    benches = []
    for meta in saved["benches"]:
        b = known[meta["key"]]
        b.rc, b.wall, b.command = meta["rc"], meta["wall"], meta["command"]
        b.load = (tuple(meta["load"][0]), tuple(meta["load"][1]))
        try:
            b.json = json.loads((json_dir / f"{b.key}.json").read_text())
        except (OSError, ValueError):
            b.json = None
        benches.append(b)
    out.write_text(document(benches, saved["info"],
                            datetime.datetime.fromisoformat(saved["started"]),
                            datetime.datetime.fromisoformat(saved["ended"]), saved["argv"],
                            saved["quick"], datetime.datetime.now(datetime.UTC)))
    print(f"wrote {out} from {json_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
