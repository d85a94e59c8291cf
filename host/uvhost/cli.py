"""`uvhost` command line: argument parsing and dispatch, nothing else.

Exit codes shared by every command: 0 success, 1 the config (or the action)
failed, 2 usage errors (argparse's own convention).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from uvhost import __version__

DEFAULT_CONFIG = "uvhost.toml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uvhost", description="Host ASGI apps from one validated TOML file."
    )
    parser.add_argument("--version", action="version", version=f"uvhost {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check_parser = commands.add_parser(
        "check", help="validate a config and report every problem with its position"
    )
    _add_file(check_parser)
    check_parser.add_argument(
        "--import",
        dest="import_apps",
        action="store_true",
        help="also import each app (in a subprocess) and check it is an ASGI callable",
    )
    check_parser.add_argument("--json", action="store_true", help="print a JSON report")

    run_parser = commands.add_parser("run", help="serve the apps the config declares")
    _add_file(run_parser)
    run_parser.add_argument(
        "--reload",
        dest="reload_code",
        action="store_true",
        help="development: roll a group when Python files under its apps' folders change",
    )
    run_parser.add_argument(
        "--no-dashboard",
        dest="dashboard",
        action="store_false",
        help="plain log lines even on a terminal (the dashboard shows only when stdout is one)",
    )

    for name, about in (
        ("reload", "apply the config file to a running host now, and report the result"),
        ("stop", "drain a running host and stop it"),
        ("status", "show a running host's dashboard once: listeners, apps, workers, rates"),
    ):
        control_parser = commands.add_parser(name, help=about)
        _add_file(control_parser)
        control_parser.add_argument("--json", action="store_true", help="print the answer as JSON")

    top_parser = commands.add_parser(
        "top", help="watch a running host live: listeners, apps, workers, rates, latencies"
    )
    _add_file(top_parser)
    top_parser.add_argument(
        "--interval",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="how often to ask the host for a new snapshot (default: %(default)gs)",
    )

    config_parser = commands.add_parser(
        "config", help="print the resolved config: defaults filled, variables expanded"
    )
    _add_file(config_parser)

    schema_parser = commands.add_parser(
        "schema", help="write the JSON Schema of the config language (for editors)"
    )
    schema_parser.add_argument(
        "-o",
        "--output",
        default="schemas/uvhost.schema.json",
        help="where to write the schema; - for standard output (default: %(default)s)",
    )
    schema_parser.add_argument(
        "--markdown", metavar="FILE", help="also write the Markdown reference of every key"
    )
    return parser


def _add_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        nargs="?",
        default=DEFAULT_CONFIG,
        type=Path,
        help="the config file (default: ./%(default)s)",
    )


def _seconds(text: str) -> float:
    """A positive number of seconds (argparse turns the ValueError into a usage error)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text}: give seconds between 0.05 and 3600")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _dispatch(argv)
    except BrokenPipeError:
        # The reader left early (`uvhost check | head`): nothing is lost, so no traceback.
        # stdout goes to /dev/null, or the interpreter's last flush would fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1


def _dispatch(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("check", "config", "schema"):
        return _config_command(args)
    if args.command == "run":
        from uvhost.commands.run import run  # noqa: PLC0415 - the others never need it

        terminal = sys.stdout if args.dashboard and sys.stdout.isatty() else None
        return run(args.file, err=sys.stderr, reload_code=args.reload_code, dashboard=terminal)
    if args.command in ("reload", "stop", "status"):
        from uvhost.commands.control import control  # noqa: PLC0415 - only these need it

        return control(args.file, args.command, as_json=args.json, out=sys.stdout, err=sys.stderr)
    if args.command == "top":
        from uvhost.commands.top import top  # noqa: PLC0415 - only top needs Live

        return top(args.file, interval=args.interval, out=sys.stdout, err=sys.stderr)
    raise AssertionError(f"unhandled command {args.command}")  # argparse restricts choices


def _config_command(args: argparse.Namespace) -> int:
    """check, config and schema: imported only for them (rich and tomli_w stay out of `run`)."""
    from uvhost.commands.check import check, show_config, write_schema  # noqa: PLC0415

    if args.command == "check":
        return check(args.file, import_apps=args.import_apps, as_json=args.json, out=sys.stdout)
    if args.command == "config":
        return show_config(args.file, out=sys.stdout, err=sys.stderr)
    return write_schema(args.output, args.markdown, out=sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
