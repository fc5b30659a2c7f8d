"""Hostile-YAML guards for every spec and stack file the CLI reads: bounded time and memory, errors naming the file.

A pull request's YAML is untrusted input to CI (``endpoints validate``, ``endpoints plan``). Three shapes used to take
the process down:

* an alias bomb ("billion laughs": ``&a [*b, *b, ...]`` nine levels deep) is a few hundred bytes that expands to
  ~10^9 nodes when walked or validated (41 s and 3.1 GB before ``MemoryError``);
* thousands of nested ``[`` / ``{`` make every recursive walker (the composer, the line map, pydantic) hit
  ``RecursionError``;
* bytes that are not UTF-8 raised ``UnicodeDecodeError`` with a traceback.

So, before anything composes or constructs the document: the file's size is capped (:data:`MAX_BYTES`), it must
decode as UTF-8, and one pass over the parser's *event stream* (an iterative state machine in libyaml and in PyYAML:
no recursion, memory proportional to the nesting depth) refuses a nesting depth above :data:`MAX_DEPTH` and a
document whose nodes, with every alias expanded, exceed :data:`MAX_NODES` — each anchor's expanded size is counted
once when it closes and reused at each alias, so the bomb is refused after reading its few hundred bytes. Azure ML
specs are a few KiB, a dozen levels deep and a few hundred nodes: the limits are far above real files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from endpoints.errors import Problem, SpecError

MAX_BYTES = 1 << 20  # 1 MiB; the largest spec of Azure's examples is ~3 KiB
MAX_DEPTH = 64
MAX_NODES = 100_000

# libyaml's parser when PyYAML has it (the loader uses it too); the pure-Python one otherwise.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


def _error(source: str, line: int | None, message: str) -> SpecError:
    return SpecError([Problem(source, line, "", message)])


def read_text(path: Path) -> str:
    """The file's text, refused above :data:`MAX_BYTES` or when it is not UTF-8.

    Raises:
        SpecError: too large, unreadable or not UTF-8, naming the file (and the line of the first bad byte).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise _error(str(path), None, f"cannot read: {e.strerror or e}") from e
    if len(raw) > MAX_BYTES:
        raise _error(str(path), None, f"file is larger than {MAX_BYTES} bytes; a spec or stack file is far smaller")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        reason = f"not UTF-8 text: byte 0x{raw[e.start]:02x} at offset {e.start}; save the file as UTF-8"
        raise _error(str(path), line, reason) from e


def check_bounds(text: str, source: str) -> None:
    """Refuse YAML nested deeper than :data:`MAX_DEPTH` or holding more than :data:`MAX_NODES` nodes with aliases
    expanded, in one pass over the parser's events (see the module docstring).

    Syntax errors are left to the caller's parse, which reports them with their line.

    Raises:
        SpecError: a limit is exceeded, naming the file and the line where it was.
    """
    if len(text) > MAX_BYTES:
        raise _error(source, None, f"document is larger than {MAX_BYTES} characters")
    try:
        _walk_events(text, source, _LOADER)
    except yaml.YAMLError:
        if _LOADER is yaml.SafeLoader:
            return
        # libyaml gives up on deep flow nesting while scanning ahead, before any event: the pure-Python parser
        # (no depth limit of its own, still iterative) reads up to the limit or up to the real syntax error.
        try:
            _walk_events(text, source, yaml.SafeLoader)
        except yaml.YAMLError:
            return


def _walk_events(text: str, source: str, loader: Any) -> None:
    stack: list[list[Any]] = []  # per open collection: [expanded node count, anchor]
    sizes: dict[str, int] = {}  # anchor -> expanded node count
    total = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                reason = f"nested more than {MAX_DEPTH} levels deep; a spec is a few levels deep"
                raise _error(source, _line(event.start_mark), reason)
            stack.append([1, event.anchor])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            count, anchor = stack.pop()
            if anchor is not None:
                sizes[anchor] = count
        elif isinstance(event, yaml.ScalarEvent):
            count = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            count = sizes.get(event.anchor or "", 1)  # an unknown anchor is the parse's error to report
        else:
            continue
        if stack:
            stack[-1][0] += count
            count = stack[-1][0]
        else:
            total += count
            count = total
        if count > MAX_NODES:
            reason = (
                f"more than {MAX_NODES} YAML nodes with aliases expanded (an alias bomb?); a spec holds a few hundred"
            )
            raise _error(source, _line(event.start_mark), reason)


def load(path: Path) -> Any:
    """Read, check and load a YAML file (safe loader) within the limits above.

    Raises:
        SpecError: as :func:`read_text` and :func:`check_bounds`, or the text is not YAML (with its line).
    """
    text = read_text(path)
    check_bounds(text, str(path))
    try:
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(e, "problem", None) or str(e)
        raise _error(str(path), line, f"not valid YAML: {reason}") from e
