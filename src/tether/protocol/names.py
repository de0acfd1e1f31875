"""The vocabulary every side shares, defined once: rights, key roles and data categories."""

from __future__ import annotations

import enum

from tether.errors import UsageError


class Right(enum.StrEnum):
    """What a grant may allow (docs/protocol.md §9.1); carried on the wire by its text value."""

    UNLOCK = "unlock"
    LOCK = "lock"
    TRUNK = "trunk"
    DRIVE = "drive"
    CLIMATE = "climate"
    LOCATE = "locate"
    SHARE = "share"


#: Every right; an owner key holds all of them.
RIGHTS: frozenset[str] = frozenset(Right)


def parse_rights(text: str) -> frozenset[str]:
    """The rights a person typed, comma-separated; UsageError names any unknown one."""
    wanted = frozenset(r.strip() for r in text.split(",") if r.strip())
    unknown = wanted - RIGHTS
    if unknown or not wanted:
        raise UsageError(f"unknown rights {sorted(unknown)}; choose from {sorted(RIGHTS)}")
    return wanted


class Role(enum.StrEnum):
    """How a key came to a car: paired by the owner, granted by the owner, or granted onward."""

    OWNER = "owner"
    FRIEND = "friend"
    DELEGATE = "delegate"


def role_of_chain(depth: int) -> Role:
    """The role of a key that holds a grant chain ``depth`` grants long."""
    return Role.FRIEND if depth == 1 else Role.DELEGATE


class Category(enum.StrEnum):
    """A kind of personal data the phone's vault holds and a head unit may ask for (§8.2)."""

    CONTACTS = "contacts"
    CALENDAR = "calendar"
    FAVOURITES = "favourites"
    MEDIA = "media"
    PROFILE = "profile"


#: Every category, in the order they are shown.
CATEGORIES: tuple[str, ...] = tuple(Category)
