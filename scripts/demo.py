#!/usr/bin/env python3
"""make demo: the messaging flow on this machine. An embedded AMQP 1.0 broker (ActiveMQ-style
virtual topics) and the reference signing server holding an ephemeral GPG key; this project's msg
signer sends the signing requests over the bus, writes the returned signatures, and every one is
verified with skopeo (or gpg, where skopeo is missing). Everything lives in .demo/, made anew."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # testbed is found on PYTHONPATH (make demo)
DEMO = ROOT / ".demo"
SEND_TO = "topic://VirtualTopic.eng.robosignatory.container.sign"
SERVER_QUEUE = "queue://Consumer.robosig.VirtualTopic.eng.robosignatory.container.sign"
REPLY_TOPIC = "topic://VirtualTopic.eng.pub.sign"
IMAGES = ["registry.example.com/demo/web:1.0", "registry.example.com/demo/api:2.3",
          "127.0.0.1:5000/team/tools/cli:latest"]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    home = DEMO / "gnupg"
    home.mkdir(parents=True, mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        return demo(env, home)
    finally:
        run(["gpgconf", "--kill", "gpg-agent"], env=env)


def demo(env: dict, home: Path) -> int:
    print("1. an ephemeral signing key (ed25519, no passphrase) for the signing server")
    run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
         "Demo signing key <demo@example.invalid>", "ed25519", "sign", "never"], env=env,
        check=True)
    colons = run(["gpg", "--with-colons", "--list-secret-keys"], env=env, check=True).stdout
    fpr = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
    print(f"   fingerprint {fpr}")

    print("2. three example image manifests (what a registry would serve) and their digests")
    from testbed import example_manifests

    manifests = example_manifests(IMAGES, DEMO / "manifests")
    for ref in IMAGES:
        print(f"   {ref}@{manifests[ref][1][:19]}...")

    print("3. an embedded AMQP 1.0 broker and the reference signing server (it holds the key)")
    from testbed import launch, stop

    broker, info = launch("testbed.broker", ["--listen", "127.0.0.1:0"],
                          log=DEMO / "broker.log")
    url = f"amqp://127.0.0.1:{info['port']}"
    server, _ = launch("testbed.signing_server", [
        "--broker", url, "--listen-to", SERVER_QUEUE, "--reply-to", REPLY_TOPIC,
        "--gnupg-home", str(home)], log=DEMO / "signing-server.log")
    print(f"   broker {url}; server reads {SERVER_QUEUE}")
    try:
        print("4. sign them with the msg signer: requests over the bus, signatures back")
        conf = DEMO / "conf.yaml"
        conf.write_text(f"""msg_signer:   # pubtools-sign's conf.yaml format
  messaging_brokers: [{url}]
  topic_send_to: {SEND_TO}
  topic_listen_to: queue://Consumer.{{creator}}.{{task_id}}.VirtualTopic.eng.pub.sign
  environment: demo
  service: container-sign-action
  timeout: 10
  retries: 3
  send_retries: 2
  message_id_key: request_id
  key_aliases: {{demo: {fpr}}}
""")
        args = [sys.executable, str(ROOT / "entrypoint.py"), "--signer", "msg", "--config-file",
                str(conf), "--signing-key", "demo", "--task-id", "demo", "--requester", "demo",
                "--deadline", "60", "--output-dir", str(DEMO / "signatures")]
        for ref, (_, digest) in manifests.items():
            args += ["--reference", ref, "--digest", digest]
        print("   $ python entrypoint.py --signer msg --config-file .demo/conf.yaml "
              "--signing-key demo --requester demo --reference ... --digest ... "
              "--output-dir .demo/signatures")
        signed = subprocess.run(args, env={**env, "GNUPGHOME": str(DEMO / "client-has-no-keys")})
    finally:
        stop(server)
        stop(broker)
    if signed.returncode != 0:
        print(f"demo: signing failed (exit {signed.returncode}); see .demo/*.log",
              file=sys.stderr)
        return 1
    results = json.loads((DEMO / "signatures" / "results.json").read_text())

    skopeo = shutil.which("skopeo")
    print(f"5. verify every signature with {'skopeo standalone-verify' if skopeo else 'gpg'}")
    for entry in results["images"]:
        ref, sig = entry["reference"], DEMO / "signatures" / entry["signature_path"]
        manifest, _ = manifests[ref]
        if skopeo:
            check = run([skopeo, "standalone-verify", str(manifest), ref, fpr, str(sig)], env=env)
        else:
            check = run(["gpg", "--batch", "--verify", str(sig)], env=env)
        if check.returncode != 0:
            print(f"   NOT VERIFIED: {ref}: {check.stderr.strip()}", file=sys.stderr)
            return 1
        print(f"   verified: {ref}  <-  .demo/signatures/{entry['signature_path']}")

    if skopeo:
        ref = IMAGES[0]
        wrong = ref.rsplit(":", 1)[0] + ":other"
        manifest, _ = manifests[ref]
        sig = DEMO / "signatures" / results["images"][0]["signature_path"]
        check = run([skopeo, "standalone-verify", str(manifest), wrong, fpr, str(sig)], env=env)
        verdict = "rejected, as it must be" if check.returncode != 0 else "ACCEPTED (wrong!)"
        print(f"6. the same signature claimed for {wrong}: {verdict}")
        if check.returncode == 0:
            return 1

    print("\nAll signatures verified. Look around in .demo/signatures/: the lookaside tree, "
          "results.json, and verification/ (policy.json + registries.d for podman/skopeo).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
