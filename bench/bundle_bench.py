#!/usr/bin/env python3
"""Cosign signing throughput by signature format: `legacy` (the `.sig` tag), `bundle` (a Sigstore
bundle as an OCI referrer) and `both`, in-process with a cosign key file.

N distinct single-platform images, freshly pushed for each run (pushing is setup, not measured),
signed by this project as a whole process (`entrypoint.py --signer cosign --images-file ...
--no-expand-index`: start-up, plan, decrypting the key once, skip-signed, signing, the pushes,
results.json) with `cosign_signer.signature_format` legacy, then bundle, then both, against:
- docker-registry (Debian's, on loopback): no referrers API, so bundles are listed in the
  `sha256-<hex>` fallback tag (read, merged, written, re-checked);
- the test bed's OCI 1.1 registry (`python -m testbed.registry`): the referrers API
  (`OCI-Subject`);
each without and with the transparency log (the sigstore test bed's Rekor, `python -m
testbed.sigstore`: a `hashedrekord` entry for legacy, a `dsse` entry for a bundle).
Shown per configuration: wall time (best of --repeat interleaved rounds), images/s of the whole
run and of its signing part (the wall time less a --dry-run's, measured in the same run: start-up,
config, plan, decrypting the key), the registry's CPU and, for docker-registry, its requests per
image; and the ratio both / legacy of images/s (target, issue 25: at least 0.45), legacy being the
anchor measured in the same run on the same registry. Each run is checked: N signed in
results.json, `cosign verify` (2.5) of 3 legacy signatures, `cosign verify` (3.1, when there is
one) of 3 bundles, and this project's `--mode verify` over all N (timed too: images/s of verify
mode per format). Then verify mode on images carrying --referrers bundles each (verify mode's
fetches of each referrer's manifest and bundle).

Run: PYTHONPATH=.:tests .venv/bin/python bench/bundle_bench.py [--images 200] [--threads 10]
     [--repeat 1] [--referrers 4] [--json FILE]   (--json: the figures also as JSON, for
     bench/report.py)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import requests

# cosign_bench is beside this file (the script's folder is on sys.path)
from cosign_bench import Registry, fresh_images, measured

# tests/ (conftest, infra) and the checkout (testbed) are on PYTHONPATH: make sets it
from conftest import make_image
from infra.sigstore import cosign_keypair, ensure_trixie_tools

ROOT = Path(__file__).resolve().parent.parent

PASSWORD = "bench-password"
FORMATS = ("legacy", "bundle", "both")
TARGET = 0.45  # both / legacy, images/s
CHECKED = 3  # images of each run verified by cosign


class Result(NamedTuple):
    wall: float  # s, the whole process
    cpu: float  # s, the process
    requests: Counter  # registry requests per client (docker-registry only)
    registry_cpu: float  # s


class Oci11(Registry):
    """The test bed's OCI 1.1 registry as a child process (`python -m testbed.registry`, with
    TCP_NODELAY as real registries): pushed to and measured (CPU) as Registry;
    it logs no requests, so none are counted."""

    def __init__(self, root: Path):
        from testbed import cli_args, launch
        root.mkdir(parents=True, exist_ok=True)
        self.proc, info = launch("testbed.registry", cli_args(listen="127.0.0.1:0"),
                                 log=root / "oci11.log")
        self.host = info["host"]
        self.http = requests.Session()
        self.http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=16))

    def mark(self) -> None:
        self.cpu_mark = self._cpu()

    def traffic(self) -> tuple[Counter, float]:
        return Counter(), self._cpu() - self.cpu_mark

    def stop(self) -> None:
        from testbed import stop
        stop(self.proc)  # by PID: the one this bench started


class Bench:
    def __init__(self, tmp: Path, n: int, threads: int):
        from testbed import cli_args, launch

        self.tmp, self.n, self.threads, self.runs = tmp, n, threads, 0
        self.tools = ensure_trixie_tools()
        self.env = self.tools.cosign_env(PASSWORD)  # private HOME; the password only in env
        self.key, self.pub = cosign_keypair(tmp, PASSWORD, tools=self.tools)
        self.registries: dict[str, Registry] = {}
        self.rekor_proc = None
        try:
            self.registries["docker-registry"] = Registry(tmp)
            self.registries["oci11"] = Oci11(tmp / "oci11")
            # the sigstore test bed (its Rekor), with TCP_NODELAY as the real one
            self.rekor_proc, self.bed = launch("testbed.sigstore", cli_args(dir=tmp / "sigstore"),
                                            log=tmp / "sigstore.log")
        except BaseException:
            self.stop()
            raise
        self.layouts = [make_image(tmp / "layouts" / str(i), f"bundle bench image {i}\n")
                        for i in range(n)]
        self.empty_root = tmp / "empty_trusted_root.json"  # cosign 3, a key, no log: no roots
        self.empty_root.write_text(json.dumps({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [], "certificateAuthorities": [], "ctlogs": [], "timestampAuthorities": []}))

    def stop(self) -> None:
        from testbed import stop
        for registry in self.registries.values():
            registry.stop()
        if self.rekor_proc is not None:
            stop(self.rekor_proc)

    def conf(self, fmt: str, tlog: bool) -> Path:
        section = {"allow_http_registry": True, "upload_tlog": tlog, "num_threads": self.threads,
                   "signature_format": fmt, "log_level": "warning"}
        if tlog:
            section.update(rekor_url=self.bed["REKOR_URL"],
                           rekor_public_key_file=self.bed["SIGSTORE_REKOR_PUBLIC_KEY"])
        path = self.tmp / f"conf-{fmt}-{'tlog' if tlog else 'notlog'}.json"
        path.write_text(json.dumps({"cosign_signer": section}))
        return path

    def fresh(self, where: str, n: int | None = None) -> tuple[list[dict], Path]:
        """n images pushed under a namespace of their own (nothing there is signed yet), and an
        images file listing them."""
        self.runs += 1
        return fresh_images(self.registries[where], self.layouts[:n or self.n],
                            f"run{self.runs}", self.tmp / f"images-{self.runs}.json")

    def entrypoint(self, conf: Path, listing: Path, out: Path, *extra: str,
                   key: Path | None = None) -> list[str]:
        return [str(ROOT / ".venv/bin/python"), str(ROOT / "entrypoint.py"), "--signer",
                "cosign", "--config-file", str(conf), "--images-file", str(listing),
                "--signing-key", str(key or self.key), "--task-id", "b", "--output-dir", str(out),
                "--log-level", "warning", "--no-expand-index", *extra]

    def run(self, where: str, cmd: list[str], want: str, n: int, out: Path | None) -> Result:
        """cmd measured; exit 0 and results.json's summary has ``want`` for all n."""
        registry = self.registries[where]
        registry.mark()
        wall, cpu, _, rc, _, err = measured(cmd, self.env)
        count, registry_cpu = registry.traffic()
        results = out / "results.json" if out else None
        summary = json.loads(results.read_text())["summary"] if results and \
            results.exists() else {}
        if rc or (out is not None and summary.get(want) != n):
            raise SystemExit(f"{where}: {' '.join(cmd[2:])} failed: exit {rc}, {summary}: "
                             f"{err}")
        return Result(wall, cpu, count, registry_cpu)

    def sign(self, where: str, fmt: str, tlog: bool, images=None, *extra: str
             ) -> tuple[Result, list[dict], Path]:
        images, listing = images or self.fresh(where)
        self.runs += 1
        out = self.tmp / f"out-{self.runs}"
        cmd = self.entrypoint(self.conf(fmt, tlog), listing, out, *extra)
        return self.run(where, cmd, "signed", len(images), out), images, listing

    def dry(self, where: str, fmt: str, tlog: bool) -> Result:
        _, listing = self.fresh(where, 1)
        cmd = self.entrypoint(self.conf(fmt, tlog), listing, self.tmp / "dry", "--dry-run")
        return self.run(where, cmd, "", 1, None)

    def verify(self, where: str, fmt: str, tlog: bool, images: list[dict], listing: Path
               ) -> Result:
        """This project's verify mode over all the images (every format ``fmt`` wrote)."""
        self.runs += 1
        out = self.tmp / f"verify-{self.runs}"
        cmd = self.entrypoint(self.conf(fmt, tlog), listing, out, "--mode", "verify",
                              key=self.pub)  # its public half: no cosign process
        return self.run(where, cmd, "verified", len(images), out)

    def cosign_check(self, fmt: str, tlog: bool, images: list[dict]) -> None:
        """cosign 2.5 verify of the legacy signatures, cosign 3.1 verify of the bundles, of the
        first, a middle and the last image: really signed, in the form each reads."""
        roots = ["--trusted-root", self.bed["TRUSTED_ROOT"]] if tlog else [
            "--trusted-root", str(self.empty_root), "--insecure-ignore-tlog=true"]
        for im in (images[0], images[len(images) // 2], images[-1])[:CHECKED]:
            target = im["reference"].rsplit(":", 1)[0] + "@" + im["digest"]
            args = ["verify", "--allow-http-registry", "--key", str(self.pub)]
            checks = []
            if fmt != "bundle":
                checks.append(("cosign 2.5", self.tools.run_cosign(
                    *args, "--insecure-ignore-tlog=true", target)))
            if fmt != "legacy" and self.tools.cosign3 is not None:
                checks.append(("cosign 3", self.tools.run_cosign3_env({}, *args, *roots, target)))
            for who, proc in checks:
                if proc.returncode:
                    raise SystemExit(f"{fmt}: {target} does not verify with {who}: "
                                     f"{proc.stderr[-800:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds (best shown)")
    parser.add_argument("--referrers", type=int, default=4,
                        help="bundles per image for the verify-mode run (0: no such run)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures to FILE as JSON (bench/report.py reads it)")
    opts = parser.parse_args()
    load_start = os.getloadavg()
    rows: list[dict] = []
    n, t = opts.images, opts.threads
    configs = [(where, tlog) for where in ("docker-registry", "oci11") for tlog in (False, True)]
    with tempfile.TemporaryDirectory(prefix="bundle-bench-") as tmp:
        bench = Bench(Path(tmp), n, t)
        try:
            signs: dict[tuple, list[Result]] = {}
            verifies: dict[tuple, list[Result]] = {}
            dries: dict[tuple, list[Result]] = {}
            for _ in range(opts.repeat):  # interleaved, best of each: the host's load varies
                for where, tlog in configs:
                    dries.setdefault((where, tlog), []).append(bench.dry(where, "both", tlog))
                    for fmt in FORMATS:
                        result, images, listing = bench.sign(where, fmt, tlog)
                        signs.setdefault((where, tlog, fmt), []).append(result)
                        bench.cosign_check(fmt, tlog, images)
                        verifies.setdefault((where, tlog, fmt), []).append(
                            bench.verify(where, fmt, tlog, images, listing))
            many: dict[str, Result] = {}
            for where in ("docker-registry", "oci11") if opts.referrers > 1 else ():
                _, images, listing = bench.sign(where, "bundle", False)
                for _ in range(opts.referrers - 1):
                    bench.sign(where, "bundle", False, (images, listing), "--no-skip-signed")
                many[where] = min((bench.verify(where, "bundle", False, images, listing)
                                   for _ in range(max(opts.repeat, 2))), key=lambda r: r.wall)
        finally:
            bench.stop()
    best: Callable[[list[Result]], Result] = lambda rs: min(rs, key=lambda r: r.wall)  # noqa
    print(f"{n} images, {t} threads, one cosign key file, in-process; best of {opts.repeat} "
          "interleaved round(s), each run on freshly pushed images")
    print(f"{'registry':16} {'tlog':>4} {'format':>6} {'wall s':>7} {'images/s':>9} "
          f"{'signing/s':>10} {'CPU s':>6} {'registry CPU s':>15} {'req/image':>10} "
          f"{'verify/s':>9}")
    ratios = []
    for where, tlog in configs:
        dry = best(dries[(where, tlog)])
        rate = {}
        for fmt in FORMATS:
            r, v = best(signs[(where, tlog, fmt)]), best(verifies[(where, tlog, fmt)])
            signing = max(r.wall - dry.wall, r.wall / 100)  # tiny N: less than the dry run
            rate[fmt] = (n / r.wall, n / signing)
            ours = r.requests.get("ours")
            print(f"{where:16} {'on' if tlog else 'off':>4} {fmt:>6} {r.wall:>7.2f} "
                  f"{n / r.wall:>9.1f} {n / signing:>10.1f} {r.cpu:>6.1f} "
                  f"{r.registry_cpu:>15.1f} {f'{ours / n:.1f}' if ours else '-':>10} "
                  f"{n / v.wall:>9.1f}")
        whole, signing = (rate["both"][i] / rate["legacy"][i] for i in (0, 1))
        ratios.append((where, tlog, whole, signing))
        rows.append({"registry": where, "tlog": tlog, "dry_run_s": dry.wall,
                     "ratio_whole": whole, "ratio_signing": signing, "formats": {
                         fmt: {"wall_s": best(signs[(where, tlog, fmt)]).wall,
                               "images_per_s": rate[fmt][0], "signing_per_s": rate[fmt][1],
                               "verify_wall_s": best(verifies[(where, tlog, fmt)]).wall}
                         for fmt in FORMATS}})
    print(f"\nboth / legacy, images/s (target {TARGET}; legacy measured in the same run):")
    for where, tlog, whole, signing in ratios:
        verdict = "ok" if min(whole, signing) >= TARGET else "BELOW TARGET"
        print(f"  {where:16} tlog {'on ' if tlog else 'off'}  whole run {whole:.2f}x  "
              f"signing part {signing:.2f}x  {verdict}")
    print("(start-up, config, plan, decrypting the key: a --dry-run, "
          + ", ".join(f"{w} tlog {'on' if tl else 'off'} {best(dries[(w, tl)]).wall:.2f} s"
                      for w, tl in configs) + ")")
    for where, r in many.items():
        print(f"verify mode, {opts.referrers} bundles per image, {where}: {r.wall:.2f} s, "
              f"{n / r.wall:.1f} images/s")
    if opts.json:
        opts.json.write_text(json.dumps({
            "n": n, "threads": t, "repeat": opts.repeat, "target": TARGET, "configs": rows,
            "referrers": opts.referrers,
            "verify_referrers_s": {where: r.wall for where, r in many.items()},
            "load_start": load_start, "load_end": os.getloadavg()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
