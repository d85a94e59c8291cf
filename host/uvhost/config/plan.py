"""From a validated config to what must run: worker groups and route tables.

Invariants:
- Pure: no sockets, no imports of apps, no reading of files. The CPU count
  (for `workers = "auto"`), the config's folder (where apps without an
  `app_dir` are imported from) and the apps' resolved environments are inputs.
- Apps that share a listener run in the same processes, so listeners and
  apps form connected components; each component is one worker group with
  one worker count. Groups never share a listener or an app.
- A group is named after its apps ("api+site"); a group of built-ins only
  is named after its listeners ("@admin"). The name is its identity across
  reloads: `diff.py` rolls a group whose name stays and whose content changed.
- Route prefixes are normalised once here (percent-decoded, no trailing
  slash, "/" becomes ""), and each table is ordered longest prefix first,
  so the router's first match on a `/` boundary is the longest match.
- A site belongs to the route table of each listener it names: the
  listener's own mounts serve the hosts no site names. Sites link their
  apps to those listeners exactly as a listener's own routes do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from uvhost.config.detach import detach
from uvhost.config.names import BUILTIN_TARGETS

if TYPE_CHECKING:  # workers import this module without pydantic (see detach.py)
    from uvhost.config.model import HostConfig, Listener, Site


@dataclass(frozen=True, slots=True)
class Mount:
    """One route: requests whose path is `prefix` or below go to `target`."""

    prefix: str
    target: str

    @property
    def is_builtin(self) -> bool:
        return self.target in BUILTIN_TARGETS


@dataclass(frozen=True, slots=True)
class SiteTable:
    """One site's hosts (in hostnames.py's form) and mounts, longest prefix first."""

    name: str
    hosts: tuple[str, ...]
    mounts: tuple[Mount, ...]


@dataclass(frozen=True, slots=True)
class RouteTable:
    """A listener's mounts, longest prefix first; a whole-port app is one mount at "".

    With sites, `mounts` serve the hosts no site names (and may be empty: those
    hosts get 421)."""

    listener: str
    mounts: tuple[Mount, ...]
    sites: tuple[SiteTable, ...] = ()

    def match(self, path: str) -> Mount | None:
        for mount in self.mounts:
            prefix = mount.prefix
            if not prefix or path == prefix or path.startswith(prefix + "/"):
                return mount
        return None


@dataclass(frozen=True, slots=True)
class WorkerGroup:
    """Listeners and apps served by one pool of identical worker processes."""

    name: str
    listeners: tuple[str, ...]
    apps: tuple[str, ...]
    workers: int


@dataclass(frozen=True, slots=True)
class Plan:
    config: HostConfig
    groups: tuple[WorkerGroup, ...]
    route_tables: Mapping[str, RouteTable]
    base_dir: Path
    app_environments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    file_digests: Mapping[Path, str | None] = field(default_factory=dict)
    """Content hashes of TLS files: replacing a certificate on disk rolls its group."""

    def app_dir(self, app: str) -> Path:
        """Where an app is imported from: its app_dir, else the config file's folder."""
        return self.config.apps[app].app_dir or self.base_dir

    def detached(self) -> Plan:
        """This plan as workers receive it: the config as plain records (see detach.py)."""
        detached: HostConfig = detach(self.config)
        return replace(self, config=detached)

    def group(self, name: str) -> WorkerGroup:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)


def normalise_prefix(prefix: str) -> str:
    """The form in which prefixes are compared and matched against decoded paths."""
    return unquote(prefix).rstrip("/")


def listener_targets(listener: Listener | Site) -> list[str]:
    """Everything a listener (or a site) serves, apps and built-ins, in the order written."""
    if listener.app is not None:
        return [listener.app]
    return list((listener.routes or {}).values())


def served_targets(config: HostConfig, name: str) -> list[str]:
    """Everything listener `name` serves, its sites' included."""
    targets = listener_targets(config.listeners[name])
    for site in config.sites.values():
        if name in site.listeners:
            targets += listener_targets(site)
    return targets


def components(config: HostConfig) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Connected (listeners, apps) components; apps served by no listener are left out."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for name in config.listeners:
        find("L:" + name)
        for target in served_targets(config, name):
            if target in config.apps:
                parent[find("A:" + target)] = find("L:" + name)

    members: dict[str, list[str]] = {}
    for node in parent:
        members.setdefault(find(node), []).append(node)
    result = []
    for nodes in members.values():
        listeners = tuple(sorted(n[2:] for n in nodes if n.startswith("L:")))
        apps = tuple(sorted(n[2:] for n in nodes if n.startswith("A:")))
        if listeners:
            result.append((listeners, apps))
    return sorted(result)


def group_name(listeners: tuple[str, ...], apps: tuple[str, ...]) -> str:
    return "+".join(apps) if apps else "@" + "+".join(listeners)


def asks_workers(config: HostConfig, app: str) -> bool:
    """Whether an app has a say in its group's worker count: an ASGI app always (its
    `workers`, or `host.workers`), a folder app only with a `workers` of its own. A folder
    costs nothing to serve in more processes, so it takes the count of the apps it shares
    a listener with rather than ask them to agree with `host.workers`."""
    settings = config.apps[app]
    return settings.folder is None or settings.workers is not None


def requested_workers(config: HostConfig, app: str) -> int | str:
    """The count an app asks for, before "auto" is resolved."""
    own = config.apps[app].workers
    return config.host.workers if own is None else own


def build_plan(
    config: HostConfig,
    *,
    base_dir: Path,
    cpu_count: int,
    app_environments: Mapping[str, Mapping[str, str]] | None = None,
    file_digests: Mapping[Path, str | None] | None = None,
) -> Plan:
    """Assumes `checks.py` found no errors (apps on one listener agree on workers)."""
    groups = []
    for listeners, apps in components(config):
        asking = [app for app in apps if asks_workers(config, app)]
        wanted = requested_workers(config, (asking or apps)[0]) if apps else 1
        workers = max(1, cpu_count) if wanted == "auto" else int(wanted)
        groups.append(WorkerGroup(group_name(listeners, apps), listeners, apps, workers))
    tables = {
        name: route_table(name, listener, config.sites)
        for name, listener in config.listeners.items()
    }
    return Plan(
        config,
        tuple(groups),
        tables,
        base_dir,
        dict(app_environments or {}),
        dict(file_digests or {}),
    )


def route_table(
    name: str, listener: Listener, sites: Mapping[str, Site] | None = None
) -> RouteTable:
    """Listener `name`'s table, with those of `sites` that name it."""
    own_sites = tuple(
        SiteTable(site_name, tuple(site.hosts), mounts_of(site))
        for site_name, site in (sites or {}).items()
        if name in site.listeners
    )
    return RouteTable(name, mounts_of(listener), own_sites)


def mounts_of(served: Listener | Site) -> tuple[Mount, ...]:
    """The mounts of a listener's or a site's `app` or `routes`, longest prefix first."""
    if served.app is not None:
        return (Mount("", served.app),)
    mounts = [
        Mount(normalise_prefix(prefix), target) for prefix, target in (served.routes or {}).items()
    ]
    mounts.sort(key=lambda mount: len(mount.prefix), reverse=True)
    return tuple(mounts)
