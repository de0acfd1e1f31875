"""An established session (docs/protocol.md §8): commands and results inside the secure channel.

The vehicle side enforces what the protocol itself guarantees, whatever the caller's policy says:
a command name it does not know is denied with ``unknown_command``, and a session opened by a fast
transaction may only lock, unlock and open the trunk (``fast_not_allowed``). Everything else is
the caller's policy, answered through :meth:`VehicleSession.respond`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, ClassVar

import cbor2

from tether.errors import (
    ChannelError,
    LocalProtocolError,
    MalformedMessage,
    ProtocolError,
    WireCode,
)
from tether.protocol import codec, crypto
from tether.protocol.channel import ChannelKeys, SecureChannel
from tether.protocol.codec import Shape, item_shape, nested, shape, tstr, uint
from tether.protocol.commands import FAST_COMMANDS, Command, DenialReason, explain
from tether.protocol.machine import Event, StateMachine, Step, rule
from tether.protocol.messages import (
    Close,
    CommandRequest,
    CommandResult,
    DataRequest,
    DataResponse,
    RangingReady,
    RangingRequest,
    RevocationRequest,
    RevocationResult,
)
from tether.protocol.names import CATEGORIES

Signals = dict[str, bool | int | float | str]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommandReceived(Event):
    """Vehicle event: an authenticated phone asks for ``command``; answer with respond()."""

    request_id: int
    command: Command


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommandRefused(Event):
    """Vehicle event: the session itself refused a command (already answered); audit it."""

    request_id: int
    command: str
    reason: DenialReason


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RevocationReceived(Event):
    """Vehicle event: a revocation to verify, apply durably, then answer (respond_revocation)."""

    request_id: int
    revocation: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RevocationAnswered(Event):
    """Phone event: the car's answer to a delivered revocation."""

    result: RevocationResult


#: What a head unit may ask a phone for (docs/protocol.md §8.2).


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DataItem:
    """One category the car asks for, with an optional query (name prefix, time window, kind)."""

    category: str
    query: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DataRequested(Event):
    """Phone event: the car asks for personal data; answer with respond_data()."""

    request_id: int
    items: tuple[DataItem, ...]
    purpose: str
    retain: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived(Event):
    """Vehicle event: the phone's answer: granted records by category, denied categories."""

    request_id: int
    granted: dict[str, Any]
    denied: tuple[str, ...]


def _cbor(data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    except Exception as exc:  # any garbage is a typed refusal
        raise MalformedMessage(f"{what} is not valid CBOR") from exc


@shape
class DataQuery(Shape):
    """What narrows a data request (§8.2): a name prefix and a count, a time window, a kind."""

    prefix: str | None = tstr("prefix", max_size=64, default=None)
    limit: int | None = uint("limit", max_value=500, default=None)
    since: str | None = tstr("from", max_size=40, default=None)
    until: str | None = tstr("to", max_size=40, default=None)
    kind: str | None = tstr("kind", max_size=32, default=None)


@shape
class _Item(Shape):
    category: str = tstr("category", max_size=32)
    query: DataQuery | None = nested("query", DataQuery, default=None)


def _items(data: bytes) -> tuple[DataItem, ...]:
    items = codec.load_array(
        data, item_shape(_Item), "a data request", min_size=1, max_size=len(CATEGORIES)
    )
    return tuple(
        DataItem(
            category=item.category,
            query={str(k): v for k, v in codec.to_map(item.query).items()} if item.query else {},
        )
        for item in items
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RangingRequested(Event):
    """Phone event: the car will range; the phone's radio answers the rounds with this nonce."""

    request_id: int
    nonce: bytes
    anchors: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RangingReadied(Event):
    """Vehicle event: the phone is ready for the timed rounds, with its declared reply time."""

    request_id: int
    reply_ns: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResultReceived(Event):
    """Phone event: the car answered a request."""

    result: CommandResult


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SessionClosed(Event):
    """Either side: the peer closed the session cleanly."""


class SessionState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"


_OPEN = SessionState.OPEN


class _Session(StateMachine[SessionState]):
    """Either end of a session: the engine's table over records of the secure channel."""

    _PHONE: bool
    FAILED: ClassVar = SessionState.FAILED
    DONE: ClassVar = SessionState.CLOSED

    def __init__(self, keys: ChannelKeys, *, endpoint_id: bytes, fast: bool) -> None:
        super().__init__(SessionState.OPEN)
        self._keys = keys
        self._exporter: bytes | None = None
        self._channel = SecureChannel(keys)
        self.endpoint_id = endpoint_id
        self.fast = fast

    @property
    def exporter(self) -> bytes:
        """A secret both ends share for keys of other uses (ranging); never a channel key itself.

        Derived on first use: most sessions never need it, and a transaction stays cheaper.
        """
        if self._exporter is None:
            keys = self._keys
            p2v, v2p = (
                (keys.send_key, keys.recv_key) if self._PHONE else (keys.recv_key, keys.send_key)
            )
            self._exporter = crypto.hkdf(p2v + v2p, salt=b"", info=b"tether/2 exporter", length=32)
        return self._exporter

    def _send(self, msg: codec.Message) -> None:
        if self.state is not SessionState.OPEN:
            raise LocalProtocolError("the session is not open")
        self._outbox.append(self._channel.seal(codec.encode(msg)))

    def close(self) -> None:
        """Queue a clean close; nothing more may be sent."""
        self._send(Close())
        self.state = SessionState.CLOSED

    def connection_lost(self) -> None:
        """The transport ended: a :class:`ChannelError` unless the session closed cleanly."""
        if self.state is SessionState.OPEN:
            self.state = SessionState.FAILED
            raise ChannelError("the session was cut off without a close", code=WireCode.TRUNCATED)

    def _decode(self, data: bytes) -> codec.Message:
        if self.state is not SessionState.OPEN:
            raise ChannelError("the session is no longer open", code=WireCode.CHANNEL_CLOSED)
        return codec.decode(self._channel.open(data))

    def _fail(self, exc: ProtocolError) -> None:
        # Inside the channel nothing more is sent: the connection just ends (§7).
        self.state = SessionState.FAILED

    def _on_close(self, msg: Close, now: float) -> Step:
        return [SessionClosed()], SessionState.CLOSED


class VehicleSession(_Session):
    """The car's end of a session: yields commands to authorise, sends results."""

    _PHONE = False

    def __init__(self, keys: ChannelKeys, *, endpoint_id: bytes, fast: bool) -> None:
        super().__init__(keys, endpoint_id=endpoint_id, fast=fast)
        self._next_request = 1
        self._last_phone_request = 0
        self._outstanding: set[int] = set()  # the car's requests the phone has yet to answer

    def _phone_request(self, request_id: int) -> None:
        """§8: the phone's request ids increase strictly within a session; a repeat is refused."""
        if request_id <= self._last_phone_request:
            raise MalformedMessage(
                f"request id {request_id} does not increase (the last was"
                f" {self._last_phone_request})"
            )
        self._last_phone_request = request_id

    def _answer(self, request_id: int) -> None:
        """§8: a response names one of the car's open requests, and answers it once."""
        if request_id not in self._outstanding:
            raise MalformedMessage(f"request id {request_id} is not an open request of the car")
        self._outstanding.discard(request_id)

    def _on_revocation(self, msg: RevocationRequest, now: float) -> Step:
        self._phone_request(msg.request_id)
        return [RevocationReceived(request_id=msg.request_id, revocation=msg.revocation)], _OPEN

    def _on_ranging_ready(self, msg: RangingReady, now: float) -> Step:
        self._answer(msg.request_id)
        return [RangingReadied(request_id=msg.request_id, reply_ns=msg.reply_ns)], _OPEN

    def _on_data(self, msg: DataResponse, now: float) -> Step:
        self._answer(msg.request_id)
        granted, denied = _cbor(msg.granted, "granted data"), _cbor(msg.denied, "denied list")
        if (
            type(granted) is not dict
            or not all(type(k) is str for k in granted)
            or type(denied) is not list
            or not all(type(d) is str for d in denied)
        ):
            raise MalformedMessage("a data response is {category: records} and [category]")
        received = DataReceived(request_id=msg.request_id, granted=granted, denied=tuple(denied))
        return [received], _OPEN

    def _on_command(self, msg: CommandRequest, now: float) -> Step:
        self._phone_request(msg.request_id)
        try:
            command = Command(msg.command)
        except ValueError:
            return [self._refuse(msg, DenialReason.UNKNOWN_COMMAND)], _OPEN
        if self.fast and command not in FAST_COMMANDS:
            return [self._refuse(msg, DenialReason.FAST_NOT_ALLOWED)], _OPEN
        return [CommandReceived(request_id=msg.request_id, command=command)], _OPEN

    TRANSITIONS: ClassVar = {
        (_OPEN, Close): rule(_Session._on_close, SessionState.CLOSED),
        (_OPEN, CommandRequest): rule(_on_command, _OPEN),
        (_OPEN, RevocationRequest): rule(_on_revocation, _OPEN),
        (_OPEN, RangingReady): rule(_on_ranging_ready, _OPEN),
        (_OPEN, DataResponse): rule(_on_data, _OPEN),
    }

    def _refuse(self, msg: CommandRequest, reason: DenialReason) -> CommandRefused:
        self.respond(msg.request_id, ok=False, reason=reason)
        return CommandRefused(request_id=msg.request_id, command=msg.command, reason=reason)

    def respond(
        self,
        request_id: int,
        *,
        ok: bool,
        reason: DenialReason | None = None,
        message: str | None = None,
        state: Signals | None = None,
    ) -> None:
        """Queue the result of a command; a denial needs a reason."""
        if ok == (reason is not None):
            raise LocalProtocolError("a result carries a reason exactly when it is a denial")
        text = message if message is not None else (explain(reason) if reason else "Done.")
        self._send(
            CommandResult(
                request_id=request_id,
                ok=ok,
                reason=reason.value if reason else None,
                message=codec.clip(text, 512),
                state=state,
            )
        )

    def request_ranging(self, *, nonce: bytes, anchors: int) -> int:
        """Set up a ranging measurement; ``nonce`` comes from the caller's randomness."""
        request_id = self._next_request
        self._next_request += 1
        self._outstanding.add(request_id)
        self._send(RangingRequest(request_id=request_id, nonce=nonce, anchors=anchors))
        return request_id

    def request_data(self, items: list[DataItem], *, purpose: str) -> int:
        """Ask the phone for data; the car never intends to retain it (``retain`` is false)."""
        request_id = self._next_request
        self._next_request += 1
        self._outstanding.add(request_id)
        payload = [{"category": i.category, "query": i.query} for i in items]
        self._send(
            DataRequest(
                request_id=request_id,
                items=cbor2.dumps(payload, canonical=True),
                purpose=purpose,
                retain=False,
            )
        )
        return request_id

    def respond_revocation(
        self, request_id: int, *, ok: bool, seq: int, reason: str | None = None, message: str
    ) -> None:
        """Answer a delivered revocation (after it is durable, or with why it was refused)."""
        if ok == (reason is not None):
            raise LocalProtocolError("a result carries a reason exactly when it is a refusal")
        self._send(
            RevocationResult(
                request_id=request_id,
                ok=ok,
                seq=seq,
                reason=reason,
                message=codec.clip(message, 512),
            )
        )


class PhoneSession(_Session):
    """The phone's end of a session: sends commands, yields results."""

    _PHONE = True

    def __init__(self, keys: ChannelKeys, *, endpoint_id: bytes, fast: bool) -> None:
        super().__init__(keys, endpoint_id=endpoint_id, fast=fast)
        self._next_id = 1

    def request(self, command: Command | str) -> int:
        """Queue a command; return its request id."""
        request_id = self._next_id
        self._next_id += 1
        self._send(CommandRequest(request_id=request_id, command=str(command)))
        return request_id

    def ranging_ready(self, request_id: int, *, reply_ns: int) -> None:
        """Tell the car the radio is ready, and how long it holds each challenge."""
        self._send(RangingReady(request_id=request_id, reply_ns=reply_ns))

    def respond_data(self, request_id: int, *, granted: dict[str, Any], denied: list[str]) -> None:
        """Answer a data request with only what consent allowed."""
        self._send(
            DataResponse(
                request_id=request_id,
                granted=cbor2.dumps(granted, canonical=True),
                denied=cbor2.dumps(sorted(denied), canonical=True),
            )
        )

    def deliver_revocation(self, revocation: bytes) -> int:
        """Queue an owner-signed revocation for the car; return its request id."""
        request_id = self._next_id
        self._next_id += 1
        self._send(RevocationRequest(request_id=request_id, revocation=revocation))
        return request_id

    def _on_revocation_result(self, msg: RevocationResult, now: float) -> Step:
        return [RevocationAnswered(result=msg)], _OPEN

    def _on_ranging_request(self, msg: RangingRequest, now: float) -> Step:
        requested = RangingRequested(
            request_id=msg.request_id, nonce=msg.nonce, anchors=msg.anchors
        )
        return [requested], _OPEN

    def _on_data_request(self, msg: DataRequest, now: float) -> Step:
        requested = DataRequested(
            request_id=msg.request_id,
            items=_items(msg.items),
            purpose=msg.purpose,
            retain=msg.retain,
        )
        return [requested], _OPEN

    def _on_result(self, msg: CommandResult, now: float) -> Step:
        return [ResultReceived(result=msg)], _OPEN

    TRANSITIONS: ClassVar = {
        (_OPEN, Close): rule(_Session._on_close, SessionState.CLOSED),
        (_OPEN, CommandResult): rule(_on_result, _OPEN),
        (_OPEN, RevocationResult): rule(_on_revocation_result, _OPEN),
        (_OPEN, RangingRequest): rule(_on_ranging_request, _OPEN),
        (_OPEN, DataRequest): rule(_on_data_request, _OPEN),
    }
