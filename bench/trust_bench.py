#!/usr/bin/env python3
"""The cost of one signature's trust decision in verify mode and skip-signed, CPU only.

Cosign (signers.cosign.cosign_problem): N signatures made in-process with the test bed's CA,
CT log and Rekor (keyless: a Fulcio certificate, its chain annotation, Rekor's bundle; key: a
P-256 key and Rekor's bundle), each judged as verify mode judges it, against the anchor measured
in the same run: the one ECDSA verification of the payload that any check has to make.

OpenPGP (signers.lookaside.signature_problem: the parser, Sequoia, podman's rules, the claim):
200 claims signed by gpg with an ed25519, a nistp256 and an rsa2048 key, each checked 5 times,
against the anchor measured in the same run: the bare verification of a signature over the same
claim with a key of the same kind (cryptography), the public-key operation any check must make.

Run: make bench-trust   (or PYTHONPATH=.:tests .venv/bin/python bench/trust_bench.py [N]
     [--json FILE]: the figures also as JSON, for bench/report.py)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signaction.formats import fulcio
from signaction.formats.cosign import go_json, simple_signing_payload
from signaction.plan import Image, SigningKey, WorkItem
from signaction.reference import parse_reference
from signers.cosign import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    CosignTrust,
    cosign_problem,
)
from testbed.sigstore import CtLog, Fulcio, Rekor, pem_cert, pem_public

ISSUER = "https://issuer.example"
EMAIL = "dev@example.com"


def signatures(n: int, keyless: bool, ca: Fulcio, log: Rekor) -> list[tuple[WorkItem, dict]]:
    out = []
    key = ec.generate_private_key(ec.SECP256R1())
    cert_pem = b""
    if keyless:
        cert = ca.issue(key.public_key(), ISSUER, {"email": EMAIL, "email_verified": True})
        cert_pem = pem_cert(cert).encode()
    key_pem = cert_pem or pem_public(key.public_key())
    for i in range(n):
        ref = parse_reference(f"registry.example.com/bench/app{i}:1.0")[0]
        digest = f"sha256:{i:064x}"
        payload = simple_signing_payload(str(ref), digest, {"tag": "1.0"})
        raw = key.sign(payload, ec.ECDSA(hashes.SHA256()))
        entry, _ = log.add({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256",
                              "value": hashlib.sha256(payload).hexdigest()}},
            "signature": {"content": base64.b64encode(raw).decode(),
                          "publicKey": {"content": base64.b64encode(key_pem).decode()}}}})
        (rendered,) = log.render(entry).values()
        bundle = go_json({"SignedEntryTimestamp": rendered["verification"]["signedEntryTimestamp"],
                          "Payload": {k: rendered[k] for k in ("body", "integratedTime",
                                                               "logIndex", "logID")}}).decode()
        annotations = {BUNDLE_ANNOTATION: bundle}
        if keyless:
            annotations[CERTIFICATE_ANNOTATION] = cert_pem.decode()
            annotations[CHAIN_ANNOTATION] = "".join(ca.chain_pem()[:1])
        out.append((WorkItem(Image(ref, digest, "bench"), SigningKey("k", "k")),
                    {"payload": payload, "signature": base64.b64encode(raw).decode(),
                     "annotations": annotations, "_key": key}))
    return out


def timed(fn, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=1000)
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures to FILE as JSON (bench/report.py reads it)")
    opts = parser.parse_args()
    n = opts.n
    load_start = os.getloadavg()
    rows: list[dict] = []
    ca, log = Fulcio(CtLog()), Rekor()
    rekor_pem = pem_public(log.key.public_key())
    roots = fulcio.FulcioRoots((ca.root,), ())
    print(f"{n} signatures, CPU seconds, best of 3")
    for keyless in (False, True):
        sigs = signatures(n, keyless, ca, log)
        if keyless:
            trust = CosignTrust(fulcio=roots, identity=EMAIL, issuer=ISSUER, rekor_pem=rekor_pem,
                                ctlog_pem=pem_public(ca.ct.key.public_key()))
        else:
            public = sigs[0][1]["_key"].public_key()
            trust = CosignTrust(public_pem=public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
                rekor_pem=rekor_pem)
        for item, sig in sigs:  # every one must be accepted, or the figure means nothing
            problem, _ = cosign_problem(sig, item, trust)
            assert problem is None, problem
        ours = timed(lambda sigs=sigs, trust=trust: [cosign_problem(s, i, trust)
                                                     for i, s in sigs])
        key = sigs[0][1]["_key"].public_key()
        anchor = timed(lambda sigs=sigs, key=key: [
            key.verify(base64.b64decode(s["signature"]), s["payload"], ec.ECDSA(hashes.SHA256()))
            for _, s in sigs])
        kind = "keyless (chain, SCT, identity, SET, body)" if keyless else \
            "key + Rekor (SET, body)"
        print(f"{kind:44} {ours:6.3f} s  {ours / n * 1e6:7.1f} us/signature  "
              f"{ours / anchor:5.1f}x the bare ECDSA verify ({anchor / n * 1e6:.1f} us)")
        rows.append({"kind": "cosign keyless" if keyless else "cosign key + Rekor", "count": n,
                     "ours_cpu_s": ours, "anchor_cpu_s": anchor,
                     "anchor": "bare ECDSA verify"})
    rows += openpgp_rows(min(200, n))
    print(json.dumps({"n": n}))
    if opts.json:
        opts.json.write_text(json.dumps({"n": n, "rows": rows, "load_start": load_start,
                                         "load_end": os.getloadavg()}, indent=1) + "\n")


def openpgp_rows(count: int = 200, rounds: int = 5) -> list[dict]:
    """Prints a line per key kind; returns the same figures as dicts."""
    import subprocess
    import tempfile

    from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

    from signaction.formats.claim import atomic_claim
    from signaction.formats.openpgp import Keyring
    from signaction.plan import Image, SigningKey, WorkItem
    from signers.lookaside import TrustedKey, signature_problem

    home = tempfile.mkdtemp(prefix="bench-gpg-")
    env = {**os.environ, "GNUPGHOME": home}

    def gpg(*args: str, data: bytes = b"") -> bytes:
        return subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase",
                               "", *args], input=data, env=env, capture_output=True,
                              check=True).stdout

    bare = {"ed25519": (ed25519.Ed25519PrivateKey.generate(), lambda k, sig, d: k.public_key()
                        .verify(sig, d), lambda k, d: k.sign(d)),
            "nistp256": (ec.generate_private_key(ec.SECP256R1()), lambda k, sig, d: k
                         .public_key().verify(sig, d, ec.ECDSA(hashes.SHA256())),
                         lambda k, d: k.sign(d, ec.ECDSA(hashes.SHA256()))),
            "rsa2048": (rsa.generate_private_key(65537, 2048), lambda k, sig, d: k.public_key()
                        .verify(sig, d, padding.PKCS1v15(), hashes.SHA256()),
                        lambda k, d: k.sign(d, padding.PKCS1v15(), hashes.SHA256()))}
    print(f"OpenPGP: {count} gpg-made signed claims, each checked {rounds} times, CPU seconds, "
          "best of 3")
    rows = []
    try:
        for algo, (key, verify, sign) in bare.items():
            gpg("--quick-gen-key", f"{algo} <{algo}@bench.invalid>", algo, "sign", "never")
            ring = Keyring.parse(gpg("--export", f"{algo}@bench.invalid"))
            trusted = TrustedKey(ring, ring.fingerprints()[0])
            cases = []
            for i in range(count):
                ref = parse_reference(f"registry.example.com/bench/app{i}:1.0")[0]
                digest = f"sha256:{i:064x}"
                claim = atomic_claim(str(ref), digest, "bench", 1)
                cases.append((WorkItem(Image(ref, digest, "bench"), SigningKey("k", "k")),
                              gpg("-u", f"{algo}@bench.invalid", "--sign", data=claim),
                              claim, sign(key, claim)))
            for item, message, _, _ in cases:  # every one must be accepted
                assert signature_problem(message, item, trusted) is None
            ours = timed(lambda cases=cases, trusted=trusted: [
                signature_problem(m, i, trusted) for _ in range(rounds) for i, m, _, _ in cases])
            anchor = timed(lambda cases=cases, key=key, verify=verify: [
                verify(key, sig, claim) for _ in range(rounds) for _, _, claim, sig in cases])
            total = count * rounds
            print(f"{'OpenPGP ' + algo:44} {ours:6.3f} s  {ours / total * 1e6:7.1f} "
                  f"us/signature  {ours / anchor:5.1f}x the bare verify "
                  f"({anchor / total * 1e6:.1f} us)")
            rows.append({"kind": f"OpenPGP {algo}", "count": total, "ours_cpu_s": ours,
                         "anchor_cpu_s": anchor, "anchor": f"bare {algo} verify"})
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
        subprocess.run(["rm", "-rf", home], check=False)
    return rows


if __name__ == "__main__":
    main()
