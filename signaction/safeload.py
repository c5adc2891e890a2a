"""Reading and parsing what comes from outside (config files, inline config, images files) safely.

One reader and two parsers, each bounded so that no input can hang the run, eat the memory or end
in a traceback; every refusal is an InputError, one line, naming where:

- read_regular_file / read_text_file: regular files only (opened non-blocking, so a FIFO cannot
  hang the open; checked with fstat, so /dev/zero or a socket is refused), at most ``limit`` bytes.
- load_yaml: a SafeLoader whose composer counts every node (each use of an alias counts the whole
  node it names, so a "billion laughs" bomb is refused after reading its first lines) and bounds
  the nesting depth before anything deeper is read (libyaml's own composer recurses in C and
  crashes the interpreter on 100,000 nested brackets); duplicate mapping keys are refused.
- load_json: the same bounds and duplicate-key check for JSON (plus NaN and Infinity, which JSON
  does not have, refused).

Where: the caller's ``where(path)`` turns a path inside the document (keys and list indices, as
jsonschema gives them) into the message's prefix, e.g. ``--images-file f.yaml entry 3`` or
``config: c.yaml: gpg_signer``. Values are never quoted in these messages: only keys and
positions.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from collections.abc import Callable
from itertools import chain
from typing import Any, overload

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from .errors import InputError

MAX_DEPTH = 32  # configs need 4 levels, images files 3

Where = Callable[[tuple], str]


# -- reading files ------------------------------------------------------------------------

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a link"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def size_text(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and not limit % (1 << 20) else f"{limit} bytes"


def _check_regular(mode: int, label: str) -> None:
    if stat.S_ISDIR(mode):
        raise InputError(f"{label}: is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise InputError(f"{label}: is {_kind(mode)}, not a regular file")


def _check_one_name(links: int, label: str) -> None:
    if links > 1:
        raise InputError(f"{label}: a hard link (the file has {links} names, one of them "
                         "perhaps outside the folder): copy the files instead of linking them")


@overload
def read_regular_file(path: str, label: str, limit: int, *,
                      follow_links: bool = True) -> bytes: ...


@overload
def read_regular_file(path: str, label: str, limit: int, *, missing_ok: bool,
                      follow_links: bool = True) -> bytes | None: ...


def read_regular_file(path: str, label: str, limit: int, *, missing_ok: bool = False,
                      follow_links: bool = True) -> bytes | None:
    """A regular file's bytes, at most ``limit`` of them: never a FIFO (which would hang), a
    device (/dev/zero never ends) or a socket. With ``missing_ok`` a missing file is None.
    Without ``follow_links`` a link at ``path`` is refused (lstat, O_NOFOLLOW), and so is a
    hard link (a file of more than one name): for files inside a folder from outside, where a
    link could lead anywhere."""
    try:
        info = os.stat(path) if follow_links else os.lstat(path)
        _check_regular(info.st_mode, label)  # a device is refused without opening it
        if not follow_links:
            _check_one_name(info.st_nlink, label)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
                     | (0 if follow_links else os.O_NOFOLLOW))
    except ValueError:  # a NUL in the path
        raise InputError(f"{label}: cannot be opened (the name holds a NUL character)") from None
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            if missing_ok:
                return None
            raise InputError(f"{label}: file not found") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise InputError(f"{label}: not readable (permission denied)") from None
        raise InputError(f"{label}: cannot be opened ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)  # what was opened, if the path changed in between
        _check_regular(info.st_mode, label)
        if not follow_links:
            _check_one_name(info.st_nlink, label)
        if info.st_size > limit:
            raise InputError(f"{label}: larger than {size_text(limit)}")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise InputError(f"{label}: cannot be read ({e.strerror})") from None
    if len(data) > limit:
        raise InputError(f"{label}: larger than {size_text(limit)}")
    return data


def decode_text(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{label}: not UTF-8 text (byte {e.start + 1} is not)") from None


def read_text_file(path: str, label: str, limit: int, *,
                   missing_ok: bool = False) -> str | None:
    """read_regular_file, decoded as UTF-8."""
    data = read_regular_file(path, label, limit, missing_ok=missing_ok)
    return None if data is None else decode_text(data, label)


def check_text_size(text: str, label: str, limit: int) -> str:
    """The same cap for a text given inline (an input, a flag) as for a file."""
    if len(text) > limit or (len(text) * 4 > limit
                             and len(text.encode("utf-8", "surrogatepass")) > limit):
        raise InputError(f"{label}: larger than {size_text(limit)}")
    return text


# -- naming places ------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,80}")


def shown(text: str, limit: int = 60) -> str:
    """A literal text quoted on one line, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def key_path(parts: tuple | list) -> str:
    """``msg_signer.messaging_brokers[0]``; a key that is not a plain name is quoted, so that no
    key can add a line or pass for another path."""
    out = ""
    for p in parts:
        if isinstance(p, int) and not isinstance(p, bool):
            out += f"[{p}]"
            continue
        name = p if isinstance(p, str) and _PLAIN_KEY.fullmatch(p) else \
            shown(p if isinstance(p, str) else repr(p), 40)
        out += f".{name}" if out else name
    return out or "(top level)"


def default_where(label: str) -> Where:
    return lambda path: f"{label}: {key_path(path)}" if path else label


def _mark(mark) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


# -- YAML ---------------------------------------------------------------------------------

class _Refused(Exception):
    """A bound or a duplicate key: the message is complete."""


try:
    from yaml._yaml import CParser as _Parser  # libyaml: events in C, composed below in Python
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


_MERGE = "tag:yaml.org,2002:merge"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"


def non_finite_name(value: float) -> str:
    """How to name a NaN or an infinity without quoting what was written."""
    return "NaN" if math.isnan(value) else "infinity" if value > 0 else "-infinity"


class _BoundedLoader(Composer, _Parser, SafeConstructor, Resolver):
    """yaml.SafeLoader with libyaml's parser, a composer that bounds depth and size, refuses
    duplicate keys and non-finite numbers, and a constructor whose value errors are YAML errors
    with a position. The composer is PyYAML's, in one function (it is the hot loop)."""

    def __init__(self, text: str, where: Where, max_depth: int, max_nodes: int):
        _Parser.__init__(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.where, self.max_depth, self.max_nodes = where, max_depth, max_nodes
        self.depth = 0  # of the node being composed
        self.deepest = 0  # the deepest level reached (aliases counted as expanded)
        self.nodes = 0  # nodes so far, each use of an alias counting every node it names
        self.named: dict[str, tuple[int, int]] = {}  # anchor -> (its nodes, its height)
        self.path: list = []  # where the node being composed is

    def _refuse(self, problem: str, mark, path: list) -> None:
        raise _Refused(f"{self.where(tuple(path))}: {problem}{_mark(mark)}")

    def _too_many(self, mark) -> None:
        self._refuse(f"more than {self.max_nodes:,} values (each use of an alias counts every "
                     "value it stands for)", mark, self.path[:1])

    def compose_node(self, parent, index):
        event = self.get_event()
        kind = event.__class__
        anchor = event.anchor
        if kind is AliasEvent:
            return self._alias(event)
        depth = self.depth = self.depth + 1
        if depth > self.max_depth:
            self._refuse(f"nested deeper than {self.max_depth} levels", event.start_mark,
                         self.path[:1])
        self.nodes += 1
        if self.nodes > self.max_nodes:
            self._too_many(event.start_mark)
        if anchor is not None and anchor in self.anchors:
            first = self.anchors[anchor].start_mark
            raise ComposerError(None, None, f"the anchor &{anchor[:40]} is defined twice (first "
                                f"on line {first.line + 1})", event.start_mark)
        if kind is ScalarEvent:
            return self._scalar(event, depth)
        before, outer = self.nodes - 1, self.deepest
        self.deepest = depth
        tag = event.tag
        if kind is SequenceStartEvent:
            if tag is None or tag == "!":
                tag = self.resolve(SequenceNode, None, event.implicit)
            node = SequenceNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
            if anchor is not None:
                self.anchors[anchor] = node
            self._sequence_items(node)
        else:  # MappingStartEvent: the parser gives nothing else here
            if tag is None or tag == "!":
                tag = self.resolve(MappingNode, None, event.implicit)
            node = MappingNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
            if anchor is not None:
                self.anchors[anchor] = node
            self._mapping_items(node)
        node.end_mark = self.get_event().end_mark
        if anchor is not None:
            self.named[anchor] = (self.nodes - before, self.deepest - depth + 1)
        if outer > self.deepest:
            self.deepest = outer
        self.depth -= 1
        return node

    def _alias(self, event):
        """The node an alias names, counted again (its size and height) where it is used."""
        anchor = event.anchor
        if anchor not in self.anchors:
            raise ComposerError(None, None, f"found undefined alias {anchor[:40]!r}",
                                event.start_mark)
        if anchor not in self.named:
            self._refuse(f"alias *{anchor[:40]} is used inside the node it names",
                         event.start_mark, self.path[:1])
        size, height = self.named[anchor]
        self.nodes += size
        if self.nodes > self.max_nodes:
            self._too_many(event.start_mark)
        reach = self.depth + height
        if reach > self.max_depth:
            self._refuse(f"nested deeper than {self.max_depth} levels", event.start_mark,
                         self.path[:1])
        if reach > self.deepest:
            self.deepest = reach
        return self.anchors[anchor]

    def _scalar(self, event, depth: int) -> ScalarNode:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(ScalarNode, event.value, event.implicit)
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        if tag == _FLOAT:
            value = self.construct_object(node)
            if not math.isfinite(value):
                self._refuse(f"{non_finite_name(value)} is not a finite number",
                             event.start_mark, self.path)
        if event.anchor is not None:
            self.anchors[event.anchor] = node
            self.named[event.anchor] = (1, 1)
        if depth > self.deepest:
            self.deepest = depth
        self.depth -= 1
        return node

    def _sequence_items(self, node: SequenceNode) -> None:
        items, path = node.value, self.path
        path.append(0)
        while not self.check_event(SequenceEndEvent):
            path[-1] = len(items)
            items.append(self.compose_node(node, len(items)))
        path.pop()

    def _mapping_items(self, node: MappingNode) -> None:
        items, path = node.value, self.path
        seen = set()
        path.append("(a key)")
        while not self.check_event(MappingEndEvent):
            path[-1] = "(a key)"
            key = self.compose_node(node, None)
            if key.__class__ is ScalarNode:
                identity = self._identity(key)
                if identity is not None:
                    if identity in seen:
                        self._refuse(f"duplicate key {shown(str(key.value), 40)}",
                                     key.start_mark, path[:-1])
                    seen.add(identity)
                path[-1] = key.value
            items.append((key, self.compose_node(node, key)))
        path.pop()

    def _identity(self, key: ScalarNode) -> Any:
        """The key once constructed (``yes`` and ``true`` are one key), or None (unhashable)."""
        if key.tag == _STR:
            return key.value
        if key.tag == _MERGE:
            return ("<<",)  # two merges in one mapping: a duplicate too
        value = self.construct_object(key)
        try:
            hash(value)
        except TypeError:
            return None  # the constructor refuses it
        return value


def _errors_are_yaml_errors(construct):
    """A constructor whose exceptions (a 5,000-digit integer, February 30th, ``!!bool maybe``) are
    YAML errors with a position, never a traceback."""
    def checked(loader, node):
        try:
            return construct(loader, node)
        except (ValueError, OverflowError, KeyError, AttributeError, TypeError, IndexError) as e:
            kind = str(node.tag).rsplit(":", 1)[-1][:40]
            raise ConstructorError(None, None, f"not a valid {kind} ({type(e).__name__})",
                                   node.start_mark) from None
    return checked


for _tag, _construct in SafeConstructor.yaml_constructors.items():
    _BoundedLoader.add_constructor(_tag, _errors_are_yaml_errors(_construct))


def load_yaml(text: str, label: str, *, where: Where | None = None, max_depth: int = MAX_DEPTH,
              max_nodes: int) -> Any:
    """YAML to data, or InputError ``<label> line L, column C: <problem>`` (only the problem and
    the position: the snippet yaml would quote may hold a secret)."""
    loader = _BoundedLoader(text, where or default_where(label), max_depth, max_nodes)
    try:
        return loader.get_single_data()
    except _Refused as e:
        raise InputError(str(e)) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"{label}{at}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{label}: not valid YAML ({type(e).__name__})") from None
    except RecursionError:  # not expected with the bounds above; never a traceback
        raise InputError(f"{label}: nested too deeply") from None
    finally:
        loader.dispose()


# -- JSON ---------------------------------------------------------------------------------

class NotJSON(InputError):
    """The text is not JSON syntax (it may still be YAML)."""


class _Pairs(dict):
    """A JSON object that repeats a key: ``pairs`` as written."""
    pairs: list


class _Constant:
    """NaN or an infinity, where the document had one."""

    def __init__(self, value: float):
        self.value = value


_CONTAINERS = frozenset((dict, list, _Pairs))
_DICTS = frozenset((dict, _Pairs))
_LISTS = frozenset((list,))


def parse_json(data: bytes | str) -> Any:
    """``json.loads`` for an answer from outside (a registry, Rekor, Fulcio, a broker): nesting
    deeper than the parser's recursion limit (``[[[[...``, a few bytes each) is a ValueError
    like any other malformed JSON, not a RecursionError that would end the run."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def load_json(text: str, label: str, *, where: Where | None = None, max_depth: int = MAX_DEPTH,
              max_nodes: int) -> Any:
    """JSON to data with load_yaml's bounds and duplicate-key check; NotJSON for a syntax error.
    NaN and Infinity (not JSON, though Python reads them) are refused."""
    where = where or default_where(label)
    odd: list = []  # objects with a repeated key, NaN / Infinity

    def pairs_hook(pairs):
        obj = dict(pairs)
        if len(obj) != len(pairs):
            obj = _Pairs(obj)
            obj.pairs = pairs
            odd.append(obj)
        return obj

    def number(text):  # only called for numbers with a fraction or exponent: few
        value = float(text)
        if math.isfinite(value):
            return value
        odd.append(value)
        return _Constant(value)

    try:
        data = json.loads(text, object_pairs_hook=pairs_hook, parse_float=number,
                          parse_constant=number)
    except json.JSONDecodeError as e:
        raise NotJSON(f"{label} line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise InputError(f"{label}: nested deeper than {max_depth} levels") from None
    except ValueError as e:  # Python's limit on integer digits
        raise InputError(f"{label}: a number cannot be read ({type(e).__name__})") from None
    if odd or not _within(data, max_depth, max_nodes):
        _refuse_json(data, where, max_depth, max_nodes)
    return data


def _within(data: Any, max_depth: int, max_nodes: int) -> bool:
    """Depth and size, level by level, the loops in C: for a list of 100,000 flat entries one
    pass counts them and one sees that no value is a container."""
    level, depth, nodes = [data] if type(data) in _CONTAINERS else [], 1, 1  # containers at depth
    while level:
        children = sum(map(len, level))
        if children:
            depth += 1
            nodes += children
            if depth > max_depth or nodes > max_nodes:
                return False
        if _CONTAINERS.isdisjoint(set(map(type, _values(level)))):
            return True
        level = [v for v in _values(level) if type(v) in _CONTAINERS]
    return True


def _values(level: list):
    kinds = set(map(type, level))
    if kinds <= _DICTS:
        return chain.from_iterable(map(dict.values, level))
    if kinds == _LISTS:
        return chain.from_iterable(level)
    return chain.from_iterable(v.values() if type(v) in _DICTS else v for v in level)


def _refuse_json(data: Any, where: Where, max_depth: int, max_nodes: int) -> None:
    """The first problem in document order, named by its path (only called when there is one)."""
    nodes = 0
    stack: list[tuple[tuple, Any]] = [((), data)]
    while stack:
        path, node = stack.pop()
        nodes += 1
        if len(path) >= max_depth:
            raise InputError(f"{where(path[:1])}: nested deeper than {max_depth} levels")
        if nodes > max_nodes:
            raise InputError(f"{where(path[:1])}: more than {max_nodes:,} values")
        if isinstance(node, _Constant):
            raise InputError(f"{where(path)}: {non_finite_name(node.value)} is not a finite "
                             "number")
        if isinstance(node, _Pairs):
            seen = set()
            for key, _ in node.pairs:
                if key in seen:
                    raise InputError(f"{where(path)}: duplicate key {shown(key, 40)}")
                seen.add(key)
        if isinstance(node, dict):
            children = [(path + (k,), v) for k, v in node.items()]
        elif isinstance(node, list):
            children = [(path + (i,), v) for i, v in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))
    raise InputError(f"{where(())}: cannot be read")  # (not reached: called on a problem)
