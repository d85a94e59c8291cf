"""The `uvhost check --import` probe, run as the real subprocess."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest


def probe(stdin: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uvhost.server.probe"],
        input=stdin,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check(tmp_path: Path, source: str, **request: Any) -> dict[str, Any]:
    """Probe a module written into tmp_path; the result must be exactly one JSON line."""
    (tmp_path / "probed.py").write_text(textwrap.dedent(source))
    request = {
        "target": "probed:app",
        "app_dir": str(tmp_path),
        "factory": False,
        "interface": "auto",
        "env": {},
        **request,
    }
    done = probe(json.dumps(request), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("source", "interface"),
    [
        ("async def app(scope, receive, send): ...", "asgi3"),
        ("class app:\n    def __init__(self, scope): ...", "asgi2"),
        ("def app(environ, start_response): ...", "wsgi"),
    ],
)
def test_good_app_reports_its_interface(tmp_path, source, interface):
    assert check(tmp_path, source) == {"ok": True, "interface": interface}


def test_missing_module(tmp_path):
    result = check(tmp_path, "", target="absent:app")
    assert result == {
        "ok": False,
        "kind": "module",
        "message": f'module "absent" not found (app_dir: {tmp_path})',
        "hint": "check the module name in target, or set app_dir",
    }


def test_output_at_import_goes_to_stderr(tmp_path):
    (tmp_path / "probed.py").write_text(
        textwrap.dedent("""
        import os
        print("print at import")
        os.write(1, b"raw write to fd 1\\n")
        async def app(scope, receive, send): ...
    """)
    )
    done = probe(json.dumps({"target": "probed:app", "app_dir": str(tmp_path)}), tmp_path)
    assert json.loads(done.stdout) == {"ok": True, "interface": "asgi3"}
    assert "print at import" in done.stderr
    assert "raw write to fd 1" in done.stderr


def test_env_is_applied_before_import(tmp_path):
    source = """
        import os
        if os.environ.get("PROBE_MODE") != "ready":
            raise RuntimeError("PROBE_MODE not set")
        async def app(scope, receive, send): ...
    """
    assert check(tmp_path, source)["message"].endswith("RuntimeError: PROBE_MODE not set")
    assert check(tmp_path, source, env={"PROBE_MODE": "ready"})["ok"] is True


@pytest.mark.parametrize(
    "stdin",
    ["not json", "[1]", '{"target": 3}', '{"target": "a:b", "env": []}'],
)
def test_unreadable_input_exits_2(tmp_path, stdin):
    done = probe(stdin, tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "unreadable request" in done.stderr


def test_probe_imports_neither_supervisor_nor_cli(tmp_path):
    code = (
        "import sys, uvhost.server.probe; "
        "print([m for m in sys.modules if m.startswith(('uvhost.supervisor', 'uvhost.cli'))])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"
