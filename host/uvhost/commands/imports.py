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

from uvhost.config.errors import Problem
from uvhost.config.plan import Plan

PROBE = [sys.executable, "-m", "uvhost.server.probe"]


def probe_apps(plan: Plan) -> list[Problem]:
    names = [name for name, app in plan.config.apps.items() if app.target is not None]
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(names)))) as pool:
        results = list(pool.map(lambda name: _probe(plan, name), names))
    return [problem for problem in results if problem is not None]


def _probe(plan: Plan, name: str) -> Problem | None:
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
        return Problem(
            f'importing app "{name}" took longer than {timeout:g}s',
            "the import blocks; move slow work into lifespan startup, or raise "
            "host.startup_timeout",
            where,
        )
    try:
        result = json.loads(completed.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return Problem(
            f'importing app "{name}" ended the process (exit status {completed.returncode}): '
            f"{last}",
            "the module exits or crashes while being imported",
            where,
        )
    if result.get("ok"):
        return None
    return Problem(f'app "{name}": {result["message"]}', result.get("hint", ""), where)
