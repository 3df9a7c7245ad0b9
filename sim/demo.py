"""The local demo: two simulated nights of the real nightly job, end to end, on 127.0.0.1 only.

    python -m sim.demo [--users 2000] [--seed 42] [--churn 0.02] [--tenant-json FILE]

Starts Azurite (in memory) and the tenant simulator (Graph + the managed-identity token endpoint),
points the app's settings at them, runs the production entry point twice with a tenant that
changes in between, prints what an admin would want to see, and stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.data.tables.aio import TableServiceClient

from shared import cli, entrypoints
from shared.adapters.history_reader import ChangeEntry, HistoryReader
from shared.domain.runs import SyncRun
from sim.azurite import Azurite
from sim.graph_server import GraphSimulator, Throttle
from sim.scope_data import add_scope_data
from sim.tenant import Tenant, evolve, generate_tenant

OUTPUT = Path("demo-output")


def _n(value: int) -> str:
    return f"{value:,}"


def _describe_run(label: str, run: SyncRun, seconds: float) -> None:
    f = run.figures
    assert f is not None
    changed = sum(f.changes.values())
    print(f"{label} ({run.night}): {run.status.value} in {seconds:.1f} s")
    print(
        f"  {_n(f.users)} users ({_n(f.members)} members, {_n(f.guests)} guests, {_n(f.disabled)} disabled), "
        f"{_n(changed)} changes, {_n(f.silent_updates)} silent updates, {_n(sum(f.skipped.values()))} skipped"
    )
    io = run.io
    print(
        f"  Graph: {io.graph_requests} requests, {io.graph_throttled} throttled and retried · "
        f"Tables: {_n(io.table_reads)} read, {_n(io.table_writes)} written in {io.table_batches} transactions"
    )
    source = "the snapshot" if io.remembered_from == "snapshot" else "the state rows"
    print(
        f"  Last night's users read from {source}; {_n(io.users_carried)} steady and unchanged "
        f"(counted, not recomputed), {_n(io.users_recomputed)} recomputed"
    )
    # Who will be locked out: in scope by phase (registered / not), why, and who is not nudged.
    phases = " · ".join(
        f"{phase}: {_n(c.registered)} registered, {_n(c.unregistered)} NOT registered, {_n(c.unknown)} unknown"
        for phase, c in sorted(f.phase_coverage.items())
    )
    reasons = ", ".join(f"{kind} {_n(n)}" for kind, n in sorted(f.scope_reasons.items(), key=lambda kv: -kv[1]))
    excluded = ", ".join(f"{code} {_n(n)}" for code, n in f.excluded.items()) or "none"
    print(f"  In scope: {_n(f.in_scope)} enabled accounts ({phases})")
    print(f"    why: {reasons or 'no signal'} · not nudged: {excluded}")
    sig = run.signals
    print(
        f"    sources: registration {sig.registration_source.value}, sign-ins {sig.sign_in_source.value} "
        f"({_n(sig.sign_ins_read)} read), {_n(sig.role_assignments)} role assignments, "
        f"{_n(sig.azure_role_assignments)} Azure role assignments"
    )


def _facts(entry: ChangeEntry) -> str:
    def show(facts: object) -> str:
        if not isinstance(facts, dict):
            return "-"
        parts = []
        for key, value in facts.items():
            if isinstance(value, list):
                value = ", ".join(value) or "none"
            parts.append(f"{key}={value}")
        return "; ".join(parts)

    if entry.kind in ("new", "restored"):
        return show(entry.after)
    if entry.kind == "deleted":
        return show(entry.before)
    return f"{show(entry.before)}  ->  {show(entry.after)}"


async def _report(connection_string: str, nights: list[SyncRun]) -> None:
    async with TableServiceClient.from_connection_string(connection_string) as service:
        history = HistoryReader(service)
        last = nights[-1]

        print("\nCoverage of enabled accounts, night by night")
        print(f"  {'night':<12}{'users':>8}{'registered':>12}{'unregistered':>14}{'unknown':>9}{'coverage':>10}")
        for p in await history.coverage(nights[0].night, last.night):
            pct = f"{p.percent:.1f}%" if p.percent is not None else "-"
            print(f"  {p.night:<12}{p.users:>8,}{p.registered:>12,}{p.unregistered:>14,}{p.unknown:>9,}{pct:>10}")
        f = last.figures
        assert f is not None
        print(
            f"  admins: {f.admin_coverage.registered} registered, {f.admin_coverage.unregistered} unregistered; "
            f"guests: {f.guest_coverage.registered} registered, {f.guest_coverage.unregistered} unregistered"
        )

        changes = await history.changes_on(last.night)
        print(f"\nWhat changed last night ({last.night}): {len(changes)} changes")
        by_kind = Counter(c.kind for c in changes)
        for kind, count in sorted(by_kind.items(), key=lambda kv: -kv[1]):
            sample = next(c for c in changes if c.kind == kind)
            print(f"  {kind:<16}{count:>5}   e.g. {sample.display_name} <{sample.upn}>")

        interesting = next(
            (c for c in changes if c.kind in ("unregistered", "registered")), changes[0] if changes else None
        )
        if interesting:
            user = await history.user_history(interesting.user_id)
            assert user is not None
            r = user.current.record
            print(f"\nTimeline of {r.display_name} <{r.upn}> ({r.user_type.value}, id {r.id})")
            for e in user.events:
                print(f"  {e.night}  v{e.version:<3}{e.kind:<16}{_facts(e)}")
            print(
                f"  now: {'registered' if r.mfa_registered else 'NOT registered'}, methods: "
                f"{', '.join(r.methods) or 'none'}, email: {r.email or 'none deliverable'}"
            )


async def _nights(args: argparse.Namespace, tenant: Tenant, azurite: Azurite, sim: GraphSimulator) -> None:
    env = {
        "AUTH_MODE": "managed_identity",
        "TABLES_CONNECTION_STRING": azurite.connection_string,
        "GRAPH_BASE_URL": sim.base_url,
        "GRAPH_PAGE_SIZE": "999",
        # Azure RBAC from the simulator's Resource Graph, and the break-glass group as the exclusion group.
        "SCOPE_AZURE_RBAC": "true",
        "ARM_BASE_URL": sim.root_url,
        "SCOPE_EXCLUSION_GROUP_ID": next(
            (g["id"] for g in tenant.collection("groups") if g.get("displayName") == "Break glass accounts"), ""
        ),
    }
    # The production credential path: ManagedIdentityCredential reads these, as on App Service.
    os.environ["IDENTITY_ENDPOINT"] = sim.identity_endpoint
    os.environ["IDENTITY_HEADER"] = sim.identity_header
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    runs: list[SyncRun] = []

    for label, night in (("Night 1", today - timedelta(days=1)), ("Night 2", today)):
        if runs:
            did = evolve(tenant, seed=args.seed + 1, churn=args.churn, now=night - timedelta(hours=3))
            summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in did["counts"].items() if n)
            if "scope" in did:
                summary += f", {len(did['scope']['started_cli'])} started using Azure CLI"
            print(f"\nDuring the day the tenant changed: {summary}.")
            # Show that throttling is survived: the report endpoint answers 429 once.
            sim.inject(path="/v1.0/reports", fault=Throttle(retry_after=1), times=1)
        started = time.monotonic()
        run = await entrypoints.nightly_sync(env, clock=lambda night=night: night)
        _describe_run(label, run, time.monotonic() - started)
        runs.append(run)
    await _report(azurite.connection_string, runs)


# --- nudge emails: a dry run, then real sends through the ACS Email simulator --------------------


def _nudge_demo(azurite: Azurite, sim: GraphSimulator) -> None:
    from shared.domain.runs import RunStatus
    from sim.acs_server import AcsEmailSimulator, to_eml

    sender = "DoNotReply@contoso-demo.example"
    now = [datetime.now(UTC).replace(hour=3, minute=15, second=0, microsecond=0)]

    async def advance(seconds: float) -> None:  # quota waits pass in simulated time
        now[0] += timedelta(seconds=seconds)

    with AcsEmailSimulator(identity=sim, sender_address=sender, clock=lambda: now[0].timestamp()) as acs:
        env = {
            "AUTH_MODE": "managed_identity",
            "TABLES_CONNECTION_STRING": azurite.connection_string,
            "GRAPH_BASE_URL": sim.base_url,
            "ACS_ENDPOINT": acs.endpoint,
            "EMAIL_SENDER_ADDRESS": sender,
            "NUDGE_ORGANIZATION": "Contoso",
            "NUDGE_CONTACT": "the IT service desk (help@contoso.example)",
            "NUDGE_DIGEST_TO": "it-admins@contoso.example",
        }
        print("\nReminder emails (the nudge job, ACS Email simulator at " + acs.endpoint + ")")
        for label, overrides in (("dry run (the default)", {}), ("real run", {"NUDGE_DRY_RUN": "false"})):
            run = asyncio.run(
                entrypoints.nudge({**env, **overrides}, clock=lambda: now[0], sleep=advance, email_verify=acs.ca_file)
            )
            assert run.status is RunStatus.COMPLETED, run.error
            done = f"would email {run.would_send}" if run.dry_run else f"emailed {run.sent}, {run.failed} failed"
            print(
                f"  {label}: {run.due} due, {done}, {run.cancelled} cancelled (registered meanwhile), "
                f"{run.carried_over} carried over to the next hourly run (quota 5/minute, 10/hour); "
                f"{run.not_emailed} in scope but not emailable (no address or excluded)"
            )
            now[0] += timedelta(minutes=5)
        folder = OUTPUT / "emails"
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for i, message in enumerate(acs.messages, 1):
            name = f"{i:02d}-" + "".join(c if c.isalnum() else "-" for c in message.to[0][0])[:60]
            (folder / f"{name}.eml").write_bytes(to_eml(message))
            (folder / f"{name}.html").write_text(message.html, encoding="utf-8")
        if acs.messages:
            first = acs.messages[0]
            print(f"  e.g. to {first.to[0][0]}: {first.subject}")
        print(f"  {len(acs.messages)} emails (the admin digest included) written to {folder}/ as .eml and .html")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--churn", type=float, default=0.02)
    parser.add_argument("--tenant-json", type=Path, help="replay a tenant exported in Graph's wire format")
    args = parser.parse_args(argv)

    tenant = Tenant.from_json(args.tenant_json) if args.tenant_json else generate_tenant(args.users, seed=args.seed)
    if not args.tenant_json:  # the scope signals: sign-ins, roles, groups, Azure RBAC, cross-tenant policy
        night1 = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0) - timedelta(days=1)
        add_scope_data(tenant, seed=args.seed, now=night1)
    OUTPUT.mkdir(exist_ok=True)
    tenant.to_json(OUTPUT / "tenant-night1.json")
    print("MFA readiness monitor: local demo (everything on 127.0.0.1, nothing leaves this machine)")
    with Azurite() as azurite, GraphSimulator(tenant, page_size=500) as sim:
        print(f"  Azurite table service on 127.0.0.1:{azurite.port} (in memory)")
        print(f"  tenant simulator (Graph + managed-identity endpoint) at {sim.base_url}")
        print(f"  tenant: {len(tenant.users):,} users; its JSON is in {OUTPUT}/tenant-night1.json")
        asyncio.run(_nights(args, tenant, azurite, sim))
        tenant.to_json(OUTPUT / "tenant-night2.json")
        _nudge_demo(azurite, sim)
        # After the nudge run, so the report's reminders section shows its outcomes.
        print("\nThe readiness report, as `python -m shared.cli report` writes it:")
        cli.main(["report", "--connection-string", azurite.connection_string, "--output", str(OUTPUT / "report.html")])
    print(f"\nDone: Azurite and the simulator are stopped. Tenant snapshots are in {OUTPUT}/.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
