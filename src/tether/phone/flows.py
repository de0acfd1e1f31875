"""What a phone does with a car, each flow once: the CLI and the console only present them.

Each flow takes an open transport and the wallet, runs the protocol (:mod:`tether.phone.client`)
and keeps in the wallet what the flow produced: the new key after pairing, the car's persistent
key after every transaction, the consent log of every data request, and a key the car no longer
knows marked revoked.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tether.errors import ProtocolError, WireCode
from tether.phone import client, consent, sharing
from tether.phone.wallet import CarKey, KeyStatus, PhoneWallet
from tether.protocol.commands import FAST_COMMANDS, Command
from tether.protocol.crypto import Entropy
from tether.protocol.messages import RevocationResult
from tether.protocol.names import RIGHTS, Role
from tether.transport.base import Transport

#: What the car says when it no longer honours this key: the wallet marks it revoked.
_GONE = frozenset({WireCode.UNKNOWN_KEY, WireCode.GRANT_REVOKED})


async def pair(
    wallet: PhoneWallet,
    transport: Transport,
    *,
    code: str,
    address: str,
    entropy: Entropy,
    name: str = "",
) -> CarKey:
    """Pair as the car's owner with the code it shows; keep the new key (made for this car only)."""
    endpoint_key = entropy.new_private_key()
    paired = await client.pair(
        transport, code=code, endpoint_key=endpoint_key, name=wallet.name, entropy=entropy
    )
    return wallet.add_car(
        name=name or paired.vehicle_name,
        vehicle_key=paired.vehicle_key,
        vehicle_name=paired.vehicle_name,
        address=address,
        endpoint_key=endpoint_key,
        role=Role.OWNER,
        rights=RIGHTS,
        now=time.time(),
    )


@contextmanager
def _marking_revoked(wallet: PhoneWallet, car: CarKey) -> Iterator[None]:
    try:
        yield
    except ProtocolError as exc:
        if exc.code in _GONE:
            wallet.set_status(car.name, KeyStatus.REVOKED)
        raise


def _keep_persistent(wallet: PhoneWallet, car: CarKey) -> Callable[[bytes], None]:
    return lambda key: wallet.set_persistent_key(car.name, key)


async def command(
    wallet: PhoneWallet,
    car: CarKey,
    transport: Transport,
    which: Command,
    *,
    entropy: Entropy,
    ask: consent.Asker | None,
    standard: bool = False,
    linger: Callable[[list[client.Outcome]], Awaitable[None]] | None = None,
) -> client.Outcome:
    """One command in one transaction: fast where it may be (docs/protocol.md §6.4); the head
    unit's data requests (at start) are answered by consent, asking through ``ask``."""
    with _marking_revoked(wallet, car):
        (outcome,) = await client.run_commands(
            transport,
            car,
            [which],
            entropy=entropy,
            fast=not standard and which in FAST_COMMANDS,
            persist=_keep_persistent(wallet, car),
            data=consent.responder(wallet, car, ask=ask, clock=time.time),
            linger=linger,
        )
    return outcome


async def hold(
    wallet: PhoneWallet,
    car: CarKey,
    transport: Transport,
    *,
    entropy: Entropy,
    stop: Awaitable[Any],
    ask: consent.Asker | None,
) -> str:
    """Keep a session open as a phone in the driver's pocket; why it ended."""
    with _marking_revoked(wallet, car):
        return await client.drive(
            transport,
            car,
            entropy=entropy,
            persist=_keep_persistent(wallet, car),
            stop=stop,
            data=consent.responder(wallet, car, ask=ask, clock=time.time),
        )


async def revoke(
    wallet: PhoneWallet,
    car: CarKey,
    transport: Transport,
    *,
    keys: list[bytes],
    serials: list[bytes],
    entropy: Entropy,
) -> RevocationResult:
    """(Owner) Sign a revocation and hand it to the car in a session; once the car says it is
    durable, the wallet marks what it revoked. The car's answer."""
    seq, revocation = sharing.make_revocation(
        wallet, car, keys=keys, serials=serials, now=time.time()
    )
    with _marking_revoked(wallet, car):
        result = await client.deliver_revocation(
            transport, car, revocation, entropy=entropy, persist=_keep_persistent(wallet, car)
        )
    if result.ok:
        wallet.mark_revoked(serials=serials, keys=keys, seq=seq)
    return result
