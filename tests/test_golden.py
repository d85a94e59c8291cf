"""Golden outputs of `uvhost check` on a corpus of broken configs, and the valid ones.

Each `configs/bad/NAME.toml` starts with a comment saying what is wrong; the
exact stdout of `uvhost check NAME.toml` (run in `configs/bad`) is kept in
`NAME.out`. After a deliberate change of messages, regenerate every golden with

    UVHOST_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py

and read the diff before committing it: the goldens are user-facing text.

Runs are reproducible on any machine and checkout path: the environment holds
only PATH, HOME and the variables a file asks for in its leading comment
(`# env: NAME=value`), and the absolute path of `configs/` reads `<configs>`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import uvhost

CONFIGS = Path(__file__).parent / "configs"
UVHOST_ROOT = str(Path(uvhost.__file__).resolve().parents[1])
BAD = CONFIGS / "bad"
GOOD = CONFIGS / "good"
BAD_FILES = sorted(BAD.glob("*.toml"))
GOOD_FILES = sorted(GOOD.glob("*.toml"))
UPDATE = os.environ.get("UVHOST_UPDATE_GOLDEN") == "1"

# `file:line:col: severity: message`, the head of every positioned diagnostic.
HEAD = re.compile(
    r"^(?P<file>[^\s:]+):(?P<line>\d+):(?P<column>\d+): (?P<severity>error|warning): "
)
# Any diagnostic head, positioned or not: used to prove that none lacks a position.
ANY_HEAD = re.compile(r"^\S+?:(?:\d+:\d+:)? ?(error|warning): ")
TALLY = re.compile(
    r"^(?P<file>\S+): (?P<verdict>valid|invalid)"
    r"(?: \((?:(?P<errors>\d+) errors?)?(?:, )?(?:(?P<warnings>\d+) warnings?)?\))?$"
)
ENV_LINE = re.compile(r"^# env: (?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


# ------------------------------------------------------------------ running


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


def leading_comment(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").split("\n")
    comment = []
    for line in lines:
        if not line.startswith("#"):
            break
        comment.append(line)
    return comment


def environment(path: Path) -> dict[str, str]:
    """PATH and HOME, UTF-8 output, and the `# env:` variables of the file; nothing else."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", "/nonexistent"),
        "PYTHONIOENCODING": "utf-8",
        # The uvhost under test, not whichever one the interpreter has installed (a git
        # worktree imports its own through PYTHONPATH; without this the subprocess would
        # check the installed checkout's code and the goldens would compare the wrong one).
        "PYTHONPATH": UVHOST_ROOT,
    }
    if "COVERAGE_PROCESS_START" in os.environ:  # measure the subprocess; changes no output
        env["COVERAGE_PROCESS_START"] = os.environ["COVERAGE_PROCESS_START"]
    for line in leading_comment(path):
        if match := ENV_LINE.match(line):
            env[match["name"]] = match["value"]
    return env


def run_check(path: Path, *options: str) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "uvhost", "check", *options, path.name],
        cwd=path.parent,
        env=environment(path),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1))


@cache
def _started() -> dict[Path, Future[Run]]:
    """Every plain `uvhost check` of the corpus, started at once: each is a new interpreter."""
    return {path: _pool().submit(run_check, path) for path in [*BAD_FILES, *GOOD_FILES]}


def checked(path: Path) -> Run:
    return _started()[path].result()


def anonymise(text: str) -> str:
    """The absolute path of configs/ (however it is spelt) becomes `<configs>`."""
    for spelling in {str(CONFIGS.resolve()), str(CONFIGS.absolute())}:
        text = text.replace(spelling, "<configs>")
    return text


# ------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class Shown:
    """One diagnostic as printed: its head, the echoed source line and the marker line."""

    line: int
    column: int
    severity: str
    message: str
    echoed: str
    marker: str


def diagnostics(output: str) -> Iterator[Shown]:
    lines = output.split("\n")
    for index, text in enumerate(lines):
        head = HEAD.match(text)
        if head is None:
            continue
        echoed = lines[index + 1].split(" | ", 1)[1] if " | " in lines[index + 1] else ""
        marker = lines[index + 2].split(" | ", 1)[1] if " | " in lines[index + 2] else ""
        yield Shown(
            int(head["line"]),
            int(head["column"]),
            head["severity"],
            text[head.end() :],
            echoed,
            marker,
        )


def tally(output: str) -> re.Match[str]:
    last = output.rstrip("\n").split("\n")[-1]
    match = TALLY.match(last)
    assert match is not None, f"the last line is not a tally: {last!r}"
    return match


def assert_positions_are_real(path: Path, output: str) -> list[Shown]:
    """Every diagnostic points at a line and column of the file, and echoes that line."""
    source = [line.removesuffix("\r") for line in path.read_text(encoding="utf-8").split("\n")]
    heads = [line for line in output.split("\n") if ANY_HEAD.match(line)]
    found = list(diagnostics(output))
    assert len(found) == len(heads), f"a diagnostic has no :LINE:COL: position:\n{heads}"
    for shown in found:
        assert 1 <= shown.line <= len(source), f"line {shown.line} is not in {path.name}"
        text = source[shown.line - 1]
        assert 1 <= shown.column <= len(text) + 1, (
            f"{path.name}:{shown.line}: column {shown.column} is past the end of {text!r}"
        )
        assert shown.echoed == text.expandtabs(1).rstrip(), f"echoed the wrong line: {shown}"
        caret = len(shown.marker) - len(shown.marker.lstrip(" "))
        assert caret == shown.column - 1, f"the marker is not under column {shown.column}"
        assert set(shown.marker.strip(" ")) == {"^"}, f"not a marker: {shown.marker!r}"
    return found


def assert_tally_counts(path: Path, output: str, found: list[Shown], verdict: str) -> None:
    summary = tally(output)
    assert summary["file"] == path.name
    assert summary["verdict"] == verdict
    errors = sum(1 for shown in found if shown.severity == "error")
    warnings = sum(1 for shown in found if shown.severity == "warning")
    assert int(summary["errors"] or 0) == errors, "the tally miscounts errors"
    assert int(summary["warnings"] or 0) == warnings, "the tally miscounts warnings"


# ------------------------------------------------------------------- corpus


def test_the_corpus_is_large_and_every_broken_file_says_what_is_wrong():
    assert len(BAD_FILES) >= 30
    assert len(GOOD_FILES) >= 8
    for path in [*BAD_FILES, *GOOD_FILES]:
        comment = leading_comment(path)
        assert comment, f"{path.name} must start with a comment saying what it shows"
        assert comment[0].startswith(("# Broken:", "# Valid")), path.name


def test_every_golden_belongs_to_a_config():
    orphans = {p.stem for p in BAD.glob("*.out")} - {p.stem for p in BAD_FILES}
    assert not orphans, f"goldens without a config: {sorted(orphans)}"


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_config_matches_its_golden(path: Path):
    run = checked(path)
    assert run.stderr == "", run.stderr
    assert run.returncode == 1, f"exit {run.returncode}:\n{run.stdout}"
    output = anonymise(run.stdout)
    assert str(CONFIGS.resolve()) not in output

    found = assert_positions_are_real(path, output)
    assert found, "a broken config must produce at least one diagnostic"
    assert any(shown.severity == "error" for shown in found)
    assert_tally_counts(path, output, found, "invalid")

    golden = path.with_suffix(".out")
    if UPDATE:
        golden.write_text(output, encoding="utf-8", newline="\n")
        return
    if not golden.exists():
        pytest.fail(f"no golden {golden.name}; create it with UVHOST_UPDATE_GOLDEN=1")
    expected = golden.read_text(encoding="utf-8")
    if output != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                output.splitlines(keepends=True),
                f"{golden.name} (golden)",
                f"uvhost check {path.name} (now)",
            )
        )
        pytest.fail(
            f"`uvhost check {path.name}` differs from {golden.name}:\n{diff}\n"
            "If the change is intended, regenerate with UVHOST_UPDATE_GOLDEN=1 and review it.",
            pytrace=False,
        )


def test_many_errors_are_reported_in_one_pass():
    path = BAD / "many_errors.toml"
    found = list(diagnostics(anonymise(checked(path).stdout)))
    messages = "\n".join(shown.message for shown in found)
    assert sum(1 for shown in found if shown.severity == "error") >= 6
    assert 'unknown key "graceful_timout"' in messages  # validation
    assert '"localhost" has no port' in messages  # a listener that fails validation ...
    assert 'app "blgo" is not defined' in messages  # ... and routes to a missing app
    assert "clashes with" in messages  # cross-field
    assert "does not match the certificate" in messages  # files
    assert "BLOG_SECRET is not set" in messages  # interpolation
    assert any(shown.severity == "warning" for shown in found)


# ----------------------------------------------------------------- --json


@pytest.mark.parametrize("name", ["many_errors", "tls_wrong_password"])
def test_json_report_has_the_same_diagnostics(name: str):
    path = BAD / f"{name}.toml"
    run = run_check(path, "--json")
    assert run.returncode == 1
    report = json.loads(run.stdout)
    assert report["valid"] is False
    assert report["file"] == path.name
    text = list(diagnostics(anonymise(checked(path).stdout)))
    items = report["diagnostics"]
    assert len(items) == len(text)
    for item, shown in zip(items, text, strict=True):
        assert isinstance(item["line"], int)
        assert isinstance(item["column"], int)
        assert item["end_column"] > item["column"]
        assert (item["line"], item["column"], item["severity"]) == (
            shown.line,
            shown.column,
            shown.severity,
        )
        assert anonymise(item["message"]) == shown.message


# ------------------------------------------------------------------- valid


@pytest.mark.parametrize("path", GOOD_FILES, ids=[p.stem for p in GOOD_FILES])
def test_good_config_is_valid(path: Path):
    run = checked(path)
    assert run.stderr == "", run.stderr
    assert run.returncode == 0, f"exit {run.returncode}:\n{run.stdout}"
    found = assert_positions_are_real(path, run.stdout)
    assert all(shown.severity == "warning" for shown in found), run.stdout
    tallies = [line for line in run.stdout.split("\n") if TALLY.match(line)]
    assert len(tallies) == 1, run.stdout
    assert_tally_counts(path, tallies[0] + "\n", found, "valid")
    assert "Listeners" in run.stdout  # the plan summary follows a valid check


def test_a_warning_alone_does_not_fail_the_check():
    path = GOOD / "unrouted_app_warning.toml"
    run = checked(path)
    assert run.returncode == 0
    assert f"{path.name}: valid (1 warning)" in run.stdout
    (shown,) = diagnostics(run.stdout)
    assert shown.severity == "warning"
    assert shown.message == 'app "reports" is not served by any listener'


def test_the_environment_is_only_what_a_file_asks_for():
    env = environment(BAD / "tls_wrong_password.toml")
    wrong = "not-the-password"
    assert env["TLS_KEY_PASSWORD"] == wrong
    allowed = {
        "PATH",
        "HOME",
        "PYTHONIOENCODING",
        "PYTHONPATH",
        "COVERAGE_PROCESS_START",
        "TLS_KEY_PASSWORD",
    }
    assert set(env) <= allowed
