"""Transports: move whole protocol messages between a phone and a car (memory, TCP)."""

from tether.transport.base import Listener, Transport

__all__ = ["Listener", "Transport", "TransportClosed"]
