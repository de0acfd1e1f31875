"""Consent: which car may read which category of the vault, and the phone's log of what it told.

Each (car, category) is ``allow``, ``ask`` or ``deny``. Defaults: ``allow`` on cars this phone
owns, ``ask`` on shared keys, ``deny`` otherwise. ``ask`` is put to the person (a prompt with a
timeout that means deny); the categories of one request are asked together, and the car does not
wait for the answer to start (a late answer still reaches its screen). The phone logs every
disclosure; the car logs none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tether.errors import UsageError
from tether.phone.wallet import CarKey, PhoneWallet
from tether.protocol.names import CATEGORIES, Role
from tether.protocol.session import DataRequested

DECISIONS = ("allow", "ask", "deny")
#: How long a prompt waits before it counts as a refusal.
ASK_TIMEOUT = 20.0


def default_decision(car: CarKey) -> str:
    if car.role == Role.OWNER:
        return "allow"
    if car.role in (Role.FRIEND, Role.DELEGATE):
        return "ask"
    return "deny"


def decision(wallet: PhoneWallet, car: CarKey, category: str) -> str:
    """The rule for ``category`` on ``car``: set explicitly, or the default."""
    return wallet.consent_rules().get((car.name, category), default_decision(car))


def set_decision(wallet: PhoneWallet, car: CarKey, category: str, value: str) -> None:
    if category not in CATEGORIES and category != "all":
        raise UsageError(f"unknown category {category!r}; one of {', '.join(CATEGORIES)} or all")
    if value not in DECISIONS:
        raise UsageError(f"consent is one of {', '.join(DECISIONS)}, not {value!r}")
    for cat in CATEGORIES if category == "all" else (category,):
        wallet.set_consent(car.name, cat, value)


#: Puts one question to the person: may ``car`` have ``category`` for ``purpose``?
Asker = Callable[[CarKey, str, str], Awaitable[bool]]


async def _put(ask: Asker, car: CarKey, category: str, purpose: str) -> bool:
    """One question to the person; no answer within :data:`ASK_TIMEOUT` is a refusal."""
    try:
        return await asyncio.wait_for(ask(car, category, purpose), ASK_TIMEOUT)
    except TimeoutError:
        return False


def responder(
    wallet: PhoneWallet,
    car: CarKey,
    *,
    ask: Asker | None,
    clock: Callable[[], float],
) -> Callable[[DataRequested], Awaitable[tuple[dict[str, Any], list[str]]]]:
    """Answer the car's data requests from the vault, as consent allows, logging each answer."""
    from tether.phone.vault import Vault

    vault = Vault(wallet)

    async def answer(request: DataRequested) -> tuple[dict[str, Any], list[str]]:
        rules = [
            decision(wallet, car, item.category) if item.category in CATEGORIES else "deny"
            for item in request.items
        ]
        allowed = [rule == "allow" for rule in rules]
        asked = [i for i, rule in enumerate(rules) if rule == "ask"]
        if asked and ask is not None:  # with nobody to ask, "ask" is a refusal
            # Every open question is put at once: one look at the phone, not three.
            answers = await asyncio.gather(
                *(_put(ask, car, request.items[i].category, request.purpose) for i in asked)
            )
            for i, yes in zip(asked, answers, strict=True):
                allowed[i] = yes
        granted: dict[str, Any] = {}
        denied: list[str] = []
        for item, allow in zip(request.items, allowed, strict=True):
            if allow:
                records = vault.query(item.category, item.query)
                granted[item.category] = records
                count = len(records) if isinstance(records, list) else int(bool(records))
                decision_made = "disclosed"
            else:
                denied.append(item.category)
                count, decision_made = 0, "refused"
            wallet.log_disclosure(
                time=clock(),
                car=car.name,
                category=item.category[:32],
                items=count,
                purpose=request.purpose[:128],
                decision=decision_made,
            )
        return granted, denied

    return answer
