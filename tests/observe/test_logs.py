"""Logging setup: the log file reopened after a logrotate rename, JSON lines with the pid."""

from __future__ import annotations

import io
import json
import logging
import os

import pytest

from uvhost.config.model import LoggingSettings
from uvhost.observe import logs


@pytest.fixture(autouse=True)
def restore_logging():
    """Whatever `configure` installs on the root logger goes away after each test."""
    root, access = logging.getLogger(), logging.getLogger("uvhost.access")
    levels = root.level, access.level
    yield
    for handler in logs._INSTALLED:
        root.removeHandler(handler)
        handler.close()
    logs._INSTALLED.clear()
    root.setLevel(levels[0])
    access.setLevel(levels[1])


def ours(root: logging.Logger) -> list[logging.Handler]:
    return [handler for handler in root.handlers if handler in logs._INSTALLED]


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_reopen_after_a_rename_loses_and_duplicates_nothing(tmp_path, fmt):
    path = tmp_path / "uvhost.log"
    logs.configure(LoggingSettings(file=path, format=fmt), stream=io.StringIO())
    log = logging.getLogger("uvhost.test")
    root = logging.getLogger()
    handlers = ours(root)
    log.info("line one")

    path.rename(tmp_path / "uvhost.log.1")  # what logrotate does before its postrotate
    log.info("line two")  # still the old file: the handle follows the rename
    assert not path.exists()

    assert logs.reopen() == 1
    log.info("line three")
    assert ours(root) == handlers  # the same handlers, not one more
    assert len(root.handlers) == len(set(root.handlers))

    rotated = (tmp_path / "uvhost.log.1").read_text("utf-8").splitlines()
    fresh = path.read_text("utf-8").splitlines()
    assert [line for line in rotated if "line" in line] == rotated
    assert len(rotated) == 2
    assert "line one" in rotated[0]
    assert "line two" in rotated[1]
    assert len(fresh) == 1
    assert "line three" in fresh[0]
    if fmt == "json":
        assert [json.loads(line)["message"] for line in rotated + fresh] == [
            "line one",
            "line two",
            "line three",
        ]


def test_reopen_twice_and_configure_again_keep_one_file_handler(tmp_path):
    path = tmp_path / "uvhost.log"
    settings = LoggingSettings(file=path, format="plain")
    logs.configure(settings, stream=io.StringIO())
    assert logs.reopen() == 1
    assert logs.reopen() == 1  # nothing was moved: the same path is simply reopened
    logs.configure(settings, stream=io.StringIO())  # a live reload of [logging]
    root = logging.getLogger()
    files = [h for h in root.handlers if getattr(h, "baseFilename", None) == str(path.resolve())]
    assert len(files) == 1  # pytest's own handlers aside
    logging.getLogger("uvhost.test").warning("once")
    assert path.read_text("utf-8").count("once") == 1


def test_reopen_without_a_file_does_nothing():
    logs.configure(LoggingSettings(format="plain"), stream=io.StringIO())
    assert logs.reopen() == 0


def test_a_file_that_cannot_be_reopened_keeps_the_old_one(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "uvhost.log"
    stream = io.StringIO()
    logs.configure(LoggingSettings(file=path, format="plain"), stream=stream)
    kept = tmp_path / "kept.log"
    path.rename(kept)
    folder.rmdir()  # the configured folder is gone: the new file cannot be created

    assert logs.reopen() == 0
    assert "cannot reopen the log file" in stream.getvalue()
    logging.getLogger("uvhost.test").warning("still logged")
    assert "still logged" in kept.read_text("utf-8")


def test_json_lines_carry_the_pid_of_the_process_that_logged():
    stream = io.StringIO()
    logs.configure(LoggingSettings(format="json"), stream=stream)
    logging.getLogger("uvhost.test").warning("multi\nline")
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["pid"] == os.getpid()
    assert entry["message"] == "multi\nline"
    assert entry["level"] == "warning"
    assert entry["logger"] == "uvhost.test"
