"""The command line: the admin questions against any table endpoint, and a sync run.

    python -m shared.cli COMMAND [options]

    history ID_OR_UPN                      a user's current state, timeline and reminders
    changes [--date YYYY-MM-DD]            what changed on a night (default: the latest completed)
    unregistered [--scope S] [--wave W]    who is unregistered and in scope, days left per wave
    coverage [--from D] [--to D]           the coverage series, in scope per phase (default: 90 nights)
    report [--output FILE] [--nights N]    write the self-contained HTML report
    sync                                   run one nightly sync now (Graph settings from the environment)

Every command takes ``--connection-string`` (Azurite) or ``--tables-endpoint
https://<account>.table.core.windows.net`` (signs in with DefaultAzureCredential, e.g. after
``az login``; needs *Storage Table Data Reader*); with neither, the TABLES_* settings of the
environment apply. ``--format table|json|csv`` (default: an aligned table).

Adding a command: write ``async def _name(args, ctx) -> int`` (and an argument function if it
takes options) and add one ``Command`` to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from shared import entrypoints, queries
from shared.adapters.history_reader import ChangeEntry, CoveragePoint, ScopeCoverage, every
from shared.config import Settings, SettingsError
from shared.domain.readiness import Exposure, UnknownChoice, find_wave, parse_scope
from shared.domain.scope import Phase
from shared.jobs.sync import SyncFailed
from shared.params import BadParameter, parse_date, parse_optional_date, parse_user_ref
from shared.presentation import serialize as ser
from shared.presentation.report import render_report
from shared.presentation.text import days_text, describe_change, table
from shared.presentation.timeline import merge
from shared.wiring import open_read_side, open_reader

FORMATS = ("table", "json", "csv")


@dataclass(frozen=True)
class Context:
    settings: Settings
    env: Mapping[str, str]  # the environment with the flags applied (the sync reads Graph settings)
    out: TextIO
    now: datetime


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Context], Coroutine[Any, Any, int]]


# --- history ---------------------------------------------------------------------------------------


def _history_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("user", metavar="ID_OR_UPN", help="object id, or UPN (a guest's #EXT# UPN works)")


async def _history(args: argparse.Namespace, ctx: Context) -> int:
    ref = parse_user_ref(args.user)
    async with open_read_side(ctx.settings) as side:
        reader = side.history
        user = await queries.find_user(reader, ref)
        uid = user.record.id
        events = [e async for e in every(lambda c: reader.timeline_page(uid, 1000, c))]
        reminders = await queries.reminders_of(side.ledger, user)
    items = merge(events, reminders)
    if args.format == "json":
        body: dict[str, Any] = {"user": ser.user_json(user), "events": [ser.change_json(e) for e in events]}
        body["reminders"] = [ser.reminder_json(r) for r in reminders]
        _json(ctx.out, body)
    elif args.format == "csv":
        ctx.out.write(ser.csv_text(ser.TIMELINE_COLUMNS, [ser.timeline_row(i) for i in items]))
    else:
        r = user.record
        state = "registered" if r.mfa_registered else "NOT registered" if r.mfa_registered is False else "unknown"
        print(f"{r.display_name} <{r.upn}>  {r.user_type.value}, id {r.id}", file=ctx.out)
        print(
            f"  MFA: {state}; methods: {', '.join(r.methods) or 'none'}; admin: {_yes(r.is_admin)}; "
            f"enabled: {_yes(r.enabled)}{'; DELETED' if user.deleted else ''}",
            file=ctx.out,
        )
        rows = [
            [i.night, f"v{i.version}", i.kind, describe_change(i)]
            if isinstance(i, ChangeEntry)
            else [
                i.at[:10],
                "",
                f"reminder {i.wave_id}",
                f"{i.stage}: {i.outcome}" + (f" ({i.detail})" if i.detail else ""),
            ]
            for i in items
        ]
        print(table(["night", "version", "change", "what changed"], rows, max_width=90), file=ctx.out)
    return 0


# --- changes ---------------------------------------------------------------------------------------


def _changes_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", help="the night, YYYY-MM-DD (default: the latest completed sync)")
    p.add_argument("--limit", type=int, help="show at most this many")


async def _changes(args: argparse.Namespace, ctx: Context) -> int:
    night = parse_date(args.date).isoformat() if args.date else None
    async with open_reader(ctx.settings) as reader:
        night = night or await reader.latest_night()
        changes: list[ChangeEntry] = []
        if night is not None:
            async for c in every(lambda cur: reader.changes_page(night, 1000, cur)):
                changes.append(c)
                if args.limit and len(changes) >= args.limit:
                    break
    if args.format == "json":
        _json(ctx.out, {"night": night, "items": [ser.change_json(c) for c in changes]})
    elif args.format == "csv":
        ctx.out.write(ser.csv_text(ser.CHANGE_COLUMNS, [ser.change_row(c) for c in changes]))
    elif night is None:
        print("No sync has completed yet.", file=ctx.out)
    else:
        print(f"What changed on the night of {night}: {len(changes)} changes", file=ctx.out)
        rows = [[c.kind, c.display_name, c.upn, c.user_type, describe_change(c)] for c in changes]
        print(table(["change", "name", "upn", "type", "what changed"], rows), file=ctx.out)
    return 0


# --- unregistered ----------------------------------------------------------------------------------


def _unregistered_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scope", default="all", help="all, admins, guests, members, phase1 or phase2")
    p.add_argument("--wave", help="only people a configured wave (by id) applies to")


async def _unregistered(args: argparse.Namespace, ctx: Context) -> int:
    scope = parse_scope(args.scope)
    wave = find_wave(ctx.settings.waves, args.wave)
    async with open_reader(ctx.settings) as reader:
        exposures = await queries.all_unregistered(reader, ctx.settings.waves, ctx.now, scope, wave)
    if args.format == "json":
        _json(ctx.out, {"asOf": ctx.now.date().isoformat(), "items": [ser.exposure_json(e) for e in exposures]})
    elif args.format == "csv":
        columns = ser.exposure_columns(ctx.settings.waves)
        ctx.out.write(ser.csv_text(columns, [ser.exposure_row(e) for e in exposures]))
    else:
        print(f"Unregistered and in scope on {ctx.now.date().isoformat()}: {len(exposures)}", file=ctx.out)
        waves = ctx.settings.waves
        rows = [
            [e.user.display_name, e.user.upn, e.user.user_type.value, _yes(e.user.is_admin), *_days(e, waves)]
            for e in exposures
        ]
        print(table(["name", "upn", "type", "admin", *(w.id for w in waves)], rows), file=ctx.out)
    return 0


def _days(e: Exposure, waves: Sequence[Any]) -> list[str]:
    by_id = {w.wave.id: w.days_left for w in e.waves}
    return [days_text(by_id[w.id]) if w.id in by_id else "not affected" for w in waves]


# --- coverage --------------------------------------------------------------------------------------


def _coverage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="first", help="first night, YYYY-MM-DD (default: 90 nights ago)")
    p.add_argument("--to", dest="last", help="last night, YYYY-MM-DD (default: today)")


async def _coverage(args: argparse.Namespace, ctx: Context) -> int:
    default_first, default_last = queries.default_coverage_range(ctx.now)
    first = (parse_optional_date(args.first, "--from") or parse_date(default_first)).isoformat()
    last = (parse_optional_date(args.last, "--to") or parse_date(default_last)).isoformat()
    if first > last:
        raise BadParameter(f"--from ({first}) is after --to ({last})")
    async with open_reader(ctx.settings) as reader:
        points = await reader.coverage(first, last)
    if args.format == "json":
        _json(ctx.out, {"from": first, "to": last, "items": [ser.coverage_json(p) for p in points]})
    elif args.format == "csv":
        ctx.out.write(ser.csv_text(ser.COVERAGE_COLUMNS, [ser.coverage_row(p) for p in points]))
    else:
        print(
            table(
                [
                    "night",
                    "enabled",
                    "registered",
                    "unregistered",
                    "unknown",
                    "coverage",
                    "admins unreg.",
                    "guests unreg.",
                    *(f"{phase.value} unreg. / in scope" for phase in Phase),
                ],
                [_coverage_cells(p) for p in points],
            ),
            file=ctx.out,
        )
    return 0


def _coverage_cells(p: CoveragePoint) -> list[str]:
    pct = f"{p.percent:.1f}%" if p.percent is not None else "-"
    return [
        p.night,
        f"{p.enabled or p.users:,}",
        f"{p.registered:,}",
        f"{p.unregistered:,}",
        f"{p.unknown:,}",
        pct,
        f"{p.admins_unregistered:,}",
        f"{p.guests_unregistered:,}",
        *(_in_scope_cell(p.phases.get(phase.value)) for phase in Phase),
    ]


def _in_scope_cell(c: ScopeCoverage | None) -> str:
    return f"{c.unregistered:,} / {c.users:,}" if c is not None else "-"  # "-": not recorded that night


# --- report ----------------------------------------------------------------------------------------


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", type=Path, default=Path("mfa-readiness-report.html"), help="the HTML file to write")
    p.add_argument("--nights", type=int, default=queries.DEFAULT_COVERAGE_NIGHTS, help="nights of coverage to chart")


async def _report(args: argparse.Namespace, ctx: Context) -> int:
    if not 1 <= args.nights <= 366:
        raise BadParameter("--nights must be from 1 to 366")
    async with open_read_side(ctx.settings) as side:
        data = await queries.report(side.history, ctx.settings.waves, ctx.now, nights=args.nights, ledger=side.ledger)
    args.output.write_text(render_report(data), encoding="utf-8")
    print(f"Report written to {args.output.resolve()}", file=ctx.out)
    return 0


# --- sync ------------------------------------------------------------------------------------------


def _no_args(p: argparse.ArgumentParser) -> None:
    del p


async def _sync(args: argparse.Namespace, ctx: Context) -> int:
    try:
        run = await entrypoints.nightly_sync(ctx.env)
    except SyncFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    f = run.figures
    changed = sum(f.changes.values()) if f else 0
    print(
        f"sync {run.run_id} ({run.night}): {run.status.value}, {f.users if f else 0} users, {changed} changes",
        file=ctx.out,
    )
    return 0


async def _nudge(args: argparse.Namespace, ctx: Context) -> int:
    from shared.jobs.nudge import NudgeFailed

    try:
        run = await entrypoints.nudge(ctx.env)
    except NudgeFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    done = f"would email {run.would_send}" if run.dry_run else f"emailed {run.sent}, {run.failed} failed"
    print(
        f"nudge {run.run_id}: {run.status.value}, {run.due} due, {done}, {run.cancelled} cancelled, "
        f"{run.carried_over} carried over",
        file=ctx.out,
    )
    return 0


COMMANDS: list[Command] = [
    Command("history", "a user's current state and timeline", _history_args, _history),
    Command("changes", "what changed on a night", _changes_args, _changes),
    Command("unregistered", "who is unregistered and in scope, with days left", _unregistered_args, _unregistered),
    Command("coverage", "the coverage series", _coverage_args, _coverage),
    Command("report", "write the HTML report", _report_args, _report),
    Command("sync", "run one nightly sync now", _no_args, _sync),
    Command("nudge", "run the nudge job now (reminder emails; dry run unless NUDGE_DRY_RUN=false)", _no_args, _nudge),
]


# --- plumbing ----------------------------------------------------------------------------------------


def _yes(value: bool | None) -> str:
    return "yes" if value else "no" if value is False else "unknown"


def _json(out: TextIO, body: object) -> None:
    json.dump(body, out, ensure_ascii=False, indent=2)
    out.write("\n")


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--connection-string", help="a Table Storage connection string (Azurite)")
    where.add_argument("--tables-endpoint", help="https://<account>.table.core.windows.net (DefaultAzureCredential)")
    common.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")

    main = argparse.ArgumentParser(
        prog="python -m shared.cli",
        description="Read the MFA readiness history from Table Storage, or run a sync.",
    )
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help, parents=[common])
        command.arguments(sub)
        sub.set_defaults(command_object=command)
    return main


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    if args.connection_string:
        return {"TABLES_CONNECTION_STRING": args.connection_string, "TABLES_ENDPOINT": ""}
    if args.tables_endpoint:
        return {"TABLES_ENDPOINT": args.tables_endpoint, "TABLES_CONNECTION_STRING": "", "AUTH_MODE": "developer"}
    return {}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = parser().parse_args(argv)
    command: Command = args.command_object
    overrides = _overrides(args)
    try:
        settings = entrypoints.load_settings(overrides)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    ctx = Context(settings, entrypoints.environment(overrides), out or sys.stdout, datetime.now(UTC))
    entrypoints.quiet_sdk_logging()
    try:
        return asyncio.run(command.run(args, ctx))
    except (BadParameter, UnknownChoice) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except queries.UserNotFound:
        print("error: no user with that id or UPN has been seen by the sync", file=sys.stderr)
        return 1
    except queries.AmbiguousUser as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
