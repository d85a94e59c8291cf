"""Tests for `uvhost.config.source`: exact spans per construct, fallbacks, syntax errors,
and a round-trip property (the text at every span parses back to what tomllib read)."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from uvhost.config.source import (
    KeyPath,
    Located,
    SourceDocument,
    Span,
    TomlSyntaxError,
    parse_source,
    read_source,
)

# ------------------------------------------------------------------ helpers

Where = tuple[int, int, str] | None  # (line, column, text at the span); None: no span


def parse(text: str) -> SourceDocument:
    return parse_source(text, Path("uvhost.toml"))


def text_at(doc: SourceDocument, span: Span) -> str:
    return doc.line_text(span.line)[span.column - 1 : span.end_column - 1]


def span(where: tuple[int, int, str]) -> Span:
    line, column, text = where
    return Span(line, column, column + len(text))


def walk(value: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, (*path, index))


def same(a: Any, b: Any) -> bool:
    """Equality that holds NaN equal to NaN and tells `True` from `1`."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def assert_round_trips(doc: SourceDocument) -> None:
    """Every path in `doc.data` is indexed; every key and single-line value parses back."""
    for path, value in walk(doc.data):
        if not path:
            continue
        located = doc.find(path)
        assert located is not None, path
        last = path[-1]
        if isinstance(last, int):
            assert located.key is None, path
        else:
            assert located.key is not None, path
            key_text = text_at(doc, located.key)
            assert tomllib.loads(key_text + " = 1") == {last: 1}, (path, key_text)
        if located.value is None:
            assert isinstance(value, dict), path  # a table implied by a header or dotted key
            continue
        token = text_at(doc, located.value)
        line = doc.line_text(located.value.line)
        runs_to_line_end = located.value.end_column == len(line) + 1
        assert located.value.end_column > located.value.column
        if isinstance(value, dict | list):
            assert token[0] in "[{", (path, token)
            if isinstance(value, dict) and token[0] == "[":
                continue  # a `[table]` or `[[array.item]]` header
            first = doc.find((*path, 0))
            if first is not None and first.value == located.value:
                continue  # an array of tables, located at its first `[[header]]`
        if token.startswith(('"""', "'''")):
            assert runs_to_line_end, (path, token)  # a multi-line string stops at line end
            continue
        try:
            parsed = tomllib.loads("x = " + token)["x"]
        except tomllib.TOMLDecodeError:
            # an array (or inline table holding one) written over several lines
            assert isinstance(value, list | dict), (path, token)
            assert runs_to_line_end, (path, token)
            continue
        assert same(parsed, value), (path, token, parsed, value)


# ------------------------------------------------------------ exact spans

CONFIG = """\
#:schema ./schemas/uvhost.schema.json
# uvhost config

[host]
graceful_timeout = "30s"   # comment
env_files = [".env", 'prod.env']
workers = 4

[listeners.public]
bind = "0.0.0.0:8000"
routes = { "/" = "site", "/api" = "api" }

[listeners.admin]
bind = "unix:/run/admin.sock"

[apps.site]
module = "site:app"
"""

AOT = """\
[[x]]
k = 1

[[x]]
k = 2
[x.sub]
y = 3
[[x.items]]
z = 4
"""

STRINGS = "\n".join(
    [
        r'basic = "a \"quoted\" \\ \u00e9 # not a comment"',
        r"""literal = 'C:\path "x" #'""",
        'ml = """',
        'first "line" with "" quotes',
        "second \\",
        '  continued"""',
        "after_ml = 1",
        "mll = '''one",
        "two '' three'''",
        "after_mll = 2",
        'quotes = """ends with two quotes"""""',
        "last = 3",
        "",
    ]
)

SCALARS = """\
hex = 0xDEAD_beef
oct = 0o755
bin = 0b1010
neg = -1_000
pos = +17
flt = 6.626e-34
inf = -inf
nan = +nan
odt = 1979-05-27T07:32:00.999-07:00
ods = 1979-05-27 07:32:00Z # space separator
ld = 1979-05-27 # comment
lt = 07:32:00
arr = [1979-05-27, 1979-05-27 00:00:00, 2.5]
tf = [true,false]
"""

MULTILINE_ARRAY = """\
env_files = [  # files
  ".env",   # first
  # a comment line
  "prod.env",
]
after = 1
"""

INLINE = """\
t = { a = { b = [1, { c = 2 }] }, d.e = 3 }
apps = [{ name = "a" }, { name = "b" }]
nested = [[1, 2], [3]]
"""

KEYS = """\
"/api" = "x"
'lit.key' = 1
"é\\u00e9" = 2
bare-key_1 = 3
1234 = 4
a . "b.c" . d = 5
site.module = "m"
site.reload = true
"ключ" = "значение" # ü
"""

CASES: list[tuple[str, str, KeyPath, Where, Where]] = [
    # name, document, path, key, value
    ("schema comment", CONFIG, ("host",), (4, 2, "host"), (4, 1, "[host]")),
    ("string", CONFIG, ("host", "graceful_timeout"),
     (5, 1, "graceful_timeout"), (5, 20, '"30s"')),
    ("array", CONFIG, ("host", "env_files"),
     (6, 1, "env_files"), (6, 13, "[\".env\", 'prod.env']")),
    ("array item", CONFIG, ("host", "env_files", 0), None, (6, 14, '".env"')),
    ("literal item", CONFIG, ("host", "env_files", 1), None, (6, 22, "'prod.env'")),
    ("integer", CONFIG, ("host", "workers"), (7, 1, "workers"), (7, 11, "4")),
    ("implied table", CONFIG, ("listeners",), (9, 2, "listeners"), None),
    ("header", CONFIG, ("listeners", "public"),
     (9, 12, "public"), (9, 1, "[listeners.public]")),
    ("inline table", CONFIG, ("listeners", "public", "routes"),
     (11, 1, "routes"), (11, 10, '{ "/" = "site", "/api" = "api" }')),
    ("inline key", CONFIG, ("listeners", "public", "routes", "/"),
     (11, 12, '"/"'), (11, 18, '"site"')),
    ("inline key 2", CONFIG, ("listeners", "public", "routes", "/api"),
     (11, 26, '"/api"'), (11, 35, '"api"')),
    ("second header", CONFIG, ("listeners", "admin"),
     (13, 12, "admin"), (13, 1, "[listeners.admin]")),
    ("key under header", CONFIG, ("apps", "site", "module"),
     (17, 1, "module"), (17, 10, '"site:app"')),
    ("quoted header", '[ listeners . "my app" ]\nx = 1\n', ("listeners", "my app"),
     (1, 15, '"my app"'), (1, 1, '[ listeners . "my app" ]')),
    ("literal header", "[a.'b.c']\n", ("a", "b.c"), (1, 4, "'b.c'"), (1, 1, "[a.'b.c']")),
    ("explicit after implied", "[a.b.c]\nx = 1\n[a]\ny = 2\n", ("a",),
     (3, 2, "a"), (3, 1, "[a]")),
    ("implied by header", "[a.b.c]\nx = 1\n[a]\ny = 2\n", ("a", "b"), (1, 4, "b"), None),
    ("implied: first mention", '[l.p.tls]\nc = "c"\n[l.p.x]\n', ("l", "p"),
     (1, 4, "p"), None),
    ("aot", AOT, ("x",), (1, 3, "x"), (1, 1, "[[x]]")),
    ("aot item 0", AOT, ("x", 0), None, (1, 1, "[[x]]")),
    ("aot item 1", AOT, ("x", 1), None, (4, 1, "[[x]]")),
    ("aot key", AOT, ("x", 1, "k"), (5, 1, "k"), (5, 5, "2")),
    ("table in aot item", AOT, ("x", 1, "sub"), (6, 4, "sub"), (6, 1, "[x.sub]")),
    ("key in that table", AOT, ("x", 1, "sub", "y"), (7, 1, "y"), (7, 5, "3")),
    ("nested aot", AOT, ("x", 1, "items"), (8, 5, "items"), (8, 1, "[[x.items]]")),
    ("nested aot item", AOT, ("x", 1, "items", 0), None, (8, 1, "[[x.items]]")),
    ("nested aot key", AOT, ("x", 1, "items", 0, "z"), (9, 1, "z"), (9, 5, "4")),
    ("escapes", STRINGS, ("basic",),
     (1, 1, "basic"), (1, 9, r'"a \"quoted\" \\ \u00e9 # not a comment"')),
    ("literal string", STRINGS, ("literal",), (2, 1, "literal"), (2, 11, "'C:\\path \"x\" #'")),
    ("multi-line basic", STRINGS, ("ml",), (3, 1, "ml"), (3, 6, '"""')),
    ("after multi-line", STRINGS, ("after_ml",), (7, 1, "after_ml"), (7, 12, "1")),
    ("multi-line literal", STRINGS, ("mll",), (8, 1, "mll"), (8, 7, "'''one")),
    ("after ml literal", STRINGS, ("after_mll",), (10, 1, "after_mll"), (10, 13, "2")),
    ("quotes before close", STRINGS, ("quotes",),
     (11, 1, "quotes"), (11, 10, '"""ends with two quotes"""""')),
    ("last", STRINGS, ("last",), (12, 1, "last"), (12, 8, "3")),
    ("hex", SCALARS, ("hex",), (1, 1, "hex"), (1, 7, "0xDEAD_beef")),
    ("oct", SCALARS, ("oct",), (2, 1, "oct"), (2, 7, "0o755")),
    ("bin", SCALARS, ("bin",), (3, 1, "bin"), (3, 7, "0b1010")),
    ("negative", SCALARS, ("neg",), (4, 1, "neg"), (4, 7, "-1_000")),
    ("positive", SCALARS, ("pos",), (5, 1, "pos"), (5, 7, "+17")),
    ("float", SCALARS, ("flt",), (6, 1, "flt"), (6, 7, "6.626e-34")),
    ("inf", SCALARS, ("inf",), (7, 1, "inf"), (7, 7, "-inf")),
    ("nan", SCALARS, ("nan",), (8, 1, "nan"), (8, 7, "+nan")),
    ("offset date-time", SCALARS, ("odt",), (9, 1, "odt"),
     (9, 7, "1979-05-27T07:32:00.999-07:00")),
    ("space date-time", SCALARS, ("ods",), (10, 1, "ods"), (10, 7, "1979-05-27 07:32:00Z")),
    ("local date", SCALARS, ("ld",), (11, 1, "ld"), (11, 6, "1979-05-27")),
    ("local time", SCALARS, ("lt",), (12, 1, "lt"), (12, 6, "07:32:00")),
    ("date item", SCALARS, ("arr", 0), None, (13, 8, "1979-05-27")),
    ("date-time item", SCALARS, ("arr", 1), None, (13, 20, "1979-05-27 00:00:00")),
    ("float item", SCALARS, ("arr", 2), None, (13, 41, "2.5")),
    ("bool item", SCALARS, ("tf", 1), None, (14, 12, "false")),
    ("multi-line array", MULTILINE_ARRAY, ("env_files",),
     (1, 1, "env_files"), (1, 13, "[  # files")),
    ("item after comment", MULTILINE_ARRAY, ("env_files", 0), None, (2, 3, '".env"')),
    ("item after comment line", MULTILINE_ARRAY, ("env_files", 1), None,
     (4, 3, '"prod.env"')),
    ("after multi-line array", MULTILINE_ARRAY, ("after",), (6, 1, "after"), (6, 9, "1")),
    ("nested inline", INLINE, ("t",),
     (1, 1, "t"), (1, 5, "{ a = { b = [1, { c = 2 }] }, d.e = 3 }")),
    ("inner inline", INLINE, ("t", "a"), (1, 7, "a"), (1, 11, "{ b = [1, { c = 2 }] }")),
    ("inline in array", INLINE, ("t", "a", "b", 1), None, (1, 21, "{ c = 2 }")),
    ("deepest", INLINE, ("t", "a", "b", 1, "c"), (1, 23, "c"), (1, 27, "2")),
    ("dotted in inline", INLINE, ("t", "d"), (1, 35, "d"), None),
    ("dotted leaf in inline", INLINE, ("t", "d", "e"), (1, 37, "e"), (1, 41, "3")),
    ("array of inline", INLINE, ("apps", 1), None, (2, 25, '{ name = "b" }')),
    ("key in array of inline", INLINE, ("apps", 1, "name"), (2, 27, "name"), (2, 34, '"b"')),
    ("nested array", INLINE, ("nested", 0), None, (3, 11, "[1, 2]")),
    ("nested item", INLINE, ("nested", 0, 1), None, (3, 15, "2")),
    ("nested item 2", INLINE, ("nested", 1, 0), None, (3, 20, "3")),
    ("quoted key", KEYS, ("/api",), (1, 1, '"/api"'), (1, 10, '"x"')),
    ("literal key with dot", KEYS, ("lit.key",), (2, 1, "'lit.key'"), (2, 13, "1")),
    ("escaped key", KEYS, ("éé",), (3, 1, '"é\\u00e9"'), (3, 13, "2")),
    ("bare key", KEYS, ("bare-key_1",), (4, 1, "bare-key_1"), (4, 14, "3")),
    ("digit key", KEYS, ("1234",), (5, 1, "1234"), (5, 8, "4")),
    ("dotted, spaced", KEYS, ("a", "b.c", "d"), (6, 13, "d"), (6, 17, "5")),
    ("dotted prefix", KEYS, ("a", "b.c"), (6, 5, '"b.c"'), None),
    ("dotted first", KEYS, ("site",), (7, 1, "site"), None),
    ("dotted leaf", KEYS, ("site", "module"), (7, 6, "module"), (7, 15, '"m"')),
    ("dotted again", KEYS, ("site", "reload"), (8, 6, "reload"), (8, 15, "true")),
    ("non-ascii", KEYS, ("ключ",), (9, 1, '"ключ"'), (9, 10, '"значение"')),
    ("crlf header", '[a]\r\n\tkey\t=\t"v"\r\nk2 = [\r\n  1,\r\n]\r\n', ("a",),
     (1, 2, "a"), (1, 1, "[a]")),
    ("crlf, tabs", '[a]\r\n\tkey\t=\t"v"\r\nk2 = [\r\n  1,\r\n]\r\n', ("a", "key"),
     (2, 2, "key"), (2, 8, '"v"')),
    ("crlf array", '[a]\r\n\tkey\t=\t"v"\r\nk2 = [\r\n  1,\r\n]\r\n', ("a", "k2"),
     (3, 1, "k2"), (3, 6, "[")),
    ("crlf item", '[a]\r\n\tkey\t=\t"v"\r\nk2 = [\r\n  1,\r\n]\r\n', ("a", "k2", 0),
     None, (4, 3, "1")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("document", "path", "key", "value"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_spans(document: str, path: KeyPath, key: Where, value: Where) -> None:
    doc = parse(document)
    expected = Located(span(key) if key else None, span(value) if value else None)
    assert doc.find(path) == expected
    if key:
        assert text_at(doc, span(key)) == key[2]
    if value:
        assert text_at(doc, span(value)) == value[2]


@pytest.mark.parametrize("document", sorted({case[1] for case in CASES}))
def test_hand_written_documents_round_trip(document: str) -> None:
    assert_round_trips(parse(document))


STYLES = [
    """\
[server]
a.b.c = 1
a.d = { e = [1, { f = "g", h = [] }], i = {} }
"quoted.key".x = 'lit'
arr = [
  [1, 2.5, "three"],  # mixed
  { k = 1979-05-27 07:32:00 },
]

[[fruit]]
name = "apple"
[fruit.physical]
color = "red"
[[fruit.variety]]
name = "red delicious"
[[fruit]]
name = "banana"
[[fruit.variety]]
name = "plantain"
""",
    'x = """\nline "1"\n"""\ny = \'\'\'\n\'\'\'\n[t]\nz = "z"\n',
    "[a]\n[a.b.c]\n[a.'b'.\"d\"]\ne = 1\n",
    "\"é\" = 'é'\n'ü'.'\"' = [1979-05-27, 07:32:00, 1e3]\n",
]


@pytest.mark.parametrize("document", STYLES)
def test_other_styles_round_trip(document: str) -> None:
    assert_round_trips(parse(document))


def test_line_text() -> None:
    doc = parse("a = 1\r\nb = 'x\u2028y'\n")
    assert doc.line_text(1) == "a = 1"
    assert doc.line_text(2) == "b = 'x\u2028y'"  # U+2028 does not end a TOML line
    assert doc.line_text(3) == ""
    assert doc.line_text(0) == ""
    assert doc.line_text(4) == ""


def test_empty_document() -> None:
    doc = parse("")
    assert doc.data == {}
    assert doc.find(("x",)) is None
    assert doc.locate_key(("x",)) == Span(1, 1, 2)


# --------------------------------------------------------------- fallbacks


@pytest.mark.parametrize(
    ("document", "path", "method", "expected"),
    [
        # a missing key in a `[table]`: the whole header
        (CONFIG, ("apps", "site", "target"), "key", (16, 1, "[apps.site]")),
        (CONFIG, ("apps", "site", "target"), "value", (16, 1, "[apps.site]")),
        # a key that exists
        (CONFIG, ("apps", "site", "module"), "key", (17, 1, "module")),
        (CONFIG, ("apps", "site", "module"), "value", (17, 10, '"site:app"')),
        (CONFIG, ("apps", "site"), "key", (16, 7, "site")),
        # array items have no key: their array's key; their own value when asked
        (CONFIG, ("host", "env_files", 0), "key", (6, 1, "env_files")),
        (CONFIG, ("host", "env_files", 0), "value", (6, 14, '".env"')),
        (CONFIG, ("host", "env_files", 7), "value", (6, 1, "env_files")),
        # an implied table has no value span: its key
        (CONFIG, ("listeners",), "value", (9, 2, "listeners")),
        # a missing key in an inline table: the inline table's key
        (CONFIG, ("listeners", "public", "routes", "/x"), "key", (11, 1, "routes")),
        # pydantic loc parts that are not keys fall back the same way
        (CONFIG, ("listeners", "admin", "bind", "tagged-union[tcp]"), "key", (14, 1, "bind")),
        (CONFIG, ("nope", "deeper"), "key", (1, 1, "#")),
        (CONFIG, (), "value", (1, 1, "#")),
        # arrays of tables: an item's header, for itself and for what is missing in it
        (AOT, ("x", 1), "key", (4, 1, "[[x]]")),
        (AOT, ("x", 1, "missing"), "key", (4, 1, "[[x]]")),
        (AOT, ("x", 1, "missing"), "value", (4, 1, "[[x]]")),
        (AOT, ("x", 1, "sub", "missing"), "value", (6, 1, "[x.sub]")),
        (AOT, ("x", 5, "k"), "key", (1, 3, "x")),
        # inside an inline table in an array: that inline table
        (INLINE, ("apps", 1, "missing"), "key", (2, 25, '{ name = "b" }')),
        # inside a table implied by a dotted key: its key
        (KEYS, ("site", "missing"), "value", (7, 1, "site")),
    ],
)
def test_fallbacks(
    document: str, path: KeyPath, method: str, expected: tuple[int, int, str]
) -> None:
    doc = parse(document)
    located = doc.locate_key(path) if method == "key" else doc.locate_value(path)
    assert located == span(expected)
    assert text_at(doc, located) == expected[2]


# ----------------------------------------------------------- syntax errors


@pytest.mark.parametrize(
    ("document", "message", "line", "column"),
    [
        ("a = 1\nb = \n", "Invalid value", 2, 5),
        ("[table\nx=1", "Expected ']' at the end of a table declaration", 1, 7),
        ("a = 1\na = 2\n", "Cannot overwrite a value", 2, 6),
        ('a = "ééé" b\n', "Expected newline or end of document after a statement", 1, 11),
        ("\ufeffa = 1\n", "Invalid statement", 1, 1),
        # "at end of document": just past the last line with text
        ('x = "abc', "Unterminated string", 1, 9),
        ("x = [1,\n2,\n\n", "Invalid value", 2, 3),
    ],
)
def test_syntax_errors(document: str, message: str, line: int, column: int) -> None:
    with pytest.raises(TomlSyntaxError) as caught:
        parse(document)
    assert caught.value.message == message
    assert caught.value.span == Span(line, column, column + 1)
    assert isinstance(caught.value.__cause__, tomllib.TOMLDecodeError)


# ------------------------------------------------------------- read_source


def test_read_source_keeps_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "uvhost.toml"
    path.write_bytes('[host]\r\nname = "é"\r\n'.encode())
    doc = read_source(path)
    assert doc.path == path
    assert doc.text == '[host]\r\nname = "é"\r\n'
    assert doc.data == {"host": {"name": "é"}}
    assert doc.locate_value(("host", "name")) == Span(2, 8, 11)


def test_read_source_errors_propagate(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_source(tmp_path / "missing.toml")
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "\xe9"\n')
    with pytest.raises(UnicodeDecodeError):
        read_source(path)


# ------------------------------------------------------------- property

KEYS_NEEDING_QUOTES = ["/api", "a.b", "é", "", "my app", 'say "hi"', "it's", "1.5", "#", "-_"]

keys = st.text(max_size=6) | st.sampled_from(KEYS_NEEDING_QUOTES)
scalars = (
    st.text()
    | st.sampled_from(["", '"', '""', '"""', "'''", "a\nb", "\\", "x\r\ny", "\u2028"])
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.booleans()
    | st.dates()
    | st.times()
    | st.datetimes(timezones=st.none() | st.just(UTC))
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=16,
)
documents = st.dictionaries(keys, values, max_size=5)


@settings(max_examples=200, deadline=None)
@given(data=documents, multiline_strings=st.booleans())
def test_tomli_w_output_round_trips(data: dict[str, Any], multiline_strings: bool) -> None:
    text = tomli_w.dumps(data, multiline_strings=multiline_strings)
    # (doc.data may differ from data: a multi-line string turns "\r\n" into "\n")
    assert_round_trips(parse(text))
