#!/usr/bin/env python3
"""Planning speed: how long validating and planning an images file takes, in-process and as a
whole `entrypoint.py --dry-run` process (Python start, config, gpg key check, printing the plan).

Target (issue 2): a 10,000-image images file planned with --dry-run "well under a second".
Run: make bench-plan   (or .venv/bin/python bench/plan_bench.py [--json FILE]: the figures also
     as JSON, for bench/report.py)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from signaction.inputs import parse_inputs
from signaction.plan import build_plan

ROOT = Path(__file__).resolve().parent.parent

TARGET = 1.0  # seconds


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures to FILE as JSON (bench/report.py reads it)")
    parser.add_argument("--sizes", default="1000,10000,20000")
    opts = parser.parse_args()
    rows = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="plan-bench-") as tmp:
        tmp = Path(tmp)
        home = tmp / "g"
        home.mkdir(mode=0o700)
        env = {**os.environ, "GNUPGHOME": str(home)}
        subprocess.run(["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase",
                        "", "--quick-gen-key", "Bench <b@x.invalid>", "ed25519", "sign", "never"],
                       env=env, check=True, capture_output=True)
        print(f"{'images':>7} {'format':>6} {'plan (in-process)':>18} {'dry-run (process)':>18} "
              f"{'vs 1 s target':>14}")
        for n in (int(x) for x in opts.sizes.split(",")):
            entries = [{"reference": f"registry.example.com/ns/app{i}:v1",
                        "digest": f"sha256:{i:064x}"} for i in range(n)]
            for fmt in ("json", "yaml"):
                path = tmp / f"images-{n}.{fmt}"
                if fmt == "json":
                    path.write_text(json.dumps(entries))
                else:
                    path.write_text("".join(f"- reference: {e['reference']}\n  digest: "
                                            f"{e['digest']}\n" for e in entries))
                argv = ["--images-file", str(path), "--signing-key", "Bench"]
                in_process = best_of(5, lambda argv=argv: build_plan(parse_inputs(argv, {}), {}))
                cmd = [sys.executable, str(ROOT / "entrypoint.py"), *argv, "--dry-run"]
                whole = best_of(3, lambda cmd=cmd: subprocess.run(cmd, env=env, check=True,
                                                          stdout=subprocess.DEVNULL))
                print(f"{n:>7} {fmt:>6} {in_process * 1000:>15.0f} ms {whole * 1000:>15.0f} ms "
                      f"{whole / TARGET:>13.2f}x")
                rows.append({"n": n, "format": fmt, "in_process_s": in_process,
                             "dry_run_s": whole})
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)
    if opts.json:
        opts.json.write_text(json.dumps({"rows": rows, "target_s": TARGET,
                                         "load_start": load_start,
                                         "load_end": os.getloadavg()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
