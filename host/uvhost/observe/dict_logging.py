"""Applying `[logging] dict_config` in a process, again on every reload.

Invariants:
- Applied before uvhost installs its own handlers: `dictConfig` closes every
  handler it finds, so ours are made after it, never used closed.
- What a previous dictConfig set up is undone first (its loggers' handlers
  closed, their levels and propagation reset), so removing a logger from the
  dictConfig, or the whole key, takes effect live like any other edit.
- A missing `disable_existing_loggers` means false: true would silence
  uvhost's own loggers and the app's, which exist before it runs.
- A dictConfig that fails while it runs (a handler class that does not
  import, a file that cannot be opened) is logged and leaves uvhost's own
  handlers in place: a process never ends up logging nowhere.
"""

from __future__ import annotations

import copy
import logging
import logging.config
from collections.abc import Mapping
from typing import Any

_CONFIGURED: set[str] = set()
"""Loggers the last dictConfig named ("" for the root)."""


def apply(config: Mapping[str, Any] | None) -> tuple[bool, bool]:
    """Undo the previous dictConfig and apply `config` (None: none); returns whether it owns
    the root logger's output (it has a `root` entry) and whether it set the root's level."""
    _undo()
    if config is None:
        return False, False
    schema = copy.deepcopy(dict(config))
    schema.setdefault("disable_existing_loggers", False)
    try:
        logging.config.dictConfig(schema)
    except (ValueError, TypeError, AttributeError, ImportError, OSError) as error:
        _undo_names([*schema.get("loggers", {}), ""])
        logging.getLogger("uvhost").error(
            "logging.dict_config could not be applied: %s; uvhost's own logging is used", error
        )
        return False, False
    _CONFIGURED.update(schema.get("loggers", {}))
    root = schema.get("root")
    if root is not None and not schema.get("incremental"):
        _CONFIGURED.add("")
    return root is not None, isinstance(root, Mapping) and "level" in root


def _undo() -> None:
    _undo_names(list(_CONFIGURED))
    _CONFIGURED.clear()


def _undo_names(names: list[str]) -> None:
    for name in names:
        logger = logging.getLogger(name or None)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        if name:
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
            logger.disabled = False
        for filter_ in list(logger.filters):
            logger.removeFilter(filter_)
