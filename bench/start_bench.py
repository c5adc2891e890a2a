#!/usr/bin/env python3
"""Cold start: the wall time of `entrypoint.py --help` and of a one-image gpg dry run (an image
given by digest: no registry; the key in GNUPGHOME: no config file; then the same with a config
file, which is validated against the JSON Schema), as whole processes, beside the floor measured
in the same run: `python -c pass` (the venv's Python with site, which loads the editable
install's finder) and `python -S -c pass` (the interpreter alone).

Target (issue 26): each under 0.25 s. The commands run in turn, round after round, so that a
machine shared with other jobs slows them alike; the median of the rounds is shown, and beside
it each command's CPU time (less sensitive to the load than the wall time) and `-X importtime`
total (the top-level imports' cumulative times added up, median of 3 runs): what the imports
cost, and tests/test_cold_start.py keeps the heavy ones out. The dry run's rest is gpg (its
preflight: the key copied into a private home, a test signature, the home's agent ended).
Modules come from a bytecode cache of the bench's own (PYTHONPYCACHEPREFIX); the script,
entrypoint.py, is compiled on each run, as `python entrypoint.py` always does (the installed
command, container-sign, imports it from its cache).
Run: .venv/bin/python bench/start_bench.py [ROUNDS] [--json FILE]   (default 15 rounds; --json:
     the figures also as JSON, for bench/report.py)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TARGET = 0.25  # seconds
DIGEST = "sha256:" + "1" * 64


def run(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of the process and the children it waited
    for (gpg; not the gpg-agent it started, a daemon)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def import_total(cmd: list[str], env: dict) -> float:
    """Seconds of imports as ``-X importtime`` reports them: the top-level modules' cumulative
    times added up (importtime's own overhead included)."""
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    total = 0
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line[len("import time:"):].split("|")
            if cumulative.strip().isdigit() and not name.startswith("  "):
                total += int(cumulative)
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=15)
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures to FILE as JSON (bench/report.py reads it)")
    opts = parser.parse_args()
    rounds = opts.rounds
    load_start = os.getloadavg()
    python, entry = sys.executable, str(ROOT / "entrypoint.py")
    with tempfile.TemporaryDirectory(prefix="start-bench-") as tmp:
        home = Path(tmp) / "g"
        home.mkdir(mode=0o700)
        # Python's bytecode cache in a folder of this run's (filled by the unmeasured first
        # runs), as an installed package has it: not the checkout's __pycache__, which another
        # job's edits make stale, nor none at all (PYTHONDONTWRITEBYTECODE, which some shells set)
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
               "GNUPGHOME": str(home), "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}
        subprocess.run(["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase",
                        "", "--quick-gen-key", "Bench <b@x.invalid>", "ed25519", "sign", "never"],
                       env=env, check=True, capture_output=True)
        conf = Path(tmp) / "conf.yaml"
        conf.write_text(f"gpg_signer: {{gnupg_home: {home}}}\n")
        dry_run = ["--signer", "gpg", "--image", f"registry.example.com/ns/app:1@{DIGEST}",
                   "--signing-key", "Bench", "--dry-run", "--output-dir", str(Path(tmp) / "out")]
        commands = {
            "python -S -c pass": [python, "-S", "-c", "pass"],
            "python -c pass": [python, "-c", "pass"],
            "--help": [python, entry, "--help"],
            "gpg --dry-run, 1 image": [python, entry, *dry_run],
            # the same with the key's home in a config file: the config is validated (jsonschema)
            "  the same, config file": [python, entry, *dry_run, "--config-file", str(conf)],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for cmd in commands.values():  # once each, unmeasured: files in the page cache
            run(cmd, env)
        for _ in range(rounds):
            for name, cmd in commands.items():
                elapsed, used = run(cmd, env)
                times[name].append(elapsed)
                cpu[name].append(used)
        imported = {name: statistics.median(import_total(cmd, env) for _ in range(3))
                    for name, cmd in commands.items()}
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)

    floor = statistics.median(times["python -c pass"])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{rounds} rounds, {os.cpu_count()} CPU(s), load average {load} (1, 5, 15 min)")
    print(f"{'command':<24} {'median':>9} {'min':>9} {'x python':>9} {'cpu':>9} {'imports':>9} "
          f"{'vs 0.25 s':>10}")
    for name, samples in times.items():
        median = statistics.median(samples)
        target = "" if name.startswith("python") else f"{median / TARGET:>9.2f}x"
        print(f"{name:<24} {median * 1000:>6.0f} ms {min(samples) * 1000:>6.0f} ms "
              f"{median / floor:>8.2f}x {statistics.median(cpu[name]) * 1000:>6.0f} ms "
              f"{imported[name] * 1000:>6.0f} ms {target:>10}")
    print("median: wall time, the median of the rounds; x python: over `python -c pass`'s; cpu: "
          "user + system time, the process and its children (median); imports: -X importtime's "
          "total (median of 3)")
    if opts.json:
        opts.json.write_text(json.dumps({
            "rounds": rounds, "floor": "python -c pass", "target_s": TARGET,
            "commands": {name.strip(): {
                "median_s": statistics.median(samples), "min_s": min(samples),
                "cpu_s": statistics.median(cpu[name]), "imports_s": imported[name]}
                for name, samples in times.items()},
            "load_start": load_start, "load_end": os.getloadavg()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
