"""The cosign signer (CosignSigner): sigstore signatures attached in the registry, made
in-process for key files and keyless (native.py, services.py), through the cosign binary for
KMS and other key URIs (binary.py, CosignBinary: its docstring says how cosign is run).

What a signature says is given explicitly rather than left to defaults:
- the identity: the reference AND its tag (signing by digest alone makes cosign write a
  repository-only identity, which podman's default policy rejects);
- the format (``signature_format``): ``legacy`` (the default), the ``sha256-<hex>.sig`` tag that
  podman, skopeo, CRI-O and bootc read (kept on cosign 3 too); ``bundle``, a Sigstore bundle v0.3
  as an OCI referrer, as cosign 3 signs by default (policy-controller with ``signatureFormat:
  bundle``, cosign 3); ``both``, each signature in both forms (in-process only);
- annotations: ``tag=<tag>`` as pubtools-sign adds, plus the config's ``annotations``.

Secrets never reach argv or a log; one digest is never written by two threads at once (the
``.sig`` tag and the referrers fallback tag are read-modify-write). What was signed is also
written to the output folder; with ``upload: false`` only there (legacy: with a script that
attaches it later). Keyless: one Fulcio certificate per ephemeral key for the CI's OIDC
identity, each signature logged in Rekor (``hashedrekord`` for legacy, ``dsse`` for bundles).
Verify mode and skip-signed read both formats (verify.py)."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import Any

from signaction.artifacts import Artifacts
from signaction.errors import InputError
from signaction.formats import fulcio
from signaction.formats.cosign import CosignTrust
from signaction.formats.keys import public_pem
from signaction.plan import Plan, SigningKey, WorkItem
from signaction.reference import parse_reference
from signaction.registry import RegistryError
from signaction.safeload import read_regular_file
from signaction.signing import VERIFIED, FollowUp

from ..base import Options, Outcome, Report
from ..tools import Running, run_pool
from . import attest, services
from . import native as native_path
from . import trust as cosign_trust
from .binary import CosignBinary
from .common import (
    AMBIENT_ENV,
    ATTACH_SCRIPT,
    ENGINES,
    FORMATS,
    KEY_URI,
    KEYLESS,
    MAX_PEM,
    NATIVE,
    ROOT_FILES,
    URL_KEYS,
    _by_digest,
    formats_of,
    read_root_file,
    token_source,
)
from .format import (
    CosignFormat,
    CosignSignature,
    write_attach_script,
)
from .verify import bundle_verdict, cosign_problem, legacy_verdict

log = logging.getLogger("signers.cosign")


class CosignSigner(CosignBinary):
    name = "cosign"
    section = "cosign_signer"
    summary = "sigstore signatures, in-process or by the cosign binary, in the registry"
    expands_index = True
    attests = True

    @classmethod
    def after_merge(cls, artifacts: Artifacts, rows: Iterable[dict[str, Any]],
                    shard_files: set[str]) -> list[FollowUp]:
        """The shards' attach script (signed with upload false), for every merged signature."""
        if ATTACH_SCRIPT not in shard_files:
            return []
        signed = [(parse_reference(r.get("location") or r["reference"])[0], r["digest"],
                   r["payload_path"], r["signature_path"]) for r in rows
                  if r.get("payload_path") and r.get("signature_path")]
        return [(ATTACH_SCRIPT, lambda: write_attach_script(artifacts, signed))]

    def __init__(self, config, options: Options):
        super().__init__(config, options)
        inputs, environ = self.inputs, self.environ
        c = self.config
        self.cosign = c.get("cosign_bin") or "cosign"
        self.timeout = str(c.get("timeout") or "3m0s")
        retries = c.get("retries")
        self.attempts = max(1, int(retries if retries is not None else 5))
        self.threads = max(1, int(c.get("num_threads") or 10))
        self.upload = inputs.upload if inputs.upload is not None else bool(c.get("upload", True))
        self.tlog = bool(c.get("upload_tlog", True))
        self.signature_format = c.get("signature_format") or "legacy"
        if self.signature_format not in FORMATS:
            raise InputError(f"config: cosign_signer.signature_format: "
                             f"{self.signature_format!r} is not "
                             f"one of {', '.join(FORMATS)}")
        if not self.upload and self.signature_format != "legacy":
            log.warning("signature_format %s with upload false: the bundles are written to "
                        "the output folder only (cosign-attach.sh attaches the legacy form)",
                        self.signature_format)
        for name in URL_KEYS:
            if c.get(name) and not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", str(c[name])):
                raise InputError(f"config: cosign_signer.{name}: not an http:// or https:// URL")
        self.roots = {name: read_root_file(name, c[name]) for name in ROOT_FILES if c.get(name)}
        self.check_keys: dict[str, bytes] = {}  # a trusted root's keys, all of them
        self.from_trusted_root = False
        self.trust = self._trust_files()
        self.trust_origin = "files"
        self.trust_pending = False  # --dry-run: the TUF repository that applies not read
        self._trust_fetched = False  # the TUF repository, when one applies, read (preflight)
        self.cosign_format = CosignFormat(attach_later=not self.upload, tlog=self.tlog,
                                          roots=self._root_copies(),
                                          formats=formats_of(self.signature_format))
        self.format = self.cosign_format
        if self.trust is not None:
            self._apply_trust(self.trust)
        self.annotations = {str(k): str(v) for k, v in (c.get("annotations") or {}).items()}
        self.attestations = attest.requested(inputs, environ)  # predicate files read now
        attest.required(inputs)  # verify mode's types and pins, checked before anything
        self.cosign_format.predicate_types = tuple(a.predicate_type for a in self.attestations)
        if self.attestations and not self.upload:
            log.warning("upload false: the attestations are written to the output folder "
                        "(attestations/) only; cosign-attach.sh attaches the signatures")
        self.password = self.read_secret_file("password_file") or \
            environ.get("COSIGN_PASSWORD")
        self.token_source = token_source(c.get("identity_token"))
        self.deadline = inputs.deadline
        self.started = time.monotonic()
        self.flags: set[str] = set()  # the flags this cosign's `sign` knows
        self.public: dict[str, bytes] = {}  # key -> PEM public key
        self.engine = str(c.get("engine") or "auto")
        if self.engine not in ENGINES:
            raise InputError(f"config: cosign_signer.engine: {self.engine!r} is not one of "
                             f"{', '.join(ENGINES)}")
        self.paths: dict[str, str] = {}  # key -> NATIVE, or "cosign binary: <why>"
        self.native: native_path.Native | None = None

    def path_of(self, key: str) -> str:
        return self.paths.get(key, "")

    def _choose_path(self, key: SigningKey) -> str:
        """NATIVE where the in-process path signs as cosign would, else "cosign binary: why";
        ``engine: native`` with a key only the binary can use is an InputError."""
        why = None
        if self.engine == "cosign":
            why = "cosign_signer.engine is cosign"
        elif key.key == KEYLESS:
            pass
        elif KEY_URI.match(key.key):
            why = "a KMS or key URI"
        elif not os.path.lexists(key.key):
            raise InputError(f"signing key {key.key!r}: no such file (a cosign key file, or a "
                             "KMS URI such as awskms://, gcpkms://, azurekms://, hashivault://, "
                             "k8s://, env://)")
        elif native_path.native_key_kind(key.key) is None:
            why = "not a cosign or PKCS#8 key file"
        if why is not None and self.engine == "native":
            raise InputError(f"config: cosign_signer.engine: native, but signing key "
                             f"{key.key!r} needs the cosign binary ({why})")
        if why is not None and self.attestations:
            raise InputError(f"attestations are made in-process only, but signing key "
                             f"{key.key!r} needs the cosign binary ({why})")
        if why is not None and self.signature_format == "both":
            raise InputError(f"config: cosign_signer.signature_format: both is signed "
                             f"in-process only, but signing key {key.key!r} needs the cosign "
                             f"binary ({why}): sign it with legacy or bundle")
        return NATIVE if why is None else f"cosign binary: {why}"

    def _prepare_native(self, keys: list[SigningKey]) -> None:
        """The in-process signer: each key file decrypted once; Rekor when logging; Fulcio
        for keyless."""
        # the run's deadline for every Rekor and Fulcio request, rate-limited or not
        deadline = self.started + self.deadline if self.deadline else math.inf
        rekor = services.Rekor(self.registry, self.config.get("rekor_url"),
                               self._check_key("rekor_public_key_file"),
                               self._rate_limit("rekor", services.PUBLIC_REKOR),
                               deadline=deadline) if self.tlog else None
        keyless = None
        if any(k.key == KEYLESS for k in keys):
            ct = self._check_key("ctlog_public_key_file")
            keyless = services.Keyless(self.registry, self.config.get("fulcio_url"),
                                       self._native_token, self._fulcio_roots(),
                                       (ct,) if ct else (),
                                       self._rate_limit("fulcio", services.PUBLIC_FULCIO),
                                       deadline=deadline)
        self.native = native_path.Native(self.registry, upload=self.upload,
                                         annotations=self.annotations, rekor=rekor,
                                         keyless=keyless,
                                         formats=formats_of(self.signature_format),
                                         attestations=self.attestations)
        for key in keys:
            if key.key == KEYLESS:
                continue
            named = f"signing key {key.key!r}" + (f" (alias {key.given!r})"
                                                   if key.given != key.key else "")
            private = native_path.load_private_key(key.key, self.password, named)
            self.native.keys[key.key] = private
            self.public[key.key] = public_pem(private)

    def _rate_limit(self, service: str, public: str) -> services.RateLimit | None:
        """``<service>_requests_per_minute`` (0: no limit; unset: for the public instance
        services.DEFAULT_REQUESTS_PER_MINUTE, for another none: its operator's limits are not
        known here) as the bucket every in-process request to it waits for, within the run's
        deadline."""
        value = self.config.get(f"{service}_requests_per_minute")
        url = str(self.config.get(f"{service}_url") or public).rstrip("/")
        per_minute = float(value) if value is not None else \
            services.DEFAULT_REQUESTS_PER_MINUTE if url == public.rstrip("/") else 0
        if per_minute <= 0:
            return None
        return services.RateLimit(per_minute, f"{service.capitalize()} {url}",
                                  deadline=self.started + self.deadline if self.deadline
                                  else float("inf"))

    def _native_token(self) -> str:
        """Keyless in-process: the identity token now (the configured one, or a fresh one from
        GitHub's token service)."""
        if self.token_source is not None:
            return self._read_token()
        return services.github_token(self.registry,
                                              self.environ[AMBIENT_ENV[0]],
                                              self.environ[AMBIENT_ENV[1]])

    def _trust_files(self) -> cosign_trust.Material | None:
        """trusted_root.json and signing_config.json, from the inputs or the config; one
        source of trust roots only."""
        c, inputs = self.config, self.inputs
        root = inputs.trusted_root or c.get("trusted_root_file")
        signing = inputs.signing_config or c.get("signing_config_file")
        root_what = "input 'trusted-root'" if inputs.trusted_root else \
            "config: cosign_signer.trusted_root_file"
        material = cosign_trust.read_files(
            root, signing, root_what, "input 'signing-config'" if inputs.signing_config
            else "config: cosign_signer.signing_config_file")
        given = [name for name in ROOT_FILES if c.get(name)]
        if root and given:
            raise InputError(f"{root_what}: not with cosign_signer.{given[0]} (the trusted root "
                             "holds the Fulcio, CT log and Rekor keys: give one or the other)")
        if c.get("tuf_url") and (root or given):
            raise InputError("config: cosign_signer.tuf_url: not with "
                             f"{'a trusted root' if root else 'cosign_signer.' + given[0]} "
                             "(trust material from a TUF repository, or from files: one)")
        if c.get("tuf_root_file") and not c.get("tuf_url"):
            raise InputError("config: cosign_signer.tuf_root_file: needs tuf_url (the TUF "
                             "repository it is the initial root of)")
        return material

    def _apply_trust(self, material: cosign_trust.Material) -> None:
        """The signing config's URLs where the config names none; the trusted root's keys as
        the trust roots (cosign gets them as files, verification/ gets copies)."""
        if material.services is not None:
            urls = {"fulcio_url": material.services.fulcio_url,
                    "rekor_url": material.services.rekor_url,
                    "oidc_issuer": material.services.oidc_url}
            self.config = {**self.config, **{k: v for k, v in urls.items()
                                             if v and not self.config.get(k)}}
        root = material.root
        if root is None:
            return
        # For cosign and verification/ (one key a file: cosign reads a file's first key): the
        # keys valid now, Rekor's of the log in use. No path: written for the cosign binary
        # into its private folder (binary._env).
        rekor_url = self.config.get("rekor_url") or services.PUBLIC_REKOR
        current = {"fulcio_root_file": root.fulcio_pem,
                   "ctlog_public_key_file": root.current_ctlog(),
                   "rekor_public_key_file": root.current_rekor(rekor_url)}
        self.roots = {name: ("", data) for name, data in current.items() if data}
        self.cosign_format.roots = {n: d for n, (_, d) in self.roots.items()}
        self.cosign_format.trusted_root = material.root_bytes
        # The in-process checks: every key, the one an entry or SCT names is picked by its ID.
        self.check_keys = {"rekor_public_key_file": root.rekor_pem(),
                           "ctlog_public_key_file": root.ctlog_pem()}
        self.from_trusted_root = True

    def _resolve_trust(self, plan: Plan) -> None:
        """The run's trust material, before signing or verifying: a TUF repository's where one
        applies, then checked complete for what the plan needs."""
        self._fetch_trust(plan)
        self._complete_trust(any(k.key == KEYLESS for k in plan.keys))

    def _fetch_trust(self, plan: Plan) -> None:
        """A TUF repository's trust material: the configured tuf_url's; the public instance's
        when the run needs trust material (keyless, or the transparency log) and names none
        (no trust files, no SIGSTORE_* roots, no service URLs). Read once, before signing or
        verifying; --dry-run only says where it would come from."""
        if self._trust_fetched:
            return
        self._trust_fetched = True
        c = self.config
        url = c.get("tuf_url")
        if not url:
            if self.trust is not None or self.cosign_format.roots or \
                    any(c.get(k) for k in URL_KEYS):
                return
            if not self.tlog and not any(k.key == KEYLESS for k in plan.keys):
                return
            url = cosign_trust.PUBLIC_TUF
        elif not re.fullmatch(r"https?://[^\s/?#@]+[^\s?#@]*", str(url)):
            raise InputError("config: cosign_signer.tuf_url: not an http:// or https:// URL "
                             "without credentials (a TUF repository is public)")
        url = str(url).rstrip("/")
        initial = None
        if c.get("tuf_root_file"):
            initial = cosign_trust.read_file(str(c["tuf_root_file"]),
                                             "config: cosign_signer.tuf_root_file",
                                             cosign_trust.MAX_METADATA)
        elif url not in cosign_trust.EMBEDDED:
            raise InputError(f"config: cosign_signer.tuf_url: {url}: no initial root pinned for "
                             "it; set cosign_signer.tuf_root_file (its root.json, obtained out "
                             "of band)")
        if self.inputs.dry_run:
            log.info("Sigstore trust material would come from the TUF repository %s", url)
            self.trust_pending = True
            return
        material = cosign_trust.fetch(self.registry, url, initial, cosign_trust.cache_dir(
            c.get("tuf_cache_dir"), self.environ), configured=bool(c.get("tuf_url")))
        self.trust_origin = material.origin
        self._apply_trust(material)

    def _check_key(self, name: str) -> bytes | None:
        """The keys the in-process checks use for ``name`` (a ROOT_FILES key): every key of a
        trusted root, else the configured file's."""
        return self.check_keys.get(name) or self.cosign_format.roots.get(name)

    def _complete_trust(self, keyless: bool) -> None:
        """A trusted root must hold what the run checks with: Rekor's key with the log, and
        Fulcio's chain and a CT log's key for keyless (a part missing would leave a check
        undone, not fail it)."""
        if not self.from_trusted_root:
            return
        need = (["rekor_public_key_file"] if self.tlog or keyless else []) + (
            ["fulcio_root_file", "ctlog_public_key_file"] if keyless else [])
        what = {"rekor_public_key_file": "no Rekor log key",
                "fulcio_root_file": "no certificate authority",
                "ctlog_public_key_file": "no CT log key"}
        for name in need:
            if not self._check_key(name):
                raise InputError(f"the trusted root ({self.trust_origin}): {what[name]}, "
                                 "which this run checks with")

    def _root_copies(self) -> dict[str, bytes]:
        """The trust roots for verification/: the configured files, else those cosign reads
        from the environment (SIGSTORE_*) when they can be read; none: the public Sigstore's."""
        copies = {}
        for name, (variable, _) in ROOT_FILES.items():
            if name in self.roots:
                copies[name] = self.roots[name][1]
            elif self.environ.get(variable):
                try:
                    copies[name] = read_root_file(name, self.environ[variable])[1]
                except InputError:
                    log.warning("%s: not a PEM file: not copied into verification/", variable)
        return copies

    def secrets(self) -> list[str]:
        found = [self.password] if self.password else []
        found += [self.environ[n] for n in AMBIENT_ENV[1:] if self.environ.get(n)]
        if self.token_source is not None:
            try:  # the token as it is now (a rotating one: cosign's output is scrubbed too)
                found.append(self._read_token())
            except InputError:
                pass  # said in preflight, when keyless is asked for
        return found

    def notes(self) -> list[str]:
        if not self.attestations:
            return []
        kinds = ", ".join(f"{a.name} ({a.predicate_type})" for a in self.attestations)
        return [f"each signed image also gets attestations: {kinds}, in the "
                f"{' and '.join(formats_of(self.signature_format))} form"]

    def preflight(self, plan: Plan) -> None:
        self._resolve_trust(plan)
        self.paths = {key.key: self._choose_path(key) for key in plan.keys}
        native = [key for key in plan.keys if self.paths[key.key] == NATIVE]
        if any(key.key == KEYLESS for key in plan.keys):
            self._check_keyless()
            if any(a.from_ci for a in self.attestations):
                self.attestations = attest.from_token(
                    self.attestations, self.environ,
                    services.token_claims(self._native_token()))
        if native:
            self._prepare_native(native)
        binary = [key for key in plan.keys if self.paths[key.key] != NATIVE]
        if binary:
            self._preflight_binary(binary)

    def _check_keyless(self) -> None:
        """Keyless can be done: the transparency log, attached signatures, a token source."""
        self.cosign_format.keyless = True
        if not self.tlog:
            raise InputError("config: cosign_signer.upload_tlog: false, but the signing key "
                             "'keyless' needs the transparency log (a Fulcio certificate is "
                             "valid for minutes: Rekor's entry proves when it signed)")
        if not self.upload:
            raise InputError("signing key 'keyless' needs upload true (the upload input or "
                             "config key): cosign writes no Rekor bundle that a later "
                             "`cosign attach` could add")
        if self.token_source is not None:
            self._read_token()
            return
        missing = [n for n in AMBIENT_ENV if not self.environ.get(n)]
        if missing:
            raise InputError(f"signing key 'keyless': no OIDC identity token ({missing[0]} is "
                             "not set): the GitHub workflow needs `permissions: id-token: "
                             "write`; elsewhere set cosign_signer.identity_token (a token "
                             "file, or env://VAR)")

    def sign(self, items: Sequence[WorkItem], report: Report) -> None:
        native = [i for i in items if self.paths.get(i.key.key) == NATIVE]
        binary = [i for i in items if self.paths.get(i.key.key) != NATIVE]
        # one after the other: a digest signed by both never has two writers at once
        if native:
            self._sign_native(native, report)
        if binary:
            self._sign_binary(binary, report)

    def _sign_native(self, items: Sequence[WorkItem], report: Report) -> None:
        running = Running()
        deadline_at = self.started + self.deadline if self.deadline else float("inf")

        def one_digest(group: list[WorkItem]) -> None:
            for item in group:
                if running.ended:
                    return
                if time.monotonic() > deadline_at:
                    report(Outcome(item, error="the deadline was reached"))
                    continue
                report(self._native_one(item))

        run_pool(one_digest, _by_digest(items), workers=self.threads, name="sigstore",
                 running=running, deadline_at=deadline_at)
        if self.native is not None and self.native.races:
            self.stats["sig_tag_rewrites"] = self.native.races

    def _native_one(self, item: WorkItem) -> Outcome:
        assert self.native is not None
        keyless = item.key.key == KEYLESS
        already = self._already(item) if self._checked_when_attaching(item) else None
        try:
            facts = self.native.sign(item.container, None if keyless else item.key.key, already)
        except (RegistryError, services.ServiceError, InputError) as e:
            return Outcome(item, error=f"in-process signing: {e}")
        if "skipped" in facts:
            return Outcome(item, skipped=facts["skipped"])
        return Outcome(item, signature=CosignSignature(**facts),
                       detail=json.dumps("signed in-process (no cosign process)"))

    def slots(self, plan: Plan) -> int:
        return len(plan)  # cosign's output for each (image, key), as pubtools-sign keeps it

    @contextmanager
    def signed_check(self, plan: Plan):
        # an image signed before still gets this run's attestations (and a signature beside)
        yield None if self.attestations else self._existing

    def _existing(self, item: WorkItem) -> str | None:
        """Why ``item`` needs no new signature (a signature in the registry by this key, for this
        digest and identity, that verifies), or None. A registry problem means None: signing
        again is safe, skipping wrongly is not. Keyless is never skipped: the identity a new
        certificate would name is not known before signing."""
        image = item.container
        if item.key.key == KEYLESS or self._checked_when_attaching(item):
            return None
        if self.signature_format != "legacy":  # every format written must be there already
            trust = self._own_trust(item)
            for f in formats_of(self.signature_format):  # the first one missing decides
                if (legacy_verdict if f == "legacy" else bundle_verdict)(
                        self.registry, item, trust).status != VERIFIED:
                    return None
            return (f"already signed in the registry by this key for {image.reference} "
                    f"({self.signature_format})")
        try:
            found = self.registry.cosign_signatures(image.source, image.known_digest)
        except RegistryError as e:
            log.warning("could not check existing signatures of %s@%s: %s", image.source,
                        image.digest, e)
            return None
        return self._signed_in(item, found)

    def _own_trust(self, item: WorkItem) -> CosignTrust:
        """What this run's own key's signatures are checked with (skip-signed)."""
        return CosignTrust(public_pem=self.public[item.key.key],
                           rekor_pem=self._check_key("rekor_public_key_file")
                           if self.tlog else None)

    def _signed_in(self, item: WorkItem, found: list[dict]) -> str | None:
        """The first signature in ``found`` that verify mode would accept for ``item`` (with
        the transparency log, its Rekor entry checked by Rekor's key when the run knows it)."""
        trust = self._own_trust(item)
        for sig in found:
            if cosign_problem(sig, item, trust)[0] is None:
                return f"already signed in the registry by this key for {item.container.reference}"
        return None

    def _checked_when_attaching(self, item: WorkItem) -> bool:
        """In-process, attached, not logged: skip-signed is decided from the attach's own read
        of the ``.sig`` tag (one registry request less per image), not beforehand."""
        return self.paths.get(item.key.key) == NATIVE and self.upload and not self.tlog and \
            self.inputs.skip_signed and self.signature_format == "legacy" and \
            not self.attestations

    def _already(self, item: WorkItem):
        """skip-signed for ``_checked_when_attaching``: the ``.sig`` manifest found -> why
        ``item`` needs no new signature, or None (a registry problem too: signing again is
        safe, skipping wrongly is not)."""
        image = item.container

        def check(manifest: bytes) -> str | None:
            try:
                found = self.registry.signatures_in(image.source, manifest,
                                                    "reading cosign signatures")
            except RegistryError as e:
                log.warning("could not check existing signatures of %s@%s: %s", image.source,
                            image.digest, e)
                return None
            return self._signed_in(item, found)
        return check

    def public_keys(self, plan: Plan) -> bytes | None:
        return b"".join(self.public.get(k.key, b"") for k in plan.keys
                        if k.key != KEYLESS) or None

    def trusted_keys(self, plan: Plan) -> dict[str, Any]:
        """Verify mode: a public key file as it is (``cosign.pub``); a private key or a KMS URI
        through ``cosign public-key`` (its public half); keyless, the Fulcio root and the
        expected identity and issuer (--certificate-identity, --certificate-oidc-issuer).
        Rekor's key, when configured, makes each signature's SET required."""
        public: dict[str, bytes] = {}
        for key in plan.keys:
            if key.key == KEYLESS:
                self._keyless_identity()
                continue
            data = b""  # a KMS URI, or no such file: cosign public-key says what it is
            if not KEY_URI.match(key.key) and os.path.lexists(key.key):
                # (a FIFO or a device is refused, not opened and waited on)
                data = read_regular_file(key.key, f"signing key {key.key!r}", MAX_PEM)
            if b"-----BEGIN PUBLIC KEY-----" not in data:
                if shutil.which(self.cosign) is None:
                    raise InputError(f"signing key {key.key!r}: not a public key file, and "
                                     f"{self.cosign!r} is not there to read its public half")
                self.cosign = shutil.which(self.cosign) or self.cosign
                data = self._public_key(key, self._env(key=key))
            public[key.key] = data
        self._resolve_trust(plan)  # the keys given are usable: now the trust material
        rekor = self._check_key("rekor_public_key_file")
        return {key.key: self._keyless_trust(rekor) if key.key == KEYLESS else
                CosignTrust(public_pem=public[key.key], rekor_pem=rekor) for key in plan.keys}

    def _keyless_identity(self) -> tuple[str, str]:
        identity = self.inputs.certificate_identity
        issuer = self.inputs.certificate_oidc_issuer
        if not identity or not issuer:
            raise InputError("--mode verify with the key 'keyless' needs --certificate-identity "
                             "and --certificate-oidc-issuer: whose certificates to accept")
        return identity, issuer

    def _keyless_trust(self, rekor: bytes | None) -> CosignTrust:
        identity, issuer = self._keyless_identity()
        roots = self.cosign_format.roots
        if self.trust_pending:  # --dry-run: the TUF repository is not read, nothing checked
            return CosignTrust(identity=identity, issuer=issuer)
        if "fulcio_root_file" not in roots or rekor is None or \
                "ctlog_public_key_file" not in roots:
            raise InputError("--mode verify with the key 'keyless' needs Sigstore's trust "
                             "roots: a trusted root (--trusted-root, cosign_signer."
                             "trusted_root_file, or TUF: tuf_url), or cosign_signer."
                             "fulcio_root_file, ctlog_public_key_file and rekor_public_key_file "
                             "(or SIGSTORE_ROOT_FILE, SIGSTORE_CT_LOG_PUBLIC_KEY_FILE and "
                             "SIGSTORE_REKOR_PUBLIC_KEY): the roots to check certificates, "
                             "their SCTs and Rekor's timestamps against, as cosign verify does")
        return CosignTrust(fulcio=self._fulcio_roots(), identity=identity, issuer=issuer,
                           rekor_pem=rekor, ctlog_pem=self._check_key("ctlog_public_key_file"))

    def _fulcio_roots(self) -> fulcio.FulcioRoots | None:
        """The Fulcio trust anchors (the self-signed certificates of fulcio_root_file or
        SIGSTORE_ROOT_FILE) and the intermediates beside them; None when none is configured."""
        pem = self.cosign_format.roots.get("fulcio_root_file")
        if pem is None:
            return None
        try:
            return fulcio.FulcioRoots.from_pem(pem)
        except ValueError as e:
            where = f"the trusted root ({self.trust_origin})" if self.from_trusted_root else \
                "config: cosign_signer.fulcio_root_file (or SIGSTORE_ROOT_FILE)"
            raise InputError(f"{where}: not usable as Fulcio roots: {e}") from None
