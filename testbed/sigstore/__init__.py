"""A sigstore test bed: an OIDC issuer with a GitHub-style token endpoint, a Fulcio CA and a Rekor
transparency log, in one process on loopback, that real cosign 2.5 and skopeo 1.18 accept without
any ``--insecure-*`` flag once pointed at its trust roots.

    python -m testbed.sigstore --dir DIR [--host 127.0.0.1] [--token-lifetime SECONDS]
        [--email ADDRESS] [--repository OWNER/NAME] [--ref REF] [--fulcio-fail K]
        [--rekor-fail K] [--rekor-lose K] [--fail-status CODE] [--fulcio-delay SECONDS]
        [--rate-limit PER_MINUTE] [--rate-burst N] [--ready-file PATH]

It writes into DIR the trust roots (``fulcio_chain.pem``: root then intermediate, for
``SIGSTORE_ROOT_FILE``; ``fulcio_root.pem``: the root alone, a podman/skopeo ``caPath``;
``ctfe.pub``; ``rekor.pub``; all of them as sigstore's clients take them now:
``trusted_root.json`` and ``signing_config.json``, for cosign 3's ``--trusted-root`` and
``--signing-config`` and sigstore-python) and ``DIR/env``, ``KEY=VALUE`` lines:
``FULCIO_URL``, ``REKOR_URL``, ``OIDC_ISSUER``, ``SIGSTORE_ROOT_FILE``,
``SIGSTORE_CT_LOG_PUBLIC_KEY_FILE``, ``SIGSTORE_REKOR_PUBLIC_KEY``, ``TRUSTED_ROOT``,
``SIGNING_CONFIG``, ``ACTIONS_ID_TOKEN_REQUEST_URL``, ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``
(written last, atomically: once it exists everything listens). The ready file (JSON: the same
values plus ``pid`` and ``control``) follows. Keys are made afresh at each start and everything
is kept in memory. SIGTERM ends it at once. Three HTTP servers, each service at the root of its
own port as the real ones are:

OIDC issuer (``OIDC_ISSUER``, ``http://HOST:PORT``)
    ``GET /.well-known/openid-configuration`` and ``GET /jwks`` (one P-256 key, ES256 tokens).
    ``GET /token?api-version=2.0&audience=AUD`` with ``Authorization: bearer
    ACTIONS_ID_TOKEN_REQUEST_TOKEN`` answers ``{"value": JWT}`` as GitHub's token service does
    (any other bearer: 401). The token carries GitHub's claims (``sub``
    ``repo:OWNER/NAME:ref:REF``, ``repository``, ``repository_owner``, ``ref``, ``sha``,
    ``workflow``, ``workflow_ref``, ``job_workflow_ref``, ``event_name``, ``runner_environment``,
    ``run_id``, ...) or, with ``--email`` or a query parameter ``email=ADDRESS``, an email
    identity (``email``, ``email_verified``: ``email_verified=false`` in the query makes it
    unverified). It lives ``--token-lifetime`` seconds (default 300; the query parameter
    ``lifetime`` overrides it, negative gives an expired token).
    Test control, no authentication (loopback only): ``GET /testbed/state`` (the fault switches
    and counters), ``POST /testbed/faults`` (JSON, any of ``fulcio_fail``, ``rekor_fail``,
    ``rekor_lose``, ``fail_status``, ``fulcio_delay``, ``rate_limit``, ``rate_burst``,
    ``fulcio_forge``, ``rekor_forge`` (a
    hostile service: ``FULCIO_FORGERIES``, ``REKOR_FORGERIES``; "" ends it): replaces those
    switches and restarts their counts) and
    ``POST /testbed/token`` (JSON ``{"claims": {...}, "lifetime": S, "email": A}``: a token with
    those claims added or replaced, e.g. another ``aud`` or ``iss``).

Fulcio (``FULCIO_URL``)
    ``POST /api/v1/signingCert`` (the legacy API cosign 2.x uses: JSON ``publicKey.content`` a
    base64 PEM key, ``signedEmailAddress`` the base64 proof of possession; the token in
    ``Authorization: Bearer``; 201 with the PEM chain leaf, intermediate, root) and ``POST
    /api/v2/signingCert`` (``credentials.oidcIdentityToken`` or the bearer header;
    ``publicKeyRequest {publicKey {content: PEM}, proofOfPossession}`` or a base64 PEM
    ``certificateSigningRequest``; 200 with ``signedCertificateEmbeddedSct.chain.certificates``).
    The token is checked as Fulcio does: ES256 signature against the issuer's JWKS document,
    ``iss``, ``aud`` ``sigstore``, ``exp`` and ``nbf``; the proof is the subject (the ``email``,
    which must be verified, or else ``sub``) signed with the key. The certificate: 10 minutes,
    an empty subject, a critical SAN (GitHub: the URI ``https://github.com/`` +
    ``job_workflow_ref``, as Fulcio's GitHub template; email: the address), code-signing EKU, the
    OIDC issuer in 1.3.6.1.4.1.57264.1.1 (raw, deprecated) and .1.8 (DER UTF8String), for
    GitHub also .1.2-.1.6 (raw) and .1.9-.1.22 (DER UTF8String) from the claims, and an
    embedded SCT (see ``CtLog``). ``GET /api/v1/rootCert`` (intermediate and root PEM) and
    ``GET /api/v2/trustBundle``.

Rekor (``REKOR_URL``)
    ``POST /api/v1/log/entries`` takes ``hashedrekord`` 0.0.1 (the signature must verify over
    ``data.hash`` with the key or certificate in ``signature.publicKey``, ECDSA or RSA, as Rekor
    checks) and ``dsse`` 0.0.1 (cosign 3's bundles: every signature of
    ``proposedContent.envelope`` verifies over its PAE with one of ``verifiers``; the body keeps
    the envelope's and payload's SHA-256 and each signature with its verifier); the body is
    stored canonicalized (RFC 8785) and its RFC 6962 leaf hash is the
    entry's UUID; 201 ``{entryID: entry}`` with ``Location``, or 409 with the existing entry's
    ``Location`` for the same body again (always, as Rekor). An entry has ``body``,
    ``integratedTime``, ``logID`` (SHA-256 of the log key), ``logIndex`` and ``verification``:
    ``signedEntryTimestamp`` (ECDSA over the canonical JSON of body, integratedTime, logID,
    logIndex: what cosign and containers/image verify offline) and ``inclusionProof`` (RFC 6962
    audit path to the current root, with a signed checkpoint). ``GET
    /api/v1/log/entries/{uuid or entryID}``, ``GET /api/v1/log/entries?logIndex=N``, ``POST
    /api/v1/log/entries/retrieve`` (``entryUUIDs``, ``logIndexes``, ``entries``), ``GET
    /api/v1/log`` (tree size, root hash, ``signedTreeHead``: a signed note checkpoint as Rekor's)
    and ``GET /api/v1/log/publicKey`` (PEM).

Fault switches (flags, or ``POST /testbed/faults`` while it runs): ``--fulcio-fail K``: the
first K signing-certificate requests get ``--fail-status`` (default 503); ``--rekor-fail K``:
the first K entry uploads get it, nothing is logged; ``--rekor-lose K``: the first K uploads are
logged, then answered with it anyway (an answer lost on the way: the client's retry gets 409).
These answers carry ``Retry-After: 0``, so a client that honours it (rekor's, for a 503) retries
at once instead of after its own backoff. ``--fulcio-delay SECONDS``: a slow Fulcio, every
signing-certificate request is answered that much later (its token is checked after the wait):
a run that outlives its tokens without signing hundreds of images.

``--rate-limit PER_MINUTE`` (default 0: none): Fulcio and Rekor each take that many requests a
minute, every request of theirs counted (a token bucket per service of ``--rate-burst N`` at
once, default one second's worth), as the public instance's nginx limits each client; a request
past it is answered 429 ``Too Many Requests`` with ``Retry-After`` (the whole seconds until the
bucket has a token again). ``GET /testbed/state`` counts each service's ``requests`` and its
429s (``limited``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from testbed import cli_args, exit_on_sigterm, launch, write_ready_file

from . import trust
from .common import (
    AUDIENCE,
    ENV_KEYS,
    RateLimiter,
    Refused,
    load_public_key,
    pem_cert,
    pem_public,
    verify_signature,
)
from .fulcio import (
    CtLog,
    Fulcio,
    proof_subject,
)
from .http import (
    FulcioHandler,
    OidcHandler,
    RekorHandler,
)
from .oidc import (
    Issuer,
    email_claims,
    github_claims,
    verify_token,
)
from .rekor import (
    Rekor,
)

# -- the test bed ---------------------------------------------------------------------------

@dataclass
class Faults:
    fulcio_fail: int = 0
    rekor_fail: int = 0
    rekor_lose: int = 0
    fail_status: int = 503
    fulcio_delay: float = 0.0
    fulcio_forge: str = ""  # one of FULCIO_FORGERIES: every answer is that forgery
    rekor_forge: str = ""  # one of REKOR_FORGERIES
    seen: dict = field(default_factory=lambda: {"fulcio": 0, "rekor": 0})
    limiter: RateLimiter = field(default_factory=RateLimiter)  # --rate-limit, --rate-burst


# A hostile Fulcio's answers (``fulcio_forge``): a certificate for a key it was not asked for,
# for another identity, from another OIDC issuer, one that chains to no root of the bed's, and a
# chain that is not PEM at all.
FULCIO_FORGERIES = ("other-key", "other-identity", "other-issuer", "self-signed", "garbage")
# A hostile Rekor's answers (``rekor_forge``): the entry of another artifact (genuinely logged),
# a SET by another key, an inclusion proof to another root, a body that is not this entry's.
REKOR_FORGERIES = ("other-artifact", "bad-set", "bad-proof", "other-body")


class Sigstore:
    """The three services in this process (the Python API; ``main`` runs one until SIGTERM):
    ``start()`` writes the trust roots and ``env`` into ``directory`` and serves in threads,
    ``stop()`` ends them."""

    def __init__(self, directory: str | os.PathLike, *, host: str = "127.0.0.1",
                 token_lifetime: int = 300, email: str | None = None,
                 repository: str = "octo-org/octo-repo", ref: str = "refs/heads/main",
                 fulcio_fail: int = 0, rekor_fail: int = 0, rekor_lose: int = 0,
                 fail_status: int = 503, fulcio_delay: float = 0.0,
                 rate_limit: float = 0.0, rate_burst: float = 0.0):
        self.directory = Path(directory)
        self.host, self.token_lifetime, self.email = host, token_lifetime, email
        self.repository, self.ref = repository, ref
        self.faults = Faults(fulcio_fail, rekor_fail, rekor_lose, fail_status, fulcio_delay,
                             limiter=RateLimiter(rate_limit, rate_burst))
        self.lock = threading.Lock()
        self.request_token = secrets.token_urlsafe(24)
        self.ct = CtLog()
        self.fulcio = Fulcio(self.ct)
        self.rekor = Rekor()
        self.servers: list[ThreadingHTTPServer] = []
        self.urls: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.issuer: Issuer

    # -- lifecycle

    def start(self) -> Sigstore:
        for name, handler in (("oidc", OidcHandler), ("fulcio", FulcioHandler),
                              ("rekor", RekorHandler)):
            cls = type(handler.__name__, (handler,), {"testbed": self})
            server = ThreadingHTTPServer((self.host, 0), cls)
            server.daemon_threads = True
            self.servers.append(server)
            self.urls[name] = f"http://{self.host}:{server.server_address[1]}"
        self.issuer = Issuer(self.urls["oidc"])
        self._write_files()
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True,
                             name=f"sigstore-{server.server_address[1]}").start()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Sigstore:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _write_files(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        files = {"fulcio_chain.pem": pem_cert(self.fulcio.root) + pem_cert(
                     self.fulcio.intermediate),
                 "fulcio_root.pem": pem_cert(self.fulcio.root),
                 "ctfe.pub": pem_public(self.ct.key.public_key()).decode(),
                 "rekor.pub": pem_public(self.rekor.key.public_key()).decode()}
        for name, text in files.items():
            (d / name).write_text(text)
        (d / "trusted_root.json").write_bytes(trust.trusted_root(
            self.urls["fulcio"], [self.fulcio.intermediate, self.fulcio.root], self.urls["rekor"],
            self.rekor.key.public_key(), self.ct.key.public_key()))
        (d / "signing_config.json").write_bytes(trust.signing_config(
            self.urls["fulcio"], self.urls["rekor"], self.urls["oidc"]))
        self.env = {"FULCIO_URL": self.urls["fulcio"], "REKOR_URL": self.urls["rekor"],
                    "OIDC_ISSUER": self.urls["oidc"],
                    "SIGSTORE_ROOT_FILE": str(d / "fulcio_chain.pem"),
                    "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(d / "ctfe.pub"),
                    "SIGSTORE_REKOR_PUBLIC_KEY": str(d / "rekor.pub"),
                    "TRUSTED_ROOT": str(d / "trusted_root.json"),
                    "SIGNING_CONFIG": str(d / "signing_config.json"),
                    "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.urls['oidc']}/token?api-version=2.0",
                    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token}
        tmp = d / f"env.{os.getpid()}.tmp"
        tmp.write_text("".join(f"{k}={self.env[k]}\n" for k in ENV_KEYS))
        os.replace(tmp, d / "env")

    # -- what the handlers use

    def token(self, *, audience: str = AUDIENCE, lifetime: int | None = None,
              email: str | None = None, email_verified: bool = True,
              extra: dict | None = None) -> str:
        """An ID token from this issuer: GitHub's claims, or an email identity (``email``, or
        the test bed's ``--email``); ``extra`` claims added or replaced last."""
        now = int(time.time())
        life = self.token_lifetime if lifetime is None else int(lifetime)
        email = email or self.email
        claims = email_claims(self.issuer.url, email, email_verified, now, life) if email \
            else github_claims(self.issuer.url, self.repository, self.ref, now, life)
        claims["aud"] = audience
        claims.update(extra or {})
        return self.issuer.sign(claims)

    def fault(self, service: str) -> bool:
        """Count a request to ``service``; raise the 5xx its switch asks for. For Rekor, True
        means: log it, then lose the answer. Fulcio waits ``fulcio_delay`` seconds first."""
        with self.lock:
            delay = self.faults.fulcio_delay if service == "fulcio" else 0
        if delay > 0:
            time.sleep(delay)  # a slow service, as the switch asks
        with self.lock:
            f = self.faults
            f.seen[service] += 1
            n = f.seen[service]
            fail = f.fulcio_fail if service == "fulcio" else f.rekor_fail
            if n <= fail:
                raise Refused(f.fail_status, f"{service} is unavailable (testbed fault {n} of "
                                             f"{fail})", {"Retry-After": "0"})
            return service == "rekor" and n <= fail + f.rekor_lose

    def admit(self, service: str) -> None:
        """Count a request to ``service`` (any of its endpoints); Refused(429) past the rate
        limit."""
        with self.lock:
            self.faults.limiter.admit(service, time.monotonic())

    def set_faults(self, *, fulcio_fail: int | None = None, rekor_fail: int | None = None,
                   rekor_lose: int | None = None, fail_status: int | None = None,
                   fulcio_delay: float | None = None, fulcio_forge: str | None = None,
                   rekor_forge: str | None = None, rate_limit: float | None = None,
                   rate_burst: float | None = None) -> None:
        """Replace the switches given and start counting requests again (the rate limit's
        buckets start full)."""
        with self.lock:
            f = self.faults
            if fulcio_fail is not None:
                f.fulcio_fail = int(fulcio_fail)
            if rekor_fail is not None:
                f.rekor_fail = int(rekor_fail)
            if rekor_lose is not None:
                f.rekor_lose = int(rekor_lose)
            if fail_status is not None:
                f.fail_status = int(fail_status)
            if fulcio_delay is not None:
                f.fulcio_delay = max(0.0, float(fulcio_delay))
            if fulcio_forge is not None:
                if fulcio_forge and fulcio_forge not in FULCIO_FORGERIES:
                    raise ValueError(f"fulcio_forge: one of {FULCIO_FORGERIES}")
                f.fulcio_forge = fulcio_forge
            if rekor_forge is not None:
                if rekor_forge and rekor_forge not in REKOR_FORGERIES:
                    raise ValueError(f"rekor_forge: one of {REKOR_FORGERIES}")
                f.rekor_forge = rekor_forge
            f.seen = {"fulcio": 0, "rekor": 0}
            old = f.limiter
            f.limiter = RateLimiter(old.per_minute if rate_limit is None else rate_limit,
                                    (old.burst if old.per_minute else 0) if rate_burst is None
                                    else rate_burst)

    def state(self) -> dict:
        with self.lock:
            f = self.faults
            faults = {"fulcio_fail": f.fulcio_fail, "rekor_fail": f.rekor_fail,
                      "rekor_lose": f.rekor_lose, "fail_status": f.fail_status,
                      "fulcio_delay": f.fulcio_delay, "fulcio_forge": f.fulcio_forge,
                      "rekor_forge": f.rekor_forge, "seen": dict(f.seen),
                      "rate_limit": f.limiter.per_minute, "rate_burst": f.limiter.burst,
                      "requests": dict(f.limiter.requests), "limited": dict(f.limiter.limited)}
        return {"faults": faults, "rekor_entries": len(self.rekor.entries),
                "certificates": len(self.ct.logged), "urls": self.urls}

    def sign_certificate(self, token: str, key_bytes: bytes | None, proof: bytes | None,
                         csr: bytes | None) -> list[str]:
        """Fulcio's signingCert: check the token and the proof of possession, issue. Returns the
        PEM chain: leaf, intermediate, root."""
        claims = verify_token(token, self.issuer.jwks(), self.issuer.url, AUDIENCE,
                              time.time())
        subject = proof_subject(claims)
        if csr is not None:
            try:
                request = x509.load_pem_x509_csr(csr)
            except ValueError:
                raise Refused(400, "There was an error processing the CSR") from None
            if not request.is_signature_valid:
                raise Refused(400, "There was an error processing the CSR: bad signature")
            key = request.public_key()
        else:
            key = load_public_key(key_bytes or b"")
            if key is None:
                raise Refused(400, "There was an error processing the public key")
            try:
                verify_signature(key, proof or b"", data=subject.encode())
            except Refused:
                raise Refused(400, "There was an error processing the public key: the proof "
                                   f"of possession does not verify over {subject!r}") from None
        with self.lock:
            forge = self.faults.fulcio_forge
        if forge == "garbage":
            return ["-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                    "-----END CERTIFICATE-----\n"]
        if forge == "other-key":
            key = ec.generate_private_key(ec.SECP256R1()).public_key()
        if forge == "other-identity":
            claims = {**claims, "email": "mallory@example.com"}
        leaf = self.fulcio.issue(key, "https://issuer.example.com" if forge == "other-issuer"
                                 else self.issuer.url, claims)
        if forge == "self-signed":
            leaf = Fulcio(self.ct).issue(key, self.issuer.url, claims)  # another CA's
        return [pem_cert(leaf), *self.fulcio.chain_pem()]


# -- the program ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.sigstore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="where the trust roots and env go")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token-lifetime", type=int, default=300, metavar="SECONDS")
    parser.add_argument("--email", help="tokens carry this email identity, not GitHub's")
    parser.add_argument("--repository", default="octo-org/octo-repo", metavar="OWNER/NAME")
    parser.add_argument("--ref", default="refs/heads/main")
    parser.add_argument("--fulcio-fail", type=int, default=0, metavar="K")
    parser.add_argument("--rekor-fail", type=int, default=0, metavar="K")
    parser.add_argument("--rekor-lose", type=int, default=0, metavar="K")
    parser.add_argument("--fail-status", type=int, default=503, metavar="CODE")
    parser.add_argument("--fulcio-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--rate-limit", type=float, default=0.0, metavar="PER_MINUTE")
    parser.add_argument("--rate-burst", type=float, default=0.0, metavar="N")
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[^/\s]+/[^/\s]+", args.repository):
        parser.error("--repository is OWNER/NAME")
    exit_on_sigterm()
    testbed = Sigstore(args.dir, host=args.host, token_lifetime=args.token_lifetime,
                       email=args.email, repository=args.repository, ref=args.ref,
                       fulcio_fail=args.fulcio_fail, rekor_fail=args.rekor_fail,
                       rekor_lose=args.rekor_lose, fail_status=args.fail_status,
                       fulcio_delay=args.fulcio_delay, rate_limit=args.rate_limit,
                       rate_burst=args.rate_burst).start()
    write_ready_file(args.ready_file, {"pid": os.getpid(), "control": testbed.urls["oidc"],
                                       **testbed.env})
    print(f"sigstore testbed: {json.dumps(testbed.urls)}; env in {Path(args.dir) / 'env'}",
          file=sys.stderr, flush=True)
    while True:
        signal.pause()


def start_sigstore(directory: str | os.PathLike, *, log=None, timeout: float = 30,
                   **options):
    """Start ``python -m testbed.sigstore --dir DIRECTORY`` with ``options`` as flags
    (``token_lifetime=30`` -> ``--token-lifetime 30``) and wait until it serves: (Popen, the
    ready file's content: the env values, ``pid`` and ``control``). Stop it with
    ``testbed.stop(proc)``."""
    return launch("testbed.sigstore", cli_args(dir=directory, **options), timeout=timeout,
                  log=log)

__all__ = ["ENV_KEYS", "CtLog", "Fulcio", "Rekor", "Sigstore", "pem_cert", "pem_public",
           "start_sigstore"]
