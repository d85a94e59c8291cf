"""The validated config as worker processes receive it: same attributes, no pydantic.

Why: a worker only reads a config the supervisor has already validated. A
pickled pydantic model makes every worker import pydantic and uvhost's
validators just to unpickle it, about 8 MiB of resident memory per worker
for nothing but attribute access. `detach` turns the model tree into
`Record`s (plain attribute bags) before the plan crosses the pipe.

Invariants:
- This module never imports pydantic (a test checks a worker's memory map),
  so the classes below unpickle in a worker without it; models and secrets
  are recognised by their methods, not their classes.
- A detached tree reads like the model it came from: every field by the same
  name, nested models as Records, dicts and tuples rebuilt, a secret still a
  `get_secret_value()` away and masked in reprs. Only attribute access
  survives: no validation, no model methods.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any


class Record(SimpleNamespace):
    """A detached model or dataclass: read-only attributes."""

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a detached config is read-only ({name})")


class Secret:
    """A detached secret string; its value never shows in a repr or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return Secret, (self._value,)


def detach(value: Any) -> Any:
    """A copy of `value` without pydantic objects (models, secrets) anywhere inside."""
    fields = getattr(type(value), "model_fields", None)
    if isinstance(fields, dict):  # a pydantic model
        return Record(**{name: detach(getattr(value, name)) for name in fields})
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return Record(
            **{
                field.name: detach(getattr(value, field.name))
                for field in dataclasses.fields(value)
            }
        )
    if hasattr(value, "get_secret_value"):
        return Secret(value.get_secret_value())
    if isinstance(value, dict):
        return {key: detach(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(detach(item) for item in value)
    return value
