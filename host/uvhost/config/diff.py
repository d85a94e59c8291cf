"""What an edit of the config changes, classified by how the supervisor applies it.

Invariants:
- Pure: two plans in, a `PlanDiff` out. The supervisor applies each kind:
  LIVE settings are pushed to running workers; a LISTENER_* change binds or
  closes a socket; GROUP_ROLLED starts a new generation and drains the old;
  GROUP_STARTED / GROUP_RETIRED start or drain a whole group; UNTOUCHED
  groups keep their processes and connections.
- Socket-level listener settings (bind, backlog, unix_mode) change the
  socket itself: LISTENER_CHANGED, i.e. close and bind anew. Any other
  listener setting is served by the workers, so it rolls the group.
- Every change names the dotted keys that caused it, for the one log line
  each apply writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from uvhost.config.plan import Plan, WorkerGroup, served_targets

if TYPE_CHECKING:
    from uvhost.config.model import HostConfig

SOCKET_KEYS = frozenset({"bind", "backlog", "unix_mode"})
SUPERVISOR_KEYS = frozenset(
    {
        "graceful_timeout",
        "drain_delay",
        "startup_timeout",
        "env_files",
        "watch",
        "control_socket",
        "pid_file",
        "max_memory",
    }
)


class ChangeKind(StrEnum):
    LIVE = "live"
    LISTENER_ADDED = "listener added"
    LISTENER_REMOVED = "listener removed"
    LISTENER_CHANGED = "listener changed"
    GROUP_STARTED = "group started"
    GROUP_RETIRED = "group retired"
    GROUP_ROLLED = "group rolled"
    CERTIFICATE_RELOADED = "certificate reloaded"
    UNTOUCHED = "untouched"


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    subject: str
    keys: tuple[str, ...] = ()

    def describe(self) -> str:
        because = f" ({', '.join(self.keys)})" if self.keys else ""
        return f"{self.kind} {self.subject}{because}"


@dataclass(frozen=True, slots=True)
class PlanDiff:
    changes: tuple[Change, ...]

    def of(self, kind: ChangeKind) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if change.kind == kind)

    def subjects(self, kind: ChangeKind) -> tuple[str, ...]:
        return tuple(change.subject for change in self.of(kind))

    @property
    def is_empty(self) -> bool:
        return all(change.kind == ChangeKind.UNTOUCHED for change in self.changes)

    def summary(self) -> str:
        """One line for the apply log: everything that is not untouched."""
        done = [c.describe() for c in self.changes if c.kind != ChangeKind.UNTOUCHED]
        return "; ".join(done) if done else "no changes"


def diff(old: Plan, new: Plan) -> PlanDiff:
    changes: list[Change] = []
    changes.extend(_live_changes(old, new))
    changes.extend(_listener_changes(old, new))
    changes.extend(_group_changes(old, new))
    changes.extend(_certificate_changes(old, new, changes))
    return PlanDiff(tuple(changes))


def _certificate_changes(old: Plan, new: Plan, so_far: list[Change]) -> list[Change]:
    """Listeners whose certificate or key files changed on disk, settings unchanged.

    Their workers load the new pair in place (no restart); a group that
    rolls anyway starts from the new files and needs no reload.
    """
    rolling = {c.subject for c in so_far if c.kind is not ChangeKind.UNTOUCHED}
    changes = []
    for group in new.groups:
        if group.name in rolling:
            continue
        for name in group.listeners:
            tls = new.config.listeners[name].tls
            if tls is None:
                continue
            files = [p for p in (tls.certificate, tls.private_key) if p is not None]
            for site in new.config.sites.values():  # a listener reloads its sites' pairs too
                if site.tls is not None and name in site.listeners:
                    files += [p for p in (site.tls.certificate, site.tls.private_key) if p]
            moved = [str(p) for p in files if old.file_digests.get(p) != new.file_digests.get(p)]
            if moved:
                changes.append(Change(ChangeKind.CERTIFICATE_RELOADED, name, tuple(moved)))
    return changes


def _live_changes(old: Plan, new: Plan) -> list[Change]:
    changes = []
    logging_keys = changed_keys(_dump(old.config.logging), _dump(new.config.logging), "logging")
    if logging_keys:
        changes.append(Change(ChangeKind.LIVE, "logging", logging_keys))
    host_keys = changed_keys(_dump(old.config.host), _dump(new.config.host), "host")
    supervisor = tuple(key for key in host_keys if key.split(".")[1] in SUPERVISOR_KEYS)
    if supervisor:
        changes.append(Change(ChangeKind.LIVE, "host", supervisor))
    return changes


def _listener_changes(old: Plan, new: Plan) -> list[Change]:
    before, after = old.config.listeners, new.config.listeners
    changes = [Change(ChangeKind.LISTENER_REMOVED, name) for name in before if name not in after]
    for name, listener in after.items():
        if name not in before:
            changes.append(Change(ChangeKind.LISTENER_ADDED, name))
            continue
        keys = changed_keys(_dump(before[name]), _dump(listener), f"listeners.{name}")
        socket_keys = tuple(key for key in keys if key.split(".")[2] in SOCKET_KEYS)
        if socket_keys:
            changes.append(Change(ChangeKind.LISTENER_CHANGED, name, socket_keys))
    return changes


def _group_changes(old: Plan, new: Plan) -> list[Change]:
    before = {group.name: group for group in old.groups}
    after = {group.name: group for group in new.groups}
    changes = [Change(ChangeKind.GROUP_RETIRED, name) for name in before if name not in after]
    for name, group in after.items():
        if name not in before:
            changes.append(Change(ChangeKind.GROUP_STARTED, name))
            continue
        keys = changed_keys(_fingerprint(old, before[name]), _fingerprint(new, group), "")
        kind = ChangeKind.GROUP_ROLLED if keys else ChangeKind.UNTOUCHED
        changes.append(Change(kind, name, keys))
    return changes


def _fingerprint(plan: Plan, group: WorkerGroup) -> dict[str, Any]:
    """Everything a worker of `group` is started from; any difference means a roll."""
    config = plan.config
    host = config.host
    return {
        "workers": group.workers,
        "listeners": {name: _dump(config.listeners[name]) for name in group.listeners},
        "apps": {name: _dump(config.apps[name]) for name in group.apps},
        "sites": {  # a site edit rolls the groups serving it, and only those
            name: _dump(site)
            for name, site in config.sites.items()
            if any(listener in group.listeners for listener in site.listeners)
        },
        "built_ins": _built_ins_served(config, group),
        "environment": {name: dict(plan.app_environments.get(name, {})) for name in group.apps},
        "client_ca_files": {  # CAs can only be added to a live context, so a change rolls
            str(tls.client_ca): plan.file_digests.get(tls.client_ca)
            for name in group.listeners
            if (tls := config.listeners[name].tls) is not None and tls.client_ca is not None
        },
        "host": {"max_requests": host.max_requests, "jitter": host.max_requests_jitter},
    }


def _built_ins_served(config: HostConfig, group: WorkerGroup) -> dict[str, Any]:
    """The redirects and fixed answers the group's listeners and sites mount: workers build
    them at start, so editing one in place rolls the groups that serve it."""
    served = {target for name in group.listeners for target in served_targets(config, name)}
    tables = {**config.redirects, **config.answers}
    return {name: _dump(tables[name]) for name in sorted(served) if name in tables}


def _dump(model: Any) -> dict[str, Any]:
    """Compare secrets by value: a changed TLS password must still roll the group."""
    data: dict[str, Any] = model.model_dump(mode="json", exclude_none=False)
    tls = getattr(model, "tls", None)
    if tls is not None and tls.password is not None:
        data["tls"]["password"] = tls.password.get_secret_value()
    return data


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str) -> tuple[str, ...]:
    """Dotted paths of the leaves that differ between two nested mappings."""
    keys: list[str] = []
    for key in dict.fromkeys([*old, *new]):
        path = f"{prefix}.{key}" if prefix else str(key)
        before, after = old.get(key), new.get(key)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            keys.extend(changed_keys(before, after, path))
        elif before != after:
            keys.append(path)
    return tuple(keys)
