"""Tests for `uvhost.config.errors`: the exact text of a rendered diagnostic, did-you-mean
hints, and pydantic errors translated into problems at the right key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from uvhost.config.errors import (
    Diagnostic,
    Problem,
    count,
    did_you_mean,
    place,
    problems_from_validation,
    render,
)
from uvhost.config.model import HostConfig, validate_config
from uvhost.config.source import Span, parse_source

# ------------------------------------------------------------------ render


def diagnostic(
    line_text: str, span: Span | None, *, hint: str = "a hint", severity: str = "error"
) -> Diagnostic:
    return Diagnostic(
        severity,  # type: ignore[arg-type]
        "something is wrong",
        hint,
        Path("uvhost.toml"),
        span,
        line_text,
    )


def test_render_marks_the_span() -> None:
    text = render(diagnostic('bind = "127.0.0.1:80"', Span(3, 8, 22)), "uvhost.toml")
    assert text == (
        "uvhost.toml:3:8: error: something is wrong\n"
        ' 3 | bind = "127.0.0.1:80"\n'
        "   |        ^^^^^^^^^^^^^^\n"
        "   = hint: a hint"
    )


def test_render_marker_width_equals_the_span() -> None:
    for start, end in [(1, 2), (1, 5), (3, 4), (6, 11)]:
        text = render(diagnostic("abcdefghijk", Span(1, start, end)), "f")
        marker = text.splitlines()[2]
        assert marker == "   | " + " " * (start - 1) + "^" * (end - start)


def test_render_widens_the_gutter_for_long_line_numbers() -> None:
    text = render(diagnostic("key = 1", Span(123, 1, 4), hint=""), "f.toml")
    assert text == ("f.toml:123:1: error: something is wrong\n 123 | key = 1\n     | ^^^")


def test_render_keeps_tabs_aligned() -> None:
    # Columns count code points, so a tab is one column: shown as one space.
    text = render(diagnostic("\tport\t= 80", Span(1, 2, 6)), "f")
    assert text.splitlines()[1:3] == [" 1 |  port = 80", "   |  ^^^^"]


def test_render_clips_a_span_past_the_end_of_the_line() -> None:
    text = render(diagnostic("routes = {", Span(4, 10, 40)), "f")
    assert text.splitlines()[1:3] == [" 4 | routes = {", "   |          ^"]


def test_render_marks_at_least_one_character_at_the_end_of_a_line() -> None:
    text = render(diagnostic("key =   ", Span(1, 6, 7)), "f")
    assert text.splitlines()[1:3] == [" 1 | key =", "   |      ^"]


def test_render_without_a_span() -> None:
    assert render(diagnostic("", None, hint="pass a path"), "missing.toml") == (
        "missing.toml: error: something is wrong\n  = hint: pass a path"
    )
    assert render(diagnostic("", None, hint=""), "missing.toml") == (
        "missing.toml: error: something is wrong"
    )


def test_render_warnings() -> None:
    text = render(diagnostic("a = 1", Span(1, 1, 2), severity="warning", hint=""), "f")
    assert text.splitlines()[0] == "f:1:1: warning: something is wrong"


def test_count_by_severity() -> None:
    found = [
        diagnostic("", None),
        diagnostic("", None, severity="warning"),
        diagnostic("", None),
    ]
    assert count(found, "error") == 2
    assert count(found, "warning") == 1


def test_as_json() -> None:
    found = diagnostic("x", Span(2, 3, 5)).as_json("shown.toml")
    assert found == {
        "severity": "error",
        "file": "shown.toml",
        "line": 2,
        "column": 3,
        "end_column": 5,
        "message": "something is wrong",
        "hint": "a hint",
    }
    assert diagnostic("", None).as_json("f")["line"] is None


def test_place_points_at_the_key_or_the_value() -> None:
    document = parse_source('[host]\nworkers = "many"\n', Path("f.toml"))
    at_value = place(Problem("bad", "", ("host", "workers")), document)
    at_key = place(Problem("bad", "", ("host", "workers"), at="key"), document)
    assert at_value.span == Span(2, 11, 17)
    assert at_key.span == Span(2, 1, 8)
    assert at_value.source_line == 'workers = "many"'
    assert at_value.file == Path("f.toml")
    missing = place(Problem("bad", "", ("host", "nothing_here"), at="key"), document)
    assert missing.span == Span(1, 1, 7)  # the whole [host] header


# ------------------------------------------------------------- did you mean


def test_did_you_mean_a_close_choice() -> None:
    assert did_you_mean("graceful_timout", ["workers", "graceful_timeout"]) == (
        'did you mean "graceful_timeout"?'
    )
    assert did_you_mean("sit", ["site", "api"]) == 'did you mean "site"?'


def test_did_you_mean_lists_choices_when_nothing_is_close() -> None:
    assert did_you_mean("zzz", ["b", "a"]) == "expected one of: a, b"


def test_did_you_mean_shortens_long_lists() -> None:
    choices = [f"choice{n:02}" for n in range(20)]
    hint = did_you_mean("zzz", choices)
    assert hint.startswith("expected one of: choice00, choice01")
    assert hint.endswith("choice11, ...")


def test_did_you_mean_with_no_choices() -> None:
    assert did_you_mean("x", []) == ""


# ------------------------------------------------ pydantic errors → problems

BASE: dict[str, Any] = {
    "listeners": {"public": {"bind": "127.0.0.1:8000", "app": "site"}},
    "apps": {"site": {"target": "site:app"}},
}


def problems_for(**sections: Any) -> list[Problem]:
    data = {**BASE, **sections}
    with pytest.raises(ValidationError) as caught:
        validate_config(data, Path("/srv"))
    return problems_from_validation(caught.value, HostConfig)


def one(problems: list[Problem], path: tuple[str | int, ...]) -> Problem:
    found = [problem for problem in problems if problem.path == path]
    assert len(found) == 1, problems
    return found[0]


def test_unknown_key_in_a_section() -> None:
    problem = one(problems_for(host={"wrokers": 2}), ("host", "wrokers"))
    assert problem.message == 'unknown key "wrokers" in [host]'
    assert problem.hint == 'did you mean "workers"?'
    assert problem.at == "key"


def test_unknown_key_in_a_named_listener() -> None:
    listeners = {"public": {"bind": "127.0.0.1:8000", "app": "site", "keep_alive": "5s"}}
    problem = one(problems_for(listeners=listeners), ("listeners", "public", "keep_alive"))
    assert problem.message == 'unknown key "keep_alive" in [listeners.public]'
    assert problem.hint == 'did you mean "keep_alive_timeout"?'


def test_unknown_key_in_a_listeners_tls_table() -> None:
    tls = {"certificate": "c.pem", "clent_ca": "ca.pem"}
    listeners = {"public": {"bind": "127.0.0.1:8000", "app": "site", "tls": tls}}
    problem = one(problems_for(listeners=listeners), ("listeners", "public", "tls", "clent_ca"))
    assert problem.message == 'unknown key "clent_ca" in [listeners.public.tls]'
    assert problem.hint == 'did you mean "client_ca"?'
    assert problem.at == "key"


def test_unknown_key_in_an_apps_websocket_table() -> None:
    apps = {"site": {"target": "site:app", "websocket": {"ping_intervall": "1s"}}}
    problem = one(problems_for(apps=apps), ("apps", "site", "websocket", "ping_intervall"))
    assert problem.message == 'unknown key "ping_intervall" in [apps.site.websocket]'
    assert problem.hint == 'did you mean "ping_interval"?'


def test_unknown_key_far_from_any_lists_the_sections_fields() -> None:
    problem = one(problems_for(logging={"zzz": 1}), ("logging", "zzz"))
    assert problem.hint == (
        "expected one of: access_fields, access_format, access_log, dict_config, file, format,"
        " level, loggers, slow_request_threshold"
    )


def test_unknown_top_level_section() -> None:
    problem = one(problems_for(listener={}), ("listener",))
    assert '"listener"' in problem.message
    assert problem.hint == 'did you mean "listeners"?'


def test_quoted_names_in_section_names() -> None:
    listeners = {"my-site": {"bind": "127.0.0.1:1", "app": "site", "tls": {"x": 1}}}
    problems = problems_for(listeners=listeners)
    problem = one(problems, ("listeners", "my-site", "tls", "x"))
    assert problem.message == 'unknown key "x" in [listeners.my-site.tls]'


def test_missing_required_key_points_at_the_table() -> None:
    # (An app's target is no longer required: a folder app has none; checks.py reports an
    # app with neither.)
    listeners = {"public": {"app": "site"}}
    problem = one(problems_for(listeners=listeners), ("listeners", "public"))
    assert problem.message == '[listeners.public] is missing the required key "bind"'
    assert problem.hint == "add bind = ... to [listeners.public]"
    assert problem.at == "key"


def test_missing_certificate_in_tls() -> None:
    listeners = {"public": {"bind": "127.0.0.1:8000", "app": "site", "tls": {}}}
    problem = one(problems_for(listeners=listeners), ("listeners", "public", "tls"))
    assert problem.message == '[listeners.public.tls] is missing the required key "certificate"'


def test_literal_errors_list_the_choices() -> None:
    problem = one(problems_for(logging={"level": "loud"}), ("logging", "level"))
    assert problem.message == '"loud" is not allowed here'
    for choice in ("critical", "error", "warning", "info", "debug"):
        assert f'"{choice}"' in problem.hint
    assert problem.at == "value"


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ({"host": {"max_requests": "x"}}, ("host", "max_requests"), 'expected an integer, got "x"'),
        (
            {"host": {"max_requests": [1]}},
            ("host", "max_requests"),
            "expected an integer, got an array",
        ),
        ({"host": {"max_requests": 1.5}}, ("host", "max_requests"), "expected an integer, got 1.5"),
        ({"host": {"watch": [True]}}, ("host", "watch"), "expected true or false, got an array"),
        ({"logging": {"loggers": 5}}, ("logging", "loggers"), "expected a table, got 5"),
        ({"host": 5}, ("host",), "expected a table, got 5"),
        ({"host": {"env_files": 5}}, ("host", "env_files"), "expected an array, got 5"),
    ],
)
def test_type_errors_say_what_was_expected(
    section: dict[str, Any], path: tuple[str, ...], message: str
) -> None:
    problem = one(problems_for(**section), path)
    assert problem.message == message
    assert problem.at == "value"


def test_range_errors() -> None:
    listeners = {"public": {"bind": "127.0.0.1:8000", "app": "site", "backlog": 0}}
    problem = one(problems_for(listeners=listeners), ("listeners", "public", "backlog"))
    assert problem.message == "0 is out of range"
    assert problem.hint == "the smallest allowed value is 1"


def test_value_errors_keep_the_types_message_and_hint() -> None:
    listeners = {"public": {"bind": "127.0.0.1:99999", "app": "site"}}
    problem = one(problems_for(listeners=listeners), ("listeners", "public", "bind"))
    assert problem.message == '"99999" is not a port'
    assert problem.hint == "a port is a number from 0 to 65535 (0 picks a free one)"


def test_a_value_error_about_one_entry_points_at_that_entry() -> None:
    listeners = {"public": {"bind": "127.0.0.1:8000", "app": "site", "protocols": ["h2", "h2"]}}
    problem = one(problems_for(listeners=listeners), ("listeners", "public", "protocols", 1))
    assert problem.message == '"h2" is listed twice'
    assert problem.at == "value"


def test_a_size_out_of_its_range_says_the_bounds() -> None:
    http2 = {"max_frame_size": "8KiB"}
    listeners = {"public": {"bind": "127.0.0.1:8000", "app": "site", "http2": http2}}
    path = ("listeners", "public", "http2", "max_frame_size")
    problem = one(problems_for(listeners=listeners), path)
    assert problem.message == "8KiB (8192 bytes) is below the minimum of 16KiB (16384 bytes)"
    assert problem.hint == (
        "write a size from 16KiB (16384 bytes) to 16777215 bytes (RFC 9113 6.5.2)"
    )


def test_unknown_key_in_a_listeners_http2_table() -> None:
    http2 = {"max_concurent_streams": 10}
    listeners = {"public": {"bind": "127.0.0.1:8000", "app": "site", "http2": http2}}
    path = ("listeners", "public", "http2", "max_concurent_streams")
    problem = one(problems_for(listeners=listeners), path)
    assert problem.message == 'unknown key "max_concurent_streams" in [listeners.public.http2]'
    assert problem.hint == 'did you mean "max_concurrent_streams"?'


def test_the_header_list_size_is_the_listeners_max_header_bytes() -> None:
    http2 = {"max_header_list_size": "64KiB"}
    listeners = {"public": {"bind": "127.0.0.1:8000", "app": "site", "http2": http2}}
    path = ("listeners", "public", "http2", "max_header_list_size")
    problem = one(problems_for(listeners=listeners), path)
    assert problem.message == 'unknown key "max_header_list_size" in [listeners.public.http2]'
    assert "the listener's max_header_bytes" in problem.hint


def test_bad_table_names_are_blamed_on_the_key() -> None:
    apps = {"site": {"target": "site:app"}, "bad name": {"target": "x:y"}}
    problem = one(problems_for(apps=apps), ("apps", "bad name"))
    assert problem.message == '"bad name" is not a valid app name'
    assert problem.at == "key"


def test_every_error_is_translated_and_none_mentions_pydantic() -> None:
    problems = problems_for(
        host={"workers": 0, "wrokers": 1},
        logging={"level": 3},
        apps={"site": {"target": "nope"}},
    )
    assert len(problems) == 4
    for problem in problems:
        assert "pydantic" not in problem.message.lower()
        assert "Input should" not in problem.message
