"""Benchmark the nudge planner: 100,000 remembered users, 10% unregistered and in scope.

    python bench/nudge_bench.py [--users 100000] [--unregistered 0.10]

Builds the users as the state store loads them (StoredUser records) and a ledger in which half of
the unregistered people already had their 30-day reminder, then times, in this process:
- planning (``plan_reminders``: who is due, in sending order, what is superseded or unreachable);
- rendering every due email (jinja2, plain text + HTML), which a real run does only for what the
  quota lets it send.
Peak RSS is the whole process (records, ledger, plan and emails included). Prints figures; asserts
nothing (targets: planning < 10 s and < 300 MB on the 2-core CI machine).
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.domain.cadence import Stage, Step  # noqa: E402
from shared.domain.messages import Sender, render_reminder  # noqa: E402
from shared.domain.nudges import LedgerEntry, NudgePolicy, ReminderKey, Status, plan_reminders  # noqa: E402
from shared.domain.records import StoredUser, UserRecord, UserType  # noqa: E402
from shared.domain.scope import Phase, ScopeFacts  # noqa: E402
from shared.domain.waves import DEFAULT_WAVES_JSON, Wave, parse_waves  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def build(
    n: int, share: float, seed: int, wave: Wave, today: date
) -> tuple[list[StoredUser], dict[str, list[LedgerEntry]]]:
    rng = random.Random(seed)
    users: list[StoredUser] = []
    ledger: dict[str, list[LedgerEntry]] = {}
    tools = (("azure_portal",), ("azure_cli", "azure_powershell"), ())
    sent_at = datetime.combine(today - timedelta(days=10), datetime.min.time(), UTC)
    for i in range(n):
        uid = f"{rng.getrandbits(32):08x}-{i % 65536:04x}-4000-8000-{i:012x}"
        unregistered = rng.random() < share
        guest = rng.random() < 0.15
        known = rng.random() < 0.5
        scope = (
            ScopeFacts(known=True, phases=(Phase.PORTALS, Phase.ARM), tools=tools[i % 3], reasons=("entra_role:x",))
            if known and unregistered
            else ScopeFacts()
        )
        record = UserRecord(
            id=uid,
            upn=f"user{i}@contoso.example",
            display_name=f"User {i}",
            user_type=UserType.GUEST if guest else UserType.MEMBER,
            enabled=rng.random() > 0.02,
            mfa_registered=not unregistered,
            mfa_capable=not unregistered,
            is_admin=unregistered or rng.random() < 0.03,
            methods=() if unregistered else ("microsoftAuthenticatorPush",),
            default_method=None,
            email=None if rng.random() < 0.03 else f"user{i}@contoso.example",
            created=None,
            external_user_state=None,
            on_premises_sync=False,
            scope=scope,
        )
        users.append(StoredUser(record, 1, "W/1"))
        if unregistered and rng.random() < 0.5:
            key = ReminderKey(uid, wave.id, wave.date, Step(Stage.BEFORE, 30))
            ledger[uid] = [LedgerEntry(key, Status.SENT, sent_at, posted=sent_at, etag="W/1")]
    return users, ledger


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--unregistered", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)

    waves = parse_waves(DEFAULT_WAVES_JSON)
    upcoming = waves[-1]
    today = upcoming.date - timedelta(days=14)  # the 14-day step is due for everyone unregistered
    started = time.perf_counter()
    users, ledger = build(args.users, args.unregistered, args.seed, upcoming, today)
    built = time.perf_counter() - started
    gc.collect()
    rss_inputs = _rss_mb()

    started = time.perf_counter()
    plan = plan_reminders(users, waves, today, ledger, NudgePolicy(dry_run=False))
    planning = time.perf_counter() - started
    rss_plan = _rss_mb()

    started = time.perf_counter()
    sender = Sender(organization="Contoso", contact="the IT service desk")
    emails = [render_reminder(due, today, sender) for due in plan.due]
    rendering = time.perf_counter() - started
    size = sum(len(e.html) + len(e.plain_text) for e in emails)

    print(f"nudge planner, {args.users:,} users, {args.unregistered:.0%} unregistered")
    print(f"  inputs built in {built:.2f} s (not timed below): {sum(map(len, ledger.values())):,} ledger rows")
    print(
        f"  plan: {planning:.2f} s -> {len(plan.due):,} due, {len(plan.not_emailed):,} not emailable, "
        f"{plan.eligible:,} eligible, {len(plan.supersede):,} superseded"
    )
    print(f"  render every due email: {rendering:.2f} s ({len(emails):,} emails, {size / 1e6:.1f} MB of text)")
    print(
        f"  peak RSS: {rss_inputs:.0f} MB with inputs, {rss_plan:.0f} MB after planning, {_rss_mb():.0f} MB at the end"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
