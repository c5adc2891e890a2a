#!/usr/bin/env python3
"""Keyless signing at a service's rate limit (issue 26 item 4): N images signed keyless,
in-process, `signature_format: legacy`, against the sigstore test bed limited to --limit
requests a minute per service (`python -m testbed.sigstore --rate-limit`: Fulcio and Rekor each
answer 429 with Retry-After past it, as the public instance's nginx does), the client at the
public instance's default limit (cosign_signer.fulcio_ and rekor_requests_per_minute: 480,
set explicitly here: a private instance gets no default) or --client.

The images (distinct one-layer images, one repository each) are pushed to the test bed's OCI
registry (`python -m testbed.registry`) first: setup, not measured. The run is this project as
a whole process (`entrypoint.py --signer cosign --images-file ... --no-expand-index
--signing-key keyless`: start-up, plan, one Fulcio certificate, a Rekor entry per signature,
the pushes, results.json), beside a --dry-run of it (start-up, config, plan). Shown: wall
time; the time the limits allow (the requests the run needed of its busiest service, those
answered 429 not counted, over the rate: the server's, and the client's own), and the
ratios; failures (target: 0); the test bed's 429s (target: 0 with the client below the
server); requests per image to Fulcio and to Rekor. `--client 0` (no client-side limit) shows
what the limit spares the service: measured at 1,000 images, the same wall time and no failure
(the transport retries each 429 after its Retry-After), but 1,109 answers 429 (2.1 Rekor
requests per image), each a retry, and an image fails once one request has spent its
registry.retries attempts on them.

Run: PYTHONPATH=. .venv/bin/python bench/keyless_bench.py [--images 1000] [--limit 500]
     [--client PER_MINUTE] [--threads 10] [--json FILE]   (--json: the figures also as JSON, for
     bench/report.py)
(1,000 images at 500 a minute take over 2 minutes: Rekor alone needs 1,000 requests.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from signers.cosign.services import DEFAULT_REQUESTS_PER_MINUTE

ROOT = Path(__file__).resolve().parent.parent
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMAIL = "bench@example.com"


def push_images(host: str, n: int, listing: Path) -> None:
    """``n`` distinct one-layer images, ``bench/appI:v1``, through the registry API; the images
    file ``listing`` naming them."""
    http = requests.Session()
    http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=16))

    def push(i: int) -> dict:
        base = f"http://{host}/v2/bench/app{i}"
        descriptors = []
        for data, media in ((json.dumps({"bench": i}).encode(),
                             "application/vnd.oci.image.config.v1+json"),
                            (f"keyless bench layer {i}\n".encode(),
                             "application/vnd.oci.image.layer.v1.tar")):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            http.post(f"{base}/blobs/uploads/", params={"digest": digest},
                      data=data).raise_for_status()
            descriptors.append({"mediaType": media, "digest": digest, "size": len(data)})
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": descriptors[0], "layers": descriptors[1:]}).encode()
        http.put(f"{base}/manifests/v1", data=raw,
                 headers={"Content-Type": OCI_MANIFEST}).raise_for_status()
        return {"reference": f"{host}/bench/app{i}:v1",
                "digest": "sha256:" + hashlib.sha256(raw).hexdigest()}

    with ThreadPoolExecutor(8) as pool:
        listing.write_text(json.dumps(list(pool.map(push, range(n)))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--limit", type=float, default=500, help="the test bed's, a minute")
    parser.add_argument("--client", type=float, default=None,
                        help=f"the client's, a minute (default: its own, "
                             f"{DEFAULT_REQUESTS_PER_MINUTE}; 0: none)")
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures to FILE as JSON (bench/report.py reads it)")
    args = parser.parse_args()
    load_start = os.getloadavg()

    from testbed import cli_args, launch, stop

    with tempfile.TemporaryDirectory(prefix="keyless-bench-") as d:
        tmp = Path(d)
        procs = []
        try:
            reg_proc, reg = launch("testbed.registry", cli_args(listen="127.0.0.1:0"),
                                   log=tmp / "registry.log")
            procs.append(reg_proc)
            bed_proc, bed = launch("testbed.sigstore",
                                   cli_args(dir=tmp / "sigstore", rate_limit=args.limit,
                                            token_lifetime=900),
                                   log=tmp / "sigstore.log")
            procs.append(bed_proc)
            listing = tmp / "images.json"
            started = time.perf_counter()
            push_images(reg["host"], args.images, listing)
            print(f"setup: {args.images} images pushed in {time.perf_counter() - started:.1f} s",
                  flush=True)

            section = {"allow_http_registry": True, "signature_format": "legacy",
                       "num_threads": args.threads,
                       "fulcio_url": bed["FULCIO_URL"], "rekor_url": bed["REKOR_URL"],
                       "fulcio_root_file": bed["SIGSTORE_ROOT_FILE"],
                       "ctlog_public_key_file": bed["SIGSTORE_CT_LOG_PUBLIC_KEY_FILE"],
                       "rekor_public_key_file": bed["SIGSTORE_REKOR_PUBLIC_KEY"]}
            client = DEFAULT_REQUESTS_PER_MINUTE if args.client is None else args.client
            section.update(fulcio_requests_per_minute=client, rekor_requests_per_minute=client)
            conf = tmp / "conf.yaml"
            conf.write_text(json.dumps({"cosign_signer": section}))
            control = bed["control"]
            requests.post(f"{control}/testbed/faults", json={}).raise_for_status()  # count anew

            env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
            env.update(ACTIONS_ID_TOKEN_REQUEST_URL=bed["ACTIONS_ID_TOKEN_REQUEST_URL"]
                       + f"&email={EMAIL}",
                       ACTIONS_ID_TOKEN_REQUEST_TOKEN=bed["ACTIONS_ID_TOKEN_REQUEST_TOKEN"])
            def command(out: str, *extra: str) -> list[str]:
                return [sys.executable, str(ROOT / "entrypoint.py"), "--signer", "cosign",
                        "--config-file", str(conf), "--output-dir", str(tmp / out),
                        "--images-file", str(listing), "--no-expand-index",
                        "--signing-key", "keyless", *extra]

            cmd = command("out")
            started = time.perf_counter()  # start-up, config, plan: no service is asked
            dry = subprocess.run(command("dry", "--dry-run"), env=env, capture_output=True,
                                 text=True, stdin=subprocess.DEVNULL)
            dry_wall = time.perf_counter() - started
            if dry.returncode != 0:
                print(dry.stderr[-3000:], file=sys.stderr)
                return 1
            started = time.perf_counter()
            run = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL)
            wall = time.perf_counter() - started
            faults = requests.get(f"{control}/testbed/state").json()["faults"]
        finally:
            for proc in reversed(procs):
                stop(proc)  # by PID: the ones this bench started
        try:
            summary = json.loads((tmp / "out" / "results.json").read_text())["summary"]
        except (OSError, ValueError):
            print(run.stderr[-3000:], file=sys.stderr)
            return 1

    n, limit = args.images, args.limit
    client = args.client if args.client is not None else DEFAULT_REQUESTS_PER_MINUTE
    # what the run needed: its busiest service's requests, less the ones answered 429
    needed = max(faults["requests"][s] - faults["limited"][s] for s in ("fulcio", "rekor"))
    allowed = needed / (limit / 60)
    failures = summary.get("failed", 0)
    print(f"keyless, legacy, {n} images, {args.threads} threads; the test bed at {limit:g} "
          f"requests a minute per service, the client at {client:g}"
          f"{' (no limit)' if client <= 0 else ''}")
    print(f"  wall time                      {wall:8.1f} s  (exit {run.returncode}; a "
          f"--dry-run's, start-up and plan: {dry_wall:.1f} s)")
    print(f"  the server's limit allows      {allowed:8.1f} s  ({needed} requests / "
          f"{limit:g} a minute)   ratio {wall / allowed:.2f}")
    if client > 0:  # 0: no client-side limit
        allowed_client = needed / (client / 60)
        print(f"  the client's limit allows      {allowed_client:8.1f} s  "
              f"({needed} / {client:g} a minute)   ratio {wall / allowed_client:.2f}")
    print(f"  signed {summary.get('signed', 0)}, failures {failures} (target 0), "
          f"429s from the test bed: Fulcio {faults['limited']['fulcio']}, "
          f"Rekor {faults['limited']['rekor']}")
    print(f"  requests per image: Fulcio {faults['requests']['fulcio'] / n:.3f}, "
          f"Rekor {faults['requests']['rekor'] / n:.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "n": n, "threads": args.threads, "limit_per_minute": limit,
            "client_per_minute": client, "wall_s": wall, "dry_run_s": dry_wall,
            "exit": run.returncode, "needed_requests": needed, "allowed_s": allowed,
            "allowed_client_s": needed / (client / 60) if client > 0 else None,
            "signed": summary.get("signed", 0), "failures": failures,
            "limited": faults["limited"], "requests": faults["requests"],
            "load_start": load_start, "load_end": os.getloadavg()}, indent=1) + "\n")
    if run.returncode != 0 or failures:
        print(run.stderr[-3000:], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
