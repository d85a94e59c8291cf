"""`uvhost reload`, `uvhost stop` and `uvhost status`: ask a running host over its control socket.

The socket's location comes from the config file (`host.control_socket`),
read even when the rest of the file is invalid: `uvhost reload` after a bad
edit must still reach the host to report why the edit was rejected.
Exit codes: 0 done, 1 refused or no host to talk to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from uvhost.config.model import HostSettings
from uvhost.config.source import TomlSyntaxError, read_source
from uvhost.supervisor.control import ControlError, request, socket_path

TIMEOUT = {"reload": 300.0, "stop": 10.0, "status": 10.0}


def host_settings(path: Path) -> HostSettings:
    """The [host] table alone; defaults when it cannot be read."""
    try:
        raw = read_source(path).data.get("host", {})
        return HostSettings.model_validate(
            {"control_socket": raw.get("control_socket", "auto")},
            context={"base_dir": path.parent.resolve()},
        )
    except (OSError, UnicodeDecodeError, TomlSyntaxError, ValidationError, AttributeError):
        return HostSettings()


def control(path: Path, command: str, *, as_json: bool, out: TextIO, err: TextIO) -> int:
    where = socket_path(host_settings(path), path)
    if where is None:
        err.write(f'{path}: host.control_socket is "off"; use signals (SIGHUP, SIGTERM)\n')
        return 1
    try:
        answer = request(where, command, TIMEOUT[command])
    except ControlError as error:
        err.write(f"uvhost {command}: {error}\n")
        return 1
    if as_json:
        out.write(json.dumps(answer, indent=2) + "\n")
    else:
        _print(command, answer, out)
    return 0 if answer.get("ok") else 1


def _print(command: str, answer: dict[str, Any], out: TextIO) -> None:
    for error in answer.get("errors", []):
        out.write(error + "\n\n")
    if command != "status":
        out.write(str(answer.get("message", "")) + "\n")
        return
    out.write(f"uvhost pid {answer['pid']} serving {answer['config']}\n")
    for name, where in answer["listeners"].items():
        out.write(f"  listener {name}: {where}\n")
    for name, group in answer["groups"].items():
        pids = ", ".join(str(pid) for pid in group["workers"])
        failed = f"  (failed: {group['failed']})" if group.get("failed") else ""
        out.write(f"  group {name}: generation {group['generation']}, workers {pids}{failed}\n")
