"""Sigstore signatures made in-process: cosign's legacy ``.sig`` attachments, byte for byte as
cosign 2.5 writes them, pushed through the run's one registry client.

What cosign does per signature, without its process: the key file is decrypted once per run
(cosign's format: a PEM block ``ENCRYPTED SIGSTORE PRIVATE KEY`` or ``ENCRYPTED COSIGN PRIVATE
KEY`` holding JSON ``{kdf: scrypt N r p salt, cipher: nacl/secretbox nonce, ciphertext}`` around
a PKCS#8 key; or an unencrypted PKCS#8 ``PRIVATE KEY``); the simple-signing payload is Go's
``json.Marshal`` of cosign's claim (``critical`` identity/image/type, ``optional`` the
annotations: keys sorted, ``<``, ``>``, ``&`` escaped as Go escapes them); it is signed as
cosign's signer for the key's type signs (ECDSA with SHA-256 on every curve, RSA PKCS#1 v1.5
with SHA-256, Ed25519); the payload becomes a layer of the ``sha256-<hex>.sig`` image, whose
config and manifest are re-made with the layer appended to those already there.

Appending is a read-modify-write of one tag, so two writers can lose a layer. In this run one
digest is only ever written by one thread (the signer groups items by digest); against writers
outside the run, the tag is re-read after the write, and if it no longer names what was
written (someone wrote in between) the layers found are kept and the write is made again on top
of them, until the tag holds this layer (the registry client's ``update_tag``, which the
referrers tag's index shares). The PUT also carries ``If-Match`` for registries that can refuse
a stale write (412). A registry without compare-and-swap leaves a window between
another writer's read and write that no client can close; cosign has the same one.

The claim, layers and manifest are signaction.formats.cosign's; this module reads key files
and writes the tag.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from signaction.errors import InputError
from signaction.formats import bundle, cosign, dsse, intoto
from signaction.formats.cosign import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    COSIGN_SIGNATURE_ANNOTATION,
    DSSE_LAYER,
    PREDICATE_TYPE_ANNOTATION,
    att_tag,
    sig_tag,
    signature_config,
    signature_layer,
    signature_manifest,
    simple_signing_payload,
)
from signaction.formats.keys import public_pem, sign_bytes
from signaction.formats.oci import EMPTY_JSON, OCI_MANIFEST, fallback_tag, referrer_descriptor
from signaction.reference import Reference
from signaction.registry import RegistryClient, RegistryError
from signaction.safeload import parse_json, read_regular_file

log = logging.getLogger(__name__)

MAX_KEY = 64 << 10  # bytes of a key file
ENCRYPTED_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
# go-securesystemslib's scrypt parameters (legacy, standard: cosign's, OWASP's); others refused
SCRYPT_PARAMS = ({"N": 32768, "r": 8, "p": 1}, {"N": 65536, "r": 8, "p": 1},
                 {"N": 131072, "r": 8, "p": 1})
# the ECDSA curves cosign (Go's crypto/ecdsa) verifies, by cryptography's name; RSA's floor
COSIGN_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
MIN_RSA_BITS = 2048


# -- keys ---------------------------------------------------------------------------------------

def pem_block(data: bytes) -> tuple[str, bytes] | None:
    """The first PEM block of ``data``: (its type, its decoded bytes); None if there is none."""
    text = data.decode("ascii", "replace")
    start = text.find("-----BEGIN ")
    if start < 0:
        return None
    head_end = text.find("-----", start + 11)
    if head_end < 0:
        return None
    kind = text[start + 11:head_end]
    end = text.find(f"-----END {kind}-----", head_end)
    if end < 0:
        return None
    body = "".join(line for line in text[head_end + 5:end].splitlines()
                   if line and ":" not in line)
    try:
        return kind, base64.b64decode(body, validate=True)
    except ValueError:
        return None


def native_key_kind(path: str) -> str | None:
    """What the native path can do with the file ``path``: "encrypted" (cosign's format),
    "plain" (unencrypted PKCS#8), or None (not a key it reads: the cosign binary may)."""
    data = read_regular_file(path, f"signing key {path!r}", MAX_KEY)
    block = pem_block(data)
    if block is None:
        return None
    if block[0] in ENCRYPTED_TYPES:
        return "encrypted"
    return "plain" if block[0] == "PRIVATE KEY" else None


def decrypt_cosign_key(blob: bytes, password: str, named: str) -> bytes:
    """The PKCS#8 DER inside cosign's encrypted key (the PEM block's bytes: JSON); InputError
    saying what is wrong, never quoting the key or the passphrase."""
    import nacl.exceptions
    import nacl.secret

    try:
        doc = parse_json(blob)
        kdf, cipher = doc["kdf"], doc["cipher"]
        params = {k: kdf["params"][k] for k in ("N", "r", "p")}
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        sealed = base64.b64decode(doc["ciphertext"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{named}: not a cosign key file (its encrypted block is not the "
                         "JSON cosign writes)") from None
    if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox":
        raise InputError(f"{named}: encrypted with something other than scrypt and "
                         "nacl/secretbox")
    if params not in SCRYPT_PARAMS or not salt or len(nonce) != 24:
        raise InputError(f"{named}: unsupported scrypt parameters or nonce")
    key = hashlib.scrypt(password.encode(), salt=salt, n=params["N"], r=params["r"],
                         p=params["p"], maxmem=2 * 128 * params["r"] * params["N"], dklen=32)
    try:
        return nacl.secret.SecretBox(key).decrypt(sealed, nonce)
    except nacl.exceptions.CryptoError:
        raise InputError(f"{named}: cannot use it: the passphrase does not decrypt it "
                         "(COSIGN_PASSWORD or cosign_signer.password_file)") from None


def load_private_key(path: str, password: str | None, named: str) -> Any:
    """The private key in the cosign key file ``path`` (decrypted with ``password``) or in an
    unencrypted PKCS#8 PEM file: an ECDSA, RSA or Ed25519 key of ``cryptography``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    block = pem_block(read_regular_file(path, named, MAX_KEY))
    if block is None:
        raise InputError(f"{named}: not a PEM key file")
    kind, blob = block
    if kind in ENCRYPTED_TYPES:  # no passphrase: the empty one, as cosign with COSIGN_PASSWORD=""
        try:
            blob = decrypt_cosign_key(blob, password or "", named)
        except InputError as e:
            unset = " (COSIGN_PASSWORD is not set)" if password is None else ""
            raise InputError(f"{e}{unset}") from None
    elif kind != "PRIVATE KEY":
        raise InputError(f"{named}: a PEM {kind[:40]!r} block, not a cosign or PKCS#8 key")
    try:
        key = serialization.load_der_private_key(blob, password=None)
    except (ValueError, TypeError):
        raise InputError(f"{named}: not a PKCS#8 private key once decrypted") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey |
                      ed25519.Ed25519PrivateKey):
        raise InputError(f"{named}: a {type(key).__name__}: cosign signs with ECDSA, RSA or "
                         "Ed25519 keys only")
    # What cosign (Go's crypto) can verify: a signature by another curve is attached fine and
    # then fails every `cosign verify` ("unsupported elliptic curve"), so it is never made.
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in COSIGN_CURVES:
        raise InputError(f"{named}: an ECDSA key on the curve {key.curve.name}, which cosign "
                         f"cannot verify: use {', '.join(COSIGN_CURVES.values())}, RSA of at "
                         f"least {MIN_RSA_BITS} bits or Ed25519")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise InputError(f"{named}: an RSA key of {key.key_size} bits: cosign needs at least "
                         f"{MIN_RSA_BITS}")
    return key


# -- pushing ------------------------------------------------------------------------------------

def existing_layers(raw: bytes, where: str) -> list[dict[str, Any]]:
    """The layers of the ``.sig`` manifest already there, as they are (kept when appending)."""
    try:
        return cosign.manifest_layers(parse_json(raw))
    except ValueError:
        raise RegistryError(f"{where}: the tag is not a JSON image manifest: not "
                            "appended to") from None


@dataclass(frozen=True)
class Attached:
    digest: str  # of the .sig manifest that holds the layer
    appended: bool  # False: an equal signature was there already (cosign's duplicate check)
    writes: int  # manifest writes it took (more than 1: another writer came in between)
    skipped: str | None = None  # ``already``'s reason: nothing was signed or written


def attach(registry: RegistryClient, location: Reference, digest: str, payload: bytes,
           layer: dict[str, Any], duplicate=None, already=None, tag: str = "") -> Attached:
    """Appends ``layer`` (its blob ``payload``) to ``digest``'s ``.sig`` image in ``location``'s
    repository, keeping every layer already there, also one another writer adds meanwhile
    (the registry client's ``update_tag``). ``duplicate(layer_found) -> bool``: a layer that
    makes this one needless (cosign does not append a signature of the same payload that
    verifies with the same key). ``already(the manifest found) -> reason | None``: skip-signed,
    from the same (first) read of the tag (a reason: nothing is written). ``tag``: another tag
    of the same kind than the ``.sig`` one (the ``.att`` tag of attestations)."""
    tag = tag or sig_tag(digest)
    where = f"{location.host}/{location.path}:{tag}"
    pushed_payload, first = False, True
    appended, skipped = True, None  # what the tag was found to hold, when nothing is written

    def change(found: tuple[bytes, str] | None) -> bytes | None:
        nonlocal pushed_payload, first, appended, skipped
        was_first, first = first, False
        if found and already is not None and was_first and (reason := already(found[0])):
            appended, skipped = False, reason
            return None
        layers = existing_layers(found[0], where) if found else []
        for old in layers:
            if cosign.same_layer(old, layer):  # ours: there already (another writer kept it)
                return None
            if duplicate is not None and old.get("digest") == layer["digest"] and \
                    duplicate(old):
                appended = False
                return None
        layers = [*layers, layer]
        config = signature_config(layers)
        if not pushed_payload:
            registry.push_blob(location, payload)
            pushed_payload = True
        registry.push_blob(location, config)
        return signature_manifest(config, layers)

    # a new .sig tag is written without a condition, as before (and as cosign writes it)
    now, writes = registry.update_tag(location, tag, change, OCI_MANIFEST,
                                      what="this signature", new_tag_condition=False)
    return Attached(now or "", appended, writes, skipped)


# -- one signature ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Attestation:
    """What a run attests for every image it signs: a predicate (JSON, the same for each image:
    the subject is the image) of ``predicate_type`` (a URI); ``name``: its file name in the
    output folder (cosign's name for the type, e.g. ``slsaprovenance1``)."""
    predicate_type: str
    name: str
    predicate: Any
    from_ci: bool = False  # --provenance's: built from the CI run, not read from a file


@dataclass(frozen=True)
class Attested:
    """One attestation made for one image: each DSSE envelope (JSON text) made, one a format,
    and facts for results.json (where it went, its Rekor entries)."""
    predicate_type: str
    name: str
    envelopes: tuple[bytes, ...]
    facts: dict[str, Any]



class Native:
    """Signs images in-process: ``keys`` (key -> private key, decrypted once), or keyless with
    ``keyless`` (a services.Keyless); each signature logged in ``rekor`` when given;
    attached in the registry when ``upload``, in each of ``formats`` ("legacy": the ``.sig``
    tag; "bundle": a Sigstore bundle as an OCI referrer). ``sign`` is called from many
    threads, never two at once for one digest."""

    def __init__(self, registry: RegistryClient, *, upload: bool,
                 annotations: dict[str, str], rekor: Any = None, keyless: Any = None,
                 formats: tuple[str, ...] = ("legacy",),
                 attestations: tuple[Attestation, ...] = ()):
        self.registry, self.upload, self.annotations = registry, upload, annotations
        self.rekor, self.keyless, self.formats = rekor, keyless, formats
        self.attestations = attestations
        self.keys: dict[str, Any] = {}
        self.races = 0  # manifest writes made again because another writer came in between

    def sign(self, image: Any, key: str | None, already=None) -> dict[str, Any]:
        """Signs ``image`` (a plan Image) with ``key`` (None: keyless) and attaches it; the
        facts for the signer's CosignSignature, or ``{"skipped": reason}`` when ``already``
        (see ``attach``; only without Rekor, legacy alone: the signature is made first, and
        dropped) finds it signed. RegistryError, services.ServiceError on failure."""
        facts: dict[str, Any] = {}
        # the attestations' Statements first: one that cannot be made fails the image before
        # anything of it is attached
        statements = [intoto.statement(image.known_digest, wanted.predicate_type,
                                       wanted.predicate,
                                       name=f"{image.source.host}/{image.source.path}")
                      for wanted in self.attestations]
        if key is None:
            cert = self.keyless.certificate()
            private, key_pem = cert.key, cert.pem
            facts.update(certificate=cert.pem, identity=cert.identity, issuer=cert.issuer)
        else:
            private, key_pem, cert = self.keys[key], public_pem(self.keys[key]), None
        if "legacy" in self.formats:
            legacy = self._legacy(image, private, key_pem, cert, already)
            if "skipped" in legacy:
                return legacy
            facts.update(legacy)
        if "bundle" in self.formats:
            facts.update(self._bundle(image, private, key_pem, cert))
        if self.attestations:
            facts["attestations"] = tuple(
                self._attest(image, private, key_pem, cert, wanted, statement)
                for wanted, statement in zip(self.attestations, statements, strict=True))
        return facts

    def _attest(self, image: Any, private: Any, key_pem: bytes, cert: Any,
                wanted: Attestation, statement: bytes) -> Attested:
        """One attestation of ``image`` (its ``statement``), in each format: legacy, cosign 2's
        ``.att`` layer (the DSSE envelope itself, logged as a ``dsse`` entry, appended to the
        ``.att`` tag as cosign attest does); bundle, a Sigstore bundle referrer as cosign 3
        attaches it."""
        envelopes: list[bytes] = []
        facts: dict[str, Any] = {}
        if "legacy" in self.formats:
            envelope = self._envelope(private, statement)
            # the layer's blob is the text Rekor hashes: cosign compares its envelopeHash
            text = envelope.text()
            annotations = {COSIGN_SIGNATURE_ANNOTATION: "",
                           PREDICATE_TYPE_ANNOTATION: wanted.predicate_type}
            if cert is not None:
                annotations.update({CERTIFICATE_ANNOTATION: cert.pem.decode(),
                                    CHAIN_ANNOTATION: cert.chain.decode()})
            if self.rekor is not None:
                entry = self.rekor.log_dsse(envelope, key_pem)
                annotations[BUNDLE_ANNOTATION] = entry.bundle
                facts.update(rekor_log_index=entry.index, rekor_entry_uuid=entry.uuid)
            if self.upload:
                layer = {"mediaType": DSSE_LAYER, "size": len(text),
                         "digest": "sha256:" + hashlib.sha256(text).hexdigest(),
                         "annotations": cosign.sorted_map(annotations)}
                done = attach(self.registry, image.source, image.known_digest, text, layer,
                              tag=att_tag(image.known_digest))
                self.races += max(0, done.writes - 1)
                facts["tag"] = att_tag(image.known_digest)
            envelopes.append(text)
        if "bundle" in self.formats:
            envelope = self._envelope(private, statement)
            made = self._bundle(image, private, key_pem, cert, envelope, wanted.predicate_type)
            envelopes.append(envelope.text())
            facts.update({k: v for k, v in made.items() if k != "bundle"})  # as a signature's
        return Attested(wanted.predicate_type, wanted.name, tuple(envelopes), facts)

    @staticmethod
    def _envelope(private: Any, statement: bytes) -> dsse.Envelope:
        return dsse.Envelope(dsse.IN_TOTO, statement,
                             (sign_bytes(private, dsse.pae(dsse.IN_TOTO, statement)),))

    def _legacy(self, image: Any, private: Any, key_pem: bytes, cert: Any,
                already) -> dict[str, Any]:
        """cosign 2's ``.sig`` layer: the simple-signing payload signed, logged as a
        ``hashedrekord``, appended to the tag."""
        payload = simple_signing_payload(str(image.reference), image.known_digest,
                                         {"tag": image.reference.tag or "", **self.annotations})
        facts: dict[str, Any] = {}
        annotations: dict[str, str] = {}
        if cert is not None:
            annotations.update({CERTIFICATE_ANNOTATION: cert.pem.decode(),
                                CHAIN_ANNOTATION: cert.chain.decode()})
        raw = sign_bytes(private, payload)
        signature = base64.b64encode(raw)
        annotations[COSIGN_SIGNATURE_ANNOTATION] = signature.decode()
        if self.rekor is not None:
            entry = self.rekor.log(payload, raw, key_pem)
            annotations[BUNDLE_ANNOTATION] = entry.bundle
            facts.update(log_index=entry.index, log_uuid=entry.uuid)
        if self.upload:
            layer = signature_layer(payload, annotations)
            same = None if cert is not None else functools.partial(
                cosign.signed_by, private.public_key(), payload)
            done = attach(self.registry, image.source, image.known_digest, payload, layer, same,
                          already)
            if done.skipped:
                return {"skipped": done.skipped}
            self.races += max(0, done.writes - 1)
        return {"payload": payload, "signature": signature, **facts}

    def _bundle(self, image: Any, private: Any, key_pem: bytes, cert: Any,
                envelope: dsse.Envelope | None = None,
                predicate_type: str = intoto.COSIGN_SIGN) -> dict[str, Any]:
        """cosign 3's bundle: a DSSE envelope over the Statement (the signature's, or an
        attestation's ``envelope`` of ``predicate_type``), logged as a ``dsse`` entry,
        pushed as a referrer of the image's manifest (the fallback tag kept where the
        registry has no referrers API)."""
        if envelope is None:
            envelope = self._envelope(private, bundle.statement(
                image.known_digest, {"tag": image.reference.tag or "", **self.annotations},
                name=f"{image.source.host}/{image.source.path}"))
        facts: dict[str, Any] = {}
        entries = []
        if self.rekor is not None:
            logged = self.rekor.log_dsse(envelope, key_pem)
            entries.append(logged.entry)
            facts.update(bundle_log_index=logged.index, bundle_log_uuid=logged.uuid)
        made = bundle.bundle(envelope, entries,
                             certificate_der=cert.der if cert is not None else None,
                             hint=None if cert is not None else bundle.key_hint(
                                 private.public_key()))
        facts["bundle"] = made
        if self.upload:
            facts["bundle_referrer"], facts["bundle_stored"] = self._push_bundle(
                image, made, predicate_type)
        return facts

    def _push_bundle(self, image: Any, made: bytes,
                     predicate_type: str = intoto.COSIGN_SIGN) -> tuple[str, str]:
        """The referrer manifest of ``made`` pushed by digest; (its digest, where the registry
        lists it: "referrers API" or the fallback tag)."""
        location, digest = image.source, image.known_digest
        subject = self.registry.manifest(location, digest)
        self.registry.push_blob(location, EMPTY_JSON, shared=True)  # every referrer's config
        self.registry.push_blob(location, made)
        created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        manifest = bundle.referrer_manifest(made, {
            "mediaType": subject.media_type or OCI_MANIFEST, "size": len(subject.raw),
            "digest": digest}, created, predicate_type)
        try:
            pushed, tracked = self.registry.put_referrer(location, manifest, digest)
        except RegistryError as e:
            # docker-registry refuses a manifest (400) whose blob another writer is committing
            # at that moment (two shards pushing the shared empty config): the blobs again, once
            log.info("%s: %s; pushing its blobs again", location, e)
            self.registry.push_blob(location, EMPTY_JSON)
            self.registry.push_blob(location, made)
            pushed, tracked = self.registry.put_referrer(location, manifest, digest)
        if tracked:
            return pushed, "referrers API"
        writes = self.registry.add_fallback_referrer(location, digest,
                                                     referrer_descriptor(manifest))
        self.races += max(0, writes - 1)
        return pushed, f"tag {fallback_tag(digest)}"
