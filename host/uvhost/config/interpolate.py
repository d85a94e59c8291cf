"""`${VAR}` interpolation of string values, from the environment and dotenv files.

The language, applied to every string value (never to keys):
- `${NAME}`: the variable's value; an error when it is unset.
- `${NAME:-default}`: the default when NAME is unset or empty.
- `${NAME:?message}`: an error showing `message` when NAME is unset or empty.
- `$$`: a literal `$`. Any other `$` is kept as written, so regexes and
  prices in header values need no escaping.

Invariants:
- Pure with respect to the process: variables are read from the mapping
  given (the process environment over the env files), and `os.environ` is
  never changed — the supervisor's own environment stays what it was.
- The process environment wins over env files, and later files over earlier
  ones, the way a shell's exported variables win over a `.env` file.
- Every problem is reported with the key path of the value that holds it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uvhost.config.errors import Problem
from uvhost.config.source import KeyPath

_REFERENCE = re.compile(r"\$(?:\$|\{([^}]*)\}|(\{))")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Interpolation:
    """The interpolated data, the problems met, and the variables that were used."""

    data: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    used: set[str] = field(default_factory=set)


def read_env_files(
    paths: Sequence[tuple[KeyPath, Path]],
) -> tuple[dict[str, str], list[Problem]]:
    """Merge dotenv files in order (later wins); a missing file is a problem at its key."""
    merged: dict[str, str] = {}
    problems: list[Problem] = []
    for key_path, path in paths:
        if not path.is_file():
            problems.append(
                Problem(
                    f"env file {os.path.normpath(path)} does not exist",
                    "create it, fix the path (relative paths start at the config's folder), "
                    "or remove it from env_files",
                    key_path,
                )
            )
            continue
        try:
            values = read_dotenv(path)
        except (OSError, UnicodeDecodeError) as error:
            problems.append(Problem(f"cannot read env file {path}: {error}", "", key_path))
            continue
        merged.update(values)
    return merged, problems


def read_dotenv(path: Path) -> dict[str, str]:
    """A dotenv file's variables (keys without a value are skipped)."""
    from dotenv import dotenv_values  # noqa: PLC0415 - only configs with env files pay for it

    values = dotenv_values(path, interpolate=False, encoding="utf-8")
    return {name: value for name, value in values.items() if value is not None}


def interpolate(data: Mapping[str, Any], variables: Mapping[str, str]) -> Interpolation:
    result = Interpolation(data={})
    result.data = _walk(data, (), variables, result)
    return result


def _walk(value: Any, path: KeyPath, variables: Mapping[str, str], out: Interpolation) -> Any:
    if isinstance(value, str):
        return _expand(value, path, variables, out)
    if isinstance(value, dict):
        return {key: _walk(item, (*path, key), variables, out) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, (*path, index), variables, out) for index, item in enumerate(value)]
    return value


def _expand(text: str, path: KeyPath, variables: Mapping[str, str], out: Interpolation) -> str:
    if "$" not in text:
        return text

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group(2) is not None:
            out.problems.append(
                Problem(
                    "unclosed ${ in value",
                    "close the reference with }, or write $$ for a literal $",
                    path,
                )
            )
            return match.group(0)
        return _resolve(match.group(1), path, variables, out)

    return _REFERENCE.sub(substitute, text)


def _resolve(body: str, path: KeyPath, variables: Mapping[str, str], out: Interpolation) -> str:
    name, operator, argument = _split(body)
    if not _NAME.match(name):
        out.problems.append(
            Problem(
                f"${{{body}}} is not a valid reference",
                "write ${NAME}, ${NAME:-default} or ${NAME:?message}; names are letters, "
                "digits and _",
                path,
            )
        )
        return ""
    out.used.add(name)
    value = variables.get(name)
    if operator == ":-":
        return value if value else argument
    if operator == ":?":
        if value:
            return value
        out.problems.append(
            Problem(
                argument or f"{name} is required",
                f"set {name} in the environment or in an env file",
                path,
            )
        )
        return ""
    if value is None:
        out.problems.append(
            Problem(
                f"environment variable {name} is not set",
                f"set {name} in the environment or an env file, or give a default: "
                f"${{{name}:-value}}",
                path,
            )
        )
        return ""
    return value


def _split(body: str) -> tuple[str, str, str]:
    for operator in (":-", ":?"):
        name, found, argument = body.partition(operator)
        if found:
            return name, operator, argument
    return body, "", ""
