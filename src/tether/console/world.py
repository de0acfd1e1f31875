"""The demo world: a server, a virtual car and two phones, driven by named actions.

Everything runs on the production paths in one process: the cloud server (SQLite, embedded
broker), the vehicle agent with its key store, audit log and cloud link over loopback TCP, and two
phone wallets with their vaults. The web console's buttons, `tether demo --script` and the browser
tests all call :meth:`DemoWorld.act`; every action returns a :class:`Step` and is narrated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tether.cloud.server import Server, ServerSettings
from tether.errors import LocalCode, ProtocolError, TetherError
from tether.link.status import Status
from tether.phone import client, cloud, consent, flows
from tether.phone.vault import Vault
from tether.phone.wallet import CarKey, KeyStatus, PhoneWallet
from tether.protocol import codec, credentials, vss
from tether.protocol.commands import Command
from tether.protocol.crypto import SystemEntropy
from tether.protocol.machine import Event
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
from tether.transport import tcp
from tether.transport.base import Transport
from tether.vehicle.agent import AgentEvent, VehicleAgent
from tether.vehicle.body.virtual import VirtualBody
from tether.vehicle.cloud_link import CloudLink
from tether.vehicle.hands_free import Reading
from tether.vehicle.headunit import HeadUnitEvent, ScreenEventKind
from tether.vehicle.keystore import VehicleStore
from tether.vehicle.ranging import locate
from tether.vehicle.simulation import EarlyAnswer, Relay, SimulatedRanger

PASSPHRASE = "demo only"  # noqa: S105 - throwaway wallets in a temporary directory
PHONES = ("owner", "friend")
#: Where a phone can be, in the car's frame (metres; the driver's door is near x = -1).
PLACES = {"far": (-12.0, 0.4), "door": (-2.2, 0.4), "inside": (-0.4, 0.3), "away": (-10.0, 0.4)}
_WALK_UP = (-12.0, -6.0, -3.5, -2.6, -2.2)
DRIVE_S = 25.0  # a driving phone's session lingers at most this long (the car's idle limit: 30 s)
_WALK_AWAY = (-2.0, -4.0, -6.0, -7.0, -8.0, -9.0, -10.0)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One action's outcome: did the car do it, and the sentence to show."""

    action: str
    phone: str
    done: bool
    outcome: str
    ms: float | None = None
    at: float = dataclasses.field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Recording:
    """A transport that remembers what the phone sent (what an eavesdropper would capture)."""

    def __init__(self, inner: Transport, log: list[bytes]) -> None:
        self._inner, self._log, self.peer, self.kind = inner, log, inner.peer, inner.kind

    async def send(self, message: bytes) -> None:
        self._log.append(message)
        await self._inner.send(message)

    async def receive(self, timeout: float | None = None) -> bytes:
        return await self._inner.receive(timeout)

    async def close(self) -> None:
        await self._inner.close()


class _Clock:
    """The car's clock: real time, plus the seconds the demo's walks take."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclasses.dataclass(slots=True)
class _Phone:
    name: str
    wallet: PhoneWallet
    place: str = "far"
    ranger: SimulatedRanger | None = None
    ranging: tuple[VehicleSession, PhoneSession, bytes] | None = None
    prompts: list[dict[str, object]] = dataclasses.field(default_factory=list)
    #: Questions the person has not answered yet, by category (answered by a consent click).
    answers: dict[str, list[asyncio.Future[bool]]] = dataclasses.field(default_factory=dict)


class DemoWorld:
    """Start with :meth:`start`; act with :meth:`act`; look with :meth:`snapshot`."""

    def __init__(self, root: Path, *, port: int = 8080, broker_port: int = 0) -> None:
        self.root = root
        self.port = port
        self.broker_port = broker_port
        self.entropy = SystemEntropy()
        self.clock = _Clock()
        self.steps: list[Step] = []
        self.listeners: list[Callable[[str, Any], None]] = []  # ("step" | "state", payload)
        self.screen: dict[str, Any] = {"status": "empty", "reason": "", "data": {}}
        self.recorded: list[list[bytes]] = []
        self.grant_serial: bytes | None = None
        self.grant_bundle: bytes | None = None
        self.code = ""
        self._lock = asyncio.Lock()
        self.server: Server | None = None
        self.mount: Callable[[Any], None] | None = None
        self._drives: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._names: dict[str, str] = {}  # key id prefix -> whose phone held it

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.server = Server(
            ServerSettings(
                directory=self.root / "server",
                listen=f"http://127.0.0.1:{self.port}",
                embedded_mqtt_port=self.broker_port or _free_port(),
            ),
            mount=self.mount,
        )
        await self.server.start()
        self.store = VehicleStore.create(
            self.root / "car", name="Demo car", entropy=self.entropy, now=time.time()
        )
        self.body = VirtualBody(self.root / "car" / "body.json")
        self.agent = VehicleAgent(self.store, self.body, entropy=self.entropy, clock=self.clock)
        self.listener = await tcp.listen("tcp://127.0.0.1:0", self.agent.handle)
        self.link = CloudLink(
            self.agent, self.server.url, address=self.listener.address, poll_interval=2.0
        )
        await self.link.start()
        self.agent.listeners.append(self._on_agent)
        self.agent.headunit.listeners.append(self._on_screen)
        self.phones = {
            "owner": _Phone(
                "Ada", PhoneWallet.create(self.root / "owner", name="Ada", passphrase=PASSPHRASE)
            ),
            "friend": _Phone(
                "Bea", PhoneWallet.create(self.root / "friend", name="Bea", passphrase=PASSPHRASE)
            ),
        }
        now = datetime.datetime.now(datetime.UTC)
        for role, texts in _VAULTS.items():
            vault = Vault(self.phones[role].wallet)
            for text in (*texts, _agenda(role, now)):
                vault.import_text(text, now=now)
        self.code = self.store.new_pairing_code(now=time.time())

    async def stop(self) -> None:
        for role in list(self._drives):
            await self._end_drive(role)
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        await self.link.stop()
        await self.listener.close()
        await self.agent.stop()  # open sessions end before the store they write to is closed
        await self.body.close()
        self.store.close()
        for phone in self.phones.values():
            phone.wallet.close()
        if self.server is not None:
            await self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url if self.server else ""

    # -- what the console shows ------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        signals = self.body.state()
        phones = {}
        for role, phone in self.phones.items():
            keys = [
                {
                    "car": k.name,
                    "role": k.role,
                    "rights": sorted(k.rights),
                    "status": k.status,
                    "until": k.not_after,
                    "fast": k.persistent_key is not None,
                }
                for k in phone.wallet.cars()
            ]
            phones[role] = {
                "name": phone.name,
                "place": phone.place,
                "keys": keys,
                "prompts": phone.prompts[-3:],
            }
        audit = [
            {
                "seq": e.seq,
                "time": e.time,
                "key": e.key_id[:8],
                "command": e.command,
                "result": e.result,
                "reason": e.reason,
                "detail": e.detail,
            }
            for e in self.store.audit_entries(last=40)
        ]
        # Every key a phone ever held keeps its person's name (a replaced key is still Bea's).
        for phone in self.phones.values():
            for k in phone.wallet.cars():
                self._names[k.endpoint_id.hex()[:8]] = phone.name
        for entry in audit:
            entry["who"] = self._names.get(str(entry["key"]), str(entry["key"]) or "-")
        return {
            "car": {
                "id": self.store.vehicle_id.hex(),
                "name": self.store.name,
                "code": self.code if not self.phones["owner"].wallet.cars() else "",
                "signals": signals,
            },
            "phones": phones,
            "screen": self.screen,
            "audit": audit,
            # Numbered from the first step, whatever the page is sent of them.
            "steps": [
                {**s.to_json(), "n": n}
                for n, s in enumerate(self.steps, start=1)
                if n > len(self.steps) - 60
            ],
            "grant": self.grant_serial.hex() if self.grant_serial else None,
            "server": self.url,
        }

    def _emit(self, kind: str, payload: Any) -> None:
        for listener in list(self.listeners):
            listener(kind, payload)

    def _on_agent(self, event: AgentEvent) -> None:
        self._emit("state", None)

    def _on_screen(self, event: HeadUnitEvent) -> None:
        if event.kind is ScreenEventKind.SHOWN and event.screen is not None:
            data = event.screen.data
            self.screen = {
                "status": "shown",
                "who": "Ada" if self._is_owner(event.key_id) else "Bea",
                "reason": "",
                "data": {
                    "contacts": [c.get("name", "") for c in data.get("contacts", [])][:8],
                    "agenda": [
                        f"{e.get('start', '')[11:16]} {e.get('title', '')}"
                        for e in data.get("calendar", [])
                    ][:5],
                    "seat": data.get("profile", {}).get("seat", {}).get("position"),
                },
                "denied": list(event.screen.denied),
            }
            shown = self.screen["data"]
            self._note(
                Step(
                    action="head unit shows",
                    phone="owner" if self._is_owner(event.key_id) else "friend",
                    done=True,
                    outcome=f"{len(shown['contacts'])} contacts and "
                    f"{len(shown['agenda'])} appointments read from the phone, in memory; "
                    f"seat set to {shown['seat']}",
                )
            )
        elif event.kind is ScreenEventKind.FORGOTTEN:
            self.screen = {"status": "empty", "reason": event.reason, "data": {}}
            self._note(
                Step(
                    action="head unit forgets",
                    phone="owner" if self._is_owner(event.key_id) else "friend",
                    done=True,
                    outcome=f"everything from the phone dropped ({event.reason})",
                )
            )
        self._emit("state", None)

    def _note(self, step: Step) -> None:
        self.steps.append(step)
        self._emit("step", step)

    def _is_owner(self, key_id: str) -> bool:
        return any(k.endpoint_id.hex() == key_id for k in self.phones["owner"].wallet.cars())

    # -- acting ---------------------------------------------------------------------------------
    async def act(self, action: str, phone: str = "owner", **args: Any) -> Step:
        """Run one named action (the console's buttons) and narrate its outcome."""
        handler = _ACTIONS.get(action)
        label = str(args.get("command", action))
        if handler is None or phone not in PHONES:
            step = Step(action=action, phone=phone, done=False, outcome="unknown action")
        else:
            # A consent click answers a question that the running action is waiting on: it must
            # not queue behind that action.
            guard = contextlib.nullcontext() if action == "consent" else self._lock
            async with guard:
                started = time.perf_counter()
                try:
                    step = await handler(self, phone, **args)
                except TypeError:
                    step = Step(
                        action=label,
                        phone=phone,
                        done=False,
                        outcome=f"{action} does not take {sorted(args)}",
                    )
                except ValueError as exc:
                    step = Step(action=label, phone=phone, done=False, outcome=str(exc))
                except ProtocolError as exc:
                    step = Step(
                        action=label,
                        phone=phone,
                        done=False,
                        outcome=f"refused by the car ({exc.code}): {exc.message}",
                    )
                except TetherError as exc:
                    step = Step(
                        action=label,
                        phone=phone,
                        done=False,
                        outcome=f"failed ({exc.code}): {exc.message}",
                    )
                if step.ms is None:
                    step = dataclasses.replace(step, ms=(time.perf_counter() - started) * 1000)
        self.steps.append(step)
        self._emit("step", step)
        self._emit("state", None)
        return step

    def _key(self, phone: str) -> CarKey:
        cars = self.phones[phone].wallet.cars()
        if not cars:
            raise TetherError(
                f"{self.phones[phone].name} has no key to this car yet", code=LocalCode.NO_KEY
            )
        # The newest usable key (a re-share after a revoke brings a new one); else the last.
        active = [c for c in cars if c.status is KeyStatus.ACTIVE]
        return (active or cars)[-1]

    async def _connect(self) -> Transport:
        log: list[bytes] = []
        self.recorded.append(log)
        return _Recording(await tcp.connect(self.listener.address), log)

    def _asker(self, phone: str) -> consent.Asker:
        """The phone's consent prompt on the page: it waits for Allow or Deny (or times out)."""

        async def ask(car: CarKey, category: str, purpose: str) -> bool:
            state = self.phones[phone]
            answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            prompt: dict[str, object] = {
                "category": category,
                "purpose": purpose,
                "car": car.name,
                "live": True,
                # When an unanswered question counts as "no" (the page counts down to it).
                "expires": time.time() + consent.ASK_TIMEOUT,
            }
            state.prompts.append(prompt)
            state.answers.setdefault(category, []).append(answer)
            self._emit("state", None)
            try:
                return await answer
            finally:
                # Unanswered, it stays on the page (refused) so that a click can set a rule.
                waiting = state.answers.get(category, [])
                if answer in waiting:
                    waiting.remove(answer)
                prompt["live"] = False
                self._emit("state", None)

        return ask

    async def pair(self, phone: str) -> Step:
        if phone != "owner":
            return Step(
                action="pair", phone=phone, done=False, outcome="only the owner pairs with the code"
            )
        if self.phones["owner"].wallet.cars():
            # The story played again: the code was spent on the first pairing, the key is held.
            return Step(
                action="pair", phone=phone, done=True, outcome="already paired: Ada holds the key"
            )
        transport = await tcp.connect(self.listener.address)
        try:
            await flows.pair(
                self.phones["owner"].wallet,
                transport,
                code=self.code,
                address=self.listener.address,
                entropy=self.entropy,
                name="Demo car",
            )
        finally:
            await transport.close()
        return Step(
            action="pair",
            phone=phone,
            done=True,
            outcome=f"paired with code {self.code} (SPAKE2+, then long-term keys)",
        )

    async def command(self, phone: str, command: str) -> Step:
        which = Command(command)
        await self._end_drive(phone)  # a new exchange: the phone's previous session ends first
        wallet = self.phones[phone].wallet
        key = self._key(phone)
        transport = await self._connect()
        outcomes: asyncio.Future[list[client.Outcome]] = asyncio.get_running_loop().create_future()
        drive_over = asyncio.Event()

        async def linger(done: list[client.Outcome]) -> None:
            outcomes.set_result(done)
            if which is Command.START and done[0].result.ok:
                # The driver's phone stays connected while they drive: the head unit keeps
                # showing their data until stop, walking away, or the session's idle limit.
                self._drives[phone] = drive_over
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(drive_over.wait(), DRIVE_S)

        async def exchange() -> None:
            try:
                await flows.command(
                    wallet,
                    key,
                    transport,
                    which,
                    entropy=self.entropy,
                    ask=self._asker(phone),
                    linger=linger,
                )
            except BaseException as exc:
                if not outcomes.done():
                    outcomes.set_exception(exc)
            finally:
                self._drives.pop(phone, None)
                await transport.close()

        task = asyncio.create_task(exchange())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        (outcome,) = await outcomes
        kind = "fast" if outcome.fast else "standard"
        result = outcome.result
        if result.ok:
            return Step(action=command, phone=phone, done=True, outcome=f"done ({kind})")
        return Step(
            action=command,
            phone=phone,
            done=False,
            outcome=f"refused ({result.reason}, {kind}): {result.message}",
        )

    async def _end_drive(self, phone: str) -> None:
        """Close the phone's lingering drive session, and let the car notice."""
        drive = self._drives.pop(phone, None)
        if drive is not None:
            drive.set()
            await asyncio.sleep(0.05)

    async def remote(self, phone: str, command: str) -> Step:
        assert self.server is not None
        result = await cloud.command(
            self.phones[phone].wallet,
            self._key(phone),
            self.url,
            Command(command),
            now=time.time(),
            wait=10,
        )
        return Step(
            action=f"remote {command}",
            phone=phone,
            done=result.ok,
            outcome=(
                "done through the cloud; the car signed the result"
                if result.ok
                else f"refused ({result.reason}): {result.message}"
            ),
        )

    async def share(self, phone: str, rights: str = "unlock,lock") -> Step:
        owner, friend = self.phones["owner"].wallet, self.phones["friend"].wallet
        ada = self._key("owner")
        link = await _retry(lambda: cloud.invite(ada, self.url, label="Bea"))
        await cloud.request_key(friend, link, label="Bea", now=time.time())
        now = int(time.time())
        wanted = frozenset(r for r in rights.split(",") if r)
        issued = await cloud.grant_requests(
            owner,
            ada,
            self.url,
            rights=wanted,
            not_before=now - 60,
            expires=now + 2 * 86_400,
            limits=credentials.Limits(),
            now=now,
        )
        accepted = await cloud.fetch_grants(friend, self.url, now=time.time())
        if not issued or not accepted:
            return Step(action="share", phone=phone, done=False, outcome="nothing was granted")
        self.grant_serial = issued[-1].serial
        credential = friend.car(accepted[-1].name).credential
        self.grant_bundle = credential
        return Step(
            action="share",
            phone=phone,
            done=True,
            outcome=f"Ada invited Bea; Bea's phone asked with a new key; Ada's phone "
            f"signed {','.join(sorted(wanted))} for 2 days; Bea fetched it",
        )

    async def revoke(self, phone: str) -> Step:
        if self.grant_serial is None:
            return Step(action="revoke", phone=phone, done=False, outcome="nothing shared yet")
        ada = self._key("owner")
        status = await cloud.revoke(
            self.phones["owner"].wallet,
            ada,
            self.url,
            keys=[],
            serials=[self.grant_serial],
            now=time.time(),
        )
        for _ in range(100):
            states = {s.seq: s for s in await cloud.revocations(ada, self.url)}
            if states.get(status.seq) and states[status.seq].status == Status.APPLIED:
                return Step(
                    action="revoke",
                    phone=phone,
                    done=True,
                    outcome=f"revocation {status.seq} applied; the car signed a receipt",
                )
            await asyncio.sleep(0.1)
        return Step(
            action="revoke",
            phone=phone,
            done=False,
            outcome="queued; the car has not confirmed yet (it will when it hears)",
        )

    async def consent(self, phone: str, category: str, decision: str) -> Step:
        wallet = self.phones[phone].wallet
        key = self._key(phone)
        wallet.set_consent(key.name, category, decision)
        state = self.phones[phone]
        state.prompts = [p for p in state.prompts if p["category"] != category]
        for answer in state.answers.pop(category, []):
            if not answer.done():
                answer.set_result(decision == "allow")
        return Step(
            action="consent",
            phone=phone,
            done=True,
            outcome=f"{category}: {decision} for {key.name}",
        )

    # -- walking: secure ranging against the simulated physics ---------------------------------
    def _reading(self, phone: str) -> Reading:
        state = self.phones[phone]
        key = self._key(phone)
        if state.ranging is None:
            directory = MemoryDirectory()
            directory.enroll(key.endpoint_key.public_key, owner=key.role == "owner")
            phone_tx = PhoneTransaction(
                endpoint_key=key.endpoint_key,
                vehicle_key=key.vehicle_key,
                persistent_key=None,
                entropy=self.entropy,
            )
            car_tx = VehicleTransaction(
                vehicle_key=self.store.identity, directory=directory, entropy=self.entropy
            )
            phone_tx.start()
            sessions = [
                e.session
                for e in pump(phone_tx, car_tx, now=time.time())
                if isinstance(e, Established)
            ]
            car_session = next(s for s in sessions if isinstance(s, VehicleSession))
            phone_session = next(s for s in sessions if isinstance(s, PhoneSession))
            state.ranging = (car_session, phone_session, ranging_key(car_session.exporter))
        if state.ranger is None:
            physics = random.Random(os.urandom(8))  # noqa: S311 - noise of the simulation only
            state.ranger = SimulatedRanger(phone=PLACES[state.place], rng=physics)
        car_session, phone_session, secret = state.ranging
        nonce = self.entropy.random_bytes(16)
        car_session.request_ranging(nonce=nonce, anchors=len(state.ranger.anchors))
        replies: list[int] = []

        def on_events(side: object, events: list[Event]) -> None:
            for event in events:
                if isinstance(event, RangingRequested):
                    phone_session.ranging_ready(event.request_id, reply_ns=250_000)
                elif isinstance(event, RangingReadied):
                    replies.append(event.reply_ns)

        pump(car_session, phone_session, now=time.time(), on_events=on_events)
        measured = state.ranger.measure(secret, nonce=nonce, reply_ns=replies[0])
        # A place only: whether this key may open or start the car is the car's own store's say.
        return Reading(key_id=key.endpoint_id.hex(), location=locate(measured))

    async def walk(self, phone: str, to: str) -> Step:
        state = self.phones[phone]
        self._key(phone)
        if to not in PLACES:
            return Step(action="walk", phone=phone, done=False, outcome=f"nowhere called {to}")
        self._reading(phone)  # sets up the ranger
        assert state.ranger is not None
        state.ranger.attacker = None
        who = state.name
        if to == "door":
            unlocked = None
            for x in _WALK_UP:
                state.ranger.move(x, 0.4)
                for decision in await self.agent.hands_free([self._reading(phone)]):
                    unlocked = decision.distance_m
                self.clock.offset += 1.0
            state.place = "door"
            if unlocked is not None:
                return Step(
                    action="walk to the car",
                    phone=phone,
                    done=True,
                    outcome=f"{who} at the door: unlocked by itself at {unlocked:.2f} m",
                )
            locked = self.body.state()[vss.DRIVER_DOOR_LOCKED]
            return Step(
                action="walk to the car",
                phone=phone,
                done=not locked,
                outcome=f"{who} at the door: "
                + ("already open" if not locked else "the car stays locked (no key)"),
            )
        if to == "inside":
            state.ranger.move(*PLACES["inside"])
            state.place = "inside"
            reason = await self.agent.push_button_start(self._reading(phone))
            if reason is None:
                return Step(
                    action="get in and press start",
                    phone=phone,
                    done=True,
                    outcome=f"started: {who}'s phone measured inside the cabin",
                )
            return Step(
                action="get in and press start",
                phone=phone,
                done=False,
                outcome=f"refused ({reason.value})",
            )
        await self._end_drive(phone)
        if self.body.state().get(vss.POWER) == "ON":
            await self.body.execute(Command.STOP)
        locked_at = None
        for x in _WALK_AWAY:
            state.ranger.move(x, 0.4)
            if any(d.action == "lock" for d in await self.agent.hands_free([self._reading(phone)])):
                locked_at = x
            self.clock.offset += 1.0
        state.place = "away"
        return Step(
            action="walk away",
            phone=phone,
            done=locked_at is not None,
            outcome=f"{who} walks off: "
            + (
                f"locked by itself at {abs(locked_at):.0f} m, 3 s beyond 5 m"
                if locked_at is not None
                else "nothing to lock"
            ),
        )

    # -- the attacker ---------------------------------------------------------------------------
    async def attack(self, phone: str, kind: str) -> Step:
        if kind == "replay":
            return await self._replay()
        if kind == "relay":
            return await self._relay()
        if kind == "tamper":
            return await self._tamper()
        return Step(action="attack", phone=phone, done=False, outcome=f"no attack {kind}")

    async def _replay(self) -> Step:
        if not self.recorded:
            return Step(
                action="replay a recorded unlock",
                phone="attacker",
                done=False,
                outcome="nothing recorded yet: unlock first",
            )
        transport = await tcp.connect(self.listener.address)
        refused = "accepted"
        try:
            for message in self.recorded[0]:
                await transport.send(message)
                reply = codec.decode(await transport.receive(2))
                if isinstance(reply, Error):
                    refused = f"refused ({reply.code})"
                    break
        except TetherError as exc:
            refused = f"refused ({exc.code})"
        finally:
            await transport.close()
        return Step(
            action="replay a recorded unlock",
            phone="attacker",
            done=refused == "accepted",
            outcome=refused,
        )

    async def _relay(self) -> Step:
        owner = self.phones["owner"]
        self._key("owner")
        self._reading("owner")
        assert owner.ranger is not None
        before = owner.ranger.phone
        owner.ranger.move(0.0, 30.0)
        owner.ranger.attacker = Relay(extra_path_m=1.0, processing_ns=50.0)
        try:
            decisions = await self.agent.hands_free([self._reading("owner")])
            owner.ranger.attacker = EarlyAnswer()
            early = await self.agent.hands_free([self._reading("owner")])
        finally:
            owner.ranger.attacker = None
            owner.ranger.move(*before)
        if decisions or early:
            return Step(
                action="relay from 30 m", phone="attacker", done=True, outcome="THE CAR OPENED"
            )
        return Step(
            action="relay from 30 m",
            phone="attacker",
            done=False,
            outcome="refused: a relay only adds distance; early answers fail the check",
        )

    async def _tamper(self) -> Step:
        if self.grant_bundle is None:
            return Step(
                action="tamper a grant",
                phone="attacker",
                done=False,
                outcome="no grant to tamper with yet: share first",
            )
        chain = credentials.decode_chain(self.grant_bundle)
        leaf = bytearray(chain[-1])
        leaf[-5] ^= 0x01  # one bit of the owner's signature
        mallory = self.entropy.new_private_key()
        forged = CarKey(
            name="forged",
            vehicle_key=self._key("owner").vehicle_key,
            vehicle_name="Demo car",
            address=self.listener.address,
            endpoint_key=mallory,
            role="friend",
            persistent_key=None,
            ratchet=0,
            added_at=time.time(),
            rights=frozenset({"unlock", "drive"}),
            credential=credentials.encode_chain([*chain[:-1], bytes(leaf)]),
            enrolled=False,
        )
        transport = await tcp.connect(self.listener.address)
        try:
            await client.run_commands(
                transport,
                forged,
                [Command.UNLOCK],
                entropy=self.entropy,
                fast=False,
                persist=lambda k: None,
            )
        except ProtocolError as exc:
            return Step(
                action="tamper a grant",
                phone="attacker",
                done=False,
                outcome=f"refused by the car ({exc.code})",
            )
        finally:
            await transport.close()
        return Step(
            action="tamper a grant",
            phone="attacker",
            done=True,
            outcome="THE CAR ACCEPTED A FORGED GRANT",
        )


_Handler = Callable[..., Awaitable[Step]]
_ACTIONS: dict[str, _Handler] = {
    "pair": DemoWorld.pair,
    "command": DemoWorld.command,
    "remote": DemoWorld.remote,
    "share": DemoWorld.share,
    "revoke": DemoWorld.revoke,
    "consent": DemoWorld.consent,
    "walk": DemoWorld.walk,
    "attack": DemoWorld.attack,
}


async def _retry(make: Callable[[], Awaitable[str]], attempts: int = 50) -> str:
    """The car registers its new owner with the server a moment after pairing."""
    for _ in range(attempts - 1):
        try:
            return await make()
        except TetherError:
            await asyncio.sleep(0.1)
    return await make()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _agenda(role: str, now: datetime.datetime) -> str:
    """Two appointments later today, as iCalendar (each phone its own)."""
    events = {
        "owner": ("Tea with Mary Somerville", "Analytical Engine review"),
        "friend": ("COBOL standards meeting", "Debugging session"),
    }[role]
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//tether demo//EN"]
    for hours, summary in zip((1, 3), events, strict=True):
        start = (now + datetime.timedelta(hours=hours)).strftime("%Y%m%dT%H0000Z")
        end = (now + datetime.timedelta(hours=hours + 1)).strftime("%Y%m%dT%H0000Z")
        lines += [
            "BEGIN:VEVENT",
            f"UID:{role}-{hours}@demo",
            f"DTSTAMP:{start}",
            f"DTSTART:{start}",
            f"DTEND:{end}",
            f"SUMMARY:{summary}",
            "END:VEVENT",
        ]
    return "\r\n".join([*lines, "END:VCALENDAR", ""])


_VAULTS = {
    "owner": [
        "BEGIN:VCARD\nVERSION:4.0\nFN:Charles Babbage\nTEL:+44 20 7946 0000\nEND:VCARD\n"
        "BEGIN:VCARD\nVERSION:3.0\nFN:Mary Somerville\nTEL:+44 20 7946 0001\nEND:VCARD\n",
        '{"profile": {"seat": {"position": 42}, "climate": {"temperature": 20.5}}}',
    ],
    "friend": [
        "BEGIN:VCARD\nVERSION:4.0\nFN:Grace Hopper\nTEL:+1 202 555 0100\nEND:VCARD\n",
        '{"profile": {"seat": {"position": 17}, "climate": {"temperature": 22.0}}}',
    ],
}
