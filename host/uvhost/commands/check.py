"""`uvhost check`, `uvhost config` and `uvhost schema`: the file, before any socket opens.

Exit codes: 0 valid, 1 invalid (or, for `schema`, files could not be
written), 2 usage. Diagnostics are plain text (stable for golden files and
editors that parse `file:line:col`); only the success summary uses rich.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import tomli_w
from rich.console import Console

from uvhost.commands.imports import probe_apps
from uvhost.commands.report import print_diagnostics, tally
from uvhost.commands.summary import render_summary
from uvhost.config.errors import Diagnostic, count, place, render
from uvhost.config.load import LoadResult, load_config
from uvhost.config.schema import json_schema_text, markdown_reference

EXIT_VALID, EXIT_INVALID = 0, 1


def check(path: Path, *, import_apps: bool, as_json: bool, out: TextIO) -> int:
    result = load_config(path)
    diagnostics = list(result.diagnostics)
    interfaces: dict[str, str] = {}
    if result.ok and import_apps and result.document is not None:
        document = result.document
        probed = probe_apps(result.plan())
        diagnostics.extend(place(problem, document) for problem in probed.problems)
        interfaces = probed.interfaces
    valid = result.ok and count(diagnostics, "error") == 0
    shown = str(path)
    if as_json:
        report = _json_report(result, diagnostics, valid, shown)
        if interfaces:
            report["interfaces"] = interfaces
        out.write(json.dumps(report, indent=2) + "\n")
        return EXIT_VALID if valid else EXIT_INVALID
    for diagnostic in diagnostics:
        out.write(render(diagnostic, shown) + "\n\n")
    out.write(tally(shown, diagnostics, valid) + "\n")
    if valid:
        console = Console(file=out, width=100, highlight=False)
        console.print()
        console.print(render_summary(result.plan(), interfaces))
    return EXIT_VALID if valid else EXIT_INVALID


def _json_report(
    result: LoadResult, diagnostics: list[Diagnostic], valid: bool, shown: str
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "file": shown,
        "valid": valid,
        "diagnostics": [d.as_json(shown) for d in diagnostics],
    }
    if valid:
        plan = result.plan()
        report["groups"] = [
            {"name": g.name, "workers": g.workers, "listeners": g.listeners, "apps": g.apps}
            for g in plan.groups
        ]
        report["listeners"] = {
            name: {
                "bind": str(plan.config.listeners[name].bind),
                "routes": {m.prefix or "/": m.target for m in table.mounts},
                "sites": {
                    site.name: {
                        "hosts": list(site.hosts),
                        "routes": {m.prefix or "/": m.target for m in site.mounts},
                    }
                    for site in table.sites
                },
            }
            for name, table in plan.route_tables.items()
        }
    return report


def show_config(path: Path, *, out: TextIO, err: TextIO) -> int:
    """The resolved config as TOML: defaults filled, variables expanded, secrets masked."""
    result = load_config(path)
    if result.config is None:
        print_diagnostics(result, str(path), err)
        return EXIT_INVALID
    data = result.config.model_dump(mode="json", exclude_none=True)
    out.write(f"# {path}, resolved by `uvhost config`; TLS passwords are masked.\n")
    out.write(tomli_w.dumps(_escape_dollars(data)))
    return EXIT_VALID


def _escape_dollars(value: Any) -> Any:
    """Write each `$` of a resolved value as `$$`, so loading the output does not expand
    a `${VAR}` that was literal text (written `$${VAR}`) in the original; keys stay as is."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {key: _escape_dollars(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escape_dollars(item) for item in value]
    return value


def write_schema(schema_path: str, markdown_path: str | None, *, out: TextIO) -> int:
    """Regenerate the checked-in schema (and optionally the reference); "-" means stdout."""
    targets = [(schema_path, json_schema_text())]
    if markdown_path:
        targets.append((markdown_path, markdown_reference()))
    for target, text in targets:
        if target == "-":
            out.write(text)
            continue
        try:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_text(text, encoding="utf-8")
        except OSError as error:
            sys.stderr.write(f"uvhost schema: cannot write {target}: {error.strerror}\n")
            return EXIT_INVALID
        out.write(f"wrote {target}\n")
    return EXIT_VALID
