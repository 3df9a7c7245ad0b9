"""Start and stop Azurite's table service (in memory, on 127.0.0.1) for tests, the demo and benchmarks.

Azurite is the npm package ``azurite``, installed into ./node_modules by ``make setup`` from
package.json. Only the table service runs, in memory, on a free port; the process is stopped by
its pid when the ``Azurite`` context ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
AZURITE_TABLE_MAIN = ROOT / "node_modules" / "azurite" / "dist" / "src" / "table" / "main.js"

# Azurite's well-known development account; not a secret (it is published in Azurite's README).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# Node preloads this module into Azurite's process: speed-ups for LokiJS's cost curves (point
# lookups that scan a partition, writes that shift whole-table indices). Emulator speed only: what
# Azurite accepts, rejects or returns is unchanged. The module says how.
SPEEDUPS = Path(__file__).resolve().parent / "azurite_speedups.mjs"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AzuriteError(RuntimeError):
    pass


class Azurite:
    """``with Azurite() as azurite: azurite.connection_string``"""

    def __init__(self, *, startup_timeout: float = 20.0, speedups: bool = True) -> None:
        self.port = 0
        self._speedups = "on" if speedups else "off"  # off: Azurite as shipped (azurite_speedups.mjs)
        self._process: subprocess.Popen[bytes] | None = None
        self._startup_timeout = startup_timeout

    @property
    def table_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{DEV_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"TableEndpoint={self.table_endpoint};"
        )

    def start(self) -> Azurite:
        node = shutil.which("node")
        if node is None:
            raise AzuriteError("node is not on PATH: install Node.js 20+ (see README)")
        if not AZURITE_TABLE_MAIN.exists():
            raise AzuriteError(f"{AZURITE_TABLE_MAIN} is missing: run `npm ci` (make setup) first")
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self.port = free_port()
            self._process = subprocess.Popen(
                [
                    node,
                    "--import",
                    SPEEDUPS.as_uri(),
                    str(AZURITE_TABLE_MAIN),
                    "--inMemoryPersistence",
                    "--tableHost",
                    "127.0.0.1",
                    "--tablePort",
                    str(self.port),
                    "--silent",
                    "--skipApiVersionCheck",
                    "--disableTelemetry",
                    "--loose",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={**os.environ, "AZURITE_DISABLE_TELEMETRY": "1", "SIM_AZURITE_SPEEDUPS": self._speedups},
            )
            if self._wait_ready():
                return self
            self.stop()
        raise AzuriteError("Azurite did not start on 127.0.0.1 (three attempts)")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self._startup_timeout
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process.stderr:
            process.stderr.close()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
