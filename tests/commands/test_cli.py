"""Tests for the `uvhost` command line (check, config, schema) through real subprocesses,
and for the summary `check` prints, on a capture console."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from rich.console import Console

from uvhost.commands.summary import render_summary
from uvhost.config.model import validate_config
from uvhost.config.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "uvhost.toml.example"
EXAMPLE_PORTS = ("PORT", "HELLO_PORT", "ADMIN_PORT")


def uvhost(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if key not in EXAMPLE_PORTS}
    return subprocess.run(
        [sys.executable, "-m", "uvhost", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write(folder: Path, text: str, name: str = "uvhost.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


VALID = """
    [listeners.public]
    bind = "127.0.0.1:0"
    routes = { "/" = "site", "/api" = "api" }

    [apps.site]
    target = "site:app"

    [apps.api]
    target = "api:app"
    workers = 1
"""

INVALID = """
    [listeners.public]
    bind = "127.0.0.1:0"
    app = "sit"

    [apps.site]
    target = "site:app"
    max_body_bytes = "big"
"""


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout
    assert "Traceback" not in result.stderr


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    """`uvhost config big.toml | head -1`: the output is far larger than a pipe holds, so
    the writer meets a closed pipe; that is the reader's choice, not an error to report."""
    routes = ", ".join(f'"/p{index}" = "a"' for index in range(3000))
    write(tmp_path, f'[listeners.web]\nbind = "127.0.0.1:0"\nroutes = {{ {routes} }}\n'
          '\n[apps.a]\ntarget = "x:app"\n')  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvhost", "config", "uvhost.toml"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()
    errors = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in errors, errors
    assert "BrokenPipeError" not in errors, errors


# ------------------------------------------------------------------- check


def test_check_the_example(tmp_path: Path) -> None:
    result = uvhost("check", "uvhost.toml.example")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith("uvhost.toml.example: valid\n")
    for text in (
        "Listeners",
        "public  127.0.0.1:8000  (http)",
        "hello  127.0.0.1:8001  (http)",
        "admin  127.0.0.1:9000  (http)",
        "/api       → api",
        "/assets    → assets",
        "/chat      → chat",
        "/guestbook → guestbook",
        "/healthz → @health",
        "Worker groups",
        "api+assets+chat+guestbook+pages",
        "@admin",
        "(built-ins only)",
    ):
        assert text in out, text
    assert result.stderr == ""


def test_check_reads_uvhost_toml_from_the_current_folder(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    result = uvhost("check", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("uvhost.toml: valid\n")
    assert "api+site" in result.stdout


def test_check_a_missing_file(tmp_path: Path) -> None:
    result = uvhost("check", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("uvhost.toml: error: no such file\n")
    assert "uvhost.toml: invalid (1 error)" in result.stdout
    no_traceback(result)


def test_check_an_invalid_file_shows_every_problem(tmp_path: Path) -> None:
    write(tmp_path, INVALID)
    result = uvhost("check", "uvhost.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == (
        'uvhost.toml:3:7: error: app "sit" is not defined\n'
        ' 3 | app = "sit"\n'
        "   |       ^^^^^\n"
        '   = hint: did you mean "site"?\n'
        "\n"
        'uvhost.toml:7:18: error: "big" is not a size\n'
        ' 7 | max_body_bytes = "big"\n'
        "   |                  ^^^^^\n"
        '   = hint: write a number of bytes or a string such as "64KiB", "16MiB" or "1GiB"\n'
        "\n"
        "uvhost.toml: invalid (2 errors)\n"
    )
    no_traceback(result)


def test_check_warnings_are_counted_but_valid(tmp_path: Path) -> None:
    write(tmp_path, VALID + '\n    [apps.spare]\n    target = "spare:app"\n')
    result = uvhost("check", cwd=tmp_path)
    assert result.returncode == 0
    assert 'warning: app "spare" is not served by any listener' in result.stdout
    assert "uvhost.toml: valid (1 warning)" in result.stdout


@pytest.mark.parametrize(
    "args", [("check", "--bogus"), (), ("nope",), ("check", "a.toml", "b.toml")]
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    result = uvhost(*args)
    assert result.returncode == 2
    assert "usage: uvhost" in result.stderr
    no_traceback(result)


def test_version() -> None:
    result = uvhost("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("uvhost ")


def test_check_json_of_a_valid_file() -> None:
    result = uvhost("check", "--json", "uvhost.toml.example")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["file"] == "uvhost.toml.example"
    assert report["valid"] is True
    assert report["diagnostics"] == []
    groups = {group["name"]: group for group in report["groups"]}
    assert groups["api+assets+chat+guestbook+pages"] == {
        "name": "api+assets+chat+guestbook+pages",
        "workers": 1,
        "listeners": ["public"],
        "apps": ["api", "assets", "chat", "guestbook", "pages"],
    }
    assert report["listeners"]["public"] == {
        "bind": "127.0.0.1:8000",
        "routes": {
            "/guestbook": "guestbook",
            "/assets": "assets",
            "/chat": "chat",
            "/api": "api",
            "/": "pages",
        },
        "sites": {},
    }
    assert report["listeners"]["hello"]["routes"] == {"/": "hello"}


def test_check_json_of_an_invalid_file(tmp_path: Path) -> None:
    write(tmp_path, INVALID)
    result = uvhost("check", "--json", "uvhost.toml", cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert "groups" not in report
    assert report["diagnostics"][0] == {
        "severity": "error",
        "file": "uvhost.toml",
        "line": 3,
        "column": 7,
        "end_column": 12,
        "message": 'app "sit" is not defined',
        "hint": 'did you mean "site"?',
    }
    assert len(report["diagnostics"]) == 2


def test_check_json_of_a_missing_file(tmp_path: Path) -> None:
    result = uvhost("check", "--json", "nope.toml", cwd=tmp_path)
    assert result.returncode == 1
    [diagnostic] = json.loads(result.stdout)["diagnostics"]
    assert diagnostic["line"] is None
    assert diagnostic["message"] == "no such file"


# ------------------------------------------------------------------ config


def test_config_prints_toml_with_the_password_masked(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "site.pem"))
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    (tmp_path / "site.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter2"),
        )
    )
    write(
        tmp_path,
        VALID
        + """
    [listeners.public.tls]
    certificate = "site.pem"
    private_key = "site.key"
    password = "hunter2"
    """,
    )
    result = uvhost("config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    data = tomllib.loads(result.stdout)
    tls = data["listeners"]["public"]["tls"]
    assert tls["password"] == "********"  # noqa: S105 - the mask, not a secret
    assert tls["certificate"] == str(tmp_path / "site.pem")
    assert data["host"]["graceful_timeout"] == "30s"
    assert data["listeners"]["public"]["routes"] == {"/": "site", "/api": "api"}
    assert data["apps"]["site"]["max_body_bytes"] == "16MiB"
    assert result.stdout.startswith("# uvhost.toml, resolved by `uvhost config`")


def test_config_of_the_example_is_itself_valid(tmp_path: Path) -> None:
    result = uvhost("config", "uvhost.toml.example")
    assert result.returncode == 0
    printed = write(tmp_path, result.stdout, "printed.toml")
    again = uvhost("check", str(printed))
    assert again.returncode == 0, again.stdout
    assert f"{printed}: valid" in again.stdout


def test_config_of_a_bad_file(tmp_path: Path) -> None:
    write(tmp_path, INVALID)
    result = uvhost("config", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert 'uvhost.toml:3:7: error: app "sit" is not defined' in result.stderr
    assert result.stderr.rstrip().endswith("uvhost.toml: invalid (2 errors)")
    no_traceback(result)


def test_config_of_a_missing_file(tmp_path: Path) -> None:
    result = uvhost("config", "nope.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "nope.toml: error: no such file" in result.stderr
    no_traceback(result)


# ------------------------------------------------------------------ schema


def test_schema_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "schema.json"
    result = uvhost("schema", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {target}\n"
    schema = json.loads(target.read_text(encoding="utf-8"))
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"host", "logging", "listeners", "apps"} <= set(schema["properties"])


def test_schema_to_stdout() -> None:
    result = uvhost("schema", "-o", "-")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "listeners" in schema["properties"]


def test_schema_to_an_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = uvhost("schema", "-o", str(blocker / "schema.json"))
    assert result.returncode == 1
    assert "uvhost schema: cannot write" in result.stderr
    no_traceback(result)


# ---------------------------------------------------------- check --import


def test_check_import_of_the_example() -> None:
    result = uvhost("check", "--import", "uvhost.toml.example")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("uvhost.toml.example: valid\n")


def app_folder(tmp_path: Path, target: str) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "good.py").write_text(
        "async def app(scope, receive, send):\n    pass\n\nsettings = {'debug': True}\n"
    )
    return write(
        tmp_path,
        f"""
        [listeners.public]
        bind = "127.0.0.1:0"
        app = "broken"

        [apps.broken]
        target = "{target}"
        app_dir = "src"
        """,
    )


def test_check_import_of_a_good_app(tmp_path: Path) -> None:
    app_folder(tmp_path, "good:app")
    result = uvhost("check", "--import", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("uvhost.toml: valid\n")


@pytest.mark.parametrize(
    ("target", "message", "hint"),
    [
        (
            "missing_module:app",
            'app "broken": module "missing_module" not found (app_dir: {src})',
            "check the module name in target, or set app_dir",
        ),
        ("good:aap", 'app "broken": module "good" has no attribute "aap"', 'did you mean "app"?'),
        (
            "good:settings",
            'app "broken": "good:settings" is a dict, not an app',
            "point target at the ASGI app object",
        ),
    ],
)
def test_check_import_of_a_broken_app(tmp_path: Path, target: str, message: str, hint: str) -> None:
    app_folder(tmp_path, target)
    result = uvhost("check", "--import", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"uvhost.toml:6:10: error: {message.format(src=tmp_path / 'src')}"
    assert lines[1] == f' 6 | target = "{target}"'
    assert lines[2] == "   |          " + "^" * (len(target) + 2)
    assert lines[3].startswith(f"   = hint: {hint}")
    assert lines[-1] == "uvhost.toml: invalid (1 error)"
    no_traceback(result)


def test_check_import_json(tmp_path: Path) -> None:
    app_folder(tmp_path, "good:aap")
    result = uvhost("check", "--import", "--json", cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    [diagnostic] = report["diagnostics"]
    assert (diagnostic["line"], diagnostic["column"]) == (6, 10)


WSGI_AND_ASGI = """
[listeners.public]
bind = "127.0.0.1:0"
routes = { "/" = "asgi", "/old" = "old" }

[apps.asgi]
target = "kinds:asgi"
app_dir = "src"
threads = 4

[apps.old]
target = "kinds:old"
app_dir = "src"
"""


def test_check_import_names_the_interface_it_found(tmp_path: Path) -> None:
    """With interface = "auto" only the import can tell; threads set on what turned out to
    be ASGI are a warning with the key's position (they would do nothing)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "kinds.py").write_text(
        "async def asgi(scope, receive, send):\n    pass\n\n"
        "def old(environ, start_response):\n    return []\n"
    )
    write(tmp_path, WSGI_AND_ASGI)
    result = uvhost("check", "--import", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == (
        'uvhost.toml:8:1: warning: threads has no effect on app "asgi": it imported as '
        "asgi3, which runs in the event loop, not in threads"
    )
    assert "uvhost.toml: valid (1 warning)" in lines
    assert "asgi (asgi3), old (wsgi)" in result.stdout
    report = json.loads(uvhost("check", "--import", "--json", cwd=tmp_path).stdout)
    assert report["interfaces"] == {"asgi": "asgi3", "old": "wsgi"}
    assert [d["severity"] for d in report["diagnostics"]] == ["warning"]


def test_check_without_import_does_not_import(tmp_path: Path) -> None:
    app_folder(tmp_path, "missing_module:app")
    result = uvhost("check", cwd=tmp_path)
    assert result.returncode == 0


# ----------------------------------------------------------------- summary


def test_render_summary_on_a_capture_console() -> None:
    config = validate_config(
        {
            "listeners": {
                "public": {
                    "bind": "127.0.0.1:8000",
                    "routes": {"/": "site", "/api": "api", "/healthz": "@health"},
                },
                "admin": {"bind": "unix:/run/admin.sock", "routes": {"/metrics": "@metrics"}},
            },
            "apps": {"site": {"target": "s:app"}, "api": {"target": "a:app"}},
        },
        Path("/srv"),
    )
    console = Console(record=True, width=100, color_system=None)
    console.print(render_summary(build_plan(config, base_dir=Path("/srv"), cpu_count=2)))
    text = "\n".join(line.rstrip() for line in console.export_text().splitlines())
    assert text == textwrap.dedent(
        """\
        Listeners
        ├── public  127.0.0.1:8000  (http)
        │   ├── /        → site
        │   ├── /api     → api
        │   └── /healthz → @health
        └── admin  unix:/run/admin.sock  (http)
            └── /metrics → @metrics

        Worker groups
        group    ┃ workers ┃ listeners ┃ apps
        ━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━
        @admin   │       1 │ admin     │ (built-ins only)
        api+site │       1 │ public    │ api, site"""
    )


def test_render_summary_shows_https_and_fd_binds() -> None:
    config = validate_config(
        {
            "listeners": {
                "secure": {"bind": "fd:3", "app": "site", "tls": {"certificate": "/c.pem"}},
            },
            "apps": {"site": {"target": "s:app", "workers": 3}},
        },
        Path("/srv"),
    )
    console = Console(record=True, width=100, color_system=None)
    console.print(render_summary(build_plan(config, base_dir=Path("/srv"), cpu_count=2)))
    text = console.export_text()
    assert "secure  fd:3  (https)" in text
    assert "└── / → site" in text
    assert "site  │       3 │ secure    │ site" in text
