"""The cosign signer through the cosign binary: the part of CosignSigner that runs it."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from signaction.errors import InputError
from signaction.formats.fulcio import read_certificate
from signaction.plan import SigningKey, WorkItem
from signaction.registry import RegistryError
from signaction.safeload import read_regular_file

from ..base import Outcome, Report, Signer
from ..tools import Running, child_env, run_pool, run_tool
from . import services
from .common import (
    AMBIENT_ENV,
    COSIGN_ENV,
    JWT,
    KEY_ENV,
    KEY_URI,
    KEYLESS,
    MAX_PEM,
    MAX_TOKEN,
    PUBLIC_KEY_TIMEOUT,
    ROOT_FILES,
    TLOG_INDEX,
    _bool,
    _by_digest,
    _last_line,
    _seconds,
    rekor_uuid,
)
from .format import CosignSignature

log = logging.getLogger("signers.cosign")


class CosignBinary(Signer):
    """The cosign signer's path through the cosign binary (KMS URIs, engine: cosign): its
    environment, preflight, public keys, one `cosign sign` per item and what it printed.
    The base of CosignSigner (signer.py), whose __init__ sets what these methods read."""

    cosign: str
    timeout: str  # cosign's --timeout, a Go duration
    attempts: int
    threads: int
    upload: bool
    tlog: bool
    signature_format: str
    annotations: dict[str, str]
    password: str | None
    token_source: tuple[str, str] | None
    deadline: float | None
    started: float
    public: dict[str, bytes]
    roots: dict[str, tuple[str, bytes]]  # root file config key -> (path, its bytes)

    def _run(self, args: list[str], env: dict[str, str], timeout: float,
             running: Running | None = None) -> subprocess.CompletedProcess:
        proc, timed_out = run_tool([self.cosign, *args], env=env, timeout=timeout,
                                   running=running)
        err = proc.stderr.decode("utf-8", "replace")
        if timed_out:
            err += f"\ncosign did not finish within {timeout:.0f} s"
        return subprocess.CompletedProcess(proc.args, proc.returncode,
                                           proc.stdout.decode("utf-8", "replace"), err)

    def _preflight_binary(self, keys: list[SigningKey]) -> None:
        found = shutil.which(self.cosign)
        if found is None:
            raise InputError(f"cosign signer: {self.cosign!r} not found (install cosign, or set "
                             "cosign_signer.cosign_bin)")
        self.cosign = found
        env = self._env()
        help_text = self._run(["sign", "--help"], env, 30).stdout
        self.flags = set(re.findall(r"--([a-z][a-z0-9-]+)", help_text))
        # cosign 3 (it has --use-signing-config) hides --new-bundle-format from its help: ask
        if "new-bundle-format" not in self.flags and "use-signing-config" in self.flags and \
                self._run(
                    ["sign", "--new-bundle-format=false", "--help"], env, 30).returncode == 0:
            self.flags.add("new-bundle-format")
        if self.signature_format == "bundle" and "new-bundle-format" not in self.flags:
            raise InputError(f"config: cosign_signer.signature_format: bundle needs a cosign "
                             f"with --new-bundle-format (3.x); {self.cosign} has not")
        for key in keys:
            if key.key != KEYLESS:
                self.public[key.key] = self._public_key(key, self._env(key=key))

    def _public_key(self, key: SigningKey, env: dict[str, str]) -> bytes:
        named = f"signing key {key.key!r}" + (f" (alias {key.given!r})"
                                               if key.given != key.key else "")
        if not KEY_URI.match(key.key) and not os.path.isfile(key.key):
            raise InputError(f"{named}: no such file (a cosign key file, or a KMS URI such as "
                             "awskms://, gcpkms://, azurekms://, hashivault://, k8s://, env://)")
        result = self._run(["public-key", "--key", key.key], env, PUBLIC_KEY_TIMEOUT)
        if result.returncode != 0 or b"PUBLIC KEY" not in result.stdout.encode():
            why = _last_line(result.stderr) or f"exit {result.returncode}"
            hint = "" if self.password else " (COSIGN_PASSWORD is not set)"
            raise InputError(f"{named}: cosign cannot use it: {why}{hint}")
        return result.stdout.encode()

    def _sign_binary(self, items: Sequence[WorkItem], report: Report) -> None:
        running = Running()
        deadline_at = self.started + self.deadline if self.deadline else float("inf")
        # One digest, one cosign at a time: its items run in order in one task.
        groups = _by_digest(items)
        with tempfile.TemporaryDirectory(prefix="cosign-") as tmp:
            docker_config = self._docker_config(tmp, items)
            envs: dict[str, dict[str, str]] = {}  # per key: its password or none, its names
            for item in items:
                if item.key.key not in envs:
                    envs[item.key.key] = self._env(docker_config, item.key, roots_dir=tmp)
            counter = iter(range(len(items)))
            lock = threading.Lock()

            def one_digest(group: list[WorkItem]) -> None:
                for item in group:
                    if running.ended:
                        return
                    with lock:
                        n = next(counter)
                    report(self._sign_one(item, envs[item.key.key], os.path.join(tmp, str(n)),
                                          running, deadline_at))

            run_pool(one_digest, groups, workers=self.threads, name="cosign",
                     running=running, deadline_at=deadline_at)

    def _sign_one(self, item: WorkItem, env: dict[str, str], work: str, running: Running,
                  deadline_at: float) -> Outcome:
        image = item.container
        target = f"{image.source.host}/{image.source.path}@{image.digest}"
        os.mkdir(work, 0o700)
        files = {name: os.path.join(work, name) for name in ("payload", "sig", "cert", "token")}
        try:
            args = self._sign_args(item, files) + [target]
        except InputError as e:  # keyless: the token file went away, or is no token now
            return Outcome(item, error=str(e))
        error = ""
        for attempt in range(1, self.attempts + 1):
            left = deadline_at - time.monotonic()
            if left <= 0:
                return Outcome(item, error=f"cosign: the deadline was reached ({error})"
                               if error else "cosign: the deadline was reached")
            result = self._run(args, env, min(left, _seconds(self.timeout) + 30), running)
            if running.ended:
                return Outcome(item, error="the run was stopped")
            stderr = self._scrub_token(result.stderr, item)
            if result.returncode == 0:
                return self._signed(item, stderr, files)
            error = _last_line(stderr) or f"cosign exited with {result.returncode}"
            if attempt < self.attempts:
                pause = min(2.0 ** (attempt - 1), 30.0, max(deadline_at - time.monotonic(), 0))
                log.warning("cosign sign %s failed (attempt %d of %d): %s; again in %.0f s",
                            target, attempt, self.attempts, error, pause)
                time.sleep(pause)  # backoff between attempts of a failing external command
        return Outcome(item, error=f"cosign: {error}", detail=json.dumps(error))

    def _sign_args(self, item: WorkItem, files: dict[str, str]) -> list[str]:
        """``cosign sign``'s arguments but the image: the key, or keyless its token (a path:
        the configured file, or a private copy of env://VAR's token) and Fulcio's address."""
        image = item.container
        args = ["--timeout", self.timeout, "sign", "--yes",
                f"--allow-http-registry={_bool(self.registry_settings.allow_http)}",
                f"--allow-insecure-registry={_bool(self.registry_settings.allow_insecure)}",
                f"--tlog-upload={_bool(self.tlog)}", f"--upload={_bool(self.upload)}",
                "--sign-container-identity", str(image.reference),
                "--output-payload", files["payload"], "--output-signature", files["sig"],
                "-a", f"tag={image.reference.tag}"]
        if item.key.key != KEYLESS:
            args += ["--key", item.key.key]
        else:
            args += ["--output-certificate", files["cert"]]
            args += self._token_args(files["token"])
            for name in ("fulcio_url", "oidc_issuer"):
                if self.config.get(name):
                    args += [f"--{name.replace('_', '-')}", str(self.config[name])]
        if self.config.get("rekor_url"):
            args += ["--rekor-url", str(self.config["rekor_url"])]
        for k, v in self.annotations.items():
            args += ["-a", f"{k}={v}"]
        return args + self._format_flags()

    def _token_args(self, token_file: str) -> list[str]:
        """Where keyless cosign gets its identity token: GitHub's ambient provider (it asks
        for a fresh token each time), or ``--identity-token PATH``: the configured file (cosign
        reads it afresh; checked first, since cosign takes a path it cannot open for the token
        itself), or for env://VAR a private 0600 file holding its token."""
        if self.token_source is None:
            return ["--oidc-provider", "github-actions"]
        token = self._read_token()
        kind, where = self.token_source
        if kind == "file":
            return ["--identity-token", os.path.abspath(where)]
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token)
        return ["--identity-token", token_file]

    def _scrub_token(self, text: str, item: WorkItem) -> str:
        """cosign's output without the identity token, should it quote it."""
        if item.key.key != KEYLESS or self.token_source is None:
            return text
        try:
            token = self._read_token()
        except InputError:
            return text
        return text.replace(token, "***")

    def _signed(self, item: WorkItem, stderr: str, files: dict[str, str]) -> Outcome:
        """The Outcome of a ``cosign sign`` that succeeded: what it wrote, checked, and the
        facts about it (the certificate's identity and issuer, the Rekor entry)."""
        try:
            with open(files["payload"], "rb") as f:
                payload = f.read()
            with open(files["sig"], "rb") as f:
                signature = f.read().strip()
        except OSError as e:
            return Outcome(item, error=f"cosign wrote no signature file: {e.strerror}")
        try:
            os.unlink(files["token"])  # a private copy of the token, needed no more
        except FileNotFoundError:
            pass
        facts: dict[str, Any] = {}
        key_pem = self.public.get(item.key.key)
        if item.key.key == KEYLESS:
            try:
                with open(files["cert"], "rb") as f:
                    pem, facts["identity"], facts["issuer"] = read_certificate(f.read(MAX_PEM))
            except (OSError, ValueError) as e:
                why = e.strerror if isinstance(e, OSError) else str(e)
                return Outcome(item, error=f"cosign's certificate (--output-certificate): {why}")
            facts["certificate"] = key_pem = pem
        if self.tlog:
            facts.update(self._tlog_facts(item, stderr, payload, signature, key_pem))
        return Outcome(item, signature=CosignSignature(payload, signature, **facts),
                       detail=json.dumps(stderr.strip()))  # JSON text

    def _tlog_facts(self, item: WorkItem, stderr: str, payload: bytes, signature: bytes,
                    key_pem: bytes | None) -> dict[str, Any]:
        """The Rekor entry's index (cosign 2 prints it; cosign 3 does not: the entry is then read
        from Rekor by its UUID and checked) and UUID (computed); what cannot be known is left
        out, with a warning: the signature itself is made."""
        facts: dict[str, Any] = {}
        try:
            facts["log_uuid"] = rekor_uuid(payload, signature, key_pem or b"")
        except ValueError as e:
            log.warning("%s: the Rekor entry's UUID cannot be computed: %s",
                        item.container.reference, e)
        found = set(TLOG_INDEX.findall(stderr))
        if len(found) == 1:
            facts["log_index"] = int(found.pop())
        elif not found and "log_uuid" in facts:
            rekor_pem = self.roots.get("rekor_public_key_file", ("", None))[1]
            rekor = services.Rekor(self.registry, self.config.get("rekor_url"), rekor_pem)
            try:
                raw = base64.b64decode(signature, validate=True)
                facts["log_index"] = rekor.find(facts["log_uuid"], payload, raw,
                                                key_pem or b"").index
            except (ValueError, RegistryError, services.ServiceError) as e:
                log.warning("%s: the Rekor entry could not be read: %s: not recorded",
                            item.container.reference, e)
        else:
            log.warning("%s: cosign printed more than one transparency log index: not "
                        "recorded", item.container.reference)
        return facts

    def _format_flags(self) -> list[str]:
        if self.signature_format == "bundle":
            return ["--new-bundle-format=true"]
        flags = []
        if "new-bundle-format" in self.flags:  # cosign 3.x defaults to bundles via referrers
            flags.append("--new-bundle-format=false")
        if "use-signing-config" in self.flags:
            flags.append("--use-signing-config=false")
        return flags

    def _docker_config(self, tmp: str, items: Sequence[WorkItem]) -> str | None:
        """A private docker config holding the configured registry credentials (cosign reads
        DOCKER_CONFIG), merged over the user's own: the same credentials the registry client
        uses (registry_settings); None when none are configured."""
        hosts = sorted({i.container.source.host for i in items})
        configured = self.registry_settings.docker_auths(hosts, self.environ)
        if configured is None:
            return None
        home = self.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
        try:
            with open(os.path.join(home, "config.json"), encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError):
            config = {}
        if not isinstance(config, dict) or not isinstance(config.get("auths", {}), dict):
            config = {}
        config.setdefault("auths", {}).update(configured)
        folder = os.path.join(tmp, "docker")
        os.mkdir(folder, 0o700)
        fd = os.open(os.path.join(folder, "config.json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                     0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(config, f)
        return folder

    def _env(self, docker_config: str | None = None, key: SigningKey | None = None,
             roots_dir: str | None = None) -> dict[str, str]:
        """cosign's environment, for ``key`` (None: a call that uses no key): COSIGN_ENV and
        what the key reads, the config's env_variables, the trust roots configured (those of a
        trusted root written into ``roots_dir``, the run's private folder), the private
        docker config, and COSIGN_PASSWORD: the key's passphrase for a key that is encrypted
        with one (a key file, env://), else empty. Keyless without identity_token: GitHub's
        token request variables (cosign's ambient provider), for this key only."""
        keep = list(COSIGN_ENV)
        uri = key.key if key is not None else ""
        keyless = uri == KEYLESS
        if uri.startswith("env://"):
            keep.append(uri[len("env://"):])
        for scheme, names in KEY_ENV.items():
            if uri.startswith(scheme):
                keep += names
        extra = {str(k): str(v) for k, v in (self.config.get("env_variables") or {}).items()}
        for name, (path, data) in self.roots.items():
            if not path and roots_dir:  # from a trusted root: a file for cosign to read
                path = os.path.join(roots_dir, ROOT_FILES[name][1])
                if not os.path.exists(path):
                    with open(path, "wb") as f:
                        f.write(data)
            if path:
                extra[ROOT_FILES[name][0]] = path
        # Set even when empty: an unset COSIGN_PASSWORD makes cosign prompt, and CI has no tty.
        needs_password = key is not None and not keyless and (uri.startswith("env://") or
                                                              not KEY_URI.match(uri))
        extra["COSIGN_PASSWORD"] = (self.password or "") if needs_password else ""
        if keyless and self.token_source is None:
            extra.update({n: self.environ[n] for n in AMBIENT_ENV if self.environ.get(n)})
        if docker_config:
            extra["DOCKER_CONFIG"] = docker_config
        return child_env(self.environ, keep=keep, extra=extra)

    def _read_token(self) -> str:
        """The identity token as it is now (a file is read again each time: a projected token
        rotates); InputError naming the config key, never quoting the token or its place."""
        assert self.token_source is not None
        kind, where = self.token_source
        what = "config: cosign_signer.identity_token"
        if kind == "env":
            text = self.environ.get(where, "")
            if not text.strip():
                raise InputError(f"{what}: env://{where}: the variable is not set or empty")
            if len(text) > MAX_TOKEN:
                raise InputError(f"{what}: env://{where}: more than {MAX_TOKEN} bytes, which "
                                 "no identity token is")
        else:  # (a FIFO or a device is refused before it is opened: never a hang)
            data = read_regular_file(where, f"{what}: cannot read the token file", MAX_TOKEN)
            text = data.decode("utf-8", "replace")
        token = text.strip()
        if not JWT.fullmatch(token):
            raise InputError(f"{what}: not an OIDC identity token (a JWT: three base64url "
                             "parts separated by dots)")
        try:
            claims = services.token_claims(token)
        except services.ServiceError:
            raise InputError(f"{what}: not an OIDC identity token (its claims are not a JSON "
                             "object)") from None
        exp = claims.get("exp")
        if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp <= time.time():
            raise InputError(f"{what}: the identity token expired "
                             f"{int(time.time() - exp)} s ago: give a fresh one")
        return token
