"""The phone's data vault: contacts, calendar, favourites, media recents and the driver profile.

Each category is one record list, sealed at rest with the wallet key (AES-256-GCM) in the
wallet's database. Imports read vCard 3.0/4.0 (vobject), iCalendar (icalendar, with recurring
events expanded by recurring-ical-events) and tether's JSON for favourites, media and the driver
profile; the format is told from the content. Queries answer the car's data requests.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import json
from collections.abc import Callable, Iterable
from typing import Any

from tether.errors import UsageError
from tether.phone.wallet import PhoneWallet
from tether.protocol.names import CATEGORIES

#: Recurring events are expanded this far ahead at import time.
CALENDAR_HORIZON = datetime.timedelta(days=180)
Record = dict[str, Any]


def _text(value: Any) -> str:
    return str(value).strip()


def parse_vcards(text: str, progress: Callable[[int], None] | None = None) -> list[Record]:
    """Contacts from vCard 3.0/4.0 text; a broken card is a UsageError naming it."""
    import vobject

    contacts: list[Record] = []
    try:
        for n, card in enumerate(vobject.readComponents(text), start=1):
            if card.name != "VCARD":
                continue
            name = _text(card.fn.value) if hasattr(card, "fn") else ""
            if not name:
                raise UsageError(f"vCard #{n} has no name (FN)")
            contacts.append(
                {
                    "name": name,
                    "phones": [_text(t.value) for t in card.contents.get("tel", [])],
                    "emails": [_text(e.value) for e in card.contents.get("email", [])],
                }
            )
            if progress is not None:
                progress(n)
    except UsageError:
        raise
    except Exception as exc:  # vobject raises many kinds on broken input
        raise UsageError(f"the vCard file is broken: {exc}") from exc
    return contacts


def _as_datetime(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    return datetime.datetime.combine(value, datetime.time(), tzinfo=datetime.UTC)


def _instant(value: object, default: datetime.datetime) -> datetime.datetime:
    """An ISO 8601 date or date-time as an instant (no offset: UTC); ``default`` if it is none.

    Compared as instants, not as text, so the car's "today" from its local midnight with its
    offset selects the driver's local day, whatever offsets the events were written with.
    """
    fallback = default.replace(tzinfo=datetime.UTC)
    if not isinstance(value, str) or not value:
        return fallback
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return fallback
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def past_events(text: str, *, now: datetime.datetime) -> int:
    """How many events of the file lie wholly before ``now`` (not imported: counted and said)."""
    import icalendar
    import recurring_ical_events

    try:
        calendar = icalendar.Calendar.from_ical(text)
        earliest = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        return sum(
            1
            for e in recurring_ical_events.of(calendar).between(earliest, now)
            if _as_datetime(e.decoded("DTEND") if "DTEND" in e else e.decoded("DTSTART")) < now
        )
    except Exception:  # the import itself reports a broken file
        return 0


def parse_icalendar(text: str, *, now: datetime.datetime) -> list[Record]:
    """Events from iCalendar text, recurring ones expanded from now to the horizon."""
    import icalendar
    import recurring_ical_events

    try:
        calendar = icalendar.Calendar.from_ical(text)
        events = recurring_ical_events.of(calendar).between(now, now + CALENDAR_HORIZON)
    except Exception as exc:  # icalendar and the expander raise many kinds on broken input
        raise UsageError(f"the iCalendar file is broken: {exc}") from exc
    out: list[Record] = []
    for event in events:
        start = _as_datetime(event.decoded("DTSTART"))
        end = _as_datetime(event.decoded("DTEND")) if "DTEND" in event else start
        out.append(
            {
                "title": _text(event.get("SUMMARY", "")),
                "start": start.isoformat(),
                "end": end.isoformat(),
                "location": _text(event.get("LOCATION", "")),
            }
        )
    out.sort(key=lambda e: str(e["start"]))
    return out


def parse_json(text: str) -> dict[str, Any]:
    """tether JSON: {"favourites": [...], "media": [...], "profile": {...}} (any of them)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"the JSON file is broken: {exc}") from exc
    if not isinstance(data, dict) or not set(data) & {"favourites", "media", "profile"}:
        raise UsageError("a tether JSON file holds favourites, media and/or profile")
    for key in ("favourites", "media"):
        if key in data and not (
            isinstance(data[key], list) and all(isinstance(x, dict) for x in data[key])
        ):
            raise UsageError(f"'{key}' must be a list of objects")
    if "profile" in data and not isinstance(data["profile"], dict):
        raise UsageError("'profile' must be an object")
    return {k: data[k] for k in ("favourites", "media", "profile") if k in data}


def detect(text: str) -> str:
    """'vcard', 'icalendar' or 'json', from the content; anything else is a UsageError."""
    head = text.lstrip()[:200].upper()
    if head.startswith("BEGIN:VCARD"):
        return "vcard"
    if head.startswith("BEGIN:VCALENDAR"):
        return "icalendar"
    if head.startswith("{"):
        return "json"
    raise UsageError("not a vCard, iCalendar or tether JSON file")


@dataclasses.dataclass(slots=True)
class Staged:
    """An import not yet written: each category's new value, what it gained, past events."""

    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    past: int = 0


class Vault:
    """The categories of one wallet, decrypted on demand and kept in memory while open."""

    def __init__(self, wallet: PhoneWallet) -> None:
        self._wallet = wallet
        self._cache: dict[str, Any] = {}
        self._names: list[tuple[str, int]] | None = None  # (casefolded name, index), sorted

    def get(self, category: str) -> Any:
        if category not in CATEGORIES:
            raise UsageError(f"unknown category {category!r}; one of {', '.join(CATEGORIES)}")
        if category not in self._cache:
            raw = self._wallet.read_sealed(f"vault {category}")
            default: Any = {} if category == "profile" else []
            self._cache[category] = json.loads(raw) if raw is not None else default
        return self._cache[category]

    def put(self, category: str, value: Any) -> None:
        self.get(category)  # validates the name
        self._wallet.write_sealed(f"vault {category}", json.dumps(value).encode())
        self._cache[category] = value
        if category == "contacts":
            self._names = None

    def import_text(
        self, text: str, *, now: datetime.datetime, progress: Callable[[int], None] | None = None
    ) -> dict[str, int]:
        """Import one file's content; returns how many records each category gained."""
        staged = self.stage(text, now=now, progress=progress)
        self.commit(staged)
        return staged.counts

    def stage(
        self,
        text: str,
        *,
        now: datetime.datetime,
        progress: Callable[[int], None] | None = None,
        into: Staged | None = None,
    ) -> Staged:
        """Parse one file and merge it into ``into`` (or the vault as it is), writing nothing.

        Merging is idempotent: a record already held (the same contact, event, favourite) is
        not added again, so importing a file twice changes nothing the second time.
        """
        staged = into or Staged()
        kind = detect(text)

        def current(category: str) -> Any:
            return staged.values.get(category, self.get(category))

        def add(category: str, records: list[Record]) -> None:
            held = current(category)
            seen = {json.dumps(r, sort_keys=True) for r in held}
            fresh = []
            for record in records:
                key = json.dumps(record, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    fresh.append(record)
            merged = [*held, *fresh]
            if category == "calendar":
                merged.sort(key=lambda e: str(e["start"]))
            staged.values[category] = merged
            staged.counts[category] = staged.counts.get(category, 0) + len(fresh)

        if kind == "vcard":
            add("contacts", parse_vcards(text, progress))
        elif kind == "icalendar":
            add("calendar", parse_icalendar(text, now=now))
            staged.past += past_events(text, now=now)
        else:
            for category, value in parse_json(text).items():
                if category == "profile":
                    before = current("profile")
                    merged = {**before, **value}
                    staged.values["profile"] = merged
                    changed = sum(1 for k in merged if before.get(k) != merged[k])
                    staged.counts["profile"] = staged.counts.get("profile", 0) + changed
                else:
                    add(category, value)
        return staged

    def commit(self, staged: Staged) -> None:
        """Write every staged category in one transaction."""
        if not staged.values:
            return
        self._wallet.write_sealed_many(
            {f"vault {c}": json.dumps(v).encode() for c, v in staged.values.items()}
        )
        self._cache.update(staged.values)
        if "contacts" in staged.values:
            self._names = None

    def query(self, category: str, query: dict[str, Any]) -> Any:
        """What a data request for ``category`` with ``query`` may see (before consent)."""
        data = self.get(category)
        if category == "contacts":
            prefix = str(query.get("prefix", "")).casefold()
            limit = max(0, min(int(query.get("limit", 50)), 500))
            if self._names is None:  # a sorted index: a prefix is a range, found by bisection
                self._names = sorted((c["name"].casefold(), i) for i, c in enumerate(data))
            start = bisect.bisect_left(self._names, (prefix, -1))
            hits = []
            for folded, position in self._names[start : start + limit]:
                if not folded.startswith(prefix):
                    break
                hits.append(data[position])
            return hits
        if category == "calendar":
            since = _instant(query.get("from"), datetime.datetime.min)
            until = _instant(query.get("to"), datetime.datetime.max)
            return [e for e in data if since <= _instant(e.get("start"), until) < until]
        if category == "favourites":
            kind = query.get("kind")
            return [f for f in data if kind is None or f.get("kind") == kind]
        return data


def categories_of(records: Iterable[str]) -> list[str]:
    return [c for c in CATEGORIES if c in set(records)]
