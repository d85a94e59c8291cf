"""Where each key and value of a TOML config is written, so errors can point into the file.

`tomllib` parses the config but keeps no positions, while pydantic reports errors at a key
path such as ``("listeners", "public", "bind")`` or ``("host", "env_files", 0)``.  This
module maps every key path of a document to the line and column of its key and its value.

Invariants:
- `parse_source` always runs `tomllib.loads` first: `data` is exactly what it returns, and
  a syntax error surfaces as `TomlSyntaxError` at tomllib's own position.  The scanner
  only ever runs on text tomllib accepted, so it is trusting: it never validates and never
  decides what a value means, but it is exact about where every token starts and ends.
- Lines are split on "\\n" only, as tomllib does (a trailing "\\r" is not part of a
  line; U+2028 and friends do not end lines).  Columns are 1-based and count code points.
- A span never leaves the line it starts on: a multi-line string, array or inline table
  ends at the end of its first line, so ``end_column > column`` always holds.
- A table named by a header is located at that header; a table only implied by a longer
  header or a dotted key is located where it is first mentioned.  Array items have no key.
- Stdlib only; nothing here touches the file system except `read_source`.
"""

from __future__ import annotations

import re
import string
import tomllib
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Span:
    """A run of characters on one line: 1-based `line` and `column`, `end_column` exclusive."""

    line: int
    column: int
    end_column: int


@dataclass(frozen=True, slots=True)
class Located:
    """Where a key path is written: its last key segment and its value (header for tables)."""

    key: Span | None
    value: Span | None


_FIRST_CHARACTER = Span(1, 1, 2)


class TomlSyntaxError(Exception):
    """Text tomllib rejects, with tomllib's message and position (a one-character span)."""

    message: str
    span: Span

    def __init__(self, message: str, span: Span) -> None:
        super().__init__(f"{message} (at line {span.line}, column {span.column})")
        self.message = message
        self.span = span


@dataclass(frozen=True)
class SourceDocument:
    """A parsed config file and the index of its key paths; build it with `parse_source`."""

    path: Path
    text: str
    data: dict[str, Any]
    _index: dict[KeyPath, Located] = field(default_factory=dict, repr=False, compare=False)
    _headers: frozenset[KeyPath] = field(default=frozenset(), repr=False, compare=False)

    def line_text(self, line: int) -> str:
        """The source line without its line ending; "" when out of range."""
        lines = self.text.split("\n")
        return lines[line - 1].removesuffix("\r") if 1 <= line <= len(lines) else ""

    def find(self, path: KeyPath) -> Located | None:
        """Where `path` is written, or None when it is not in the document."""
        return self._index.get(path)

    def locate_key(self, path: KeyPath) -> Span:
        """The key of `path`; else its `[[header]]`; else the nearest ancestor's anchor."""
        found = self._index.get(path)
        if found is not None:
            if found.key is not None:
                return found.key
            if path in self._headers and found.value is not None:
                return found.value
        return self._anchor(path[:-1])

    def locate_value(self, path: KeyPath) -> Span:
        """The value of `path`; else falls back like `locate_key`."""
        found = self._index.get(path)
        if found is not None and found.value is not None:
            return found.value
        return self.locate_key(path)

    def _anchor(self, path: KeyPath) -> Span:
        # The best place to blame for something missing inside `path`: the header of a
        # table opened by one, the key of a table written as a key, the value of an item.
        for end in range(len(path), 0, -1):
            prefix = path[:end]
            found = self._index.get(prefix)
            if found is None:
                continue
            header = prefix in self._headers or found.key is None
            span = found.value if header else found.key
            if span is not None:
                return span
        return _FIRST_CHARACTER


def parse_source(text: str, path: Path) -> SourceDocument:
    """Parse TOML `text` (read from `path`) and index where each key path is written."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _syntax_error(str(error), text) from error
    scanner = _Scanner(text)
    scanner.run()
    return SourceDocument(
        path, text, data, _index=scanner.index, _headers=frozenset(scanner.headers)
    )


def read_source(path: Path) -> SourceDocument:
    """Read `path` as UTF-8 (line endings untouched) and parse it."""
    return parse_source(path.read_bytes().decode("utf-8"), path)


_AT_POSITION = re.compile(r"(.*) \(at line (\d+), column (\d+)\)", re.DOTALL)
_AT_END = re.compile(r"(.*) \(at end of document\)", re.DOTALL)


def _syntax_error(raw: str, text: str) -> TomlSyntaxError:
    if match := _AT_POSITION.fullmatch(raw):
        column = int(match[3])
        return TomlSyntaxError(match[1], Span(int(match[2]), column, column + 1))
    # "At end of document": just past the last character of the last line with text.
    lines = text.rstrip("\r\n").split("\n")
    column = len(lines[-1].removesuffix("\r")) + 1
    message = match[1] if (match := _AT_END.fullmatch(raw)) else raw
    return TomlSyntaxError(message, Span(len(lines), column, column + 1))


_BARE_KEY = frozenset(string.ascii_letters + string.digits + "-_")
_SCALAR_END = frozenset(" \t\r\n,]}#")
_SPACE_DIGITS = frozenset(" " + digit for digit in string.digits)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class _Scanner:
    """One pass over valid TOML text, recording a `Located` for every key path it meets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line_starts = [0, *(m.end() for m in re.finditer("\n", text))]
        self.index: dict[KeyPath, Located] = {}
        self.headers: set[KeyPath] = set()
        self.aot_counts: dict[KeyPath, int] = {}  # array-of-tables path -> items so far

    def run(self) -> None:
        table: KeyPath = ()
        while True:
            self._skip(newlines=True)
            if self.pos >= len(self.text):
                return
            if self.text[self.pos] == "[":
                table = self._header()
            else:
                self._keyval(table)

    def span(self, start: int, end: int) -> Span:
        row = bisect_right(self.line_starts, start) - 1
        first = self.line_starts[row]
        line_end = self.text.find("\n", start)
        line_end = len(self.text) if line_end < 0 else line_end
        if self.text[line_end - 1 : line_end] == "\r":
            line_end -= 1
        return Span(row + 1, start - first + 1, min(end, line_end) - first + 1)

    def _skip(self, *, newlines: bool = False) -> None:
        """Skip spaces and tabs; with `newlines`, also line endings and comments."""
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self.pos += 1
            elif newlines and char == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def _mention(self, path: KeyPath, located: Located) -> None:
        self.index.setdefault(path, located)  # an implied table stays where first mentioned

    def _header(self) -> KeyPath:
        start = self.pos
        is_array = self.text.startswith("[[", start)
        self.pos += 2 if is_array else 1
        segments = self._key()
        self.pos += 2 if is_array else 1
        header = self.span(start, self.pos)
        path: KeyPath = ()
        for name, key_span in segments[:-1]:
            path = (*path, name)
            self._mention(path, Located(key_span, None))
            if path in self.aot_counts:  # `[a.b]` after `[[a]]` continues a's last item
                path = (*path, self.aot_counts[path] - 1)
        name, last_key = segments[-1]
        path = (*path, name)
        key: Span | None = last_key
        if is_array:
            self._mention(path, Located(last_key, header))
            count = self.aot_counts.get(path, 0)
            self.aot_counts[path] = count + 1
            path, key = (*path, count), None
        self.index[path] = Located(key, header)  # a header beats an earlier mention
        self.headers.add(path)
        return path

    def _key(self) -> list[tuple[str, Span]]:
        """A possibly dotted key: each segment's decoded name and span."""
        text = self.text
        segments: list[tuple[str, Span]] = []
        while True:
            self._skip()
            start = end = self.pos
            if text[start] == '"':
                end = self._basic_end(start)
                name = str(tomllib.loads("k = " + text[start:end])["k"])
            elif text[start] == "'":
                end = text.index("'", start + 1) + 1
                name = text[start + 1 : end - 1]
            else:
                while end < len(text) and text[end] in _BARE_KEY:
                    end += 1
                name = text[start:end]
            segments.append((name, self.span(start, end)))
            self.pos = end
            self._skip()
            if not text.startswith(".", self.pos):
                return segments
            self.pos += 1

    def _keyval(self, table: KeyPath) -> None:
        segments = self._key()
        path = table
        for name, key_span in segments[:-1]:
            path = (*path, name)
            self._mention(path, Located(key_span, None))
        name, key_span = segments[-1]
        path = (*path, name)
        self.pos += 1  # "=", after the spaces `_key` skipped
        self._skip()
        self.index[path] = Located(key_span, self._value(path))

    def _value(self, path: KeyPath) -> Span:
        text, start = self.text, self.pos
        char = text[start]
        if text.startswith('"""', start) or text.startswith("'''", start):
            self.pos = self._multiline_end(start, char)
        elif char == '"':
            self.pos = self._basic_end(start)
        elif char == "'":
            self.pos = text.index("'", start + 1) + 1
        elif char == "[":
            self._array(path)
        elif char == "{":
            self._inline_table(path)
        else:
            self.pos = self._scalar_end(start)
        return self.span(start, self.pos)

    def _array(self, path: KeyPath) -> None:
        self.pos += 1
        index = 0
        while True:
            self._skip(newlines=True)
            if self.text[self.pos] == "]":
                self.pos += 1
                return
            item = (*path, index)
            self.index[item] = Located(None, self._value(item))
            index += 1
            self._skip(newlines=True)
            if self.text[self.pos] == ",":
                self.pos += 1

    def _inline_table(self, path: KeyPath) -> None:
        self.pos += 1
        while True:
            self._skip(newlines=True)
            if self.text[self.pos] == "}":
                self.pos += 1
                return
            self._keyval(path)
            self._skip(newlines=True)
            if self.text[self.pos] == ",":
                self.pos += 1

    def _basic_end(self, start: int) -> int:
        """End of the single-line basic string opening at `start`."""
        text, i = self.text, start + 1
        while text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        return i + 1

    def _multiline_end(self, start: int, quote: str) -> int:
        """End of the multi-line string opening at `start`; up to two quotes may precede
        the closing delimiter, so the string ends after a run of three to five quotes."""
        text, i = self.text, start + 3
        while not text.startswith(quote * 3, i):
            i += 2 if quote == '"' and text[i] == "\\" else 1
        end = i + 3
        while end < i + 5 and text.startswith(quote, end):
            end += 1
        return end

    def _scalar_end(self, start: int) -> int:
        """End of a number, boolean, date or time; `1979-05-27 07:32:00` has one space."""
        end = self._token_end(start)
        time_follows = self.text[end : end + 2] in _SPACE_DIGITS
        if time_follows and _DATE.fullmatch(self.text, start, end):
            end = self._token_end(end + 1)
        return end

    def _token_end(self, start: int) -> int:
        end = start
        while end < len(self.text) and self.text[end] not in _SCALAR_END:
            end += 1
        return end
