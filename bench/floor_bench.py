#!/usr/bin/env python3
"""In-process cosign signing against the registry's own limit: this project's native path vs a
bare HTTP client pushing the same `.sig` images (the floor), issue 26 item 5.

N distinct single-platform images in a loopback docker-registry (bench/cosign_bench.py's
Registry, freshly pushed per run: pushing is setup, not measured), T threads for both:
- this project: `entrypoint.py --signer cosign --images-file ... --no-expand-index`, the whole
  process (start-up, plan, the key decrypted once, per image the payload signed, the `.sig`
  tag read (which also serves skip-signed), payload and config blobs pushed, the manifest put,
  the tag re-read (a concurrent writer's overwrite caught), results.json, verification/);
- the floor: a child process with a pool of T threads, each with its own keep-alive
  http.client connection, doing only the requests that make the same registry state: per
  image POST+PUT the payload blob, POST+PUT the config blob, PUT the `.sig` manifest; no
  read at all. Its bytes are computed beforehand (not timed) with the project's own formats
  code (signaction.formats.cosign) and the bench key, for the same identity, digest and
  annotations as ours: the same payload and config bytes, the same manifest but for the
  signature's value (ECDSA signatures are randomised). Checked: ours' `.sig` manifest of a
  few images equals the floor's for them with the signature value masked; both runs' first,
  middle and last images pass `cosign verify`.
Rounds are interleaved (the order alternating), each on fresh images; the best (shortest wall)
of each is shown, with the median. Shown: images/s, floor/ours (throughput ratio: target
>= 0.9), registry requests per image for each, CPU s of each process and of the registry,
the machine's load average before and after.

Run: PYTHONPATH=.:tests .venv/bin/python bench/floor_bench.py [--images 1000] [--threads 10]
     [--rounds 3] [--no-skip-signed] [--json FILE]   (--json: the figures also as JSON, for
     bench/report.py)
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cosign_bench import PASSWORD, Bench, Result  # noqa: E402

from signaction.formats import cosign  # noqa: E402
from signaction.formats.keys import sign_bytes  # noqa: E402
from signaction.formats.oci import OCI_MANIFEST  # noqa: E402
from signaction.reference import parse_reference  # noqa: E402

TARGET = 0.9  # of the floor's throughput


class Sig(NamedTuple):
    repo: str
    tag: str
    payload: bytes
    config: bytes
    manifest: bytes


def floor_bytes(private, image: dict) -> Sig:
    """What the project writes for ``image`` (an images-file entry, nothing signed yet): the
    payload, the config and the manifest of its `.sig` tag, from signaction.formats.cosign."""
    ref = parse_reference(image["reference"])[0]
    payload = cosign.simple_signing_payload(str(ref), image["digest"], {"tag": ref.tag or ""})
    signature = base64.b64encode(sign_bytes(private, payload)).decode()
    layers = [cosign.signature_layer(payload, {cosign.COSIGN_SIGNATURE_ANNOTATION: signature})]
    config = cosign.signature_config(layers)
    return Sig(ref.path, cosign.sig_tag(image["digest"]), payload, config,
               cosign.signature_manifest(config, layers))


def masked(manifest: bytes) -> dict:
    doc = json.loads(manifest)
    for layer in doc["layers"]:
        layer["annotations"][cosign.COSIGN_SIGNATURE_ANNOTATION] = "<signature>"
    return doc


# -- the floor's child process ------------------------------------------------------------------

def floor_child(host: str, work: str, threads: int) -> None:
    """Pushes each image of the file ``work`` (JSON lines: repo, tag, payload, config, manifest
    base64) with a keep-alive connection per thread; prints its push phase's wall s."""
    sigs = [Sig(d["repo"], d["tag"], *(base64.b64decode(d[k]) for k in
                                       ("payload", "config", "manifest")))
            for d in map(json.loads, Path(work).read_text().splitlines())]
    local = threading.local()
    headers = {"User-Agent": "floor/1"}

    def call(method: str, path: str, body: bytes | None = None, extra: dict | None = None
             ) -> http.client.HTTPResponse:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host, timeout=60)
        conn.request(method, path, body=body, headers={**headers, **(extra or {})})
        resp = conn.getresponse()
        resp.read()
        if resp.status >= 300:
            raise SystemExit(f"floor: {method} {path}: HTTP {resp.status}")
        return resp

    def blob(repo: str, data: bytes) -> None:
        import hashlib
        location = urlsplit(call("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"])
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        sep = "&" if location.query else ""
        call("PUT", f"{location.path}?{location.query}{sep}digest={digest}", data,
             {"Content-Type": "application/octet-stream"})

    def push(sig: Sig) -> None:
        blob(sig.repo, sig.payload)
        blob(sig.repo, sig.config)
        call("PUT", f"/v2/{sig.repo}/manifests/{sig.tag}", sig.manifest,
             {"Content-Type": OCI_MANIFEST})

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(push, sigs))
    print(json.dumps({"push_wall": time.perf_counter() - start}))


# -- the bench ----------------------------------------------------------------------------------

class Run(NamedTuple):
    result: Result
    phase: float  # s: the signing (ours: wall less a dry run's) or pushing (the floor's own)
    load: tuple[float, float]  # 1-min load average before, after


class Floor(Bench):
    def __init__(self, tmp: Path, n: int, threads: int):
        super().__init__(tmp, n, threads)
        from signers.cosign.native import load_private_key
        self.private = load_private_key(str(self.key), PASSWORD, "the bench key")
        self.floors = 0

    def floor(self) -> tuple[Result, float]:
        images, _ = self.fresh()
        self.floors += 1
        work = self.tmp / f"floor-{self.floors}.jsonl"
        with open(work, "w") as f:
            for im in images:
                sig = floor_bytes(self.private, im)
                f.write(json.dumps({"repo": sig.repo, "tag": sig.tag, **{
                    k: base64.b64encode(getattr(sig, k)).decode()
                    for k in ("payload", "config", "manifest")}}) + "\n")
        pushed: list[float] = []

        def ok(rc: int, out: str) -> str:
            if rc:
                return f"exit {rc}"
            pushed.append(json.loads(out.strip().splitlines()[-1])["push_wall"])
            return ""
        result = self.measure("the floor", [sys.executable, __file__, "--floor-child",
                                            self.registry.host, str(work), str(self.threads)],
                              images, ok)
        return result, pushed[0]

    def same_state(self, images: list[dict]) -> None:
        """Ours' `.sig` manifests of a few of ``images`` (signed by ours) are the floor's bytes
        for them, but for the signature's value; the config blob is the floor's byte for byte."""
        for im in (images[0], images[len(images) // 2], images[-1]):
            want = floor_bytes(self.private, im)
            base = f"http://{self.registry.host}/v2/{want.repo}"
            got = self.registry.http.get(f"{base}/manifests/{want.tag}",
                                         headers={"Accept": OCI_MANIFEST})
            got.raise_for_status()
            if masked(got.content) != masked(want.manifest):
                raise SystemExit(f"{im['reference']}: ours' .sig manifest is not the floor's: "
                                 f"{got.content[:300]!r} vs {want.manifest[:300]!r}")
            config = json.loads(got.content)["config"]["digest"]
            blob = self.registry.http.get(f"{base}/blobs/{config}")
            blob.raise_for_status()
            if blob.content != want.config:
                raise SystemExit(f"{im['reference']}: ours' config blob is not the floor's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=10, help="ours' num_threads, and the "
                        "floor's pool")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best shown)")
    parser.add_argument("--no-skip-signed", action="store_true",
                        help="ours with --no-skip-signed (the .sig read is still needed)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures to FILE as JSON (bench/report.py reads it)")
    parser.add_argument("--floor-child", nargs=3, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.floor_child:
        return floor_child(opts.floor_child[0], opts.floor_child[1], int(opts.floor_child[2]))
    n, t = opts.images, opts.threads
    load_start = os.getloadavg()
    extra = ("--no-skip-signed",) if opts.no_skip_signed else ()
    runs: dict[str, list[Run]] = {"ours": [], "floor": []}
    with tempfile.TemporaryDirectory(prefix="floor-bench-") as tmp:
        bench = Floor(Path(tmp), n, t)
        try:
            dry = bench.ours("--dry-run", n=n).wall  # ours' fixed costs, not the signing
            for k in range(opts.rounds):
                order = ("ours", "floor") if k % 2 == 0 else ("floor", "ours")
                for who in order:
                    before = os.getloadavg()[0]
                    if who == "ours":
                        result = bench.ours(*extra)
                        bench.same_state(bench.last[0])
                        phase = result.wall - dry
                    else:
                        result, phase = bench.floor()
                    runs[who].append(Run(result, phase, (before, os.getloadavg()[0])))
        finally:
            bench.registry.stop()
    best = {who: min(rs, key=lambda r: r.result.wall) for who, rs in runs.items()}
    median = {who: statistics.median(r.result.wall for r in rs) for who, rs in runs.items()}
    print(f"{n} images, {t} threads, {opts.rounds} interleaved round(s), {os.cpu_count()} "
          f"cores; ours{' ' + ' '.join(extra) if extra else ''}; ours' fixed costs (a dry run) "
          f"{dry:.2f} s\n")
    print(f"{'':32} {'wall s':>7} {'images/s':>9} {'median s':>9} {'phase s':>8} "
          f"{'images/s':>9} {'CPU s':>6} {'registry CPU':>13} {'req/image':>10}  load")
    for who, label in (("ours", "this project, in-process"),
                       ("floor", "floor: bare http.client")):
        r = best[who]
        requests = sum(r.result.requests.values())
        loads = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in (x.load for x in runs[who]))
        print(f"{label:32} {r.result.wall:>7.2f} {n / r.result.wall:>9.0f} {median[who]:>9.2f} "
              f"{r.phase:>8.2f} {n / r.phase:>9.0f} {r.result.cpu:>6.2f} "
              f"{r.result.registry_cpu:>13.2f} {requests / n:>10.2f}  {loads}")
    ratio = best["floor"].result.wall / best["ours"].result.wall
    phase = best["floor"].phase / best["ours"].phase
    med = median["floor"] / median["ours"]
    print(f"\nours / floor throughput: {ratio:.3f} whole process (best), {med:.3f} (medians), "
          f"{phase:.3f} signing phase only (ours less its dry run; the floor's push loop); "
          f"target >= {TARGET} at 1,000 images: {'met' if ratio >= TARGET else 'missed'}")
    print("phase: ours' wall less a dry run's (start-up, plan, key), the floor's push loop as "
          "it times itself; load: the 1-minute load average before-after each round")
    if opts.json:
        opts.json.write_text(json.dumps({
            "n": n, "threads": t, "rounds": opts.rounds, "skip_signed": not extra,
            "dry_run_s": dry, "target": TARGET, "ratio_best": ratio, "ratio_median": med,
            "ratio_phase": phase, **{who: {
                "best_wall_s": best[who].result.wall, "median_wall_s": median[who],
                "phase_s": best[who].phase, "cpu_s": best[who].result.cpu,
                "registry_cpu_s": best[who].result.registry_cpu,
                "requests_per_image": sum(best[who].result.requests.values()) / n,
                "loads": [x.load for x in runs[who]]} for who in ("ours", "floor")},
            "load_start": load_start, "load_end": os.getloadavg()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
