"""The pure rules of http_conditional.py: dates, entity-tags, preconditions, ranges, codings."""

from __future__ import annotations

import pytest

from uvhost.server.http_conditional import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    PROCEED,
    UNSATISFIABLE,
    ByteRange,
    accepted_encodings,
    entity_tags,
    http_date,
    if_range_holds,
    parse_http_date,
    parse_range,
    preconditions,
)

EPOCH_1994 = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT


@pytest.mark.parametrize(
    "text",
    [
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        b"Sunday, 06-Nov-94 08:49:37 GMT",
        b"Sun Nov  6 08:49:37 1994",
        b"  Sun, 06 Nov 1994 08:49:37 GMT ",
    ],
)
def test_the_three_date_forms(text: bytes) -> None:
    assert parse_http_date(text) == EPOCH_1994


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"yesterday",
        b"Sun, 06 Nov 1994 08:49:37 UTC",
        b"Sun, 32 Nov 1994 08:49:37 GMT",
        b"Sun, 06 Foo 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 25:49:37 GMT",
        b"Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
    ],
)
def test_what_is_not_a_date(text: bytes) -> None:
    assert parse_http_date(text) is None


def test_http_date_round_trips() -> None:
    assert http_date(EPOCH_1994) == b"Sun, 06 Nov 1994 08:49:37 GMT"


def test_entity_tags() -> None:
    assert entity_tags(b'"a", W/"b" ,"c"') == [(False, b'"a"'), (True, b'"b"'), (False, b'"c"')]
    assert entity_tags(b"a") is None
    assert entity_tags(b'"a" "b"') is None


E = b'"1-2-3"'


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, PROCEED),
        ({"if_match": E}, PROCEED),
        ({"if_match": b'W/"1-2-3"'}, PRECONDITION_FAILED),
        ({"if_match": b'"x", "1-2-3"'}, PROCEED),
        ({"if_match": b"*"}, PROCEED),
        ({"if_unmodified_since": b"Sun, 06 Nov 1994 08:49:36 GMT"}, PRECONDITION_FAILED),
        ({"if_unmodified_since": b"garbage"}, PROCEED),
        ({"if_match": E, "if_unmodified_since": b"Sun, 06 Nov 1994 08:49:36 GMT"}, PROCEED),
        ({"if_none_match": b'W/"1-2-3"'}, NOT_MODIFIED),
        ({"if_none_match": b'"x"', "if_modified_since": b"Sun, 06 Nov 1994 08:49:37 GMT"}, PROCEED),
        ({"if_modified_since": b"Sun, 06 Nov 1994 08:49:37 GMT"}, NOT_MODIFIED),
        ({"if_modified_since": b"Sun, 06 Nov 1994 08:49:36 GMT"}, PROCEED),
        ({"if_match": b'"x"', "if_none_match": E}, PRECONDITION_FAILED),
    ],
)
def test_preconditions_in_rfc_order(headers: dict[str, bytes], expected: int) -> None:
    arguments = {
        "if_match": None,
        "if_unmodified_since": None,
        "if_none_match": None,
        "if_modified_since": None,
        **headers,
    }
    assert preconditions(E, EPOCH_1994, safe=True, **arguments) == expected


def test_if_none_match_on_an_unsafe_method_is_412() -> None:
    assert (
        preconditions(
            E,
            0,
            if_match=None,
            if_unmodified_since=None,
            if_none_match=b"*",
            if_modified_since=None,
            safe=False,
        )
        == PRECONDITION_FAILED
    )


def test_if_range() -> None:
    date = b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert if_range_holds(E, E, date)
    assert not if_range_holds(b'W/"1-2-3"', E, date)
    assert if_range_holds(date, E, date)
    assert not if_range_holds(b"Sun, 06 Nov 1994 08:49:38 GMT", E, date)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"bytes=0-0", ByteRange(0, 0)),
        (b"bytes=0-", ByteRange(0, 99)),
        (b"bytes=-1", ByteRange(99, 99)),
        (b"bytes=-500", ByteRange(0, 99)),
        (b"bytes=90-200", ByteRange(90, 99)),
        (b"Bytes = 1-2", ByteRange(1, 2)),  # lenient about case and spaces
        (b"bytes=100-", UNSATISFIABLE),
        (b"bytes=-0", UNSATISFIABLE),
        (b"bytes=0-1,2-3", None),
        (b"bytes=3-2", None),
        (b"bytes=a-", None),
        (b"bytes=--1", None),
        (b"items=0-1", None),
    ],
)
def test_ranges(value: bytes, expected: ByteRange | None) -> None:
    assert parse_range(value, 100) == expected


def test_an_empty_file_ignores_range() -> None:
    assert parse_range(b"bytes=0-", 0) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"gzip, br", (b"br", b"gzip")),
        (b"gzip;q=0.8, br;q=0.5, zstd;q=0.9", (b"zstd", b"gzip", b"br")),
        (b"*", (b"br", b"zstd", b"gzip")),
        (b"*;q=0.5, gzip", (b"gzip", b"br", b"zstd")),
        (b"br;q=0, *", (b"zstd", b"gzip")),
        (b"identity", ()),
        (b"gzip;q=2", ()),
        (b"gzip;q=abc, br", (b"br",)),
        (b"GZIP", (b"gzip",)),
        (b"", ()),
    ],
)
def test_accepted_encodings(value: bytes, expected: tuple[bytes, ...]) -> None:
    assert accepted_encodings(value) == expected
