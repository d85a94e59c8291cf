"""Folder apps in the config: `[apps.NAME]` with a `folder` instead of a `target`, and its
`[apps.NAME.static]` table; every problem reported with its position, worker groups,
live edits (config/diff.py) and what a worker is given."""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import traceback
from pathlib import Path

import pytest

from uvhost.commands.check import show_config
from uvhost.config.diff import ChangeKind, diff
from uvhost.config.load import LoadResult, load_config

Found = tuple[str, str, int | None, int | None]


def write(folder: Path, text: str) -> Path:
    path = folder / "uvhost.toml"
    path.write_text(re.sub(r"^ {8}", "", text, flags=re.M).lstrip("\n"), encoding="utf-8")
    return path


def load(folder: Path, text: str) -> LoadResult:
    return load_config(write(folder, text), environ={})


def found(result: LoadResult) -> list[Found]:
    return [
        (d.severity, d.message, d.span.line if d.span else None, d.span.column if d.span else None)
        for d in result.diagnostics
    ]


LISTENER = """
        [listeners.web]
        bind = "127.0.0.1:0"
        routes = { "/" = "api", "/static" = "files" }

        [apps.api]
        target = "api:app"
"""


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "index.html").write_text("<h1>hi</h1>")
    return folder


def test_a_folder_app_is_valid_and_planned(tmp_path: Path, dist: Path) -> None:
    result = load(
        tmp_path,
        LISTENER
        + """
        [apps.files]
        folder = "dist"

        [apps.files.static]
        fallback = "index.html"
        immutable = '^assets/.+-[0-9a-f]{8}\\.js$'
        media_types = { ".WebManifest" = "application/manifest+json" }
        headers = { "X-Frame-Options" = "DENY" }
        """,
    )
    assert found(result) == []
    config = result.config
    assert config is not None
    files = config.apps["files"]
    assert files.folder == dist
    assert files.target is None
    assert files.static.media_types == {".webmanifest": "application/manifest+json"}
    plan = result.plan(cpu_count=2)
    assert [(g.name, g.apps) for g in plan.groups] == [("api+files", ("api", "files"))]


def test_neither_target_nor_folder(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        LISTENER
        + """
        [apps.files]
        workers = 1
        """,
    )
    assert found(result) == [("error", 'app "files" has neither target nor folder', 8, 7)]
    assert not result.ok


def test_both_target_and_folder(tmp_path: Path, dist: Path) -> None:
    result = load(
        tmp_path,
        LISTENER
        + """
        [apps.files]
        target = "files:app"
        folder = "dist"
        """,
    )
    assert found(result) == [("error", 'app "files" has both target and folder', 10, 1)]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "folder {folder} does not exist"),
        ("file", "{folder} is not a folder"),
        ("unreadable", "folder {folder} is not readable"),
    ],
)
def test_the_folder_must_exist_and_be_readable(tmp_path: Path, setup: str, message: str) -> None:
    folder = tmp_path / "dist"
    if setup == "file":
        folder.write_text("not a folder")
    elif setup == "unreadable":
        folder.mkdir(mode=0o000)
    text = LISTENER + '\n        [apps.files]\n        folder = "dist"\n        '
    if setup == "unreadable" and os.geteuid() == 0:  # root reads every folder: check as nobody
        problems = found_as_nobody(tmp_path, text)
    else:
        problems = found(load(tmp_path, text))
    assert problems == [("error", message.format(folder=folder), 9, 10)]


def found_as_nobody(folder: Path, text: str) -> list[Found]:
    """`found(load(folder, text))` in a child process whose real uid is nobody's (65534),
    since os.access asks with the real uid. `folder`'s parents may be root's own, so its
    dist/ is moved for the check to a fresh folder in /tmp the child can reach."""
    with tempfile.TemporaryDirectory(prefix="uvhost-nobody-") as scratch:
        here = Path(scratch)
        here.chmod(0o755)
        (folder / "dist").rename(here / "dist")
        path = write(here, text)
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop to nobody, load, report, exit without pytest's atexit
            code = 1
            try:
                os.close(reader)
                os.setgid(65534)
                os.setuid(65534)
                os.write(writer, json.dumps(found(load_config(path, environ={}))).encode())
                code = 0
            except BaseException:  # noqa: BLE001 - shown by the parent
                os.write(writer, traceback.format_exc().encode())
            finally:
                os._exit(code)
        os.close(writer)
        with os.fdopen(reader, "rb") as pipe:
            report = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, report.decode()
        (here / "dist").rename(folder / "dist")
        problems = [tuple(problem) for problem in json.loads(report)]
        shown = str(here / "dist")
        return [(s, m.replace(shown, str(folder / "dist")), ln, c) for s, m, ln, c in problems]  # type: ignore[misc]


def test_the_fallback_must_be_a_file_in_the_folder(tmp_path: Path, dist: Path) -> None:
    result = load(
        tmp_path,
        LISTENER
        + """
        [apps.files]
        folder = "dist"
        static = { fallback = "app.html" }
        """,
    )
    assert found(result) == [
        ("error", f"the fallback {dist / 'app.html'} is not a file in the folder", 10, 23)
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('static = { fallback = "../secret.html" }', "is not a file inside the folder"),
        ('static = { index = "sub/index.html" }', "is not a plain file name"),
        ("static = { immutable = '[a-' }", "not a valid regular expression"),
        ('static = { media_types = { "js" = "text/javascript" } }', "is not a file extension"),
        ('static = { media_types = { ".js" = "javascript" } }', "is not a media type"),
    ],
)
def test_static_values_are_judged_where_they_are(
    tmp_path: Path, dist: Path, line: str, message: str
) -> None:
    result = load(tmp_path, LISTENER + '\n[apps.files]\nfolder = "dist"\n' + line + "\n")
    problems = found(result)
    assert len(problems) == 1, problems
    severity, text, at_line, _ = problems[0]
    assert severity == "error"
    assert message in text
    assert at_line == 10


def test_keys_of_imported_apps_are_errors_on_a_folder(tmp_path: Path, dist: Path) -> None:
    result = load(
        tmp_path,
        LISTENER
        + """
        [apps.files]
        folder = "dist"
        lifespan = "on"
        env = { A = "1" }
        """,
    )
    assert found(result) == [
        (
            "error",
            'lifespan has no effect on app "files": it serves a folder, nothing is imported or run',
            10,
            1,
        ),
        (
            "error",
            'env has no effect on app "files": it serves a folder, nothing is imported or run',
            11,
            1,
        ),
    ]


def test_static_settings_on_an_imported_app_are_an_error(tmp_path: Path, dist: Path) -> None:
    result = load(
        tmp_path,
        LISTENER
        + """
        [apps.files]
        folder = "dist"

        [apps.api.static]
        index = "home.html"
        """,
    )
    assert found(result) == [
        (
            "error",
            'the static settings of app "api" have no effect: it has a target, not a folder',
            11,
            11,
        )
    ]


def test_headers_uvhost_computes_are_refused(tmp_path: Path, dist: Path) -> None:
    result = load(
        tmp_path,
        LISTENER
        + """
        [apps.files]
        folder = "dist"
        static = { headers = { "Cache-Control" = "no-store", "ETag" = "x" } }
        """,
    )
    assert [(m, line, column) for _, m, line, column in found(result)] == [
        ("Cache-Control is set by uvhost for each file", 10, 24),
        ("ETag is set by uvhost for each file", 10, 54),
    ]


BESIDE_AN_API = """
        [listeners.web]
        bind = "127.0.0.1:0"
        routes = { "/" = "api", "/static" = "files" }

        [apps.api]
        target = "api:app"
        workers = 3

        [apps.files]
        folder = "dist"
        """


def test_a_folder_takes_the_worker_count_of_the_apps_beside_it(tmp_path: Path, dist: Path) -> None:
    result = load(tmp_path, BESIDE_AN_API)
    assert found(result) == []
    assert [(g.name, g.workers) for g in result.plan(cpu_count=8).groups] == [("api+files", 3)]


def test_a_folder_with_its_own_count_must_agree(tmp_path: Path, dist: Path) -> None:
    result = load(tmp_path, BESIDE_AN_API + "workers = 2\n")
    assert [m for _, m, _, _ in found(result)] == [
        'apps "api" (3 workers) and "files" (2 workers) share listener web but want '
        "different worker counts"
    ]


def test_a_folder_alone_takes_host_workers(tmp_path: Path, dist: Path) -> None:
    result = load(
        tmp_path,
        """
        [host]
        workers = 2

        [listeners.web]
        bind = "127.0.0.1:0"
        app = "files"

        [apps.files]
        folder = "dist"
        """,
    )
    assert found(result) == []
    assert [(g.name, g.workers) for g in result.plan(cpu_count=8).groups] == [("files", 2)]


def test_an_edit_of_a_folder_app_rolls_its_group_only(tmp_path: Path, dist: Path) -> None:
    text = """
        [listeners.web]
        bind = "127.0.0.1:0"
        app = "files"

        [listeners.other]
        bind = "127.0.0.1:0"
        app = "api"

        [apps.api]
        target = "api:app"

        [apps.files]
        folder = "dist"
        static = { cache_control = "no-cache" }
        """
    before = load(tmp_path, text).plan(cpu_count=1)
    after = load(tmp_path, text.replace('"no-cache"', '"max-age=60"')).plan(cpu_count=1)
    changes = diff(before, after)
    assert changes.subjects(ChangeKind.GROUP_ROLLED) == ("files",)
    assert changes.of(ChangeKind.GROUP_ROLLED)[0].keys == ("apps.files.static.cache_control",)
    assert changes.subjects(ChangeKind.UNTOUCHED) == ("api",)


def test_a_worker_gets_the_folder_without_pydantic(tmp_path: Path, dist: Path) -> None:
    result = load(
        tmp_path,
        LISTENER
        + """
        [apps.files]
        folder = "dist"
        static = { immutable = "^assets/" }
        """,
    )
    detached = result.plan(cpu_count=1).detached().config.apps["files"]
    assert detached.folder == dist
    assert detached.static.immutable == "^assets/"
    assert type(detached.static).__module__ == "uvhost.config.detach"


def test_the_printed_config_of_a_folder_app_loads_again(tmp_path: Path, dist: Path) -> None:
    """`uvhost config` writes every default (websocket, lifespan, static): no error for it."""
    load(tmp_path, LISTENER + '\n[apps.files]\nfolder = "dist"\n')
    out, err = io.StringIO(), io.StringIO()
    assert show_config(tmp_path / "uvhost.toml", out=out, err=err) == 0
    printed = tmp_path / "printed.toml"
    printed.write_text(out.getvalue().replace("$$", "$"), encoding="utf-8")
    again = load_config(printed, environ={})
    assert found(again) == []
