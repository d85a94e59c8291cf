"""The summary `uvhost check` prints for a valid config: listeners → routes → apps, and groups.

A pure function from a plan to a rich renderable, so it is tested on a
capture console with a fixed width and no colour.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from uvhost.config.plan import Mount, Plan


def render_summary(plan: Plan, interfaces: Mapping[str, str] | None = None) -> RenderableType:
    """`interfaces`: what `check --import` found each app to be, shown beside its name."""
    return Group(_listener_tree(plan), Text(""), _group_table(plan, interfaces or {}))


def _listener_tree(plan: Plan) -> Tree:
    tree = Tree(Text("Listeners", style="bold"))
    for name, listener in plan.config.listeners.items():
        scheme = "https" if listener.tls is not None else "http"
        label = Text.assemble((name, "bold cyan"), "  ", str(listener.bind), f"  ({scheme})")
        branch = tree.add(label)
        table = plan.route_tables[name]
        for site in table.sites:
            hosts = Text.assemble(
                ("site ", "dim"), (site.name, "bold"), "  " + " ".join(site.hosts)
            )
            _add_mounts(branch.add(hosts), site.mounts)
        if table.sites:
            other = "other hosts" if table.mounts else "other hosts → 404"
            _add_mounts(branch.add(Text(other, style="dim")), table.mounts)
        else:
            _add_mounts(branch, table.mounts)
    return tree


def _add_mounts(branch: Tree, mounts: tuple[Mount, ...]) -> None:
    width = max((len(mount.prefix or "/") for mount in mounts), default=1)
    for mount in sorted(mounts, key=lambda m: m.prefix):
        prefix = (mount.prefix or "/").ljust(width)
        style = "magenta" if mount.is_builtin else "green"
        branch.add(Text.assemble(prefix, " → ", (mount.target, style)))


def _group_table(plan: Plan, interfaces: Mapping[str, str]) -> Table:
    table = Table(title="Worker groups", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("group")
    table.add_column("workers", justify="right")
    table.add_column("listeners")
    table.add_column("apps")
    for group in plan.groups:
        table.add_row(
            group.name,
            str(group.workers),
            ", ".join(group.listeners),
            ", ".join(_app_label(app, interfaces) for app in group.apps) or "(built-ins only)",
        )
    return table


def _app_label(name: str, interfaces: Mapping[str, str]) -> str:
    interface = interfaces.get(name)
    return f"{name} ({interface})" if interface else name
