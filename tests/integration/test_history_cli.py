"""The command line, run in-process through main(argv), against several nights of real history
and the reminders real nudge runs recorded; and the reminder extension point of the read side."""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables.aio import TableServiceClient

from shared import cli, queries
from shared.adapters.history_reader import HistoryReader
from shared.params import UserRef
from shared.presentation.timeline import ReminderLine
from sim.azurite import Azurite
from tests.integration.history_fixtures import (
    EVE_ID,
    EVE_NAME,
    EVE_UPN,
    FORMULA_EMAIL,
    FORMULA_ID,
    OBRIEN_ID,
    OBRIEN_UPN,
    History,
    build_history,
)


@pytest.fixture(scope="module")
def history(azurite: Azurite) -> Iterator[History]:
    yield from build_history(azurite, users=150, seed=29)


def run(history: History, *argv: str, status: int = 0) -> str:
    out = io.StringIO()
    assert cli.main([*argv, "--connection-string", history.connection_string], out=out) == status
    return out.getvalue()


def test_history_by_upn_reads_like_a_timeline(history: History) -> None:
    text = run(history, "history", OBRIEN_UPN.upper())
    assert text.startswith(f"Seán O'Brien <{OBRIEN_UPN}>")
    assert "MFA: NOT registered" in text and "admin: yes" in text
    lines = [line for line in text.splitlines() if line.startswith(tuple(history.nights))]
    assert [line.split()[1:3] for line in lines] == [
        ["v1", "new"],
        ["v2", "registered"],
        ["v3", "unregistered"],
        ["reminder", "phase1"],  # the morning after he lost his methods: sent
        ["reminder", "phase2"],  # the next morning: handed to ACS, not settled yet
    ]
    assert "now required (first notice): sent" in lines[3] and lines[3].startswith(history.nights[2])
    assert "now required (first notice): accepted" in lines[4] and lines[4].startswith(history.nights[3])


def test_history_as_json_and_csv(history: History) -> None:
    answer = json.loads(run(history, "history", EVE_UPN, "--format", "json"))
    assert answer["user"]["id"] == EVE_ID and answer["user"]["displayName"] == EVE_NAME
    assert [(r["wave"], r["displayName"]) for r in answer["reminders"]] == [("phase1", EVE_NAME), ("phase2", EVE_NAME)]
    table = list(csv.DictReader(io.StringIO(run(history, "history", OBRIEN_ID, "--format", "csv"))))
    assert [r["kind"] or r["type"] for r in table] == ["new", "registered", "unregistered", "reminder", "reminder"]
    assert [(r["wave"], r["step"], r["outcome"]) for r in table[3:]] == [
        ("phase1", "after-1", "sent"),
        ("phase2", "after-1", "accepted"),
    ]
    failed = json.loads(run(history, "history", FORMULA_ID, "--format", "json"))["reminders"][0]
    assert failed["outcome"] == "failed" and FORMULA_EMAIL in failed["detail"]


def test_changes_of_a_night(history: History) -> None:
    answer = json.loads(run(history, "changes", "--date", history.nights[0], "--format", "json"))
    assert answer["night"] == history.nights[0] and len(answer["items"]) == 153  # 150 generated + 3 hand-made
    text = run(history, "changes")  # default: the latest completed night
    assert text.startswith(f"What changed on the night of {history.last_night}")
    assert (
        len(run(history, "changes", "--date", history.nights[0], "--limit", "7", "--format", "csv").splitlines()) == 8
    )


def test_unregistered_and_coverage(history: History) -> None:
    text = run(history, "unregistered", "--scope", "admins")
    assert "Seán O'Brien" in text and "enforced" in text and "phase2" in text.splitlines()[1]
    guests = json.loads(run(history, "unregistered", "--scope", "guests", "--format", "json"))["items"]
    assert EVE_ID in {g["id"] for g in guests}
    table = list(csv.DictReader(io.StringIO(run(history, "coverage", "--format", "csv"))))
    assert [r["night"] for r in table] == history.nights
    assert history.last_night in run(history, "coverage", "--from", history.nights[1])
    # in scope per phase: the JSON figures, and "unregistered / in scope" in the table
    points = json.loads(run(history, "coverage", "--format", "json"))["items"]
    phase2 = points[-1]["phases"]["phase2"]
    assert phase2["unregistered"] > 0 and phase2["users"] >= phase2["unregistered"]
    text = run(history, "coverage")
    assert "phase1 unreg. / in scope" in text.splitlines()[0]
    last = next(line for line in text.splitlines() if line.startswith(history.last_night))
    assert last.rstrip().endswith(f"{phase2['unregistered']:,} / {phase2['users']:,}")


def test_report_writes_one_html_file(history: History, tmp_path: Path) -> None:
    target = tmp_path / "readiness.html"
    text = run(history, "report", "--output", str(target), "--nights", "30")
    assert str(target) in text
    html = target.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and "&lt;script&gt;" in html and "<script" not in html
    reminders = html[html.index(f"<h2>Reminders on {history.last_night} (UTC)</h2>") :]
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Ève" in reminders and "<li>failed: 1</li>" in reminders
    assert 'aria-label="Phase 2 in scope: CLI, PowerShell, IaC, ARM"' in html


def test_sync_runs_the_nightly_job(history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**history.env(), "GRAPH_MAX_RETRIES": "1"}.items():  # Graph is the simulator
        monkeypatch.setenv(name, value)
    text = run(history, "sync", "--format", "table")
    assert "completed" in text and "0 changes" in text  # the same tenant again: nothing changed


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["changes", "--date", "2026-02-30"], 2, "not a real date"),
        (["unregistered", "--wave", "phase9"], 2, "unknown wave"),
        (["history", "nobody@contoso.example"], 1, "no user"),
        (["history", "x' or 'a' eq 'a"], 2, "not a valid"),
        (["report", "--nights", "0"], 2, "--nights"),
    ],
)
def test_bad_input_is_a_clear_error(
    history: History, capsys: pytest.CaptureFixture[str], argv: list[str], status: int, message: str
) -> None:
    run(history, *argv, status=status)
    assert message in capsys.readouterr().err


def test_a_plain_http_endpoint_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["coverage", "--tables-endpoint", "http://account.table.core.windows.net"]) == 2
    assert "TABLES_ENDPOINT must be an https URL" in capsys.readouterr().err


def test_a_command_is_one_entry_in_the_table(history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    """How the nudge command will be added: a function and one Command."""

    async def hello(args: argparse.Namespace, ctx: cli.Context) -> int:
        print(f"hello {args.name} from {ctx.settings.tables_connection_string is not None}", file=ctx.out)
        return 0

    def hello_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", default="admin")

    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, cli.Command("hello", "say hello", hello_args, hello)])
    assert run(history, "hello", "--name", "nudge") == "hello nudge from True\n"


# --- the reminder extension point -----------------------------------------------------------------


async def test_history_answer_carries_only_that_users_reminders(history: History) -> None:
    reminders = [
        ReminderLine(OBRIEN_ID, "2026-11-20T09:00:00+00:00", "phase2", "first", "sent"),
        ReminderLine(EVE_ID, "2026-11-20T09:00:00+00:00", "phase2", "first", "failed", "no deliverable address"),
    ]
    async with TableServiceClient.from_connection_string(history.connection_string) as service:
        reader = HistoryReader(service)
        user = await queries.find_user(reader, UserRef(upn=OBRIEN_UPN))
        answer = await queries.history(reader, user, 100, reminders=reminders)
        without: Any = await queries.history(reader, user, 100)
    assert [r.outcome for r in answer.reminders or []] == ["sent"]
    assert without.reminders is None
