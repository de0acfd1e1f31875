"""The vault: imports from real formats, clear errors for broken files, queries, sealed at rest."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest

from tether.errors import UsageError
from tether.phone import consent
from tether.phone.vault import Vault, detect
from tether.phone.wallet import DB_NAME, CarKey, PhoneWallet
from tether.protocol.crypto import DeterministicEntropy
from tether.protocol.session import DataItem, DataRequested

NOW = datetime.datetime(2026, 11, 25, 8, 0, tzinfo=datetime.UTC)

VCARDS = """BEGIN:VCARD
VERSION:4.0
FN:Ada Lovelace
TEL;TYPE=cell:+44 20 7946 0958
EMAIL:ada@example.org
END:VCARD
BEGIN:VCARD
VERSION:3.0
N:Babbage;Charles;;;
FN:Charles Babbage
TEL:+44 20 7946 0000
END:VCARD
"""

ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//tether//test//EN
BEGIN:VEVENT
UID:standup@example.org
DTSTART:20261125T090000Z
DTEND:20261125T091500Z
RRULE:FREQ=DAILY;COUNT=5
SUMMARY:Stand-up
LOCATION:Office
END:VEVENT
BEGIN:VEVENT
UID:dentist@example.org
DTSTART:20261201T140000Z
DTEND:20261201T150000Z
SUMMARY:Dentist
END:VEVENT
END:VCALENDAR
"""


@pytest.fixture
def wallet(tmp_path: Path) -> PhoneWallet:
    return PhoneWallet.create(tmp_path / "phone", name="p", passphrase="pw")


def test_imports_vcard_icalendar_and_json(wallet: PhoneWallet) -> None:
    vault = Vault(wallet)
    seen: list[int] = []
    assert vault.import_text(VCARDS, now=NOW, progress=seen.append) == {"contacts": 2}
    assert seen == [1, 2]
    assert vault.import_text(VCARDS, now=NOW) == {"contacts": 0}  # no duplicates
    assert vault.import_text(ICS, now=NOW) == {"calendar": 6}  # 5 stand-ups expanded + dentist
    counts = vault.import_text(
        '{"favourites": [{"name": "Home", "kind": "home", "lat": 48.1, "lon": 11.5}],'
        ' "media": [{"title": "Podcast"}], "profile": {"seat": {"position": 42}}}',
        now=NOW,
    )
    assert counts == {"favourites": 1, "media": 1, "profile": 1}
    contacts = vault.query("contacts", {"prefix": "ada"})
    assert [c["name"] for c in contacts] == ["Ada Lovelace"] and contacts[0]["emails"] == [
        "ada@example.org"
    ]
    today = vault.query("calendar", {"from": "2026-11-25", "to": "2026-11-26"})
    assert [e["title"] for e in today] == ["Stand-up"]
    assert vault.query("favourites", {"kind": "home"})[0]["name"] == "Home"
    assert vault.query("profile", {}) == {"seat": {"position": 42}}
    # A new Vault on the same wallet reads the sealed data back.
    assert len(Vault(wallet).get("calendar")) == 6


def test_vault_is_encrypted_at_rest(wallet: PhoneWallet, tmp_path: Path) -> None:
    Vault(wallet).import_text(VCARDS, now=NOW)
    wallet.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "phone").iterdir() if p.is_file())
    assert b"Lovelace" not in raw and b"7946" not in raw
    assert (tmp_path / "phone" / DB_NAME).exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello", "not a vCard"),
        ("BEGIN:VCARD\nVERSION:4.0\nEND:VCARD\n", "no name"),
        ("BEGIN:VCARD\nVERSION:4.0\nFN:x\n", "broken"),
        ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:garbage\nEND:VEVENT\nEND:VCALENDAR\n", "broken"),
        ("{not json", "broken"),
        ('{"colour": 1}', "holds favourites"),
        ('{"favourites": {"a": 1}}', "list of objects"),
        ('{"profile": []}', "must be an object"),
    ],
)
def test_broken_files_give_clear_errors(wallet: PhoneWallet, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Vault(wallet).import_text(text, now=NOW)


def test_detect_and_unknown_category(wallet: PhoneWallet) -> None:
    assert detect("  BEGIN:VCARD") == "vcard" and detect("{}") == "json"
    with pytest.raises(UsageError, match="unknown category"):
        Vault(wallet).get("passwords")


def _car(wallet: PhoneWallet, role: str, name: str = "car") -> CarKey:
    key = DeterministicEntropy(name.encode()).new_private_key()
    return wallet.add_car(
        name=name,
        vehicle_key=key.public_key,
        vehicle_name=name,
        address="x",
        endpoint_key=key,
        role=role,
        now=1.0,
    )


async def test_consent_defaults_rules_and_the_disclosure_log(wallet: PhoneWallet) -> None:
    Vault(wallet).import_text(VCARDS, now=NOW)
    owned, shared = _car(wallet, "owner", "mine"), _car(wallet, "friend", "theirs")
    request = DataRequested(
        request_id=1,
        items=(DataItem(category="contacts"), DataItem(category="secrets")),
        purpose="show",
        retain=False,
    )
    answer = consent.responder(wallet, owned, ask=None, clock=lambda: 5.0)
    granted, denied = await answer(request)
    assert len(granted["contacts"]) == 2 and denied == ["secrets"]
    asked: list[str] = []

    async def refuse(car: CarKey, category: str, purpose: str) -> bool:
        asked.append(category)
        return False

    answer = consent.responder(
        wallet,
        shared,
        ask=refuse,
        clock=lambda: 6.0,
    )
    assert await answer(request) == ({}, ["contacts", "secrets"]) and asked == ["contacts"]
    consent.set_decision(wallet, shared, "all", "allow")
    assert "contacts" in (await answer(request))[0]
    consent.set_decision(wallet, owned, "contacts", "deny")
    assert (await consent.responder(wallet, owned, ask=None, clock=lambda: 7.0)(request))[0] == {}
    log = wallet.disclosures()
    assert ("mine", "contacts", 2, "disclosed") in [(r[1], r[2], r[3], r[5]) for r in log]
    assert ("theirs", "contacts", 0, "refused") in [(r[1], r[2], r[3], r[5]) for r in log]
    with pytest.raises(UsageError):
        consent.set_decision(wallet, owned, "contacts", "maybe")
    with pytest.raises(UsageError):
        consent.set_decision(wallet, owned, "secrets", "allow")
    assert consent.default_decision(_car(wallet, "stranger", "odd")) == "deny"


async def test_every_open_question_is_put_at_once_and_silence_is_a_refusal(
    wallet: PhoneWallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    Vault(wallet).import_text(VCARDS, now=NOW)
    shared = _car(wallet, "friend", "theirs")
    request = DataRequested(
        request_id=1,
        items=(DataItem(category="contacts"), DataItem(category="profile")),
        purpose="show",
        retain=False,
    )
    monkeypatch.setattr(consent, "ASK_TIMEOUT", 0.2)
    open_questions: list[str] = []
    both_asked = asyncio.Event()

    async def person(car: CarKey, category: str, purpose: str) -> bool:
        open_questions.append(category)
        if len(open_questions) == 2:
            both_asked.set()
        await both_asked.wait()  # answers only once both questions are on screen
        if category == "profile":
            await asyncio.sleep(10)  # never answers this one
        return True

    answer = consent.responder(wallet, shared, ask=person, clock=lambda: 8.0)
    granted, denied = await answer(request)
    assert sorted(open_questions) == ["contacts", "profile"]
    assert list(granted) == ["contacts"] and denied == ["profile"]


LATE_EVENTS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//tether//test//EN
BEGIN:VEVENT
UID:late@tether
DTSTART:20261125T223000Z
DTEND:20261125T230000Z
SUMMARY:Late call
END:VEVENT
BEGIN:VEVENT
UID:after@tether
DTSTART:20261125T233000Z
DTEND:20261126T000000Z
SUMMARY:Past midnight in Munich
END:VEVENT
END:VCALENDAR
"""


def test_today_is_the_local_day_with_its_offset(wallet: PhoneWallet) -> None:
    vault = Vault(wallet)
    vault.import_text(LATE_EVENTS, now=NOW)
    # Munich is UTC+1 in November: 22:30Z is 23:30 on the 25th, 23:30Z is already the 26th.
    munich = {"from": "2026-11-25T00:00:00+01:00", "to": "2026-11-26T00:00:00+01:00"}
    assert [e["title"] for e in vault.query("calendar", munich)] == ["Late call"]
    utc = {"from": "2026-11-25T00:00:00+00:00", "to": "2026-11-26T00:00:00+00:00"}
    assert [e["title"] for e in vault.query("calendar", utc)] == [
        "Late call",
        "Past midnight in Munich",
    ]
    assert len(vault.query("calendar", {"from": "not a date"})) == 2  # no bound, not an error


def test_the_car_asks_for_its_local_day(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from tether.vehicle import agent

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        items = agent._headunit_items(NOW.timestamp())  # 09:00 in Berlin
        (calendar,) = [i for i in items if i.category == "calendar"]
        assert calendar.query == {
            "from": "2026-11-25T00:00:00+01:00",
            "to": "2026-11-26T00:00:00+01:00",
        }
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
