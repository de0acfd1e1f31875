"""`tether demo`: a virtual car, its owner's phone and a friend's phone, narrated step by step.

Everything runs in one process on the production code paths (the vehicle agent, its SQLite key
store and audit log, phone wallets, the phone client) over in-memory transports, in a temporary
directory that is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.table import Table

from tether.errors import ProtocolError, TetherError
from tether.phone import client, consent, sharing
from tether.phone.vault import Vault
from tether.phone.wallet import CarKey, PhoneWallet
from tether.protocol import codec, credentials
from tether.protocol.commands import Command
from tether.protocol.crypto import DeterministicEntropy, Entropy, SystemEntropy
from tether.protocol.messages import Error
from tether.protocol.pump import pump
from tether.protocol.ranging import ranging_key
from tether.protocol.session import PhoneSession, RangingReadied, RangingRequested, VehicleSession
from tether.protocol.transaction import (
    Established,
    MemoryDirectory,
    PhoneTransaction,
    VehicleTransaction,
)
from tether.transport.base import Transport
from tether.transport.memory import MemoryListener
from tether.vehicle.agent import VehicleAgent
from tether.vehicle.body.virtual import VirtualBody
from tether.vehicle.hands_free import Reading
from tether.vehicle.headunit import HeadUnitEvent
from tether.vehicle.keystore import VehicleStore
from tether.vehicle.ranging import EarlyAnswer, Relay, SimulatedRanger, locate

T = TypeVar("T")
_DEMO_PASSPHRASE = "demo only"  # noqa: S105 - throwaway wallets in a temporary directory


class _Recording:
    """A transport that remembers what the phone sent (what an eavesdropper would capture)."""

    def __init__(self, inner: Transport, log: list[bytes]) -> None:
        self._inner, self._log, self.peer = inner, log, inner.peer

    async def send(self, message: bytes) -> None:
        self._log.append(message)
        await self._inner.send(message)

    async def receive(self, timeout: float | None = None) -> bytes:
        return await self._inner.receive(timeout)

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class _Story:
    out: Console
    entropy: Entropy
    root: Path
    table: Table
    ok: bool = True
    recorded: list[list[bytes]] = field(default_factory=list)
    screen_events: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        now = time.time()
        self.store = VehicleStore.create(
            self.root / "car", name="Demo car", entropy=self.entropy, now=now
        )
        self.body = VirtualBody(self.root / "car" / "body.json")
        self.agent = VehicleAgent(self.store, self.body, entropy=self.entropy)
        self.listener = MemoryListener(self.agent.handle)
        self.owner = PhoneWallet.create(
            self.root / "owner", name="Ada", passphrase=_DEMO_PASSPHRASE
        )
        self.friend = PhoneWallet.create(
            self.root / "friend", name="Bea", passphrase=_DEMO_PASSPHRASE
        )

    def step(self, label: str, good: bool, outcome: str, ms: float | None = None) -> None:
        self.ok &= good
        mark = "[green]✓[/green]" if good else "[red]✗[/red]"
        timing = f" ({ms:.2f} ms)" if ms is not None else ""
        self.out.print(f"{mark} {label}: {outcome}{timing}")
        self.table.add_row(label, outcome, f"{ms:.2f}" if ms is not None else "")

    async def timed(self, action: Callable[[], Awaitable[T]]) -> tuple[T, float]:
        start = time.perf_counter()
        result = await action()
        return result, (time.perf_counter() - start) * 1000

    async def connect(self) -> Transport:
        log: list[bytes] = []
        self.recorded.append(log)
        return _Recording(await self.listener.connect(), log)

    async def command(
        self, wallet: PhoneWallet, key: CarKey, command: Command, *, fast: bool = True
    ) -> client.Outcome:
        key = wallet.car(key.name)
        transport = await self.connect()
        try:
            (outcome,) = await client.run_commands(
                transport,
                key,
                [command],
                entropy=self.entropy,
                fast=fast,
                persist=lambda k: wallet.set_persistent_key(key.name, k),
                data=consent.responder(wallet, key, ask=None, clock=time.time),
            )
        finally:
            await transport.close()
        return outcome

    async def expect(
        self,
        label: str,
        wallet: PhoneWallet,
        key: CarKey,
        command: Command,
        *,
        fast: bool = True,
        want: str | None = None,
    ) -> None:
        """Run a command; ``want`` is None for success, else the refusal code expected."""
        try:
            outcome, ms = await self.timed(lambda: self.command(wallet, key, command, fast=fast))
        except ProtocolError as exc:
            self.step(label, exc.code == want, f"refused by the car ({exc.code})")
            return
        result = outcome.result
        kind = "fast" if outcome.fast else "standard"
        if result.ok:
            self.step(label, want is None, f"done ({kind} transaction)", ms)
        else:
            self.step(label, result.reason == want, f"refused ({result.reason}, {kind})", ms)


async def _run(story: _Story) -> None:
    out, store = story.out, story.store
    code = store.new_pairing_code(now=time.time())
    out.print(
        f"Virtual car [bold]{store.vehicle_id.hex()[:12]}[/bold] shows pairing code "
        f"[bold cyan]{code}[/bold cyan]"
    )

    # -- owner pairing and commands --------------------------------------------------------------
    async def pair() -> CarKey:
        key = story.entropy.new_private_key()
        transport = await story.listener.connect()
        try:
            paired = await client.pair(
                transport, code=code, endpoint_key=key, name="Ada", entropy=story.entropy
            )
        finally:
            await transport.close()
        return story.owner.add_car(
            name="car",
            vehicle_key=paired.vehicle_key,
            vehicle_name=paired.vehicle_name,
            address="memory",
            endpoint_key=key,
            role="owner",
            rights=credentials.RIGHTS,
            now=time.time(),
        )

    ada, ms = await story.timed(pair)
    story.step("Ada pairs her phone with the code (SPAKE2)", True, "paired", ms)
    vault = Vault(story.owner)
    vault.import_text(_ADA_CONTACTS, now=datetime.datetime.now(datetime.UTC))
    vault.import_text(_ADA_PROFILE, now=datetime.datetime.now(datetime.UTC))

    def on_screen(event: HeadUnitEvent) -> None:
        if event.kind == "shown" and event.screen is not None:
            names = ", ".join(c["name"] for c in event.screen.data.get("contacts", []))
            seat = event.screen.data.get("profile", {}).get("seat", {}).get("position", "-")
            out.print(f"  [cyan]head unit[/cyan] fills: contacts {names or '-'}; seat {seat}")
        elif event.kind == "forgotten":
            out.print(f"  [cyan]head unit[/cyan] empties ({event.reason})")
        story.screen_events.append(event.kind)

    story.agent.headunit.listeners.append(on_screen)
    await story.expect(
        "Ada unlocks (standard: ECDH + signatures)", story.owner, ada, Command.UNLOCK
    )
    await story.expect("Ada unlocks again (fast: MACs only)", story.owner, ada, Command.UNLOCK)
    await story.expect("Ada locks (fast)", story.owner, ada, Command.LOCK)
    await story.expect(
        "Ada tries to start over a fast transaction",
        story.owner,
        ada,
        Command.START,
        want="fast_not_allowed",
    )
    await story.expect(
        "Ada starts (standard; the car reads her profile first)",
        story.owner,
        ada,
        Command.START,
        fast=False,
    )
    for _ in range(50):  # the agent reads the phone's Close on its own time
        if story.screen_events[-1:] == ["forgotten"]:
            break
        await asyncio.sleep(0.01)
    seat = story.body.state()["Vehicle.Cabin.Seat.Row1.DriverSide.Position"]
    story.step(
        "The head unit showed Ada's data, set her seat, then forgot it",
        story.screen_events == ["shown", "forgotten"] and seat == 42,
        f"seat {seat}; screen {' then '.join(story.screen_events)}",
    )

    # -- an eavesdropper replays Ada's first unlock ------------------------------------------------
    replay = await story.listener.connect()
    refused = "accepted"
    try:
        for message in story.recorded[0]:
            await replay.send(message)
            reply = codec.decode(await replay.receive(1))
            if isinstance(reply, Error):
                refused = f"refused ({reply.code})"
                break
    except TetherError as exc:
        refused = f"refused ({exc.code})"
    finally:
        await replay.close()
    story.step("An eavesdropper replays Ada's first unlock", refused != "accepted", refused)

    # -- Ada shares a key with Bea, by file ---------------------------------------------------
    bea_key = story.entropy.new_private_key()
    story.friend.add_request(bea_key, now=time.time())
    request = sharing.read_request(sharing.make_request(bea_key.public_key, "Bea"))
    until = int(time.time()) + 2 * 86_400
    bundle = sharing.issue(
        ada,
        request,
        rights=frozenset({"unlock", "lock"}),
        not_before=int(time.time()) - 60,
        expires=until,
        limits=credentials.Limits(),
        serial=story.entropy.random_bytes(16),
        now=int(time.time()),
    )
    link = bundle.link()
    accepted = sharing.read_bundle(link)  # what Bea's phone reads from the link
    bea = sharing.accept(story.friend, accepted, name="Ada's car", now=time.time())
    day = datetime.datetime.fromtimestamp(until).strftime("%a %H:%M")
    story.step("Ada shares unlock+lock with Bea until " + day, True, f"grant link {link[:34]}…")
    await story.expect(
        "Bea unlocks (first use: her grant rides in the transaction)",
        story.friend,
        bea,
        Command.UNLOCK,
    )
    await story.expect("Bea locks (fast)", story.friend, bea, Command.LOCK)
    await story.expect(
        "Bea tries to start the car", story.friend, bea, Command.START, fast=False, want="no_right"
    )

    # -- Ada revokes Bea's grant ------------------------------------------------------------------
    revocation = credentials.issue_revocation(
        ada.endpoint_key,
        vehicle_id=ada.vehicle_id,
        seq=story.owner.next_revocation_seq(time.time()),
        grants=[accepted.leaf.serial],
        issued_at=int(time.time()),
    )

    async def revoke() -> bool:
        transport = await story.connect()
        try:
            result = await client.deliver_revocation(
                transport,
                story.owner.car("car"),
                revocation,
                entropy=story.entropy,
                persist=lambda k: story.owner.set_persistent_key("car", k),
            )
        finally:
            await transport.close()
        return result.ok

    done, ms = await story.timed(revoke)
    story.step(
        "Ada revokes Bea's grant (signed, delivered in a session)",
        done,
        "durable on the car" if done else "refused",
        ms,
    )
    await story.expect(
        "Bea unlocks (her fast key is dead too)",
        story.friend,
        bea,
        Command.UNLOCK,
        want="unknown_key",
    )
    old = CarKey(
        **{
            **{f: getattr(bea, f) for f in bea.__dataclass_fields__},
            "enrolled": False,
            "persistent_key": None,
        }
    )

    async def replay_grant() -> client.Outcome:
        transport = await story.connect()
        try:
            (outcome,) = await client.run_commands(
                transport,
                old,
                [Command.UNLOCK],
                entropy=story.entropy,
                fast=False,
                persist=lambda k: None,
            )
        finally:
            await transport.close()
        return outcome

    try:
        await replay_grant()
        story.step("Bea replays her old grant", False, "accepted")
    except ProtocolError as exc:
        story.step(
            "Bea replays her old grant",
            exc.code == "grant_revoked",
            f"refused by the car ({exc.code})",
        )

    await _hands_free_scene(story, ada)

    problems = store.verify_audit()
    entries = len(store.audit_entries())
    story.step(
        "The car's audit log",
        not problems,
        f"{entries} entries, hash chain intact" if not problems else "BROKEN",
    )


async def _hands_free_scene(story: _Story, ada: CarKey) -> None:
    """Ada walks up (unlocks at the door), gets in (start), walks away (locks); relays fail."""
    # A real session between Ada's key and the car, whose exporter keys the ranging (§13).
    directory = MemoryDirectory()
    directory.enroll(ada.endpoint_key.public_key, owner=True)
    phone_tx = PhoneTransaction(
        endpoint_key=ada.endpoint_key,
        vehicle_key=ada.vehicle_key,
        persistent_key=None,
        entropy=story.entropy,
    )
    car_tx = VehicleTransaction(
        vehicle_key=story.store.identity, directory=directory, entropy=story.entropy
    )
    phone_tx.start()
    sessions = [e.session for e in pump(phone_tx, car_tx) if isinstance(e, Established)]
    car_session = next(s for s in sessions if isinstance(s, VehicleSession))
    phone_session = next(s for s in sessions if isinstance(s, PhoneSession))
    key = ranging_key(car_session.exporter)
    sim = SimulatedRanger(phone=(-12.0, 0.4), rng=random.Random(7))  # noqa: S311 - physics noise
    rights = story.owner.car("car").rights
    await story.agent.body.execute(Command.LOCK)
    await story.agent.body.execute(Command.STOP)
    story.agent.clock = _SceneClock(time.time())  # walking takes seconds; the scene keeps its own

    def reading() -> Reading:
        # The setup rides in the session (nonce out, the phone's reply time back, §13); the
        # timed rounds run on the ranging radio, simulated here.
        nonce = story.entropy.random_bytes(16)
        car_session.request_ranging(nonce=nonce, anchors=len(sim.anchors))
        replies: list[int] = []

        def on_events(side: object, events: list[object]) -> None:
            for event in events:
                if isinstance(event, RangingRequested):
                    phone_session.ranging_ready(event.request_id, reply_ns=250_000)
                elif isinstance(event, RangingReadied):
                    replies.append(event.reply_ns)

        pump(car_session, phone_session, on_events=on_events)
        measured = sim.measure(key, nonce=nonce, reply_ns=replies[0])
        return Reading(key_id=ada.endpoint_id.hex(), location=locate(measured), rights=rights)

    unlocked_at = None
    for x in (-12.0, -6.0, -3.5, -2.6, -2.2):  # walking up to the driver's door
        sim.move(x, 0.4)
        for decision in await story.agent.hands_free([reading()]):
            unlocked_at = decision.distance_m
        story.agent.clock.advance(1.0)
    story.step(
        "Ada walks up to her car with the phone in her pocket",
        unlocked_at is not None,
        f"unlocked by itself at {unlocked_at or 0:.2f} m from the driver door",
    )
    sim.move(-0.4, 0.3)  # in the driver's seat
    reason = await story.agent.push_button_start(reading())
    story.step(
        "Ada gets in and presses start",
        reason is None,
        "started: her phone is measured inside the cabin"
        if reason is None
        else f"refused ({reason.value})",
    )
    await story.agent.body.execute(Command.STOP)
    locked_after = None
    for step, x in enumerate((-2.0, -4.0, -6.0, -7.0, -8.0, -9.0, -10.0)):  # walking away
        sim.move(x, 0.4)
        if any(d.action == "lock" for d in await story.agent.hands_free([reading()])):
            locked_after = step
        story.agent.clock.advance(1.0)
    story.step(
        "Ada walks away",
        locked_after is not None,
        f"locked by itself once she was beyond 5 m for 3 s (step {locked_after})",
    )
    sim.move(0.0, 30.0)
    sim.attacker = Relay(extra_path_m=1.0, processing_ns=50.0)
    relayed = await story.agent.hands_free([reading()])
    loc = locate(sim.measure(key))
    seen = f"{loc.closest:.1f} m" if loc else "not measurable"
    story.step(
        "Thieves relay Ada's phone from 30 m to the door",
        not relayed,
        f"refused: the car measures {seen}, a relay can only add distance",
    )
    sim.attacker = EarlyAnswer()
    early = await story.agent.hands_free([reading()])
    story.step(
        "A thief answers the ranging early, guessing",
        not early,
        "refused: wrong answers, the measurement fails closed",
    )


class _SceneClock:
    """Simulated time for the walking scene (the car's clock in the demo)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def run_demo(*, seed: bytes | None = None, console: Console | None = None) -> bool:
    """Run the story; return True when every step behaved as expected."""
    out = console or Console()
    entropy: Entropy = DeterministicEntropy(seed) if seed else SystemEntropy()
    table = Table(title="tether demo")
    for column, justify in (("step", "left"), ("result", "left"), ("ms", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="tether-demo-") as tmp:
        story = _Story(out=out, entropy=entropy, root=Path(tmp), table=table)
        try:
            asyncio.run(_run(story))
        finally:
            story.store.close()
            story.owner.close()
            story.friend.close()
    out.print(table)
    verdict = "every step behaved as expected" if story.ok else "SOME STEPS MISBEHAVED"
    out.print(f"Car is {'locked' if story.body.state()[_DOOR] else 'unlocked'}; {verdict}.")
    return story.ok


_DOOR = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"
_ADA_CONTACTS = (
    "BEGIN:VCARD\nVERSION:4.0\nFN:Charles Babbage\nTEL:+44 20 7946 0000\nEND:VCARD\n"
    "BEGIN:VCARD\nVERSION:3.0\nFN:Mary Somerville\nTEL:+44 20 7946 0001\nEND:VCARD\n"
)
_ADA_PROFILE = '{"profile": {"seat": {"position": 42}, "climate": {"temperature": 20.5}}}'
