"""The vehicle agent: serves phones over any transport with the protocol core and durable state.

One connection is one exchange: owner pairing, or a transaction followed by a session of commands.
For every step the agent persists the machine's events (enrolment, new persistent key, failure
count) *before* it sends the reply, so a ``kill -9`` never loses anything a phone was told.
Every refusal is a typed error with an audit entry; a connection that is slow, silent or sends
garbage is dropped after a deadline and never holds more than one frame of memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import enum
import logging
import time
from collections.abc import Callable
from typing import Any

from tether.errors import (
    BadFrame,
    GrantError,
    LocalCode,
    PairingError,
    PeerError,
    ProtocolError,
    StorageError,
    TransportClosed,
    TransportError,
    UsageError,
    WireCode,
)
from tether.protocol import codec, credentials, remote, vss
from tether.protocol.commands import Command, DenialReason, explain
from tether.protocol.crypto import Entropy, SystemEntropy
from tether.protocol.machine import Event, StateMachine, refusal
from tether.protocol.messages import (
    NONCE_SIZE,
    FastProof,
    PairRequest,
    StandardHello,
    VehicleHello,
)
from tether.protocol.pairing import PhoneEnrolled, VehiclePairing
from tether.protocol.ranging import NONCE_SIZE as RANGING_NONCE_SIZE
from tether.protocol.ranging import ranging_key
from tether.protocol.session import (
    CommandReceived,
    CommandRefused,
    DataItem,
    DataReceived,
    RangingReadied,
    RevocationReceived,
    SessionClosed,
    SessionState,
    VehicleSession,
)
from tether.protocol.transaction import (
    CredentialAccepted,
    Established,
    FastFallback,
    PersistentKeyChanged,
    VehicleTransaction,
)
from tether.protocol.vss import LATITUDE, LONGITUDE, SPEED, SPEED_LIMIT
from tether.transport.base import LinkKind, Transport
from tether.transport.exchange import flush, run_exchange
from tether.vehicle.authority import Authority, Entry, Request
from tether.vehicle.body.base import PERSONAL, Body, Signals
from tether.vehicle.hands_free import Decision, HandsFree, Reading
from tether.vehicle.headunit import HeadUnit, profile_signals
from tether.vehicle.keystore import VehicleStore
from tether.vehicle.ranging import CAR_ANCHORS, Rangers, Zone, locate

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 5.0  # the whole unauthenticated phase: nothing a peer sends extends it
SESSION_IDLE_TIMEOUT = 30.0
MAX_CONNECTIONS = 256
SUMMARY_INTERVAL = 60.0  # refusals of unauthenticated peers: one audit entry per kind and interval
WATCH_INTERVAL = 0.25  # how often the agent looks for revocations written by another process
_DRIVER_DOOR = vss.DRIVER_DOOR_LOCKED
RANGING_INTERVAL = 1.0  # how often the car measures a phone on a near link
DATA_TIMEOUT = 5.0  # how long a start waits for the driver's phone to answer the head unit
HEADUNIT_PURPOSE = "Show your contacts and agenda on the car's screen and set your seat"


def _headunit_items(now: float) -> list[DataItem]:
    """What the screen asks for at a start: the profile, contacts, and today's agenda.

    "Today" is the car's local day, from its midnight to the next, with the car's UTC offset, so
    the phone selects the driver's day whatever offsets its events carry.
    """
    return [
        DataItem(category="profile"),
        DataItem(category="contacts", query={"prefix": "", "limit": 50}),
        DataItem(category="calendar", query=today(now)),
    ]


def today(now: float) -> dict[str, str]:
    """A calendar query for the car's local day: its midnight to the next, with its UTC offset."""
    local = datetime.datetime.fromtimestamp(now).astimezone()
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    next_midnight = midnight + datetime.timedelta(days=1)
    return {"from": midnight.isoformat(), "to": next_midnight.isoformat()}


def _key_id(hex_id: str) -> bytes:
    """A reading's key id as bytes; anything that is not one names no key (b"")."""
    try:
        return bytes.fromhex(hex_id)
    except ValueError:
        return b""


def _command_name(text: str) -> str:
    """A command's name as the audit log keeps it: one of ours, or "unknown" (never the peer's)."""
    return text if text in Command._value2member_map_ else "unknown"


@dataclasses.dataclass(slots=True)
class _PendingStart:
    """A start that waits for the driver's data (profile first, then the engine)."""

    command: CommandReceived
    deadline: float
    link: LinkKind


@dataclasses.dataclass(slots=True)
class _Ranging:
    """One near session's ranging: when to ask next, and the request it waits on."""

    due: float = 0.0
    request_id: int | None = None
    nonce: bytes = b""

    def ask(self, session: VehicleSession, entropy: Entropy, anchors: int) -> None:
        """Set up a measurement in the session (§13); a fresh nonce each time."""
        self.nonce = entropy.random_bytes(RANGING_NONCE_SIZE)
        self.request_id = session.request_ranging(nonce=self.nonce, anchors=anchors)
        self.due = time.monotonic() + RANGING_INTERVAL

    def answered(self, request_id: int) -> bytes | None:
        """The nonce of the measurement the phone is now ready for (None: not ours)."""
        if request_id != self.request_id:
            return None
        self.request_id = None
        return self.nonce


@dataclasses.dataclass(slots=True)
class _Open:
    """What an open session waits for: starts that wait for data, and its ranging."""

    link: LinkKind
    ranging: _Ranging | None
    pending: dict[int, _PendingStart] = dataclasses.field(default_factory=dict)
    late: set[int] = dataclasses.field(default_factory=set)  # starts that went ahead unanswered
    #: The head unit's own questions (`vehicle headunit search ...`), by request id.
    asked: dict[int, asyncio.Future[DataReceived]] = dataclasses.field(default_factory=dict)
    opened: float = dataclasses.field(default_factory=time.monotonic)

    def next_due(self, heard: float, agent: VehicleAgent) -> float:
        """Seconds until something is due: the idle limit, a waiting start, the next ranging."""
        deadlines = [heard + agent.idle_timeout, *(p.deadline for p in self.pending.values())]
        if self.ranging is not None:
            deadlines.append(self.ranging.due)
        return min(deadlines) - time.monotonic()


@dataclasses.dataclass(eq=False, slots=True)
class _Connection:
    """One connection the agent serves: its task, and whose it is once authenticated."""

    task: asyncio.Task[object] | None
    transport: Transport
    key_id: bytes | None = None
    session: VehicleSession | None = None
    stop_reason: str = ""  # set when the agent ends it (evicted, key revoked)
    #: Records must leave in the order they were sealed, whichever task sends them.
    send_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    open: _Open | None = None  # what the open session waits for


@dataclasses.dataclass(slots=True)
class _Summary:
    """Refusals of unauthenticated peers of one kind, counted since the last audit entry."""

    since: float
    count: int = 0


class AgentEventKind(enum.StrEnum):
    """What happened, for an :class:`AgentEvent`'s observers."""

    PAIRED = "paired"
    ENROLLED = "enrolled"
    SESSION = "session"
    COMMAND = "command"
    REFUSED = "refused"
    ERROR = "error"
    REVOKED = "revoked"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentEvent:
    """Something observers (console, head unit, tests) may want to see; no secrets inside."""

    kind: AgentEventKind
    key_id: str = ""
    command: str = ""
    ok: bool = True
    reason: str = ""
    fast: bool = False
    state: Signals = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RevocationOutcome:
    """What the car did with one revocation (told to the phone, or signed into a receipt)."""

    ok: bool
    seq: int
    reason: str = ""
    message: str = ""
    keys: frozenset[bytes] = frozenset()


class VehicleAgent:
    """Serves phones for one car."""

    def __init__(
        self,
        store: VehicleStore,
        body: Body,
        *,
        entropy: Entropy | None = None,
        clock: Callable[[], float] = time.time,
        max_connections: int = MAX_CONNECTIONS,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        idle_timeout: float = SESSION_IDLE_TIMEOUT,
        ranging_for_app: bool = False,
        rangers: Rangers | None = None,
    ) -> None:
        self.store = store
        self.body = body
        self.entropy = entropy or SystemEntropy()
        self.clock = clock
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        #: Every connection being served; unauthenticated ones oldest first (evicted first).
        self._connections: set[_Connection] = set()
        self._unauthenticated: dict[_Connection, None] = {}
        #: Counts by code from the closed set (WireCode and the transports' own): bounded.
        self.errors: collections.Counter[str] = collections.Counter()
        self._summaries: dict[tuple[str, str], _Summary] = {}
        self._limited_drive: tuple[bytes, int] | None = None  # (key, km/h) of a limited start
        self._breach = False
        self.listeners: list[Callable[[AgentEvent], None]] = []
        self.active_connections = 0
        self.headunit = HeadUnit()
        self._hands_free = HandsFree()
        #: Every decision to change the car: the key from the car's own store, never the caller.
        self.authority = Authority(
            store,
            body,
            now=self.now,
            ranging_for_app=ranging_for_app or store.setting("ranging_for_app") == "on",
        )
        self.data_timeout = DATA_TIMEOUT
        self._profile_of: bytes | None = None  # whose profile set the seat and climate now
        #: The car's ranging radios; without them hands-free is off and fails closed.
        self.rangers = rangers
        #: The latest ranging of each phone that had a near session (None: not measurable, or
        #: its link is gone): what passive entry, walk-away and the start button decide on.
        self._readings: dict[str, Reading] = {}

    @property
    def ranging_for_app(self) -> bool:
        """The owner's switch: app commands over a near link need the phone measured at the car."""
        return self.authority.ranging_for_app

    @ranging_for_app.setter
    def ranging_for_app(self, on: bool) -> None:
        self.authority.ranging_for_app = on

    # -- hands-free (ranging) -------------------------------------------------------------------
    async def hands_free(self, readings: list[Reading]) -> list[Decision]:
        """Feed every keyed phone's latest ranging; the authority carries out what is decided.

        A reading names a key and a place; only keys the car's store backs (known, unrevoked, in
        their window) count at all, and each decision is checked again before it runs.
        """
        backed = []
        for reading in readings:
            key_id = _key_id(reading.key_id)
            lock = Request(key_id=key_id, command=Command.LOCK, entry=Entry.PASSIVE_LOCK)
            if key_id and self.authority.check(lock) is None:
                self.authority.saw(reading)
                backed.append(reading)

        def may_unlock(reading: Reading) -> bool:
            unlock = Request(
                key_id=_key_id(reading.key_id),
                command=Command.UNLOCK,
                entry=Entry.PASSIVE_UNLOCK,
                reading=reading,
            )
            return self.authority.check(unlock) is None

        locked = bool(self.body.state().get(_DRIVER_DOOR, True))
        done = []
        for d in self._hands_free.observe(self.now(), backed, locked=locked, may_unlock=may_unlock):
            reading = next(r for r in backed if r.key_id == d.key_id)
            distance = f"{d.distance_m:.2f} m" if d.distance_m is not None else "not measurable"
            unlock = d.action == "unlock"
            request = Request(
                key_id=_key_id(d.key_id),
                command=Command.UNLOCK if unlock else Command.LOCK,
                entry=Entry.PASSIVE_UNLOCK if unlock else Entry.PASSIVE_LOCK,
                reading=reading,
                detail=f"{distance}, {d.where}",
            )
            if await self._act(request) is None:
                done.append(d)
                if not unlock:
                    self.headunit.forget_all("phone out of range")
        return done

    async def push_button_start(self, reading: Reading) -> DenialReason | None:
        """The start button: only a key with ``drive`` whose phone is measured in the cabin."""
        where = (
            f"{reading.location.zone.value}, {reading.location.closest:.2f} m from nearest anchor"
            if reading.location is not None
            else "not measurable"
        )
        request = Request(
            key_id=_key_id(reading.key_id),
            command=Command.START,
            entry=Entry.PUSH_BUTTON,
            reading=reading,
            detail=where,
        )
        return await self._act(request)

    def now(self) -> float:
        """The car's time: its clock, but never before the latest time it has recorded."""
        return max(self.clock(), self.store.time_floor())

    def _emit(self, event: AgentEvent) -> None:
        for listener in self.listeners:
            listener(event)

    async def handle(self, transport: Transport) -> None:
        """Serve one connection to its end; never raises.

        Admission is fair under a flood: when every slot is taken, the oldest connection that has
        not authenticated yet makes room (each holds a slot for at most ``handshake_timeout``
        anyway), so a phone that connects during a flood is served at once, whoever else keeps
        connecting from the same address. Authenticated sessions are never evicted.
        """
        task = asyncio.current_task()
        conn = _Connection(task, transport)
        if len(self._connections) >= self.max_connections:
            victim = next(iter(self._unauthenticated), None)
            if victim is None:
                self.errors[WireCode.TOO_MANY_CONNECTIONS] += 1
                await transport.close()
                return
            self._end(victim, "evicted")
            self.errors["evicted"] += 1
        self._connections.add(conn)
        self._unauthenticated[conn] = None
        self.active_connections = len(self._connections)
        try:
            await self._serve(conn)
        except asyncio.CancelledError:
            if not conn.stop_reason:
                raise  # the agent itself is stopping
            if task is not None:
                task.uncancel()
        except TransportClosed:
            pass
        except BadFrame as exc:
            # A frame the car cannot honour (a length prefix of the wrong width or byte order
            # reads as a huge length; a WebSocket text message): the peer hears why, the refusal
            # is audited (summarised, as any stranger's), and nothing after it is read.
            with contextlib.suppress(TransportError):
                await self._refuse(
                    transport,
                    ProtocolError(exc.message, code=WireCode.MALFORMED),
                    command="connect",
                )
        except TransportError as exc:
            self.errors[exc.code] += 1
            log.info("dropped %s: %s", transport.peer, exc.message)
        except StorageError:
            log.exception("storage failed while serving %s", transport.peer)
            self.errors["storage"] += 1
        finally:
            self._forget(conn)
            if conn.session is not None and conn.stop_reason in ("revoked", "ignition off"):
                await self._close_revoked(conn)
            await transport.close()

    def _forget(self, conn: _Connection) -> None:
        self._connections.discard(conn)
        self._unauthenticated.pop(conn, None)
        self.active_connections = len(self._connections)

    def _end(self, conn: _Connection, reason: str) -> None:
        """Stop serving ``conn`` now (its task ends; its slot is free at once)."""
        if conn.stop_reason:
            return
        conn.stop_reason = reason
        self._forget(conn)
        if conn.task is not None:
            conn.task.cancel()

    def end_drives(self, *, spare: VehicleSession | None = None) -> int:
        """Ignition off: every session held open while driving ends (``spare``, the one that
        switched the car off, is answered and closed by its phone); how many ended."""
        ended = 0
        for conn in list(self._connections):
            if conn.session is not None and conn.session is not spare and conn.open is not None:
                self._end(conn, "ignition off")
                ended += 1
        return ended

    async def _close_revoked(self, conn: _Connection) -> None:
        """Tell a phone that its session is over: its key was revoked, or the ignition went off."""
        session = conn.session
        assert session is not None
        with contextlib.suppress(TransportError, ProtocolError):
            if session.state is SessionState.OPEN:
                session.close()
            await asyncio.wait_for(self._flush_session(conn, session), 1.0)

    def end_revoked_sessions(self, *, spare: bytes | None = None) -> int:
        """End at once every open session of a key that is now revoked; how many ended.

        Called after every revocation, whatever path it came by (a session, the cloud, or
        ``tether vehicle revoke`` in another process, which :meth:`watch` notices). Sessions of
        ``spare`` are left to their caller (a phone that revoked itself is answered first).
        """
        ended = 0
        for conn in list(self._connections):
            key_id = conn.key_id
            if key_id is not None and key_id != spare and self._key_closed(key_id):
                self.headunit.forget(key_id.hex(), "key revoked")
                self._easy_exit(key_id)
                self._end(conn, "revoked")
                ended += 1
        for shown in self.headunit.screens():
            if self._key_closed(bytes.fromhex(shown)):
                self.headunit.forget(shown, "key revoked")
        return ended

    def _key_closed(self, key_id: bytes) -> bool:
        endpoint = self.store.endpoint(key_id)
        return endpoint is None or endpoint.revoked or self.store.is_revoked(key_id)

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Background duty while the agent runs: notice revocations written by another process
        (an admin's ``tether vehicle revoke``), watch a speed-limited drive, flush summaries."""
        while True:
            await asyncio.sleep(interval)
            try:
                if self.store.refresh():
                    self.end_revoked_sessions()
                self._check_speed()
                self.flush_summaries()
                if self.rangers is not None and self._readings:
                    await self.hands_free(list(self._readings.values()))  # walk-away needs time
            except StorageError:
                log.exception("the store could not be read")

    async def stop(self) -> None:
        """End every connection, wait (2 s at most) until their handlers have finished with the
        store, and write what is still counted: after this the caller may close the store."""
        ending = [c.task for c in self._connections if c.task is not None]
        for conn in list(self._connections):
            self._end(conn, "stopping")
        if ending:
            await asyncio.wait(ending, timeout=2.0)
        self.flush_summaries(force=True)

    async def _serve(self, conn: _Connection) -> None:
        transport = conn.transport
        deadline = time.monotonic() + self.handshake_timeout
        # Every connection opens with the car's greeting (§4): its nonce freshens a fast proof
        # sent at once, so a fast unlock takes one round trip.
        greeting = self.entropy.random_bytes(NONCE_SIZE)
        await transport.send(codec.encode(VehicleHello(nonce=greeting)))
        first = await transport.receive(self.handshake_timeout)
        self.store.refresh()  # pick up revocations or codes written by an admin command
        try:
            kind = codec.peek_type(first)
        except ProtocolError as exc:
            await self._refuse(transport, exc, command="connect")
            return
        if kind is PairRequest:
            await self._pair(transport, first, deadline, greeting)
        elif kind in (StandardHello, FastProof):
            await self._transact(conn, first, deadline, greeting)
        else:
            await self._refuse(
                transport,
                ProtocolError(
                    f"a connection cannot start with {kind.__name__}",
                    code=WireCode.UNEXPECTED_MESSAGE,
                ),
                command="connect",
            )

    async def _exchange(
        self,
        machine: StateMachine[Any],
        transport: Transport,
        deadline: float,
        persist: Callable[[list[Event]], None],
        first: bytes,
    ) -> None:
        """Run one handshake (pairing or a transaction) to its end, by the connection's deadline."""
        await run_exchange(
            machine,
            transport,
            receive=lambda: self._receive_by(transport, deadline),
            clock=self.now,
            persist=persist,
            first=first,
        )

    @staticmethod
    async def _receive_by(transport: Transport, deadline: float) -> bytes:
        """The next handshake message, by a deadline that nothing the peer sends moves."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransportError("the handshake took too long", code=LocalCode.TIMEOUT)
        return await transport.receive(left)

    def _record(
        self, exc: ProtocolError, *, command: str, key_id: bytes | None, result: str = "error"
    ) -> None:
        """Count, audit and announce one refusal (every refusal goes through here).

        What the peer said is never stored: its code is read into the closed set and its
        sentence dropped (our own sentences are kept). Refusals of peers that have not
        authenticated are summarised, one entry per kind and interval, so a flood cannot fill
        the disk.
        """
        code = WireCode.parse(exc.code).value
        detail = "" if isinstance(exc, PeerError) else exc.message
        self.errors[code] += 1
        if key_id is None:
            self._summarise(command, code, result, detail)
        else:
            self.store.audit(
                now=self.now(),
                key_id=key_id,
                command=command,
                result=result,
                reason=code,
                detail=detail,
            )
        self._emit(
            AgentEvent(
                kind=AgentEventKind.ERROR if result == "error" else AgentEventKind.REFUSED,
                key_id=key_id.hex() if key_id else "",
                command=command,
                ok=False,
                reason=code,
            )
        )

    def _summarise(self, command: str, code: str, result: str, detail: str) -> None:
        """The first refusal of a kind is written at once, the rest as a count per interval."""
        now = self.now()
        summary = self._summaries.get((command, code))
        if summary is None:
            self._summaries[(command, code)] = _Summary(since=now)
            self.store.audit(
                now=now, key_id=None, command=command, result=result, reason=code, detail=detail
            )
            return
        summary.count += 1
        self.flush_summaries()

    def flush_summaries(self, *, force: bool = False) -> None:
        """Write one entry for each kind of refusal counted over a whole interval."""
        now = self.now()
        for (command, code), summary in list(self._summaries.items()):
            if not force and now - summary.since < SUMMARY_INTERVAL:
                continue
            if summary.count:
                self.store.audit(
                    now=now,
                    key_id=None,
                    command=command,
                    result="error",
                    reason=code,
                    detail=f"{summary.count} more in {now - summary.since:.0f} s (summarised)",
                )
            del self._summaries[(command, code)]

    async def _refuse(self, transport: Transport, exc: ProtocolError, *, command: str) -> None:
        self._record(exc, command=command, key_id=None)
        await transport.send(refusal(exc))

    # -- owner pairing --------------------------------------------------------------------------
    async def _pair(
        self, transport: Transport, first: bytes, deadline: float, greeting: bytes
    ) -> None:
        machine = VehiclePairing(
            greeting=greeting,
            code=self.store.pairing_code(),
            vehicle_key=self.store.identity,
            name=self.store.name,
            entropy=self.entropy,
            reserve_guess=lambda: self.store.reserve_pairing_guess(now=self.now()),
        )

        def persist(events: list[Event]) -> None:
            for event in events:
                if isinstance(event, PhoneEnrolled):
                    self.store.enroll_owner(event.public_key, name=event.name, now=self.now())
                    self._emit(
                        AgentEvent(kind=AgentEventKind.PAIRED, key_id=event.public_key.key_id.hex())
                    )

        try:
            await self._exchange(machine, transport, deadline, persist, first)
        except PairingError as exc:
            if exc.code is not WireCode.WRONG_CODE:
                self._record(exc, command="pair", key_id=None, result="denied")
                return
            # The guess was spent durably before it was tested; each is audited (they are
            # bounded by the code's guess budget, so they cannot fill the disk).
            self.errors[exc.code] += 1
            self.store.audit(
                now=self.now(),
                key_id=None,
                command="pair",
                result="denied",
                reason=exc.code,
                detail=exc.message,
            )
            self._emit(
                AgentEvent(kind=AgentEventKind.REFUSED, command="pair", ok=False, reason=exc.code)
            )
        except ProtocolError as exc:
            self._record(exc, command="pair", key_id=None)

    # -- transactions and sessions ----------------------------------------------------------------
    async def _transact(
        self, conn: _Connection, first: bytes, deadline: float, greeting: bytes
    ) -> None:
        transport = conn.transport
        machine = VehicleTransaction(
            greeting=greeting,
            vehicle_key=self.store.identity,
            directory=self.store,
            entropy=self.entropy,
        )
        sessions: list[VehicleSession] = []

        def persist(events: list[Event]) -> None:
            for event in events:
                if isinstance(event, CredentialAccepted):
                    # Durable before the phone hears Finished.
                    endpoint = self.store.enroll_grant(event.chain, now=self.now())
                    self._emit(
                        AgentEvent(kind=AgentEventKind.ENROLLED, key_id=endpoint.endpoint_id.hex())
                    )
                elif isinstance(event, PersistentKeyChanged):
                    self.store.set_persistent_key(event.endpoint_id, event.key, now=self.now())
                elif isinstance(event, Established):
                    assert isinstance(event.session, VehicleSession)
                    sessions.append(event.session)
                elif isinstance(event, FastFallback):
                    log.debug("fast transaction fell back to standard")

        try:
            await self._exchange(machine, transport, deadline, persist, first)
        except ProtocolError as exc:
            self._record(exc, command="transaction", key_id=None)
            return
        (session,) = sessions
        # Authenticated: the connection is this key's now (never evicted; ended if revoked).
        conn.key_id, conn.session = session.endpoint_id, session
        self._unauthenticated.pop(conn, None)
        if self._key_closed(session.endpoint_id):
            self._end(conn, "revoked")
            return
        self._emit(
            AgentEvent(
                kind=AgentEventKind.SESSION, key_id=session.endpoint_id.hex(), fast=session.fast
            )
        )
        await self._session(conn, session)

    async def _flush_session(self, conn: _Connection, session: VehicleSession) -> None:
        """Send what the session sealed, in order, even when two tasks send at once."""
        async with conn.send_lock:
            await flush(conn.transport, session.data_to_send())

    async def _session(self, conn: _Connection, session: VehicleSession) -> None:
        transport = conn.transport
        key_id = session.endpoint_id
        # On a near link with ranging radios the car measures the phone itself, every second.
        ranging = _Ranging() if self.rangers is not None and transport.kind.near else None
        state = conn.open = _Open(link=transport.kind, ranging=ranging)
        heard = time.monotonic()
        try:
            while session.state is SessionState.OPEN:
                try:
                    data = await transport.receive(max(0.0, state.next_due(heard, self)))
                except TransportClosed:
                    try:
                        session.connection_lost()
                    except ProtocolError as exc:
                        self.errors[exc.code] += 1
                    return
                except TransportError as exc:
                    if (
                        exc.code is not LocalCode.TIMEOUT
                        or time.monotonic() >= heard + self.idle_timeout
                    ):
                        raise
                    await self._on_quiet(session, state)
                    await self._flush_session(conn, session)
                    continue
                heard = time.monotonic()
                try:
                    events = session.receive(data, now=self.now())
                except ProtocolError as exc:
                    self._record(exc, command="session", key_id=key_id)
                    return
                for event in events:
                    if isinstance(event, SessionClosed):
                        return
                    await self._on_event(session, state, event)
                await self._flush_session(conn, session)
        finally:
            conn.open = None
            for asked in state.asked.values():
                asked.cancel()
            # The car forgets the driver's data when the session ends, whatever the reason.
            self.headunit.forget(key_id.hex(), "session ended")
            self._easy_exit(key_id)
            if ranging is not None:  # its link is gone: the phone counts as away now
                self._readings[key_id.hex()] = Reading(key_id=key_id.hex(), location=None)
            limited = self._limited_drive
            if limited is not None and limited[0] == key_id and self._key_closed(key_id):
                self._end_limiter("key revoked")

    async def _on_quiet(self, session: VehicleSession, state: _Open) -> None:
        """Nothing arrived in time: start what waited too long for data, or range the phone."""
        now = time.monotonic()
        for request_id, overdue in list(state.pending.items()):
            if now >= overdue.deadline:  # the phone did not answer: start anyway
                del state.pending[request_id]
                if await self._finish_start(session, overdue, None) is None:
                    state.late.add(request_id)  # a later answer may still reach the screen
        if state.ranging is not None and now >= state.ranging.due:
            state.ranging.ask(session, self.entropy, len(CAR_ANCHORS))

    async def _on_event(self, session: VehicleSession, state: _Open, event: object) -> None:
        """One event of an open session."""
        key_id = session.endpoint_id
        if isinstance(event, CommandReceived):
            await self._command(session, event, state.pending, link=state.link)
        elif isinstance(event, DataReceived) and event.request_id in state.asked:
            asked = state.asked.pop(event.request_id)
            if not asked.done():
                asked.set_result(event)
        elif isinstance(event, DataReceived):
            waiting = state.pending.pop(event.request_id, None)
            if waiting is not None:
                await self._finish_start(session, waiting, event)
            elif event.request_id in state.late:
                # The person answered after the car had started: the screen still shows it
                # (the seat moves only while the car stands still).
                state.late.discard(event.request_id)
                self._show(session, event, adjust=self.body.state()[SPEED] == 0)
        elif isinstance(event, CommandRefused):
            command = _command_name(event.command)
            reason = event.reason.value
            self.store.audit(
                now=self.now(), key_id=key_id, command=command, result="denied", reason=reason
            )
            self._emit(
                AgentEvent(
                    kind=AgentEventKind.REFUSED,
                    key_id=key_id.hex(),
                    command=command,
                    ok=False,
                    reason=reason,
                    fast=session.fast,
                )
            )
        elif isinstance(event, RevocationReceived):
            self._revocation(session, event)
        elif isinstance(event, RangingReadied) and state.ranging is not None:
            await self._ranged(session, state.ranging, event)

    # -- speed limits of shared keys -------------------------------------------------------------
    def _start_limiter(self, endpoint_id: bytes) -> None:
        """A start by a key whose grant limits its speed sets the body's limiter and audits it."""
        endpoint = self.store.endpoint(endpoint_id)
        limit = endpoint.limits.max_speed if endpoint is not None else None
        if limit is None:
            if self._limited_drive is not None:
                self._end_limiter("started by a key without a limit")
            return
        self.body.set({SPEED_LIMIT: limit})
        self._limited_drive, self._breach = (endpoint_id, limit), False
        self.store.audit(
            now=self.now(),
            key_id=endpoint_id,
            command="speed-limit",
            result="ok",
            detail=f"limiter set to {limit} km/h",
        )

    def _end_limiter(self, why: str) -> None:
        if self._limited_drive is None:
            return
        key_id, _ = self._limited_drive
        self._limited_drive = None
        self.body.set({SPEED_LIMIT: 0})
        self.store.audit(
            now=self.now(), key_id=key_id, command="speed-limit", result="ok", detail=f"off: {why}"
        )

    def _check_speed(self) -> None:
        """Audit once each time a limited drive goes over its limit (the body reports speed)."""
        if self._limited_drive is None:
            return
        key_id, limit = self._limited_drive
        speed = self.body.state().get(SPEED, 0.0)
        over = isinstance(speed, int | float) and speed > limit
        if over and not self._breach:
            self.store.audit(
                now=self.now(),
                key_id=key_id,
                command="speed-limit",
                result="denied",
                reason="speed_limit_breach",
                detail=f"{float(speed):.0f} km/h over the key's {limit} km/h",
            )
            self._emit(
                AgentEvent(
                    kind=AgentEventKind.REFUSED,
                    key_id=key_id.hex(),
                    command="speed-limit",
                    ok=False,
                    reason="speed_limit_breach",
                )
            )
        self._breach = over

    def _revocation(self, session: VehicleSession, event: RevocationReceived) -> None:
        outcome = self.apply_revocation(event.revocation, via=session.endpoint_id)
        session.respond_revocation(
            event.request_id,
            ok=outcome.ok,
            seq=outcome.seq,
            reason=outcome.reason or None,
            message=outcome.message,
        )
        if session.endpoint_id in outcome.keys or self.store.is_revoked(session.endpoint_id):
            session.close()  # a phone that revoked itself is done here

    def apply_revocation(self, raw: bytes, *, via: bytes | None = None) -> RevocationOutcome:
        """Verify and apply an owner's revocation, from a session or the cloud; durable first."""
        now = self.now()
        try:
            revocation = credentials.verify_revocation(
                raw, vehicle_id=self.store.vehicle_id, owner_key=self.store.owner_key
            )
            fresh, seq = self.store.apply_revocation(revocation, now=now)
        except GrantError as exc:
            self._record(exc, command="revoke", key_id=via, result="denied")
            return RevocationOutcome(
                ok=False, seq=self.store.revocation_seq(), reason=exc.code, message=exc.message
            )
        self._emit(AgentEvent(kind=AgentEventKind.REVOKED, key_id=via.hex() if via else ""))
        # Every open session of a revoked key ends now (the caller's own, if it revoked itself,
        # is closed by the caller after it has been answered).
        self.end_revoked_sessions(spare=via)
        return RevocationOutcome(
            ok=True,
            seq=seq,
            message="Revoked." if fresh else "Already revoked (the same revocation again).",
            keys=revocation.keys,
        )

    async def remote_command(self, raw: bytes) -> bytes:
        """Check and run a phone-signed command that came through the cloud; the signed result.

        The counter is stored durably before the car acts, so no copy of the envelope (kept by a
        relay, or redelivered after a crash) ever runs twice (docs/protocol.md §14).
        """
        now = self.now()
        key_id: bytes | None = None
        try:
            envelope = remote.parse_envelope(raw)
            key_id = envelope.key_id
            remote.verify_envelope(
                envelope,
                vehicle_id=self.store.vehicle_id,
                endpoint_key=self.store.endpoint_key,
                last_counter=self.store.remote_counter,
                now=now,
            )
            self.store.accept_remote(envelope.key_id, envelope.counter, now=now)
        except GrantError as exc:
            known = key_id if key_id and self.store.endpoint(key_id) else None
            self._record(exc, command="remote", key_id=known, result="denied")
            return remote.sign_result(
                self.store.identity,
                raw,
                ok=False,
                reason=exc.code,
                message=exc.message,
                now=int(now),
            )
        reason = await self._act(
            Request(key_id=envelope.key_id, command=envelope.command, entry=Entry.REMOTE)
        )
        if reason is None and envelope.command is Command.STOP:
            self.end_drives()
        return remote.sign_result(
            self.store.identity,
            raw,
            ok=reason is None,
            reason=reason.value if reason else "",
            message="Done." if reason is None else explain(reason),
            now=int(now),
            state=self._answer_state(envelope.command) if reason is None else None,
        )

    def _answer_state(self, command: Command) -> Signals | None:
        """What a signed remote answer reports besides ok: the position, for a ``locate``."""
        if command is not Command.LOCATE:
            return None
        signals = self.body.state()
        return {name: signals[name] for name in (LATITUDE, LONGITUDE) if name in signals}

    async def _ranged(
        self, session: VehicleSession, ranging: _Ranging, event: RangingReadied
    ) -> None:
        """The phone is ready: measure it from every anchor, then let hands-free decide."""
        nonce = ranging.answered(event.request_id)
        if nonce is None or self.rangers is None:
            return
        ranger = self.rangers.for_phone(session.endpoint_id.hex())
        measured = ranger.measure(
            ranging_key(session.exporter), nonce=nonce, reply_ns=float(event.reply_ns)
        )
        reading = Reading(key_id=session.endpoint_id.hex(), location=locate(measured))
        self._readings[reading.key_id] = reading
        await self.hands_free(list(self._readings.values()))

    async def ask_driver(
        self, items: list[DataItem], *, purpose: str, key_prefix: str = "", timeout: float = 30.0
    ) -> tuple[bytes, DataReceived]:
        """The head unit asks the driver's phone (§8.2) and shows the answer; whose, and what.

        The driver is the phone whose profile set the seat, else the newest open session (or
        the one whose key id starts with ``key_prefix``). The answer lives in the head unit's
        memory only, until the session ends; ``timeout`` leaves the person time to decide.
        """
        conn = self._driver_connection(key_prefix)
        if conn is None or conn.session is None or conn.open is None:
            raise UsageError("no phone holds a session with the car (tether phone drive)")
        session, state = conn.session, conn.open
        request_id = session.request_data(items, purpose=purpose)
        answer: asyncio.Future[DataReceived] = asyncio.get_running_loop().create_future()
        state.asked[request_id] = answer
        await self._flush_session(conn, session)
        try:
            data = await asyncio.wait_for(answer, timeout)
        except (TimeoutError, asyncio.CancelledError):
            state.asked.pop(request_id, None)
            raise UsageError("the driver's phone did not answer in time") from None
        self.headunit.show(session.endpoint_id.hex(), data.granted, data.denied)
        return session.endpoint_id, data

    def _driver_connection(self, key_prefix: str) -> _Connection | None:
        open_ = [c for c in self._connections if c.session is not None and c.open is not None]
        if key_prefix:
            open_ = [c for c in open_ if c.key_id and c.key_id.hex().startswith(key_prefix)]
        for conn in open_:
            if conn.key_id is not None and conn.key_id == self._profile_of:
                return conn
        return max(open_, key=lambda c: c.open.opened if c.open else 0.0, default=None)

    async def press_start_button(self) -> DenialReason | None:
        """The start button: the car starts for a phone it measured in the cabin that may drive."""
        if self.rangers is None:
            return DenialReason.RANGING_REQUIRED  # no radios: fail closed
        measured = [r for r in self._readings.values() if r.location is not None]
        inside = [r for r in measured if r.location is not None and r.location.zone is Zone.INSIDE]
        reason: DenialReason | None = DenialReason.RANGING_REQUIRED
        for reading in inside or measured[:1]:
            reason = await self.push_button_start(reading)
            if reason is None:
                return None
        if not measured:
            self.store.audit(
                now=self.now(),
                key_id=None,
                command=Entry.PUSH_BUTTON.value,
                result="denied",
                reason=DenialReason.RANGING_REQUIRED.value,
                detail="no phone measured",
            )
        return reason

    @staticmethod
    def _session_request(session: VehicleSession, command: Command, link: LinkKind) -> Request:
        entry = Entry.FAST if session.fast else Entry.STANDARD
        return Request(key_id=session.endpoint_id, command=command, entry=entry, link=link)

    async def _command(
        self,
        session: VehicleSession,
        event: CommandReceived,
        pending: dict[int, _PendingStart],
        *,
        link: LinkKind,
    ) -> None:
        request = self._session_request(session, event.command, link)
        if event.command is Command.START and self.authority.check(request) is None:
            # Ask the driver's phone first: seat and climate are set before the engine starts.
            request_id = session.request_data(_headunit_items(self.now()), purpose=HEADUNIT_PURPOSE)
            pending[request_id] = _PendingStart(event, time.monotonic() + self.data_timeout, link)
            return
        await self._run(session, event, link=link)

    async def _finish_start(
        self, session: VehicleSession, waiting: _PendingStart, data: DataReceived | None
    ) -> DenialReason | None:
        if data is not None:
            self._show(session, data, adjust=True)
        return await self._run(session, waiting.command, link=waiting.link)

    def _show(self, session: VehicleSession, data: DataReceived, *, adjust: bool) -> None:
        """Put the driver's data on the screen and, if ``adjust``, set seat and climate from it."""
        self.headunit.show(session.endpoint_id.hex(), data.granted, data.denied)
        profile = data.granted.get("profile")
        if (
            adjust
            and isinstance(profile, dict)
            and self.authority.adjust(session.endpoint_id, profile_signals(profile))
        ):
            self._profile_of = session.endpoint_id

    def _easy_exit(self, key_id: bytes | None) -> None:
        """The driver's seat and climate back to neutral when their session ends (easy exit).

        Never under a moving driver: then it waits for the ignition to go off. What a profile
        set lives in memory only (bodies save neutral values), so nothing of it outlives this.
        """
        if self._profile_of is None or (key_id is not None and key_id != self._profile_of):
            return
        speed = self.body.state().get(SPEED, 0.0)
        if key_id is not None and isinstance(speed, int | float) and speed > 0:
            return
        self.body.set(dict(PERSONAL))
        self._profile_of = None

    async def _run(
        self, session: VehicleSession, event: CommandReceived, *, link: LinkKind
    ) -> DenialReason | None:
        """Have the authority carry out a session's command and answer it; why not, if refused."""
        reason = await self._act(self._session_request(session, event.command, link))
        if reason is None and event.command is Command.STOP:
            self.end_drives(spare=session)
        session.respond(
            event.request_id,
            ok=reason is None,
            reason=reason,
            message="Done." if reason is None else explain(reason),
            state=self.body.state(),
        )
        return reason

    async def _act(self, request: Request) -> DenialReason | None:
        """The authority decides, executes and audits; the agent announces and follows up."""
        outcome = await self.authority.act(request)
        reason, command = outcome.reason, request.command
        if reason is None and command is Command.START:
            self._start_limiter(request.key_id)
        if reason is None and command is Command.STOP:
            self.headunit.forget_all("ignition off")
            self._easy_exit(None)
            self._end_limiter("ignition off")
        ranging = request.entry in (Entry.PASSIVE_UNLOCK, Entry.PASSIVE_LOCK, Entry.PUSH_BUTTON)
        self._emit(
            AgentEvent(
                kind=AgentEventKind.COMMAND,
                key_id=request.key_id.hex(),
                command=request.entry.value if ranging else command.value,
                ok=reason is None,
                reason=reason.value if reason else "",
                fast=request.entry is Entry.FAST,
                state=outcome.changed,
            )
        )
        return reason
