"""A contact search by name prefix in a 10,000-contact vault: through a session, and in process.

Through the session, the car's head unit sends a DataRequest inside an established secure channel,
the phone checks consent, queries its vault, logs the disclosure and answers, and the car decodes
the answer (both ends pumped in memory). The reference is the same vault query made directly on
the phone. Ends with exactly one line: ``fetch_over_local=R median_fetch_ms=M``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tether.phone import consent
from tether.phone.vault import Vault
from tether.phone.wallet import PhoneWallet
from tether.protocol.crypto import SystemEntropy
from tether.protocol.pump import pump
from tether.protocol.session import (
    DataItem,
    DataReceived,
    DataRequested,
    PhoneSession,
    VehicleSession,
)
from tether.protocol.transaction import (
    Established,
    MemoryDirectory,
    PhoneTransaction,
    VehicleTransaction,
)

FIRST = ["Ada", "Alan", "Bea", "Carl", "Dora", "Emil", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai"]
LAST = ["Lovelace", "Turing", "Hopper", "Noether", "Gauss", "Curie", "Babbage", "Meitner"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="searches of each kind")
    parser.add_argument("--contacts", type=int, default=10_000)
    args = parser.parse_args()
    rng = random.Random(7)
    contacts: list[dict[str, Any]] = [
        {
            "name": f"{rng.choice(FIRST)} {rng.choice(LAST)} {i}",
            "phones": [f"+49 89 {rng.randrange(10**6, 10**7)}"],
            "emails": [f"person{i}@example.org"],
        }
        for i in range(args.contacts)
    ]
    contacts.sort(key=lambda c: c["name"])
    with tempfile.TemporaryDirectory() as tmp:
        wallet = PhoneWallet.create(Path(tmp) / "phone", name="bench", passphrase="bench")
        vault = Vault(wallet)
        vault.put("contacts", contacts)
        entropy = SystemEntropy()
        vehicle, phone = entropy.new_private_key(), entropy.new_private_key()
        car = wallet.add_car(
            name="car",
            vehicle_key=vehicle.public_key,
            vehicle_name="car",
            address="memory",
            endpoint_key=phone,
            role="owner",
            now=time.time(),
        )
        directory = MemoryDirectory()
        directory.enroll(phone.public_key, owner=True)
        phone_tx = PhoneTransaction(
            endpoint_key=phone,
            vehicle_key=vehicle.public_key,
            persistent_key=None,
            entropy=entropy,
        )
        car_tx = VehicleTransaction(vehicle_key=vehicle, directory=directory, entropy=entropy)
        phone_tx.start()
        sessions = [
            e.session for e in pump(phone_tx, car_tx, now=0.0) if isinstance(e, Established)
        ]
        car_session = next(s for s in sessions if isinstance(s, VehicleSession))
        phone_session = next(s for s in sessions if isinstance(s, PhoneSession))
        answer = consent.responder(wallet, car, ask=None, clock=time.time)

        async def fetch_once(prefix: str) -> list[DataReceived]:
            """The car asks, the phone answers from its vault (as consent allows), the car reads."""
            car_session.request_data(
                [DataItem(category="contacts", query={"prefix": prefix, "limit": 50})],
                purpose="bench",
            )
            for event in pump(car_session, phone_session, now=0.0):
                if isinstance(event, DataRequested):
                    granted, denied = await answer(event)
                    phone_session.respond_data(event.request_id, granted=granted, denied=denied)
            return [
                e for e in pump(phone_session, car_session, now=0.0) if isinstance(e, DataReceived)
            ]

        loop = asyncio.new_event_loop()
        prefixes = [f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(args.n)]
        fetch, local, found = [], [], 0
        for prefix in prefixes:
            t0 = time.perf_counter()
            received = loop.run_until_complete(fetch_once(prefix))
            t1 = time.perf_counter()
            direct = vault.query("contacts", {"prefix": prefix, "limit": 50})
            t2 = time.perf_counter()
            assert received and received[0].granted["contacts"] == direct
            found += len(direct)
            fetch.append(t1 - t0)
            local.append(t2 - t1)
        loop.close()
        wallet.close()
    med_fetch, med_local = statistics.median(fetch), statistics.median(local)
    table = Table(title=f"Prefix search in {args.contacts} contacts, {args.n} searches (medians)")
    table.add_column("what")
    table.add_column("median ms", justify="right")
    table.add_row(
        "through the session (request, consent, query, log, answer)", f"{med_fetch * 1000:.3f}"
    )
    table.add_row("the same query on the phone, in process", f"{med_local * 1000:.3f}")
    table.add_row("contacts found per search (mean)", f"{found / args.n:.1f}")
    Console(stderr=True).print(table)
    print(f"fetch_over_local={med_fetch / med_local:.2f} median_fetch_ms={med_fetch * 1000:.2f}")


if __name__ == "__main__":
    main()
