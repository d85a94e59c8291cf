"""The operator keys of issue 19 through the whole loader: each mistake is reported with its
line and column, like every other key, and a good value loads."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

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


DICT_CONFIG = """
        [logging.dict_config]
        version = 1

        [logging.dict_config.formatters.short]
        format = "%(levelname)s %(message)s"

        [logging.dict_config.handlers.app]
        class = "logging.StreamHandler"
        formatter = "short"
        level = "INFO"

        [logging.dict_config.loggers.myapp]
        handlers = ["app"]
        level = "DEBUG"
        propagate = false
"""


def test_an_inline_dict_config_loads(tmp_path: Path) -> None:
    result = load(tmp_path, DICT_CONFIG + BASE)
    assert result.ok, found(result)
    assert result.config is not None
    schema = result.config.logging.dict_config
    assert schema is not None
    assert schema["handlers"]["app"]["formatter"] == "short"


@pytest.mark.parametrize(
    ("edit", "message", "line", "column"),
    [
        ("version = 1", "dictConfig version must be 1, got 2", 2, 11),
        ('formatter = "short"', '"shrot" is not a formatter of this dictConfig', 9, 13),
        ('level = "INFO"', '"info" is not a logging level', 10, 9),
        ('handlers = ["app"]', '"ap" is not one of this dictConfig\'s handlers', 13, 13),
        ("propagate = false", 'unknown key "propagates" in a logger', 15, 14),
        ('format = "%(levelname)s %(message)s"', 'unknown key "fromat" in a formatter', 5, 10),
    ],
)
def test_dict_config_mistakes_are_placed(tmp_path, edit, message, line, column) -> None:
    broken = {
        "version = 1": "version = 2",
        'formatter = "short"': 'formatter = "shrot"',
        'level = "INFO"': 'level = "info"',
        'handlers = ["app"]': 'handlers = ["ap"]',
        "propagate = false": "propagates = false",
        'format = "%(levelname)s %(message)s"': 'fromat = "%(levelname)s %(message)s"',
    }[edit]
    result = load(tmp_path, DICT_CONFIG.replace(edit, broken) + BASE)
    assert [(m, ln, col) for _, m, ln, col in found(result)] == [(message, line, column)]


def test_a_dict_config_file_json_or_toml(tmp_path: Path) -> None:
    schema = {
        "version": 1,
        "handlers": {"app": {"class": "logging.StreamHandler", "formatter": "missing"}},
    }
    (tmp_path / "logging.json").write_text(json.dumps(schema), encoding="utf-8")
    text = '[logging]\ndict_config = "logging.json"\n' + BASE
    result = load(tmp_path, text)
    assert found(result) == [
        (
            "error",
            'logging.json, handlers.app.formatter: "missing" is not a formatter of this dictConfig',
            2,
            1,  # the key that names the file
        )
    ]
    assert tmp_path / "logging.json" in result.watched_files
    schema["formatters"] = {"missing": {"format": "%(message)s"}}
    (tmp_path / "logging.json").write_text(json.dumps(schema), encoding="utf-8")
    good = load(tmp_path, text)
    assert good.ok
    assert good.config is not None
    assert good.config.logging.dict_config == schema
    (tmp_path / "logging.toml").write_text("version = 1\n[loggers.x]\nlevel = 'DEBUG'\n")
    from_toml = load(tmp_path, text.replace("logging.json", "logging.toml"))
    assert from_toml.ok
    assert from_toml.config is not None
    assert from_toml.config.logging.dict_config == {
        "version": 1,
        "loggers": {"x": {"level": "DEBUG"}},
    }


def test_a_dict_config_file_that_cannot_be_used(tmp_path: Path, monkeypatch) -> None:
    text = '[logging]\ndict_config = "{name}"\n' + BASE
    missing = load(tmp_path, text.format(name="nowhere.json"))
    assert [(ln, col) for _, _, ln, col in found(missing)] == [(2, 15)]  # the file name
    assert "cannot read" in missing.errors[0].message
    (tmp_path / "bad.json").write_text("{ not json", encoding="utf-8")
    assert (
        "bad.json does not parse" in load(tmp_path, text.format(name="bad.json")).errors[0].message
    )
    (tmp_path / "log.ini").write_text("[loggers]", encoding="utf-8")
    assert "must end in .json" in load(tmp_path, text.format(name="log.ini")).errors[0].message
    (tmp_path / "log.yaml").write_text("version: 1\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "yaml", None)  # as on a machine without PyYAML
    no_yaml = load(tmp_path, text.format(name="log.yaml"))
    assert "PyYAML is not installed" in no_yaml.errors[0].message


def test_a_yaml_dict_config_when_pyyaml_is_there(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    (tmp_path / "log.yaml").write_text("version: 1\nloggers:\n  x:\n    level: DEBUG\n")
    result = load(tmp_path, '[logging]\ndict_config = "log.yaml"\n' + BASE)
    assert result.ok


def test_keys_a_root_entry_makes_idle_are_warned(tmp_path: Path) -> None:
    text = (
        '[logging]\nformat = "json"\nlevel = "debug"\n'
        '[logging.dict_config]\nversion = 1\nroot = { level = "INFO" }\n' + BASE
    )
    result = load(tmp_path, text)
    assert result.ok
    assert [(severity, line) for severity, _, line, _ in found(result)] == [
        ("warning", 2),
        ("warning", 3),
    ]
