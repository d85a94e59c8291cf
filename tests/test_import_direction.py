"""The import direction of DESIGN.md, enforced on the source with `ast`:

- `uvhost.config` imports nothing else of ours;
- `uvhost.ipc` imports only `uvhost.config`;
- `uvhost.server` never imports `uvhost.supervisor`, `uvhost.cli` or `uvhost.commands`;
- `uvhost.supervisor` never imports `uvhost.server`;
- `uvhost.observe` never imports `uvhost.server`, `uvhost.supervisor`, `uvhost.cli` or
  `uvhost.commands`.

Every import statement counts, including those under `if TYPE_CHECKING:` and inside
functions: a deferred import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "host" / "uvhost"


@dataclass(frozen=True)
class Rule:
    """Modules under `scope` may import ours only from `allowed` (if set), never `forbidden`."""

    scope: str
    forbidden: tuple[str, ...] = ()
    allowed: tuple[str, ...] | None = None


RULES = (
    Rule("uvhost.config", allowed=("uvhost.config",)),
    Rule("uvhost.ipc", allowed=("uvhost.ipc", "uvhost.config")),
    Rule("uvhost.server", forbidden=("uvhost.supervisor", "uvhost.cli", "uvhost.commands")),
    Rule("uvhost.supervisor", forbidden=("uvhost.server",)),
    Rule(
        "uvhost.observe",
        forbidden=("uvhost.server", "uvhost.supervisor", "uvhost.cli", "uvhost.commands"),
    ),
)


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_name(path: Path) -> tuple[str, bool]:
    """The dotted name of a file under host/uvhost, and whether it is a package."""
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imported(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module `source` imports, relative imports resolved; `from a import b` also
    counts as importing `a.b`, since b may be a submodule."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                origin = f"{base}.{node.module}" if node.module else base
            else:
                origin = node.module or ""
            found.add(origin)
            found.update(f"{origin}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def violations(module: str, imports: set[str]) -> list[str]:
    broken = []
    for rule in RULES:
        if not within(module, rule.scope):
            continue
        for name in sorted(imports):
            if not within(name, "uvhost"):
                continue
            if rule.allowed is not None and not any(within(name, a) for a in rule.allowed):
                broken.append(
                    f"{module} imports {name} ({rule.scope} may only import "
                    f"{', '.join(rule.allowed)})"
                )
            elif any(within(name, f) for f in rule.forbidden):
                broken.append(f"{module} imports {name} ({rule.scope} must not)")
    return broken


def our_modules() -> Iterator[tuple[str, bool, Path]]:
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        name, is_package = module_name(path)
        yield name, is_package, path


def test_the_package_is_found() -> None:
    names = {name for name, _, _ in our_modules()}
    assert {"uvhost", "uvhost.cli", "uvhost.config.model", "uvhost.config.load"} <= names


def test_the_import_direction_holds() -> None:
    broken = [
        problem
        for name, is_package, path in our_modules()
        for problem in violations(
            name, imported(path.read_text(encoding="utf-8"), name, is_package=is_package)
        )
    ]
    assert broken == []


# ----------------------------------------------- the checker catches violations


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("uvhost.config.model", "from uvhost.server import worker\n"),
        ("uvhost.config.model", "import uvhost.cli\n"),
        ("uvhost.config.model", "from uvhost import __version__\n"),
        ("uvhost.config.model", "from .. import observe\n"),
        ("uvhost.config.model", "def f():\n    from uvhost.observe import stats\n"),
        ("uvhost.ipc", "from uvhost.server.wire import x\n"),
        ("uvhost.server.http", "from uvhost.supervisor.parent import Parent\n"),
        ("uvhost.server.http", "from ..supervisor import parent\n"),
        ("uvhost.server.http", "from uvhost import cli\n"),
        ("uvhost.server.http", "from uvhost.commands.check import check\n"),
        (
            "uvhost.server.http",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from uvhost.supervisor import groups\n",
        ),
        ("uvhost.supervisor.parent", "import uvhost.server.worker as worker\n"),
        ("uvhost.supervisor.parent", "from uvhost import server\n"),
        ("uvhost.observe.stats", "from uvhost.supervisor.control import Client\n"),
        ("uvhost.observe.dashboard", "from ..server import http\n"),
        ("uvhost.observe", "from . import stats\nfrom ..cli import main\n"),
    ],
)
def test_a_violating_import_is_caught(module: str, source: str) -> None:
    is_package = module == "uvhost.observe"  # the package's own __init__.py
    assert violations(module, imported(source, module, is_package=is_package)) != []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("uvhost.config.model", "from uvhost.config.types import Duration\nimport os\n"),
        ("uvhost.config.load", "from .checks import check_config\nfrom . import plan\n"),
        ("uvhost.ipc", "from uvhost.config.plan import Plan\n"),
        (
            "uvhost.server.worker",
            "from uvhost.config.plan import Plan\nfrom uvhost.ipc import Ready\n",
        ),
        ("uvhost.server.http", "from uvhost.observe.stats import Counters\n"),
        ("uvhost.supervisor.parent", "from uvhost.observe import dashboard\n"),
        ("uvhost.cli", "from uvhost.server import worker\nfrom uvhost.supervisor import parent\n"),
        ("uvhost.commands.check", "import uvhost.server.probe\n"),
    ],
)
def test_an_allowed_import_passes(module: str, source: str) -> None:
    assert violations(module, imported(source, module)) == []


def test_relative_imports_are_resolved() -> None:
    assert imported("from ..server import http\n", "uvhost.observe.stats") == {
        "uvhost.server",
        "uvhost.server.http",
    }
    assert imported("from . import stats\n", "uvhost.observe", is_package=True) == {
        "uvhost.observe",
        "uvhost.observe.stats",
    }
    assert imported("from .wire import x\n", "uvhost.server.http") == {
        "uvhost.server.wire",
        "uvhost.server.wire.x",
    }
