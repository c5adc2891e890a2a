"""The plan: every image and key checked before anything is signed, then (image, key) work items.

Images come from three places, in this order: --reference/--digest pairs, --image lines, and an
images file. Each keeps where it came from, so an error names the flag occurrence, the input line or
the file entry. Exact duplicates (same reference and digest) are collapsed; the same reference with
different digests is kept (a multi-arch index and its platform manifests share one identity).
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
    reference: Reference
    digest: str
    origin: str  # e.g. "input 'images' line 3"


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
    images: dict[tuple[str, str], Image] = {}
    total = 0
    for image in _all_images(inputs):
        total += 1
        images.setdefault((str(image.reference), image.digest), image)
    if not images:
        raise InputError("nothing to sign: give --reference with --digest, --image, or "
                         "--images-file (action inputs: references + digests, images, "
                         "images-file)")
    return Plan(tuple(images.values()), _keys(inputs, key_aliases), total - len(images))


def _image(origin: str, reference: str, digest: str | None) -> Image:
    try:
        if digest is None:
            ref, digest = parse_reference(reference, allow_digest=True)
            if digest is None:
                raise InputError(f"{reference!r} has no digest: write it as "
                                 "registry/ns/name:tag@sha256:<64 hex>")
        else:
            ref, _ = parse_reference(reference)
            check_digest(digest)
    except InputError as e:
        raise InputError(f"{origin}: {e}") from None
    return Image(ref, digest, origin)


def _all_images(inputs: Inputs) -> Iterator[Image]:
    refs = inputs.numbered("references")
    digests = inputs.numbered("digests")
    if len(refs) != len(digests):
        raise InputError(
            f"{inputs.where('references')} has {len(refs)} value(s) but "
            f"{inputs.where('digests')} has {len(digests)}: references and digests are paired "
            "by position")
    for (origin, ref), (_, digest) in zip(refs, digests):
        yield _image(origin, ref, digest)
    for origin, text in inputs.numbered("images"):
        yield _image(origin, text, None)
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
        unknown = sorted(str(k) for k in entry if k not in ("reference", "digest"))
        if unknown:
            raise InputError(f"{origin}: unknown key {unknown[0]!r} (allowed: reference, digest)")
        reference, digest = entry.get("reference"), entry.get("digest")
        for key, value in (("reference", reference), ("digest", digest)):
            if not isinstance(value, str) or not value:
                raise InputError(f"{origin}: {key} is missing or not a string")
        yield _image(origin, reference, digest)


# The usual images file, parsed line by line: "- reference: X" / "  digest: Y" entries whose values
# use only the characters of references and digests (plain, or in simple quotes), with blank and
# comment lines. An unquoted value must hold "/" or start with "sha256:" (so YAML could not read
# it as a null, bool, number or timestamp). Anything else returns None and goes to full YAML.
# For 10,000 entries this takes ~40 ms where libyaml takes ~480 ms; test_plan proves both agree.
_FAST_VALUE = r"(?P<q>['\"]?)(?P<value>[A-Za-z0-9][A-Za-z0-9._:/@+-]*)(?P=q)"
_FAST_LINE = re.compile(rf"(?P<lead>- +| +)(?P<key>reference|digest): +{_FAST_VALUE}"
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
