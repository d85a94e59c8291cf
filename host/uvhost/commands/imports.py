"""`uvhost check --import`: import each app in its own throwaway process.

Why a process per app: importing runs arbitrary user code that may change
`sys.modules`, set environment variables, print, or exit; two apps may also
need different `app_dir`s holding modules of the same name. The probe
(`uvhost.server.probe`) loads an app exactly as a worker would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from uvhost.config.checks import WSGI_ONLY_KEYS
from uvhost.config.errors import Problem
from uvhost.config.plan import Plan

PROBE = [sys.executable, "-m", "uvhost.server.probe"]


@dataclass(slots=True)
class ProbeReport:
    """What importing the apps found: problems, and the interface each app turned out to be
    (with `interface = "auto"` the file alone cannot say, and a user wants to see it)."""

    problems: list[Problem] = field(default_factory=list)
    interfaces: dict[str, str] = field(default_factory=dict)


def probe_apps(plan: Plan) -> ProbeReport:
    names = [name for name, app in plan.config.apps.items() if app.target is not None]
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(names)))) as pool:
        results = list(pool.map(lambda name: _probe(plan, name), names))
    report = ProbeReport()
    for name, (problem, interface) in zip(names, results, strict=True):
        if problem is not None:
            report.problems.append(problem)
        if interface is not None:
            report.interfaces[name] = interface
            report.problems.extend(_unused_thread_keys(plan, name, interface))
    return report


def _unused_thread_keys(plan: Plan, name: str, interface: str) -> list[Problem]:
    """`threads` or `max_queued` on an `auto` app that imports as ASGI do nothing: said as a
    warning (the config still runs), since the user evidently expected a WSGI app."""
    app = plan.config.apps[name]
    if interface == "wsgi" or app.interface != "auto":
        return []  # an explicit ASGI interface is refused by the file's own checks
    return [
        Problem(
            f'{key} has no effect on app "{name}": it imported as {interface}, which runs in '
            "the event loop, not in threads",
            f"remove {key}, or point target at the WSGI callable if that was meant",
            ("apps", name, key),
            at="key",
            severity="warning",
        )
        for key in WSGI_ONLY_KEYS
        if key in app.model_fields_set
    ]


def _probe(plan: Plan, name: str) -> tuple[Problem | None, str | None]:
    app = plan.config.apps[name]
    request = {
        "target": app.target,
        "app_dir": str(plan.app_dir(name)),
        "factory": app.factory,
        "interface": app.interface,
        "env": dict(plan.app_environments.get(name, {})),
    }
    where = ("apps", name, "target")
    timeout = plan.config.host.startup_timeout
    try:
        completed = subprocess.run(
            PROBE,
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=plan.base_dir,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return _failed(
            f'importing app "{name}" took longer than {timeout:g}s',
            "the import blocks; move slow work into lifespan startup, or raise "
            "host.startup_timeout",
            where,
        )
    try:
        result = json.loads(completed.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return _failed(
            f'importing app "{name}" ended the process (exit status {completed.returncode}): '
            f"{last}",
            "the module exits or crashes while being imported",
            where,
        )
    if result.get("ok"):
        return None, str(result["interface"])
    return _failed(f'app "{name}": {result["message"]}', result.get("hint", ""), where)


def _failed(message: str, hint: str, where: tuple[str, ...]) -> tuple[Problem, None]:
    return Problem(message, hint, where), None
