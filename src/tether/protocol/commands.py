"""The commands a phone can send a car, and the reasons a car gives for a denial."""

from __future__ import annotations

import enum


class Command(enum.StrEnum):
    """A vehicle command, carried on the wire by its text value."""

    LOCK = "lock"
    UNLOCK = "unlock"
    TRUNK = "trunk"
    START = "start"
    STOP = "stop"
    LOCATE = "locate"
    HONK = "honk"


#: What a fast transaction may authorise (docs/protocol.md §6.4): as in CCC Digital Key, the
#: symmetric fast path opens and closes the car but never starts it.
FAST_COMMANDS = frozenset({Command.LOCK, Command.UNLOCK, Command.TRUNK})


class DenialReason(enum.StrEnum):
    """Why a car refused a command; stable codes for apps, audit logs and tests."""

    UNKNOWN_COMMAND = "unknown_command"
    FAST_NOT_ALLOWED = "fast_not_allowed"
    NO_RIGHT = "no_right"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    OUTSIDE_HOURS = "outside_hours"
    REVOKED = "revoked"
    VEHICLE_STATE = "vehicle_state"
    RANGING_REQUIRED = "ranging_required"
    BODY_FAULT = "body_fault"
    UNKNOWN_KEY = "unknown_key"


def explain(reason: DenialReason) -> str:
    """A sentence a person can act on for each denial reason."""
    return _SENTENCES[reason]


_SENTENCES = {
    DenialReason.UNKNOWN_COMMAND: "The car does not know this command.",
    DenialReason.FAST_NOT_ALLOWED: (
        "A fast transaction may only lock, unlock or open the trunk; "
        "run a standard transaction for this command."
    ),
    DenialReason.NO_RIGHT: "Your key does not carry the right for this command.",
    DenialReason.NOT_YET_VALID: "Your key is not valid yet.",
    DenialReason.EXPIRED: "Your key has expired.",
    DenialReason.OUTSIDE_HOURS: "Your key is not valid at this time of day or week.",
    DenialReason.REVOKED: "Your key has been revoked by the owner.",
    DenialReason.VEHICLE_STATE: "The car's current state does not allow this command.",
    DenialReason.RANGING_REQUIRED: "The phone must be measured close to the car for this.",
    DenialReason.BODY_FAULT: "The car could not carry out the command.",
    DenialReason.UNKNOWN_KEY: "The car does not know this key.",
}
