"""The phone's terminal prompt: the questions of one request are one y/N question."""

from __future__ import annotations

import asyncio
import time

import pytest

from tether.cli import phone as phone_cli
from tether.phone.wallet import CarKey
from tether.protocol.crypto import SystemEntropy


def _car() -> CarKey:
    entropy = SystemEntropy()
    return CarKey(
        name="Ada's car",
        vehicle_key=entropy.new_private_key().public_key,
        vehicle_name="car",
        address="",
        endpoint_key=entropy.new_private_key(),
        role="friend",
        persistent_key=None,
        ratchet=0,
        added_at=0,
    )


async def test_one_question_per_request_and_its_answer_for_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[list[str]] = []
    replies = iter([True, False])

    def person(car: CarKey, categories: list[str], purpose: str) -> bool:
        asked.append(categories)
        return next(replies)

    monkeypatch.setattr(phone_cli, "_ask_terminal", person)
    ask = phone_cli._terminal_asker()
    car = _car()
    first = await asyncio.gather(
        *(ask(car, c, "show") for c in ("profile", "contacts", "calendar"))
    )
    second = await ask(car, "contacts", "show")
    assert first == [True, True, True] and second is False
    assert asked == [["profile", "contacts", "calendar"], ["contacts"]]


async def test_a_question_cut_short_is_a_no_for_all(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []

    def slow(car: CarKey, categories: list[str], purpose: str) -> bool:
        asked.append(categories)
        time.sleep(0.3)
        return True

    monkeypatch.setattr(phone_cli, "_ask_terminal", slow)
    ask = phone_cli._terminal_asker()
    car = _car()
    # As the responder does: every question under its own timeout. The first one's gives up
    # early; the one that joined it hears "no"; one that gives up while joined takes nobody down.
    leader = asyncio.ensure_future(asyncio.wait_for(ask(car, "profile", "x"), 0.05))
    joined = asyncio.ensure_future(asyncio.wait_for(ask(car, "contacts", "x"), 5))
    quitter = asyncio.ensure_future(asyncio.wait_for(ask(car, "calendar", "x"), 0.01))
    with pytest.raises(TimeoutError):
        await leader
    with pytest.raises(TimeoutError):
        await quitter
    assert await joined is False
    assert asked == [["profile", "contacts", "calendar"]]
