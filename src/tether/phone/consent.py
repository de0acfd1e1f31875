"""Consent: which car may read which category of the vault, and the phone's log of what it told.

Each (car, category) is ``allow``, ``ask`` or ``deny``. Defaults: ``allow`` on cars this phone
owns, ``ask`` on shared keys, ``deny`` otherwise. ``ask`` is put to the person (a prompt with a
timeout that means deny). The phone logs every disclosure; the car logs none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tether.errors import UsageError
from tether.phone.vault import CATEGORIES
from tether.phone.wallet import CarKey, PhoneWallet
from tether.protocol.session import DataRequested

DECISIONS = ("allow", "ask", "deny")
#: How long a prompt waits before it counts as a refusal.
ASK_TIMEOUT = 20.0


def default_decision(car: CarKey) -> str:
    if car.role == "owner":
        return "allow"
    if car.role in ("friend", "delegate"):
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


Asker = Callable[[CarKey, str, str], bool]


def decide(
    wallet: PhoneWallet, car: CarKey, category: str, purpose: str, ask: Asker | None
) -> bool:
    """Whether to disclose ``category`` to ``car`` now; ``ask`` prompts (None: nobody to ask)."""
    rule = decision(wallet, car, category)
    if rule == "allow":
        return True
    if rule == "ask" and ask is not None:
        return ask(car, category, purpose)
    return False


def responder(
    wallet: PhoneWallet,
    car: CarKey,
    *,
    ask: Asker | None,
    clock: Callable[[], float],
) -> Callable[[DataRequested], tuple[dict[str, Any], list[str]]]:
    """Answer the car's data requests from the vault, as consent allows, logging each answer."""
    from tether.phone.vault import Vault

    vault = Vault(wallet)

    def answer(request: DataRequested) -> tuple[dict[str, Any], list[str]]:
        granted: dict[str, Any] = {}
        denied: list[str] = []
        for item in request.items:
            known = item.category in CATEGORIES
            if known and decide(wallet, car, item.category, request.purpose, ask):
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
