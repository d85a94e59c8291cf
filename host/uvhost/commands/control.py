"""`uvhost reload`, `uvhost stop` and `uvhost status`: ask a running host over its control socket.

The socket's location comes from the config file (`host.control_socket`),
read even when the rest of the file is invalid: `uvhost reload` after a bad
edit must still reach the host to report why the edit was rejected.
`status` prints the dashboard once (the same `render` `uvhost top` redraws);
`--json` prints the host's answer untouched, for scripts.
Exit codes: 0 done, 1 refused or no host to talk to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO, cast

from pydantic import ValidationError
from rich.console import Console

from uvhost.config.model import HostSettings
from uvhost.config.source import TomlSyntaxError, read_source
from uvhost.observe.dashboard import render
from uvhost.observe.status import Status
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
    elif command == "status" and answer.get("ok"):
        try:
            status = as_status(answer)
        except ControlError as error:
            err.write(f"uvhost status: {error}\n")
            return 1
        Console(file=out, highlight=False).print(render(status))
    else:
        for diagnostic in answer.get("errors", []):
            out.write(diagnostic + "\n\n")
        out.write(str(answer.get("message", "")) + "\n")
    return 0 if answer.get("ok") else 1


def as_status(answer: dict[str, Any]) -> Status:
    """A successful status answer, checked for the snapshot's keys before anything renders it.

    A host started by another uvhost version may answer another shape; saying
    so beats a KeyError halfway through drawing.
    """
    missing = Status.__required_keys__ - answer.keys()
    if missing:
        raise ControlError(
            f"the host's status answer lacks {', '.join(sorted(missing))} "
            "(a host running another uvhost version?); --json shows it as it is"
        )
    return cast(Status, answer)
