"""Bodies: what turns an authorised command into doors, trunk and ignition (virtual or CAN)."""

from tether.vehicle.body.base import Body, Signals

__all__ = ["Body", "BodyFault", "Signals"]
