"""`[logging] dict_config`: a `logging.config.dictConfig` schema, judged before it is used.

Invariants:
- Pure: judges a mapping and reads no file and imports nothing; `read_file`
  is the one function here that touches the disk, and `load.py` calls it
  before validation, so a dictConfig written in the TOML and one read from a
  JSON, TOML or YAML file are judged by the same rules.
- What `dictConfig` would only find out while it runs (a formatter or a
  filter that is not defined, a level Python does not know, an unknown key
  of a formatter or a logger, version 2) is an error here, with the key path
  inside the dictConfig, so a worker never starts with a config its logging
  setup rejects. Handler classes are imported by the workers that use them,
  not by `uvhost check`: importing an app's code belongs to the workers.
- The value kept is the mapping as written (plain dicts, lists and scalars),
  so it pickles to the workers and compares by content on reload.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uvhost.config.errors import Problem, did_you_mean
from uvhost.config.types import ConfigValueError, show_value

TOP_KEYS = (
    "version",
    "formatters",
    "filters",
    "handlers",
    "loggers",
    "root",
    "incremental",
    "disable_existing_loggers",
)
FORMATTER_KEYS = ("format", "datefmt", "style", "validate", "defaults", "class")
LOGGER_KEYS = ("level", "propagate", "filters", "handlers")
LEVELS = ("CRITICAL", "FATAL", "ERROR", "WARNING", "WARN", "INFO", "DEBUG", "NOTSET")
FACTORY = "()"
"""dictConfig's key for a user factory: its other keys are the factory's arguments."""

Where = tuple[str | int, ...]


def parse_dict_config(value: object) -> dict[str, Any]:
    """The dictConfig, checked; raises ConfigValueError naming the offending part."""
    if not isinstance(value, Mapping):
        raise ConfigValueError(
            f"expected a dictConfig table (or a file name), got {show_value(value)}",
            'write a table with version = 1, or "logging.json" / ".toml" / ".yaml"',
        )
    config = dict(value)
    _known_keys(config, TOP_KEYS, (), "a dictConfig")
    if config.get("version") != 1:
        raise ConfigValueError(
            f"dictConfig version must be 1, got {show_value(config.get('version'))}",
            "add version = 1 (the only schema version Python has)",
            where=("version",) if "version" in config else (),
        )
    for flag in ("incremental", "disable_existing_loggers"):
        if flag in config and not isinstance(config[flag], bool):
            raise ConfigValueError(f"{flag} must be true or false", "", where=(flag,))
    formatters = _section(config, "formatters")
    filters = _section(config, "filters")
    handlers = _section(config, "handlers")
    _check_formatters(formatters)
    for name, filter_ in filters.items():
        _entry(filter_, ("filters", name))
    _check_handlers(handlers, formatters, filters)
    loggers = _section(config, "loggers")
    for name, logger in loggers.items():
        _logger(logger, ("loggers", name), handlers, filters)
    if "root" in config:
        _logger(config["root"], ("root",), handlers, filters)
    return config


def _check_formatters(formatters: Mapping[str, Any]) -> None:
    for name, formatter in formatters.items():
        where: Where = ("formatters", name)
        _entry(formatter, where)
        if FACTORY in formatter:
            continue
        _known_keys(formatter, FORMATTER_KEYS, where, "a formatter")
        style = formatter.get("style", "%")
        if style not in ("%", "{", "$"):
            raise ConfigValueError(
                f"{show_value(style)} is not a format style",
                'use "%", "{" or "$"',
                where=(*where, "style"),
            )


def _check_handlers(
    handlers: Mapping[str, Any], formatters: Mapping[str, Any], filters: Mapping[str, Any]
) -> None:
    for name, handler in handlers.items():
        where: Where = ("handlers", name)
        _entry(handler, where)
        if FACTORY not in handler and not isinstance(handler.get("class"), str):
            raise ConfigValueError(
                f'handler "{name}" has no class',
                'add class = "logging.StreamHandler" (or another handler class)',
                where=where,
            )
        _level(handler, where)
        if "formatter" in handler and handler["formatter"] not in formatters:
            raise ConfigValueError(
                f"{show_value(handler['formatter'])} is not a formatter of this dictConfig",
                did_you_mean(str(handler["formatter"]), formatters) or "define it in formatters",
                where=(*where, "formatter"),
            )
        _references(handler, "filters", filters, where)


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    section = config.get(key, {})
    if not isinstance(section, Mapping):
        raise ConfigValueError(
            f"{key} must be a table of named entries", f"write [...{key}.NAME] tables", where=(key,)
        )
    return dict(section)


def _entry(entry: object, where: Where) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise ConfigValueError(
            f"{'.'.join(map(str, where))} must be a table, got {show_value(entry)}", "", where=where
        )
    return entry


def _known_keys(
    entry: Mapping[str, Any], allowed: tuple[str, ...], where: Where, what: str
) -> None:
    for key in entry:
        if key not in allowed:
            raise ConfigValueError(
                f'unknown key "{key}" in {what}',
                did_you_mean(str(key), allowed),
                where=(*where, key),
            )


def _level(entry: Mapping[str, Any], where: Where) -> None:
    level = entry.get("level")
    if level is None or (isinstance(level, int) and not isinstance(level, bool)):
        return
    if level not in LEVELS:
        upper = str(level).upper()
        raise ConfigValueError(
            f"{show_value(level)} is not a logging level",
            f'write "{upper}" (dictConfig levels are upper-case)'
            if upper in LEVELS
            else did_you_mean(str(level), LEVELS),
            where=(*where, "level"),
        )


def _references(
    entry: Mapping[str, Any], key: str, defined: Mapping[str, Any], where: Where
) -> None:
    names = entry.get(key, [])
    if not isinstance(names, list):
        raise ConfigValueError(f"{key} must be a list of names", "", where=(*where, key))
    for index, name in enumerate(names):
        if name not in defined:
            raise ConfigValueError(
                f"{show_value(name)} is not one of this dictConfig's {key}",
                did_you_mean(str(name), defined) or f"define it in {key}",
                where=(*where, key, index),
            )


def _logger(
    logger: Any, where: Where, handlers: Mapping[str, Any], filters: Mapping[str, Any]
) -> None:
    logger = _entry(logger, where)
    allowed = LOGGER_KEYS if where[0] == "loggers" else LOGGER_KEYS[:1] + LOGGER_KEYS[2:]
    _known_keys(logger, allowed, where, "a logger" if where[0] == "loggers" else "root")
    _level(logger, where)
    if "propagate" in logger and not isinstance(logger["propagate"], bool):
        raise ConfigValueError("propagate must be true or false", "", where=(*where, "propagate"))
    _references(logger, "handlers", handlers, where)
    _references(logger, "filters", filters, where)


class DictConfigFileError(Exception):
    """A dictConfig file that cannot be read or parsed; the message says why."""


def read_file(path: Path) -> object:
    """The content of a dictConfig file, by its suffix: .json, .toml, or .yaml/.yml when
    PyYAML is installed (it is not a dependency of uvhost)."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DictConfigFileError(f"cannot read {path}: {error}") from None
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            return _yaml(text, path)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise DictConfigFileError(f"{path.name} does not parse: {error}") from None
    raise DictConfigFileError(
        f"{path.name}: a dictConfig file must end in .json, .toml, .yaml or .yml"
    )


KEY = ("logging", "dict_config")


def inline_dict_config(
    data: dict[str, Any], base_dir: Path, problems: list[Problem]
) -> tuple[dict[str, Any], Path | None]:
    """`data` with a `dict_config` file name replaced by the file's content, and that file
    (to watch, and to name in messages); a file that cannot be read is a problem at the key,
    and the key is dropped so validation does not report it a second time."""
    logging_table = data.get("logging")
    if not isinstance(logging_table, Mapping):
        return data, None
    name = logging_table.get("dict_config")
    if not isinstance(name, str):
        return data, None
    path = (base_dir / Path(name).expanduser()).absolute()
    rest = {key: value for key, value in logging_table.items() if key != "dict_config"}
    try:
        content = read_file(path)
    except DictConfigFileError as error:
        problems.append(Problem(str(error), "", KEY))
        return {**data, "logging": rest}, path
    return {**data, "logging": {**rest, "dict_config": content}}, path


def name_the_file(problem: Problem, path: Path) -> Problem:
    """A problem inside a dictConfig read from `path`: its message says so (its position is
    the TOML key that names the file)."""
    if problem.path[:2] != KEY or problem.message.startswith(path.name):
        return problem
    inner = ".".join(str(part) for part in problem.path[2:])
    where = f"{path.name}, {inner}" if inner else path.name
    return dataclasses.replace(problem, message=f"{where}: {problem.message}")


def _yaml(text: str, path: Path) -> object:
    try:
        import yaml  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415 - optional
    except ImportError:
        raise DictConfigFileError(
            f"{path.name} is YAML, and PyYAML is not installed: install it, or write the "
            "dictConfig as JSON or TOML"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DictConfigFileError(f"{path.name} does not parse: {error}") from None
