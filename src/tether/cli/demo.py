"""`tether demo`: a virtual car and its owner's phone, in one process, narrated step by step."""

from __future__ import annotations

import secrets
import time

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from tether.errors import ProtocolError
from tether.protocol.crypto import DeterministicEntropy, Entropy, SystemEntropy
from tether.protocol.pairing import CodeState, PhoneEnrolled, PhonePairing, VehiclePairing
from tether.protocol.pump import pump
from tether.protocol.session import CommandReceived, PhoneSession, ResultReceived, VehicleSession
from tether.protocol.transaction import (
    Established,
    MemoryDirectory,
    PersistentKeyChanged,
    PhoneTransaction,
    VehicleTransaction,
)


class _Car(MemoryDirectory):
    """Just enough car for the demo: enrolled keys, persistent keys and a lock state."""

    def __init__(self, entropy: Entropy) -> None:
        super().__init__()
        self.key = entropy.new_private_key()
        self.locked = True

    def serve(self, session: VehicleSession, events: list[object]) -> None:
        for event in events:
            if isinstance(event, CommandReceived):
                if event.command.value in ("lock", "unlock"):
                    self.locked = event.command.value == "lock"
                session.respond(
                    event.request_id,
                    ok=True,
                    state={"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked": self.locked},
                )


class _Story:
    """The demo's car, phone and eavesdropper, with each step timed."""

    def __init__(self, entropy: Entropy, code: str) -> None:
        self.entropy = entropy
        self.code = code
        self.car = _Car(entropy)
        self.phone_key = entropy.new_private_key()
        self.phone_persistent: bytes | None = None
        self.recorded: list[list[bytes]] = []  # what an eavesdropper saw the phone send

    def pair(self) -> bool:
        now = time.time()
        phone = PhonePairing(
            code=self.code, endpoint_key=self.phone_key, name="Owner", entropy=self.entropy
        )
        car = VehiclePairing(
            code=CodeState(code=self.code, expires_at=now + 600, used=False, failures=0),
            now=now,
            vehicle_key=self.car.key,
            name="Demo car",
            entropy=self.entropy,
        )
        phone.start()
        enrolled = [e for e in pump(phone, car) if isinstance(e, PhoneEnrolled)]
        for event in enrolled:
            self.car.enroll(event.public_key, owner=True)
        return bool(enrolled)

    def command(self, command: str, *, fast: bool) -> tuple[bool, str, bool]:
        """Run one transaction and one command; return (done, message, was the session fast)."""
        phone_tx = PhoneTransaction(
            endpoint_key=self.phone_key,
            vehicle_key=self.car.key.public_key,
            persistent_key=self.phone_persistent,
            entropy=self.entropy,
            fast=fast,
        )
        car_tx = VehicleTransaction(
            vehicle_key=self.car.key, directory=self.car, entropy=self.entropy
        )
        sent: list[bytes] = []
        self.recorded.append(sent)
        phone_tx.start()
        sessions: list[PhoneSession | VehicleSession] = []

        def persist(side: object, events: list[object]) -> None:
            for event in events:
                if isinstance(event, PersistentKeyChanged):
                    if side is car_tx:
                        self.car.persistent[event.endpoint_id] = event.key
                    else:
                        self.phone_persistent = event.key
                elif isinstance(event, Established):
                    sessions.append(event.session)

        def eavesdrop(side: object, data: bytes) -> bytes:
            if side is phone_tx or isinstance(side, PhoneSession):
                sent.append(data)
            return data

        pump(phone_tx, car_tx, on_events=persist, tap=eavesdrop)
        car_session = next(s for s in sessions if isinstance(s, VehicleSession))
        phone_session = next(s for s in sessions if isinstance(s, PhoneSession))
        phone_session.request(command)
        results: list[ResultReceived] = []

        def serve(side: object, events: list[object]) -> None:
            if side is car_session:
                self.car.serve(car_session, events)
            results.extend(e for e in events if isinstance(e, ResultReceived))

        pump(phone_session, car_session, on_events=serve, tap=eavesdrop)
        result = results[0].result
        return result.ok, result.message, phone_session.fast

    def replay_first_unlock(self) -> tuple[bool, str]:
        """Replay everything the phone sent in the first transaction; True if the car refused."""
        attacker = VehicleTransaction(
            vehicle_key=self.car.key, directory=self.car, entropy=self.entropy
        )
        try:
            for data in self.recorded[0]:
                attacker.receive(data)
        except ProtocolError as exc:
            return True, f"{exc.code}: {exc.message}"
        return False, "accepted"


STEPS = (
    ("Unlock (standard transaction: ECDH + signatures)", "unlock", False, True),
    ("Unlock again (fast transaction: MAC only)", "unlock", True, True),
    ("Lock (fast transaction)", "lock", True, True),
    ("Start over a fast transaction", "start", True, False),
    ("Start (standard transaction)", "start", False, True),
)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def run_demo(*, seed: bytes | None = None, console: Console | None = None) -> bool:
    """Run the story; return True when every step behaved as expected."""
    out = console or Console()
    entropy: Entropy = DeterministicEntropy(seed) if seed else SystemEntropy()
    code = (
        "".join("0123456789"[b % 10] for b in entropy.random_bytes(8))
        if seed
        else "".join(secrets.choice("0123456789") for _ in range(8))
    )
    story = _Story(entropy, code)
    table = Table(title="tether demo")
    for column, justify in (("step", "left"), ("result", "left"), ("ms", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    out.print(
        Panel.fit(
            f"Virtual car [bold]{story.car.key.public_key.key_id.hex()[:12]}[/bold] shows "
            f"pairing code [bold cyan]{code}[/bold cyan]",
            title="car",
        )
    )

    start = time.perf_counter()
    ok = story.pair()
    ms = _ms(start)
    table.add_row(
        "Owner pairs the phone with the code (SPAKE2)", "paired" if ok else "FAILED", f"{ms:.2f}"
    )
    out.print(f"{'[green]✓' if ok else '[red]✗'}[/] phone paired with the car in {ms:.1f} ms")

    for label, command, fast, expect_ok in STEPS:
        start = time.perf_counter()
        done, message, was_fast = story.command(command, fast=fast)
        ms = _ms(start)
        outcome = "done" if done else f"refused — {message}"
        table.add_row(label, outcome, f"{ms:.2f}")
        good = done == expect_ok
        kind = "fast" if was_fast else "standard"
        out.print(f"{'[green]✓' if good else '[red]✗'}[/] {label}: {outcome} ({kind}, {ms:.2f} ms)")
        ok &= good

    refused, reason = story.replay_first_unlock()
    table.add_row(
        "An eavesdropper replays the first unlock", "refused" if refused else "ACCEPTED", ""
    )
    out.print(f"{'[green]✓' if refused else '[red]✗'}[/] replayed unlock record refused ({reason})")
    ok &= refused

    out.print(table)
    verdict = "every step behaved as expected" if ok else "SOME STEPS MISBEHAVED"
    out.print(f"Car is {'locked' if story.car.locked else 'unlocked'}; {verdict}.")
    return ok
