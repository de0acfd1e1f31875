"""`tether server --workers N`: N server processes on one port, supervised by this one.

Each worker is a whole `tether server` (API, relay, result listener) that binds the same port
with SO_REUSEPORT, so the kernel spreads connections over them; they share nothing but the
database and the broker, which is why N > 1 needs PostgreSQL and an external MQTT 5 broker (the
relays share the cars' uplink as one shared subscription). The supervisor migrates the database
once, starts the workers, restarts one that dies (a second later), and stops them all on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from tether.cloud import db
from tether.errors import UsageError

log = logging.getLogger(__name__)
RESTART_S = 1.0
STOP_S = 15.0


def check(workers: int, database: str | None, mqtt: str | None) -> None:
    """Refuse, in one sentence, what several workers cannot share."""
    if workers < 1:
        raise UsageError("--workers is at least 1")
    if workers == 1:
        return
    if not database or not database.startswith("postgresql"):
        raise UsageError("--workers N needs --db postgresql://... (a database all of them share)")
    if not mqtt:
        raise UsageError("--workers N needs --mqtt mqtt://... (a broker all of them share)")


def pin_port(listen: str) -> str:
    """The listen URL with a real port: workers must agree on one (port 0 gives each its own)."""
    parts = urlsplit(listen)
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"--listen is http://HOST:PORT, not {listen!r}")
    port = parts.port if parts.port is not None else 8000
    if port == 0:
        with socket.socket() as probe:
            probe.bind((parts.hostname, 0))
            port = int(probe.getsockname()[1])
    return f"http://{parts.hostname}:{port}"


class Supervisor:
    """Runs the workers until stopped; ``ready`` is set once every worker has said so."""

    def __init__(self, workers: int, argv: Sequence[str], database: str) -> None:
        self.count = workers
        self.argv = list(argv)  # `server ...` without --workers, with the pinned --listen
        self.database = database
        self.ready = asyncio.Event()
        self.restarts = 0
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False
        self._up: set[int] = set()  # workers that have said ready at least once

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(_migrate, self.database)
        tasks = [asyncio.create_task(self._keep(i)) for i in range(self.count)]
        await stop.wait()
        self._stopping = True
        for proc in self._procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for task in tasks:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, STOP_S)

    async def _keep(self, index: int) -> None:
        """One worker slot: start it, wait for it, start it again unless we are stopping."""
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tether", *self.argv, stdout=asyncio.subprocess.PIPE
            )
            self._procs[index] = proc
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            if line.startswith(b"ready "):
                self._up.add(index)
                if len(self._up) == self.count:
                    self.ready.set()
            # Keep reading, so a worker never blocks on a full pipe.
            while await proc.stdout.readline():
                pass
            code = await proc.wait()
            if self._stopping:
                return
            self.restarts += 1
            log.warning("worker %d exited (%s); starting it again", index + 1, code)
            await asyncio.sleep(RESTART_S)


def _migrate(url: str) -> None:
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()
