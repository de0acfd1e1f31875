"""The car's one authority: every path that changes the car asks it, and it alone acts.

Session commands (early ones too), remote envelopes, passive unlock, walk-away lock and the start
button all become a :class:`Request` naming a key id, a command and where the request came from.
The authority looks the key up in the car's own store (never in what the caller says about it),
checks its rights, window, hours and revocation (:func:`policy.authorize`), the context (a fast
session's limits, the owner's ranging switch for app commands over a near link, where a ranging
measured the phone), carries the command out on the body, audits and announces it. Callers get
the outcome; none of them executes a command or writes a command's audit entry on its own, and a
driver's profile moves the seat only through :meth:`Authority.adjust`.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from collections.abc import Callable

from tether.errors import BodyFault
from tether.protocol.commands import FAST_COMMANDS, Command, DenialReason
from tether.protocol.vss import SPEED
from tether.transport.base import LinkKind
from tether.vehicle.body.base import Body, Signals
from tether.vehicle.hands_free import Reading, placed_for
from tether.vehicle.keystore import VehicleStore
from tether.vehicle.policy import authorize
from tether.vehicle.ranging import Zone

log = logging.getLogger(__name__)

RANGING_FRESH_S = 5.0  # how recent a ranging must be for an app command with the switch on


class Entry(enum.StrEnum):
    """Where a request to change the car came from; the audit log's detail names it."""

    STANDARD = "standard"  # a command in a session opened by a standard transaction
    FAST = "fast"  # in a session opened by a fast transaction
    REMOTE = "remote"  # a signed envelope through the server
    PASSIVE_UNLOCK = "passive unlock"  # a keyed phone measured at a door
    PASSIVE_LOCK = "passive lock"  # every keyed phone measured away
    PUSH_BUTTON = "push-button start"  # the start button, with a phone measured in the cabin


#: The command each ranging-driven entry runs.
_RANGING_ENTRIES = {
    Entry.PASSIVE_UNLOCK: Command.UNLOCK,
    Entry.PASSIVE_LOCK: Command.LOCK,
    Entry.PUSH_BUTTON: Command.START,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One request to change the car: whose key, what, from where, and any ranging behind it."""

    key_id: bytes
    command: Command
    entry: Entry
    link: LinkKind | None = None  # the connection's kind, for session commands
    reading: Reading | None = None  # the measurement, for ranging-driven entries
    detail: str = ""  # what the audit entry adds (the measured distance)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What the authority did: the denial (None: done) and the signals that changed."""

    reason: DenialReason | None
    changed: Signals


class Authority:
    """Decides, executes, audits and announces every change of the car."""

    def __init__(
        self,
        store: VehicleStore,
        body: Body,
        *,
        now: Callable[[], float],
        ranging_for_app: bool = False,
    ) -> None:
        self.store = store
        self.body = body
        self._now = now
        #: The owner's switch: app commands over a near link need the phone measured at the car.
        self.ranging_for_app = ranging_for_app
        self._seen: dict[str, tuple[float, Reading]] = {}  # key id -> (when, latest ranging)

    def saw(self, reading: Reading) -> None:
        """Remember a key's latest ranging (the switch above consults it)."""
        self._seen[reading.key_id] = (self._now(), reading)

    def check(self, request: Request) -> DenialReason | None:
        """None if the request may run now, else why not. Reads the store, changes nothing."""
        self.store.refresh()  # a revocation written a moment ago by another process counts now
        endpoint = self.store.endpoint(request.key_id)
        if endpoint is None:
            return DenialReason.UNKNOWN_KEY
        now = self._now()
        local = time.localtime(now)
        reason = authorize(
            endpoint,
            request.command,
            now=now,
            local_hour=local.tm_hour,
            local_weekday=local.tm_wday,
            signals=self.body.state(),
        )
        if reason is not None:
            return reason
        entry = request.entry
        if entry is Entry.FAST and request.command not in FAST_COMMANDS:
            return DenialReason.FAST_NOT_ALLOWED
        if entry in _RANGING_ENTRIES:
            if request.command is not _RANGING_ENTRIES[entry]:
                return DenialReason.UNKNOWN_COMMAND
            if entry is Entry.PASSIVE_LOCK:
                return None  # decided on every phone's distance by the hands-free policy
            location = request.reading.location if request.reading is not None else None
            return placed_for(request.command, location)
        if request.link is not None and request.link.near and self.ranging_for_app:
            return self._ranging_check(request.key_id.hex(), request.command)
        return None

    def _ranging_check(self, key_id: str, command: Command) -> DenialReason | None:
        """With the owner's switch on: the phone must have been measured at the car just now."""
        if command not in (Command.UNLOCK, Command.TRUNK, Command.START):
            return None
        seen = self._seen.get(key_id)
        if seen is None or self._now() - seen[0] > RANGING_FRESH_S or seen[1].location is None:
            return DenialReason.RANGING_REQUIRED
        zone = seen[1].location.zone
        wanted = (Zone.INSIDE,) if command is Command.START else (Zone.INSIDE, Zone.DOOR)
        return None if zone in wanted else DenialReason.RANGING_REQUIRED

    def adjust(self, key_id: bytes, signals: Signals) -> bool:
        """Move seat and climate to a driver's profile: for a key that may drive, at a standstill.

        Not audited: the values are the driver's (the start that asked for them is audited).
        """
        endpoint = self.store.endpoint(key_id)
        speed = self.body.state().get(SPEED, 0.0)
        if endpoint is None or endpoint.revoked or "drive" not in endpoint.rights:
            return False
        if not isinstance(speed, int | float) or speed > 0 or not signals:
            return False
        self.body.set(signals)
        return True

    async def act(self, request: Request) -> Outcome:
        """Check, then carry out on the body, then audit: the one way a command changes the car."""
        reason = self.check(request)
        changed: Signals = {}
        if reason is None:
            try:
                changed = await self.body.execute(request.command)
            except BodyFault as exc:
                log.warning("body fault on %s: %s", request.command, exc.message)
                reason = DenialReason.BODY_FAULT
        command = request.entry.value if request.entry in _RANGING_ENTRIES else request.command
        self.store.audit(
            now=self._now(),
            key_id=request.key_id,
            command=str(command),
            result="ok" if reason is None else "denied",
            reason=reason.value if reason else "",
            detail=request.detail or request.entry.value,
        )
        return Outcome(reason=reason, changed=changed)
