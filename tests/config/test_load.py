"""Tests for `uvhost.config.load`: the whole pipeline on real files — every problem in one
pass, no duplicates, syntax and missing files, watched files and app environments."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import trustme

from uvhost.config.load import LoadResult, load_config
from uvhost.config.types import TcpBind

Found = tuple[str, str, int | None, int | None]


def write(folder: Path, text: str, name: str = "uvhost.toml") -> Path:
    path = folder / name
    path.write_text(re.sub(r"^ {8}", "", text, flags=re.M).lstrip("\n"), encoding="utf-8")
    return path


def load(folder: Path, text: str, environ: dict[str, str] | None = None) -> LoadResult:
    return load_config(write(folder, text), environ={} if environ is None else environ)


def found(result: LoadResult) -> list[Found]:
    return [
        (d.severity, d.message, d.span.line if d.span else None, d.span.column if d.span else None)
        for d in result.diagnostics
    ]


SITE = """
        [listeners.public]
        bind = "127.0.0.1:0"
        app = "site"

        [apps.site]
        target = "site:app"
"""


def test_a_valid_file(tmp_path: Path) -> None:
    result = load(tmp_path, SITE)
    assert result.ok
    assert result.diagnostics == ()
    assert result.errors == ()
    assert result.config is not None
    assert result.config.listeners["public"].bind == TcpBind("127.0.0.1", 0)
    assert result.document is not None
    assert result.path == tmp_path / "uvhost.toml"


def test_every_problem_in_one_pass(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = { "/" = "site", "/api" = "api" }

        [apps.site]
        target = "site:app"
        workers = "lots"
        """,
    )
    assert found(result) == [
        ("error", 'app "api" is not defined', 3, 35),
        ("error", '"lots" is not a worker count', 7, 11),
    ]
    assert not result.ok
    assert result.config is None


def test_problems_in_several_sections_are_all_reported(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [host]
        graceful_timeout = "forever"

        [logging]
        level = "loud"

        [listeners.public]
        bind = "127.0.0.1:0"
        app = "sitee"

        [listeners.other]
        bind = "nope"
        app = "site"

        [apps.site]
        target = "site:app"
        """,
    )
    assert [(line, column) for _, _, line, column in found(result)] == [
        (2, 20),
        (5, 9),
        (9, 7),
        (12, 8),
    ]
    assert found(result)[2][1] == 'app "sitee" is not defined'


def test_an_interpolation_error_is_not_reported_again_by_validation(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "${BIND}"
        app = "site"
        backlog = "${BACKLOG:?set BACKLOG}"

        [apps.site]
        target = "site:app"
        """,
    )
    assert found(result) == [
        ("error", "environment variable BIND is not set", 2, 8),
        ("error", "set BACKLOG", 4, 11),
    ]


def test_interpolated_values_are_validated(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:${PORT}"
        app = "site"

        [apps.site]
        target = "site:app"
        """,
        environ={"PORT": "http"},
    )
    assert found(result) == [("error", '"http" is not a port', 2, 8)]


def test_the_environment_feeds_interpolation(tmp_path: Path) -> None:
    text = SITE.replace('"127.0.0.1:0"', '"127.0.0.1:${PORT:-8000}"')
    assert load(tmp_path, text).config.listeners["public"].bind.port == 8000  # type: ignore[union-attr]
    with_port = load(tmp_path, text, environ={"PORT": "9000"})
    assert with_port.config.listeners["public"].bind.port == 9000  # type: ignore[union-attr]


def test_os_environ_is_the_default_and_is_not_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UVHOST_TEST_PORT", "9123")
    (tmp_path / "a.env").write_text("UVHOST_TEST_FROM_FILE=1\n")
    path = write(
        tmp_path,
        '[host]\nenv_files = ["a.env"]\n'
        + SITE.replace('"127.0.0.1:0"', '"127.0.0.1:${UVHOST_TEST_PORT}"'),
    )
    before = dict(os.environ)
    result = load_config(path)
    assert dict(os.environ) == before
    assert result.config is not None
    assert result.config.listeners["public"].bind == TcpBind("127.0.0.1", 9123)


def test_env_files_feed_interpolation_and_the_process_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "base.env").write_text("PORT=1000\nHOST=127.0.0.2\nMODE=base\n")
    (tmp_path / "local.env").write_text("PORT=2000\n")
    result = load(
        tmp_path,
        """
        [host]
        env_files = ["base.env", "local.env"]

        [listeners.public]
        bind = "${HOST}:${PORT}"
        app = "site"

        [apps.site]
        target = "site:app"
        env = { MODE = "${MODE}" }
        """,
        environ={"MODE": "process"},
    )
    assert result.config is not None
    assert result.config.listeners["public"].bind == TcpBind("127.0.0.2", 2000)
    assert result.config.apps["site"].env == {"MODE": "process"}


def test_env_file_paths_may_use_the_environment(tmp_path: Path) -> None:
    (tmp_path / "prod.env").write_text("PORT=7000\n")
    text = '[host]\nenv_files = ["${STAGE}.env"]\n' + SITE.replace(
        '"127.0.0.1:0"', '"127.0.0.1:${PORT}"'
    )
    result = load(tmp_path, text, environ={"STAGE": "prod"})
    assert result.config is not None
    assert result.config.listeners["public"].bind == TcpBind("127.0.0.1", 7000)
    assert tmp_path / "prod.env" in result.watched_files


def test_missing_env_file_is_reported_once(tmp_path: Path) -> None:
    result = load(tmp_path, '[host]\nenv_files = ["nope.env"]\n' + SITE)
    assert found(result) == [("error", f"env file {tmp_path / 'nope.env'} does not exist", 2, 14)]


def test_an_unknown_home_folder_is_an_error_not_a_crash(tmp_path: Path) -> None:
    result = load(tmp_path, '[host]\nenv_files = ["~no-such-user-uvhost/.env"]\n' + SITE)
    [(severity, message, line, column)] = found(result)
    assert (severity, line, column) == ("error", 2, 14)
    assert message.startswith("cannot expand ~")


def test_watched_files(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "site.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "site.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    for name in ("host.env", "app.env"):
        (tmp_path / name).write_text("A=1\n")
    result = load(
        tmp_path,
        """
        [host]
        env_files = ["host.env"]

        [listeners.public]
        bind = "127.0.0.1:0"
        app = "site"

        [listeners.public.tls]
        certificate = "site.pem"
        private_key = "site.key"
        client_ca = "ca.pem"

        [apps.site]
        target = "site:app"
        env_files = ["app.env"]
        """,
    )
    assert result.ok, found(result)
    assert set(result.watched_files) == {
        tmp_path / name
        for name in ("uvhost.toml", "host.env", "app.env", "site.pem", "site.key", "ca.pem")
    }
    assert result.watched_files[0] == tmp_path / "uvhost.toml"
    assert len(result.watched_files) == len(set(result.watched_files))


def test_watched_files_of_an_invalid_file_include_the_file_itself(tmp_path: Path) -> None:
    result = load(tmp_path, '[host]\nwatch = "sometimes"\n' + SITE)
    assert not result.ok
    assert result.watched_files[0] == tmp_path / "uvhost.toml"


def test_app_environments_merge_env_files_under_env(tmp_path: Path) -> None:
    (tmp_path / "one.env").write_text("A=file1\nB=file1\nC=file1\n")
    (tmp_path / "two.env").write_text("B=file2\n")
    result = load(
        tmp_path,
        """
        [listeners.public]
        bind = "127.0.0.1:0"
        routes = { "/" = "site", "/api" = "api" }

        [apps.site]
        target = "site:app"
        env_files = ["one.env", "two.env"]
        env = { C = "env", D = 4 }

        [apps.api]
        target = "api:app"
        """,
    )
    assert result.ok, found(result)
    assert result.app_environments == {
        "site": {"A": "file1", "B": "file2", "C": "env", "D": "4"},
        "api": {},
    }
    assert result.plan(cpu_count=2).app_environments == result.app_environments


def test_app_env_files_are_not_used_for_interpolation(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text("PORT=1234\n")
    text = SITE.replace('"127.0.0.1:0"', '"127.0.0.1:${PORT:-80}"') + 'env_files = ["app.env"]\n'
    result = load(tmp_path, text)
    assert result.config is not None
    assert result.config.listeners["public"].bind == TcpBind("127.0.0.1", 80)


def test_syntax_error_is_one_diagnostic_with_a_position(tmp_path: Path) -> None:
    result = load(tmp_path, '[listeners.public]\nbind = 127.0.0.1:8000\napp = "site"\n')
    [diagnostic] = result.diagnostics
    assert diagnostic.severity == "error"
    assert diagnostic.message.startswith("TOML syntax: ")
    assert diagnostic.span is not None
    assert diagnostic.span.line == 2
    assert diagnostic.source_line == "bind = 127.0.0.1:8000"
    assert result.config is None
    assert result.document is None


def test_missing_file_is_a_diagnostic_without_a_position(tmp_path: Path) -> None:
    result = load_config(tmp_path / "nope.toml", environ={})
    [diagnostic] = result.diagnostics
    assert diagnostic.severity == "error"
    assert diagnostic.message == "no such file"
    assert "uvhost check" in diagnostic.hint
    assert diagnostic.span is None
    assert not result.ok


def test_a_folder_is_not_a_config(tmp_path: Path) -> None:
    [diagnostic] = load_config(tmp_path, environ={}).diagnostics
    assert diagnostic.message.startswith("cannot read the file")
    assert diagnostic.span is None


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "uvhost.toml"
    path.write_bytes(b'[host]\nworkers = "\xff"\n')
    [diagnostic] = load_config(path, environ={}).diagnostics
    assert diagnostic.message == "the file is not valid UTF-8"
    assert diagnostic.span is None


def test_warnings_do_not_make_a_config_invalid(tmp_path: Path) -> None:
    result = load(tmp_path, SITE + '\n[apps.spare]\ntarget = "spare:app"\n')
    assert result.ok
    assert [d.severity for d in result.diagnostics] == ["warning"]
    assert result.errors == ()


def test_diagnostics_are_sorted_by_position(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """
        [listeners.b]
        bind = "127.0.0.1:1"
        app = "zzz"

        [listeners.a]
        bind = "127.0.0.1:1"
        app = "yyy"
        backlog = -1
        """,
    )
    positions = [(line, column) for _, _, line, column in found(result)]
    assert positions == sorted(positions)
    assert len(positions) == 3


def test_plan_of_an_invalid_config_raises(tmp_path: Path) -> None:
    result = load(tmp_path, "[listeners]\n")
    with pytest.raises(ValueError, match="has errors"):
        result.plan()


def test_plan_of_a_valid_config(tmp_path: Path) -> None:
    plan = load(tmp_path, SITE).plan(cpu_count=3)
    assert plan.base_dir == tmp_path.resolve()
    assert [group.name for group in plan.groups] == ["site"]
