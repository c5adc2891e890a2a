"""bench/scale_bench.py still runs: both signers, whole processes, at a tiny size (--quick),
through the real broker, signing server and gpg. Figures are the bench's to print; nothing here
is timed."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_scale_bench_quick_prints_a_line_per_signer_and_size():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "scale_bench.py"), "--quick"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines()
            if line.startswith(("msg ", "gpg "))]
    assert [(r[0], r[1]) for r in rows] == [("msg", "50"), ("msg", "100"), ("gpg", "5"),
                                            ("gpg", "10")], proc.stdout
    for row in rows:  # seconds, sig/s, peak RSS (MB) and the ratio are numbers
        assert float(row[2]) > 0 and float(row[4]) > 0 and float(row[5]) > 0 and row[6] == "MB"
        assert float(row[7]) > 0 and row[9] == "s" and float(row[10]) > 0
    assert rows[0][7] == rows[2][7] == rows[0][10] == rows[2][10] == "1.00"  # the anchors


def test_shard_bench_runs_plan_shards_and_merge_at_a_tiny_size():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "shard_bench.py"), "--sizes",
                           "20,40", "--shards", "2"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.split("|")[0].strip().isdigit()]
    assert [r.split("|")[0].strip() for r in rows] == ["20", "40"], proc.stdout
    assert all(len(r.split("|")) == 4 and r.count(" MB)") == 3 for r in rows)
    assert rows[0].count("1.00x") == 3  # the anchor


def test_trust_bench_judges_every_signature_and_prints_both_kinds():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "trust_bench.py"), "5"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]  # every signature was accepted first
    lines = [ln for ln in proc.stdout.splitlines() if "us/signature" in ln]
    assert [ln.split()[0] for ln in lines] == ["key", "keyless"] + ["OpenPGP"] * 3, proc.stdout
    assert all("x the bare ECDSA verify" in ln for ln in lines[:2])
    assert [ln.split()[1] for ln in lines[2:]] == ["ed25519", "nistp256", "rsa2048"]
