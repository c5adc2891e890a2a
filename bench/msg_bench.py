#!/usr/bin/env python3
"""Messaging signer throughput: this project vs pubtools-sign 1.0.6 vs a bare proton echo.

All three go through the same embedded broker (testbed/broker.py) and the same instant-reply
signing server (testbed/signing_server.py --instant), with ActiveMQ-style virtual-topic
addresses as in production:
- this project: `entrypoint.py --signer msg --images-file ...` as a whole process (start-up,
  config, plan, signing, writing every signature file, results.json);
- pubtools-sign 1.0.6: `pubtools-sign-msg-container-sign` with the same config (its own venv,
  installed from PyPI on first use into .cache/);
- bare echo: a minimal proton program (this file with --echo-child) sends N requests of the same
  wire shape and waits for N replies, nothing else: the practical limit of this broker and server
  for a command-line program.
Wall time of each as a whole process, from start to exit (best and median of --repeat
interleaved runs; pubtools-sign runs once), signatures/s, the peak RSS of the signing process,
the CPU seconds of this project's process and the echo's (medians) and the machine's load.
Targets (issue 3): at N=3,000 at least 10x faster than pubtools-sign; within 1.5x of the bare
echo; linear up to 20,000; peak RSS under 100 MB at 10,000. Issue 26: within 1.1x of the echo
at 3,000 and at 100,000 (bench/scale_bench.py).

Run: make bench-msg   (or .venv/bin/python bench/msg_bench.py [--sizes 100,1000] [--anchor-max N]
     [--json FILE]: the figures also as JSON, for bench/report.py)
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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Only what the echo child needs is imported here (its start-up is part of its time); the rest is
# imported in main(). The checkout's root (testbed) and tests/ (infra) are on PYTHONPATH: make
# bench-msg sets it.
from proton import Message

from testbed import exchange

ROOT = Path(__file__).resolve().parent.parent

SEND_TO = "topic://VirtualTopic.eng.robosignatory.container.sign"
SERVER_QUEUE = "queue://Consumer.robosig.VirtualTopic.eng.robosignatory.container.sign"
REPLY_TOPIC = "topic://VirtualTopic.eng.pub.sign"
LISTEN_TO = "queue://Consumer.{creator}.{task_id}.VirtualTopic.eng.pub.sign"
KEY = "0123456789ABCDEF0123456789ABCDEF01234567"


def child_cpu() -> float:
    """CPU seconds (user + system) of this process's waited-for children so far: the difference
    around one child run is that child's (the broker and the server are not waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(cmd: list[str], env: dict) -> tuple[float, float, int, str]:
    """Wall seconds, peak RSS (MB) of that process, exit code, stderr tail. The peak is the
    kernel's high-water mark since exec (VmHWM), polled while it runs: wait4's ru_maxrss would
    count the memory this (parent) process had when it forked the child."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        peak_kb = 0
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak_kb = max(peak_kb, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.02)  # sampling the child's memory, not synchronisation
        wall = time.perf_counter() - start
        err.seek(0)
        tail = err.read().decode(errors="replace")[-800:]
    return wall, peak_kb / 1024, proc.returncode, tail


def images(n: int) -> list[dict]:
    return [{"reference": f"registry.example.com/ns/app{i % 50}:v{i}",
             "digest": f"sha256:{i:064x}"} for i in range(n)]


def config(path: Path, url: str, tls) -> Path:
    path.write_text(json.dumps({"msg_signer": {
        "messaging_brokers": [url], "messaging_cert_key": str(tls.client_pem),
        "messaging_ca_cert": str(tls.ca_cert), "topic_send_to": SEND_TO,
        "topic_listen_to": LISTEN_TO, "environment": "prod", "service": "pubtools-sign",
        "timeout": 60, "retries": 3, "send_retries": 2, "message_id_key": "request_id",
        "log_level": "warning"}}))
    return path


def ours(n: int, conf: Path, tmp: Path) -> tuple[float, float, float]:
    listing = tmp / f"images-{n}.json"
    listing.write_text(json.dumps(images(n)))
    out = tmp / f"out-{uuid.uuid4().hex[:6]}"
    cpu = child_cpu()
    wall, rss, rc, err = measured(
        [sys.executable, str(ROOT / "entrypoint.py"), "--signer", "msg", "--config-file",
         str(conf), "--images-file", str(listing), "--signing-key", KEY, "--task-id",
         f"ours-{uuid.uuid4().hex[:6]}", "--output-dir", str(out), "--log-level", "warning"],
        dict(os.environ))
    signed = json.loads((out / "results.json").read_text())["summary"]["signed"]
    if rc != 0 or signed != n:
        raise SystemExit(f"this project failed at N={n} (exit {rc}, {signed} signed): {err}")
    return wall, rss, child_cpu() - cpu


def pubtools(n: int, conf: Path, bindir: Path) -> tuple[float, float]:
    from infra.pubtools_sign import MSG_CONTAINER_SIGN

    cmd = [str(bindir / MSG_CONTAINER_SIGN), "--config-file", str(conf), "--task-id",
           f"pt-{uuid.uuid4().hex[:6]}", "--signing-key", KEY, "--log-level", "WARNING"]
    for image in images(n):
        cmd += ["--reference", image["reference"], "--digest", image["digest"]]
    wall, rss, rc, err = measured(cmd, dict(os.environ))
    if rc != 0:
        raise SystemExit(f"pubtools-sign failed at N={n} (exit {rc}): {err}")
    return wall, rss


def echo(n: int, url: str) -> tuple[float, float]:
    """The bare echo as a process of its own, timed as this project is: from start to exit
    (wall seconds, CPU seconds)."""
    cpu, start = child_cpu(), time.perf_counter()
    subprocess.run([sys.executable, __file__, "--echo-child", str(n), url],
                   capture_output=True, text=True, check=True)
    return time.perf_counter() - start, child_cpu() - cpu


def echo_child(n: int, url: str) -> float:
    """Send n requests of the real wire shape, wait for n replies: nothing else."""
    task = f"echo-{uuid.uuid4().hex[:6]}"
    listen = LISTEN_TO.format(creator="bench", task_id=task)
    bodies = [json.dumps({"sig_key_id": KEY[-8:], "claim_file": "e30=", "request_id": str(i),
                          "created": "2026-01-01T00:00:00Z", "requested_by": "bench",
                          "repo": "ns/app", "pub_task_id": task,
                          "manifest_digest": f"sha256:{i:064x}"}) for i in range(n)]
    # The real wire shape: pubtools-sign's application properties (encoding them is a real
    # per-message cost in proton), the same body fields.
    messages = [Message(address=SEND_TO, body=b, ttl=180, properties={
        "service": "pubtools-sign", "environment": "prod", "owner_id": "bench",
        "mtype": "container_signature", "source": "metadata", "pub_task_id": task,
        "manifest_digest": f"sha256:{i:064x}"}) for i, b in enumerate(bodies)]
    start = time.perf_counter()
    result = exchange(url, send=messages, send_to=SEND_TO, receive_from=[listen], expect=n,
                      timeout=600)
    wall = time.perf_counter() - start
    if len(result.received) < n:
        raise SystemExit(f"echo got {len(result.received)} of {n} replies")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,3000,10000,20000")
    parser.add_argument("--anchor-max", type=int, default=3000,
                        help="largest N to run pubtools-sign with (it is quadratic)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of this project and of the echo per N (the best and the "
                             "median are shown)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures to FILE as JSON (bench/report.py reads it)")
    parser.add_argument("--echo-child", nargs=2, metavar=("N", "URL"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.echo_child:
        print(echo_child(int(opts.echo_child[0]), opts.echo_child[1]))
        return
    from infra.pubtools_sign import ensure_pubtools_sign
    sizes = [int(s) for s in opts.sizes.split(",")]
    bindir = ensure_pubtools_sign() if opts.anchor_max else None
    figures: dict = {"repeat": opts.repeat, "sizes": [], "load_start": os.getloadavg(),
                     "targets": {"vs_echo": 1.1, "vs_echo_issue3": 1.5, "vs_pubtools": 10.0,
                                 "rss_mb_at_10000": 100}}
    with tempfile.TemporaryDirectory(prefix="msg-bench-") as tmp, \
            instant_bed(Path(tmp)) as (url, conf):
        echo(100, url)  # warm up broker and server
        print(f"machine: {os.cpu_count()} cores, load average {load()} at the start")
        print(f"{'N':>6} {'this project':>13} {'sig/s':>7} {'peak RSS':>9} "
              f"{'pubtools-sign':>14} {'speed-up':>9} {'bare echo':>10} {'vs echo':>8} "
              f"{'median':>15} {'vs echo':>8} {'CPU s':>11}")
        for n in sizes:
            runs, echoes, loads = [], [], []
            for _ in range(opts.repeat):  # interleaved, best of each: the host's load varies
                before = os.getloadavg()[0]
                runs.append(ours(n, conf, Path(tmp)))
                between = os.getloadavg()[0]
                echoes.append(echo(n, url))
                loads.append({"ours": (before, between), "echo": (between, os.getloadavg()[0])})
            wall, rss = min(r[0] for r in runs), max(r[1] for r in runs)
            e = min(w for w, _ in echoes)
            # the medians, and the CPU time of each process (its median): the wall times of a
            # shared machine vary with its load, the CPU a run takes less so
            m_wall, m_echo = statistics.median(r[0] for r in runs), statistics.median(
                w for w, _ in echoes)
            cpu = (f"{statistics.median(r[2] for r in runs):.2f}/"
                   f"{statistics.median(c for _, c in echoes):.2f}")
            p_wall = None
            if bindir and n <= opts.anchor_max:
                p_wall, _ = pubtools(n, conf, bindir)
                anchor = f"{p_wall:>12.2f} s {p_wall / wall:>8.1f}x"
            else:
                anchor = f"{'-':>14} {'-':>9}"
            figures["sizes"].append({
                "n": n, "ours_best_s": wall, "ours_median_s": m_wall, "echo_best_s": e,
                "echo_median_s": m_echo, "peak_rss_mb": rss, "pubtools_s": p_wall,
                "ours_cpu_s": statistics.median(r[2] for r in runs),
                "echo_cpu_s": statistics.median(c for _, c in echoes), "load": os.getloadavg(),
                "runs": [{"ours_s": r[0], "echo_s": ec[0], "load_1min": ld}
                         for r, ec, ld in zip(runs, echoes, loads, strict=True)]})
            print(f"{n:>6} {wall:>11.2f} s {n / wall:>7.0f} {rss:>6.0f} MB {anchor} "
                  f"{e:>8.2f} s {wall / e:>7.2f}x {m_wall:>6.2f}/{m_echo:.2f} s "
                  f"{m_wall / m_echo:>7.2f}x {cpu:>11}", flush=True)
        print(f"load average {load()} at the end; columns: best of {opts.repeat} interleaved "
              "runs (this project, the echo and their ratio), then the medians (this project/"
              "the echo, their ratio), then the median CPU seconds of each process "
              "(this project/the echo)")
        if opts.json:
            figures["load_end"] = os.getloadavg()
            opts.json.write_text(json.dumps(figures, indent=1) + "\n")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


@contextmanager
def instant_bed(tmp: Path) -> Iterator[tuple[str, Path]]:
    """The embedded broker and the instant signing server, with ActiveMQ-style addresses as in
    production: yields (the broker's URL, a msg_signer config for it); both stopped after."""
    from infra.tls import make_tls
    from testbed import launch, stop

    tls = make_tls(tmp / "tls")
    broker, info = launch("testbed.broker", ["--listen", "127.0.0.1:0"])
    url = f"amqp://127.0.0.1:{info['port']}"
    server, _ = launch("testbed.signing_server", [
        "--broker", url, "--listen-to", SERVER_QUEUE, "--reply-to", REPLY_TOPIC, "--instant"])
    try:
        yield url, config(tmp / "conf.yaml", url, tls)
    finally:
        stop(server)
        stop(broker)


if __name__ == "__main__":
    main()
