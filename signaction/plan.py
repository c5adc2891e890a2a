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

import json
import re
from dataclasses import dataclass
from typing import Iterator, Mapping

from .config import parse_yaml
from .errors import InputError
from .inputs import Inputs
from .reference import Reference, check_digest, parse_reference

@dataclass(frozen=True, slots=True)
class Image:
    reference: Reference  # the identity signed
    digest: str | None  # None: to be resolved from the location's tag
    origin: str  # e.g. "input 'images' line 3"
    location: Reference | None = None  # where the image is, when not at its identity
    platform: str | None = None  # "linux/arm64": a manifest found in a multi-arch index

    @property
    def source(self) -> Reference:
        """Where the image (and a cosign signature) lives in a registry."""
        return self.location or self.reference


@dataclass(frozen=True, slots=True)
class SigningKey:
    given: str  # what the user wrote: an alias or the key itself
    key: str  # after alias lookup
    name: str | None = None  # sig_keyname, for signing servers


@dataclass(frozen=True, slots=True)
class WorkItem:
    image: Image
    key: SigningKey


@dataclass(frozen=True)
class Plan:
    images: tuple[Image, ...]
    keys: tuple[SigningKey, ...]
    duplicates: int  # exact duplicates collapsed

    def items(self) -> Iterator[WorkItem]:
        for image in self.images:
            for key in self.keys:
                yield WorkItem(image, key)

    def __len__(self) -> int:
        return len(self.images) * len(self.keys)


def build_plan(inputs: Inputs, key_aliases: Mapping[str, str]) -> Plan:
    """Check every image and key; raise InputError naming the first bad one."""
    images: dict[tuple, Image] = {}
    total = 0
    for image in _all_images(inputs):
        total += 1
        images.setdefault((image.reference, image.digest, image.source), image)
    if not images:
        raise InputError("nothing to sign: give --reference with --digest, --image, or "
                         "--images-file (action inputs: references + digests, images, "
                         "images-file)")
    return Plan(tuple(images.values()), _keys(inputs, key_aliases), total - len(images))


def _image(origin: str, reference: str, digest: str | None, identity: str | None = None) -> Image:
    """``reference`` with ``digest`` (or a ``@digest`` of its own, or none: resolved later), signed
    as ``identity`` when given."""
    try:
        if digest is None:
            ref, digest = parse_reference(reference, allow_digest=True)
        else:
            ref, _ = parse_reference(reference)
            check_digest(digest)
        signed_as = parse_reference(identity)[0] if identity else ref
    except InputError as e:
        raise InputError(f"{origin}: {e}") from None
    return Image(signed_as, digest, origin, location=ref if signed_as != ref else None)


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
    for n, ((origin, ref), (_, digest)) in enumerate(zip(refs, digests)):
        yield _image(origin, ref, digest, identities[n][1] if identities else None)
    for origin, text in inputs.numbered("images"):
        yield _image_line(origin, text)
    if inputs.images_file:
        yield from _images_file(inputs.images_file, inputs.where("images_file"))


def _images_file(path: str, where: str) -> Iterator[Image]:
    label = f"{where} {path}"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise InputError(f"{label}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{label}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    data = _load_list(text, label)
    if not isinstance(data, list):
        raise InputError(f"{label}: must hold a list of {{reference, digest}} entries")
    for n, entry in enumerate(data, 1):
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
        yield _image(origin, reference, entry.get("digest"), entry.get("identity"))


_ENTRY_KEYS = ("reference", "digest", "identity")


# The usual images file, parsed line by line: "- reference: X" / "  digest: Y" entries whose values
# use only the characters of references and digests (plain, or in simple quotes), with blank and
# comment lines. An unquoted value must hold "/" or start with "sha256:" (so YAML could not read
# it as a null, bool, number or timestamp). Anything else returns None and goes to full YAML.
# For 10,000 entries this takes ~40 ms where libyaml takes ~480 ms; test_plan proves both agree.
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
    if text.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(text)  # much faster than YAML for large lists
        except json.JSONDecodeError:
            pass  # YAML flow style also starts with [ or {
    fast = _fast_yaml_list(text)
    if fast is not None:
        return fast
    return parse_yaml(text, label)


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
