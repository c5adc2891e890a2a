#!/usr/bin/env python3
"""Sharded signing at scale: plan, shards and merge as whole processes, up to 100,000 images.

For each size N: the whole plan checked (`--dry-run`, the work every shard repeats before taking
its share), N images signed as S shards (`--shard K/S`, the msg signer through the embedded
broker with the instant signing server, as bench/msg_bench.py; shards run one after another so
each is timed alone), then `merge` of the S folders into one. Each is a whole process (start-up,
reading, writing every file): wall seconds and peak RSS. The per-image cost at N against the
smallest N (the anchor, measured in the same run) shows whether anything grows faster than N.

Target (issue 26): the merge of 4 shards of 100,000 images under 150 MB of peak RSS (each
shard's results.json is read element by element, never parsed whole). Each line is followed by
the machine's 1-minute load average (the machine is shared).

Run: make bench-shard   (or .venv/bin/python bench/shard_bench.py [--sizes 10000,20000,100000]
[--shards 4] [--json FILE]: the figures also as JSON, for bench/report.py)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from msg_bench import KEY, ROOT, images, instant_bed, measured
from scale_bench import cpu_of_children

ENTRYPOINT = [sys.executable, str(ROOT / "entrypoint.py")]
MERGE_RSS_TARGET_MB = 150  # at 100,000 images


def run(what: str, args: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds, peak RSS (MB) of one whole process."""
    cpu = cpu_of_children()
    wall, rss, rc, err = measured(ENTRYPOINT + args + ["--log-level", "warning"], {
        "PATH": "/usr/bin:/bin"})
    if rc != 0:
        raise SystemExit(f"{what} failed (exit {rc}): {err}")
    return wall, cpu_of_children() - cpu, rss


def one_size(n: int, shards: int, conf: Path, tmp: Path
             ) -> dict[str, tuple[float, float, float]]:
    listing = tmp / f"images-{n}.json"
    listing.write_text(json.dumps(images(n)))
    common = ["--signer", "msg", "--config-file", str(conf), "--images-file", str(listing),
              "--signing-key", KEY, "--task-id", f"shard-bench-{n}"]
    figures = {"plan": run("the dry run", common + ["--dry-run"])}
    walls, cpus, peak = 0.0, 0.0, 0.0
    for k in range(1, shards + 1):
        wall, cpu, rss = run(f"shard {k}/{shards}", common + [
            "--shard", f"{k}/{shards}", "--output-dir", str(tmp / f"{n}" / f"shard-{k}")])
        walls, cpus, peak = walls + wall, cpus + cpu, max(peak, rss)
    figures["shards"] = (walls, cpus, peak)
    out = tmp / f"{n}" / "merged"
    figures["merge"] = run("merge", ["merge", "--output-dir", str(out)] + [
        str(tmp / f"{n}" / f"shard-{k}") for k in range(1, shards + 1)])
    summary = json.loads((out / "results.json").read_text())["summary"]
    if summary["signed"] != n:
        raise SystemExit(f"merge at N={n}: {summary}")
    shutil.rmtree(tmp / f"{n}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,20000,100000")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures to FILE as JSON (bench/report.py reads it)")
    opts = parser.parse_args()
    rows: list[dict] = []
    load_start = os.getloadavg()
    sizes = [int(s) for s in opts.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="shard-bench-") as tmp, \
            instant_bed(Path(tmp)) as (_, conf):
        print(f"{opts.shards} shards, msg signer (embedded broker, instant server); each "
              "step: wall s / CPU s (peak RSS of its process) and the CPU time per image "
              f"against N={sizes[0]}'s (wall time follows the machine's load)")
        print(f"{'N':>7} | {'plan (dry run)':>33} | {'all shards (sum)':>33} | "
              f"{'merge':>33}")
        anchor: dict[str, float] = {}
        missed = []
        for n in sizes:
            figures = one_size(n, opts.shards, conf, Path(tmp))
            cells = []
            for step, (wall, cpu, rss) in figures.items():
                anchor.setdefault(step, cpu / n)
                cells.append(f"{wall:7.2f} / {cpu:7.2f} s ({rss:4.0f} MB) "
                             f"{cpu / n / anchor[step]:4.2f}x")
            print(f"{n:>7} | " + " | ".join(cells), flush=True)
            rows.append({"n": n, "load": os.getloadavg(), **{
                step: {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss,
                       "cpu_per_image_ratio": cpu / n / anchor[step]}
                for step, (wall, cpu, rss) in figures.items()}})
            print(f"        (load average {os.getloadavg()[0]:.1f})", flush=True)
            if n >= 100_000 and figures["merge"][2] > MERGE_RSS_TARGET_MB:
                missed.append(f"merge at {n}: peak RSS {figures['merge'][2]:.0f} MB > "
                              f"{MERGE_RSS_TARGET_MB} MB")
        print(f"target: merge peak RSS < {MERGE_RSS_TARGET_MB} MB at 100,000; {os.cpu_count()} "
              "CPUs")
        for miss in missed:
            print(f"missed: {miss}")
    if opts.json:
        opts.json.write_text(json.dumps({
            "shards": opts.shards, "rows": rows, "missed": missed,
            "targets": {"merge_rss_mb_at_100000": MERGE_RSS_TARGET_MB},
            "load_start": load_start, "load_end": os.getloadavg()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
