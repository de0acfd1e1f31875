"""Authorisation of one command: the key's rights, validity window, limits and the car's state.

Pure: the caller passes the endpoint, the command, the time and the car's signals; the answer is
``None`` (allowed) or the :class:`DenialReason` that the phone is told and the audit log records.
"""

from __future__ import annotations

from collections.abc import Mapping

from tether.protocol.commands import Command, DenialReason
from tether.protocol.names import Right
from tether.protocol.vss import SPEED
from tether.vehicle.keystore import Endpoint

#: The right each command needs.
COMMAND_RIGHTS: Mapping[Command, Right] = {
    Command.LOCK: Right.LOCK,
    Command.UNLOCK: Right.UNLOCK,
    Command.TRUNK: Right.TRUNK,
    Command.START: Right.DRIVE,
    Command.STOP: Right.DRIVE,
    Command.LOCATE: Right.LOCATE,
    Command.HONK: Right.LOCATE,
}

#: Above this speed (km/h) nobody may unlock, open the trunk or switch the car off.
WALKING_SPEED = 6.0


def _in_hours(hours: tuple[int, int], hour: int) -> bool:
    start, end = hours
    return start <= hour < end if start <= end else hour >= start or hour < end


def authorize(
    endpoint: Endpoint,
    command: Command,
    *,
    now: float,
    local_hour: int,
    local_weekday: int,
    signals: Mapping[str, object],
) -> DenialReason | None:
    """None if ``endpoint`` may run ``command`` now, else why not (checked in a fixed order)."""
    limits = endpoint.limits
    if endpoint.revoked:
        return DenialReason.REVOKED
    if endpoint.not_before is not None and now < endpoint.not_before:
        return DenialReason.NOT_YET_VALID
    if endpoint.not_after is not None and now >= endpoint.not_after:
        return DenialReason.EXPIRED
    if limits.hours is not None and not _in_hours(limits.hours, local_hour):
        return DenialReason.OUTSIDE_HOURS
    if limits.weekdays is not None and local_weekday not in limits.weekdays:
        return DenialReason.OUTSIDE_HOURS
    if COMMAND_RIGHTS[command] not in endpoint.rights:
        return DenialReason.NO_RIGHT
    speed = signals.get(SPEED, 0.0)
    moving = isinstance(speed, int | float) and speed > WALKING_SPEED
    if moving and command in (Command.UNLOCK, Command.TRUNK, Command.STOP):
        return DenialReason.VEHICLE_STATE
    return None
