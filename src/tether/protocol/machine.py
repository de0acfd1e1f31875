"""The one engine of every protocol state machine: a table from (state, message type) to a rule.

Theory of operation (as in h11, with aioquic's table of frame handlers): each machine holds a
``state`` and an outbox of encoded messages. ``receive(data, now=...)`` decodes one message, looks
up ``(state, message type)`` in the class's ``TRANSITIONS`` table and runs that rule's handler
with the message, already of its type, and the time it arrived; anything not in the table is an
:class:`UnexpectedMessage`. A handler returns the events it produced and names the next state,
which must be one its rule allows. Any :class:`ProtocolError` moves the machine to its terminal
failed state, queues an ``Error`` message for the peer where the machine speaks in the clear
(unless the peer sent the error) and is re-raised: the caller flushes :meth:`data_to_send` and
closes. Callers persist every returned event before flushing the outbox, so nothing is
acknowledged before it is durable. Handshakes, pairing and sessions all run on this engine.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from tether.errors import (
    LocalProtocolError,
    PeerError,
    ProtocolError,
    UnexpectedMessage,
    WireCode,
    peer_text,
)
from tether.protocol import codec
from tether.protocol.codec import Message
from tether.protocol.messages import Error

S = TypeVar("S", bound=enum.Enum)


class Event:
    """Base class of everything a protocol machine tells its caller (all frozen dataclasses)."""

    __slots__ = ()


Step = tuple[list[Event], enum.Enum]
#: A handler is called as ``handler(machine, message, now)``; its message is of the rule's type.
Handler = Callable[[Any, Any, float], Step]


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """What one (state, message type) pair does: the handler and the states it may move to."""

    handler: Handler
    next_states: frozenset[enum.Enum]


def rule(handler: Handler, *next_states: enum.Enum) -> Rule:
    """A table entry: ``handler`` runs, and the machine moves to one of ``next_states``."""
    return Rule(handler, frozenset(next_states))


def refusal(exc: ProtocolError) -> bytes:
    """The ``Error`` message that tells the peer why: a §10 code and our own bounded sentence."""
    return codec.encode(Error(code=WireCode.parse(exc.code), message=codec.clip(exc.message, 512)))


class StateMachine(Generic[S]):
    """Base class: table-driven transitions, an outbox, and the single place peer errors land."""

    TRANSITIONS: ClassVar[Mapping[tuple[enum.Enum, type[Message]], Rule]]
    FAILED: ClassVar[enum.Enum]
    #: The state in which the exchange has reached its end (the caller moves on).
    DONE: ClassVar[enum.Enum]

    def __init__(self, initial: S) -> None:
        self.state: S = initial
        self._outbox: list[bytes] = []

    @property
    def done(self) -> bool:
        """Whether the exchange has reached its successful end."""
        return self.state is self.DONE

    def data_to_send(self) -> list[bytes]:
        """Take the messages waiting to go to the peer, oldest first."""
        out, self._outbox = self._outbox, []
        return out

    def _send(self, msg: Message) -> None:
        self._outbox.append(codec.encode(msg))

    def _decode(self, data: bytes) -> Message:
        """One message from the peer's bytes (a session opens its channel record first)."""
        return codec.decode(data)

    def receive(self, data: bytes, *, now: float) -> list[Event]:
        """Feed one message from the peer, arrived at ``now``; return the events it produced."""
        if self.state is self.FAILED:
            raise LocalProtocolError("this exchange has failed; start a new one")
        try:
            msg = self._decode(data)
            if isinstance(msg, Error):
                # The peer's code is read into the closed set and its sentence made printable:
                # nothing a peer says is kept or shown as given.
                raise PeerError(peer_text(msg.message), code=WireCode.parse(msg.code))
            found = self.TRANSITIONS.get((self.state, type(msg)))
            if found is None:
                raise UnexpectedMessage(
                    f"{type(msg).__name__} is not allowed in state {self.state.name}"
                )
            events, next_state = found.handler(self, msg, now)
            if next_state not in found.next_states:  # pragma: no cover - a handler's bug
                raise LocalProtocolError(f"handler moved to {next_state}, not in {found}")
            self.state = next_state  # type: ignore[assignment]
            return events
        except ProtocolError as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: ProtocolError) -> None:
        self.state = self.FAILED  # type: ignore[assignment]
        if not isinstance(exc, PeerError):
            self._outbox.append(refusal(exc))
