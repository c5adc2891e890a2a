"""The plan: every image and key checked before anything is signed, then (image, key) work items.

Images come from three places, in this order: --reference/--digest pairs, --image lines, and an
images file. Each keeps where it came from, so an error names the flag occurrence, the input line or
the file entry. Exact duplicates (same reference and digest) are collapsed; the same reference with
different digests is kept (a multi-arch index and its platform manifests share one identity).

An image has an identity (``reference``: the name written into the signature, with its tag, and
where its signature is published) and, when it differs, a ``location`` (where the image is now, e.g.
a staging repository). An image given without a digest has ``digest`` None until
signaction.resolve looks its tag up in the registry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import FrozenInstanceError, dataclass

from .errors import InputError
from .inputs import Inputs
from .reference import Reference, check_digest, parse_reference
from .safeload import NotJSON, decode_text, key_path, load_json, load_yaml, read_regular_file


class Image:
    """One image to sign, immutable (as a frozen dataclass of these fields, compared and
    hashed by them):

    - ``reference``: the identity signed (a Reference);
    - ``digest``: ``sha256:<hex>``, or None: to be resolved from the location's tag;
    - ``origin``: where it was given, e.g. "input 'images' line 3";
    - ``location``: where the image is, when not at its identity (else None);
    - ``platform``: "linux/arm64": a manifest found in a multi-arch index (else None).

    Kept compact, as a plan holds 100,000 of them and more: a sha256 digest as its 32 bytes
    (65 bytes instead of a 120-byte string), and the origin of an images file's entry as the
    file's label (one string for every entry) and the entry's number (``entry``), the strings
    made when read: about 170 bytes an image instead of 295 (tracemalloc, 100,000 images)."""

    __slots__ = ("reference", "_digest", "_origin", "_entry", "location", "platform")
    reference: Reference
    _digest: bytes | str | None  # a sha256 digest's bytes, another digest as given, None
    _origin: str  # the origin, or with ``_entry`` >= 0 the images file's label
    _entry: int  # the images file entry's number (1, 2...), or -1
    location: Reference | None
    platform: str | None

    def __init__(self, reference: Reference, digest: str | None, origin: str,
                 location: Reference | None = None, platform: str | None = None, *,
                 entry: int = -1):
        raw: bytes | str | None = digest
        if digest is not None and len(digest) == 71 and digest.startswith("sha256:"):
            hexdigits = digest[7:]
            try:
                raw = bytes.fromhex(hexdigits)
            except ValueError:
                raw = digest
            # as given unless it reads back the same: 32 bytes, lower-case hex
            if len(raw) != 32 or not (hexdigits.islower() or hexdigits.isdigit()):
                raw = digest
        _set(self, "reference", reference)
        _set(self, "_digest", raw)
        _set(self, "_origin", origin)
        _set(self, "_entry", entry)
        _set(self, "location", location)
        _set(self, "platform", platform)

    @property
    def digest(self) -> str | None:
        raw = self._digest
        return "sha256:" + raw.hex() if isinstance(raw, bytes) else raw

    @property
    def origin(self) -> str:
        return self._origin if self._entry < 0 else f"{self._origin} entry {self._entry}"

    def _fields(self) -> tuple:
        return self.reference, self.digest, self.origin, self.location, self.platform

    def _kept(self) -> tuple:
        # the fields as kept, but the origin (its two forms are one string): a digest has one
        # form (bytes when canonical), so equal images have equal _kept() and one hash
        return self.reference, self._digest, self.location, self.platform

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self is other or (self._kept() == other._kept()
                                 and self.origin == other.origin)

    def __hash__(self) -> int:
        return hash(self._kept())

    def __repr__(self) -> str:
        return (f"Image(reference={self.reference!r}, digest={self.digest!r}, "
                f"origin={self.origin!r}, location={self.location!r}, "
                f"platform={self.platform!r})")

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple:
        return Image, self._fields()

    @property
    def source(self) -> Reference:
        """Where the image (and a cosign signature) lives in a registry."""
        return self.location or self.reference

    @property
    def known_digest(self) -> str:
        """The digest, which signers can count on: they get only completed plans."""
        if self.digest is None:
            raise ValueError(f"{self.reference}: its digest was never resolved")
        return self.digest


_set = object.__setattr__  # Image's fields, set once in __init__


def platform_origin(origin: str, platform: str) -> str:
    """The origin of a platform manifest found in the index given at ``origin``."""
    return f"{origin} ({platform} in its index)"


@dataclass(frozen=True, slots=True)
class SigningKey:
    given: str  # what the user wrote: an alias or the key itself
    key: str  # after alias lookup
    name: str | None = None  # sig_keyname, for signing servers


CLEARSIGN, BLOB = "clearsign", "blob"  # what is done to a SignFile
FILE_SUFFIX = {CLEARSIGN: ".asc", BLOB: ".sig"}
MAX_FILE_BYTES = 4 << 20  # one file goes whole into one bus message, and comes back in its reply
IMAGES_FILE_BYTES = 64 << 20  # about 500,000 entries
IMAGES_FILE_VALUES = 5_000_000  # YAML or JSON values in an images file (7 an entry)


@dataclass(frozen=True, slots=True)
class SignFile:
    """A file (or a text given as an argument) to clear-sign or to sign with a detached
    signature, instead of an image: pubtools-sign's clear-sign and blob-sign."""

    name: str  # its signature is written as <output>/<name>.asc or .sig
    data: bytes
    kind: str  # CLEARSIGN or BLOB
    origin: str  # e.g. "--blob-file #2 (dist/app.tar)"


@dataclass(frozen=True, slots=True)
class WorkItem:
    image: Image | SignFile  # what is signed: an image; for clear-/blob-signing a file
    key: SigningKey

    @property
    def container(self) -> Image:
        """The image this item signs, for code that signs only images."""
        if not isinstance(self.image, Image):
            raise TypeError(f"{self.image.origin}: a file, where an image was expected")
        return self.image


@dataclass(frozen=True)
class Plan:
    images: tuple[Image, ...]
    keys: tuple[SigningKey, ...]
    duplicates: int  # exact duplicates collapsed
    files: tuple[SignFile, ...] = ()  # a run signs images or files, never both

    def items(self) -> Iterator[WorkItem]:
        """pubtools-sign's request order: per image (or file), then per key."""
        for image in self.images or self.files:
            for key in self.keys:
                yield WorkItem(image, key)

    def __len__(self) -> int:
        return len(self.images or self.files) * len(self.keys)

    @property
    def kind(self) -> str:
        """What the run does: "container" signing, or CLEARSIGN / BLOB of files."""
        return self.files[0].kind if self.files else "container"


def build_plan(inputs: Inputs, key_aliases: Mapping[str, str]) -> Plan:
    """Check every image (or file) and key; raise InputError naming the first bad one."""
    inputs.check_values_last()
    files = _files(inputs)
    images: dict[tuple, Image] = {}
    total = 0
    for image in _all_images(inputs):
        total += 1
        # exact duplicates: identity, digest (as kept: one digest, one form) and location
        images.setdefault((image.reference, image._digest, image.source), image)
    if files and images:
        raise InputError("give images or files to sign, not both in one run")
    if not images and not files:
        raise InputError("nothing to sign: give --reference with --digest, --image, or "
                         "--images-file (action inputs: references + digests, images, "
                         "images-file), or files: --clear-sign-file, --blob-file")
    return Plan(tuple(images.values()), _keys(inputs, key_aliases), total - len(images),
                files)


def _files(inputs: Inputs) -> tuple[SignFile, ...]:
    """The files to clear-sign or blob-sign; each name may occur once (it names the output)."""
    given = [(CLEARSIGN, origin, value) for origin, value in inputs.numbered("clear_sign_files")]
    given += [(BLOB, origin, value) for origin, value in inputs.numbered("blob_files")]
    if {kind for kind, _, _ in given} == {CLEARSIGN, BLOB}:
        raise InputError("give files to clear-sign or files to blob-sign, not both in one run")
    files: dict[str, SignFile] = {}
    for kind, origin, value in given:
        name = os.path.basename(value)
        if not _SAFE_NAME.fullmatch(name):
            raise InputError(f"{origin}: {name!r} cannot name its signature file (letters, "
                             "digits, '.', '_', '-'; not starting with '.')")
        file = SignFile(name, read_regular_file(value, f"{origin} {value!r}", MAX_FILE_BYTES),
                        kind, origin)
        if file.name in files:
            raise InputError(f"{origin}: {files[file.name].origin} has the same name "
                             f"{file.name!r}: their signatures would be one file")
        files[file.name] = file
    return tuple(files.values())


_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,200}")


def _image(origin: str, reference: str, digest: str | None, identity: str | None = None,
           entry: int = -1) -> Image:
    """``reference`` with ``digest`` (or a ``@digest`` of its own, or none: resolved later), signed
    as ``identity`` when given. ``entry``: the number of an images file's entry, ``origin`` then
    the file's label."""
    try:
        if digest is None:
            ref, digest = _parse(reference, allow_digest=True)
        else:
            ref, _ = _parse(reference)
            check_digest(digest)
        signed_as = _parse(identity)[0] if identity else ref
    except InputError as e:
        raise InputError(f"{origin}{f' entry {entry}' if entry >= 0 else ''}: {e}") from None
    if signed_as == ref:
        signed_as = ref = _same_path(ref)
    return Image(signed_as, digest, origin, location=ref if signed_as != ref else None,
                 entry=entry)


_PATHS: dict[str, str] = {}  # a repository path seen lately -> that one string


def _same_path(ref: Reference) -> Reference:
    """``ref`` with the string of its path shared with the images of the same repository
    before it (a plan lists a repository's tags together): ~60 bytes an image at 100,000
    images in 1,000 repositories. A bounded cache: a repository per image does not grow it."""
    path = _PATHS.get(ref.path)
    if path is None:
        if len(_PATHS) >= 4096:
            _PATHS.clear()
        _PATHS[ref.path] = ref.path
        return ref
    return ref if path is ref.path else Reference(ref.host, path, ref.tag)


def _parse(text: str, allow_digest: bool = False) -> tuple[Reference, str | None]:
    """parse_reference, but a malformed ``@DIGEST`` is named as such (the reference grammar alone
    can only say that the whole is not a reference)."""
    _, at, digest = text.partition("@")
    if at:
        try:
            check_digest(digest)
        except InputError as e:
            raise InputError(f"{text!r} is not a valid docker reference: {e}") from None
    return parse_reference(text, allow_digest=allow_digest)


def _image_line(origin: str, text: str) -> Image:
    """``REF[@DIGEST][ as IDENTITY]``."""
    location, sep, identity = text.partition(" as ")
    if sep and not identity.strip():
        raise InputError(f"{origin}: nothing after ' as ': write REF@DIGEST as IDENTITY")
    return _image(origin, location.strip(), None, identity.strip() or None)


def _all_images(inputs: Inputs) -> Iterator[Image]:
    refs = inputs.numbered("references")
    digests = inputs.numbered("digests")
    if len(refs) != len(digests):
        raise InputError(
            f"{inputs.where('references')} has {len(refs)} value(s) but "
            f"{inputs.where('digests')} has {len(digests)}: references and digests are paired "
            "by position")
    identities = inputs.numbered("identities")
    if identities and len(identities) != len(refs):
        raise InputError(
            f"{inputs.where('identities')} has {len(identities)} value(s) but "
            f"{inputs.where('references')} has {len(refs)}: identities are paired with "
            "references by position")
    for n, ((origin, ref), (_, digest)) in enumerate(zip(refs, digests, strict=True)):
        yield _image(origin, ref, digest, identities[n][1] if identities else None)
    for origin, text in inputs.numbered("images"):
        yield _image_line(origin, text)
    if inputs.images_file:
        yield from _images_file(inputs.images_file, inputs.where("images_file"))


def _images_file(path: str, where: str) -> Iterator[Image]:
    label = f"{where} {path}"
    text = decode_text(read_regular_file(path, label, IMAGES_FILE_BYTES), label)
    data = _load_list(text, label)
    del text  # (~110 bytes an entry, not needed while the plan is made)
    if not isinstance(data, list):
        raise InputError(f"{label}: must hold a list of {{reference, digest}} entries")
    for n in range(1, len(data) + 1):
        # each entry let go of once its Image is made: the parsed list (~450 bytes an entry)
        # and the plan are never whole together, and the plan's objects reuse its memory
        entry, data[n - 1] = data[n - 1], None
        origin = f"{label} entry {n}"
        if not isinstance(entry, dict):
            raise InputError(f"{origin}: must be a mapping with reference and digest")
        unknown = sorted(str(k) for k in entry if k not in _ENTRY_KEYS)
        if unknown:
            raise InputError(f"{origin}: unknown key {unknown[0]!r} (allowed: "
                             f"{', '.join(_ENTRY_KEYS)})")
        reference = entry.get("reference")
        if not isinstance(reference, str) or not reference:
            raise InputError(f"{origin}: reference is missing or not a string")
        for key in ("digest", "identity"):
            if key in entry and (not isinstance(entry[key], str) or not entry[key]):
                raise InputError(f"{origin}: {key} is not a string")
        yield _image(label, reference, entry.get("digest"), entry.get("identity"), n)


_ENTRY_KEYS = ("reference", "digest", "identity")


# The usual images file, parsed line by line: "- reference: X" / "  digest: Y" entries whose values
# use only the characters of references and digests (plain, or in simple quotes), with blank and
# comment lines. An unquoted value must hold "/" or start with "sha256:" (so YAML could not read
# it as a null, bool, number or timestamp). Anything else returns None and goes to full YAML.
# It is an order of magnitude faster than libyaml (make bench); test_plan proves both agree.
_FAST_VALUE = r"(?P<q>['\"]?)(?P<value>[A-Za-z0-9][A-Za-z0-9._:/@+-]*)(?P=q)"
_FAST_LINE = re.compile(rf"(?P<lead>- +| +)(?P<key>reference|digest|identity): +{_FAST_VALUE}"
                        r"(?: +#.*)? *")
_FAST_SKIP = re.compile(r" *(#.*)?|---")


def _fast_yaml_list(text: str) -> list[dict] | None:
    entries: list[dict] = []
    indent = -1
    for line in text.splitlines():
        m = _FAST_LINE.fullmatch(line)
        if m is None:
            if _FAST_SKIP.fullmatch(line):
                continue
            return None
        lead, key, value = m.group("lead", "key", "value")
        if not m.group("q") and "/" not in value and not value.startswith("sha256:"):
            return None  # could be a YAML null, bool, number or timestamp: let YAML decide
        if lead.startswith("-"):
            indent = len(lead)
            entries.append({key: value})
        elif not entries or len(lead) != indent or key in entries[-1]:
            return None
        else:
            entries[-1][key] = value
    return entries or None


def _load_list(text: str, label: str) -> object:
    """JSON, the usual YAML shape (fast), or any YAML; each bounded, duplicate keys refused."""
    where = _entry_namer(label)
    if text.lstrip()[:1] in ("[", "{"):
        try:  # much faster than YAML for large lists
            return load_json(text, label, where=where, max_nodes=IMAGES_FILE_VALUES)
        except NotJSON:
            pass  # YAML flow style also starts with [ or {
    fast = _fast_yaml_list(text)  # (an entry that repeats a key is left to YAML, which refuses)
    if fast is not None:
        return fast
    return load_yaml(text, label, where=where, max_nodes=IMAGES_FILE_VALUES)


def _entry_namer(label: str):
    """A place in an images file as errors name it: ``LABEL entry 3``, ``LABEL entry 3: digest``."""
    def where(path: tuple) -> str:
        if not path:
            return label
        if isinstance(path[0], int):
            rest = f": {key_path(path[1:])}" if len(path) > 1 else ""
            return f"{label} entry {path[0] + 1}{rest}"
        return f"{label}: {key_path(path)}"
    return where


def _keys(inputs: Inputs, key_aliases: Mapping[str, str]) -> tuple[SigningKey, ...]:
    given = inputs.numbered("signing_keys")
    names = inputs.numbered("signing_key_names")
    if not given:
        raise InputError("no signing key: give --signing-key (action input: signing-keys)")
    if names and len(names) != len(given):
        raise InputError(
            f"{inputs.where('signing_key_names')} has {len(names)} value(s) but "
            f"{inputs.where('signing_keys')} has {len(given)}: key names are paired with keys "
            "by position")
    keys: dict[str, SigningKey] = {}
    for n, (_, key) in enumerate(given):
        resolved = key_aliases.get(key, key)
        keys.setdefault(resolved, SigningKey(key, resolved, names[n][1] if names else None))
    return tuple(keys.values())
