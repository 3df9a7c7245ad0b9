"""Benchmark the nightly sync: a first night, 1% churn, a second night, against a floor.

    python bench/sync_bench.py [--users 100000] [--churn 0.01] [--page-size 999]

Azurite (in memory) and the tenant simulator each run in their own process, as Table Storage and
Graph do in production. Each sync runs in a fresh child process so its peak RSS is its own.
The floor is what no implementation can beat on this machine: the same Graph pages fetched
with plain httpx + json.loads, plus Azurite batch writes of just the changed rows.
Prints figures; asserts nothing (targets are for people to read, not for CI to time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# --- the child: one sync ---------------------------------------------------------------------


def _peak_rss_kb(pid: int) -> int:
    """A running process's peak RSS (Linux: VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def _child_sync(night: str) -> dict[str, Any]:
    from datetime import datetime

    from shared import entrypoints
    from shared.adapters.fingerprint_worker import FingerprintWorker
    from shared.config import Settings
    from shared.wiring import open_services

    # The worker's own peak RSS, read just before it stops (its rusage as a child would also count
    # the parent's pages it was spawned from).
    worker_peak_kb = 0
    aclose = FingerprintWorker.aclose

    async def measured_aclose(self: FingerprintWorker) -> None:
        nonlocal worker_peak_kb
        worker_peak_kb = max(worker_peak_kb, _peak_rss_kb(self._process.pid))
        await aclose(self)

    FingerprintWorker.aclose = measured_aclose  # type: ignore[method-assign]

    env = {
        "AUTH_MODE": "managed_identity",
        "TABLES_CONNECTION_STRING": os.environ["BENCH_TABLES"],
        "GRAPH_BASE_URL": os.environ["BENCH_GRAPH"],
        "GRAPH_PAGE_SIZE": os.environ["BENCH_PAGE_SIZE"],
    }
    # Before the clock starts, open and close the clients once, sending nothing, as a warm
    # Functions worker has: the libraries import what they use on first use (msal behind the
    # managed-identity credential, azure-core's aiohttp transport, httpx's HTTP stacks), which
    # cost about 0.7 s inside the timed run otherwise. The floor imports httpx before its clock too.
    async with open_services(Settings.from_env(env)):
        pass
    started = time.perf_counter()
    run = await entrypoints.nightly_sync(env, clock=lambda: datetime.fromisoformat(night))
    seconds = time.perf_counter() - started
    f = run.figures
    assert f is not None
    return {
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_rss_mb": worker_peak_kb / 1024,  # 0: no fingerprint worker that night
        "users": f.users,
        "changes": sum(f.changes.values()),
        "changed_users": None,
        "graph_requests": run.io.graph_requests,
        "graph_throttled": run.io.graph_throttled,
        "table_reads": run.io.table_reads,
        "table_writes": run.io.table_writes,
        "table_batches": run.io.table_batches,
        "users_carried": run.io.users_carried,
        "users_recomputed": run.io.users_recomputed,
        "run_id": run.run_id,
        "night": run.night,
    }


# --- the floor ---------------------------------------------------------------------------------


async def _floor_fetch(base_url: str, identity_endpoint: str, identity_header: str, page_size: int) -> dict[str, Any]:
    import httpx

    from shared.adapters.graph import REGISTRATION_FIELDS, USER_FIELDS

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=100) as client:
        token = (
            await client.get(
                identity_endpoint,
                params={"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"},
                headers={"X-IDENTITY-HEADER": identity_header, "Metadata": "true"},
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        objects = requests = 0
        for path, fields in (
            ("/reports/authenticationMethods/userRegistrationDetails", REGISTRATION_FIELDS),
            ("/users", USER_FIELDS),
        ):
            url: str | None = f"{base_url}{path}?$select={','.join(fields)}&$top={page_size}"
            while url:
                data = json.loads((await client.get(url, headers=headers)).content)
                requests += 1
                objects += len(data["value"])
                url = data.get("@odata.nextLink")
    return {"seconds": time.perf_counter() - started, "requests": requests, "objects": objects}


async def _rows_written(table_client: Any, odata_filter: str, params: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    async for entity in table_client.query_entities(odata_filter, parameters=params):
        rows.append({k: v for k, v in entity.items()})
    return rows


async def _floor_write(connection_string: str, run_id: str, night: str) -> dict[str, Any]:
    """Write, with plain upserts packed 100 to a transaction, copies of exactly the rows the
    second sync changed (its users' state rows, their events and the night index), into a
    table of their own: the same rows, the same sizes, none of the conditions or bookkeeping."""
    from azure.data.tables.aio import TableServiceClient

    from shared.adapters import table_schema as schema
    from shared.adapters.table_wire import BatchOp, submit_batch

    async with TableServiceClient.from_connection_string(connection_string) as service:
        users = service.get_table_client(schema.USERS_TABLE)
        changes = service.get_table_client(schema.CHANGES_TABLE)
        rows = await _rows_written(changes, "PartitionKey eq @night", {"night": night})
        for shard in schema.SHARDS:
            rows += await _rows_written(
                users,
                "PartitionKey eq @pk and (LastRunId eq @run or RunId eq @run )",
                {"pk": shard, "run": run_id},
            )
        table = await service.create_table_if_not_exists("BenchFloor")
        by_partition: dict[str, list[dict[str, Any]]] = {}
        for e in rows:
            by_partition.setdefault(e["PartitionKey"], []).append(e)
        started = time.perf_counter()
        batches = 0
        for part in by_partition.values():
            for start in range(0, len(part), 100):
                await submit_batch(table, [BatchOp("upsert", e) for e in part[start : start + 100]])
                batches += 1
        seconds = time.perf_counter() - started
        await service.delete_table("BenchFloor")
    return {"seconds": seconds, "rows": len(rows), "batches": batches}


# --- the parent --------------------------------------------------------------------------------


def _run_child(env: dict[str, str], night: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child-sync", night],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"sync child failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--churn", type=float, default=0.01)
    parser.add_argument("--page-size", type=int, default=999)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--child-sync", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_sync:
        profile_to = os.environ.get("BENCH_PROFILE_DIR")
        if profile_to:  # python bench/sync_bench.py with BENCH_PROFILE_DIR=dir: cProfile each sync
            import cProfile

            profiler = cProfile.Profile()
            result = profiler.runcall(asyncio.run, _child_sync(args.child_sync))
            profiler.dump_stats(os.path.join(profile_to, f"sync-{args.child_sync[:10]}.prof"))
        else:
            result = asyncio.run(_child_sync(args.child_sync))
        print(json.dumps(result))
        return 0

    from sim.azurite import Azurite

    print(f"sync benchmark: {args.users:,} users, {args.churn:.1%} churn, Graph pages of {args.page_size}")
    with Azurite() as azurite:
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sim.serve",
                "--users",
                str(args.users),
                "--seed",
                str(args.seed),
                "--page-size",
                str(args.page_size),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert sim.stdin and sim.stdout

        def ask(command: str | None = None) -> dict[str, Any]:
            if command:
                sim.stdin.write(command + "\n")  # type: ignore[union-attr]
                sim.stdin.flush()  # type: ignore[union-attr]
            return json.loads(sim.stdout.readline())  # type: ignore[union-attr]

        try:
            info = ask()
            ask("warm")
            env = {
                **os.environ,
                "BENCH_TABLES": azurite.connection_string,
                "BENCH_GRAPH": info["base_url"],
                "BENCH_PAGE_SIZE": str(args.page_size),
                "IDENTITY_ENDPOINT": info["identity_endpoint"],
                "IDENTITY_HEADER": info["identity_header"],
            }
            first = _run_child(env, "2026-11-22T02:00:00+00:00")
            did = ask(f"evolve {args.seed + 1} {args.churn}")["counts"]
            ask("warm")
            second = _run_child(env, "2026-11-23T02:00:00+00:00")
            fetch = asyncio.run(
                _floor_fetch(info["base_url"], info["identity_endpoint"], info["identity_header"], args.page_size)
            )
            write = asyncio.run(_floor_write(azurite.connection_string, second["run_id"], second["night"]))
        finally:
            if sim.poll() is None:
                sim.stdin.write("quit\n")
                sim.stdin.flush()
                sim.wait(timeout=30)

    floor = fetch["seconds"] + write["seconds"]
    changed_users = sum(did.values())
    print(f"tenant changes between the nights: {changed_users:,} users ({json.dumps(did)})")
    print()
    print(f"{'':<28}{'first sync':>14}{'second sync':>14}")
    for label, key, fmt in (
        ("wall seconds", "seconds", "{:.1f}"),
        ("peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
        ("fingerprint worker RSS (MB)", "worker_rss_mb", "{:.0f}"),
        ("users", "users", "{:,}"),
        ("changes recorded", "changes", "{:,}"),
        ("Graph requests", "graph_requests", "{:,}"),
        ("table entities read", "table_reads", "{:,}"),
        ("table entities written", "table_writes", "{:,}"),
        ("table transactions", "table_batches", "{:,}"),
        ("users carried (snapshot)", "users_carried", "{:,}"),
        ("users recomputed", "users_recomputed", "{:,}"),
    ):
        print(f"{label:<28}{fmt.format(first[key]):>14}{fmt.format(second[key]):>14}")
    rates = [run["users"] / run["seconds"] for run in (first, second)]
    print(f"{'users per second':<28}{rates[0]:>14,.0f}{rates[1]:>14,.0f}")
    print()
    print(
        f"floor: fetch {fetch['requests']} pages / {fetch['objects']:,} objects with httpx+json in "
        f"{fetch['seconds']:.1f} s; {write['rows']:,} changed rows in {write['batches']} Azurite batches in "
        f"{write['seconds']:.1f} s; total {floor:.1f} s"
    )
    fewest = -(-second["table_writes"] // 100)  # if every transaction were full
    print(
        f"second sync: {second['seconds'] / floor:.2f}x the floor (target <= 2x), "
        f"{second['seconds']:.1f} s (target < 60 s), peak RSS {second['peak_rss_mb']:.0f} MB "
        f"+ {second['worker_rss_mb']:.0f} MB worker (target < 300 MB), "
        f"{second['table_batches']} transactions for {second['table_writes']:,} written rows "
        f"(at least {fewest} even if every transaction were full; 16 user shards + the night index)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
