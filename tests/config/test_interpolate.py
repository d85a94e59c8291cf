"""Tests for `uvhost.config.interpolate`: the ${VAR} language, key paths of problems,
env files and their precedence, and the process environment left untouched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from uvhost.config.errors import Problem
from uvhost.config.interpolate import interpolate, read_env_files


def expand(text: str, **variables: str) -> tuple[str, list[Problem]]:
    result = interpolate({"v": text}, variables)
    return result.data["v"], result.problems


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("${A}", "alpha"),
        ("x${A}y", "xalphay"),
        ("${A}${B}", "alphabeta"),
        ("${A}:${B}", "alpha:beta"),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${A:-fallback}", "alpha"),
        ("${UNSET:-}", ""),
        ("${UNSET:-a:b-c}", "a:b-c"),
        ("${A:?needed}", "alpha"),
        ("$$", "$"),
        ("$${A}", "${A}"),
        ("$$$$", "$$"),
        ("$$${A}", "$alpha"),
        ("price: $5", "price: $5"),
        ("^/a$", "^/a$"),
        ("$A", "$A"),
        ("a $ b", "a $ b"),
        ("no dollars", "no dollars"),
        ("", ""),
    ],
)
def test_expansion(text: str, expanded: str) -> None:
    value, problems = expand(text, A="alpha", B="beta", EMPTY="")
    assert problems == []
    assert value == expanded


def test_unset_variable_is_a_problem_with_a_hint() -> None:
    value, [problem] = expand("${NOPE}")
    assert value == ""
    assert problem.message == "environment variable NOPE is not set"
    assert "${NOPE:-value}" in problem.hint
    assert problem.path == ("v",)


def test_empty_variable_is_not_unset() -> None:
    assert expand("[${EMPTY}]", EMPTY="") == ("[]", [])


@pytest.mark.parametrize("variables", [{}, {"KEY": ""}])
def test_required_variable_shows_its_message(variables: dict[str, str]) -> None:
    value, [problem] = expand("${KEY:?set KEY to the API key}", **variables)
    assert value == ""
    assert problem.message == "set KEY to the API key"
    assert problem.hint == "set KEY in the environment or in an env file"


def test_required_variable_without_a_message() -> None:
    _, [problem] = expand("${KEY:?}")
    assert problem.message.startswith("KEY is required")


def test_unclosed_reference() -> None:
    value, [problem] = expand("a${B")
    assert value == "a${B"
    assert problem.message == "unclosed ${ in value"
    assert "$$" in problem.hint


@pytest.mark.parametrize("body", ["", "1A", "A-B", "A B", "A:x", "A.B"])
def test_invalid_names(body: str) -> None:
    _, [problem] = expand("${" + body + "}")
    assert problem.message == "${" + body + "} is not a valid reference"
    assert "${NAME:-default}" in problem.hint


def test_every_problem_in_a_value_is_reported() -> None:
    value, problems = expand("${A}-${B}-${C:?c please}", A="1")
    assert value == "1--"
    assert [p.message for p in problems] == ["environment variable B is not set", "c please"]


def test_nested_tables_and_arrays_are_interpolated_with_their_paths() -> None:
    data: dict[str, Any] = {
        "listeners": {"public": {"bind": "127.0.0.1:${PORT}", "backlog": 10, "tls": None}},
        "host": {"env_files": ["${DIR}/a.env", "${MISSING}"], "watch": True},
        "apps": {"api": {"env": {"X": "${DIR}"}, "list": [["${PORT}"]]}},
    }
    result = interpolate(data, {"PORT": "8000", "DIR": "/etc"})
    assert result.data == {
        "listeners": {"public": {"bind": "127.0.0.1:8000", "backlog": 10, "tls": None}},
        "host": {"env_files": ["/etc/a.env", ""], "watch": True},
        "apps": {"api": {"env": {"X": "/etc"}, "list": [["8000"]]}},
    }
    [problem] = result.problems
    assert problem.path == ("host", "env_files", 1)
    assert result.used == {"PORT", "DIR", "MISSING"}


def test_keys_are_never_interpolated() -> None:
    data = {"routes": {"/${A}": "${A}"}, "${A}": 1}
    result = interpolate(data, {"A": "x"})
    assert result.data == {"routes": {"/${A}": "x"}, "${A}": 1}
    assert result.problems == []


def test_input_is_not_modified() -> None:
    data = {"a": {"b": ["${A}"]}}
    interpolate(data, {"A": "x"})
    assert data == {"a": {"b": ["${A}"]}}


def test_os_environ_is_untouched(tmp_path: Path) -> None:
    env_file = tmp_path / "a.env"
    env_file.write_text("UVHOST_TEST_FROM_FILE=1\nPATH=/nowhere\n")
    before = dict(os.environ)
    variables, problems = read_env_files([(("host", "env_files", 0), env_file)])
    result = interpolate(
        {"a": "${UVHOST_TEST_FROM_FILE}", "b": "${UVHOST_TEST_UNSET:-x}", "c": "${PATH}"},
        {**variables, **os.environ},
    )
    assert problems == []
    assert result.data["a"] == "1"
    assert result.data["c"] == os.environ["PATH"]
    assert dict(os.environ) == before
    assert "UVHOST_TEST_FROM_FILE" not in os.environ


# ---------------------------------------------------------------- env files


def test_later_env_files_win(tmp_path: Path) -> None:
    first, second = tmp_path / "first.env", tmp_path / "second.env"
    first.write_text("A=1\nB=1\n# a comment\nexport C=1\n")
    second.write_text("B=2\nD='quoted value'\n")
    variables, problems = read_env_files(
        [(("host", "env_files", 0), first), (("host", "env_files", 1), second)]
    )
    assert problems == []
    assert variables == {"A": "1", "B": "2", "C": "1", "D": "quoted value"}


def test_env_file_values_are_not_expanded(tmp_path: Path) -> None:
    env_file = tmp_path / "a.env"
    env_file.write_text("A=${HOME}\nB=$x\n")
    variables, _ = read_env_files([(("f",), env_file)])
    assert variables == {"A": "${HOME}", "B": "$x"}


def test_env_file_keys_without_values_are_left_out(tmp_path: Path) -> None:
    env_file = tmp_path / "a.env"
    env_file.write_text("BARE\nA=\n")
    variables, _ = read_env_files([(("f",), env_file)])
    assert variables == {"A": ""}


def test_missing_env_file_is_reported_at_its_key(tmp_path: Path) -> None:
    present = tmp_path / "present.env"
    present.write_text("A=1\n")
    missing = tmp_path / "missing.env"
    variables, [problem] = read_env_files(
        [(("host", "env_files", 0), missing), (("host", "env_files", 1), present)]
    )
    assert variables == {"A": "1"}
    assert problem.path == ("host", "env_files", 0)
    assert problem.message == f"env file {missing} does not exist"
    assert "env_files" in problem.hint


def test_a_folder_is_not_an_env_file(tmp_path: Path) -> None:
    _, [problem] = read_env_files([(("f", 0), tmp_path)])
    assert problem.message == f"env file {tmp_path} does not exist"


def test_unreadable_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_bytes(b"A=\xff\xfe\n")
    _, [problem] = read_env_files([(("f", 0), env_file)])
    assert problem.message.startswith(f"cannot read env file {env_file}:")


def test_process_environment_wins_over_env_files(tmp_path: Path) -> None:
    env_file = tmp_path / "a.env"
    env_file.write_text("PORT=1\nONLY_FILE=file\n")
    variables, _ = read_env_files([(("f", 0), env_file)])
    process = {"PORT": "2"}
    # The order load.py merges them in: files first, the process environment over them.
    result = interpolate({"a": "${PORT}", "b": "${ONLY_FILE}"}, {**variables, **process})
    assert result.data == {"a": "2", "b": "file"}
