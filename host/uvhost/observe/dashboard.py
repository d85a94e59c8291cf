"""The dashboard: one `Status` snapshot in, one rich renderable out.

`uvhost status` prints it once, `uvhost top` redraws it every second in a
`Live`; both render the same snapshot `uvhost status --json` prints, so what a
person sees and what a script reads cannot drift apart.

Invariants:
- Pure: `render` reads nothing but its arguments (no clock, no terminal, no
  I/O). Ages ("2m ago") are measured against the snapshot's own time
  (`host.started + host.uptime`), so the same snapshot always draws the same.
- Width is the console's business: the renderable picks a compact layout
  below `WIDE` columns and a fuller one at or above it; in both, names
  (apps, listeners, groups) are never cut while the numbers fit.
- Numbers are formatted here and only here (`duration`, `size`, `rate`,
  `millis`, `percent`, `count`); a missing figure (no request in the
  window, no /proc) shows as "-".
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from uvhost.observe.status import AppStatus, HostStatus, ReloadStatus, Status, Traffic

WIDE = 100
"""Consoles at least this wide get the fuller columns (p90, bytes, long headers)."""
MAX_ERROR_LINES = 12
"""A rejected reload can report many diagnostics; the dashboard keeps its height bounded."""
MAX_LOG_LINES = 10
MISSING = "-"

STATE_STYLES = {
    "running": "green",
    "ready": "green",
    "starting": "yellow",
    "reloading": "yellow",
    "draining": "magenta",
    "stopping": "red",
}


def render(status: Status, *, logs: Sequence[str] = ()) -> RenderableType:
    """The whole dashboard for one snapshot; `logs` (the last lines) adds a logs panel."""
    return Dashboard(status, tuple(logs[-MAX_LOG_LINES:]) if logs else ())


@dataclass(frozen=True)
class Dashboard:
    """Lays the sections out for the console's width when rich asks for it."""

    status: Status
    logs: tuple[str, ...]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        wide = options.max_width >= WIDE
        status = self.status
        yield _host(status["host"], status["totals"], wide=wide)
        sections: list[RenderableType] = []
        if status["listeners"]:
            sections.append(_listeners(status, wide=wide))
        if status["apps"]:
            sections.append(_apps(status["apps"], status["window_seconds"], wide=wide))
        if status["workers"]:
            sections.append(_workers(status, wide=wide))
        if self.logs:
            sections.append(_logs(self.logs))
        for section in sections:
            yield Text("")
            yield section


def full_screen(console: Console, first: RenderableType) -> Live:
    """A `Live` on the alternate screen that draws only when told: no refresh thread,
    so a frame is never drawn while its data is being fetched, and the terminal is
    given back as it was on exit."""
    return Live(
        first,
        console=console,
        screen=True,
        auto_refresh=False,
        redirect_stdout=False,
        redirect_stderr=False,
    )


# -------------------------------------------------------------------- sections


def _host(host: HostStatus, totals: Traffic, *, wide: bool) -> Panel:
    state = Text(host["state"], style=STATE_STYLES.get(host["state"], ""))
    dot = ("  ·  " if wide else " · ", "dim")
    lines: list[RenderableType] = [
        Text.assemble(
            ("pid ", "dim"),
            str(host["pid"]),
            dot,
            state,
            dot,
            ("up ", "dim"),
            duration(host["uptime"]),
        ),
        Text.assemble(("config ", "dim"), host["config"]),
        *_reload_lines(host["last_reload"], now=host["started"] + host["uptime"]),
        Text.assemble(
            ("totals ", "dim"),
            f"{count(totals['requests'])} requests",
            dot,
            f"{rate(totals['rps'])} req/s",
            dot,
            f"p50 {with_unit(millis(totals['p50_ms']), 'ms')}",
            dot,
            f"p99 {with_unit(millis(totals['p99_ms']), 'ms')}",
            dot,
            f"{percent(totals['error_rate'])} errors",
        ),
    ]
    return Panel(
        Group(*lines),
        title=Text(f"uvhost {host['version']}", style="bold"),
        title_align="left",
        box=box.ROUNDED,
    )


def _reload_lines(reload: ReloadStatus | None, *, now: float) -> Iterator[RenderableType]:
    """When, ok or rejected and what it said, then the rejected edit's error lines (bounded).

    The message and errors are indented as a block, so a line that wraps on a
    narrow terminal stays under its own indent instead of under the labels.
    """
    if reload is None:
        yield Text.assemble(("last reload ", "dim"), "none since the host started")
        return
    when = time.strftime("%H:%M:%S", time.localtime(reload["at"]))
    verdict = Text("ok", style="green") if reload["ok"] else Text("rejected", style="bold red")
    yield Text.assemble(
        ("last reload ", "dim"), when, (f" ({duration(now - reload['at'])} ago): ", "dim"), verdict
    )
    if reload["message"]:
        yield Padding.indent(Text(reload["message"], style="" if reload["ok"] else "red"), 2)
    lines = [line for error in reload["errors"] for line in error.splitlines()]
    if len(lines) > MAX_ERROR_LINES:
        hidden = len(lines) - MAX_ERROR_LINES
        lines = lines[:MAX_ERROR_LINES]
        lines.append(f"… {hidden} more line(s); `uvhost check` shows them all")
    if lines:
        yield Padding.indent(Text("\n".join(lines), style="red"), 2)


def _listeners(status: Status, *, wide: bool) -> Table:
    """Connections open now, then how many of them speak each protocol ("h1" HTTP/1.x,
    "h2" HTTP/2, "ws" a WebSocket upgraded from HTTP/1.1; the rest are closing) and
    the HTTP/2 streams open on them; then traffic."""
    table = _table("Listeners")
    table.add_column("listener", style="bold cyan", no_wrap=True)
    table.add_column("bind", overflow="fold")
    table.add_column("TLS", no_wrap=True)
    table.add_column("conns" if not wide else "connections", justify="right", no_wrap=True)
    for kind in ("h1", "h2", "ws", "streams"):
        table.add_column(kind, justify="right", no_wrap=True)
    table.add_column("req/s", justify="right", no_wrap=True)
    if wide:
        table.add_column("requests", justify="right", no_wrap=True)
        table.add_column("in", justify="right", no_wrap=True)
        table.add_column("out", justify="right", no_wrap=True)
    for listener in status["listeners"]:
        # .get: a host running an older uvhost answers without the protocol split.
        kinds = listener.get("connections_by_protocol")
        streams = listener.get("http2_streams")
        split = [MISSING] * 4
        if kinds is not None and streams is not None:
            split = [count(kinds.get(kind, 0)) for kind in ("1.1", "2", "ws")] + [count(streams)]
        row = [
            listener["name"],
            listener["bind"],
            "yes" if listener["tls"] else "no",
            count(listener["connections"]),
            *split,
            rate(listener["rps"]),
        ]
        if wide:
            row += [
                count(listener["requests"]),
                size(listener["bytes_in"]),
                size(listener["bytes_out"]),
            ]
        table.add_row(*row)
    return table


def _apps(apps: Sequence[AppStatus], window: float, *, wide: bool) -> Table:
    title = "Apps"
    if window:  # zero until the host has two stats ticks to compare
        over = f"the last {duration(window)}"
        title += f" (rates and latencies over {over})" if wide else f" (latency in ms, {over})"
    table = _table(title)
    table.add_column("app", style="bold green", no_wrap=True)
    table.add_column("group", overflow="fold")  # the one column that gives way when narrow
    table.add_column("workers" if wide else "wk", justify="right", no_wrap=True)
    table.add_column("req/s", justify="right", no_wrap=True)
    table.add_column("p50 ms" if wide else "p50", justify="right", no_wrap=True)
    if wide:
        table.add_column("p90 ms", justify="right", no_wrap=True)
    table.add_column("p99 ms" if wide else "p99", justify="right", no_wrap=True)
    table.add_column("errors" if wide else "err", justify="right", no_wrap=True)
    table.add_column("websockets" if wide else "ws", justify="right", no_wrap=True)
    table.add_column("requests", justify="right", no_wrap=True)
    for app in apps:
        errors = Text(percent(app["error_rate"]), style="red" if app["error_rate"] else "")
        row: list[str | Text] = [
            app["name"],
            app["group"],
            str(app["workers"]),
            rate(app["rps"]),
            millis(app["p50_ms"]),
        ]
        if wide:
            row.append(millis(app["p90_ms"]))
        row += [millis(app["p99_ms"]), errors, count(app["websockets_open"])]
        row.append(count(app["requests"]))
        table.add_row(*row)
    return table


def _workers(status: Status, *, wide: bool) -> Table:
    failed = {group["name"]: group["failed"] for group in status["groups"] if group["failed"]}
    table = _table("Workers")
    table.add_column("pid", justify="right", no_wrap=True)
    table.add_column("group", no_wrap=True)
    table.add_column("generation" if wide else "gen", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("memory MiB" if wide else "MiB", justify="right", no_wrap=True)
    table.add_column("requests", justify="right", no_wrap=True)
    table.add_column("connections" if wide else "conns", justify="right", no_wrap=True)
    table.add_column("uptime", justify="right", no_wrap=True)
    for worker in status["workers"]:
        memory = worker["memory_bytes"]
        table.add_row(
            str(worker["pid"]),
            worker["group"],
            str(worker["generation"]),
            Text(worker["state"], style=STATE_STYLES.get(worker["state"], "")),
            MISSING if memory is None else f"{memory / 2**20:.1f}",
            count(worker["requests"]),
            count(worker["connections"]),
            duration(worker["uptime"]),
        )
    if failed:
        table.caption = "; ".join(f"group {name} failed: {why}" for name, why in failed.items())
        table.caption_style = "red"
        table.caption_justify = "left"
    return table


def _logs(lines: Sequence[str]) -> Panel:
    text = Text("\n".join(lines), no_wrap=True, overflow="ellipsis")
    return Panel(text, title="logs", title_align="left", box=box.ROUNDED)


def _table(title: str) -> Table:
    """The shared look: a bold left title, a rule under the header, no outer edge."""
    return Table(
        title=Text(title, style="bold"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )


# ------------------------------------------------------------------- formats


def duration(seconds: float) -> str:
    """Two units at most, largest first: "45s", "3m12s", "2h05m", "3d04h"."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def size(count_bytes: float | None) -> str:
    """Binary units, as the config language writes them: "512 B", "1.5 KiB", "38.2 MiB"."""
    if count_bytes is None:
        return MISSING
    value = float(count_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # the loop returns at TiB


def rate(per_second: float) -> str:
    """One decimal below 100/s (so 0.2 req/s is not shown as 0), whole numbers above."""
    if per_second < 100:
        return f"{per_second:.1f}"
    return f"{per_second:,.0f}"


def with_unit(shown: str, unit: str) -> str:
    """ "0.25 ms", but a bare "-" when there is nothing to measure."""
    return shown if shown == "-" else f"{shown} {unit}"


def millis(value: float | None) -> str:
    """Latency in ms with about three significant digits: "0.25", "4.2", "37", "1,250"."""
    if value is None:
        return MISSING
    if value < 10:
        return f"{value:.2f}" if value < 1 else f"{value:.1f}"
    return f"{value:,.0f}"


def percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def count(value: int) -> str:
    return f"{value:,}"
