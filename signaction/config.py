"""The YAML config: found, read, ``${ENV_VAR}``-interpolated and checked against the JSON Schema.

pubtools-sign's conf.yaml is accepted unchanged: the same sections and keys, the same default
locations, unknown keys rejected, and (as its marshmallow schema does) integer and boolean keys
also accept their string spelling, so ``timeout: ${MSG_TIMEOUT}`` works (number keys too here:
``deadline: ${DEADLINE}``; a decimal spelling only, and never NaN or an infinity). Unlike
pubtools-sign, an unset variable is an error rather than a silent null, and an explicitly named
config file that does not exist is an error rather than a fall-back to the default locations.

Every error is one line naming the key path and the problem. A value is quoted only when it is
literal config text under a key that holds no secret (``x-secret`` in the schema): a list or a
mapping never is (it may hold anything), nor is a value that came from ``${VAR}`` (its template is
shown instead), nor a secret. Strings made from ``${VAR}``, and secrets, stay marked (Unquoted):
whatever quotes them with repr() later shows the template, never the value.

Reading and parsing are bounded (signaction.safeload): a regular file of at most 1 MiB, YAML
nesting and alias expansion capped, duplicate keys and non-finite numbers refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .errors import InputError
from .safeload import check_text_size, key_path, load_yaml, non_finite_name, read_text_file, shown

if TYPE_CHECKING:  # (imported by _validator, when there is a config to check: it is slow)
    import jsonschema

CONFIG_PATHS = ("~/.config/pubtools-sign/conf.yaml", "/etc/pubtools-sign/conf.yaml")
# Package data: in a checkout a symbolic link to schemas/config.schema.json, in a wheel the file.
SCHEMA_PATH = Path(__file__).resolve().parent / "config.schema.json"

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_INT_RE = re.compile(r"[+-]?[0-9]{1,100}")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]{1,100}(?:\.[0-9]{0,100})?|\.[0-9]{1,100})"
                        r"(?:[eE][+-]?[0-9]{1,4})?")  # decimal only: no "nan", "inf", "0x1"
_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}

CONFIG_BYTES = 1 << 20  # a config file or inline config; real ones are a few hundred bytes
CONFIG_VALUES = 10_000  # values (each use of a YAML alias counted in full); real configs: < 100


class Unquoted(str):
    """A config string used as its value, but quoted (repr, ``!r``, what error messages use) as
    ``shown``: the template written in the config for a value made from ``${VAR}``, or nothing for
    a secret. So no later message can echo what the environment or a secret key held."""

    shown: str

    def __new__(cls, value: str, shown: str) -> Unquoted:
        self = super().__new__(cls, value)
        self.shown = shown
        return self

    def __repr__(self) -> str:
        return self.shown

    def __reduce__(self):
        return Unquoted, (str(self), self.shown)


SECRET_SHOWN = "(secret, not shown)"


@dataclass(frozen=True)
class Config:
    data: Mapping[str, Any]
    source: str  # where it came from, for messages: a path, "input 'config'" or "defaults"
    secrets: tuple[str, ...]  # values to mask: every secret-marked value

    def section(self, name: str) -> Mapping[str, Any] | None:
        return self.data.get(name)


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return json.load(f)


def load_config(config_file: str | None, inline: str | None,
                environ: Mapping[str, str]) -> Config:
    """Find, read, interpolate, coerce and validate the config. Raises InputError."""
    text, source = _read(config_file, inline)
    data = _parse(text, source) if text is not None else {}
    schema = load_schema()
    templates: dict[tuple, str] = {}  # path -> the text with ${VAR}s, where one was replaced
    data = _interpolate(data, environ, (), templates, schema)
    data = _coerce(data, schema)
    if data:  # (no config: {} is valid, tests/test_cold_start.py checks; no validator to load)
        _validate(data, schema, templates)
    return Config(data=data, source=source, secrets=tuple(_secrets(data, schema)))


def _read(config_file: str | None, inline: str | None) -> tuple[str | None, str]:
    if config_file and inline:
        raise InputError("config: give either a config file or inline config, not both")
    if inline is not None:
        return check_text_size(inline, "config: inline config", CONFIG_BYTES), "inline config"
    candidates = [config_file] if config_file else list(CONFIG_PATHS)
    for candidate in candidates:
        path = str(Path(candidate).expanduser())
        text = read_text_file(path, f"config: {path!r}", CONFIG_BYTES,
                              missing_ok=not config_file)
        if text is not None:
            return text, path
    return None, "defaults (no config file)"


def _parse(text: str, source: str) -> dict:
    label = f"config: {source}"
    data = load_yaml(text, label, max_nodes=CONFIG_VALUES,
                     where=lambda path: f"{label}: {key_path(path)}" if path else label)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"config: {source}: the top level must be a mapping of sections "
                         "(msg_signer, cosign_signer, gpg_signer, ...)")
    return data


def _interpolate(node: Any, environ: Mapping[str, str], path: tuple,
                 templates: dict[tuple, str], schema: Mapping, secret: bool = False) -> Any:
    """``${VAR}`` replaced in every string value (never in keys, which must be strings); strings
    made from variables, and secrets, become Unquoted."""
    secret = secret or bool(schema.get("x-secret"))
    if isinstance(node, dict):
        for k in node:
            if not isinstance(k, str):
                raise InputError(f"config: {key_path(path)}: the key {shown(repr(k), 40)} is not "
                                 "a string (YAML reads yes, no, on, off, null and numbers as "
                                 "such: quote it)")
        return {k: _interpolate(v, environ, path + (k,), templates, _subschema(schema, k), secret)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, environ, path + (i,), templates, _subschema(schema, i), secret)
                for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node
    secret = secret or _holds_secret(schema)
    if _ENV_RE.search(node) is None:
        return Unquoted(node, SECRET_SHOWN) if secret else node

    def repl(m: re.Match) -> str:
        name = m.group(1)
        if name not in environ:
            raise InputError(f"config: {key_path(path)}: environment variable {name} is not set")
        return environ[name]
    templates[path] = node
    return Unquoted(_ENV_RE.sub(repl, node),
                    SECRET_SHOWN if secret else f"{shown(node)} (value not shown)")


def _subschema(schema: Mapping, key: Any) -> Mapping:
    props = schema.get("properties", {})
    if key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    if isinstance(key, int):
        return schema.get("items", {})
    return extra if isinstance(extra, dict) else {}


def _coerce(node: Any, schema: Mapping) -> Any:
    """Integer and boolean keys accept their string spelling, as pubtools-sign's schema does, and
    number keys a decimal one."""
    if isinstance(node, dict):
        return {k: _coerce(v, _subschema(schema, k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_coerce(v, _subschema(schema, i)) for i, v in enumerate(node)]
    if isinstance(node, str):
        kind, text = schema.get("type"), node.strip()
        if kind in ("integer", "number") and _INT_RE.fullmatch(text):
            return int(text)
        if kind == "number" and _NUMBER_RE.fullmatch(text):
            return float(text)  # may be inf ("1e999"): the validator refuses it, naming the key
        if kind == "boolean" and text.lower() in _BOOLS:
            return _BOOLS[text.lower()]
    return node


def _finite_number(checker, value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (not isinstance(value, float) or math.isfinite(value)))


@cache
def _validator() -> type[jsonschema.Draft202012Validator]:
    """The schema's validator, JSON Schema 2020-12 where "number" excludes NaN and the
    infinities (``deadline: .inf`` would turn the deadline off). jsonschema is imported here,
    when there is a config to check: with referencing, attrs, rpds and its format checkers it
    takes tens of milliseconds, a good part of a cold start (tests/test_cold_start.py)."""
    import jsonschema

    validator: type[jsonschema.Draft202012Validator] = jsonschema.validators.extend(
        jsonschema.Draft202012Validator,
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("number",
                                                                           _finite_number))
    return validator


_BOUNDS = {"minimum": "is less than the minimum of",
           "maximum": "is greater than the maximum of",
           "exclusiveMinimum": "is less than or equal to the minimum of",
           "exclusiveMaximum": "is greater than or equal to the maximum of"}
_KIND = {dict: "a mapping", list: "a list", str: "a string", Unquoted: "a string",
         bool: "a boolean", int: "an integer", float: "a number", type(None): "null"}


def _validate(data: Mapping, schema: Mapping, templates: Mapping[tuple, str]) -> None:
    # One error is reported: a wrong value the user wrote before a key they left out.
    errors = sorted(_validator()(schema).iter_errors(data),
                    key=lambda e: (e.validator == "required", key_path(list(e.absolute_path))))
    if errors:
        raise InputError(f"config: {_problem(errors[0], schema, templates)}")


def _problem(e: jsonschema.ValidationError, root: Mapping, templates: Mapping[tuple, str]) -> str:
    """``<key path>: <what is wrong>``, built from the schema and the key path only: never from
    jsonschema's message, which quotes the whole value (a wrong-typed list may hold a secret)."""
    path = list(e.absolute_path)
    # (jsonschema types these as "maybe unset"; an error from iter_errors always has them)
    where, rule, expected = key_path(path), e.validator, cast(Any, e.validator_value)
    instance = cast(Any, e.instance)
    if rule == "additionalProperties":
        known = cast(Mapping, e.schema).get("properties", {})
        unknown = sorted(str(k) for k in instance if k not in known)
        what = "section" if not path else "key"
        return f"{key_path(path + [unknown[0]])}: unknown {what} (allowed: {', '.join(known)})"
    if rule == "required":
        missing = [k for k in expected if k not in instance]
        return f"{where}: missing required key {missing[0]!r}"
    value = _describe(e.instance, tuple(path), _secret_at(root, path), templates)
    if rule == "type":
        if isinstance(e.instance, float) and not math.isfinite(e.instance):
            return f"{where}: {value} is not a finite number"
        names = expected if isinstance(expected, list) else [expected]
        return f"{where}: {value} is not of type {', '.join(map(repr, names))}"
    if rule == "enum":
        return f"{where}: {value} is not one of {', '.join(map(repr, expected))}"
    if rule in _BOUNDS:
        return f"{where}: {value} {_BOUNDS[rule]} {expected!r}"
    if rule in ("minItems", "maxItems"):
        return f"{where}: must have at {'least' if rule == 'minItems' else 'most'} " \
               f"{expected} item(s)"
    return f"{where}: {value} is not valid ({rule} {expected!r})"


def _describe(value: Any, path: tuple, secret: bool, templates: Mapping[tuple, str]) -> str:
    """The value as an error may show it: quoted only if it is a literal scalar of the config
    text under a key that holds no secret; else what kind of value it is."""
    kind = _KIND.get(type(value), "a value")
    if isinstance(value, (dict, list)):
        return kind  # never quoted: it may hold anything, at any depth
    if secret:
        return f"{kind} {SECRET_SHOWN}"
    if path in templates:
        return f"{shown(templates[path])} (value not shown)"
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, float) and not math.isfinite(value):
        return non_finite_name(value)
    return repr(value)


def _secret_at(root: Mapping, path: list) -> bool:
    """Whether the key at ``path``, a key above it or anything below it is ``x-secret``."""
    schema = root
    for step in path:
        if schema.get("x-secret"):
            return True
        schema = _subschema(schema, step)
    return _holds_secret(schema)


def _holds_secret(schema: Any) -> bool:
    """Whether the schema marks this key, or anything below it, ``x-secret``."""
    if not isinstance(schema, dict):
        return False
    if schema.get("x-secret"):
        return True
    return any(_holds_secret(sub) for key in ("properties", "patternProperties")
               for sub in schema.get(key, {}).values()) or \
        any(_holds_secret(schema.get(key)) for key in ("additionalProperties", "items"))


def _secrets(node: Any, schema: Mapping, secret: bool = False) -> list[str]:
    """Every string value under an ``x-secret`` key (or in a section marked so), to mask."""
    secret = secret or bool(schema.get("x-secret"))
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            found += _secrets(v, _subschema(schema, k), secret)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _secrets(v, _subschema(schema, i), secret)
    elif isinstance(node, str) and secret and node:
        found.append(str(node))
    return found

