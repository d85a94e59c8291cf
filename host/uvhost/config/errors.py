"""Problems found in a config, placed at their line and column, and shown to people.

Invariants:
- Every step of loading (syntax, interpolation, validation, cross-checks)
  reports `Problem`s: a key path into the document, whether the key or the
  value is at fault, a one-line message and a one-line hint. Only `place()`
  turns a path into a file position, so every step points the same way.
- No step stops at its first problem: `uvhost check` shows them all.
- Messages never contain a Python traceback or a pydantic error code.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from uvhost.config.source import KeyPath, SourceDocument, Span
from uvhost.config.types import ConfigValueError, show_value

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong at `path`; `at` says whether the key or its value is to blame."""

    message: str
    hint: str = ""
    path: KeyPath = ()
    at: Literal["key", "value"] = "value"
    severity: Severity = "error"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A problem placed in a file: what `uvhost check` prints."""

    severity: Severity
    message: str
    hint: str
    file: Path
    span: Span | None
    source_line: str

    def as_json(self, shown_path: str) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "file": shown_path,
            "line": self.span.line if self.span else None,
            "column": self.span.column if self.span else None,
            "end_column": self.span.end_column if self.span else None,
            "message": self.message,
            "hint": self.hint,
        }


def place(problem: Problem, document: SourceDocument) -> Diagnostic:
    if problem.at == "key":
        span = document.locate_key(problem.path)
    else:
        span = document.locate_value(problem.path)
    return Diagnostic(
        severity=problem.severity,
        message=problem.message,
        hint=problem.hint,
        file=document.path,
        span=span,
        source_line=document.line_text(span.line),
    )


def render(diagnostic: Diagnostic, shown_path: str) -> str:
    """`file:line:col: error: message`, the source line, a marker and the hint."""
    span = diagnostic.span
    hint = f"  = hint: {diagnostic.hint}" if diagnostic.hint else ""
    if span is None:
        head = f"{shown_path}: {diagnostic.severity}: {diagnostic.message}"
        return f"{head}\n{hint}" if hint else head
    head = f"{shown_path}:{span.line}:{span.column}: {diagnostic.severity}: {diagnostic.message}"
    number = str(span.line)
    gutter = " " * len(number)
    line = diagnostic.source_line.expandtabs(1).rstrip()
    width = max(1, min(span.end_column, len(line) + 1) - span.column)
    lines = [
        head,
        f" {number} | {line}",
        f" {gutter} | {' ' * (span.column - 1)}{'^' * width}",
    ]
    if diagnostic.hint:
        lines.append(f" {gutter} = hint: {diagnostic.hint}")
    return "\n".join(lines)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A hint naming the closest choice, or listing the valid ones when none is close."""
    options = sorted(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f'did you mean "{close[0]}"?'
    if not options:
        return ""
    shown = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "")
    return f"expected one of: {shown}"


# ------------------------------------------------- pydantic → Problem


def problems_from_validation(error: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """One problem per pydantic error, except that a misspelt required key is reported once.

    `taget = "..."` is both an unknown key and a missing `target`; the unknown key,
    with its "did you mean", says it all.
    """
    found = error.errors(include_url=False)
    misspelt = {
        (_path(details["loc"])[:-1], suggestion)
        for details in found
        if details["type"] == "extra_forbidden"
        for suggestion in difflib.get_close_matches(
            str(details["loc"][-1]), _fields_at(root, _path(details["loc"])[:-1]), n=1
        )
    }
    return [
        _translate(details, root)
        for details in found
        if details["type"] != "missing"
        or (_path(details["loc"])[:-1], str(details["loc"][-1])) not in misspelt
    ]


def _path(loc: Sequence[Any]) -> KeyPath:
    return tuple(part for part in loc if isinstance(part, str | int))


def _translate(details: ErrorDetails, root: type[BaseModel]) -> Problem:
    loc = tuple(details["loc"])
    kind = details["type"]
    ctx = details.get("ctx") or {}
    if loc and loc[-1] == "[key]":
        return _from_value_error(ctx, loc[:-1], at="key", fallback=details["msg"])
    path = _path(loc)
    where = _section_name(path[:-1])
    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed = _fields_at(root, path[:-1])
        message = f'unknown key "{key}" in {where}' if path[:-1] else f'unknown section "{key}"'
        hint = _KEYS_ELSEWHERE.get(tuple(path[-2:])) or did_you_mean(key, allowed)
        return Problem(message, hint, path, at="key")
    if kind in ("missing", "too_short") and path == ("listeners",):
        return Problem(
            "the config has no listeners, so it would serve nothing",
            'add one, e.g. [listeners.web] with bind = "127.0.0.1:8000" and app = "NAME"',
            path if kind == "too_short" else (),
            at="key",
        )
    if kind == "missing":
        key = str(path[-1])
        return Problem(
            f'{where} is missing the required key "{key}"',
            f"add {key} = ... to {where}",
            path[:-1],
            at="key",
        )
    if kind == "value_error":
        return _from_value_error(ctx, path, at="value", fallback=details["msg"])
    hint = _type_hint(kind, ctx, details.get("input"))
    return Problem(_type_message(kind, ctx, details), hint, path, at="value")


# Keys people expect in a table that are spelt elsewhere: (table, key) -> where they are.
_KEYS_ELSEWHERE: dict[tuple[str | int, ...], str] = {
    ("http2", "max_header_list_size"): "HTTP/2's header list limit is the listener's "
    "max_header_bytes (advertised as SETTINGS_MAX_HEADER_LIST_SIZE); set that instead",
}


def _from_value_error(
    ctx: dict[str, Any], path: KeyPath, *, at: Literal["key", "value"], fallback: str
) -> Problem:
    error = ctx.get("error")
    if isinstance(error, ConfigValueError):
        return Problem(error.message, error.hint, (*path, *error.where), at=at)
    return Problem(str(error) if error else fallback, "", path, at=at)


_TYPE_NAMES = {
    "int": "an integer",
    "bool": "true or false",
    "string": "a string",
    "dict": "a table",
    "model": "a table",
    "list": "an array",
    "tuple": "an array",
    "float": "a number",
}


def _type_message(kind: str, ctx: dict[str, Any], details: ErrorDetails) -> str:
    got = show_value(details.get("input"))
    if kind == "literal_error":
        return f"{got} is not allowed here"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return f"{got} is out of range"
    if kind in ("too_short", "too_long"):
        return "this needs at least one entry" if kind == "too_short" else "too many entries"
    for prefix, name in _TYPE_NAMES.items():
        if kind.startswith(prefix + "_") or kind == prefix + "_type":
            return f"expected {name}, got {got}"
    return details["msg"]


_TABLE_HINT = "write a table: a [header] followed by key = value lines, or { key = value }"
_KIND_HINTS = {
    "dict_type": _TABLE_HINT,
    "model_type": _TABLE_HINT,
    "model_attributes_type": _TABLE_HINT,
    "int_parsing": "write a whole number, without quotes",
    "int_type": "write a whole number, without quotes",
    "bool_parsing": "write true or false, without quotes",
    "bool_type": "write true or false, without quotes",
    "string_type": 'write a string, in quotes: "..."',
    "too_short": "add an entry",
}


def _type_hint(kind: str, ctx: dict[str, Any], value: Any) -> str:
    if kind in _KIND_HINTS:
        return _KIND_HINTS[kind]
    if kind in ("list_type", "tuple_type") and not isinstance(value, dict):
        return f"write an array: [{show_value(value)}]"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and f"'{value}'" in expected:  # min_version = 1.3, meant "1.3"
            return f'write it as a string: "{value}"'
        return f"expected one of: {expected}".replace("'", '"')
    if kind in _BOUND_HINTS:
        text, bound = _BOUND_HINTS[kind]
        return text.format(ctx.get(bound))
    return ""


_BOUND_HINTS = {
    "greater_than_equal": ("the smallest allowed value is {}", "ge"),
    "greater_than": ("the value must be above {}", "gt"),
    "less_than_equal": ("the largest allowed value is {}", "le"),
    "less_than": ("the value must be below {}", "lt"),
}


def _section_name(path: KeyPath) -> str:
    if not path:
        return "the top level"
    return "[" + ".".join(_key_text(part) for part in path) + "]"


def _key_text(part: str | int) -> str:
    if isinstance(part, int):
        return str(part)
    if part.replace("-", "").replace("_", "").isalnum() and part.isascii():
        return part
    return '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fields_at(root: type[BaseModel], path: Sequence[str | int]) -> list[str]:
    """The field names allowed at `path`; named tables are walked through their value type."""
    model = _model_at(root, path)
    return [] if model is None else list(model.model_fields)


def _model_at(root: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    model: Any = root
    for part in path:
        if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            model = _model_of(model.model_fields[str(part)].annotation)
        elif isinstance(model, dict):
            model = model["values"]
        else:
            return None
        if model is None:
            return None
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model
    return None


def _model_of(annotation: Any) -> Any:
    """The BaseModel behind `X`, `X | None` or `dict[str, X]` (the latter as a marker dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args: tuple[Any, ...] = getattr(annotation, "__args__", ())
    origin = getattr(annotation, "__origin__", None)
    if origin is dict and len(args) == 2:
        inner = _model_of(args[1])
        return {"values": inner} if inner is not None else None
    for arg in args:
        inner = _model_of(arg)
        if inner is not None:
            return inner
    return None


def count(diagnostics: Iterable[Diagnostic], severity: Severity) -> int:
    return sum(1 for d in diagnostics if d.severity == severity)
