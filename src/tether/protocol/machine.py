"""The shared engine of every protocol state machine: a transition table as data, one error path.

Theory of operation (as in h11): each machine holds a ``state`` and an outbox of encoded messages.
``receive(data)`` decodes one message, looks up ``(state, message type)`` in the machine's
``TRANSITIONS`` table and runs the handler; anything not in the table is an
:class:`UnexpectedMessage`. A handler returns the events it produced and names the next state, which
must be one the table allows. Any :class:`ProtocolError` moves the machine to its terminal failed
state, queues an ``Error`` message for the peer (unless the peer sent the error) and is re-raised:
the caller flushes :meth:`data_to_send` and closes. Callers persist every returned event before
flushing the outbox, so nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import ClassVar, Generic, TypeVar

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
Handler = Callable[[Message], tuple[list[object], enum.Enum]]


class StateMachine(Generic[S]):
    """Base class: table-driven transitions, an outbox, and the single place peer errors land."""

    #: (state, message class) -> the states the handler may move to.
    TRANSITIONS: ClassVar[Mapping[tuple[enum.Enum, type[Message]], frozenset[enum.Enum]]]
    FAILED: ClassVar[enum.Enum]

    def __init__(self, initial: S) -> None:
        self.state: S = initial
        self._outbox: list[bytes] = []

    def data_to_send(self) -> list[bytes]:
        """Take the encoded messages waiting to go to the peer, oldest first."""
        out, self._outbox = self._outbox, []
        return out

    def _send(self, msg: Message) -> None:
        self._outbox.append(codec.encode(msg))

    def _handler(self, msg: Message) -> Handler:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def receive(self, data: bytes) -> list[object]:
        """Feed one message from the peer; return the events it produced."""
        if self.state is self.FAILED:
            raise LocalProtocolError("this exchange has failed; start a new one")
        try:
            msg = codec.decode(data)
            if isinstance(msg, Error):
                # The peer's code is read into the closed set and its sentence made printable:
                # nothing a peer says is kept or shown as given.
                raise PeerError(peer_text(msg.message), code=WireCode.parse(msg.code))
            allowed = self.TRANSITIONS.get((self.state, type(msg)))
            if allowed is None:
                raise UnexpectedMessage(
                    f"{type(msg).__name__} is not allowed in state {self.state.name}"
                )
            events, next_state = self._handler(msg)(msg)
            if next_state not in allowed:  # pragma: no cover - a bug in a handler, not peer input
                raise LocalProtocolError(f"handler moved to {next_state}, not in {allowed}")
            self.state = next_state  # type: ignore[assignment]
            return events
        except ProtocolError as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: ProtocolError) -> None:
        self.state = self.FAILED  # type: ignore[assignment]
        if not isinstance(exc, PeerError):
            self._outbox.append(
                codec.encode(Error(code=exc.code, message=codec.clip(exc.message, 512)))
            )
