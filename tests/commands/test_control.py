"""`uvhost status` and `uvhost top` against a stand-in control socket that answers what a test says.

A real host cannot be made to refuse a status request or to answer another
version's shape, so these cases use a Unix socket served from a thread that
speaks the documented protocol (one JSON line in, one out). The happy paths
against a real host are in tests/supervisor/test_status_top.py.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from uvhost.commands.control import control
from uvhost.commands.top import top
from uvhost.observe import status
from uvhost.observe.stats import StatsBook

Serve = Callable[[dict[str, Any]], Path]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """`serve(answer)`: a control socket answering `answer` to each request; the config's path."""
    folder = Path(tempfile.mkdtemp(prefix="uvh"))  # short: sun_path is 108 bytes
    servers: list[tuple[socket.socket, threading.Thread]] = []

    def start(answer: dict[str, Any]) -> Path:
        path = folder / "control.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen()

        def loop() -> None:
            while True:
                try:
                    client, _ = server.accept()
                except OSError:
                    return  # closed at teardown
                with client:
                    client.makefile("rb").readline()
                    client.sendall(json.dumps(answer).encode() + b"\n")

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        servers.append((server, thread))
        config = folder / "uvhost.toml"
        config.write_text(f'[host]\ncontrol_socket = "{path}"\n', encoding="utf-8")
        return config

    yield start
    for server, thread in servers:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)
    shutil.rmtree(folder, ignore_errors=True)


def run(command: str, config: Path, *, as_json: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    if command == "top":
        code = top(config, interval=0.05, out=out, err=err)
    else:
        code = control(config, command, as_json=as_json, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def snapshot() -> status.Status:
    facts = status.HostFacts(
        pid=4242,
        version="0.1.0",
        config="/srv/shop/uvhost.toml",
        started=1_700_000_000.0,
        state="running",
        last_reload=None,
        groups=(status.GroupFacts("shop", 1, (), None, ("storefront",)),),
    )
    return status.build(facts, StatsBook(), now=1_700_000_060.0)


def test_status_prints_the_dashboard_once_without_colour_into_a_file(serve: Serve) -> None:
    code, out, err = run("status", serve(dict(snapshot())))
    assert (code, err) == (0, "")
    assert "pid 4242" in out
    assert "up 1m00s" in out
    assert "storefront" in out
    assert "\x1b" not in out  # not a terminal: no colour, no cursor movement
    assert out.count("uvhost 0.1.0") == 1


def test_status_json_prints_the_answer_as_it_came(serve: Serve) -> None:
    answer = dict(snapshot())
    code, out, _ = run("status", serve(answer), as_json=True)
    assert code == 0
    assert json.loads(out) == json.loads(json.dumps(answer))


def test_a_refused_status_prints_its_message_and_fails(serve: Serve) -> None:
    config = serve({"ok": False, "message": "the host is stopping"})
    code, out, _ = run("status", config)
    assert code == 1
    assert out == "the host is stopping\n"
    code, _, err = run("top", config)
    assert code == 1
    assert err == "uvhost top: the host is stopping\n"


def test_another_versions_status_shape_is_named_not_a_crash(serve: Serve) -> None:
    config = serve({"ok": True, "pid": 1, "config": "x", "listeners": {}, "groups": {}})
    code, out, err = run("status", config)
    assert (code, out) == (1, "")
    assert "lacks apps, host, totals, window_seconds, workers" in err
    assert "--json shows it as it is" in err
    code, _, err = run("top", config)
    assert code == 1
    assert "lacks apps, host" in err


def test_no_host_to_attach_to(tmp_path: Path) -> None:
    config = tmp_path / "uvhost.toml"
    nowhere = Path(tempfile.gettempdir()) / "uvhost-test-no-such.sock"  # short, never bound
    config.write_text(f'[host]\ncontrol_socket = "{nowhere}"\n', encoding="utf-8")
    code, out, err = run("top", config)
    assert (code, out) == (1, "")
    assert "uvhost top: no host is running for this config" in err
    config.write_text('[host]\ncontrol_socket = "off"\n', encoding="utf-8")
    code, _, err = run("top", config)
    assert code == 1
    assert 'host.control_socket is "off"' in err
