"""sim/azurite_speedups.mjs changes Azurite's speed, not its answers.

The same seeded script of single writes and transactions (creates, replaces, ETag-conditional
updates with current ETags and with ETags never issued, merges, deletes, transactions that fail
part way and must roll back, a table dropped and made again) is played against Azurite with the
speed-ups (what the tests, the demo and the benchmarks run) and against Azurite as shipped. Every
outcome and the final table must be the same.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.adapters.table_wire import BatchOp, BatchRejected, submit_batch
from sim.azurite import Azurite

NEVER_ISSUED = "W/\"datetime'2020-01-01T00%3A00%3A00.0000000Z'\""
KEYS = [(f"p{p}", f"r{r:02d}") for p in range(2) for r in range(25)]


@pytest.fixture(scope="module")
def azurite_as_shipped() -> Iterator[Azurite]:
    with Azurite(speedups=False) as server:
        yield server


@asynccontextmanager
async def _fresh_table(connection_string: str) -> AsyncIterator[TableClient]:
    async with TableServiceClient.from_connection_string(connection_string) as service:
        await service.delete_table("SpeedupCheck")
        yield await service.create_table("SpeedupCheck")


def _entity(key: tuple[str, str], rng: random.Random) -> dict[str, Any]:
    e: dict[str, Any] = {"PartitionKey": key[0], "RowKey": key[1], "Value": rng.randrange(1000)}
    if rng.random() < 0.5:  # properties come and go, so a replace that kept old ones would show
        e[f"Extra{rng.randrange(3)}"] = "x" * rng.randrange(1, 50)
    return e


async def _play(table: TableClient, seed: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Outcomes of the script, and the table at the end (without server-set timestamps)."""
    rng = random.Random(seed)
    etags: dict[tuple[str, str], str] = {}  # the last ETag this script saw for a row
    outcomes: list[str] = []

    def saw(key: tuple[str, str], etag: str | None) -> None:
        if etag is not None:
            etags[key] = etag

    for step in range(400):
        key = rng.choice(KEYS)
        what = rng.choice(["create", "upsert", "update", "update_stale", "merge", "delete", "batch", "read"])
        if step == 200:  # a table dropped and made again starts empty
            await table.delete_table()
            await table.create_table()
            etags.clear()
            outcomes.append("table made again")
        try:
            if what == "read":
                e = await table.get_entity(key[0], key[1])
                outcomes.append(f"read {sorted((k, v) for k, v in e.items() if k != 'Timestamp')}")
                continue
            if what == "create":
                saw(key, (await table.create_entity(_entity(key, rng)))["etag"])
            elif what == "upsert":
                saw(key, (await table.upsert_entity(_entity(key, rng), mode=UpdateMode.REPLACE))["etag"])
            elif what in ("update", "update_stale"):
                # Not an earlier ETag of the row: two writes in one millisecond share one.
                etag = etags.get(key, NEVER_ISSUED) if what == "update" else NEVER_ISSUED
                saw(
                    key,
                    (
                        await table.update_entity(
                            _entity(key, rng),
                            mode=UpdateMode.REPLACE,
                            etag=etag,
                            match_condition=MatchConditions.IfNotModified,
                        )
                    )["etag"],
                )
            elif what == "merge":
                saw(key, (await table.update_entity(_entity(key, rng), mode=UpdateMode.MERGE))["etag"])
            elif what == "delete":
                await table.delete_entity(key[0], key[1])
                etags.pop(key, None)
            else:  # a transaction in one partition, sometimes failing at its last operation
                rows = rng.sample([k for k in KEYS if k[0] == key[0]], rng.randrange(2, 8))
                ops = []
                for k in rows:
                    kind = rng.choice(["upsert", "update", "create"])
                    ops.append(BatchOp(kind, _entity(k, rng), etags.get(k, NEVER_ISSUED) if kind == "update" else None))
                for k, etag in zip(rows, await submit_batch(table, ops), strict=True):
                    saw(k, etag)
            outcomes.append(f"{what} ok")
        except BatchRejected as exc:
            outcomes.append(f"{what} rejected {exc.status} {exc.code} at {exc.index}")
        except HttpResponseError as exc:
            outcomes.append(f"{what} {exc.status_code} {getattr(exc, 'error_code', None)}")

    final = [
        {k: v for k, v in e.items() if k != "Timestamp"} | {"_etag_known": e.metadata["etag"] in etags.values()}
        async for e in table.list_entities()
    ]
    return outcomes, final


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_speedups_answer_as_azurite_does(azurite: Azurite, azurite_as_shipped: Azurite, seed: int) -> None:
    async with _fresh_table(azurite.connection_string) as fast:
        got = await _play(fast, seed)
    async with _fresh_table(azurite_as_shipped.connection_string) as shipped:
        expected = await _play(shipped, seed)

    assert got[0] == expected[0]
    assert got[1] == expected[1]
    # The script did exercise what the speed-up changes: replaces that succeeded, wrong ETags
    # refused, transactions rolled back after replacing rows, and rows left at the end.
    outcomes = got[0]
    assert sum(o in ("upsert ok", "update ok") for o in outcomes) > 20
    assert any(o.startswith("update_stale 412") for o in outcomes)
    assert any(o.startswith("batch rejected") for o in outcomes) and "batch ok" in outcomes
    assert any(o.startswith("read [") for o in outcomes) and any(o.startswith("read 404") for o in outcomes)
    assert len(got[1]) > 10 and all(row["_etag_known"] for row in got[1])
