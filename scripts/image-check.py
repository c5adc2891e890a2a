#!/usr/bin/env python3
"""Prove the action's image (run by ``make image`` after the build): the entrypoint runs INSIDE the
image (``buildah run --isolation chroot --network host``, the image's own ENTRYPOINT as the
command), against servers on this host's loopback, and every signature it makes is verified
OUTSIDE the image with this host's tools.

1. smoke: ``--help``; the versions of Python, cosign, skopeo and gpg in the image.
2. msg: the embedded AMQP broker and the reference signing server (``testbed.broker``,
   ``testbed.signing_server``, as in ``make demo``) run on the host with a throwaway GPG key; the
   msg signer in the image sends the requests and writes the signatures to a host folder mounted
   into the container; each is checked with ``skopeo standalone-verify`` (and a wrong identity
   must be refused).
3. cosign: a docker-registry on loopback, a 2-platform image index pushed to it, a cosign key
   pair; the image's own cosign (Debian trixie's) signs, driven as GitHub runs a docker action
   (INPUT_* variables, /github/workspace, GITHUB_OUTPUT); ``cosign verify`` from .cache/trixie
   checks the index and each platform.

Prints a short report; exits non-zero on any failure. Every server is stopped by its PID, the
working container removed, the temporary folder deleted (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

# The checkout's root (testbed) and tests/ (infra) are on PYTHONPATH: scripts/make-image.sh sets it.

SEND_TO = "topic://VirtualTopic.eng.robosignatory.container.sign"
SERVER_QUEUE = "queue://Consumer.robosig.VirtualTopic.eng.robosignatory.container.sign"
REPLY_TOPIC = "topic://VirtualTopic.eng.pub.sign"
LISTEN_TO = "queue://Consumer.{creator}.{task_id}.VirtualTopic.eng.pub.sign"
MSG_IMAGES = ["registry.example.com/check/web:1.0", "registry.example.com/check/api:2.3",
              "127.0.0.1:5000/team/tools/cli:latest"]
COSIGN_PASSWORD = "image check passphrase"
WORKSPACE = "/github/workspace"  # where GitHub mounts the workspace (and makes it the cwd)


class Failed(Exception):
    pass


def run(cmd: list[str], *, check: bool = True, timeout: float = 300, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)
    if check and proc.returncode != 0:
        raise Failed(f"{' '.join(map(str, cmd[:6]))}... exited with {proc.returncode}:\n"
                     f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return proc


class Image:
    """One working container of the image; commands run in it with chroot isolation and the
    host's network (loopback included)."""

    def __init__(self, root: str, runroot: str, image: str, driver: str = "vfs"):
        self.buildah = ["buildah", "--root", root, "--runroot", runroot,
                        "--storage-driver", driver]
        self.image = image
        config = json.loads(run([*self.buildah, "inspect", "--type", "image", image]).stdout)
        oci = config.get("OCIv1", {}).get("config", {})
        self.entrypoint: list[str] = oci.get("Entrypoint") or []
        self.env: list[str] = oci.get("Env") or []
        self.labels: dict = oci.get("Labels") or {}
        if not self.entrypoint or not self.entrypoint[0].startswith("/"):
            raise Failed(f"the image's ENTRYPOINT is not exec-form with an absolute path: "
                         f"{self.entrypoint}")
        self.container = None

    def __enter__(self):
        self.container = run([*self.buildah, "from", "--pull=false", "--quiet",
                              self.image]).stdout.strip()
        return self

    def __exit__(self, *exc):
        if self.container:
            run([*self.buildah, "rm", self.container], check=False)

    def run(self, args: list[str], *, entrypoint: bool = True, volumes=(), env=None,
            workdir: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [*self.buildah, "run", "--isolation", "chroot", "--network", "host"]
        for host, inside in volumes:
            cmd += ["--volume", f"{host}:{inside}"]
        for name, value in (env or {}).items():
            cmd += ["--env", f"{name}={value}"]
        if workdir:
            cmd += ["--workingdir", workdir]
        cmd += [self.container, "--", *(self.entrypoint if entrypoint else []), *args]
        return run(cmd, check=False, timeout=timeout)


# -- the checks -----------------------------------------------------------------------------

def check_smoke(img: Image, facts: dict) -> str:
    help_run = img.run(["--help"])
    if help_run.returncode != 0 or "--signer" not in help_run.stdout:
        raise Failed(f"--help exited with {help_run.returncode}: {help_run.stderr[-2000:]}")
    probe = img.run(["sh", "-c",
                     "readlink -f /opt/venv/bin/python; /opt/venv/bin/python --version; "
                     "dpkg-query -W -f='${Package} ${Version}\\n' cosign skopeo gpg; "
                     "/opt/venv/bin/python -c 'import proton; print(\"proton SSL\", "
                     "proton.SSL.present())'; command -v gcc || command -v cc || command -v c++ "
                     "|| echo no-compiler"],
                    entrypoint=False)
    if probe.returncode != 0:
        raise Failed(f"probing the image failed: {probe.stderr[-2000:]}")
    lines = probe.stdout.split("\n")
    facts["python"] = f"{lines[1].strip()} ({lines[0].strip()})"
    facts["tools"] = ", ".join(line.strip() for line in lines[2:5])
    if "proton SSL True" not in probe.stdout:
        raise Failed(f"proton in the image has no SSL: {probe.stdout}")
    if "no-compiler" not in probe.stdout:
        raise Failed(f"a compiler is in the final image: {probe.stdout}")
    return f"--help ok; {facts['python']}; {facts['tools']}; proton SSL; no compiler"


def check_msg(img: Image, tmp: Path) -> str:
    from testbed import launch, stop

    home = tmp / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
             "--quick-gen-key", "Image check <image-check@example.invalid>", "ed25519", "sign",
             "never"], env=env)
        colons = run(["gpg", "--with-colons", "--list-secret-keys"], env=env).stdout
        fpr = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))

        from testbed import example_manifests

        work = tmp / "msg-workspace"
        manifests = example_manifests(MSG_IMAGES, work / "manifests")

        broker, info = launch("testbed.broker", ["--listen", "127.0.0.1:0"],
                              log=tmp / "broker.log")
        url = f"amqp://127.0.0.1:{info['port']}"
        server = None
        try:
            server, _ = launch("testbed.signing_server", [
                "--broker", url, "--listen-to", SERVER_QUEUE, "--reply-to", REPLY_TOPIC,
                "--gnupg-home", str(home)], log=tmp / "signing-server.log")
            (work / "conf.yaml").write_text(json.dumps({"msg_signer": {  # JSON is YAML
                "messaging_brokers": [url], "topic_send_to": SEND_TO,
                "topic_listen_to": LISTEN_TO, "environment": "check",
                "service": "container-sign-action", "timeout": 10, "retries": 3,
                "send_retries": 2, "message_id_key": "request_id",
                "key_aliases": {"check": fpr}}}))
            args = ["--signer", "msg", "--config-file", "conf.yaml", "--signing-key", "check",
                    "--task-id", "image-check", "--requester", "image-check", "--deadline", "60",
                    "--output-dir", "signatures"]
            for ref, (_, digest) in manifests.items():
                args += ["--reference", ref, "--digest", digest]
            started = time.monotonic()
            signed = img.run(args, volumes=[(work, WORKSPACE)], workdir=WORKSPACE,
                             env={"GNUPGHOME": "/tmp/client-has-no-keys"})
            took = time.monotonic() - started
            # pubtools-sign's command, by name on the image's PATH, as a Konflux step calls it
            dropin = img.run(["pubtools-sign-msg-container-sign", *[
                a for a in args if a not in ("--signer", "msg", "--output-dir", "signatures")]],
                entrypoint=False, volumes=[(work, WORKSPACE)], workdir=WORKSPACE)
        finally:
            if server is not None:
                stop(server)  # by PID (Popen.terminate)
            stop(broker)
        if signed.returncode != 0:
            raise Failed(f"the msg signer in the image exited with {signed.returncode}:\n"
                         f"{signed.stdout[-2000:]}{signed.stderr[-3000:]}")

        try:
            response = json.loads(dropin.stdout)
        except ValueError:
            raise Failed(f"pubtools-sign-msg-container-sign in the image printed no JSON "
                         f"(exit {dropin.returncode}): {dropin.stderr[-2000:]}") from None
        if response["signer_result"]["status"] != "ok" or \
                len(response["operation_results"]) != len(MSG_IMAGES):
            raise Failed(f"pubtools-sign-msg-container-sign in the image: {dropin.stdout[:2000]}")
        results = json.loads((work / "signatures" / "results.json").read_text())
        if results["summary"]["signed"] != len(MSG_IMAGES):
            raise Failed(f"msg: {results['summary']}")
        for entry in results["images"]:
            ref, sig = entry["reference"], work / "signatures" / entry["signature_path"]
            manifest, digest = manifests[ref]
            if entry["digest"] != digest:
                raise Failed(f"msg: {ref}: signed {entry['digest']}, expected {digest}")
            check = run(["skopeo", "standalone-verify", str(manifest), ref, fpr, str(sig)],
                        env=env, check=False)
            if check.returncode != 0:
                raise Failed(f"msg: NOT VERIFIED: {ref}: {check.stderr.strip()}")
            run(["gpg", "--batch", "--verify", str(sig)], env=env)
        # The same signature claimed for another tag must be refused.
        first = results["images"][0]
        wrong = first["reference"].rsplit(":", 1)[0] + ":other"
        check = run(["skopeo", "standalone-verify", str(manifests[first["reference"]][0]), wrong,
                     fpr, str(work / "signatures" / first["signature_path"])], env=env,
                    check=False)
        if check.returncode == 0:
            raise Failed(f"msg: a signature was accepted for {wrong}")
        return (f"{len(MSG_IMAGES)} signed in the image in {took:.1f} s (broker {url}); "
                "verified outside (skopeo standalone-verify, gpg --verify); wrong identity "
                "refused; pubtools-sign-msg-container-sign on PATH printed its JSON")
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)


def check_cosign(img: Image, tmp: Path) -> str:
    from infra.registry import start_registry, stop_registry
    from infra.sigstore import cosign_keypair, cosign_verify, ensure_trixie_tools, push_index

    tools = ensure_trixie_tools()
    registry, host = start_registry(tmp / "registry")
    try:
        image = push_index(host, "check/app", "v1", tmp)
        work = tmp / "cosign-workspace"
        work.mkdir()
        key, pub = cosign_keypair(work, COSIGN_PASSWORD, tools=tools)
        gh_home, files = tmp / "github-home", tmp / "file_commands"
        gh_home.mkdir()
        files.mkdir()
        # As GitHub runs a docker action: inputs as INPUT_<NAME> (hyphens kept), the workspace as
        # the working directory, HOME and the command files under /github.
        env = {"GITHUB_ACTIONS": "true", "HOME": "/github/home",
               "GITHUB_WORKSPACE": WORKSPACE,
               "GITHUB_OUTPUT": "/github/file_commands/output",
               "GITHUB_STEP_SUMMARY": "/github/file_commands/summary",
               "INPUT_SIGNER": "cosign",
               "INPUT_CONFIG": "cosign_signer: {allow_http_registry: true, upload_tlog: false}",
               "INPUT_REFERENCES": image.by_tag, "INPUT_DIGESTS": image.digest,
               "INPUT_SIGNING-KEYS": key.name, "INPUT_TASK-ID": "image-check",
               "INPUT_OUTPUT-DIR": "signatures", "INPUT_SKIP-SIGNED": "true",
               "INPUT_DRY-RUN": "false", "INPUT_LOG-LEVEL": "info",
               "COSIGN_PASSWORD": COSIGN_PASSWORD}
        started = time.monotonic()
        signed = img.run([], env=env, workdir=WORKSPACE,
                         volumes=[(work, WORKSPACE), (gh_home, "/github/home"),
                                  (files, "/github/file_commands")])
        took = time.monotonic() - started
        if signed.returncode != 0:
            raise Failed(f"the cosign signer in the image exited with {signed.returncode}:\n"
                         f"{signed.stdout[-3000:]}{signed.stderr[-3000:]}")
        # The one place the secret may appear: the command that masks it, before any log line.
        lines = (signed.stdout + signed.stderr).splitlines()
        if f"::add-mask::{COSIGN_PASSWORD}" not in lines[:3]:
            raise Failed(f"the cosign password was not masked first: {lines[:3]}")
        if any(COSIGN_PASSWORD in line for line in lines if not line.startswith("::add-mask::")):
            raise Failed("the cosign password appeared in the log")
        outputs = (files / "output").read_text()
        for expected in ("status<<", "success", "signed-count<<"):
            if expected not in outputs:
                raise Failed(f"GITHUB_OUTPUT lacks {expected!r}: {outputs}")
        results = json.loads((work / "signatures" / "results.json").read_text())
        want = {image.digest, *image.platforms.values()}
        got = {e["digest"] for e in results["images"] if e["status"] == "ok"}
        if got != want:
            raise Failed(f"cosign: signed {sorted(got)}, expected {sorted(want)}")
        for name, digest in [("index", image.digest), *image.platforms.items()]:
            check = cosign_verify(tools, pub, image.by_digest(digest))
            if check.returncode != 0:
                raise Failed(f"cosign verify {name} {digest}: exit {check.returncode}: "
                             f"{check.stderr.strip()[-2000:]}")
        return (f"index + {len(image.platforms)} platforms signed in the image in {took:.1f} s "
                f"(registry {host}, GitHub-style inputs, GITHUB_OUTPUT status=success); "
                "cosign verify (trixie's, outside) ok for each")
    finally:
        stop_registry(registry)  # by PID


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="buildah's storage root")
    parser.add_argument("--runroot", required=True, help="buildah's run root")
    parser.add_argument("--storage-driver", default="vfs")
    parser.add_argument("--image", required=True)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="image-check-"))
    report: list[tuple[str, str, float, str]] = []
    facts: dict = {}
    t0 = time.monotonic()
    try:
        img = Image(args.root, args.runroot, args.image, args.storage_driver)
        with img:
            for name, check in (("smoke", lambda: check_smoke(img, facts)),
                                ("msg", lambda: check_msg(img, tmp)),
                                ("cosign", lambda: check_cosign(img, tmp))):
                started = time.monotonic()
                try:
                    detail = check()
                    report.append((name, "PASS", time.monotonic() - started, detail))
                except Exception as e:  # every check runs and is reported
                    if not isinstance(e, Failed):
                        traceback.print_exc()
                    report.append((name, "FAIL", time.monotonic() - started, str(e)))
    except Failed as e:
        report.append(("setup", "FAIL", time.monotonic() - t0, str(e)))
    finally:
        if args.keep:
            print(f"image-check: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nimage check: {args.image} (entrypoint run inside with buildah run --isolation "
          f"chroot --network host), {time.monotonic() - t0:.1f} s")
    for name, verdict, took, detail in report:
        print(f"  {verdict}  {name:<7} {took:5.1f} s  {detail}")
    failed = [r for r in report if r[1] != "PASS"]
    print("image check: " + ("FAILED" if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
