#!/usr/bin/env python3
"""make demo: sign three example images with an ephemeral GPG key, then verify every signature
with skopeo (or gpg, where skopeo is missing). Everything lives in .demo/ and is made anew."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
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
    print("1. an ephemeral signing key (ed25519, no passphrase) in .demo/gnupg")
    run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
         "Demo signing key <demo@example.invalid>", "ed25519", "sign", "never"], env=env,
        check=True)
    colons = run(["gpg", "--with-colons", "--list-secret-keys"], env=env, check=True).stdout
    fpr = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
    print(f"   fingerprint {fpr}")

    print("2. three example image manifests (what a registry would serve) and their digests")
    manifests = {}
    for ref in IMAGES:
        body = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": "sha256:" + hashlib.sha256(ref.encode()).hexdigest(),
                                      "size": len(ref)},
                           "layers": []}).encode()
        path = DEMO / "manifests" / (ref.replace("/", "_").replace(":", "_") + ".json")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(body)
        manifests[ref] = (path, "sha256:" + hashlib.sha256(body).hexdigest())
        print(f"   {ref}@{manifests[ref][1][:19]}...")

    print("3. sign them with the gpg signer")
    conf = DEMO / "conf.yaml"
    conf.write_text(f"gpg_signer:\n  gnupg_home: {home}\n  key_aliases:\n    demo: {fpr}\n")
    args = [sys.executable, str(ROOT / "entrypoint.py"), "--signer", "gpg", "--config-file",
            str(conf), "--signing-key", "demo", "--task-id", "demo",
            "--output-dir", str(DEMO / "signatures")]
    for ref, (_, digest) in manifests.items():
        args += ["--reference", ref, "--digest", digest]
    print("   $ python entrypoint.py --signer gpg --config-file .demo/conf.yaml "
          "--signing-key demo --reference ... --digest ... --output-dir .demo/signatures")
    signed = subprocess.run(args, env=env)
    if signed.returncode != 0:
        print(f"demo: signing failed (exit {signed.returncode})", file=sys.stderr)
        return 1
    results = json.loads((DEMO / "signatures" / "results.json").read_text())

    skopeo = shutil.which("skopeo")
    print(f"4. verify every signature with {'skopeo standalone-verify' if skopeo else 'gpg'}")
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
        print(f"5. the same signature claimed for {wrong}: {verdict}")
        if check.returncode == 0:
            return 1

    print("\nAll signatures verified. Look around in .demo/signatures/: the lookaside tree, "
          "results.json, and verification/ (policy.json + registries.d for podman/skopeo).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
