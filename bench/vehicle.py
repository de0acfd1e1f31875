"""The vehicle agent's cold start, and an unlock over loopback TCP against one in process.

Two figures against references measured in the same run:

- cold start: spawn `tether vehicle run` to its "ready" line (median of N), over the start-up of
  `python -c "import cryptography.hazmat.primitives.asymmetric.ec"` (median of N, interleaved);
- TCP overhead: a fast unlock from a phone to the real agent process over loopback TCP (connect,
  transaction, command, durable writes; median), minus the same fast transaction and unlock
  command pumped in memory in this process (median).

Ends with exactly one line: ``cold_start_ratio=R tcp_overhead_ms=M``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tether.phone import client
from tether.phone.wallet import CarKey
from tether.protocol.commands import Command
from tether.protocol.crypto import PublicKey, SystemEntropy
from tether.protocol.machine import Event
from tether.protocol.pump import pump
from tether.protocol.session import CommandReceived, ResultReceived
from tether.protocol.transaction import (
    Established,
    MemoryDirectory,
    PersistentKeyChanged,
    PhoneTransaction,
    VehicleTransaction,
)
from tether.transport import tcp
from tether.vehicle.keystore import VehicleStore

ENTRY = [sys.executable, "-m", "tether.cli"]


def _spawn_ready(car_dir: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*ENTRY, "vehicle", "run", "--dir", str(car_dir), "--listen", "tcp://127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.terminate()
    proc.communicate(timeout=10)
    if not line.startswith("ready "):
        raise SystemExit(f"agent did not start: {line!r}")
    return elapsed


#: The reference, then (for context, not in the ratio) what an asyncio agent cannot avoid loading.
_REFERENCE = "import cryptography.hazmat.primitives.asymmetric.ec"
_CONTEXT = {
    "context: import asyncio": "import asyncio",
    "context: import asyncio, sqlite3, ...ec": f"import asyncio, sqlite3; {_REFERENCE}",
}


def _spawn_python(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def _Directory(phone: PublicKey) -> MemoryDirectory:
    directory = MemoryDirectory()
    directory.enroll(phone, owner=True)
    return directory


def _in_process_unlocks(n: int) -> list[float]:
    """A fast transaction plus one unlock command, both ends in this process, no I/O."""
    entropy = SystemEntropy()
    vehicle, phone = entropy.new_private_key(), entropy.new_private_key()
    directory = _Directory(phone.public_key)
    phone_persistent: list[bytes | None] = [None]

    def once(fast: bool) -> None:
        phone_tx = PhoneTransaction(
            endpoint_key=phone,
            vehicle_key=vehicle.public_key,
            persistent_key=phone_persistent[0],
            entropy=entropy,
            fast=fast,
        )
        car_tx = VehicleTransaction(vehicle_key=vehicle, directory=directory, entropy=entropy)
        sessions = []

        def on_events(side: object, events: list[Event]) -> None:
            for event in events:
                if isinstance(event, PersistentKeyChanged):
                    if side is car_tx:
                        directory.persistent[event.endpoint_id] = event.key
                    else:
                        phone_persistent[0] = event.key
                elif isinstance(event, Established):
                    sessions.append(event.session)
                elif isinstance(event, CommandReceived):
                    car_session.respond(event.request_id, ok=True)  # type: ignore[union-attr]

        phone_tx.start()
        pump(phone_tx, car_tx, now=0.0, on_events=on_events)
        car_session, phone_session = sessions
        phone_session.request(Command.UNLOCK)  # type: ignore[union-attr]
        results = [
            e
            for e in pump(phone_session, car_session, now=0.0, on_events=on_events)
            if isinstance(e, ResultReceived)
        ]
        assert results and results[0].result.ok

    once(False)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        once(True)
        times.append(time.perf_counter() - start)
    return times


async def _tcp_unlocks(address: str, car: CarKey, n: int) -> list[float]:
    times = []
    entropy = SystemEntropy()
    for i in range(n + 1):
        keys: list[bytes] = []
        start = time.perf_counter()
        transport = await tcp.connect(address)
        try:
            (outcome,) = await client.run_commands(
                transport, car, [Command.UNLOCK], entropy=entropy, fast=True, persist=keys.append
            )
        finally:
            await transport.close()
        elapsed = time.perf_counter() - start
        assert outcome.result.ok and (outcome.fast or i == 0)
        car = dataclasses.replace(car, persistent_key=keys[-1])
        if i:  # the first one is the standard transaction that sets up the fast key
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="unlocks of each kind")
    parser.add_argument("--starts", type=int, default=15, help="cold starts of each kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        car_dir = Path(tmp) / "car"
        store = VehicleStore.create(car_dir, name="bench", entropy=SystemEntropy(), now=time.time())
        phone = SystemEntropy().new_private_key()
        store.new_pairing_code(now=time.time())
        store.enroll_owner(phone.public_key, name="bench phone", now=time.time())
        car = CarKey(
            name="bench",
            vehicle_key=store.identity.public_key,
            vehicle_name="bench",
            address="",
            endpoint_key=phone,
            role="owner",
            persistent_key=None,
            ratchet=0,
            added_at=0,
        )
        store.close()

        starts: list[float] = []
        references: list[float] = []
        context: dict[str, list[float]] = {name: [] for name in _CONTEXT}
        _spawn_ready(car_dir), _spawn_python(_REFERENCE)  # warm the page cache
        for _ in range(args.starts):
            starts.append(_spawn_ready(car_dir))
            references.append(_spawn_python(_REFERENCE))
            for name, code in _CONTEXT.items():
                context[name].append(_spawn_python(code))

        proc = subprocess.Popen(
            [*ENTRY, "vehicle", "run", "--dir", str(car_dir), "--listen", "tcp://127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ},
        )
        assert proc.stdout is not None
        address = proc.stdout.readline().split()[1]
        try:
            tcp_times = asyncio.run(_tcp_unlocks(address, car, args.n))
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
        local_times = _in_process_unlocks(args.n)

    start_med, ref_med = statistics.median(starts), statistics.median(references)
    tcp_med, local_med = statistics.median(tcp_times), statistics.median(local_times)
    table = Table(title="Vehicle agent (medians)")
    table.add_column("what")
    table.add_column("median ms", justify="right")
    table.add_column("× reference", justify="right")
    table.add_row(
        f"agent cold start to ready ({args.starts} runs)",
        f"{start_med * 1000:.1f}",
        f"{start_med / ref_med:.2f}",
    )
    table.add_row("reference: python -c 'import ...asymmetric.ec'", f"{ref_med * 1000:.1f}", "1.00")
    for name, times in context.items():
        med = statistics.median(times)
        table.add_row(name, f"{med * 1000:.1f}", f"{med / ref_med:.2f}")
    table.add_row(f"fast unlock over loopback TCP ({args.n} runs)", f"{tcp_med * 1000:.2f}", "")
    table.add_row("same fast transaction + unlock in process", f"{local_med * 1000:.2f}", "")
    Console(stderr=True).print(table)
    print(
        f"cold_start_ratio={start_med / ref_med:.2f} "
        f"tcp_overhead_ms={(tcp_med - local_med) * 1000:.2f}"
    )


if __name__ == "__main__":
    main()
