"""The YAML config: found, read, ``${ENV_VAR}``-interpolated and checked against the JSON Schema.

pubtools-sign's conf.yaml is accepted unchanged: the same sections and keys, the same default
locations, unknown keys rejected, and (as its marshmallow schema does) integer and boolean keys
also accept their string spelling, so ``timeout: ${MSG_TIMEOUT}`` works. Unlike pubtools-sign, an
unset variable is an error rather than a silent null, and an explicitly named config file that does
not exist is an error rather than a fall-back to the default locations.

Every error is one line naming the key path, and never shows a secret value (keys marked
``x-secret`` in the schema).

Reading and parsing are bounded (signaction.safeload): a regular file of at most 1 MiB, YAML
nesting and alias expansion capped, duplicate keys refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jsonschema

from .errors import InputError
from .safeload import check_text_size, key_path, load_yaml, read_text_file

CONFIG_PATHS = ("~/.config/pubtools-sign/conf.yaml", "/etc/pubtools-sign/conf.yaml")
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.json"

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}

CONFIG_BYTES = 1 << 20  # a config file or inline config; real ones are a few hundred bytes
CONFIG_VALUES = 10_000  # values (each use of a YAML alias counted in full); real configs: < 100


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
    data = _interpolate(data, environ, ())
    data = _coerce(data, schema)
    _validate(data, schema)
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


def _interpolate(node: Any, environ: Mapping[str, str], path: tuple) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, environ, path + (k,)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, environ, path + (i,)) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        def repl(m: re.Match) -> str:
            name = m.group(1)
            if name not in environ:
                raise InputError(f"config: {key_path(path)}: environment variable {name} "
                                 "is not set")
            return environ[name]
        return _ENV_RE.sub(repl, node)
    return node


def _subschema(schema: Mapping, key: Any) -> Mapping:
    props = schema.get("properties", {})
    if key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    if isinstance(key, int):
        return schema.get("items", {})
    return extra if isinstance(extra, dict) else {}


def _coerce(node: Any, schema: Mapping) -> Any:
    """Integer and boolean keys accept their string spelling, as pubtools-sign's schema does."""
    if isinstance(node, dict):
        return {k: _coerce(v, _subschema(schema, k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_coerce(v, _subschema(schema, i)) for i, v in enumerate(node)]
    if isinstance(node, str):
        kind = schema.get("type")
        if kind == "integer" and _INT_RE.fullmatch(node.strip()):
            return int(node)
        if kind == "boolean" and node.strip().lower() in _BOOLS:
            return _BOOLS[node.strip().lower()]
    return node


def _validate(data: Mapping, schema: Mapping) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    # One error is reported: a wrong value the user wrote before a key they left out.
    errors = sorted(validator.iter_errors(data), key=lambda e: (e.validator == "required",
                                                                 key_path(list(e.absolute_path))))
    if not errors:
        return
    e = errors[0]
    path = list(e.absolute_path)
    if e.validator == "additionalProperties":
        known = e.schema.get("properties", {})
        unknown = sorted(str(k) for k in e.instance if k not in known)
        what = "section" if not path else "key"
        raise InputError(f"config: {key_path(path + [unknown[0]])}: unknown {what} "
                         f"(allowed: {', '.join(known)})")
    if e.validator == "required":
        missing = [k for k in e.validator_value if k not in e.instance]
        raise InputError(f"config: {key_path(path)}: missing required key {missing[0]!r}")
    if e.schema.get("x-secret"):
        raise InputError(f"config: {key_path(path)}: the (secret) value is not valid: "
                         f"{e.validator} {e.validator_value!r}")
    raise InputError(f"config: {key_path(path)}: {e.message}")


def _secrets(node: Any, schema: Mapping) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            found += _secrets(v, _subschema(schema, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _secrets(v, _subschema(schema, i))
    elif isinstance(node, str) and schema.get("x-secret") and node:
        found.append(node)
    return found

