#!/usr/bin/env python3
"""Verify-mode speed: N images (default 1,000) whose GPG signatures sit in a local HTTP
lookaside, verified by ``entrypoint.py --mode verify`` as a whole process (Python start, keyring,
plan, 2N fetches: signature-1 and the signature-2 404 that ends each list, N in-process checks,
results.json), against two anchors measured in the same run on the same files:

- a bare fetch: the same 2N GETs through one requests session, 16 threads, nothing checked
  (the floor any verifier that fetches has);
- gpg: one ``gpg --verify`` process per signature (what a check with a gpg process per
  signature costs), over a sample, scaled to N.

Run: make bench-verify   (or PYTHONPATH=.:tests .venv/bin/python bench/verify_bench.py [N]
     [--json FILE]: the figures also as JSON, for bench/report.py)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from infra.lookaside_server import LookasideServer

ROOT = Path(__file__).resolve().parent.parent
GPG_SAMPLE = 100


def run(*args: str, env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "entrypoint.py"), *args], env=env,
                          capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"entrypoint failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=1000)
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures to FILE as JSON (bench/report.py reads it)")
    opts = parser.parse_args()
    n = opts.n
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "g"
        home.mkdir(mode=0o700)
        env = {**os.environ, "GNUPGHOME": str(home)}
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                        "Bench <bench@test.invalid>", "ed25519", "sign", "never"], env=env,
                       check=True, capture_output=True)
        fpr = next(line.split(":")[9] for line in subprocess.run(
            ["gpg", "--with-colons", "--list-keys"], env=env, capture_output=True, text=True,
            check=True).stdout.splitlines() if line.startswith("fpr:"))
        images = [{"reference": f"registry.example.com/bench/app{i}:1.0",
                   "digest": f"sha256:{i:064x}"} for i in range(n)]
        (tmp / "images.json").write_text(json.dumps(images))
        keyring = tmp / "keys.gpg"
        keyring.write_bytes(subprocess.run(["gpg", "--export", fpr], env=env, check=True,
                                           capture_output=True).stdout)
        common = ["--images-file", str(tmp / "images.json"), "--signing-key", fpr,
                  "--no-expand-index"]
        signing = run("--config", f"gpg_signer: {{gnupg_home: {home}}}", *common,
                      "--output-dir", str(tmp / "out"), env=env)
        tree = tmp / "out" / "lookaside"
        with LookasideServer(tree) as server:
            base = server.url + "/registry.example.com"
            ours = min(run("--mode", "verify", "--verify-keyring", str(keyring), *common,
                           "--lookaside-url", base, "--output-dir", str(tmp / f"v{k}"),
                           env={"PATH": os.environ["PATH"], "HOME": str(tmp)})
                       for k in range(3))
            results = json.loads((tmp / "v0" / "results.json").read_text())["summary"]
            assert results["verified"] == n, results
            urls = [f"{base}/bench/app{i}@sha256={i:064x}/signature-{s}"
                    for i in range(n) for s in (1, 2)]
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=16)
            session.mount("http://", adapter)

            def fetch(url: str) -> int:
                with session.get(url) as r:
                    return len(r.content)
            fetches = []
            for _ in range(3):
                start = time.perf_counter()
                with ThreadPoolExecutor(16) as pool:
                    list(pool.map(fetch, urls))
                fetches.append(time.perf_counter() - start)
            bare = min(fetches)
        sample = sorted(tree.rglob("signature-1"))[:GPG_SAMPLE]
        start = time.perf_counter()
        for path in sample:
            subprocess.run(["gpg", "--batch", "--quiet", "--verify", str(path)], env=env,
                           check=True, capture_output=True)
        gpg = (time.perf_counter() - start) / len(sample) * n
    print(f"{n} images, one ed25519 key, a local HTTP lookaside (best of 3):")
    print(f"  signing them first (gpg signer):        {signing:6.2f} s")
    print(f"  this project, --mode verify (process):  {ours:6.2f} s  "
          f"({n / ours:,.0f} images/s)")
    print(f"  bare fetch of the same {2 * n} URLs:      {bare:6.2f} s")
    print(f"  gpg --verify per signature (scaled):    {gpg:6.2f} s")
    print(f"  ratio to the bare fetch: {ours / bare:.2f}x; gpg per signature / this project: "
          f"{gpg / ours:.1f}x")
    if opts.json:
        opts.json.write_text(json.dumps({
            "n": n, "signing_s": signing, "verify_s": ours, "bare_fetch_s": bare,
            "gpg_per_signature_s": gpg, "gpg_sample": len(sample),
            "load_start": load_start, "load_end": os.getloadavg()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
