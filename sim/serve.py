"""Run the tenant simulator as its own process (for benchmarks and `func start` against it).

    python -m sim.serve [--users 2000] [--seed 42] [--tenant-json FILE] [--page-size 999]

Prints one JSON line with ``base_url``, ``identity_endpoint`` and ``identity_header`` (set
GRAPH_BASE_URL, IDENTITY_ENDPOINT and IDENTITY_HEADER from it), then reads commands from stdin,
one per line, answering each with one JSON line:

    evolve SEED CHURN   one simulated day (see sim.tenant.evolve); answers with its counts
    warm                serialise the listings now, so a timed run does not pay for it
    quit                stop (so does end of input)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.adapters.graph import REGISTRATION_FIELDS, USER_FIELDS
from sim.graph_server import GraphSimulator
from sim.tenant import Tenant, evolve, generate_tenant


def _say(payload: object) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tenant-json", type=Path)
    parser.add_argument("--page-size", type=int, default=999)
    args = parser.parse_args(argv)

    tenant = Tenant.from_json(args.tenant_json) if args.tenant_json else generate_tenant(args.users, seed=args.seed)
    with GraphSimulator(tenant, page_size=args.page_size) as sim:
        _say(
            {
                "base_url": sim.base_url,
                "identity_endpoint": sim.identity_endpoint,
                "identity_header": sim.identity_header,
                "users": len(tenant.users),
            }
        )
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "evolve" and len(words) == 3:
                did = evolve(tenant, seed=int(words[1]), churn=float(words[2]))
                _say({"counts": did["counts"]})
            elif words[0] == "warm":
                ready = sim.warm("users", USER_FIELDS) + sim.warm("userRegistrationDetails", REGISTRATION_FIELDS)
                _say({"warmed": ready})
            elif words[0] == "quit":
                break
            else:
                _say({"error": f"unknown command {line.strip()!r}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
