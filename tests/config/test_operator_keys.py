"""The operator keys of issue 19 through the whole loader: each mistake is reported with its
line and column, like every other key, and a good value loads."""

from __future__ import annotations

import re
from pathlib import Path

from uvhost.config.load import LoadResult, load_config

BASE = """
        [listeners.public]
        bind = "127.0.0.1:0"
        app = "site"

        [apps.site]
        target = "site:app"
"""


def load(folder: Path, text: str) -> LoadResult:
    path = folder / "uvhost.toml"
    path.write_text(re.sub(r"^ {8}", "", text, flags=re.M).lstrip("\n"), encoding="utf-8")
    return load_config(path, environ={})


def found(result: LoadResult) -> list[tuple[str, str, int | None, int | None]]:
    return [
        (d.severity, d.message, d.span.line if d.span else None, d.span.column if d.span else None)
        for d in result.diagnostics
    ]


def test_request_id_table(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        BASE
        + """
        [listeners.public.request_id]
        header = "X Request"
        trust = "everyone"
        respond = true
        """,
    )
    problems = found(result)
    assert [(line, column) for _, _, line, column in problems] == [(9, 10), (10, 9), (11, 1)]
    assert "not a valid header name" in problems[0][1] or "header" in problems[0][1]
    good = load(tmp_path, BASE + '\n        [listeners.public.request_id]\n        trust = "all"\n')
    assert good.ok
    assert good.config is not None
    settings = good.config.listeners["public"].request_id
    assert settings is not None
    assert (settings.header, settings.trust, settings.response) == ("X-Request-ID", "all", True)


def test_an_unknown_access_field_names_its_place(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [logging]
        format = "json"
        access_format = "{client} {stauts}"
        access_fields = ["status", "clinet", "status"]
        """
        + BASE,
    )
    assert found(result) == [
        ("error", '"{stauts}" is not an access log field', 3, 17),
        ("error", '"clinet" is not an access log field', 4, 28),
    ]
    hints = [d.hint for d in result.diagnostics]
    assert hints == ['did you mean "status"?', 'did you mean "client"?']


def test_access_format_specs_and_conversions(tmp_path: Path) -> None:
    for template, message in [
        ("{app:.1f}", '"{app:.1f}" is not a format for this field'),
        ("{status!r}", '"{status!r}": conversions are not supported'),
        ("{status", "has an unmatched brace"),
    ]:
        result = load(tmp_path, f'[logging]\naccess_format = "{template}"\n' + BASE)
        assert len(result.errors) == 1, template
        assert message in result.errors[0].message
        assert result.errors[0].span is not None
        assert result.errors[0].span.line == 2
    ok = load(tmp_path, '[logging]\naccess_format = "{duration_ms:8.2f} {app:>6} {{x}}"\n' + BASE)
    assert ok.ok


def test_a_field_listed_twice_and_a_list_without_json(tmp_path: Path) -> None:
    twice = load(tmp_path, '[logging]\nformat = "json"\naccess_fields = ["app", "app"]\n' + BASE)
    assert found(twice) == [("error", '"app" is listed twice', 3, 25)]
    plain = load(tmp_path, '[logging]\nformat = "plain"\naccess_fields = ["app"]\n' + BASE)
    assert plain.ok
    assert found(plain) == [("warning", 'access_fields has no effect unless format = "json"', 3, 1)]
