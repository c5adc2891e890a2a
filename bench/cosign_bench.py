#!/usr/bin/env python3
"""Cosign signer throughput: this project's in-process path and its cosign-binary path vs
pubtools-sign 1.0.6 vs bare `cosign sign` calls.

N distinct single-platform images in a docker-registry on loopback, signed with the same key and
thread count T (the binaries: the same cosign 2.5, .cache/trixie/bin/cosign), each run on freshly
pushed repositories (nothing already signed; pushing is setup, not measured):
- this project, native (the default for a key file): `entrypoint.py --signer cosign
  --images-file ... --no-expand-index`, the whole process (start-up, plan, decrypting the key
  once, a skip-signed registry check, then per image the payload signed in-process and its
  layer, config and .sig manifest pushed by the registry client, signature files,
  results.json); also with --no-skip-signed, and again on signed images;
- this project, `engine: cosign`: the same with a cosign process per signature;
- pubtools-sign 1.0.6: `pubtools-sign-cosign-container-sign`, same config (its own venv in
  .cache/, installed on first use);
- bare cosign: the same N `cosign sign` calls, T at a time from a thread pool: the floor.
Each run is checked (N signed; `cosign verify` of 3 digests). Shown: wall time (best of --repeat
interleaved runs), CPU time with the children's (the cosigns share the cores), the registry's
CPU and requests; then the native path alone on --rss-images images for its peak RSS. Target
(issue 15): at 200 images the native path at least 10x faster than pubtools-sign, peak RSS
under 100 MB at 2,000 images; say where the time goes.

Run: .venv/bin/python bench/cosign_bench.py [--images 200] [--threads 10] [--repeat 1]
     [--rss-images 2000] [--json FILE]   (--json: the figures also as JSON, for bench/report.py)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urljoin

import requests

# tests/ (conftest, infra) is on PYTHONPATH: make bench-cosign sets it
from conftest import make_image
from infra.pubtools_sign import ensure_pubtools_sign
from infra.registry import start_registry, stop_registry
from infra.sigstore import cosign_keypair, ensure_trixie_tools

ROOT = Path(__file__).resolve().parent.parent

PASSWORD = "bench-password"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SOLO = 5  # cosign signs timed one at a time


def measured(cmd: list[str], env: dict) -> tuple[float, float, float, int, str, str]:
    """Wall s; CPU s of the process and its waited-for children (wait4's rusage: the cosigns
    count); its own peak RSS in MB (VmHWM, polled); exit code, stdout, stderr tail."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start, peak_kb = time.perf_counter(), 0
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        while not (waited := os.wait4(proc.pid, os.WNOHANG))[0]:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    peak_kb = max([peak_kb] + [int(ln.split()[1]) for ln in f
                                               if ln.startswith("VmHWM:")])
            except (OSError, ValueError):
                pass
            time.sleep(0.02)  # sampling the child's memory, not synchronisation
        wall, (_, status, usage) = time.perf_counter() - start, waited
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0), err.seek(0)
        return (wall, usage.ru_utime + usage.ru_stime, peak_kb / 1024, proc.returncode,
                out.read().decode(errors="replace"), err.read().decode(errors="replace")[-1500:])


class Result(NamedTuple):
    wall: float  # s
    cpu: float  # s: the process and its children (the cosigns)
    rss: float  # MB: the process itself
    requests: Counter  # registry requests during the run, per client (user agent)
    registry_cpu: float  # s: the docker-registry process's CPU during the run


class Registry:
    """docker-registry on 127.0.0.1 (as tests/conftest.py's fixture), logging every request as
    JSON, so each run's requests can be counted per client."""

    def __init__(self, root: Path):
        self.logfile = root / "registry" / "registry.log"
        self.proc, self.host = start_registry(root / "registry", log={
            "level": "info", "formatter": "json", "accesslog": {"disabled": True}})
        self.http = requests.Session()
        self.http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=16))

    def push(self, layout: Path, repo: str, tag: str) -> str:
        """An OCI layout's blobs and manifest straight through the registry API (much faster
        than a skopeo process per image); returns the manifest digest."""
        desc = json.loads((layout / "index.json").read_text())["manifests"][0]
        blob = lambda d: (layout / "blobs" / "sha256" / d.split(":")[1]).read_bytes()  # noqa
        manifest, base = blob(desc["digest"]), f"http://{self.host}/v2/{repo}"
        for d in [json.loads(manifest)["config"], *json.loads(manifest)["layers"]]:
            r = self.http.post(f"{base}/blobs/uploads/")
            r.raise_for_status()
            self.http.put(urljoin(r.url, r.headers["Location"]), params={"digest": d["digest"]},
                          data=blob(d["digest"])).raise_for_status()
        self.http.put(f"{base}/manifests/{tag}", data=manifest,
                      headers={"Content-Type": MANIFEST}).raise_for_status()
        return desc["digest"]

    def _cpu(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:  # utime, stime: fields 14, 15
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def mark(self) -> None:
        """Count from here (what came before, e.g. pushing, is setup)."""
        self.offset, self.cpu_mark = self.logfile.stat().st_size, self._cpu()

    def traffic(self) -> tuple[Counter, float]:
        """Requests per client (user agent) since mark(), and the registry's CPU s since."""
        count = Counter()
        with open(self.logfile, "rb") as f:
            f.seek(self.offset)
            for line in f:
                e = json.loads(line) if line.startswith(b"{") else {}
                if e.get("msg") in ("response completed", "response completed with error"):
                    agent = e.get("http.request.useragent", "")
                    count["ours" if "signaction" in agent else agent.split("/")[0]] += 1
        return count, self._cpu() - self.cpu_mark

    def stop(self) -> None:
        stop_registry(self.proc)  # by PID: the one this bench started


def fresh_images(registry: Registry, layouts: list[Path], namespace: str, listing: Path
                 ) -> tuple[list[dict], Path]:
    """Each layout pushed as ``namespace/appI:v1`` (nothing there is signed yet), and the images
    file ``listing`` naming them."""
    def push(i: int) -> dict:
        repo = f"{namespace}/app{i}"
        digest = registry.push(layouts[i], repo, "v1")
        return {"reference": f"{registry.host}/{repo}:v1", "digest": digest}
    with ThreadPoolExecutor(8) as pool:
        images = list(pool.map(push, range(len(layouts))))
    listing.write_text(json.dumps(images))
    return images, listing


class Bench:
    def __init__(self, tmp: Path, n: int, threads: int):
        self.tmp, self.n, self.threads, self.runs, self.outs = tmp, n, threads, 0, 0
        self.tools = ensure_trixie_tools()
        self.env = self.tools.cosign_env(PASSWORD)  # private HOME; the password only in env
        self.key, self.pub = cosign_keypair(tmp, PASSWORD, tools=self.tools)
        self.registry = Registry(tmp)
        self.layouts = [make_image(tmp / "layouts" / str(i), f"bench image {i}\n")
                        for i in range(max(n, SOLO))]
        self.conf, self.binary_conf = tmp / "conf.yaml", tmp / "binary.yaml"
        # log_level: pubtools-sign's schema allows it (its cosign signer never reads it). The
        # same file for pubtools-sign and this project's default (native) path; engine: cosign,
        # which pubtools-sign's schema would refuse, in a file of its own.
        section = {"cosign_bin": str(self.tools.cosign), "allow_http_registry": True,
                   "upload_tlog": False, "num_threads": threads, "log_level": "warning"}
        self.conf.write_text(json.dumps({"cosign_signer": section}))
        self.binary_conf.write_text(json.dumps({"cosign_signer": {**section,
                                                                  "engine": "cosign"}}))

    def plain_key(self) -> Path:
        """The bench key's private key as an unencrypted PKCS#8 PEM file."""
        from cryptography.hazmat.primitives import serialization

        from signers.cosign.native import load_private_key
        private = load_private_key(str(self.key), PASSWORD, "the bench key")
        path = self.tmp / "plain.pem"
        path.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return path

    def fresh(self, n: int | None = None) -> tuple[list[dict], Path]:
        """n images pushed under a namespace of their own (nothing there is signed yet), and an
        images file listing them."""
        self.runs += 1
        return fresh_images(self.registry, self.layouts[:n or self.n], f"run{self.runs}",
                            self.tmp / f"images-{self.runs}.json")

    def measure(self, who: str, cmd: list[str], images: list[dict] | None, ok) -> Result:
        """Run cmd; ok(exit code, stdout) says what is wrong with the outcome, if anything;
        then `cosign verify` of the first, a middle and the last image: really signed."""
        self.registry.mark()
        wall, cpu, rss, rc, out, err = measured(cmd, self.env)
        count, registry_cpu = self.registry.traffic()
        if wrong := ok(rc, out):
            raise SystemExit(f"{who} failed: {wrong}: {err}")
        for im in (images[0], images[len(images) // 2], images[-1]) if images else ():
            target = im["reference"].rsplit(":", 1)[0] + "@" + im["digest"]
            proc = self.tools.run_cosign("verify", "--key", str(self.pub), "--allow-http-registry",
                                         "--insecure-ignore-tlog=true", target)
            if proc.returncode:
                raise SystemExit(f"{who}: {target} does not verify: {proc.stderr[-500:]}")
        return Result(wall, cpu, rss, count, registry_cpu)

    def ours(self, *extra: str, again: tuple | None = None, binary: bool = False,
             n: int | None = None, key: Path | None = None) -> Result:
        """A run of this project (native, or ``binary``: engine cosign) on n fresh images, or
        `again` on the last run's (all signed: each is skipped after its registry check)."""
        images, listing = self.last = again or self.fresh(n)
        n = len(images)
        self.outs += 1
        out, dry = self.tmp / f"out-{self.outs}", "--dry-run" in extra
        want = "skipped" if again else "signed"

        def ok(rc: int, _: str) -> str:
            summary = {} if dry else json.loads((out / "results.json").read_text())["summary"]
            return f"exit {rc}, {summary}" if rc or summary.get(want, n) != n else ""
        conf = self.binary_conf if binary else self.conf
        return self.measure("this project", [
            str(ROOT / ".venv/bin/python"), str(ROOT / "entrypoint.py"), "--signer", "cosign",
            "--config-file", str(conf), "--images-file", str(listing), "--signing-key",
            str(key or self.key), "--task-id", "b", "--output-dir", str(out), "--log-level",
            "warning", "--no-expand-index", *extra], None if dry or again else images, ok)

    def pubtools(self, bindir: Path) -> Result:
        images, _ = self.fresh()
        cmd = [str(bindir / "pubtools-sign-cosign-container-sign"), "--config-file",
               str(self.conf), "--signing-key", str(self.key)]
        for im in images:  # --identity: the same tagged identity in the signature as ours
            cmd += ["--digest", im["digest"], "--reference", im["reference"],
                    "--identity", im["reference"]]

        def ok(rc: int, out: str) -> str:  # it exits 0 when a cosign failed: its JSON says
            try:
                status = json.loads(out.strip().splitlines()[-1])["signer_result"]["status"]
            except (ValueError, IndexError, KeyError):
                status = f"no JSON result ({out[-300:]})"
            return f"exit {rc}, status {status}" if rc or status != "ok" else ""
        return self.measure("pubtools-sign", cmd, images, ok)

    def bare(self, threads: int | None = None, n: int | None = None) -> Result:
        """The same cosign calls, `threads` at a time, nothing else; in a child process (this
        file with --bare-child) so that its CPU time, the cosigns', is measured alike."""
        images, listing = self.fresh(n)
        return self.measure("bare cosign", [
            sys.executable, __file__, "--bare-child", str(self.tools.cosign), str(self.key),
            str(listing), str(threads or self.threads)], images,
            lambda rc, _: f"exit {rc}" if rc else "")


def bare_child(cosign: str, key: str, listing: str, threads: int) -> None:
    def sign(im: dict) -> None:
        target = im["reference"].rsplit(":", 1)[0] + "@" + im["digest"]
        subprocess.run([cosign, "--timeout", "3m0s", "sign", "--yes", "--key", key,
                        "--allow-http-registry=true", "--tlog-upload=false",
                        "--sign-container-identity", im["reference"], "-a", "tag=v1", target],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(sign, json.loads(Path(listing).read_text())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs (best shown)")
    parser.add_argument("--rss-images", type=int, default=2000,
                        help="images of the native run whose peak RSS is shown (0: none)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures to FILE as JSON (bench/report.py reads it)")
    parser.add_argument("--bare-child", nargs=4, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.bare_child:
        return bare_child(*opts.bare_child[:3], int(opts.bare_child[3]))
    n, t = opts.images, opts.threads
    load_start = os.getloadavg()
    bindir = ensure_pubtools_sign()
    with tempfile.TemporaryDirectory(prefix="cosign-bench-") as tmp:
        bench = Bench(Path(tmp), max(n, opts.rss_images), t)
        bench.n = n
        try:
            runs: dict[str, list[Result]] = {}
            for _ in range(opts.repeat):  # interleaved, best of each: the host's load varies
                for name, run in [("ours", bench.ours),
                                  ("noskip", lambda: bench.ours("--no-skip-signed")),
                                  ("binary", lambda: bench.ours(binary=True)),
                                  ("pubtools", lambda: bench.pubtools(bindir)),
                                  ("bare", bench.bare)]:
                    runs.setdefault(name, []).append(run())
            # Fixed and unit costs: our start-up, config, plan and cosign preflight (a dry run);
            # the skip-signed checks alone (ours again on the last run's images: all signed,
            # so no cosign runs); one cosign sign at a time; `cosign public-key`: start-up and
            # decrypting the key, nothing else.
            again, dry = bench.ours(again=bench.last), bench.ours("--dry-run")
            big = bench.ours(n=opts.rss_images) if opts.rss_images else None
            # the same with an unencrypted PKCS#8 key: no scrypt (cosign's N=65536, r=8 key
            # derivation needs 128*r*N = 64 MiB once, which the peak RSS above includes)
            plain = bench.ours(n=opts.rss_images, key=bench.plain_key()) if big else None
            solo = bench.bare(1, SOLO)
            decrypt = bench.measure("cosign public-key", [str(bench.tools.cosign), "public-key",
                                                          "--key", str(bench.key)], None,
                                    lambda rc, _: rc)
        finally:
            bench.registry.stop()
    ours, noskip, binary, pub, bare = (min(runs[k], key=lambda r: r.wall)
                                       for k in ("ours", "noskip", "binary", "pubtools", "bare"))
    print(f"{'N':>5} {'threads':>7} {'native':>9} {'cosign binary':>14} {'pubtools-sign':>14} "
          f"{'bare cosign':>12} {'pubtools/native':>16}")
    print(f"{n:>5} {t:>7} {ours.wall:>7.2f} s {binary.wall:>12.2f} s {pub.wall:>12.2f} s "
          f"{bare.wall:>10.2f} s {pub.wall / ours.wall:>15.1f}x")
    print(f"(pubtools/native > 1: the native path is faster; target 10x; best of {opts.repeat} "
          f"interleaved run(s), each signing {n} freshly pushed images)\n")
    print(f"{'':34} {'wall s':>7} {'ms/image':>9} {'CPU s':>6} {'registry CPU s':>15} "
          f"{'peak RSS':>9}  registry requests")
    rows = [("this project, native", ours, n), ("native --no-skip-signed", noskip, n),
            ("native, all signed", again, n), ("this project, engine: cosign", binary, n),
            ("pubtools-sign 1.0.6", pub, n), (f"bare cosign, {t} at a time", bare, n)]
    if big is not None:
        rows.append((f"native, {opts.rss_images} images", big, opts.rss_images))
    if plain is not None:
        rows.append((f"native, {opts.rss_images}, PKCS#8 key", plain, opts.rss_images))
    for label, r, count in rows:
        print(f"{label:34} {r.wall:>7.2f} {1000 * r.wall / count:>9.1f} {r.cpu:>6.1f} "
              f"{r.registry_cpu:>15.1f} {r.rss:>6.0f} MB  "
              + ", ".join(f"{k} {c}" for k, c in sorted(r.requests.items())))
    cores, per_sign = os.cpu_count() or 1, solo.cpu / SOLO
    signing = max(ours.wall - dry.wall, 1e-9)
    print(f"""
where the time goes:
- cosign: one `cosign sign` alone takes {1000 * solo.wall / SOLO:.0f} ms wall, \
{1000 * per_sign:.0f} ms CPU ({1000 * decrypt.cpu:.0f} ms: `cosign public-key` alone, i.e. \
start-up and decrypting the key with scrypt) and {bare.requests["cosign"] / n:.0f} registry \
requests. {n} of them need {n * per_sign:.0f} CPU s = {n * per_sign / cores:.1f} s on {cores} \
cores, whatever the thread count; the runs used {binary.cpu:.0f} (engine: cosign) / \
{pub.cpu:.0f} (pubtools-sign) / {bare.cpu:.0f} (bare) CPU s.
- native: start-up+config+plan+decrypting the key once {dry.wall:.2f} s, {dry.cpu:.2f} CPU s \
(a --dry-run); then {signing:.2f} s for {n} signatures ({1000 * signing / n:.1f} ms each, \
{ours.requests["ours"] / n:.1f} registry requests each, skip-signed check included; \
{noskip.requests["ours"] / n:.1f} without it), {ours.cpu - dry.cpu:.2f} CPU s of ours and \
{ours.registry_cpu:.2f} s of the registry's; all {n} already signed (checks only): \
{again.wall - dry.wall:.2f} s.""")
    if opts.json:
        def fig(r: Result, count: int) -> dict:
            return {"n": count, "wall_s": r.wall, "cpu_s": r.cpu, "peak_rss_mb": r.rss,
                    "registry_cpu_s": r.registry_cpu, "requests": dict(r.requests)}
        opts.json.write_text(json.dumps({
            "n": n, "threads": t, "repeat": opts.repeat, "rss_images": opts.rss_images,
            "targets": {"pubtools_over_native": 10.0, "rss_mb": 100},
            "runs": {key: fig(r, count) for key, r, count in (
                ("native", ours, n), ("native_no_skip_signed", noskip, n),
                ("native_all_signed", again, n), ("engine_cosign", binary, n),
                ("pubtools_sign", pub, n), ("bare_cosign", bare, n), ("dry_run", dry, 1),
                ("native_rss", big, opts.rss_images), ("native_rss_pkcs8", plain, opts.rss_images))
                if r is not None},
            "load_start": load_start, "load_end": os.getloadavg()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
