"""Diagnostics as every command prints them: each one rendered, then a tally line.

Kept apart from `check` so that `run` can report a bad config without
loading rich or the app prober.
"""

from __future__ import annotations

from typing import TextIO

from uvhost.config.errors import Diagnostic, count, render
from uvhost.config.load import LoadResult


def print_diagnostics(result: LoadResult, shown: str, out: TextIO) -> None:
    """Every diagnostic and the tally, as `check` prints them, for other commands."""
    for diagnostic in result.diagnostics:
        out.write(render(diagnostic, shown) + "\n\n")
    out.write(tally(shown, list(result.diagnostics), result.ok) + "\n")


def tally(shown: str, diagnostics: list[Diagnostic], valid: bool) -> str:
    errors, warnings = count(diagnostics, "error"), count(diagnostics, "warning")
    parts = [f"{errors} error{'s' if errors != 1 else ''}"] if errors else []
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    verdict = "valid" if valid else "invalid"
    return f"{shown}: {verdict}" + (f" ({', '.join(parts)})" if parts else "")
