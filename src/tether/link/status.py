"""The states of what the server holds for a car, as its API reports them (docs/cloud.md)."""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """A remote command, a queued revocation or a key request, as the server last knew it."""

    PENDING = "pending"  # waiting for the car (a command or revocation) or the owner (a request)
    DONE = "done"  # a command the car answered (its signed result is stored)
    APPLIED = "applied"  # a revocation the car signed a receipt for
    REFUSED = "refused"  # a revocation the car refused, with its signed receipt
    GRANTED = "granted"  # a key request the owner answered with a grant
    #: The phone's verdict, never the server's: a receipt the car did not sign, or for another
    #: revocation (the server may be lying).
    UNVERIFIED = "unverified"
