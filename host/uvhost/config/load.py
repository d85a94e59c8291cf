"""Read → interpolate → validate → cross-check: a config file to a model or a list of problems.

Invariants:
- Each step is data in, data out plus problems; problems are placed in the
  file only at the end, by `errors.place`, and sorted by position.
- One pass reports everything: when validation fails, the sections that did
  validate are cross-checked anyway (the failing listeners and apps are
  pruned), so a type error does not hide a route to a missing app.
- A value already reported by interpolation (an unset `${VAR}`) is not
  reported again by validation for the empty text it became, and a value
  reported by either is not reported again by the cross-field checks.
- The process environment is read, never written.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from uvhost.config.checks import check_config
from uvhost.config.dict_config import inline_dict_config, name_the_file
from uvhost.config.errors import Diagnostic, place, problems_from_validation
from uvhost.config.interpolate import interpolate, read_dotenv, read_env_files
from uvhost.config.model import HostConfig, validate_config
from uvhost.config.plan import Plan, build_plan
from uvhost.config.source import (
    KeyPath,
    SourceDocument,
    Span,
    TomlSyntaxError,
    read_source,
)


@dataclass(frozen=True)
class LoadResult:
    """The outcome of loading one file: a config when there is no error, and every diagnostic."""

    path: Path
    config: HostConfig | None
    diagnostics: tuple[Diagnostic, ...]
    document: SourceDocument | None = None
    watched_files: tuple[Path, ...] = ()
    app_environments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    file_digests: Mapping[Path, str | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.config is not None

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    def plan(self, cpu_count: int | None = None) -> Plan:
        """The plan of a valid config; `cpu_count` defaults to this machine's."""
        if self.config is None:
            raise ValueError(f"{self.path} has errors; there is nothing to plan")
        return build_plan(
            self.config,
            base_dir=self.path.parent.resolve(),
            cpu_count=cpu_count or os.cpu_count() or 1,
            app_environments=self.app_environments,
            file_digests=self.file_digests,
        )


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> LoadResult:
    environ = os.environ if environ is None else environ
    try:
        document = read_source(path)
    except TomlSyntaxError as error:
        return LoadResult(path, None, (_syntax_diagnostic(path, error),))
    except (OSError, UnicodeDecodeError) as error:
        return LoadResult(path, None, (_unreadable(path, error),))
    return load_document(document, environ)


def load_document(document: SourceDocument, environ: Mapping[str, str]) -> LoadResult:
    base_dir = document.path.parent.resolve()
    env_paths = _host_env_files(document.data, base_dir, environ)
    file_variables, problems = read_env_files(env_paths)
    interpolated = interpolate(document.data, {**file_variables, **environ})
    problems.extend(interpolated.problems)
    data, dict_config_file = inline_dict_config(interpolated.data, base_dir, problems)
    already = {problem.path for problem in problems}

    config: HostConfig | None = None
    try:
        config = validate_config(data, base_dir)
    except ValidationError as error:
        found = problems_from_validation(error, HostConfig)
        problems.extend(p for p in found if p.path not in already)
        already.update(p.path for p in found)
        checked, unvalidated_apps, unvalidated_listeners = _validate_pruned(data, base_dir, error)
        if checked is not None:
            crossed = check_config(checked, unvalidated_apps, unvalidated_listeners)
            problems.extend(p for p in crossed if p.path not in already)
    else:
        problems.extend(p for p in check_config(config) if p.path not in already)

    if dict_config_file is not None:  # its problems are placed at the key naming the file
        problems = [name_the_file(problem, dict_config_file) for problem in problems]
    failed = any(problem.severity == "error" for problem in problems)
    diagnostics = sorted(
        (place(problem, document) for problem in problems),
        key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0),
    )
    # Absolute, not resolved: a ConfigMap mount links through `..data` (see supervisor.watch).
    watched = [document.path.absolute(), *(p for _, p in env_paths)]
    if dict_config_file is not None:
        watched.append(dict_config_file)
    environments: dict[str, dict[str, str]] = {}
    digests: dict[Path, str | None] = {}
    if config is not None:
        watched.extend(_files_of(config))
        environments = _app_environments(config)
        digests = {path: file_digest(path) for path in _tls_files(config)}
    return LoadResult(
        document.path,
        None if failed else config,
        tuple(diagnostics),
        document,
        tuple(dict.fromkeys(watched)),
        environments,
        digests,
    )


def file_digest(path: Path) -> str | None:
    """SHA-256 of a file's content, or None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _host_env_files(
    data: Mapping[str, Any], base_dir: Path, environ: Mapping[str, str]
) -> list[tuple[KeyPath, Path]]:
    """host.env_files, read before validation because interpolation needs their variables."""
    host = data.get("host")
    entries = host.get("env_files") if isinstance(host, dict) else None
    if not isinstance(entries, list):
        return []
    expanded = interpolate({"files": entries}, environ).data["files"]
    found: list[tuple[KeyPath, Path]] = []
    for index, entry in enumerate(expanded):
        if not isinstance(entry, str) or not entry:
            continue
        try:
            path = Path(entry).expanduser()
        except RuntimeError:  # "~nosuchuser/.env": validation reports it at this entry
            continue
        found.append((("host", "env_files", index), base_dir / path))
    return found


Pruned = tuple[HostConfig | None, frozenset[str], dict[tuple[str, str], dict[str, Any]]]


def _validate_pruned(data: dict[str, Any], base_dir: Path, error: ValidationError) -> Pruned:
    """Drop every section, listener and app that failed, and validate what is left.

    Returns the pruned config, the names of the route targets dropped (apps,
    redirects, answers), and the raw tables of the listeners and sites dropped
    by (section, name), whose routes can still be checked.
    """
    named_tables = ("listeners", "apps", "sites", "redirects", "answers")
    pruned: dict[str, Any] = {
        key: dict(value) if key in named_tables and isinstance(value, dict) else value
        for key, value in data.items()
    }
    apps: set[str] = set()
    listeners: dict[tuple[str, str], dict[str, Any]] = {}
    for details in error.errors(include_url=False):
        loc = details["loc"]
        head = loc[0] if loc else None
        if head in named_tables and len(loc) >= 2 and isinstance(pruned.get(head), dict):
            raw = pruned[head].pop(loc[1], None)
            if head in ("apps", "redirects", "answers"):  # route targets, known by name
                apps.add(str(loc[1]))
            elif head in ("listeners", "sites") and isinstance(raw, dict):
                listeners[(head, str(loc[1]))] = raw
        elif head in ("host", "logging") and len(loc) >= 2 and isinstance(pruned.get(head), dict):
            # Drop only the failing key: the others (host.workers) still matter to the checks.
            pruned[head] = {k: v for k, v in pruned[head].items() if k != loc[1]}
        elif head in ("host", "logging") or (head is not None and len(loc) == 1):
            pruned.pop(str(head), None)
        else:
            return None, frozenset(), {}
    # When every listener failed, validate the rest around a stand-in (a config needs one
    # listener) and drop it again, so the failed listeners' routes are still checked.
    emptied = any(section == "listeners" for section, _ in listeners) and not pruned.get(
        "listeners"
    )
    if emptied:
        pruned["listeners"] = {"stand-in": {"bind": "fd:3"}}
    try:
        checked = validate_config(pruned, base_dir)
    except ValidationError:
        return None, frozenset(), {}
    if emptied:
        checked = checked.model_copy(update={"listeners": {}})
    return checked, frozenset(apps), listeners


def _files_of(config: HostConfig) -> list[Path]:
    """Files whose change should trigger a reload: env files and TLS material."""
    files: list[Path] = []
    for app in config.apps.values():
        files.extend(app.env_files)
    return files + _tls_files(config)


def _tls_files(config: HostConfig) -> list[Path]:
    files: list[Path] = []
    for listener in config.listeners.values():
        tls = listener.tls
        if tls is not None:
            files.extend(p for p in (tls.certificate, tls.private_key, tls.client_ca) if p)
    for site in config.sites.values():
        if site.tls is not None:
            files.extend(p for p in (site.tls.certificate, site.tls.private_key) if p)
    return files


def _app_environments(config: HostConfig) -> dict[str, dict[str, str]]:
    environments: dict[str, dict[str, str]] = {}
    for name, app in config.apps.items():
        merged: dict[str, str] = {}
        for env_file in app.env_files:
            if env_file.is_file():
                merged.update(read_dotenv(env_file))
        merged.update(app.env)
        environments[name] = merged
    return environments


_SYNTAX_HINTS = {
    "invalid value": 'strings need quotes: key = "value"',
    "expected newline or end of document": "one key = value per line; strings need quotes: "
    'key = "value"',
    "expected '=' after a key": 'write key = value; quote keys with spaces or dots: "a b" = 1',
    "is already set": "each key may be set once per table; remove one of them",
    "cannot overwrite a value": "each key may be set once per table",
    "is declared twice": "each table header may appear once; merge the two tables",
    "is set twice in one inline table": "each key may be set once per table; remove one of them",
    "expected ']' at the end of a table": "bare names are ASCII letters, digits, - and _; quote "
    'other names: [apps."my app"]',
    "unclosed array": 'separate the items with "," and close the array with "]"',
    "unclosed inline table": 'separate the entries with "," and close the table with "}" on the '
    "same line (inline tables cannot span lines)",
    "unterminated string": "close the string with the quote it was opened with",
    "immutable namespace": "an inline table or array cannot be extended later; write it as a "
    "[table] instead",
    "invalid statement": "each line is a key = value pair, a [table] header or a comment",
    "invalid initial character for a key part": "keys are letters, digits, - and _; quote others",
}

_KEY_TUPLE = re.compile(r"\('(?:[^'\\]|\\.)*'(?:, '(?:[^'\\]|\\.)*')*,?\)")


def _syntax_diagnostic(path: Path, error: TomlSyntaxError) -> Diagnostic:
    try:
        lines = path.read_bytes().decode("utf-8").split("\n")
        line = lines[error.span.line - 1].removesuffix("\r")
    except (OSError, UnicodeDecodeError, IndexError):
        line = ""
    message, span = _explain_syntax(error.message, error.span, line)
    lowered = message.lower()
    hint = next((h for needle, h in _SYNTAX_HINTS.items() if needle in lowered), "")
    return Diagnostic("error", f"TOML syntax: {message}", hint, path, span, line)


def _explain_syntax(message: str, span: Span, line: str) -> tuple[str, Span]:
    """tomllib's message in our words, at the key or header to blame where that is clearer.

    tomllib reports a duplicate where it noticed it (after the value) and shows key
    paths as Python tuples; people need the key, spelt as they wrote it.
    """
    message = _KEY_TUPLE.sub(lambda m: ".".join(ast.literal_eval(m[0])), message)
    stripped = line.strip()
    start = len(line) - len(line.lstrip()) + 1
    if message.startswith("Cannot declare ") and stripped.startswith("["):
        name = message.removeprefix("Cannot declare ").removesuffix(" twice")
        end = line.find("]", start - 1)
        end = len(line.rstrip()) if end < 0 else end + (2 if line[end + 1 : end + 2] == "]" else 1)
        return f"the table [{name}] is declared twice", Span(span.line, start, end + 1)
    if message == "Cannot overwrite a value" and "=" in stripped and not stripped.startswith("["):
        key = line[: line.index("=")].strip()
        return f"{key} is already set", Span(span.line, start, start + len(key))
    if message in {"Illegal character '\\n'", "Illegal character '\\r'"}:
        opening = max(line.rfind('"', 0, span.column - 1), line.rfind("'", 0, span.column - 1))
        column = opening + 1 if opening >= 0 else span.column
        return (
            "unterminated string: the line ends before the closing quote",
            Span(span.line, column, max(span.column, len(line) + 1)),
        )
    if message.startswith("Duplicate inline table key "):
        key = str(ast.literal_eval(message.removeprefix("Duplicate inline table key ")))
        written = re.escape(key)
        pattern = rf"(\"{written}\"|'{written}'|(?<![\w-]){written}(?![\w-]))\s*="
        found = [m for m in re.finditer(pattern, line) if m.start() < span.column - 1]
        if found:
            last = found[-1]
            span = Span(span.line, last.start() + 1, last.start() + len(last[1]) + 1)
        return f'"{key}" is set twice in one inline table', span
    if message in _EXPECTED_CLOSER:
        return f"{message.lower()}: expected {_EXPECTED_CLOSER[message]} here", span
    return message[:1].lower() + message[1:], span


_EXPECTED_CLOSER = {"Unclosed array": '"," or "]"', "Unclosed inline table": '"," or "}"'}


def _unreadable(path: Path, error: OSError | UnicodeDecodeError) -> Diagnostic:
    if isinstance(error, UnicodeDecodeError):
        message, hint = "the file is not valid UTF-8", "save it as UTF-8"
    elif isinstance(error, FileNotFoundError):
        message = "no such file"
        hint = "pass the path of your config, e.g. uvhost check uvhost.toml"
    else:
        message, hint = f"cannot read the file: {error.strerror or error}", ""
    return Diagnostic("error", message, hint, path, None, "")
